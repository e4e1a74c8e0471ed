//! The side doors of issue 12, each tried through a real Envoy (default path and header
//! settings, so `headers_with_underscores_action` is ALLOW and underscored names reach the
//! filter): forged tokens that claim a name, CORS preflights, client copies of our headers in
//! other spellings, the static secret, and a client that resets while its request waits for a
//! key refetch. What is asserted is what leaves Envoy: the reply, the denial log line, the span
//! that Envoy's OpenTelemetry tracer exports to the OTLP receiver, and what the echo upstream
//! (or the JWKS server) received.
//!
//! Three Envoys in all, one per test, each with its group of cases.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::Write as _;
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use svcauth_filter::fixtures::{self, Fixture};
use svcauth_filter::jws::Alg;
use svcauth_filter::mint::SigningKey;
use svcauth_tests::observe::{log_line_for, span_for, tracing_yaml, FILTER_STATE_TAGS};
use svcauth_tests::tokens::{body_reason, key_set, signed, token_with};
use svcauth_tests::{
    http, now, try_http_raw, EchoUpstream, Envoy, HttpServer, Opts, OtlpReceiver, Reply, Request,
    Response,
};

const WAIT: Duration = Duration::from_secs(15);
/// The name every forged token claims.
const FORGED_SUB: &str = "admin-service";

// ------------------------------------------------------------------------------ helpers ---

/// The request id of a denial, from its JSON body.
fn request_id(r: &Response) -> String {
    r.json()["request_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no request_id in {}", r.body))
        .to_string()
}

/// A header name as a backend that folds `_` into `-` and ignores case reads it.
fn folded(name: &str) -> String {
    name.to_ascii_lowercase().replace('_', "-")
}

/// `GET`/`POST`/… with a bearer token (if any) and extra headers.
fn send(
    envoy: &Envoy,
    method: &str,
    path: &str,
    token: Option<&str>,
    extra: &[(&str, &str)],
) -> Response {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers: Vec<(&str, &str)> = Vec::new();
    if let Some(a) = auth.as_deref() {
        headers.push(("authorization", a));
    }
    headers.extend_from_slice(extra);
    http(envoy.port(), method, path, &headers)
}

// ------------------------------------------------- 1 + 2 + 3: default config, traced ---

/// With the fixture config (no `bypass_cors_preflight`) and the OpenTelemetry tracer: forged
/// tokens name nobody, a preflight needs a token, and no client spelling of our headers
/// reaches the upstream.
#[test]
fn with_the_default_config_forged_tokens_name_nobody_preflights_need_a_token_and_no_header_spelling_passes(
) {
    let otlp = OtlpReceiver::start();
    let upstream = EchoUpstream::start();
    let opts = Opts::new(upstream.port())
        .env(fixtures::HMAC_ENV, fixtures::HMAC_SECRET)
        .grpc_cluster("jaeger", otlp.port())
        .tracing(&tracing_yaml("svcauth-side-doors", FILTER_STATE_TAGS))
        // Export every span as soon as it ends.
        .runtime("tracing.opentelemetry.min_flush_spans", "1")
        .runtime("tracing.opentelemetry.flush_interval_ms", "200");
    let config = fixtures::config_json();
    assert!(
        config.get("bypass_cors_preflight").is_none(),
        "this test is about the default"
    );
    let envoy = Envoy::start_plugin(&config.to_string(), &opts);

    forged_tokens_name_nobody(&envoy, &upstream, &otlp);
    default_preflight_needs_a_token(&envoy, &upstream);
    no_client_spelling_of_our_headers_passes(&envoy, &upstream, &otlp);
}

