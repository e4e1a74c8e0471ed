//! The attack suite, through a real Envoy: what RFC 8725 (JWT best current practice) and the
//! known JWT CVEs try against a verifier, each as one row of a table with the status and reason
//! code svcauth must answer (the JSON body's `reason`), or the status Envoy answers itself when
//! the request never reaches the filter. After each table, Envoy must still be healthy: admin
//! `/ready` is 200, a valid token is still allowed, no wasm VM was re-created or failed, the
//! log shows no panic, and the filter's counters add up to the requests it saw.
//!
//! One Envoy serves the main table (223 rows in 12 groups); a second checks what reaches the
//! upstream (unicode identities intact, no injected or client-sent identity header); a third,
//! with `max_token_bytes` and Envoy's header limit raised, the oversized-input rows. Tokens are
//! minted at the real time (Envoy's clock is the host's).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::Duration;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use serde_json::{json, Value};
use svcauth_filter::fixtures::{self, hmac_token, Fixture};
use svcauth_filter::jws::Alg;
use svcauth_filter::mint::{sign, sign_raw, SigningKey};
use svcauth_tests::tokens::{claims, ec};
use svcauth_tests::{http, http_raw, now, EchoUpstream, Envoy, HttpServer, Opts, Reply, Response};

/// A token of the fixture key `ec256` over exactly this header and payload text.
fn ec_raw(header: &str, payload: &str) -> String {
    sign_raw(
        &fixtures::signing_key(Fixture::Ec256),
        Alg::ES256,
        header,
        payload,
    )
    .unwrap()
}

/// A token of `key` with `alg` and this header (object members besides `alg`).
fn signed(key: &SigningKey, alg: Alg, header: Value, claims: &Value) -> String {
    let Value::Object(h) = header else {
        panic!("header must be an object")
    };
    sign(key, alg, &h, claims).unwrap()
}

fn b64(s: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(s)
}

/// The standard claims as JSON text with `extra` members spliced in verbatim (for duplicate
/// members and numbers serde_json would not write).
fn payload_with(extra: &str) -> String {
    let base = claims(json!({})).to_string();
    format!("{},{extra}}}", base.trim_end_matches('}'))
}

// --------------------------------------------------------------- the table ------------------

/// What a row sends.
enum Send {
    /// `GET path` with these headers (in order, duplicates kept).
    Headers(String, Vec<(String, String)>),
    /// These bytes as they are (non-UTF-8 header values).
    Raw(Vec<u8>),
}

/// What a row expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    /// The filter allows it: 200 from the upstream.
    Allowed,
    /// The filter denies it: this status and reason code.
    Denied(u16, &'static str),
    /// Envoy answers before the filter runs (e.g. 431 for headers over its limit).
    Envoy(u16),
}

struct Case {
    name: String,
    send: Send,
    want: Want,
}

impl Case {
    fn headers(name: impl Into<String>, path: &str, headers: &[(&str, &str)], want: Want) -> Case {
        Case {
            name: name.into(),
            send: Send::Headers(
                path.to_string(),
                headers
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            want,
        }
    }

    /// `GET /orders` with `Authorization: Bearer <token>`.
    fn bearer(name: impl Into<String>, token: &str, want: Want) -> Case {
        Case::headers(
            name,
            "/orders",
            &[("authorization", &format!("Bearer {token}"))],
            want,
        )
    }

    fn raw(name: impl Into<String>, bytes: Vec<u8>, want: Want) -> Case {
        Case {
            name: name.into(),
            send: Send::Raw(bytes),
            want,
        }
    }
}

fn denied(status: u16, reason: &'static str) -> Want {
    Want::Denied(status, reason)
}

const MALFORMED: Want = Want::Denied(401, "token_malformed");
const BAD_SIG: Want = Want::Denied(401, "bad_signature");
const UNKNOWN_KID: Want = Want::Denied(401, "unknown_kid");
const ALG: Want = Want::Denied(401, "alg_not_allowed");
const TOO_LARGE: Want = Want::Denied(401, "token_too_large");
const MISSING: Want = Want::Denied(401, "token_missing");
const TWO: Want = Want::Denied(400, "multiple_tokens");

/// svcauth in Envoy before an echo upstream, with the VM and counter figures taken at start.
struct Target {
    upstream: EchoUpstream,
    envoy: Envoy,
    vms_created: u64,
    /// Requests the filter allowed and denied, as the table expects them.
    allowed: u64,
    denied: u64,
}

impl Target {
    /// Envoy with `config`; `opts` adds to the defaults (upstream, the fixture HMAC secret).
    fn start(config: &Value, opts: impl FnOnce(Opts) -> Opts) -> Target {
        let upstream = EchoUpstream::start();
        let base = Opts::new(upstream.port()).env(fixtures::HMAC_ENV, fixtures::HMAC_SECRET);
        let envoy = Envoy::start_plugin(&config.to_string(), &opts(base));
        let vms_created = envoy.stat("wasm.envoy.wasm.runtime.v8.created").unwrap();
        Target {
            upstream,
            envoy,
            vms_created,
            allowed: 0,
            denied: 0,
        }
    }

    fn send(&self, send: &Send) -> Response {
        match send {
            Send::Headers(path, headers) => {
                let h: Vec<(&str, &str)> = headers
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                http(self.envoy.port(), "GET", path, &h)
            }
            Send::Raw(bytes) => http_raw(self.envoy.port(), bytes),
        }
    }

