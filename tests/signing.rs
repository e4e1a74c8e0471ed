//! Signed requests through a real Envoy, signed by a client written as the OAuth2
//! client-credentials system's `RequestSigner` is (tests/fixtures/request_signer.py: Python's
//! standard library `hmac`): a good signed POST with a body (whole and chunked) and a signed
//! GET, a tampered body, stale and future timestamps, replays across two workers, missing
//! signatures, bodies larger than the bound, and a route that needs no signature. Then the
//! same filter without `allow_on_headers_stop_iteration`, where Envoy never hands the body to
//! the filter: refused with 503, never forwarded unchecked.

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};
use svcauth_filter::fixtures::{self, Fixture};
use svcauth_filter::jws::Alg;
use svcauth_filter::mint::sign;
use svcauth_tests::{bootstrap, now, repo_root, EchoUpstream, Envoy, Opts};

const SECRETS_ENV: &str = "OAUTH_CLIENT_SIGNING_SECRETS";
const CLIENT: &str = "billing-client";
const SECRET: &str = "billing-client-signing-secret-7f3a9c2e";

/// The seed system's example config (envoy/examples/oauth2-client-credentials.json) with
/// signed requests: the `oauth` provider knows its clients' signing secrets, and `/payments/`
/// requires a signature.
fn plugin(max_body_bytes: Option<usize>) -> String {
    let path = repo_root().join("envoy/examples/oauth2-client-credentials.json");
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut signing = json!({"secrets_env": SECRETS_ENV, "required": false});
    if let Some(n) = max_body_bytes {
        signing["max_body_bytes"] = json!(n);
    }
    v["providers"]["oauth"]["signed_requests"] = signing;
    v.as_object_mut().unwrap().remove("rate_limits");
    v["rules"].as_array_mut().unwrap().insert(
        1,
        json!({"match": {"prefix": "/payments/"},
               "requires": {"signed": true, "scopes_any": ["payments:write"]}}),
    );
    v.to_string()
}

/// An Envoy running `plugin` with two workers; `hold`: the wasm filter sets
/// `allow_on_headers_stop_iteration` (what signed requests with a body need).
fn start(upstream: &EchoUpstream, plugin: &str, hold: bool) -> Envoy {
    let opts = Opts::new(upstream.port())
        .env(
            SECRETS_ENV,
            &format!("{CLIENT}:{SECRET}\nother-client:{SECRET}-other"),
        )
        .concurrency(2);
    let mut yaml = bootstrap(plugin, &opts);
    if hold {
        let line = "                fail_open: false\n";
        assert!(yaml.contains(line));
        yaml = yaml.replace(
            line,
            &format!("{line}                allow_on_headers_stop_iteration: true\n"),
        );
    }
    Envoy::start_with(&yaml, opts.concurrency)
}

/// An RFC 9068 access token of the example's issuer for `client`.
fn access_token(client: &str, scope: &str) -> String {
    let c = json!({"iss": "https://login.example.com/oauth2", "aud": "https://api.example.com",
                   "client_id": client, "sub": client, "iat": now(), "exp": now() + 300,
                   "scope": scope});
    let mut h = Map::new();
    h.insert("kid".into(), "oauth-2026-11".into());
    h.insert("typ".into(), "at+jwt".into());
    sign(&fixtures::signing_key(Fixture::RsaA), Alg::RS256, &h, &c).unwrap()
}

fn python() -> String {
    let venv = repo_root().join(".venv/bin/python");
    if venv.is_file() {
        venv.to_string_lossy().into_owned()
    } else {
        "python3".into()
    }
}