fn forged_tokens_name_nobody(envoy: &Envoy, upstream: &EchoUpstream, otlp: &OtlpReceiver) {
    let t = now();
    let admin_claims =
        fixtures::claims_with(t, json!({"sub": FORGED_SUB, "scope": "internal:admin"}));
    let expired_admin_claims = fixtures::claims_with(
        t,
        json!({"sub": FORGED_SUB, "scope": "internal:admin", "iat": t - 7200, "exp": t - 3600}),
    );
    // A P-256 key that is in no JWK Set, and an HMAC secret that is not the provider's.
    let stranger = SigningKey::generate(Alg::ES256).unwrap();
    let wrong_secret = SigningKey::Hmac(b"not-the-fixture-secret-not-the-fixture-secret".to_vec());
    let ec_kid = Fixture::Ec256.kid();
    let forged = [
        (
            "a stranger's key under a real kid",
            signed(&stranger, Alg::ES256, Some(ec_kid), &admin_claims),
            "bad_signature",
        ),
        (
            "HS256 with a wrong secret",
            signed(&wrong_secret, Alg::HS256, None, &admin_claims),
            "bad_signature",
        ),
        (
            "an unknown kid",
            signed(&stranger, Alg::ES256, Some("kid-nobody-has"), &admin_claims),
            "unknown_kid",
        ),
        (
            "expired and forged (time is checked before the signature)",
            signed(&stranger, Alg::ES256, Some(ec_kid), &expired_admin_claims),
            "token_expired",
        ),
    ];
    let before = upstream.request_count();
    for (what, token, want) in &forged {
        let r = send(envoy, "POST", "/admin/rotate", Some(token), &[]);
        assert_eq!(
            (r.status, body_reason(&r).as_str()),
            (401, *want),
            "{what}: {}",
            r.body
        );
        assert!(
            !r.body.contains(FORGED_SUB),
            "{what}: the reply names the claimed caller: {}",
            r.body
        );
        for (name, value) in &r.headers {
            assert!(
                !value.contains(FORGED_SUB),
                "{what}: reply header {name}: {value}"
            );
        }
        let rid = request_id(&r);
        let line = log_line_for(envoy, &rid);
        assert_eq!(line["svcauth"], "deny", "{what}: {line}");
        assert_eq!(line["reason"], *want, "{what}: {line}");
        assert_eq!(
            line.get("subject"),
            Some(&Value::Null),
            "{what}: the denial line must say \"subject\":null: {line}"
        );
        if let Some(unverified) = line.get("unverified_subject") {
            assert_eq!(unverified, FORGED_SUB, "{what}: {line}");
        }
        let span = span_for(otlp, &rid);
        assert_eq!(span.http_status(), Some(401), "{what}: {span:#?}");
        assert_eq!(
            span.attr("auth.decision"),
            Some("deny"),
            "{what}: {span:#?}"
        );
        assert_eq!(span.attr("auth.reason"), Some(*want), "{what}: {span:#?}");
        assert_eq!(
            span.attr("auth.service"),
            None,
            "{what}: an unverified caller must not be tagged: {span:#?}"
        );
        for (k, v) in &span.attributes {
            assert!(!v.contains(FORGED_SUB), "{what}: span attribute {k}={v}");
        }
    }
    assert_eq!(
        upstream.request_count(),
        before,
        "a forged token reached the upstream"
    );

    // Controls. A verified caller denied for scope is named, in the line and the span.
    let billing = fixtures::token(
        Fixture::Ec256,
        &fixtures::claims_with(t, json!({"sub": "billing", "scope": "billing:read"})),
    );
    let r = send(envoy, "POST", "/admin/rotate", Some(&billing), &[]);
    assert_eq!(
        (r.status, body_reason(&r).as_str()),
        (403, "insufficient_scope"),
        "{}",
        r.body
    );
    let rid = request_id(&r);
    let line = log_line_for(envoy, &rid);
    assert_eq!(line["subject"], "billing", "{line}");
    let span = span_for(otlp, &rid);
    assert_eq!(span.attr("auth.decision"), Some("deny"), "{span:#?}");
    assert_eq!(span.attr("auth.service"), Some("billing"), "{span:#?}");
    assert_eq!(upstream.request_count(), before);
    // The real admin-service, with its real key, is named and let through.
    let admin = fixtures::token(Fixture::Ec256, &admin_claims);
    let r = send(envoy, "POST", "/admin/rotate", Some(&admin), &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    let seen = upstream.last_request().unwrap();
    assert_eq!(seen.header_all("x-service-name"), [FORGED_SUB]);
    let rid = seen.header("x-request-id").unwrap().to_string();
    let span = span_for(otlp, &rid);
    assert_eq!(span.attr("auth.decision"), Some("allow"), "{span:#?}");
    assert_eq!(span.attr("auth.service"), Some(FORGED_SUB), "{span:#?}");
}

fn preflight_headers() -> [(&'static str, &'static str); 2] {
    [
        ("origin", "https://app.example"),
        ("access-control-request-method", "POST"),
    ]
}

fn default_preflight_needs_a_token(envoy: &Envoy, upstream: &EchoUpstream) {
    let before = upstream.request_count();
    let r = send(
        envoy,
        "OPTIONS",
        "/admin/rotate",
        None,
        &preflight_headers(),
    );
    assert_eq!(
        (r.status, body_reason(&r).as_str()),
        (401, "token_missing"),
        "bypass_cors_preflight defaults to false: {}",
        r.body
    );
    assert_eq!(
        upstream.request_count(),
        before,
        "the preflight reached the upstream"
    );
}

/// What the upstream may receive under one of our header names (canonical spelling).
enum Expect {
    /// Nothing.
    Absent,
    /// Exactly these values.
    Exactly(&'static [&'static str]),
    /// Nothing, or exactly these values (the tag headers: the filter may or may not forward them).
    AbsentOr(&'static [&'static str]),
}