    /// Runs every case; returns one line per case that did not get what it wants.
    fn run(&mut self, cases: &[Case]) -> Vec<String> {
        let mut failures = Vec::new();
        for case in cases {
            let resp = self.send(&case.send);
            let reason = serde_json::from_str::<Value>(&resp.body)
                .ok()
                .and_then(|b| b["reason"].as_str().map(str::to_string));
            let ok = match case.want {
                Want::Allowed => resp.status == 200 && reason.is_none(),
                Want::Denied(status, code) => {
                    resp.status == status && reason.as_deref() == Some(code)
                }
                Want::Envoy(status) => resp.status == status && reason.is_none(),
            };
            match case.want {
                Want::Allowed => self.allowed += 1,
                Want::Denied(..) => self.denied += 1,
                Want::Envoy(_) => {}
            }
            if !ok {
                failures.push(format!(
                    "{}: want {:?}, got {} {:?} (body {:?})",
                    case.name,
                    case.want,
                    resp.status,
                    reason,
                    truncate(&resp.body, 160)
                ));
            }
            if let Want::Denied(status, code) = case.want {
                // RFC 6750 §3.1: the challenge's error matches the status.
                let error = match (status, code) {
                    (401, "token_missing") => None,
                    (400, _) => Some("invalid_request"),
                    (401, _) => Some("invalid_token"),
                    _ => Some("insufficient_scope"),
                };
                let challenge = resp.header("www-authenticate").unwrap_or_default();
                let ok = challenge.starts_with("Bearer realm=\"svcauth\"")
                    && match error {
                        Some(e) => challenge.contains(&format!("error=\"{e}\"")),
                        None => !challenge.contains("error="),
                    };
                if !ok {
                    failures.push(format!("{}: challenge {challenge:?}", case.name));
                }
            }
        }
        failures
    }

