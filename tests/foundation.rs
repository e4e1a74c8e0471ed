//! Foundation, end to end: a real Envoy loads the built svcauth filter with the fixture
//! configuration (`svcauth_filter::fixtures::config_json()`, its HMAC secret passed through
//! `vm_config.environment_variables`), forwards what the rules allow to a real echo upstream
//! with the caller's identity in trusted headers, answers what they deny itself (status, exact
//! RFC 6750 challenge, JSON body), logs every denial as one JSON line, never lets a token out,
//! and refuses a bad plugin configuration at load. Also checks the harness against a plain Envoy.
//!
//! Each test starts one Envoy for its group of cases. Tokens are minted at the real time
//! (Envoy's clock is the host's), never at `fixtures::NOW`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::cell::{Cell, RefCell};
use std::time::Duration;

use serde_json::{json, Map, Value};
use sha2::Digest as _;
use svcauth_filter::fixtures::{self, hmac_token, token, token_alg, Fixture};
use svcauth_filter::jws::Alg;
use svcauth_filter::mint::{sign, sign_raw, SigningKey};
use svcauth_tests::tokens::{bearer, claims, ec};
use svcauth_tests::{bootstrap, http, now, EchoUpstream, Envoy, Opts, Request, Response};

const WAIT: Duration = Duration::from_secs(10);

/// The challenge for a request without a token.
const NO_TOKEN: &str = r#"Bearer realm="svcauth""#;