/// Checks every header the upstream received whose folded name is one of ours: an underscore
/// (or otherwise non-canonical) spelling is a client copy that got through; the canonical
/// spelling must carry exactly the filter's values.
fn assert_only_ours(what: &str, seen: &Request, ours: &[(&str, Expect)]) {
    for (name, value) in &seen.headers {
        let f = folded(name);
        if ours.iter().any(|(n, _)| *n == f) {
            assert_eq!(
                name, &f,
                "{what}: a client copy arrived as {name}: {value} (headers {:?})",
                seen.headers
            );
        }
    }
    for (name, expect) in ours {
        let got = seen.header_all(name);
        let ok = match expect {
            Expect::Absent => got.is_empty(),
            Expect::Exactly(want) => got == *want,
            Expect::AbsentOr(want) => got.is_empty() || got == *want,
        };
        assert!(
            ok,
            "{what}: {name} arrived as {got:?} (headers {:?})",
            seen.headers
        );
    }
}

fn no_client_spelling_of_our_headers_passes(
    envoy: &Envoy,
    upstream: &EchoUpstream,
    otlp: &OtlpReceiver,
) {
    let forged: &[(&str, &str)] = &[
        ("x_service_name", FORGED_SUB),
        ("X-Service_Name", "evil"),
        ("X_SERVICE_NAME", "evil2"),
        ("x-SERVICE-scopes", "internal:admin"),
        ("x_service_scopes", "internal:admin"),
        ("x_svcauth_decision", "allow"),
        ("X-SVCAUTH_SERVICE", FORGED_SUB),
        ("x_svcauth_reason", "forged"),
        ("x_svcauth_provider", "forged"),
        // The fixture provider's claim_to_headers header is x-tenant-id.
        ("x_tenant_id", "evil-tenant"),
        ("X-Tenant_ID", "evil-tenant2"),
    ];

    // An allowed request with a good token (which carries tenant_id).
    let good = fixtures::token(
        Fixture::Ec256,
        &fixtures::claims_with(now(), json!({"tenant_id": "t-1"})),
    );
    let r = send(envoy, "GET", "/orders/1", Some(&good), forged);
    assert_eq!(r.status, 200, "{}", r.body);
    let seen = upstream.last_request().unwrap();
    assert_only_ours(
        "token route",
        &seen,
        &[
            ("x-service-name", Expect::Exactly(&["orders-service"])),
            ("x-service-scopes", Expect::Exactly(&["orders:read"])),
            ("x-tenant-id", Expect::Exactly(&["t-1"])),
            ("x-svcauth-decision", Expect::AbsentOr(&["allow"])),
            ("x-svcauth-service", Expect::AbsentOr(&["orders-service"])),
            ("x-svcauth-reason", Expect::Absent),
            ("x-svcauth-provider", Expect::AbsentOr(&["internal"])),
        ],
    );
    let rid = seen.header("x-request-id").unwrap().to_string();
    let span = span_for(otlp, &rid);
    assert_eq!(
        span.attr("auth.service"),
        Some("orders-service"),
        "{span:#?}"
    );
    assert_eq!(span.attr("auth.reason"), None, "{span:#?}");

    // An open route, no token: no identity at all.
    let r = send(envoy, "GET", "/health", None, forged);
    assert_eq!(r.status, 200, "{}", r.body);
    let seen = upstream.last_request().unwrap();
    assert_eq!(seen.path, "/health");
    assert_only_ours(
        "open route",
        &seen,
        &[
            ("x-service-name", Expect::Absent),
            ("x-service-scopes", Expect::Absent),
            ("x-tenant-id", Expect::Absent),
            ("x-svcauth-decision", Expect::AbsentOr(&["allow"])),
            ("x-svcauth-service", Expect::AbsentOr(&["anonymous"])),
            ("x-svcauth-reason", Expect::Absent),
            ("x-svcauth-provider", Expect::Absent),
        ],
    );
    let rid = seen.header("x-request-id").unwrap().to_string();
    let span = span_for(otlp, &rid);
    assert_ne!(span.attr("auth.service"), Some(FORGED_SUB), "{span:#?}");
    assert_eq!(span.attr("auth.reason"), None, "{span:#?}");
}

