//! gRPC end to end (issue 16 item 5): a real gRPC client (tonic, HTTP/2 prior knowledge) through
//! a real Envoy running the built svcauth filter to a real gRPC upstream (tonic, HTTP/2 cluster).
//!
//! - An allowed unary call reaches the upstream with `x-service-name` (the token's subject) and
//!   `x-service-scopes`, and a client-sent `x-service-name` does not arrive.
//! - No token or an expired one: `UNAUTHENTICATED` (16); a missing scope: `PERMISSION_DENIED`
//!   (7). Envoy turns svcauth's local reply into a trailers-only gRPC response; its
//!   `grpc-message` is svcauth's short `<reason>: <description>` text, not the JSON body, and the
//!   response metadata carries `www-authenticate` and `x-svcauth-reason`, never the token.
//! - A bidi-streaming call is decided once, at its headers: with a good token several messages
//!   flow both ways on one upstream call (one `allowed` count); without one it is refused before
//!   any message reaches the upstream (the upstream sees no call at all).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use serde_json::{json, Value};
use svcauth_filter::fixtures::{self, claims_with, token, Fixture};
use svcauth_tests::grpc::{GrpcClient, GrpcError, GrpcUpstream, Note, CHAT, UNARY};
use svcauth_tests::{now, Envoy, Opts};
use tonic::Code;

/// The scope every `svcauth.test.Echo` method requires.
const SCOPE: &str = "orders:read";

/// The fixture provider (`internal`, `authorization: Bearer …`) with one rule for the gRPC
/// service: any method of `svcauth.test.Echo` needs `orders:read`; nothing else is allowed.
fn config() -> Value {
    let providers = fixtures::config_json()["providers"].clone();
    json!({
        "providers": providers,
        "rules": [
            {"match": {"prefix": "/svcauth.test.Echo/"}, "requires": {"scopes_any": [SCOPE]}}
        ]
    })
}

/// An ES256 token for `orders-service` (scope `orders:read`, at the real time) with `changes`.
fn bearer(changes: Value) -> String {
    format!(
        "Bearer {}",
        token(Fixture::Ec256, &claims_with(now(), changes))
    )
}

struct Stack {
    // Dropped in this order: the client, then Envoy, then the upstream.
    client: GrpcClient,
    envoy: Envoy,
    upstream: GrpcUpstream,
}

impl Stack {
    fn start() -> Stack {
        let upstream = GrpcUpstream::start();
        let opts = Opts::new(upstream.port())
            .upstream_http2(true)
            .env(fixtures::HMAC_ENV, fixtures::HMAC_SECRET);
        let envoy = Envoy::start_plugin(&config().to_string(), &opts);
        let client = GrpcClient::connect(envoy.port());
        Stack {
            client,
            envoy,
            upstream,
        }
    }

    fn counter(&self, name: &str) -> u64 {
        self.envoy
            .stat(&format!("wasmcustom.svcauth.{name}"))
            .unwrap_or(0)
    }

    /// Waits (bounded) until counter `name` reads `want`; counters may be flushed in batches.
    fn wait_counter(&self, name: &str, want: u64) {
        let ok = svcauth_tests::wait_until(std::time::Duration::from_secs(5), || {
            self.counter(name) == want
        });
        assert!(
            ok,
            "svcauth.{name}: want {want}, have {}",
            self.counter(name)
        );
    }
}

/// Asserts the refusal Envoy made of svcauth's local reply: `code`, `grpc-message` exactly
/// `<reason>: <description>` (svcauth's short text, not its JSON body), `www-authenticate` equal
/// to `challenge` and `x-svcauth-reason` equal to `reason`.
fn assert_refused(
    err: &GrpcError,
    case: &str,
    code: Code,
    (reason, description): (&str, &str),
    challenge: &str,
) {
    assert_eq!(err.code, code, "{case}: {err:?}");
    assert!(
        !err.message.starts_with('{'),
        "{case}: grpc-message is the JSON body: {:?}",
        err.message
    );
    assert_eq!(
        err.message,
        format!("{reason}: {description}"),
        "{case}: grpc-message"
    );
    assert_eq!(
        err.header("www-authenticate"),
        Some(challenge),
        "{case}: metadata {:?}",
        err.metadata
    );
    assert_eq!(
        err.header("x-svcauth-reason"),
        Some(reason),
        "{case}: metadata {:?}",
        err.metadata
    );
}

/// No response metadata value and not the message holds the token (`bearer` is `Bearer <token>`).
fn assert_no_token_in(err: &GrpcError, bearer: &str) {
    let token = bearer.trim_start_matches("Bearer ");
    assert!(!err.message.contains(token), "grpc-message holds the token");
    for (name, value) in &err.metadata {
        assert!(
            !value.contains(token),
            "response metadata {name} holds the token"
        );
    }
}

