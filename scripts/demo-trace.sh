#!/usr/bin/env bash
# The tracing step of the demo: where the spans of Envoy's OpenTelemetry tracer go, and what they say.
#
#   scripts/demo-trace.sh start    before the calls: if nothing listens on 127.0.0.1:4317, builds
#                                  and starts the project's OTLP receiver there (otlp-receiver)
#   scripts/demo-trace.sh report   after the calls: prints each span the receiver got (trace id,
#                                  HTTP status, auth.* tags, request id) and stops it; or, when
#                                  Jaeger runs (4317 and 16686 listen), prints the Jaeger UI link
#   scripts/demo-trace.sh stop     stops the receiver if this script started it
#   scripts/demo-trace.sh run      all of it around a few calls to envoy/demo.yaml's Envoy
#                                  (started here with a tiny upstream; no token: /health is open,
#                                  /orders is denied), with the denial and access log lines
#
# It can also be sourced (it then only defines the demo_trace_* functions). State lives in
# target/demo-trace/. Envoy must use envoy/demo.yaml's tracing section (cluster jaeger at
# 127.0.0.1:4317, service name svcauth-demo).

DEMO_TRACE_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEMO_TRACE_DIR="$DEMO_TRACE_ROOT/target/demo-trace"
DEMO_TRACE_SERVICE="${DEMO_TRACE_SERVICE:-svcauth-demo}"
DEMO_TRACE_UI="${DEMO_TRACE_UI:-http://localhost:16686}"

# True when something accepts TCP connections on 127.0.0.1:$1.
demo_trace_listening() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Starts the OTLP receiver on 127.0.0.1:4317 unless something already listens there.
demo_trace_start() {
    mkdir -p "$DEMO_TRACE_DIR"
    if demo_trace_listening 4317; then
        if demo_trace_listening 16686; then
            echo "tracing: Jaeger is running (OTLP 127.0.0.1:4317, UI 127.0.0.1:16686)"
        else
            echo "tracing: a collector already listens on 127.0.0.1:4317; spans go there"
        fi
        return 0
    fi
    echo "tracing: building the OTLP receiver (first time: a minute or two)"
    (cd "$DEMO_TRACE_ROOT" && cargo build --quiet -p svcauth-tests --bin otlp-receiver) || return 1
    : >"$DEMO_TRACE_DIR/spans.txt"
    # Bounded: it stops by itself after 15 minutes even if nobody calls `stop`.
    "$DEMO_TRACE_ROOT/target/debug/otlp-receiver" --listen 127.0.0.1:4317 --seconds 900 \
        >"$DEMO_TRACE_DIR/spans.txt" 2>"$DEMO_TRACE_DIR/receiver.log" </dev/null &
    echo $! >"$DEMO_TRACE_DIR/receiver.pid"
    local i
    for i in $(seq 1 100); do
        demo_trace_listening 4317 && break
        sleep 0.1
    done
    demo_trace_listening 4317 || { echo "tracing: the OTLP receiver did not start" >&2; cat "$DEMO_TRACE_DIR/receiver.log" >&2; return 1; }
    echo "tracing: OTLP receiver on 127.0.0.1:4317 (pid $(cat "$DEMO_TRACE_DIR/receiver.pid"))"
}