// ----------------------------------------- 2 + 4: preflight bypass and the static secret ---

const STATIC_ENV: &str = "SIDE_DOORS_LEGACY_CREDENTIALS";
const STATIC_SECRET: &str = "side-doors-static-secret-4f1c9a07b2e8";

/// The fixture provider plus a `static_credentials` provider `legacy` (service `backend`,
/// scope `auth:verify`), with the preflight bypass on.
fn static_config() -> Value {
    let base = fixtures::config_json();
    json!({
        "bypass_cors_preflight": true,
        "providers": {
            "internal": base["providers"]["internal"],
            "legacy": {"static_credentials": {
                "credentials_env": STATIC_ENV,
                "scopes": {"backend": ["auth:verify"]}
            }}
        },
        "rules": [
            {"match": {"prefix": "/health"}, "allow": true},
            {"match": {"path": "/admin/rotate", "methods": ["POST"]},
             "requires": {"scopes_all": ["internal:admin"]}},
            {"match": {"prefix": "/auth/verify"},
             "requires": {"providers": ["legacy"], "scopes_any": ["auth:verify"]}},
            {"match": {"prefix": "/auth/admin"},
             "requires": {"providers": ["legacy"], "scopes_all": ["auth:admin"]}},
            {"match": {"prefix": "/"}, "requires": {"scopes_any": ["orders:read", "orders:write"]}}
        ]
    })
}

fn static_credentials_env() -> String {
    let salt = b"side-doors-salt-0001";
    let hex: String = salt.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "backend:{hex}:{}",
        svcauth_filter::statics::hash_hex(salt, STATIC_SECRET.as_bytes())
    )
}