    /// Envoy is still healthy: ready, serving a valid token, no VM re-created or failed, no
    /// panic in the log, and the filter counted exactly the requests the table sent it.
    fn assert_healthy(&mut self) {
        let envoy = &self.envoy;
        assert_eq!(envoy.admin("/ready").status, 200, "admin /ready");
        let auth = format!("Bearer {}", ec(json!({})));
        let ok = http(envoy.port(), "GET", "/orders", &[("authorization", &auth)]);
        assert_eq!(
            ok.status, 200,
            "a valid token after the attacks: {}",
            ok.body
        );
        self.allowed += 1;
        envoy.settle_counters();
        let stat = |n: &str| envoy.stat(n).unwrap_or_else(|| panic!("no stat {n}"));
        assert_eq!(
            stat("wasm.envoy.wasm.runtime.v8.created"),
            self.vms_created,
            "a wasm VM was created after start (one failed and was reloaded?)"
        );
        for failure in [
            "wasm.svcauth.vm_reload",
            "wasm.svcauth.vm_reload_failure",
            "wasm.svcauth.vm_reload_backoff",
        ] {
            assert_eq!(stat(failure), 0, "{failure}");
        }
        let log = envoy.log();
        for marker in [
            "panicked",
            "Wasm VM failed",
            "wasm trap",
            "Function: proxy_on",
        ] {
            assert!(!log.contains(marker), "Envoy log shows {marker:?}");
        }
        assert_eq!(stat("wasmcustom.svcauth.allowed"), self.allowed, "allowed");
        assert_eq!(stat("wasmcustom.svcauth.denied"), self.denied, "denied");
    }
}

fn truncate(s: &str, n: usize) -> &str {
    s.get(..n).unwrap_or(s)
}

fn assert_no_failures(failures: Vec<String>) {
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

// --------------------------------------------------------------- the rows -------------------

/// `alg: none` in every case, with and without a signature (RFC 8725 §2.1, CVE-2015-9235).
fn alg_none_cases() -> Vec<Case> {
    let p = b64(claims(json!({})).to_string());
    let mut v = Vec::new();
    for alg in ["none", "None", "NONE", "nOnE"] {
        let h = b64(format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#));
        v.push(Case::bearer(
            format!("alg {alg}, empty signature"),
            &format!("{h}.{p}."),
            MALFORMED,
        ));
        v.push(Case::bearer(
            format!("alg {alg}, some signature"),
            &format!("{h}.{p}.c2ln"),
            ALG,
        ));
        v.push(Case::bearer(
            format!("alg {alg}, two segments"),
            &format!("{h}.{p}"),
            MALFORMED,
        ));
    }
    let payload = claims(json!({})).to_string();
    for (name, header, want) in [
        ("alg missing", r#"{"kid":"ec256"}"#, MALFORMED),
        ("alg empty", r#"{"alg":"","kid":"ec256"}"#, ALG),
        ("alg null", r#"{"alg":null,"kid":"ec256"}"#, MALFORMED),
        ("alg a number", r#"{"alg":256,"kid":"ec256"}"#, MALFORMED),
        ("alg lower case", r#"{"alg":"es256","kid":"ec256"}"#, ALG),
        (
            "alg with a trailing space",
            r#"{"alg":"ES256 ","kid":"ec256"}"#,
            ALG,
        ),
        ("alg of JWE", r#"{"alg":"RSA-OAEP","kid":"ec256"}"#, ALG),
        (
            "alg a list",
            r#"{"alg":["ES256"],"kid":"ec256"}"#,
            MALFORMED,
        ),
    ] {
        // Signed by the real key over exactly this header: only the header is wrong.
        v.push(Case::bearer(name, &ec_raw(header, &payload), want));
    }
    v
}

/// HS256/384/512 keyed with the provider's own public keys, in every form a confused verifier
/// might use as an HMAC secret (CVE-2016-10555, CVE-2022-29217, RFC 8725 §2.1).
/// `vm_crypto`: for the fallback build, which has RSA-PSS; the default build has no PS*
/// algorithm at all (a PS* token is `alg_not_allowed` there before any key is chosen).
fn key_confusion_cases(vm_crypto: bool) -> Vec<Case> {
    use rsa::pkcs1::EncodeRsaPublicKey as _;
    use rsa::pkcs8::EncodePublicKey as _;
    use rsa::traits::PublicKeyParts as _;
    let SigningKey::Rsa(rsa) = fixtures::signing_key(Fixture::RsaA) else {
        unreachable!("rsa-a is an RSA key")
    };
    let SigningKey::P256(ec) = fixtures::signing_key(Fixture::Ec256) else {
        unreachable!("ec256 is a P-256 key")
    };
    let rsa = rsa.to_public_key();
    let ec = *ec.verifying_key();
    let lf = rsa::pkcs8::LineEnding::LF;
    let forms: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "RSA SPKI PEM",
            rsa.to_public_key_pem(lf).unwrap().into_bytes(),
            "rsa-a",
        ),
        (
            "RSA PKCS#1 PEM",
            rsa.to_pkcs1_pem(lf).unwrap().into_bytes(),
            "rsa-a",
        ),
        (
            "RSA SPKI DER",
            rsa.to_public_key_der().unwrap().as_bytes().to_vec(),
            "rsa-a",
        ),
        (
            "RSA JWK",
            fixtures::public_jwk(Fixture::RsaA, "rsa-a")
                .to_string()
                .into_bytes(),
            "rsa-a",
        ),
        ("RSA modulus", rsa.n_bytes().to_vec(), "rsa-a"),
        (
            "EC SPKI PEM",
            ec.to_public_key_pem(lf).unwrap().into_bytes(),
            "ec256",
        ),
        (
            "EC SPKI DER",
            ec.to_public_key_der().unwrap().as_bytes().to_vec(),
            "ec256",
        ),
        (
            "EC JWK",
            fixtures::public_jwk(Fixture::Ec256, "ec256")
                .to_string()
                .into_bytes(),
            "ec256",
        ),
        (
            "EC SEC1 point",
            ec.to_sec1_point(false).as_bytes().to_vec(),
            "ec256",
        ),
    ];
    let payload = claims(json!({})).to_string();
    let mut v = Vec::new();
    for alg in [Alg::HS256, Alg::HS384, Alg::HS512] {
        for (form, secret, kid) in &forms {
            let key = SigningKey::Hmac(secret.clone());
            for kid in [Some(*kid), None] {
                let header = match kid {
                    Some(k) => format!(r#"{{"alg":"{}","typ":"JWT","kid":"{k}"}}"#, alg.name()),
                    None => format!(r#"{{"alg":"{}","typ":"JWT"}}"#, alg.name()),
                };
                let t = sign_raw(&key, alg, &header, &payload).unwrap();
                let name = format!("{} keyed with the {form}, kid {kid:?}", alg.name());
                v.push(Case::bearer(name, &t, BAD_SIG));
            }
        }
    }
    // The token's alg against the key's type and the JWK's own alg.
    let c = claims(json!({}));
    let with_kid = |f: Fixture, alg: Alg, kid: &str| {
        signed(&fixtures::signing_key(f), alg, json!({"kid": kid}), &c)
    };
    v.extend([
        Case::bearer(
            "ES256 naming the RSA key",
            &with_kid(Fixture::Ec256, Alg::ES256, "rsa-a"),
            UNKNOWN_KID,
        ),
        Case::bearer(
            "RS256 naming the EC key",
            &with_kid(Fixture::RsaA, Alg::RS256, "ec256"),
            UNKNOWN_KID,
        ),
        Case::bearer(
            "EdDSA naming the EC key",
            &with_kid(Fixture::Ed25519, Alg::EdDSA, "ec256"),
            UNKNOWN_KID,
        ),
        Case::bearer(
            "ES384 naming the P-256 key",
            &with_kid(Fixture::Ec384, Alg::ES384, "ec256"),
            UNKNOWN_KID,
        ),
        // rsa-b's JWK says alg RS256: PS256 with it is refused even though the key could.
        Case::bearer(
            "PS256 with a key whose JWK says RS256",
            &with_kid(Fixture::RsaB, Alg::PS256, "rsa-b"),
            if vm_crypto { UNKNOWN_KID } else { ALG },
        ),
        Case::bearer(
            "control: RS256 with rsa-b",
            &with_kid(Fixture::RsaB, Alg::RS256, "rsa-b"),
            Want::Allowed,
        ),
    ]);
    v
}

/// `jwk`, `jku`, `x5u` and `x5c` header parameters: never fetched, never trusted (RFC 8725
/// §3.10, CVE-2018-0114). `url` is a live server holding the attacker's key set.
fn header_parameter_cases(url: &str, attacker: &SigningKey) -> Vec<Case> {
    let ajwk = attacker.public_jwk("attacker", Some(Alg::ES256)).unwrap();
    let x5c = {
        use rsa::pkcs8::EncodePublicKey as _;
        let SigningKey::P256(k) = attacker else {
            unreachable!("the attacker key is P-256")
        };
        STANDARD.encode(k.verifying_key().to_public_key_der().unwrap().as_bytes())
    };
    let c = claims(json!({}));
    let by_attacker = |h: Value| signed(attacker, Alg::ES256, h, &c);
    vec![
        Case::bearer(
            "jwk embedded, kid attacker",
            &by_attacker(json!({"kid": "attacker", "jwk": ajwk})),
            UNKNOWN_KID,
        ),
        Case::bearer(
            "jwk embedded, no kid",
            &by_attacker(json!({"jwk": ajwk})),
            BAD_SIG,
        ),
        Case::bearer(
            "jwk embedded, kid ec256",
            &by_attacker(json!({"kid": "ec256", "jwk": ajwk})),
            BAD_SIG,
        ),
        Case::bearer(
            "jku to the attacker's JWKS, kid attacker",
            &by_attacker(json!({"kid": "attacker", "jku": url})),
            UNKNOWN_KID,
        ),
        Case::bearer(
            "jku to the attacker's JWKS, kid ec256",
            &by_attacker(json!({"kid": "ec256", "jku": url})),
            BAD_SIG,
        ),
        Case::bearer(
            "x5u to the attacker, kid attacker",
            &by_attacker(json!({"kid": "attacker", "x5u": url})),
            UNKNOWN_KID,
        ),
        Case::bearer(
            "x5c with the attacker's key, kid ec256",
            &by_attacker(json!({"kid": "ec256", "x5c": [x5c]})),
            BAD_SIG,
        ),
        Case::bearer(
            "x5c with the attacker's key, no kid",
            &by_attacker(json!({"x5c": [x5c]})),
            BAD_SIG,
        ),
        Case::bearer(
            "a valid token carrying jwk, jku, x5u and x5c (ignored)",
            &signed(
                &fixtures::signing_key(Fixture::Ec256),
                Alg::ES256,
                json!({"kid": "ec256", "jwk": ajwk, "jku": url, "x5u": url, "x5c": [x5c]}),
                &c,
            ),
            Want::Allowed,
        ),
    ]
}

/// Hostile `kid` values: path traversal, SQL, NUL, huge, not a string (RFC 8725 §3.10).
fn kid_cases() -> Vec<Case> {
    let c = claims(json!({}));
    let ec_kid = |kid: Value| {
        signed(
            &fixtures::signing_key(Fixture::Ec256),
            Alg::ES256,
            json!({"kid": kid}),
            &c,
        )
    };
    let mut v: Vec<Case> = [
        "../../../../../../etc/passwd",
        "/dev/null",
        "..\\..\\windows\\win.ini",
        "' OR '1'='1",
        "ec256' --",
        "ec256\u{0}",
        "ec256 ",
        "EC256",
        "",
        "http://127.0.0.1:1/key",
    ]
    .into_iter()
    .map(|kid| Case::bearer(format!("kid {kid:?}"), &ec_kid(json!(kid)), UNKNOWN_KID))
    .collect();
    v.push(Case::bearer(
        "kid of 5000 bytes",
        &ec_kid(json!("k".repeat(5000))),
        UNKNOWN_KID,
    ));
    v.push(Case::bearer(
        "kid of 10 KB",
        &ec_kid(json!("k".repeat(10_240))),
        TOO_LARGE,
    ));
    for (name, kid) in [
        ("kid a number", json!(7)),
        ("kid an object", json!({"kid": "ec256"})),
        ("kid a list", json!(["ec256"])),
        ("kid a boolean", json!(true)),
    ] {
        v.push(Case::bearer(name, &ec_kid(kid), MALFORMED));
    }
    // `null` is the same as no kid: the one ES256 key is tried, and it is the right one.
    v.push(Case::bearer(
        "kid null (as absent)",
        &ec_kid(Value::Null),
        Want::Allowed,
    ));
    v
}

/// Shapes that are not a plain JWS: nested JWT, JWE, `crit`, wrong JSON types, duplicate
/// members, wrong segment counts.
fn structure_cases() -> Vec<Case> {
    let payload = claims(json!({})).to_string();
    let inner = ec(json!({}));
    let p = b64(&payload);
    let ec_h = |h: &str| ec_raw(h, &payload);
    vec![
        Case::bearer(
            "nested JWT (cty JWT)",
            &ec_raw(r#"{"alg":"ES256","kid":"ec256","cty":"JWT"}"#, &inner),
            MALFORMED,
        ),
        Case::bearer(
            "nested JWT (cty jwt), JSON payload",
            &ec_h(r#"{"alg":"ES256","kid":"ec256","cty":"jwt"}"#),
            MALFORMED,
        ),
        Case::bearer(
            "JWE compact (5 parts)",
            &format!(
                "{}.{}.{}.{}.{}",
                b64(r#"{"alg":"RSA-OAEP","enc":"A256GCM"}"#),
                b64("k"),
                b64("iv"),
                p,
                b64("tag")
            ),
            MALFORMED,
        ),
        Case::bearer(
            "JWS header with enc",
            &ec_h(r#"{"alg":"ES256","kid":"ec256","enc":"A256GCM"}"#),
            MALFORMED,
        ),
        Case::bearer(
            "JWS header with zip",
            &ec_h(r#"{"alg":"ES256","kid":"ec256","zip":"DEF"}"#),
            MALFORMED,
        ),
        Case::bearer(
            "crit naming an extension",
            &ec_h(r#"{"alg":"ES256","kid":"ec256","crit":["exp"]}"#),
            denied(401, "crit_unsupported"),
        ),
        Case::bearer(
            "unencoded payload (b64 false, crit)",
            &ec_h(r#"{"alg":"ES256","kid":"ec256","b64":false,"crit":["b64"]}"#),
            denied(401, "crit_unsupported"),
        ),
        Case::bearer(
            "duplicate alg in the header",
            &ec_h(r#"{"alg":"ES256","kid":"ec256","alg":"none"}"#),
            MALFORMED,
        ),
        Case::bearer(
            "duplicate kid in the header",
            &ec_h(r#"{"alg":"ES256","kid":"rsa-a","kid":"ec256"}"#),
            MALFORMED,
        ),
        Case::bearer(
            "duplicate sub in the claims",
            &ec_raw(
                r#"{"alg":"ES256","kid":"ec256"}"#,
                &payload_with(r#""sub":"admin-service""#),
            ),
            MALFORMED,
        ),
        Case::bearer(
            "duplicate iss in the claims",
            &ec_raw(
                r#"{"alg":"ES256","kid":"ec256"}"#,
                &payload_with(r#""iss":"https://evil""#),
            ),
            MALFORMED,
        ),
        Case::bearer(
            "duplicate exp in the claims",
            &ec_raw(
                r#"{"alg":"ES256","kid":"ec256"}"#,
                &payload_with(r#""exp":99999999999"#),
            ),
            MALFORMED,
        ),
        Case::bearer("header a JSON list", &ec_h(r#"["ES256"]"#), MALFORMED),
        Case::bearer("header JSON null", &ec_h("null"), MALFORMED),
        Case::bearer("header not JSON", &ec_h("alg=ES256"), MALFORMED),
        Case::bearer(
            "claims a JSON list",
            &ec_raw(r#"{"alg":"ES256","kid":"ec256"}"#, "[1,2]"),
            MALFORMED,
        ),
        Case::bearer(
            "claims a JSON string",
            &ec_raw(r#"{"alg":"ES256","kid":"ec256"}"#, r#""sub""#),
            MALFORMED,
        ),
        Case::bearer(
            "claims not JSON",
            &ec_raw(r#"{"alg":"ES256","kid":"ec256"}"#, "sub=admin"),
            MALFORMED,
        ),
        Case::bearer(
            "claims with trailing bytes",
            &ec_raw(r#"{"alg":"ES256","kid":"ec256"}"#, &format!("{payload} x")),
            MALFORMED,
        ),
        Case::bearer("four segments", &format!("{inner}.c2ln"), MALFORMED),
        Case::bearer("one segment", "eyJhbGciOiJFUzI1NiJ9", MALFORMED),
    ]
}

/// Claims of the wrong JSON type, and times at the edges (RFC 7519 §2 NumericDate).
fn claim_cases() -> Vec<Case> {
    let t = |changes: Value| ec(changes);
    let raw = |extra: &str| {
        // The standard claims minus `exp`, plus `extra` verbatim.
        let mut c = claims(json!({}));
        c.as_object_mut().unwrap().remove("exp");
        let base = c.to_string();
        ec_raw(
            r#"{"alg":"ES256","kid":"ec256"}"#,
            &format!("{},{extra}}}", base.trim_end_matches('}')),
        )
    };
    let n = now();
    vec![
        Case::bearer("iss a number", &t(json!({"iss": 123})), MALFORMED),
        Case::bearer(
            "iss a list",
            &t(json!({"iss": [fixtures::ISSUER]})),
            MALFORMED,
        ),
        Case::bearer(
            "iss missing",
            &t(json!({"iss": null})),
            denied(401, "issuer_mismatch"),
        ),
        Case::bearer(
            "iss null",
            &ec_raw(
                r#"{"alg":"ES256","kid":"ec256"}"#,
                &claims(json!({}))
                    .to_string()
                    .replace(&format!("\"{}\"", fixtures::ISSUER), "null"),
            ),
            MALFORMED,
        ),
        Case::bearer(
            "iss with a trailing slash",
            &t(json!({"iss": "https://auth.internal/"})),
            denied(401, "issuer_mismatch"),
        ),
        Case::bearer(
            "iss with a Cyrillic a",
            &t(json!({"iss": "https://\u{430}uth.internal"})),
            denied(401, "issuer_mismatch"),
        ),
        Case::bearer("aud a number", &t(json!({"aud": 123})), MALFORMED),
        Case::bearer(
            "aud a list with a number",
            &t(json!({"aud": ["orders", 1]})),
            MALFORMED,
        ),
        Case::bearer(
            "aud an object",
            &t(json!({"aud": {"orders": true}})),
            MALFORMED,
        ),
        Case::bearer(
            "aud empty",
            &t(json!({"aud": ""})),
            denied(401, "audience_mismatch"),
        ),
        Case::bearer(
            "aud an empty list",
            &t(json!({"aud": []})),
            denied(401, "audience_mismatch"),
        ),
        Case::bearer(
            "exp a string",
            &raw(&format!(r#""exp":"{}""#, n + 600)),
            MALFORMED,
        ),
        Case::bearer(
            "exp a float",
            &raw(&format!(r#""exp":{}.5"#, n + 600)),
            MALFORMED,
        ),
        Case::bearer("exp in exponent notation", &raw(r#""exp":1e10"#), MALFORMED),
        Case::bearer(
            "exp negative",
            &raw(r#""exp":-1"#),
            denied(401, "token_expired"),
        ),
        Case::bearer("exp zero", &raw(r#""exp":0"#), denied(401, "token_expired")),
        Case::bearer(
            "exp i64::MIN",
            &raw(&format!(r#""exp":{}"#, i64::MIN)),
            denied(401, "token_expired"),
        ),
        Case::bearer(
            "exp beyond i64 (u64::MAX)",
            &raw(&format!(r#""exp":{}"#, u64::MAX)),
            MALFORMED,
        ),
        Case::bearer("exp beyond u64 (1e400)", &raw(r#""exp":1e400"#), MALFORMED),
        Case::bearer(
            "exp of 400 digits",
            &raw(&format!(r#""exp":{}"#, "9".repeat(400))),
            MALFORMED,
        ),
        Case::bearer("exp null", &raw(r#""exp":null"#), MALFORMED),
        Case::bearer("exp true", &raw(r#""exp":true"#), MALFORMED),
        Case::bearer(
            "exp missing",
            &t(json!({"exp": null})),
            denied(401, "exp_missing"),
        ),
        // Signed by the issuer: without max_lifetime_seconds the lifetime is the issuer's call.
        Case::bearer(
            "exp i64::MAX (no max_lifetime_seconds)",
            &raw(&format!(r#""exp":{}"#, i64::MAX)),
            Want::Allowed,
        ),
        Case::bearer("nbf a string", &t(json!({"nbf": n.to_string()})), MALFORMED),
        Case::bearer(
            "nbf in a year",
            &t(json!({"nbf": n + 31_536_000, "exp": n + 31_536_600})),
            denied(401, "token_not_yet_valid"),
        ),
        Case::bearer("iat a float", &t(json!({"iat": 1.5})), MALFORMED),
        Case::bearer(
            "iat in a year",
            &t(json!({"iat": n + 31_536_000})),
            denied(401, "issued_in_future"),
        ),
        Case::bearer("sub a number", &t(json!({"sub": 7})), MALFORMED),
        Case::bearer("sub empty", &t(json!({"sub": ""})), MALFORMED),
        Case::bearer(
            "sub missing",
            &t(json!({"sub": null})),
            denied(401, "claim_mismatch"),
        ),
        Case::bearer("scope a number", &t(json!({"scope": 5})), MALFORMED),
        Case::bearer(
            "scope a list with a number",
            &t(json!({"scope": ["orders:read", 1]})),
            MALFORMED,
        ),
        Case::bearer(
            "scope a list with an empty scope",
            &t(json!({"scope": ["orders:read", ""]})),
            MALFORMED,
        ),
        Case::bearer(
            "scope an object",
            &t(json!({"scope": {"orders:read": true}})),
            MALFORMED,
        ),
    ]
}

/// Base64url that is not canonical (RFC 7515 §2: no padding, URL-safe alphabet), and empty
/// segments.
fn base64_cases() -> Vec<Case> {
    // A header whose encoding holds both `-` and `_` (from the bytes of ">?" runs).
    let header = r#"{"alg":"ES256","kid":"ec256","x":">>>???"}"#;
    let good = ec_raw(header, &claims(json!({})).to_string());
    let parts: Vec<&str> = good.split('.').collect();
    let (h, p, s) = (parts[0], parts[1], parts[2]);
    assert!(
        h.contains('-') && h.contains('_'),
        "the header exercises both characters"
    );
    let std_alphabet = h.replace('-', "+").replace('_', "/");
    let pad = |seg: &str| format!("{seg}{}", "=".repeat(((4 - seg.len() % 4) % 4).max(1)));
    // The 64-byte ES256 signature ends in a character that carries 2 bits and 4 zero bits:
    // setting one of those zero bits decodes to the same bytes, non-canonically.
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let last = s.as_bytes()[s.len() - 1];
    let at = alphabet.iter().position(|c| *c == last).unwrap();
    let trailing = char::from(alphabet[at | 1]);
    let s_trailing = format!("{}{trailing}", &s[..s.len() - 1]);
    vec![
        Case::bearer("control: the canonical token", &good, Want::Allowed),
        Case::bearer(
            "header in the standard alphabet (+ /)",
            &format!("{std_alphabet}.{p}.{s}"),
            MALFORMED,
        ),
        Case::bearer(
            "header padded with =",
            &format!("{}.{p}.{s}", pad(h)),
            MALFORMED,
        ),
        Case::bearer(
            "claims padded with =",
            &format!("{h}.{}.{s}", pad(p)),
            MALFORMED,
        ),
        Case::bearer(
            "signature padded with =",
            &format!("{h}.{p}.{}", pad(s)),
            MALFORMED,
        ),
        Case::bearer(
            "signature with non-zero trailing bits",
            &format!("{h}.{p}.{s_trailing}"),
            MALFORMED,
        ),
        Case::bearer(
            "signature with a space inside",
            &format!("{h}.{p}.{} {}", &s[..10], &s[10..]),
            MALFORMED,
        ),
        Case::bearer("empty header segment", &format!(".{p}.{s}"), MALFORMED),
        Case::bearer("empty claims segment", &format!("{h}..{s}"), MALFORMED),
        Case::bearer("empty signature segment", &format!("{h}.{p}."), MALFORMED),
        Case::bearer("only dots", "..", MALFORMED),
        Case::bearer(
            "signature of the wrong length",
            &format!("{h}.{p}.{}", &s[..40]),
            BAD_SIG,
        ),
    ]
}

/// An HS256 token with the standard claims padded so that it is exactly `len` bytes long.
fn token_of_length(len: usize) -> String {
    let make = |pad: usize| hmac_token(Alg::HS256, &claims(json!({"pad": "p".repeat(pad)})));
    let base = make(0).len();
    // Each 3 bytes of claims add 4 characters: search around the estimate for an exact fit.
    let estimate = (len.saturating_sub(base)) * 3 / 4;
    for pad in estimate.saturating_sub(8)..estimate + 8 {
        let t = make(pad);
        if t.len() == len {
            return t;
        }
    }
    panic!("no padding gives a token of exactly {len} bytes")
}

/// The token size limit (`max_token_bytes`, default 8192) and Envoy's own header limit (60 KiB
/// by default: a larger request gets Envoy's 431 before the filter runs).
fn size_cases() -> Vec<Case> {
    vec![
        Case::bearer(
            "token of exactly max_token_bytes (8192)",
            &token_of_length(8192),
            Want::Allowed,
        ),
        Case::bearer(
            "token of max_token_bytes + 1",
            &token_of_length(8193),
            TOO_LARGE,
        ),
        Case::bearer("token of 50 KB", &"a".repeat(50_000), TOO_LARGE),
        Case::bearer(
            "Authorization of 100 KB (over Envoy's 60 KiB)",
            &"a".repeat(100_000),
            Want::Envoy(431),
        ),
    ]
}

/// Where the token is: two headers, two configured places, scheme case, whitespace.
fn header_cases() -> Vec<Case> {
    let t = ec(json!({}));
    let u = hmac_token(Alg::HS256, &claims(json!({})));
    let bt = format!("Bearer {t}");
    let bu = format!("Bearer {u}");
    let with = |name: &str, value: String, want: Want| {
        Case::headers(name, "/orders", &[("authorization", &value)], want)
    };
    vec![
        Case::headers(
            "two Authorization headers",
            "/orders",
            &[("authorization", &bt), ("Authorization", &bu)],
            TWO,
        ),
        Case::headers(
            "the same token in two Authorization headers",
            "/orders",
            &[("authorization", &bt), ("authorization", &bt)],
            TWO,
        ),
        with(
            "two tokens in one Authorization value",
            format!("{bt},{bu}"),
            TWO,
        ),
        Case::headers(
            "tokens in two configured places",
            "/orders",
            &[("authorization", &bt), ("x-service-token", &u)],
            TWO,
        ),
        Case::headers(
            "Bearer token beside a Basic credential",
            "/orders",
            &[
                ("authorization", &bt),
                ("authorization", "Basic dXNlcjpwYXNz"),
            ],
            Want::Allowed,
        ),
        with("lower-case bearer", format!("bearer {t}"), Want::Allowed),
        with("upper-case BEARER", format!("BEARER {t}"), Want::Allowed),
        with("mixed-case bEaReR", format!("bEaReR {t}"), Want::Allowed),
        with(
            "two spaces after Bearer",
            format!("Bearer  {t}"),
            Want::Allowed,
        ),
        with(
            "space and tab after Bearer",
            format!("Bearer \t{t}"),
            Want::Allowed,
        ),
        with(
            "trailing spaces and tabs",
            format!("Bearer {t} \t "),
            Want::Allowed,
        ),
        with("leading spaces", format!("   Bearer {t}"), Want::Allowed),
        with(
            "a tab instead of the space after Bearer",
            format!("Bearer\t{t}"),
            MISSING,
        ),
        with("no space after Bearer", format!("Bearer{t}"), MISSING),
        with("Bearer and nothing", "Bearer".into(), MISSING),
        with("Bearer and spaces", "Bearer    ".into(), MISSING),
        with(
            "Basic credentials only",
            "Basic dXNlcjpwYXNz".into(),
            MISSING,
        ),
        with("another scheme", format!("Token {t}"), MISSING),
        with(
            "a second word after the token",
            format!("Bearer {t} extra"),
            MALFORMED,
        ),
        Case::headers(
            "x-service-token with spaces around",
            "/orders",
            &[("x-service-token", &format!("  {t}  "))],
            Want::Allowed,
        ),
        Case::headers(
            "x-service-token with a Bearer prefix",
            "/orders",
            &[("x-service-token", &bt)],
            MALFORMED,
        ),
    ]
}

/// Unicode and control bytes in claims: nothing may split or inject a header upstream.
fn unicode_cases() -> Vec<Case> {
    let t = |changes: Value| ec(changes);
    vec![
        Case::bearer(
            "sub with CR LF and a header",
            &t(json!({"sub": "evil\r\nx-injected: 1"})),
            MALFORMED,
        ),
        Case::bearer(
            "sub with LF only",
            &t(json!({"sub": "evil\nx-injected: 1"})),
            MALFORMED,
        ),
        Case::bearer("sub with NUL", &t(json!({"sub": "a\u{0}b"})), MALFORMED),
        Case::bearer("sub with DEL", &t(json!({"sub": "a\u{7f}b"})), MALFORMED),
        Case::bearer(
            "sub with a C1 control (NEL)",
            &t(json!({"sub": "a\u{85}b"})),
            MALFORMED,
        ),
        Case::bearer(
            "sub of 5000 bytes",
            &t(json!({"sub": "s".repeat(5000)})),
            MALFORMED,
        ),
        Case::bearer("sub with a tab", &t(json!({"sub": "a\tb"})), Want::Allowed),
        Case::bearer(
            "sub in Chinese with an umlaut",
            &t(json!({"sub": "服务-ü"})),
            Want::Allowed,
        ),
        Case::bearer(
            "sub with a right-to-left override",
            &t(json!({"sub": "\u{202e}exe.svc"})),
            Want::Allowed,
        ),
        Case::bearer(
            "claim_to_headers claim with CR LF",
            &t(json!({"tenant_id": "t\r\nx-injected: 1"})),
            MALFORMED,
        ),
        Case::bearer(
            "scope list item with CR LF",
            &t(json!({"scope": ["orders:read", "a\r\nx-injected: 1"]})),
            MALFORMED,
        ),
        // A scope string is split on whitespace, CR and LF included: no header can form.
        Case::bearer(
            "scope string with CR LF",
            &t(json!({"scope": "orders:read\r\nx-injected: 1"})),
            Want::Allowed,
        ),
    ]
}

/// Header bytes that are not UTF-8 (the adapter reads them lossily), sent raw.
fn raw_cases() -> Vec<Case> {
    let t = ec(json!({}));
    let req = |auth: &[u8]| {
        let mut r = b"GET /orders HTTP/1.1\r\nHost: localhost\r\nAuthorization: ".to_vec();
        r.extend_from_slice(auth);
        r.extend_from_slice(b"\r\nConnection: close\r\n\r\n");
        r
    };
    let bytes = |prefix: &[u8], tail: &[u8]| {
        let mut v = prefix.to_vec();
        v.extend_from_slice(tail);
        v
    };
    let (head, sig) = t.rsplit_once('.').unwrap();
    vec![
        Case::raw(
            "Authorization of bytes 0xff 0xfe 0xfd",
            req(b"Bearer \xff\xfe\xfd"),
            MALFORMED,
        ),
        Case::raw(
            "a valid token followed by 0xff",
            req(&bytes(format!("Bearer {t}").as_bytes(), b"\xff")),
            MALFORMED,
        ),
        Case::raw(
            "a valid token with 0x80 inside its signature",
            req(&bytes(
                format!("Bearer {head}.").as_bytes(),
                &bytes(b"\x80", sig.as_bytes()),
            )),
            MALFORMED,
        ),
        Case::raw(
            "a scheme with a Latin-1 byte",
            req(&bytes(b"B\xe9arer ", t.as_bytes())),
            MISSING,
        ),
        Case::raw(
            "an overlong UTF-8 slash in the token",
            req(&bytes(format!("Bearer {head}").as_bytes(), b"\xc0\xaf")),
            MALFORMED,
        ),
        // Envoy's codec refuses these before any filter runs.
        Case::raw(
            "NUL in the Authorization value",
            req(b"Bearer a\x00b"),
            Want::Envoy(400),
        ),
        // Envoy 1.40's HTTP/1 codec lets a bare CR through to filters: the token is malformed.
        Case::raw(
            "a bare CR in the Authorization value",
            req(b"Bearer a\rb"),
            MALFORMED,
        ),
    ]
}

/// Paths whose meaning upstream may differ from what a prefix sees are refused before any
/// rule (400 since issue 12; they matched no rule, 403, before).
fn path_cases() -> Vec<Case> {
    let none = denied(400, "ambiguous_path");
    vec![
        Case::headers(
            "dot-dot out of an open prefix",
            "/health/../admin/rotate",
            &[],
            none,
        ),
        Case::headers("encoded dot-dot", "/health/%2e%2e/orders", &[], none),
        Case::headers("encoded slash", "/health%2f..%2forders", &[], none),
        Case::headers("dot segment", "/health/./x", &[], none),
        Case::headers(
            "control: the open prefix",
            "/health/live",
            &[],
            Want::Allowed,
        ),
    ]
}

// --------------------------------------------------------------- the tests ------------------

#[test]
fn every_attack_in_the_table_is_refused_and_envoy_stays_healthy() {
    // The attacker's key set, served where `jku`/`x5u` point; a cluster reaches it too.
    let attacker = SigningKey::generate(Alg::ES256).unwrap();
    let attacker_jwks =
        json!({"keys": [attacker.public_jwk("attacker", Some(Alg::ES256)).unwrap()]});
    let jku = HttpServer::start(move |_| Reply::json(200, &attacker_jwks));
    let url = format!("http://127.0.0.1:{}/jwks.json", jku.port());
    let port = jku.port();
    let mut target = Target::start(&fixtures::config_json(), |o| {
        o.loopback_cluster("attacker", port)
    });
    let groups: Vec<(&str, Vec<Case>)> = vec![
        ("alg none", alg_none_cases()),
        ("key confusion", key_confusion_cases(false)),
        ("header parameters", header_parameter_cases(&url, &attacker)),
        ("kid", kid_cases()),
        ("structure", structure_cases()),
        ("claims", claim_cases()),
        ("base64", base64_cases()),
        ("sizes", size_cases()),
        ("headers", header_cases()),
        ("unicode", unicode_cases()),
        ("raw bytes", raw_cases()),
        ("paths", path_cases()),
    ];
    let mut failures = Vec::new();
    let mut total = 0;
    for (group, cases) in &groups {
        total += cases.len();
        failures.extend(
            target
                .run(cases)
                .into_iter()
                .map(|f| format!("[{group}] {f}")),
        );
    }
    eprintln!("attacks: {total} cases in {} groups", groups.len());
    // Nothing was fetched from the URLs in jku/x5u headers, and none reached the upstream
    // with an injected header.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(jku.request_count(), 0, "a jku/x5u URL was fetched");
    for r in target.upstream.requests() {
        assert!(
            r.header("x-injected").is_none(),
            "an injected header reached the upstream: {r:?}"
        );
    }
    assert_no_failures(failures);
    target.assert_healthy();
}

/// The fallback build (`vm-crypto`: RSA and ECDSA inside the VM) refuses the key-confusion
/// attacks as the default build does, and RSA-PSS with a key pinned to RS256 by its `kid`.
#[test]
fn key_confusion_attacks_are_refused_by_the_fallback_build_too() {
    let mut target = Target::start(&fixtures::config_json(), |o| o.vm_crypto());
    let failures = target.run(&key_confusion_cases(true));
    assert_no_failures(failures);
    target.assert_healthy();
}

#[test]
fn identity_headers_upstream_carry_unicode_intact_and_never_a_client_copy() {
    let mut target = Target::start(&fixtures::config_json(), |o| o);
    let send = |sub: &str, scope: &str, extra: &[(&str, &str)]| {
        let auth = format!("Bearer {}", ec(json!({"sub": sub, "scope": scope})));
        let mut h = vec![("authorization", auth.as_str())];
        h.extend_from_slice(extra);
        let r = http(target.envoy.port(), "GET", "/orders", &h);
        assert_eq!(r.status, 200, "{sub:?}: {}", r.body);
        target.upstream.last_request().unwrap()
    };
    let up = send("服务-ü", "orders:read", &[]);
    assert_eq!(up.header("x-service-name"), Some("服务-ü"));
    let up = send("a\tb", "orders:read", &[]);
    assert_eq!(up.header("x-service-name"), Some("a\tb"));
    let up = send("orders-service", "orders:read\r\nx-injected: 1", &[]);
    assert_eq!(
        up.header("x-service-scopes"),
        Some("orders:read x-injected: 1")
    );
    assert!(up.header("x-injected").is_none());
    let up = send(
        "orders-service",
        "orders:read",
        &[
            ("x-service-name", "admin-service"),
            ("X-Service-Scopes", "internal:admin"),
            ("x-svcauth-decision", "allow"),
        ],
    );
    assert_eq!(up.header_all("x-service-name"), ["orders-service"]);
    assert_eq!(up.header_all("x-service-scopes"), ["orders:read"]);
    // The client's copy never arrives (and the filter's decision is filter state, no header).
    assert_eq!(up.header_all("x-svcauth-decision"), Vec::<&str>::new());
    target.allowed += 4;
    target.assert_healthy();
}

#[test]
fn oversized_tokens_and_ten_thousand_scopes_within_the_raised_limits() {
    let mut config = fixtures::config_json();
    config["max_token_bytes"] = json!(65536);
    let mut target = Target::start(&config, |o| o.hcm_extra("max_request_headers_kb: 96"));
    // 10,000 distinct three-letter scopes besides the one the route requires.
    let many: Vec<String> = (0..10_000)
        .map(|i: u32| {
            let l = |n: u32| char::from(b'a' + u8::try_from(n % 26).unwrap());
            format!("{}{}{}", l(i / 676), l(i / 26), l(i))
        })
        .collect();
    let as_string = format!("orders:read {}", many.join(" "));
    let mut as_list = vec!["orders:read".to_string()];
    as_list.extend(many.iter().cloned());
    let string_token = hmac_token(Alg::HS256, &claims(json!({"scope": as_string})));
    let list_token = hmac_token(Alg::HS256, &claims(json!({"scope": as_list})));
    assert!(
        string_token.len() > 40_000 && string_token.len() <= 65_536,
        "{}",
        string_token.len()
    );
    // As a JSON list the same scopes take ~80 KB: over even the highest max_token_bytes.
    assert!(list_token.len() > 65_536, "{}", list_token.len());
    let cases = vec![
        Case::bearer("10,000 scopes as a string", &string_token, Want::Allowed),
        Case::bearer("10,000 scopes as a list (80 KB)", &list_token, TOO_LARGE),
        Case::bearer(
            "token of exactly 65536 bytes",
            &token_of_length(65_536),
            Want::Allowed,
        ),
        Case::bearer("token of 65537 bytes", &token_of_length(65_537), TOO_LARGE),
        Case::bearer(
            "Authorization of 200 KB (over Envoy's 96 KiB)",
            &"a".repeat(200_000),
            Want::Envoy(431),
        ),
    ];
    let failures = target.run(&cases);
    assert_no_failures(failures);
    let up = target
        .upstream
        .requests()
        .into_iter()
        .find(|r| {
            r.header("x-service-scopes")
                .is_some_and(|s| s.len() > 30_000)
        })
        .expect("the upstream saw the 10,001 scopes");
    assert_eq!(
        up.header("x-service-scopes").unwrap().split(' ').count(),
        10_001
    );
    target.assert_healthy();
}