# Stops the receiver this script started, if any.
demo_trace_stop() {
    local pidfile="$DEMO_TRACE_DIR/receiver.pid"
    [[ -f "$pidfile" ]] || return 0
    local pid
    pid="$(cat "$pidfile")"
    rm -f "$pidfile"
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# Prints what happened to the spans: the receiver's lines, or the Jaeger link.
demo_trace_report() {
    if [[ -f "$DEMO_TRACE_DIR/receiver.pid" ]]; then
        # Envoy exports each span when it ends; give the last ones a moment.
        local n=-1 i
        for i in $(seq 1 30); do
            local now
            now="$(wc -l <"$DEMO_TRACE_DIR/spans.txt")"
            [[ "$now" -gt 0 && "$now" == "$n" ]] && break
            n="$now"
            sleep 0.2
        done
        echo "tracing: spans exported by Envoy (trace id, HTTP status, auth tags, request id):"
        if [[ -s "$DEMO_TRACE_DIR/spans.txt" ]]; then
            sed 's/^/  /' "$DEMO_TRACE_DIR/spans.txt"
        else
            echo "  (none received: is Envoy's tracing section pointing at 127.0.0.1:4317?)"
        fi
        echo "  (find a denied call's span by the request_id of its log line: guid:x-request-id,"
        echo "   or by the trace_id of its line in Envoy's access log)"
        demo_trace_stop
    elif demo_trace_listening 4317 && demo_trace_listening 16686; then
        echo "tracing: spans are in Jaeger: $DEMO_TRACE_UI/search?service=$DEMO_TRACE_SERVICE"
        echo "  a denied call: search Tags 'guid:x-request-id=<request_id from its log line>'"
        echo "  or open $DEMO_TRACE_UI/trace/<trace_id> (its access log line always has one)"
    else
        echo "tracing: spans went to the collector on 127.0.0.1:4317"
    fi
}

# Processes started by demo_trace_run, stopped by demo_trace_cleanup.
DEMO_TRACE_PIDS=()

demo_trace_cleanup() {
    demo_trace_stop
    local p
    for p in "${DEMO_TRACE_PIDS[@]+"${DEMO_TRACE_PIDS[@]}"}"; do
        kill "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    DEMO_TRACE_PIDS=()
}

# A self-contained run: receiver (or Jaeger), Envoy with envoy/demo.yaml, a tiny upstream,
# three calls, the report. Every process started here is stopped on exit.
demo_trace_run() {
    local envoy_bin
    # shellcheck source=scripts/lib.sh
    envoy_bin="$(source "$DEMO_TRACE_ROOT/scripts/lib.sh" && find_envoy)" || return 1
    [[ -f "$DEMO_TRACE_ROOT/target/wasm32-wasip1/release/svcauth_filter.wasm" ]] \
        || "$DEMO_TRACE_ROOT/scripts/build-wasm" || return 1
    if demo_trace_listening 10000 || demo_trace_listening 9901; then
        echo "demo-trace: 127.0.0.1:10000 or :9901 is in use (another demo Envoy?)" >&2
        return 1
    fi
    trap demo_trace_cleanup EXIT
    demo_trace_start || return 1
    mkdir -p "$DEMO_TRACE_DIR/www" && echo ok >"$DEMO_TRACE_DIR/www/health"
    : >"$DEMO_TRACE_DIR/envoy.log"
    python3 -m http.server 10001 --bind 127.0.0.1 --directory "$DEMO_TRACE_DIR/www" \
        >"$DEMO_TRACE_DIR/upstream.log" 2>&1 </dev/null &
    DEMO_TRACE_PIDS+=($!)
    (cd "$DEMO_TRACE_ROOT" && exec "$envoy_bin" -c envoy/demo.yaml --concurrency 1 \
        --use-dynamic-base-id --disable-hot-restart -l warning --component-log-level wasm:info \
        --file-flush-interval-msec 100 --log-path "$DEMO_TRACE_DIR/envoy.log") \
        >"$DEMO_TRACE_DIR/envoy.out" 2>&1 </dev/null &
    DEMO_TRACE_PIDS+=($!)
    local i
    for i in $(seq 1 150); do
        curl -fsS -o /dev/null http://127.0.0.1:9901/ready 2>/dev/null && break
        sleep 0.2
    done
    echo "calls:"
    echo "  GET /health (open)          -> $(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:10000/health)"
    echo "  GET /orders (no token)      -> $(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:10000/orders)"
    echo "  GET /orders (traceparent)   -> $(curl -s -o /dev/null -w '%{http_code}' \
        -H 'traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' \
        -H 'authorization: Bearer not.a.jwt' http://127.0.0.1:10000/orders)"
    sleep 1
    echo "denial log lines:"
    grep -o '{"[^}]*"svcauth":"deny"[^}]*}' "$DEMO_TRACE_DIR/envoy.log" | sed 's/^/  /' || true
    echo "access log lines (Envoy's stdout; trace_id is the span's, also without a traceparent):"
    grep '^{.*"request_id"' "$DEMO_TRACE_DIR/envoy.out" | sed 's/^/  /' || true
    demo_trace_report
    demo_trace_cleanup
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    set -euo pipefail
    case "${1:-}" in
        start) demo_trace_start ;;
        report) demo_trace_report ;;
        stop) demo_trace_stop ;;
        run) demo_trace_run ;;
        *) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
    esac
fi