fn invalid_token(description: &str) -> String {
    format!(r#"Bearer realm="svcauth", error="invalid_token", error_description="{description}""#)
}

fn insufficient_scope(scope: &str) -> String {
    format!(
        r#"Bearer realm="svcauth", error="insufficient_scope", error_description="insufficient scope", scope="{scope}""#
    )
}

/// The first 12 hex digits of the token's SHA-256, as the denial log carries it.
fn short_hash(token: &str) -> String {
    let digest = sha2::Sha256::digest(token.as_bytes());
    digest[..6].iter().map(|b| format!("{b:02x}")).collect()
}

/// The tag headers svcauth sets only with `"decision_tags": "request_headers"`.
const TAG_HEADERS: [&str; 4] = [
    "x-svcauth-decision",
    "x-svcauth-service",
    "x-svcauth-reason",
    "x-svcauth-provider",
];

/// The identity and tag headers a client may never set.
const SPOOFABLE: [&str; 7] = [
    "x-service-name",
    "x-service-scopes",
    "x-tenant-id",
    TAG_HEADERS[0],
    TAG_HEADERS[1],
    TAG_HEADERS[2],
    TAG_HEADERS[3],
];

/// A denial the Envoy log must show as one JSON line, checked by [`Stack::finish`].
struct ExpectedLine {
    request_id: String,
    reason: String,
    status: u16,
    method: String,
    path: String,
    /// `Some(subject)`: the token's issuer was known (provider `internal`) and so was its subject.
    subject: Option<String>,
    token: Option<String>,
}

/// One request as sent: its request id, the token it carried (if any) and the response.
struct Sent {
    request_id: String,
    method: String,
    path: String,
    token: Option<String>,
    resp: Response,
}

/// svcauth in a real Envoy before an echo upstream, and a record of what a test sent, so that
/// [`Stack::finish`] can check the denial log lines and that no token or secret ever leaked.
struct Stack {
    upstream: EchoUpstream,
    envoy: Envoy,
    tag: &'static str,
    next: Cell<u32>,
    tokens: RefCell<Vec<String>>,
    lines: RefCell<Vec<ExpectedLine>>,
    allowed_ids: RefCell<Vec<String>>,
}

impl Stack {
    /// Envoy with the fixture configuration. `tag` prefixes this test's request ids.
    fn start(tag: &'static str) -> Stack {
        Stack::start_with(tag, &fixtures::config_json())
    }

    /// [`Stack::start`] with the fallback build (`vm-crypto`: RSA and ECDSA inside the VM).
    fn start_vm_crypto(tag: &'static str) -> Stack {
        Stack::start_opts(tag, &fixtures::config_json(), true)
    }

    fn start_with(tag: &'static str, config: &Value) -> Stack {
        Stack::start_opts(tag, config, false)
    }

    fn start_opts(tag: &'static str, config: &Value, vm_crypto: bool) -> Stack {
        let upstream = EchoUpstream::start();
        let mut opts = Opts::new(upstream.port()).env(fixtures::HMAC_ENV, fixtures::HMAC_SECRET);
        if vm_crypto {
            opts = opts.vm_crypto();
        }
        let envoy = Envoy::start_plugin(&config.to_string(), &opts);
        Stack {
            upstream,
            envoy,
            tag,
            next: Cell::new(0),
            tokens: RefCell::new(Vec::new()),
            lines: RefCell::new(Vec::new()),
            allowed_ids: RefCell::new(Vec::new()),
        }
    }

    /// Sends `method path` with `headers` and a fresh `x-request-id`; `token` is what the
    /// headers carry, remembered for the leak check.
    fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        token: Option<&str>,
    ) -> Sent {
        let n = self.next.get() + 1;
        self.next.set(n);
        let request_id = format!("{}-{n}", self.tag);
        if let Some(t) = token {
            self.tokens.borrow_mut().push(t.to_string());
        }
        let mut all = vec![("x-request-id", request_id.as_str())];
        all.extend_from_slice(headers);
        let resp = http(self.envoy.port(), method, path, &all);
        // Whatever the outcome, no response header ever holds the token.
        if let Some(t) = token {
            for (name, value) in &resp.headers {
                assert!(
                    !value.contains(t),
                    "{method} {path}: response header {name} holds the token"
                );
            }
        }
        Sent {
            request_id,
            method: method.to_string(),
            path: path.to_string(),
            token: token.map(str::to_string),
            resp,
        }
    }

    /// `GET path` with `Authorization: Bearer <token>`.
    fn get(&self, path: &str, token: &str) -> Sent {
        self.call("GET", path, token)
    }

    fn call(&self, method: &str, path: &str, token: &str) -> Sent {
        let auth = bearer(token);
        self.send(method, path, &[("authorization", &auth)], Some(token))
    }

    /// Asserts `sent` reached the upstream with a 200; returns the request the upstream saw.
    fn allowed(&self, sent: &Sent, case: &str) -> Request {
        assert_eq!(
            sent.resp.status, 200,
            "{case}: {} {} should be allowed; body: {}",
            sent.method, sent.path, sent.resp.body
        );
        self.allowed_ids.borrow_mut().push(sent.request_id.clone());
        self.upstream
            .requests()
            .into_iter()
            .find(|r| r.header("x-request-id") == Some(sent.request_id.as_str()))
            .unwrap_or_else(|| panic!("{case}: the upstream never saw {}", sent.request_id))
    }

    /// Asserts `sent` was answered by svcauth itself: `status`, exactly `challenge`, the JSON
    /// body naming `reason`, no token in the body, the upstream never reached. Registers the
    /// denial log line that [`Stack::finish`] checks (`subject`: see [`ExpectedLine`]).
    fn denied(
        &self,
        sent: &Sent,
        case: &str,
        status: u16,
        reason: &str,
        challenge: &str,
        subject: Option<&str>,
    ) {
        let resp = &sent.resp;
        assert_eq!(
            resp.status, status,
            "{case}: {} {}; body: {}",
            sent.method, sent.path, resp.body
        );
        assert_eq!(
            resp.header_all("www-authenticate"),
            [challenge],
            "{case}: WWW-Authenticate"
        );
        assert_eq!(
            resp.header("content-type"),
            Some("application/json"),
            "{case}"
        );
        assert_eq!(resp.header("cache-control"), Some("no-store"), "{case}");
        assert_eq!(resp.header("x-svcauth-reason"), Some(reason), "{case}");
        let body = resp.json();
        let obj = body.as_object().unwrap();
        let keys: Vec<&str> = obj.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            ["error", "error_description", "reason", "request_id"],
            "{case}: body {body}"
        );
        // The body's error and description are the challenge's (the bare 401 has neither).
        let (error, description) = match challenge.split_once(", error=\"") {
            Some((_, rest)) => {
                let (error, rest) = rest.split_once('"').unwrap();
                let description = rest
                    .split_once("error_description=\"")
                    .and_then(|(_, d)| d.split_once('"'))
                    .map(|(d, _)| d)
                    .unwrap();
                (error, description)
            }
            None => ("unauthorized", "no token"),
        };
        assert_eq!(body["error"], error, "{case}: body {body}");
        assert_eq!(
            body["error_description"], description,
            "{case}: body {body}"
        );
        assert_eq!(body["reason"], reason, "{case}: body {body}");
        assert_eq!(
            body["request_id"],
            sent.request_id.as_str(),
            "{case}: body {body}"
        );
        if let Some(t) = &sent.token {
            assert!(
                !resp.body.contains(t.as_str()),
                "{case}: body holds the token"
            );
        }
        assert!(
            !self
                .upstream
                .requests()
                .iter()
                .any(|r| r.header("x-request-id") == Some(sent.request_id.as_str())),
            "{case}: a denied request reached the upstream"
        );
        self.lines.borrow_mut().push(ExpectedLine {
            request_id: sent.request_id.clone(),
            reason: reason.to_string(),
            status,
            method: sent.method.clone(),
            path: sent.path.split('?').next().unwrap().to_string(),
            subject: subject.map(str::to_string),
            token: sent.token.clone(),
        });
    }

    /// Checks the Envoy log once every expected denial line is in it: each denial is one JSON
    /// line with its reason, status, provider, subject, method, path, request id and short
    /// token hash; allowed requests have none; no token, no token signature and no HMAC
    /// secret appears anywhere in the log. Returns the denial lines.
    fn finish(self) -> Vec<Value> {
        let expected = self.lines.borrow();
        let mut denials = Vec::new();
        let complete = svcauth_tests::wait_until(WAIT, || {
            denials = denial_lines(&self.envoy.log());
            expected.iter().all(|e| {
                denials
                    .iter()
                    .any(|d| d["request_id"] == e.request_id.as_str())
            })
        });
        assert!(
            complete,
            "not every denial was logged within {WAIT:?}; lines: {denials:#?}"
        );
        for e in expected.iter() {
            let mine: Vec<&Value> = denials
                .iter()
                .filter(|d| d["request_id"] == e.request_id.as_str())
                .collect();
            assert_eq!(mine.len(), 1, "{}: one line per denial", e.request_id);
            let line = mine[0];
            let want_provider = if e.subject.is_some() {
                json!("internal")
            } else {
                Value::Null
            };
            // A hash only when the filter got as far as one token.
            let hashed = !matches!(
                e.reason.as_str(),
                "token_missing" | "multiple_tokens" | "no_matching_rule" | "ambiguous_path"
            );
            let want_hash = match e.token.as_deref() {
                Some(t) if hashed => short_hash(t).into(),
                _ => Value::Null,
            };
            // Issue 12: a denial before the signature verified names no caller; what the token
            // claimed is logged as `unverified_subject` only.
            let before_signature = matches!(
                e.reason.as_str(),
                "token_malformed"
                    | "alg_not_allowed"
                    | "crit_unsupported"
                    | "wrong_token_type"
                    | "exp_missing"
                    | "token_expired"
                    | "token_not_yet_valid"
                    | "issued_in_future"
                    | "lifetime_too_long"
                    | "audience_mismatch"
                    | "claim_mismatch"
                    | "keys_unavailable"
                    | "unknown_kid"
                    | "bad_signature"
            );
            let (want_subject, want_unverified) = if before_signature {
                (Value::Null, json!(e.subject))
            } else {
                (json!(e.subject), Value::Null)
            };
            assert_eq!(
                line["unverified_subject"], want_unverified,
                "{}: denial line {line}",
                e.request_id
            );
            assert_eq!(
                (
                    &line["reason"],
                    &line["status"],
                    &line["provider"],
                    &line["subject"],
                    &line["method"],
                    &line["path"],
                    &line["token_sha256"],
                ),
                (
                    &json!(e.reason),
                    &json!(e.status),
                    &want_provider,
                    &want_subject,
                    &json!(e.method),
                    &json!(e.path),
                    &want_hash,
                ),
                "{}: denial line {line}",
                e.request_id
            );
            if let Some(h) = line["token_sha256"].as_str() {
                assert!(
                    h.len() == 12 && h.bytes().all(|b| b.is_ascii_hexdigit()),
                    "{h}"
                );
            }
        }
        for id in self.allowed_ids.borrow().iter() {
            assert!(
                !denials.iter().any(|d| d["request_id"] == id.as_str()),
                "allowed request {id} has a denial line"
            );
        }
        let log = self.envoy.log();
        for t in self.tokens.borrow().iter() {
            assert!(
                !log.contains(t.as_str()),
                "the Envoy log holds a token: {t}"
            );
            if let Some(sig) = t.rsplit('.').next().filter(|s| s.len() >= 16) {
                assert!(
                    !log.contains(sig),
                    "the Envoy log holds a token's signature"
                );
            }
        }
        assert!(
            !log.contains(fixtures::HMAC_SECRET),
            "the Envoy log holds the HMAC secret"
        );
        denials
    }
}