/// The upstream never sees the secret: under no spelling of the header, and nowhere as a value.
fn assert_no_secret(what: &str, seen: &Request) {
    for (name, value) in &seen.headers {
        assert_ne!(
            folded(name),
            "x-service-secret",
            "{what}: the secret header arrived as {name}"
        );
        assert!(
            !value.contains(STATIC_SECRET),
            "{what}: the secret arrived in {name}"
        );
    }
}

#[test]
fn with_the_bypass_on_only_real_preflights_on_unambiguous_paths_skip_auth_and_the_static_secret_never_goes_upstream(
) {
    let upstream = EchoUpstream::start();
    let opts = Opts::new(upstream.port())
        .env(fixtures::HMAC_ENV, fixtures::HMAC_SECRET)
        .env(STATIC_ENV, &static_credentials_env());
    let envoy = Envoy::start_plugin(&static_config().to_string(), &opts);

    preflight_bypass_is_narrow(&envoy, &upstream);
    static_secret_never_goes_upstream(&envoy, &upstream);
}

fn preflight_bypass_is_narrow(envoy: &Envoy, upstream: &EchoUpstream) {
    let [origin, acrm] = preflight_headers();
    // A real preflight passes without a token.
    let r = send(envoy, "OPTIONS", "/admin/rotate", None, &[origin, acrm]);
    assert_eq!(r.status, 200, "{}", r.body);
    let seen = upstream.last_request().unwrap();
    assert_eq!(
        (seen.method.as_str(), seen.path.as_str()),
        ("OPTIONS", "/admin/rotate")
    );
    assert_eq!(seen.header("x-service-name"), None);

    // An OPTIONS that is not a real preflight needs a token.
    let before = upstream.request_count();
    for (what, headers) in [
        ("no Origin", vec![acrm]),
        ("no Access-Control-Request-Method", vec![origin]),
        ("neither", vec![]),
    ] {
        let r = send(envoy, "OPTIONS", "/admin/rotate", None, &headers);
        assert_eq!(
            (r.status, body_reason(&r).as_str()),
            (401, "token_missing"),
            "OPTIONS with {what}: {}",
            r.body
        );
    }
    assert_eq!(upstream.request_count(), before);

    // The path check comes first: a preflight to an ambiguous path is refused.
    for path in [
        "/health/..;/admin/rotate",
        "/admin/rotate;x=1",
        "/health/%2e%2e/admin/rotate",
        "/health/..%2fadmin/rotate",
    ] {
        let r = send(envoy, "OPTIONS", path, None, &[origin, acrm]);
        assert_eq!(
            (r.status, body_reason(&r).as_str()),
            (400, "ambiguous_path"),
            "preflight to {path}: {}",
            r.body
        );
        // The body's `error` is the RFC 6750 code, as in the challenge; `reason` says which.
        assert_eq!(r.json()["error"], "invalid_request", "{path}: {}", r.body);
        assert_eq!(
            r.header("x-svcauth-reason"),
            Some("ambiguous_path"),
            "{path}"
        );
        assert_eq!(
            r.header("www-authenticate"),
            Some(
                r#"Bearer realm="svcauth", error="invalid_request", error_description="ambiguous path""#
            ),
            "{path}"
        );
    }
    assert_eq!(
        upstream.request_count(),
        before,
        "a preflight to an ambiguous path reached the upstream"
    );
}