/// Runs the Python client (bounded by `timeout 90`) with one JSON request per line; its
/// responses, one per request sent (`repeat` sends more).
fn run_signer(port: u16, secret: &str, requests: &[Value]) -> Vec<Value> {
    let script = repo_root().join("tests/fixtures/request_signer.py");
    let mut child = Command::new("timeout")
        .arg("90")
        .arg(python())
        .arg(&script)
        .arg(port.to_string())
        .arg(CLIENT)
        .arg(secret)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the Python RequestSigner client");
    {
        let mut stdin = child.stdin.take().unwrap();
        for r in requests {
            writeln!(stdin, "{r}").unwrap();
        }
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "request_signer.py failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn one(port: u16, request: Value) -> (u64, String) {
    let got = run_signer(port, SECRET, &[request]);
    assert_eq!(got.len(), 1, "{got:?}");
    outcome(&got[0])
}

fn outcome(r: &Value) -> (u64, String) {
    (
        r["status"].as_u64().unwrap(),
        r["reason"].as_str().unwrap_or_default().to_string(),
    )
}

#[test]
fn signed_requests_are_checked_over_their_body_before_they_reach_the_upstream() {
    let upstream = EchoUpstream::start();
    let envoy = start(&upstream, &plugin(Some(65_536)), true);
    let port = envoy.port();
    let token = access_token(CLIENT, "payments:write api:write");
    let ok = (200, String::new());

    // A good signed POST: the body is checked, then reaches the upstream unchanged, with the
    // verified caller.
    let body = r#"{"invoice":"INV-7","amount":"120.00"}"#;
    let got = one(
        port,
        json!({"path": "/payments/charge?currency=EUR", "body": body, "token": token}),
    );
    assert_eq!(got, ok);
    let seen = upstream.last_request().unwrap();
    assert_eq!(seen.path, "/payments/charge?currency=EUR");
    assert_eq!(seen.body, body.as_bytes());
    assert_eq!(seen.header("x-service-name"), Some(CLIENT));
    assert!(seen.header("x-signature").is_some(), "forwarded as sent");

    // Chunked in three parts: Envoy buffers them, the filter checks the whole.
    let chunked = "line one\nline two\nline three\n".repeat(200);
    let got = one(
        port,
        json!({"path": "/payments/batch", "body": chunked, "chunks": 3, "token": token}),
    );
    assert_eq!(got, ok);
    assert_eq!(upstream.last_request().unwrap().body, chunked.as_bytes());

    // A signed GET without a body is checked at its headers.
    let got = one(
        port,
        json!({"method": "GET", "path": "/payments/status?id=INV-7", "token": token}),
    );
    assert_eq!(got, ok);

    let forwarded = upstream.request_count();
    // A tampered body: the signature was made over another one.
    let got = one(
        port,
        json!({"path": "/payments/charge", "body": r#"{"amount":"9999.00"}"#,
               "sign_body": r#"{"amount":"1.00"}"#, "token": token}),
    );
    assert_eq!(got, (401, "signature_invalid".into()));
    // A stale timestamp, and one too far ahead (the window is 300 s either way).
    for offset in [-301, 301] {
        let got = one(
            port,
            json!({"path": "/payments/charge", "body": "{}", "timestamp_offset": offset,
                   "token": token}),
        );
        assert_eq!(got, (401, "signature_expired".into()), "offset {offset}");
    }
    // Missing signature headers.
    for omit in [
        json!(["X-Signature"]),
        json!(["X-Timestamp", "X-Signature"]),
    ] {
        let got = one(
            port,
            json!({"path": "/payments/charge", "body": "{}", "omit": omit, "token": token}),
        );
        assert_eq!(got, (401, "signature_missing".into()));
    }
    // Another client's secret does not sign for this client.
    let got = run_signer(
        port,
        &format!("{SECRET}-other"),
        &[json!({"path": "/payments/charge", "body": "{}", "token": token})],
    );
    assert_eq!(outcome(&got[0]), (401, "signature_invalid".into()));
    // Larger than the bound (64 KiB): by Content-Length at once, chunked as it arrives.
    let got = one(
        port,
        json!({"path": "/payments/upload", "body_bytes": 100_000, "token": token}),
    );
    assert_eq!(got, (413, "body_too_large".into()));
    let got = one(
        port,
        json!({"path": "/payments/upload", "body_bytes": 100_000, "chunks": 8, "token": token}),
    );
    assert_eq!(got, (413, "body_too_large".into()));
    assert_eq!(
        upstream.request_count(),
        forwarded,
        "no refused request reached the upstream"
    );

    // The same signed request five times, each on a new connection (two workers): once.
    let got: Vec<(u64, String)> = run_signer(
        port,
        SECRET,
        &[
            json!({"path": "/payments/refund", "body": r#"{"invoice":"INV-7"}"#,
                 "repeat": 5, "token": token}),
        ],
    )
    .iter()
    .map(outcome)
    .collect();
    assert_eq!(got[0], ok);
    assert_eq!(got[1..], vec![(401, "signature_replayed".to_string()); 4]);
    assert_eq!(upstream.request_count(), forwarded + 1);

    // A route that needs no signature takes a body without one.
    let got = one(
        port,
        json!({"path": "/items", "body": "{\"sku\":1}", "omit": ["X-Timestamp", "X-Signature"],
               "token": access_token(CLIENT, "api:write")}),
    );
    assert_eq!(got, ok);

    envoy.settle_counters();
    for (reason, n) in [
        ("signature_invalid", 2),
        ("signature_expired", 2),
        ("signature_missing", 2),
        ("body_too_large", 2),
        ("signature_replayed", 4),
    ] {
        assert_eq!(
            envoy.stat(&format!("wasmcustom.svcauth.denied.{reason}")),
            Some(n),
            "{reason}"
        );
    }
    let log = envoy.log();
    assert!(
        log.contains(r#""reason":"signature_replayed""#)
            && log.contains(r#""subject":"billing-client""#),
        "denial lines name the verified caller"
    );
    assert!(!log.contains(SECRET), "the secret is never logged");
}

#[test]
fn the_default_body_bound_is_one_mebibyte() {
    let upstream = EchoUpstream::start();
    let envoy = start(&upstream, &plugin(None), true);
    let token = access_token(CLIENT, "payments:write");
    let got = one(
        envoy.port(),
        json!({"path": "/payments/upload", "body_bytes": 1_048_576, "token": token}),
    );
    assert_eq!(got, (200, String::new()), "exactly the bound");
    assert_eq!(upstream.last_request().unwrap().body.len(), 1_048_576);
    let got = one(
        envoy.port(),
        json!({"path": "/payments/upload2", "body_bytes": 1_048_577, "token": token}),
    );
    assert_eq!(got, (413, "body_too_large".into()));
    // Chunked, without a Content-Length: Envoy's own buffer limit (per_connection_buffer_limit_
    // bytes, 1 MiB by default) is reached first and Envoy answers its own 413 (no svcauth
    // reason), as docs/config.md says. Either way nothing is forwarded.
    let got = one(
        envoy.port(),
        json!({"path": "/payments/upload3", "body_bytes": 2_097_152, "chunks": 32, "token": token}),
    );
    assert_eq!(got, (413, String::new()));
    assert_eq!(upstream.request_count(), 1);
}

#[test]
fn without_allow_on_headers_stop_iteration_a_signed_body_is_refused_never_forwarded() {
    let upstream = EchoUpstream::start();
    let envoy = start(&upstream, &plugin(Some(65_536)), false);
    let token = access_token(CLIENT, "payments:write");
    // No body to wait for: checked at the headers, as with the option.
    let got = one(
        envoy.port(),
        json!({"method": "GET", "path": "/payments/status", "token": token}),
    );
    assert_eq!(got, (200, String::new()));
    // A body: Envoy stops all iteration and never hands it to the filter; the filter's tick
    // answers it after FIRST_BODY_SECONDS (10 s) instead of letting the client hang.
    let started = Instant::now();
    let got = one(
        envoy.port(),
        json!({"path": "/payments/charge", "body": "{}", "token": token}),
    );
    let took = started.elapsed();
    assert_eq!(got, (503, "body_unavailable".into()));
    assert!(
        took >= Duration::from_secs(9) && took < Duration::from_secs(20),
        "{took:?}"
    );
    assert_eq!(upstream.request_count(), 1, "never forwarded");
    envoy.wait_log_contains(
        "set allow_on_headers_stop_iteration",
        Duration::from_secs(5),
    );
}

/// A loopback upstream that records when the first byte of a request reaches it and what it
/// got, and answers 200 once the chunked body has ended. Bounded: one connection, 30 s.
struct RawUpstream {
    port: u16,
    got: std::sync::Arc<std::sync::Mutex<(Option<Instant>, Vec<u8>)>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RawUpstream {
    fn start() -> RawUpstream {
        use std::io::Read as _;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let got = std::sync::Arc::new(std::sync::Mutex::new((None, Vec::new())));
        let g = std::sync::Arc::clone(&got);
        let thread = std::thread::spawn(move || {
            listener.set_nonblocking(true).unwrap();
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut conn = loop {
                match listener.accept() {
                    Ok((c, _)) => break c,
                    Err(_) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(10))
                    }
                    Err(_) => return,
                }
            };
            conn.set_nonblocking(false).unwrap();
            conn.set_read_timeout(Some(Duration::from_secs(30)))
                .unwrap();
            let mut buf = [0u8; 8192];
            loop {
                let Ok(n) = conn.read(&mut buf) else { return };
                if n == 0 {
                    return;
                }
                let mut st = g.lock().unwrap();
                st.0.get_or_insert_with(Instant::now);
                st.1.extend_from_slice(&buf[..n]);
                if st.1.ends_with(b"0\r\n\r\n") {
                    break;
                }
            }
            let _ = conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
        });
        RawUpstream {
            port,
            got,
            thread: Some(thread),
        }
    }
}

impl Drop for RawUpstream {
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn a_signed_request_is_held_whole_until_its_last_chunk_has_been_checked() {
    use std::io::Read as _;
    let upstream = RawUpstream::start();
    let opts = Opts::new(upstream.port)
        .env(SECRETS_ENV, &format!("{CLIENT}:{SECRET}"))
        .concurrency(1);
    let line = "                fail_open: false\n";
    let yaml = bootstrap(&plugin(Some(65_536)), &opts).replace(
        line,
        &format!("{line}                allow_on_headers_stop_iteration: true\n"),
    );
    let envoy = Envoy::start(&yaml);
    let token = access_token(CLIENT, "payments:write");
    let (first, second) = ("{\"invoice\":", "\"INV-9\"}");
    let signed = run_signer(
        envoy.port(),
        SECRET,
        &[
            json!({"path": "/payments/slow", "body": format!("{first}{second}"),
                 "token": token, "sign_only": true}),
        ],
    );
    let h = &signed[0];
    let mut c = std::net::TcpStream::connect(("127.0.0.1", envoy.port())).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let head = format!(
        "POST /payments/slow HTTP/1.1\r\nHost: localhost\r\nAuthorization: {}\r\nX-Timestamp: {}\r\nX-Signature: {}\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{first}\r\n",
        h["Authorization"].as_str().unwrap(),
        h["X-Timestamp"].as_str().unwrap(),
        h["X-Signature"].as_str().unwrap(),
        first.len(),
    );
    c.write_all(head.as_bytes()).unwrap();
    // Headers and a first chunk are in: nothing may reach the upstream before the last chunk.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        upstream.got.lock().unwrap().0.is_none(),
        "the upstream saw the request before its body was checked"
    );
    let sent_rest = Instant::now();
    c.write_all(format!("{:x}\r\n{second}\r\n0\r\n\r\n", second.len()).as_bytes())
        .unwrap();
    let mut resp = Vec::new();
    let mut buf = [0u8; 4096];
    while !resp.windows(2).any(|w| w == b"ok") {
        match c.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => resp.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&resp).to_string();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let (at, bytes) = upstream.got.lock().unwrap().clone();
    assert!(
        at.unwrap() >= sent_rest,
        "reached the upstream only after the last chunk"
    );
    let bytes = String::from_utf8_lossy(&bytes).to_string();
    assert!(bytes.contains("x-service-name: billing-client"), "{bytes}");
    assert!(bytes.contains(first) && bytes.contains(second), "{bytes}");
}