/// The denial lines (`{"svcauth":"deny",…}`) of an Envoy log, each checked to be exactly one
/// JSON object after the wasm log prefix.
fn denial_lines(log: &str) -> Vec<Value> {
    log.lines()
        .filter_map(|line| {
            let at = line.find(r#"{"#)?;
            let rest = &line[at..];
            if !rest.contains(r#""svcauth":"deny""#) {
                return None;
            }
            let v: Value = serde_json::from_str(rest)
                .unwrap_or_else(|e| panic!("a denial line is not one JSON object ({e}): {line}"));
            Some(v)
        })
        .collect()
}

// ------------------------------------------------------------------- accepted tokens ---------

#[test]
fn every_algorithm_family_is_accepted() {
    // The fallback build (vm-crypto) accepts every family; the default build has no RSA-PSS
    // (Envoy's verify_signature cannot do it): there a PS* token is alg_not_allowed.
    for vm_crypto in [true, false] {
        let s = if vm_crypto {
            Stack::start_vm_crypto("algs-vm")
        } else {
            Stack::start("algs")
        };
        let c = claims(json!({}));
        let cases = [
            ("RS256", token_alg(Fixture::RsaA, Alg::RS256, &c)),
            ("RS384", token_alg(Fixture::RsaA, Alg::RS384, &c)),
            ("RS512", token_alg(Fixture::RsaA, Alg::RS512, &c)),
            ("PS256", token_alg(Fixture::RsaA, Alg::PS256, &c)),
            ("PS384", token_alg(Fixture::RsaA, Alg::PS384, &c)),
            ("PS512", token_alg(Fixture::RsaA, Alg::PS512, &c)),
            ("RS256 (JWK with alg)", token(Fixture::RsaB, &c)),
            ("ES256", token(Fixture::Ec256, &c)),
            ("ES384", token(Fixture::Ec384, &c)),
            ("EdDSA", token(Fixture::Ed25519, &c)),
            ("HS256", hmac_token(Alg::HS256, &c)),
            ("HS384", hmac_token(Alg::HS384, &c)),
            ("HS512", hmac_token(Alg::HS512, &c)),
        ];
        for (alg, t) in &cases {
            if !vm_crypto && alg.starts_with("PS") {
                let sent = s.get("/orders/42", t);
                let challenge = invalid_token("token algorithm not allowed");
                s.denied(&sent, alg, 401, "alg_not_allowed", &challenge, None);
                continue;
            }
            let seen = s.allowed(&s.get("/orders/42", t), alg);
            assert_eq!(
                seen.header("x-service-name"),
                Some("orders-service"),
                "{alg}"
            );
            assert_eq!(
                seen.header("x-service-scopes"),
                Some("orders:read"),
                "{alg}"
            );
            assert_eq!(seen.header("x-svcauth-decision"), None, "{alg}");
        }
        s.finish();
    }
}

#[test]
fn tokens_are_read_from_every_configured_header_with_a_case_insensitive_scheme() {
    let s = Stack::start("headers");
    let t = ec(json!({}));
    let cases: [(&str, String, &str); 4] = [
        ("x-service-token", t.clone(), "x-service-token"),
        ("lower-case scheme", format!("bearer {t}"), "authorization"),
        ("upper-case scheme", format!("BEARER {t}"), "authorization"),
        (
            "whitespace around the token",
            format!("Bearer   {t}\t "),
            "authorization",
        ),
    ];
    for (case, value, header) in &cases {
        let sent = s.send("GET", "/orders", &[(*header, value.as_str())], Some(&t));
        let seen = s.allowed(&sent, case);
        assert_eq!(
            seen.header("x-service-name"),
            Some("orders-service"),
            "{case}"
        );
        // forward_token defaults to true: the token header goes on to the upstream.
        assert!(
            seen.header(header).is_some_and(|v| v.contains(t.as_str())),
            "{case}: the token header should be forwarded"
        );
    }
    // Another scheme in the Authorization header is no token at all.
    let basic = s.send(
        "GET",
        "/orders",
        &[("authorization", "Basic dXNlcjpwYXNz")],
        None,
    );
    s.denied(&basic, "Basic scheme", 401, "token_missing", NO_TOKEN, None);
    let empty = s.send("GET", "/orders", &[("authorization", "Bearer ")], None);
    s.denied(&empty, "empty bearer", 401, "token_missing", NO_TOKEN, None);
    s.finish();
}

// ------------------------------------------------------------------- missing / invalid ---------

#[test]
fn protected_route_without_token_is_denied_with_401_and_a_bare_challenge() {
    let s = Stack::start("missing");
    let sent = s.send("GET", "/orders/42?page=2", &[], None);
    s.denied(&sent, "no token", 401, "token_missing", NO_TOKEN, None);
    assert_eq!(s.upstream.request_count(), 0);
    // Without a client request id, Envoy's generated one is the body's and the log's.
    let resp = http(s.envoy.port(), "POST", "/write", &[]);
    assert_eq!(resp.status, 401);
    let generated = resp.json()["request_id"].as_str().unwrap().to_string();
    assert!(!generated.is_empty());
    s.envoy
        .wait_log_contains(&format!(r#""request_id":"{generated}""#), WAIT);
    let lines = s.finish();
    let line = lines
        .iter()
        .find(|l| l["request_id"] == generated.as_str())
        .unwrap_or_else(|| panic!("no denial line for Envoy's request id {generated}"));
    assert_eq!(line["path"], "/write");
}

#[test]
fn expired_and_not_yet_valid_tokens_are_rejected_beyond_the_clock_skew_only() {
    let s = Stack::start("time");
    let n = now();
    let cases = [
        (
            "expired beyond skew",
            ec(json!({"iat": n - 600, "exp": n - 120})),
            Some(("token_expired", "token expired")),
        ),
        (
            "expired within skew",
            ec(json!({"iat": n - 600, "exp": n - 20})),
            None,
        ),
        (
            "not yet valid beyond skew",
            ec(json!({"nbf": n + 180})),
            Some(("token_not_yet_valid", "token not yet valid")),
        ),
        (
            "not yet valid within skew",
            ec(json!({"nbf": n + 20})),
            None,
        ),
        (
            "issued in the future",
            ec(json!({"iat": n + 180, "exp": n + 600})),
            Some(("issued_in_future", "token issued in the future")),
        ),
        (
            "no exp",
            ec(json!({"exp": null})),
            Some(("exp_missing", "token has no expiry")),
        ),
    ];
    for (case, t, want) in &cases {
        let sent = s.get("/orders", t);
        match want {
            None => {
                s.allowed(&sent, case);
            }
            Some((reason, description)) => s.denied(
                &sent,
                case,
                401,
                reason,
                &invalid_token(description),
                Some("orders-service"),
            ),
        }
    }
    s.finish();
}

#[test]
fn tokens_for_another_issuer_or_audience_are_rejected() {
    let s = Stack::start("issaud");
    let wrong_iss = ec(json!({"iss": "https://evil.example"}));
    let sent = s.get("/orders", &wrong_iss);
    let challenge = invalid_token("token issuer not accepted");
    s.denied(
        &sent,
        "wrong issuer",
        401,
        "issuer_mismatch",
        &challenge,
        None,
    );
    for (case, aud) in [
        ("wrong audience", json!("payments")),
        ("wrong audience list", json!(["payments", "billing"])),
        ("no audience", Value::Null),
    ] {
        let sent = s.get("/orders", &ec(json!({ "aud": aud })));
        let challenge = invalid_token("token audience not accepted");
        s.denied(
            &sent,
            case,
            401,
            "audience_mismatch",
            &challenge,
            Some("orders-service"),
        );
    }
    let sent = s.get("/orders", &ec(json!({"aud": ["payments", "orders"]})));
    s.allowed(&sent, "one audience of a list");
    s.finish();
}

#[test]
fn forged_and_malformed_tokens_are_rejected_with_401_invalid_token() {
    let s = Stack::start("forged");
    let good = ec(json!({}));
    let (head, _) = good.rsplit_once('.').unwrap();
    let other = ec(json!({"sub": "someone-else"}));
    let bad_signature = format!("{head}.{}", other.rsplit_once('.').unwrap().1);
    let payload = claims(json!({})).to_string();
    // The valid token's claims under the headers {"alg":"none"} and {"alg":"none","typ":"JWT"}.
    let good_claims = good.split('.').nth(1).unwrap();
    let alg_none = format!("eyJhbGciOiJub25lIn0.{good_claims}.c2ln");
    let alg_none_unsigned = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{good_claims}.");
    let rsa_public_pem = {
        use rsa::pkcs8::EncodePublicKey as _;
        let SigningKey::Rsa(k) = fixtures::signing_key(Fixture::RsaA) else {
            unreachable!("the rsa-a fixture is an RSA key")
        };
        k.to_public_key()
            .to_public_key_pem(rsa::pkcs8::LineEnding::LF)
            .unwrap()
    };
    let pem_key = SigningKey::Hmac(rsa_public_pem.into_bytes());
    let hs256_with_pem = sign_raw(
        &pem_key,
        Alg::HS256,
        r#"{"alg":"HS256","typ":"JWT","kid":"rsa-a"}"#,
        &payload,
    )
    .unwrap();
    let hs256_with_pem_no_kid = sign_raw(
        &pem_key,
        Alg::HS256,
        r#"{"alg":"HS256","typ":"JWT"}"#,
        &payload,
    )
    .unwrap();
    let mut kid = Map::new();
    kid.insert("kid".into(), "no-such-key".into());
    let unknown_kid = sign(
        &fixtures::signing_key(Fixture::Ec256),
        Alg::ES256,
        &kid,
        &claims(json!({})),
    )
    .unwrap();
    let crit = sign_raw(
        &fixtures::signing_key(Fixture::Ec256),
        Alg::ES256,
        r#"{"alg":"ES256","kid":"ec256","crit":["exp-ext"],"exp-ext":1}"#,
        &payload,
    )
    .unwrap();
    // A real, well-signed token above max_token_bytes (8192); far below Envoy's 60 KiB limit.
    let oversize = ec(json!({"padding": "p".repeat(9000)}));
    assert!(oversize.len() > 9000);
    let garbage = "garbage-not-a-jwt-4f1c2e".to_string();
    let jwe = "eyJhbGciOiJSU0EtT0FFUCJ9.a.b.c.d".to_string();

    let known = Some("orders-service");
    let cases: Vec<(&str, &String, &str, &str, Option<&str>)> = vec![
        (
            "bad signature",
            &bad_signature,
            "bad_signature",
            "token signature is invalid",
            known,
        ),
        (
            "alg none",
            &alg_none,
            "alg_not_allowed",
            "token algorithm not allowed",
            None,
        ),
        (
            "alg none without a signature",
            &alg_none_unsigned,
            "token_malformed",
            "malformed token",
            None,
        ),
        (
            "HS256 keyed with the RSA public key PEM, kid rsa-a",
            &hs256_with_pem,
            "bad_signature",
            "token signature is invalid",
            known,
        ),
        (
            "HS256 keyed with the RSA public key PEM, no kid",
            &hs256_with_pem_no_kid,
            "bad_signature",
            "token signature is invalid",
            known,
        ),
        (
            "unknown kid",
            &unknown_kid,
            "unknown_kid",
            "no key matches the token's key id",
            known,
        ),
        (
            "crit header",
            &crit,
            "crit_unsupported",
            "token has unsupported critical header parameters",
            None,
        ),
        (
            "garbage",
            &garbage,
            "token_malformed",
            "malformed token",
            None,
        ),
        ("JWE", &jwe, "token_malformed", "malformed token", None),
        (
            "oversize",
            &oversize,
            "token_too_large",
            "token too large",
            None,
        ),
    ];
    for (case, t, reason, description, subject) in cases {
        let sent = s.get("/orders", t);
        s.denied(
            &sent,
            case,
            401,
            reason,
            &invalid_token(description),
            subject,
        );
    }
    // The same oversize token in the other configured header.
    let sent = s.send(
        "GET",
        "/orders",
        &[("x-service-token", &oversize)],
        Some(&oversize),
    );
    let challenge = invalid_token("token too large");
    s.denied(
        &sent,
        "oversize in x-service-token",
        401,
        "token_too_large",
        &challenge,
        None,
    );
    s.finish();
}

#[test]
fn two_tokens_in_one_request_are_a_400_invalid_request() {
    let s = Stack::start("two");
    let t = ec(json!({}));
    let u = hmac_token(Alg::HS256, &claims(json!({})));
    let (auth_t, auth_u) = (bearer(&t), bearer(&u));
    let challenge = r#"Bearer realm="svcauth", error="invalid_request", error_description="more than one token in the request""#;
    let cases: [(&str, Vec<(&str, &str)>); 4] = [
        (
            "authorization and x-service-token",
            vec![("authorization", &auth_t), ("x-service-token", &u)],
        ),
        (
            "two x-service-token headers",
            vec![("x-service-token", &t), ("x-service-token", &u)],
        ),
        (
            // Envoy joins these into one value: "Bearer t,Bearer u".
            "two authorization headers",
            vec![("authorization", &auth_t), ("Authorization", &auth_u)],
        ),
        (
            "the same token twice",
            vec![("authorization", &auth_t), ("x-service-token", &t)],
        ),
    ];
    for (case, headers) in &cases {
        s.tokens.borrow_mut().push(u.clone());
        let sent = s.send("GET", "/orders", headers, Some(&t));
        s.denied(&sent, case, 400, "multiple_tokens", challenge, None);
    }
    s.finish();
}

// ------------------------------------------------------------------- scopes and rules --------

#[test]
fn missing_scope_is_403_insufficient_scope_naming_the_required_scopes() {
    let s = Stack::start("scope403");
    let known = Some("orders-service");
    let read_only = ec(json!({}));
    let sent = s.get("/write/7", &read_only);
    let want = insufficient_scope("orders:read orders:write");
    s.denied(
        &sent,
        "/write with orders:read",
        403,
        "insufficient_scope",
        &want,
        known,
    );
    let payments = ec(json!({"scope": "payments:read"}));
    let sent = s.get("/orders", &payments);
    let want = insufficient_scope("orders:read orders:write");
    s.denied(
        &sent,
        "/ with payments:read",
        403,
        "insufficient_scope",
        &want,
        known,
    );
    let sent = s.get("/ai/models", &ec(json!({"scope": "ai-services-read"})));
    let want = insufficient_scope("ai-services:read");
    s.denied(
        &sent,
        "/ai/ look-alike scope",
        403,
        "insufficient_scope",
        &want,
        known,
    );
    // A bare "*" is no wildcard, nor is a prefix without the namespace colon.
    for scope in ["*", "orders*"] {
        let sent = s.get("/orders", &ec(json!({ "scope": scope })));
        let want = insufficient_scope("orders:read orders:write");
        s.denied(&sent, scope, 403, "insufficient_scope", &want, known);
    }
    s.finish();
}

#[test]
fn scopes_are_granted_as_strings_lists_and_namespace_wildcards() {
    let s = Stack::start("scope200");
    let cases: [(&str, &str, Value); 7] = [
        (
            "space-separated scope string",
            "/write",
            json!({"scope": "orders:read orders:write"}),
        ),
        (
            "scp list",
            "/write",
            json!({"scope": null, "scp": ["orders:read", "orders:write"]}),
        ),
        (
            "scopes list",
            "/orders",
            json!({"scope": null, "scopes": ["orders:write"]}),
        ),
        (
            "namespace wildcard",
            "/ai/x",
            json!({"scope": "ai-services:*"}),
        ),
        (
            "wildcard for scopes_all",
            "/write",
            json!({"scope": "orders:*"}),
        ),
        (
            "requires {} with no scope at all",
            "/any-token",
            json!({"scope": null}),
        ),
        (
            "requires {} with an unrelated scope",
            "/any-token/x",
            json!({"scope": "x:y"}),
        ),
    ];
    for (case, path, changes) in &cases {
        let t = ec(changes.clone());
        let seen = s.allowed(&s.get(path, &t), case);
        assert_eq!(
            seen.header("x-service-name"),
            Some("orders-service"),
            "{case}"
        );
    }
    let seen = s.allowed(
        &s.get(
            "/write",
            &ec(json!({"scope": null, "scp": ["orders:read", "orders:write"]})),
        ),
        "scp",
    );
    assert_eq!(
        seen.header("x-service-scopes"),
        Some("orders:read orders:write"),
        "a scope list is forwarded space-separated"
    );
    s.finish();
}

#[test]
fn a_method_restricted_rule_applies_only_to_its_methods() {
    let s = Stack::start("methods");
    let known = Some("orders-service");
    let admin = ec(json!({"scope": "internal:admin"}));
    let reader = ec(json!({}));
    s.allowed(
        &s.call("POST", "/admin/rotate", &admin),
        "POST with internal:admin",
    );
    let sent = s.call("POST", "/admin/rotate", &reader);
    let want = insufficient_scope("internal:admin");
    s.denied(
        &sent,
        "POST with orders:read",
        403,
        "insufficient_scope",
        &want,
        known,
    );
    // GET matches no admin rule: the catch-all rule (orders:read | orders:write) applies.
    s.allowed(
        &s.call("GET", "/admin/rotate", &reader),
        "GET with orders:read",
    );
    let sent = s.call("GET", "/admin/rotate", &admin);
    let want = insufficient_scope("orders:read orders:write");
    s.denied(
        &sent,
        "GET with internal:admin",
        403,
        "insufficient_scope",
        &want,
        known,
    );
    // The rule is an exact path: /admin/rotate/now is the catch-all's.
    s.allowed(
        &s.call("POST", "/admin/rotate/now", &reader),
        "POST below the exact path",
    );
    s.finish();
}

#[test]
fn open_routes_and_cors_preflights_pass_without_a_token_but_ambiguous_paths_match_no_rule() {
    // The preflight bypass is off by default since issue 12: this stack turns it on.
    let mut config = fixtures::config_json();
    config["bypass_cors_preflight"] = json!(true);
    let s = Stack::start_with("open", &config);
    for path in ["/health", "/health/live?verbose=1"] {
        let seen = s.allowed(&s.send("GET", path, &[], None), path);
        assert_eq!(seen.path, path);
        assert_eq!(seen.header("x-service-name"), None);
        assert_eq!(seen.header("x-svcauth-service"), None);
    }
    let preflight = [
        ("origin", "https://app.example"),
        ("access-control-request-method", "POST"),
    ];
    let seen = s.allowed(
        &s.send("OPTIONS", "/orders", &preflight, None),
        "CORS preflight",
    );
    assert_eq!(seen.method, "OPTIONS");
    // An OPTIONS that is not a preflight needs a token like any other method.
    let sent = s.send(
        "OPTIONS",
        "/orders",
        &[("origin", "https://app.example")],
        None,
    );
    s.denied(
        &sent,
        "OPTIONS without a requested method",
        401,
        "token_missing",
        NO_TOKEN,
        None,
    );
    // Refused before any rule since issue 12 (they matched no rule, 403, before).
    let no_rule =
        r#"Bearer realm="svcauth", error="invalid_request", error_description="ambiguous path""#;
    for path in [
        "/health/../orders",
        "/health/./../admin/rotate",
        "/health/%2e%2e/orders",
        "/health%2F..%2Forders",
        "/health/..%2forders",
    ] {
        let sent = s.send("GET", path, &[], None);
        s.denied(&sent, path, 400, "ambiguous_path", no_rule, None);
    }
    // Even with a valid token: the path is refused, not guessed at.
    let t = ec(json!({}));
    let sent = s.get("/orders/../write", &t);
    s.denied(
        &sent,
        "dot segments with a token",
        400,
        "ambiguous_path",
        no_rule,
        None,
    );
    s.finish();
}

// ------------------------------------------------------------------- identity headers -------

#[test]
fn identity_headers_reach_the_upstream_and_client_copies_never_do() {
    let mut config = fixtures::config_json();
    config["bypass_cors_preflight"] = json!(true);
    let s = Stack::start_with("identity", &config);
    let mut spoofed: Vec<(&str, &str)> = Vec::new();
    for name in SPOOFABLE {
        spoofed.push((name, "spoofed"));
    }
    spoofed.push(("X-Service-Name", "spoofed-again"));
    spoofed.push(("X-Tenant-Id", "spoofed-again"));

    // Allowed with a token: one value each, the filter's.
    let t = ec(json!({"tenant_id": "acme", "scope": "orders:read orders:write"}));
    let auth = bearer(&t);
    let mut headers = vec![("authorization", auth.as_str())];
    headers.extend_from_slice(&spoofed);
    let seen = s.allowed(&s.send("GET", "/orders", &headers, Some(&t)), "allowed");
    let one = |name: &str| seen.header_all(name);
    assert_eq!(one("x-service-name"), ["orders-service"]);
    assert_eq!(one("x-service-scopes"), ["orders:read orders:write"]);
    assert_eq!(one("x-tenant-id"), ["acme"]);
    // The decision tags are filter state (decision_tags defaults to filter_state): none of the
    // x-svcauth-* headers reaches the upstream, neither the filter's nor the client's.
    for name in TAG_HEADERS {
        assert_eq!(one(name), Vec::<&str>::new(), "{name}");
    }
    assert_eq!(
        one("authorization"),
        [auth.as_str()],
        "forward_token defaults to true"
    );
    assert!(seen.header("x-request-id").is_some());
    assert!(
        seen.header("traceparent").is_some(),
        "a traceparent is added when missing"
    );

    // A numeric claim becomes its decimal text; no claim, no header (and no client copy).
    let t = ec(json!({"tenant_id": 42}));
    let auth = bearer(&t);
    let seen = s.allowed(
        &s.send(
            "GET",
            "/orders",
            &[("authorization", &auth), ("x-tenant-id", "spoofed")],
            Some(&t),
        ),
        "numeric tenant",
    );
    assert_eq!(seen.header_all("x-tenant-id"), ["42"]);
    let t = ec(json!({}));
    let auth = bearer(&t);
    let seen = s.allowed(
        &s.send(
            "GET",
            "/orders",
            &[("authorization", &auth), ("x-tenant-id", "spoofed")],
            Some(&t),
        ),
        "no tenant claim",
    );
    assert_eq!(seen.header("x-tenant-id"), None);

    // An open route and a CORS preflight: no identity at all, and no tag header.
    let seen = s.allowed(&s.send("GET", "/health", &spoofed, None), "open route");
    let mut preflight = spoofed.clone();
    preflight.push(("origin", "https://app.example"));
    preflight.push(("access-control-request-method", "GET"));
    let seen_preflight = s.allowed(&s.send("OPTIONS", "/orders", &preflight, None), "preflight");
    for (case, seen) in [("open route", &seen), ("preflight", &seen_preflight)] {
        for name in [
            "x-service-name",
            "x-service-scopes",
            "x-tenant-id",
            "x-svcauth-decision",
            "x-svcauth-service",
            "x-svcauth-reason",
            "x-svcauth-provider",
        ] {
            assert_eq!(
                seen.header(name),
                None,
                "{case}: {name}; headers {:?}",
                seen.headers
            );
        }
        assert!(
            !seen.headers.iter().any(|(_, v)| v.starts_with("spoofed")),
            "{case}: a client copy reached the upstream: {:?}",
            seen.headers
        );
    }
    s.finish();
}

#[test]
fn forward_token_false_strips_the_token_header_before_the_upstream() {
    let mut config = fixtures::config_json();
    config["providers"]["internal"]["forward_token"] = json!(false);
    let s = Stack::start_with("noforward", &config);
    let t = ec(json!({}));
    let seen = s.allowed(&s.get("/orders", &t), "authorization");
    assert_eq!(
        seen.header("authorization"),
        None,
        "headers {:?}",
        seen.headers
    );
    assert_eq!(seen.header("x-service-name"), Some("orders-service"));
    let sent = s.send("GET", "/orders", &[("x-service-token", &t)], Some(&t));
    let seen = s.allowed(&sent, "x-service-token");
    assert_eq!(
        seen.header("x-service-token"),
        None,
        "headers {:?}",
        seen.headers
    );
    assert!(
        !seen.headers.iter().any(|(_, v)| v.contains(t.as_str())),
        "the token reached the upstream"
    );
    // An open route is not a token check: what the client sends there is passed on as is.
    let seen = s.allowed(&s.get("/health", &t), "open route");
    assert!(seen.header("authorization").is_some());
    s.finish();
}

// ------------------------------------------------------------------- log and stats ----------

#[test]
fn a_denial_is_logged_as_one_json_line_with_a_short_token_hash_and_never_the_token() {
    let s = Stack::start("logline");
    let t = ec(json!({"scope": "nothing:here"}));
    let auth = bearer(&t);
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let sent = s.send(
        "DELETE",
        "/orders/9?token=also-secret",
        &[("authorization", &auth), ("traceparent", traceparent)],
        Some(&t),
    );
    let want = insufficient_scope("orders:read orders:write");
    s.denied(
        &sent,
        "scope",
        403,
        "insufficient_scope",
        &want,
        Some("orders-service"),
    );
    let id = sent.request_id.clone();
    let lines = s.finish();
    let line = lines
        .iter()
        .find(|l| l["request_id"] == id.as_str())
        .unwrap();
    let keys: Vec<&str> = line
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    for key in [
        "svcauth",
        "reason",
        "status",
        "provider",
        "subject",
        "method",
        "path",
        "request_id",
        "trace_id",
        "token_sha256",
    ] {
        assert!(keys.contains(&key), "{key} missing from {line}");
    }
    assert_eq!(line["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(
        line["path"], "/orders/9",
        "the query string is never logged"
    );
    assert!(!line.to_string().contains("also-secret"));
    assert_eq!(line["token_sha256"], short_hash(&t));
}

#[test]
fn svcauth_counters_are_exported_in_stats_and_prometheus() {
    let s = Stack::start("stats");
    let t = ec(json!({}));
    s.allowed(&s.get("/orders", &t), "first call: cache miss");
    s.allowed(&s.get("/orders", &t), "second call: cache hit");
    s.allowed(&s.send("GET", "/health", &[], None), "open route");
    let sent = s.send("GET", "/orders", &[], None);
    s.denied(&sent, "no token", 401, "token_missing", NO_TOKEN, None);
    let sent = s.get("/write", &t);
    let want = insufficient_scope("orders:read orders:write");
    s.denied(
        &sent,
        "scope",
        403,
        "insufficient_scope",
        &want,
        Some("orders-service"),
    );
    s.envoy.settle_counters();
    let stats = s.envoy.admin("/stats?filter=svcauth").body;
    let expect = [
        ("wasmcustom.svcauth.allowed", 3),
        ("wasmcustom.svcauth.denied", 2),
        ("wasmcustom.svcauth.denied.token_missing", 1),
        ("wasmcustom.svcauth.denied.insufficient_scope", 1),
        ("wasmcustom.svcauth.denied.bad_signature", 0),
        ("wasmcustom.svcauth.cache_miss", 1),
        ("wasmcustom.svcauth.cache_hit", 2),
    ];
    for (name, value) in expect {
        assert_eq!(s.envoy.stat(name), Some(value), "{name}; /stats:\n{stats}");
    }
    // Every reason code has its counter from the start.
    for code in [
        "token_missing",
        "multiple_tokens",
        "token_too_large",
        "token_malformed",
        "alg_not_allowed",
        "crit_unsupported",
        "unknown_kid",
        "bad_signature",
        "exp_missing",
        "token_expired",
        "token_not_yet_valid",
        "issued_in_future",
        "lifetime_too_long",
        "issuer_mismatch",
        "audience_mismatch",
        "claim_mismatch",
        "wrong_token_location",
        "provider_not_allowed",
        "insufficient_scope",
        "no_matching_rule",
        "keys_unavailable",
        "ambiguous_path",
        "clock_unavailable",
    ] {
        let name = format!("wasmcustom.svcauth.denied.{code}: ");
        assert!(
            stats.contains(&name),
            "{name} missing from /stats:\n{stats}"
        );
    }
    // Prometheus drops Envoy's `wasmcustom.` namespace and adds no `envoy_` prefix.
    let prom = s.envoy.admin("/stats/prometheus").body;
    for line in [
        "# TYPE svcauth_allowed counter",
        "svcauth_allowed{} 3",
        "svcauth_denied{} 2",
        "svcauth_denied_token_missing{} 1",
        "svcauth_denied_insufficient_scope{} 1",
        "svcauth_cache_hit{} 2",
        "svcauth_cache_miss{} 1",
    ] {
        assert!(
            prom.lines().any(|l| l == line),
            "{line:?} missing from /stats/prometheus:\n{}",
            prom.lines()
                .filter(|l| l.contains("svcauth"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    s.finish();
}

// ------------------------------------------------------------------- refused configs --------

/// A bad plugin config must fail `envoy --mode validate` and a real start, both logging
/// `svcauth: invalid configuration: <message>`.
fn assert_refused(config: &Value, opts: &Opts, message: &str) {
    let yaml = bootstrap(&config.to_string(), opts);
    let want = format!("svcauth: invalid configuration: {message}");
    let (valid, output) = Envoy::validate(&yaml);
    assert!(
        !valid,
        "envoy --mode validate accepted a bad plugin config:\n{output}"
    );
    assert!(
        output.contains(&want),
        "validate should log {want:?}; output:\n{}",
        svcauth_tests::tail(&output, 40)
    );
    let log = Envoy::start_expect_failure(&yaml, Duration::from_secs(30));
    assert!(
        log.contains(&want),
        "a real start should log {want:?}; log:\n{}",
        svcauth_tests::tail(&log, 40)
    );
    assert!(!log.contains(fixtures::HMAC_SECRET));
}

fn opts_with_secret() -> Opts {
    // No upstream is needed: nothing is ever served.
    Opts::new(9).env(fixtures::HMAC_ENV, fixtures::HMAC_SECRET)
}

#[test]
fn plugin_config_with_an_unknown_field_is_refused_at_load_naming_the_field() {
    let mut config = fixtures::config_json();
    config["providers"]["internal"]["bogus_field"] = json!(true);
    assert_refused(
        &config,
        &opts_with_secret(),
        "providers.internal.bogus_field: unknown field `bogus_field`",
    );
}

#[test]
fn plugin_config_with_a_bad_jwks_is_refused_at_load() {
    let mut config = fixtures::config_json();
    config["providers"]["internal"]["jwks"] =
        json!({"keys": [{"kty": "RSA", "kid": "k", "n": "AQAB"}]});
    assert_refused(
        &config,
        &opts_with_secret(),
        r#"providers.internal.jwks: unusable key: key 0 (kid "k"): missing "e""#,
    );
}

#[test]
fn plugin_config_with_a_rule_naming_an_unknown_provider_is_refused_at_load() {
    let mut config = fixtures::config_json();
    config["rules"][5]["requires"]["providers"] = json!(["ghost"]);
    assert_refused(
        &config,
        &opts_with_secret(),
        "rules[5].requires.providers: unknown provider \"ghost\"",
    );
}

#[test]
fn plugin_config_whose_hmac_secret_variable_is_not_set_is_refused_at_load() {
    assert_refused(
        &fixtures::config_json(),
        &Opts::new(9),
        "providers.internal.hmac_secret_env: environment variable SVCAUTH_TEST_HMAC is not set",
    );
}

// ------------------------------------------------------------------- the harness ------------

#[test]
fn harness_drives_a_plain_envoy_without_the_filter() {
    let upstream = EchoUpstream::start();
    let yaml = format!(
        r#"admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
static_resources:
  listeners:
  - name: main
    address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: plain
          generate_request_id: true
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{prefix: "/direct"}}
                direct_response: {{status: 418, body: {{inline_string: "teapot"}}}}
              - match: {{prefix: "/"}}
                route: {{cluster: upstream}}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: upstream
    type: STATIC
    connect_timeout: 2s
    load_assignment:
      cluster_name: upstream
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {}}}}}}}
"#,
        upstream.port()
    );
    assert!(Envoy::validate(&yaml).0, "plain bootstrap must validate");
    let envoy = Envoy::start(&yaml);
    assert_ne!(envoy.port(), envoy.admin_port());

    let direct = http(envoy.port(), "GET", "/direct", &[]);
    assert_eq!((direct.status, direct.body.as_str()), (418, "teapot"));

    let resp = http(
        envoy.port(),
        "POST",
        "/echo?q=1",
        &[("x-dup", "a"), ("X-Dup", "b")],
    );
    assert_eq!(resp.status, 200);
    let echoed = resp.json();
    assert_eq!(
        (echoed["method"].as_str(), echoed["path"].as_str()),
        (Some("POST"), Some("/echo?q=1"))
    );
    let seen = upstream.last_request().unwrap();
    assert_eq!(seen.header_all("x-dup"), ["a", "b"]);
    assert!(
        seen.header("x-request-id").is_some(),
        "Envoy generates a request id"
    );

    assert!(envoy.stats().contains("server.live: 1"));
    assert_eq!(envoy.stat("http.plain.downstream_rq_completed"), Some(2));
    envoy.wait_log_contains("starting main dispatch loop", WAIT);
}