fn static_secret_never_goes_upstream(envoy: &Envoy, upstream: &EchoUpstream) {
    let [origin, acrm] = preflight_headers();
    let creds: &[(&str, &str)] = &[
        ("x-service-id", "backend"),
        ("x-service-secret", STATIC_SECRET),
    ];
    let with_copies: &[(&str, &str)] = &[
        ("x-service-id", "backend"),
        ("x-service-secret", STATIC_SECRET),
        ("x_service_secret", STATIC_SECRET),
        ("X-Service_Secret", STATIC_SECRET),
    ];
    let only_copies: &[(&str, &str)] = &[
        ("x_service_secret", STATIC_SECRET),
        ("X_SERVICE_SECRET", STATIC_SECRET),
    ];

    // Open route.
    for (what, headers) in [
        ("open route", creds),
        ("open route, with _ copies", with_copies),
        ("open route, only _ copies", only_copies),
    ] {
        let r = send(envoy, "GET", "/health", None, headers);
        assert_eq!(r.status, 200, "{what}: {}", r.body);
        let seen = upstream.last_request().unwrap();
        assert_eq!(seen.path, "/health");
        assert_no_secret(what, &seen);
    }

    // A real preflight with the bypass on.
    for (what, headers) in [
        ("preflight", creds),
        ("preflight, with _ copies", with_copies),
    ] {
        let mut h = vec![origin, acrm];
        h.extend_from_slice(headers);
        let r = send(envoy, "OPTIONS", "/auth/verify", None, &h);
        assert_eq!(r.status, 200, "{what}: {}", r.body);
        let seen = upstream.last_request().unwrap();
        assert_eq!(seen.method, "OPTIONS");
        assert_no_secret(what, &seen);
    }

    // A route that accepts the static provider: allowed, the caller named, the secret dropped.
    for (what, headers) in [("allowed", creds), ("allowed, with _ copies", with_copies)] {
        let r = send(envoy, "POST", "/auth/verify", None, headers);
        assert_eq!(r.status, 200, "{what}: {}", r.body);
        let seen = upstream.last_request().unwrap();
        assert_eq!(seen.path, "/auth/verify");
        assert_eq!(seen.header_all("x-service-name"), ["backend"], "{what}");
        assert_eq!(
            seen.header_all("x-service-scopes"),
            ["auth:verify"],
            "{what}"
        );
        assert_no_secret(what, &seen);
    }
    // A route for tokens only, one for a scope backend lacks, and a wrong secret: denied, so
    // nothing reaches the upstream at all.
    let before = upstream.request_count();
    let wrong: &[(&str, &str)] = &[
        ("x-service-id", "backend"),
        ("x-service-secret", "side-doors-static-secret-4f1c9a07b2eX"),
        ("x_service_secret", STATIC_SECRET),
    ];
    for (what, path, headers, status, want) in [
        (
            "tokens-only route",
            "/orders/1",
            with_copies,
            403,
            "provider_not_allowed",
        ),
        (
            "missing scope",
            "/auth/admin",
            with_copies,
            403,
            "insufficient_scope",
        ),
        (
            "wrong secret",
            "/auth/verify",
            wrong,
            401,
            "invalid_credentials",
        ),
    ] {
        let r = send(envoy, "POST", path, None, headers);
        assert_eq!(
            (r.status, body_reason(&r).as_str()),
            (status, want),
            "{what}: {}",
            r.body
        );
        assert!(!r.body.contains(STATIC_SECRET), "{what}: {}", r.body);
    }
    assert_eq!(
        upstream.request_count(),
        before,
        "a denied request reached the upstream"
    );
    envoy.wait_log_contains(r#""reason":"invalid_credentials""#, WAIT);
    assert!(
        !envoy.log().contains(STATIC_SECRET),
        "the static secret is in Envoy's log"
    );
}

// ------------------------------------------------------ 5: a reset while keys are fetched ---

/// How long the JWKS server takes to answer with a rotated set.
const SLOW_JWKS: Duration = Duration::from_millis(1000);

/// A JWKS server whose set the test changes; rotated sets (any set with more than one key)
/// are answered slowly. Records when each fetch arrived.
struct SlowJwks {
    server: HttpServer,
    body: Arc<Mutex<String>>,
    arrivals: Arc<Mutex<Vec<Instant>>>,
}

impl SlowJwks {
    fn start(keys: &[(Fixture, &str)]) -> SlowJwks {
        let body = Arc::new(Mutex::new(key_set(keys)));
        let arrivals = Arc::new(Mutex::new(Vec::new()));
        let (b, a) = (Arc::clone(&body), Arc::clone(&arrivals));
        let server = HttpServer::start(move |_req| {
            a.lock().unwrap().push(Instant::now());
            let body = b.lock().unwrap().clone();
            let keys = serde_json::from_str::<Value>(&body)
                .ok()
                .and_then(|v| v["keys"].as_array().map(Vec::len))
                .unwrap_or(0);
            if keys > 1 {
                std::thread::sleep(SLOW_JWKS);
            }
            Reply {
                status: 200,
                headers: vec![("content-type".into(), "application/json".into())],
                body: body.into_bytes(),
            }
        });
        SlowJwks {
            server,
            body,
            arrivals,
        }
    }

    fn set(&self, keys: &[(Fixture, &str)]) {
        *self.body.lock().unwrap() = key_set(keys);
    }

    fn arrivals(&self) -> Vec<Instant> {
        self.arrivals.lock().unwrap().clone()
    }
}

/// A raw `GET /orders` with `token`, `Connection: close`.
fn raw_request(token: &str) -> Vec<u8> {
    format!(
        "GET /orders HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    )
    .into_bytes()
}

/// Makes closing `stream` send a TCP RST instead of a FIN (`SO_LINGER` 0). Returns false where
/// the test does not know how (then the close is a FIN, which Envoy also treats as a reset of
/// the request in flight).
#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
fn reset_on_close(stream: &TcpStream) -> bool {
    use std::os::fd::AsRawFd as _;
    #[repr(C)]
    struct Linger {
        l_onoff: i32,
        l_linger: i32,
    }
    extern "C" {
        fn setsockopt(fd: i32, level: i32, name: i32, value: *const Linger, len: u32) -> i32;
    }
    const SOL_SOCKET: i32 = 1;
    const SO_LINGER: i32 = 13;
    let linger = Linger {
        l_onoff: 1,
        l_linger: 0,
    };
    let len = u32::try_from(std::mem::size_of::<Linger>()).unwrap();
    // SAFETY: a valid open socket descriptor, a pointer to a live `struct linger` and its size.
    let rc = unsafe { setsockopt(stream.as_raw_fd(), SOL_SOCKET, SO_LINGER, &linger, len) };
    rc == 0
}

#[cfg(not(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
)))]
fn reset_on_close(_stream: &TcpStream) -> bool {
    false
}

