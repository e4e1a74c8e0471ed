//! svcauth held to `jwt_verify_lib`'s answers (the library inside Envoy's `jwt_authn`), through
//! a real Envoy: the JWK Set parse cases of its `src/jwks_test.cc` (a set it refuses is a plugin
//! configuration Envoy refuses) and the token cases of its `src/verify_jwk_ec_test.cc`. Source,
//! commits and licence: the `_source` of `fixtures/jwt_verify_lib/vectors.json`.
//!
//! Deliberate differences, each a case below with both answers:
//! - a malformed key beside a good one: `jwt_verify_lib` keeps the good key and drops the bad
//!   one silently; svcauth refuses the set and names the key, so a typo in a key set is seen
//!   at load, not when the key's tokens start failing;
//! - a symmetric `oct` key in a JWK Set: `jwt_verify_lib` uses it for HS*; svcauth skips it
//!   (HMAC secrets come only from `hmac_secret_env`, never from a key set that may be public);
//! - an RSA key under 2048 bits: `jwt_verify_lib` uses it; svcauth skips it (RFC 7518 §3.3).

use serde_json::{json, Value};
use svcauth_filter::fixtures;
use svcauth_tests::{bootstrap, http, EchoUpstream, Envoy, Opts};

fn vectors() -> Value {
    serde_json::from_str(include_str!("fixtures/jwt_verify_lib/vectors.json")).unwrap()
}

fn config(issuer: &str, jwks: Value, extra: Value) -> String {
    let mut c = fixtures::config_json();
    let mut p = json!({"issuer": issuer, "jwks": jwks});
    if let (Some(p), Value::Object(extra)) = (p.as_object_mut(), extra) {
        p.extend(extra);
    }
    c["providers"] = json!({ "vectors": p });
    c.to_string()
}

fn loads(jwks: Value) -> bool {
    let yaml = bootstrap(
        &config("https://example.com", jwks, json!({})),
        &Opts::new(9),
    );
    Envoy::validate(&yaml).0
}

#[test]
fn jwks_parse_cases_get_jwt_verify_lib_answers() {
    let v = vectors();
    let cases = v["jwks_cases"].as_array().unwrap();
    assert!(cases.len() >= 30);
    let mut wrong = Vec::new();
    for case in cases {
        let text = case["jwks"].as_str().unwrap();
        // As text: some cases are not even JSON.
        let got = loads(json!(text));
        if got != case["accept"].as_bool().unwrap() {
            wrong.push(format!(
                "{}: svcauth {}",
                case["name"],
                if got { "accepts" } else { "refuses" }
            ));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

#[test]
fn token_cases_get_jwt_verify_lib_answers() {
    let v = vectors();
    let issuer = v["issuer"].as_str().unwrap();
    let cases = v["token_cases"].as_array().unwrap();
    assert!(cases.len() >= 20);
    let upstream = EchoUpstream::start();
    let mut wrong = Vec::new();
    for (name, set) in v["key_sets"].as_object().unwrap() {
        // The tokens have no exp (jwt_verify_lib's verifyJwt checks only the times present).
        let cfg = config(issuer, set.clone(), json!({"require_expiration": false}));
        let envoy = Envoy::start_plugin(&cfg, &Opts::new(upstream.port()));
        for case in cases.iter().filter(|c| c["key_set"] == name.as_str()) {
            let t = case["token"].as_str().unwrap();
            let r = http(
                envoy.port(),
                "GET",
                "/any-token",
                &[("authorization", &format!("Bearer {t}"))],
            );
            if (r.status == 200) != case["accept"].as_bool().unwrap() {
                wrong.push(format!("{}: {} {}", case["name"], r.status, r.body));
            }
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

#[test]
fn deliberate_differences_from_jwt_verify_lib() {
    let v = vectors();
    let good = &v["key_sets"]["ec"]["keys"][0];
    // (set, jwt_verify_lib loads it, svcauth loads it). Where both load a set, the difference
    // is in the keys kept: the skipped oct or weak RSA key verifies nothing in svcauth.
    let cases = [
        (
            json!({"keys": [good, {"kty": "EC", "crv": "P-256", "kid": "typo", "x": "AAAA", "y": "AAAA"}]}),
            true,
            false,
        ),
        (
            json!({"keys": [{"kty": "oct", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA"}]}),
            true,
            false,
        ),
        (
            json!({"keys": [good, {"kty": "oct", "kid": "hs", "k": "c2VjcmV0"}]}),
            true,
            true,
        ),
        (
            json!({"keys": [{"kty": "RSA", "n": "AQAB", "e": "AQAB"}, good]}),
            true,
            true,
        ),
    ];
    for (i, (set, _jwt_verify_lib_loads, svcauth)) in cases.iter().enumerate() {
        assert_eq!(loads(set.clone()), *svcauth, "case {i}: {set}");
    }
}
