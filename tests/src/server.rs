//! Real HTTP/1.1 servers on loopback (std threads): [`HttpServer`] answers with a handler,
//! [`EchoUpstream`] answers 200 with a JSON echo of what it received. Both record every request
//! and stop on drop (listener closed, open connections shut down).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use crate::client::{all_values, dechunk, find, first_value, parse_headers};
use crate::listen::{Acceptor, Shared};

/// Idle keep-alive connections are closed after this long without a request.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// A request as a server received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// Headers in received order, names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        first_value(&self.headers, name)
    }

    /// Every value of header `name` (case-insensitive), in order.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        all_values(&self.headers, name)
    }
}

/// What a handler answers.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    /// `status` with a JSON body.
    pub fn json(status: u16, body: &serde_json::Value) -> Reply {
        Reply {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.to_string().into_bytes(),
        }
    }

    /// `status` with a text body.
    pub fn text(status: u16, body: &str) -> Reply {
        Reply {
            status,
            headers: vec![("content-type".into(), "text/plain".into())],
            body: body.as_bytes().to_vec(),
        }
    }
}

type Handler = Arc<dyn Fn(&Request) -> Reply + Send + Sync>;

/// An HTTP/1.1 server on 127.0.0.1:0 (keep-alive, Content-Length and chunked request bodies).
pub struct HttpServer {
    inner: Acceptor<Request>,
}

impl HttpServer {
    /// Starts a server answering every request with `handler`.
    pub fn start(handler: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> HttpServer {
        let handler: Handler = Arc::new(handler);
        HttpServer {
            inner: Acceptor::start("http-server", move |stream, shared| {
                serve_connection(stream, shared, &handler)
            }),
        }
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.inner.port
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<Request> {
        self.inner.shared.requests.lock().unwrap().clone()
    }

    /// The most recent request, if any.
    pub fn last_request(&self) -> Option<Request> {
        self.inner.shared.requests.lock().unwrap().last().cloned()
    }

    /// How many requests it has received.
    pub fn request_count(&self) -> usize {
        self.inner.shared.requests.lock().unwrap().len()
    }

    /// Forgets the requests received so far.
    pub fn clear(&self) {
        self.inner.shared.requests.lock().unwrap().clear();
    }

    /// Waits until at least `n` requests arrived; returns whether they did within `timeout`.
    pub fn wait_requests(&self, n: usize, timeout: Duration) -> bool {
        crate::wait_until(timeout, || self.request_count() >= n)
    }
}

fn serve_connection(mut stream: TcpStream, shared: &Shared<Request>, handler: &Handler) {
    let _ = stream.set_read_timeout(Some(IDLE_TIMEOUT));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(10)));
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        // Parse as many complete requests as the buffer holds.
        loop {
            match parse_request(&buf) {
                Ok(Some((req, used))) => {
                    buf.drain(..used);
                    let close = req
                        .header("connection")
                        .is_some_and(|c| c.eq_ignore_ascii_case("close"));
                    shared.requests.lock().unwrap().push(req.clone());
                    let reply = handler(&req);
                    if write_reply(&mut stream, &reply, close).is_err() || close {
                        return;
                    }
                }
                Ok(None) => break,
                Err(_) => {
                    let _ = write_reply(&mut stream, &Reply::text(400, "bad request"), true);
                    return;
                }
            }
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        if shared.stopped() {
            return;
        }
    }
}

/// One complete request from the front of `buf` and the bytes it used; `None` if incomplete.
fn parse_request(buf: &[u8]) -> Result<Option<(Request, usize)>, String> {
    let Some(end) = find(buf, b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let line = lines.next().unwrap_or("");
    let mut parts = line.split(' ');
    let (Some(method), Some(path)) = (parts.next(), parts.next()) else {
        return Err(format!("bad request line {line:?}"));
    };
    let headers = parse_headers(lines)?;
    let rest = &buf[end + 4..];
    let get = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let (body, used) =
        if get("transfer-encoding").is_some_and(|te| te.to_ascii_lowercase().contains("chunked")) {
            match dechunk(rest) {
                Ok(done) => done,
                Err(_) => return Ok(None),
            }
        } else if let Some(len) = get("content-length") {
            let len: usize = len
                .trim()
                .parse()
                .map_err(|_| format!("bad content-length {len:?}"))?;
            match rest.get(..len) {
                Some(body) => (body.to_vec(), len),
                None => return Ok(None),
            }
        } else {
            (Vec::new(), 0)
        };
    let req = Request {
        method: method.to_string(),
        path: path.to_string(),
        headers,
        body,
    };
    Ok(Some((req, end + 4 + used)))
}

fn write_reply(stream: &mut TcpStream, reply: &Reply, close: bool) -> std::io::Result<()> {
    let mut out = format!("HTTP/1.1 {} {}\r\n", reply.status, reason(reply.status)).into_bytes();
    for (name, value) in &reply.headers {
        out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    out.extend_from_slice(format!("content-length: {}\r\n", reply.body.len()).as_bytes());
    out.extend_from_slice(if close {
        b"connection: close\r\n\r\n"
    } else {
        b"connection: keep-alive\r\n\r\n"
    });
    out.extend_from_slice(&reply.body);
    stream.write_all(&out)?;
    stream.flush()
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

/// The upstream behind Envoy in most tests: answers every request with 200 and the JSON
/// `{"method":..,"path":..,"headers":[[name,value],...],"body":..}` of what it received.
pub struct EchoUpstream {
    server: HttpServer,
}

impl EchoUpstream {
    /// Starts it on 127.0.0.1:0.
    pub fn start() -> EchoUpstream {
        EchoUpstream {
            server: HttpServer::start(echo),
        }
    }

    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<Request> {
        self.server.requests()
    }

    /// The most recent request, if any.
    pub fn last_request(&self) -> Option<Request> {
        self.server.last_request()
    }

    pub fn request_count(&self) -> usize {
        self.server.request_count()
    }

    pub fn clear(&self) {
        self.server.clear()
    }

    pub fn wait_requests(&self, n: usize, timeout: Duration) -> bool {
        self.server.wait_requests(n, timeout)
    }
}

fn echo(req: &Request) -> Reply {
    let headers: Vec<[&str; 2]> = req
        .headers
        .iter()
        .map(|(n, v)| [n.as_str(), v.as_str()])
        .collect();
    Reply::json(
        200,
        &serde_json::json!({
            "method": req.method,
            "path": req.path,
            "headers": headers,
            "body": String::from_utf8_lossy(&req.body),
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_upstream_echoes_and_records_keep_alive_requests() {
        let up = EchoUpstream::start();
        let r = crate::http(
            up.port(),
            "GET",
            "/a?b=1",
            &[("X-Dup", "1"), ("x-dup", "2")],
        );
        assert_eq!(r.status, 200);
        let body = r.json();
        assert_eq!(body["path"], "/a?b=1");
        assert_eq!(up.last_request().unwrap().header_all("x-dup"), ["1", "2"]);
        // Two pipelined keep-alive requests, the second with a body, on one connection.
        let raw = b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcGET /q HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        let r = crate::http_raw(up.port(), raw);
        assert_eq!(r.status, 200);
        let reqs = up.requests();
        assert_eq!(reqs.len(), 3);
        assert_eq!(
            (reqs[1].method.as_str(), reqs[1].body.as_slice()),
            ("POST", &b"abc"[..])
        );
        assert_eq!(reqs[2].path, "/q");
    }
}