#[derive(Debug, Clone, Copy)]
enum Close {
    /// `SO_LINGER` 0, then close: a TCP RST.
    Reset,
    /// `shutdown(Both)`, then close: a FIN.
    Fin,
}

/// The envoy counter of downstream connections closed by the client with a request active.
const CX_CLOSED_ACTIVE: &str = "http.ingress_http.downstream_cx_destroy_remote_active_rq";

/// One rotation: the set gains `new`; client A sends a token with the new kid and goes away
/// (by `close`) while the refetch it triggered is in flight; client B, which sent the same kid
/// just after A, must get 200 from that one refetch.
fn rotate_and_abandon(
    envoy: &Envoy,
    jwks: &SlowJwks,
    keys: &[(Fixture, &str)],
    new: (Fixture, &str),
    close: Close,
) {
    // Past the refetch interval (1 s) since the last fetch.
    std::thread::sleep(Duration::from_millis(1200));
    jwks.set(keys);
    let token = token_with(new.0, new.1);
    let fetches_before = jwks.server.request_count();
    let closed_before = envoy.stat(CX_CLOSED_ACTIVE).unwrap_or(0);
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, envoy.port()));

    // A: sends, and goes away before the answer.
    let mut a = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    a.set_nodelay(true).unwrap();
    a.write_all(&raw_request(&token)).unwrap();
    // B: the same kid, a moment later, on its own connection.
    let port = envoy.port();
    let b_request = raw_request(&token);
    let b = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        let started = Instant::now();
        let r = try_http_raw(port, &b_request);
        (r, started.elapsed())
    });
    std::thread::sleep(Duration::from_millis(300));
    let mode = match close {
        Close::Reset if reset_on_close(&a) => "RST",
        Close::Reset => "FIN (SO_LINGER unavailable here)",
        Close::Fin => {
            let _ = a.shutdown(Shutdown::Both);
            "FIN"
        }
    };
    drop(a);
    let closed_at = Instant::now();

    let (b_result, b_waited) = b.join().unwrap();
    let b_resp = b_result
        .unwrap_or_else(|e| panic!("{mode}: client B got no answer after A went away ({e})"));
    assert_eq!(
        (b_resp.status, body_reason(&b_resp)),
        (200, String::new()),
        "{mode}: client B after A went away: {}",
        b_resp.body
    );
    // The fetch was in flight when A went away, and B waited for it.
    let arrivals = jwks.arrivals();
    let fetch_at = *arrivals.last().unwrap();
    assert!(
        fetch_at < closed_at,
        "{mode}: the refetch started only after A went away"
    );
    assert!(
        b_waited >= Duration::from_millis(400),
        "{mode}: B was answered in {b_waited:?}, so it did not wait for the slow refetch"
    );
    assert_eq!(
        jwks.server.request_count() - fetches_before,
        1,
        "{mode}: A and B share one refetch"
    );
    // Envoy saw A leave with its request active.
    assert!(
        svcauth_tests::wait_until(Duration::from_secs(5), || {
            envoy.stat(CX_CLOSED_ACTIVE).unwrap_or(0) > closed_before
        }),
        "{mode}: Envoy did not count A's connection as closed with a request active"
    );
    eprintln!(
        "reset while waiting: A went away by {mode}; B got 200 after {b_waited:?}; 1 refetch"
    );
    // The new key stays: another call needs no fetch.
    let fetches = jwks.server.request_count();
    let auth = format!("Bearer {token}");
    let r = http(envoy.port(), "GET", "/orders", &[("authorization", &auth)]);
    assert_eq!(r.status, 200, "{mode}: {}", r.body);
    assert_eq!(jwks.server.request_count(), fetches);
}