#[test]
fn unary_calls_allowed_and_refused() {
    let mut s = Stack::start();

    // Allowed: the upstream sees the verified identity, never the client's copy.
    let good = bearer(json!({}));
    let reply = s
        .client
        .unary(
            Note::new("hello", 1),
            &[
                ("authorization", &good),
                ("x-service-name", "admin-service"),
                ("x-service-scopes", "internal:admin"),
            ],
        )
        .unwrap_or_else(|e| panic!("allowed unary call refused: {e:?}"));
    assert_eq!(reply.notes, vec![Note::new("echo:hello", 1)]);
    let calls = s.upstream.calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    let call = &calls[0];
    assert_eq!(call.path, UNARY);
    assert_eq!(call.messages, vec!["hello".to_string()]);
    assert_eq!(call.header_all("x-service-name"), vec!["orders-service"]);
    assert_eq!(call.header_all("x-service-scopes"), vec![SCOPE]);
    assert!(
        call.header("content-type")
            .is_some_and(|c| c.starts_with("application/grpc")),
        "{call:?}"
    );
    s.wait_counter("allowed", 1);

    // No token: 16, the bare challenge.
    let err = s
        .client
        .unary(
            Note::new("no token", 2),
            &[("x-service-name", "orders-service")],
        )
        .expect_err("a call without a token was allowed");
    assert_refused(
        &err,
        "no token",
        Code::Unauthenticated,
        ("token_missing", "no token"),
        r#"Bearer realm="svcauth""#,
    );

    // A token without the scope: 7, the insufficient_scope challenge naming the scope.
    let unscoped = bearer(json!({"scope": "billing:read"}));
    let err = s
        .client
        .unary(Note::new("no scope", 3), &[("authorization", &unscoped)])
        .expect_err("a call without the scope was allowed");
    assert_refused(
        &err,
        "missing scope",
        Code::PermissionDenied,
        ("insufficient_scope", "insufficient scope"),
        &format!(
            r#"Bearer realm="svcauth", error="insufficient_scope", error_description="insufficient scope", scope="{SCOPE}""#
        ),
    );
    assert_no_token_in(&err, &unscoped);

    // An expired token: 16, an invalid_token challenge, the reason named.
    let expired = bearer(json!({"iat": now() - 7200, "exp": now() - 3600}));
    let err = s
        .client
        .unary(Note::new("expired", 4), &[("authorization", &expired)])
        .expect_err("an expired token was allowed");
    assert_refused(
        &err,
        "expired",
        Code::Unauthenticated,
        ("token_expired", "token expired"),
        r#"Bearer realm="svcauth", error="invalid_token", error_description="token expired""#,
    );
    assert_no_token_in(&err, &expired);

    // Nothing refused reached the upstream.
    assert_eq!(s.upstream.calls().len(), 1, "{:?}", s.upstream.calls());
    s.wait_counter("denied.token_missing", 1);
    s.wait_counter("denied.insufficient_scope", 1);
    s.wait_counter("allowed", 1);
}

#[test]
fn a_stream_is_decided_once_at_its_headers() {
    let mut s = Stack::start();

    // With a good token: five messages in lock step on one upstream call, one decision.
    let good = bearer(json!({}));
    let texts = ["one", "two", "three", "four", "five"];
    let upstream_seen = std::cell::RefCell::new(Vec::new());
    let reply = s
        .client
        .chat(
            &texts,
            &[
                ("authorization", &good),
                ("x-service-name", "admin-service"),
            ],
            |i| {
                // The echo of message i is back: the upstream has seen i + 1 messages.
                let calls = s.upstream.calls();
                upstream_seen
                    .borrow_mut()
                    .push(calls.first().map_or(0, |c| c.messages.len()));
                let _ = i;
            },
        )
        .unwrap_or_else(|e| panic!("allowed stream refused: {e:?}"));
    let echoed: Vec<String> = reply.notes.iter().map(|n| n.text.clone()).collect();
    assert_eq!(
        echoed,
        texts
            .iter()
            .map(|t| format!("echo:{t}"))
            .collect::<Vec<_>>()
    );
    assert_eq!(*upstream_seen.borrow(), vec![1, 2, 3, 4, 5]);
    let calls = s.upstream.calls();
    assert_eq!(calls.len(), 1, "one stream, one upstream call: {calls:?}");
    let call = &calls[0];
    assert_eq!(call.path, CHAT);
    assert_eq!(call.messages, texts.map(str::to_string).to_vec());
    assert_eq!(call.header_all("x-service-name"), vec!["orders-service"]);
    assert_eq!(call.header_all("x-service-scopes"), vec![SCOPE]);
    s.wait_counter("allowed", 1);
    assert_eq!(s.counter("denied"), 0);

    // Without a token: refused at the headers; the message already sent never arrives.
    let err = s
        .client
        .chat(&["never"], &[], |_| {})
        .expect_err("a stream without a token was allowed");
    assert_refused(
        &err,
        "stream without a token",
        Code::Unauthenticated,
        ("token_missing", "no token"),
        r#"Bearer realm="svcauth""#,
    );
    assert_eq!(
        s.upstream.calls().len(),
        1,
        "the refused stream reached the upstream: {:?}",
        s.upstream.calls()
    );
    s.wait_counter("denied.token_missing", 1);
    s.wait_counter("allowed", 1);
}
