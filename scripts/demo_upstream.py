#!/usr/bin/env python3
"""The demo's upstream: answers every request with JSON of what svcauth let through.

    python3 scripts/demo_upstream.py [--port 10001] [--seconds 900]

The reply holds the method, the path and the identity headers the upstream received
(x-service-name, x-service-scopes, x-request-id, ...), so the demo can show what a service behind
Envoy sees. Listens on 127.0.0.1 only, and stops by itself after --seconds.
"""

import argparse
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SHOWN = ("x-service-", "x-svcauth-", "x-request-id", "x-tenant-id", "traceparent")


class Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _reply(self):
        length = int(self.headers.get("content-length") or 0)
        if length:
            self.rfile.read(length)
        seen = {k.lower(): v for k, v in self.headers.items() if k.lower().startswith(SHOWN)}
        # Never echo credentials: only whether one arrived.
        seen["authorization"] = "present" if self.headers.get("authorization") else "absent"
        body = json.dumps({"method": self.command, "path": self.path, "headers": seen}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _reply

    def log_message(self, fmt, *args):  # one short line per request on stderr
        print(f"demo-upstream: {self.command} {self.path}", file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=10001)
    ap.add_argument("--seconds", type=float, default=900)
    args = ap.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Echo)
    timer = threading.Timer(args.seconds, server.shutdown)
    timer.daemon = True
    timer.start()
    server.serve_forever()


if __name__ == "__main__":
    main()