#[test]
fn a_client_that_goes_away_while_waiting_for_a_refetch_does_not_cancel_it_for_the_others() {
    let jwks = SlowJwks::start(&[(Fixture::Ec256, "k1")]);
    let upstream = EchoUpstream::start();
    let mut config = fixtures::config_json();
    let p = &mut config["providers"]["internal"];
    p.as_object_mut().unwrap().remove("jwks");
    p["remote_jwks"] = json!({
        "cluster": "jwks", "path": "/.well-known/jwks.json", "authority": "auth.internal",
        "refresh_seconds": 300, "timeout_ms": 5000, "refetch_interval_seconds": 1
    });
    let opts = Opts::new(upstream.port())
        .env(fixtures::HMAC_ENV, fixtures::HMAC_SECRET)
        .loopback_cluster("jwks", jwks.server.port());
    let envoy = Envoy::start_plugin(&config.to_string(), &opts);
    let first = token_with(Fixture::Ec256, "k1");
    assert!(
        svcauth_tests::wait_until(Duration::from_secs(10), || {
            let auth = format!("Bearer {first}");
            http(envoy.port(), "GET", "/orders", &[("authorization", &auth)]).status == 200
        }),
        "the first key set never arrived"
    );

    rotate_and_abandon(
        &envoy,
        &jwks,
        &[(Fixture::Ec256, "k1"), (Fixture::RsaA, "k2")],
        (Fixture::RsaA, "k2"),
        Close::Reset,
    );
    rotate_and_abandon(
        &envoy,
        &jwks,
        &[
            (Fixture::Ec256, "k1"),
            (Fixture::RsaA, "k2"),
            (Fixture::Ec384, "k3"),
        ],
        (Fixture::Ec384, "k3"),
        Close::Fin,
    );
    assert!(upstream.request_count() >= 5);
}
