//! Table-driven tests of `decide` against the fixture config, at the fixed clock `NOW`.

use serde_json::json;

use crate::cache::TokenCache;
use crate::config::Config;
use crate::contract::reason::Reason;
use crate::decide::{covers, decide, Decision, Strip};
use crate::fixtures::{self, claims, claims_with, hmac_token, token, token_alg, Fixture, NOW};
use crate::mint::{sign_raw, SigningKey};
use crate::token::alg::Alg;

fn config() -> Config {
    Config::from_json(
        fixtures::config_json().to_string().as_bytes(),
        &fixtures::env,
    )
    .unwrap()
}

fn req(method: &str, path: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut h = vec![
        (":method".to_string(), method.to_string()),
        (":path".to_string(), path.to_string()),
    ];
    h.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    h
}

fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

/// `Ok(subject)` or `Err(reason)` for a GET of `path` with `token` as a bearer token.
fn outcome(cfg: &Config, path: &str, token: &str) -> Result<String, Reason> {
    let auth = bearer(token);
    let h = req("GET", path, &[("authorization", auth.as_str())]);
    match decide(cfg, &mut TokenCache::new(0), &h, NOW) {
        Decision::Allow(a) => Ok(a.identity.map(|i| i.subject.clone()).unwrap_or_default()),
        Decision::Deny(d) => Err(d.reason),
    }
}

#[test]
fn every_algorithm_family_is_accepted() {
    let cfg = config();
    let c = claims(NOW);
    let cases = [
        token_alg(Fixture::RsaA, Alg::RS256, &c),
        token_alg(Fixture::RsaA, Alg::RS384, &c),
        token_alg(Fixture::RsaA, Alg::RS512, &c),
        token_alg(Fixture::RsaA, Alg::PS256, &c),
        token_alg(Fixture::RsaA, Alg::PS384, &c),
        token_alg(Fixture::RsaA, Alg::PS512, &c),
        token(Fixture::RsaB, &c),
        token(Fixture::Ec256, &c),
        token(Fixture::Ec384, &c),
        token(Fixture::Ed25519, &c),
        hmac_token(Alg::HS256, &c),
        hmac_token(Alg::HS384, &c),
        hmac_token(Alg::HS512, &c),
    ];
    for t in cases {
        assert_eq!(
            outcome(&cfg, "/orders", &t),
            Ok("orders-service".into()),
            "{t}"
        );
    }
}

#[test]
fn invalid_tokens_are_denied_with_their_reason() {
    let cfg = config();
    let c = |changes| claims_with(NOW, changes);
    let ec = |claims| token(Fixture::Ec256, &claims);
    let rsa_pub_pem = {
        use rsa::pkcs8::EncodePublicKey as _;
        let SigningKey::Rsa(k) = fixtures::signing_key(Fixture::RsaA) else {
            unreachable!()
        };
        k.to_public_key()
            .to_public_key_pem(rsa::pkcs8::LineEnding::LF)
            .unwrap()
    };
    let cases: Vec<(&str, String, Reason)> = vec![
        (
            "expired beyond skew",
            ec(c(json!({"exp": NOW - 61}))),
            Reason::TokenExpired,
        ),
        (
            "not yet valid",
            ec(c(json!({"nbf": NOW + 61}))),
            Reason::TokenNotYetValid,
        ),
        (
            "issued in the future",
            ec(c(json!({"iat": NOW + 61}))),
            Reason::IssuedInFuture,
        ),
        ("no exp", ec(c(json!({"exp": null}))), Reason::ExpMissing),
        (
            "exp as string",
            ec(c(json!({"exp": "9999999999"}))),
            Reason::TokenMalformed,
        ),
        (
            "exp as float",
            ec(c(json!({"exp": 1.5e10}))),
            Reason::TokenMalformed,
        ),
        (
            "exp beyond i64",
            ec(c(json!({"exp": 1e30}))),
            Reason::TokenMalformed,
        ),
        (
            "wrong issuer",
            ec(c(json!({"iss": "https://evil"}))),
            Reason::IssuerMismatch,
        ),
        (
            "numeric issuer",
            ec(c(json!({"iss": 7}))),
            Reason::TokenMalformed,
        ),
        (
            "wrong audience",
            ec(c(json!({"aud": "payments"}))),
            Reason::AudienceMismatch,
        ),
        (
            "numeric audience",
            ec(c(json!({"aud": 5}))),
            Reason::TokenMalformed,
        ),
        (
            "no audience",
            ec(c(json!({"aud": null}))),
            Reason::AudienceMismatch,
        ),
        (
            "no subject",
            ec(c(json!({"sub": null}))),
            Reason::ClaimMismatch,
        ),
        (
            "subject with a newline",
            ec(c(json!({"sub": "a\r\nx-evil: 1"}))),
            Reason::TokenMalformed,
        ),
        (
            "scope with a control byte",
            ec(c(json!({"scope": "orders:read \u{0007}"}))),
            Reason::TokenMalformed,
        ),
        (
            "scope list with a number",
            ec(c(json!({"scope": ["orders:read", 5]}))),
            Reason::TokenMalformed,
        ),
        (
            "unknown kid",
            {
                let mut h = serde_json::Map::new();
                h.insert("kid".into(), "nope".into());
                crate::mint::sign(
                    &fixtures::signing_key(Fixture::Ec256),
                    Alg::ES256,
                    &h,
                    &claims(NOW),
                )
                .unwrap()
            },
            Reason::UnknownKid,
        ),
        (
            "bad signature",
            {
                let t = ec(claims(NOW));
                let (head, _) = t.rsplit_once('.').unwrap();
                let other = ec(c(json!({"sub": "x"})));
                format!("{head}.{}", other.rsplit_once('.').unwrap().1)
            },
            Reason::BadSignature,
        ),
        (
            "signed by another key with the right kid",
            {
                let mut h = serde_json::Map::new();
                h.insert("kid".into(), "rsa-a".into());
                crate::mint::sign(
                    &fixtures::signing_key(Fixture::RsaB),
                    Alg::RS256,
                    &h,
                    &claims(NOW),
                )
                .unwrap()
            },
            Reason::BadSignature,
        ),
        (
            "alg none",
            format!(
                "{}.{}.c2ln",
                b64(r#"{"alg":"none"}"#),
                b64(&claims(NOW).to_string())
            ),
            Reason::AlgNotAllowed,
        ),
        (
            "alg none, no signature",
            format!(
                "{}.{}.",
                b64(r#"{"alg":"none"}"#),
                b64(&claims(NOW).to_string())
            ),
            Reason::TokenMalformed,
        ),
        (
            "HS256 keyed with the RSA public key",
            sign_raw(
                &SigningKey::Hmac(rsa_pub_pem.into_bytes()),
                Alg::HS256,
                r#"{"alg":"HS256","kid":"rsa-a"}"#,
                &claims(NOW).to_string(),
            )
            .unwrap(),
            Reason::BadSignature,
        ),
        (
            "RS256 claimed by an EC key's kid",
            {
                let mut h = serde_json::Map::new();
                h.insert("kid".into(), "ec256".into());
                crate::mint::sign(
                    &fixtures::signing_key(Fixture::RsaA),
                    Alg::RS256,
                    &h,
                    &claims(NOW),
                )
                .unwrap()
            },
            Reason::UnknownKid,
        ),
        (
            "crit header",
            sign_raw(
                &fixtures::signing_key(Fixture::Ec256),
                Alg::ES256,
                r#"{"alg":"ES256","kid":"ec256","crit":["x"],"x":1}"#,
                &claims(NOW).to_string(),
            )
            .unwrap(),
            Reason::CritUnsupported,
        ),
        (
            "duplicate claim",
            sign_raw(
                &fixtures::signing_key(Fixture::Ec256),
                Alg::ES256,
                r#"{"alg":"ES256","kid":"ec256"}"#,
                &format!(
                    r#"{{"iss":"{}","sub":"a","aud":"orders","exp":{},"sub":"admin"}}"#,
                    fixtures::ISSUER,
                    NOW + 60
                ),
            )
            .unwrap(),
            Reason::TokenMalformed,
        ),
        (
            "payload is an array",
            sign_raw(
                &fixtures::signing_key(Fixture::Ec256),
                Alg::ES256,
                r#"{"alg":"ES256","kid":"ec256"}"#,
                "[1,2]",
            )
            .unwrap(),
            Reason::TokenMalformed,
        ),
        ("garbage", "not-a-token".into(), Reason::TokenMalformed),
        ("JWE", "a.b.c.d.e".into(), Reason::TokenMalformed),
        ("oversize", "a".repeat(8193), Reason::TokenTooLarge),
    ];
    for (name, t, want) in cases {
        assert_eq!(outcome(&cfg, "/orders", &t), Err(want), "{name}");
    }
}

fn b64(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}

#[test]
fn expiry_within_the_clock_skew_is_accepted() {
    let cfg = config();
    let t = token(
        Fixture::Ec256,
        &claims_with(NOW, json!({"exp": NOW - 59, "iat": NOW - 100})),
    );
    assert!(outcome(&cfg, "/orders", &t).is_ok());
    let t = token(Fixture::Ec256, &claims_with(NOW, json!({"nbf": NOW + 59})));
    assert!(outcome(&cfg, "/orders", &t).is_ok());
}

#[test]
fn a_lifetime_beyond_the_maximum_is_refused() {
    let mut v = fixtures::config_json();
    v["providers"]["internal"]["max_lifetime_seconds"] = json!(3600);
    let cfg = Config::from_json(v.to_string().as_bytes(), &fixtures::env).unwrap();
    let long = token(
        Fixture::Ec256,
        &claims_with(NOW, json!({"exp": NOW + 7200})),
    );
    assert_eq!(
        outcome(&cfg, "/orders", &long),
        Err(Reason::LifetimeTooLong)
    );
    let short = token(Fixture::Ec256, &claims(NOW));
    assert!(outcome(&cfg, "/orders", &short).is_ok());
}

#[test]
fn required_claims_and_another_subject_claim_are_honoured() {
    let mut v = fixtures::config_json();
    v["providers"]["internal"]["required_claims"] = json!({"type": "service", "is_service": true});
    v["providers"]["internal"]["subject_claim"] = json!("client_id");
    let cfg = Config::from_json(v.to_string().as_bytes(), &fixtures::env).unwrap();
    let good = token(
        Fixture::Ec256,
        &claims_with(
            NOW,
            json!({"type": "service", "is_service": true, "client_id": "billing"}),
        ),
    );
    assert_eq!(outcome(&cfg, "/orders", &good), Ok("billing".into()));
    let user = token(
        Fixture::Ec256,
        &claims_with(
            NOW,
            json!({"type": "user", "is_service": true, "client_id": "billing"}),
        ),
    );
    assert_eq!(outcome(&cfg, "/orders", &user), Err(Reason::ClaimMismatch));
    let stringly = token(
        Fixture::Ec256,
        &claims_with(
            NOW,
            json!({"type": "service", "is_service": "true", "client_id": "billing"}),
        ),
    );
    assert_eq!(
        outcome(&cfg, "/orders", &stringly),
        Err(Reason::ClaimMismatch)
    );
}

#[test]
fn an_algorithm_outside_the_allow_list_is_refused() {
    let mut v = fixtures::config_json();
    v["providers"]["internal"]["algorithms"] = json!(["ES256"]);
    let cfg = Config::from_json(v.to_string().as_bytes(), &fixtures::env).unwrap();
    assert!(outcome(&cfg, "/orders", &token(Fixture::Ec256, &claims(NOW))).is_ok());
    assert_eq!(
        outcome(&cfg, "/orders", &token(Fixture::RsaA, &claims(NOW))),
        Err(Reason::AlgNotAllowed)
    );
    assert_eq!(
        outcome(&cfg, "/orders", &hmac_token(Alg::HS256, &claims(NOW))),
        Err(Reason::AlgNotAllowed)
    );
}

#[test]
fn scopes_are_checked_per_rule_with_wildcards_strings_and_lists() {
    let cfg = config();
    let with_scope =
        |s: serde_json::Value| token(Fixture::Ec256, &claims_with(NOW, json!({"scope": s})));
    let cases: Vec<(&str, serde_json::Value, Result<(), Reason>)> = vec![
        ("/orders", json!("orders:read"), Ok(())),
        ("/orders", json!("orders:write other"), Ok(())),
        ("/orders", json!(["orders:write"]), Ok(())),
        (
            "/orders",
            json!("payments:read"),
            Err(Reason::InsufficientScope),
        ),
        ("/orders", json!(""), Err(Reason::InsufficientScope)),
        ("/orders", json!("orders:*"), Ok(())),
        ("/orders", json!("*"), Err(Reason::InsufficientScope)),
        ("/orders", json!("orders*"), Err(Reason::InsufficientScope)),
        ("/ai/models", json!("ai-services:*"), Ok(())),
        ("/ai/models", json!("ai-services:read"), Ok(())),
        (
            "/ai/models",
            json!("ai-services-read"),
            Err(Reason::InsufficientScope),
        ),
        (
            "/write",
            json!("orders:read"),
            Err(Reason::InsufficientScope),
        ),
        ("/write", json!("orders:read orders:write"), Ok(())),
        ("/any-token", json!(""), Ok(())),
    ];
    for (path, scope, want) in cases {
        let got = outcome(&cfg, path, &with_scope(scope.clone())).map(|_| ());
        assert_eq!(got, want, "{path} with {scope}");
    }
    // scp as a list, when scope is absent.
    let t = token(
        Fixture::Ec256,
        &claims_with(NOW, json!({"scope": null, "scp": ["orders:read"]})),
    );
    assert!(outcome(&cfg, "/orders", &t).is_ok());
}

#[test]
fn wildcard_grants_cover_only_their_namespace() {
    let g = vec!["internal:*".to_string()];
    assert!(covers(&g, "internal:admin"));
    assert!(!covers(&g, "internalx:admin"));
    assert!(!covers(&g, "orders:read"));
}

#[test]
fn rules_match_first_with_paths_prefixes_and_methods() {
    let cfg = config();
    let no_token =
        |m: &str, p: &str| match decide(&cfg, &mut TokenCache::new(0), &req(m, p, &[]), NOW) {
            Decision::Allow(_) => Ok(()),
            Decision::Deny(d) => Err(d.reason),
        };
    assert_eq!(no_token("GET", "/health"), Ok(()));
    assert_eq!(no_token("GET", "/health/live?x=1"), Ok(()));
    assert_eq!(no_token("GET", "/orders"), Err(Reason::TokenMissing));
    // Refused before any rule since issue 12 (it matched no rule before): still denied.
    assert_eq!(
        no_token("GET", "/health/../orders"),
        Err(Reason::AmbiguousPath)
    );
    assert_eq!(
        no_token("GET", "/health/%2e%2e/orders"),
        Err(Reason::AmbiguousPath)
    );
    // POST /admin/rotate needs internal:admin; GET falls through to the catch-all.
    let admin = token(
        Fixture::Ec256,
        &claims_with(NOW, json!({"scope": "internal:admin"})),
    );
    let auth = bearer(&admin);
    let with = |m: &str| match decide(
        &cfg,
        &mut TokenCache::new(0),
        &req(m, "/admin/rotate", &[("authorization", &auth)]),
        NOW,
    ) {
        Decision::Allow(_) => Ok(()),
        Decision::Deny(d) => Err(d.reason),
    };
    assert_eq!(with("POST"), Ok(()));
    assert_eq!(with("GET"), Err(Reason::InsufficientScope));
}

#[test]
fn a_request_no_rule_matches_is_denied() {
    let v = json!({"providers": fixtures::config_json()["providers"].clone(),
                   "rules": [{"match": {"prefix": "/only"}, "allow": true}]});
    let cfg = Config::from_json(v.to_string().as_bytes(), &fixtures::env).unwrap();
    let Decision::Deny(d) = decide(
        &cfg,
        &mut TokenCache::new(0),
        &req("GET", "/other", &[]),
        NOW,
    ) else {
        panic!()
    };
    assert_eq!((d.reason, d.reason.status()), (Reason::NoMatchingRule, 403));
}

#[test]
fn tokens_are_found_in_every_configured_header_and_only_once() {
    let cfg = config();
    let t = token(Fixture::Ec256, &claims(NOW));
    let decide_with = |h: &[(&str, &str)]| match decide(
        &cfg,
        &mut TokenCache::new(0),
        &req("GET", "/orders", h),
        NOW,
    ) {
        Decision::Allow(_) => Ok(()),
        Decision::Deny(d) => Err(d.reason),
    };
    assert_eq!(decide_with(&[("x-service-token", &t)]), Ok(()));
    assert_eq!(
        decide_with(&[("authorization", &format!("bearer {t}"))]),
        Ok(())
    );
    assert_eq!(
        decide_with(&[("authorization", &format!("Bearer   {t}  "))]),
        Ok(())
    );
    assert_eq!(
        decide_with(&[("authorization", &format!("Basic {t}"))]),
        Err(Reason::TokenMissing)
    );
    assert_eq!(
        decide_with(&[("authorization", "Bearer ")]),
        Err(Reason::TokenMissing)
    );
    assert_eq!(
        decide_with(&[("authorization", &bearer(&t)), ("x-service-token", &t)]),
        Err(Reason::MultipleTokens)
    );
    assert_eq!(
        decide_with(&[
            ("authorization", &bearer(&t)),
            ("authorization", &bearer(&t))
        ]),
        Err(Reason::MultipleTokens)
    );
    // Envoy joins repeated `authorization` headers into one value with a comma.
    assert_eq!(
        decide_with(&[("authorization", &format!("Bearer {t},Bearer {t}"))]),
        Err(Reason::MultipleTokens)
    );
    assert_eq!(
        decide_with(&[("authorization", &format!("Basic dXNlcjpwYXNz, Bearer {t}"))]),
        Ok(())
    );
    assert_eq!(
        decide_with(&[("x-service-token", &format!("{t},{t}"))]),
        Err(Reason::MultipleTokens)
    );
}

#[test]
fn cors_preflight_is_authenticated_unless_the_bypass_is_turned_on() {
    let cfg = config();
    let h = req(
        "OPTIONS",
        "/orders",
        &[
            ("origin", "https://x"),
            ("access-control-request-method", "GET"),
        ],
    );
    // Default since issue 12: off, as in jwt_authn.
    assert!(matches!(
        decide(&cfg, &mut TokenCache::new(0), &h, NOW),
        Decision::Deny(d) if d.reason == Reason::TokenMissing
    ));
    let mut v = fixtures::config_json();
    v["bypass_cors_preflight"] = json!(true);
    let cfg = Config::from_json(v.to_string().as_bytes(), &fixtures::env).unwrap();
    assert!(matches!(
        decide(&cfg, &mut TokenCache::new(0), &h, NOW),
        Decision::Allow(_)
    ));
}

#[test]
fn claims_become_headers_and_forward_token_false_removes_the_token_header() {
    let mut v = fixtures::config_json();
    v["providers"]["internal"]["forward_token"] = json!(false);
    let cfg = Config::from_json(v.to_string().as_bytes(), &fixtures::env).unwrap();
    let t = token(Fixture::Ec256, &claims_with(NOW, json!({"tenant_id": 42})));
    let Decision::Allow(a) = decide(
        &cfg,
        &mut TokenCache::new(0),
        &req("GET", "/orders", &[("x-service-token", &t)]),
        NOW,
    ) else {
        panic!()
    };
    assert_eq!(a.strip, Some(Strip::Header("x-service-token".into())));
    let id = a.identity.unwrap();
    assert_eq!(
        id.claim_headers,
        vec![("x-tenant-id".to_string(), "42".to_string())]
    );
    assert_eq!(id.scopes_joined, "orders:read");
}

#[test]
fn a_cache_hit_gives_the_same_decision_and_expires_with_the_token() {
    let cfg = config();
    let mut cache = TokenCache::new(16);
    let t = token(Fixture::RsaA, &claims(NOW));
    let auth = bearer(&t);
    let h = req("GET", "/orders", &[("authorization", auth.as_str())]);
    let Decision::Allow(first) = decide(&cfg, &mut cache, &h, NOW) else {
        panic!()
    };
    let Decision::Allow(second) = decide(&cfg, &mut cache, &h, NOW) else {
        panic!()
    };
    assert_eq!(
        (first.cache_hit, second.cache_hit),
        (Some(false), Some(true))
    );
    assert_eq!(first.identity, second.identity);
    // Scopes are still checked per request on a hit.
    let h2 = req("GET", "/write", &[("authorization", auth.as_str())]);
    let Decision::Deny(d) = decide(&cfg, &mut cache, &h2, NOW) else {
        panic!()
    };
    assert_eq!(
        (d.reason, d.cache_hit),
        (Reason::InsufficientScope, Some(true))
    );
    // Past exp + skew the cached entry is not used.
    let Decision::Deny(d) = decide(&cfg, &mut cache, &h, NOW + 600 + 61) else {
        panic!()
    };
    assert_eq!((d.reason, d.cache_hit), (Reason::TokenExpired, Some(false)));
}

#[test]
fn denials_carry_a_short_token_hash_never_the_token() {
    let cfg = config();
    let t = token(
        Fixture::Ec256,
        &claims_with(NOW, json!({"scope": "nothing"})),
    );
    let auth = bearer(&t);
    let h = req(
        "GET",
        "/orders?token=abc",
        &[("authorization", auth.as_str()), ("x-request-id", "rid-7")],
    );
    let Decision::Deny(d) = decide(&cfg, &mut TokenCache::new(0), &h, NOW) else {
        panic!()
    };
    assert_eq!(d.token_hash.as_ref().map(|h| h.len()), Some(12));
    assert_eq!(d.subject.as_deref(), Some("orders-service"));
    let line = crate::logline::denial(&cfg, &d, &crate::logline::RequestFacts::from_headers(&h));
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["reason"], "insufficient_scope");
    assert_eq!(v["status"], 403);
    assert_eq!(v["provider"], "internal");
    assert_eq!(v["request_id"], "rid-7");
    assert_eq!(v["path"], "/orders");
    assert!(!line.contains(&t) && !line.contains(t.split('.').nth(2).unwrap()));
}

fn remote_config() -> Config {
    let mut v = fixtures::config_json();
    let p = &mut v["providers"]["internal"];
    p.as_object_mut().unwrap().remove("jwks");
    p["remote_jwks"] = json!({"cluster": "jwks"});
    Config::from_json(v.to_string().as_bytes(), &fixtures::env).unwrap()
}

fn decide_remote(
    cfg: &Config,
    store: &crate::token::keys::KeyStore,
    t: &str,
) -> Result<(), Reason> {
    let auth = bearer(t);
    let h = req("GET", "/orders", &[("authorization", auth.as_str())]);
    match crate::decide::decide_with_keys(
        cfg,
        store,
        &crate::token::jws::RustCrypto,
        &mut TokenCache::new(0),
        &h,
        NOW,
    ) {
        Decision::Allow(_) => Ok(()),
        Decision::Deny(d) => Err(d.reason),
    }
}

#[test]
fn a_remote_provider_fails_closed_until_its_first_key_set() {
    let cfg = remote_config();
    let mut store = crate::token::keys::KeyStore::new(1);
    let t = token(Fixture::Ec256, &claims(NOW));
    assert_eq!(
        decide_remote(&cfg, &store, &t),
        Err(Reason::KeysUnavailable)
    );
    // HMAC secrets are configured keys: they work without the fetched set.
    assert_eq!(
        decide_remote(&cfg, &store, &hmac_token(Alg::HS256, &claims(NOW))),
        Ok(())
    );
    let set = crate::token::keys::parse_fetched(fixtures::jwks_json().as_bytes(), 65536).unwrap();
    store.set(
        0,
        crate::token::keys::Loaded {
            keys: set.keys,
            fetched_at: NOW,
        },
    );
    assert_eq!(decide_remote(&cfg, &store, &t), Ok(()));
}

#[test]
fn a_kid_missing_from_the_fetched_set_is_unknown() {
    let cfg = remote_config();
    let mut store = crate::token::keys::KeyStore::new(1);
    let only_rsa = json!({"keys": [fixtures::public_jwk(Fixture::RsaA, "rsa-a")]}).to_string();
    let set = crate::token::keys::parse_fetched(only_rsa.as_bytes(), 65536).unwrap();
    store.set(
        0,
        crate::token::keys::Loaded {
            keys: set.keys,
            fetched_at: NOW,
        },
    );
    let t = token(Fixture::Ec256, &claims(NOW));
    assert_eq!(decide_remote(&cfg, &store, &t), Err(Reason::UnknownKid));
}

fn with_config(edit: impl FnOnce(&mut serde_json::Value)) -> Config {
    let mut v = fixtures::config_json();
    edit(&mut v);
    Config::from_json(v.to_string().as_bytes(), &fixtures::env).unwrap()
}

fn decide_headers(
    cfg: &Config,
    method: &str,
    path: &str,
    h: &[(&str, &str)],
) -> Result<String, Reason> {
    match decide(cfg, &mut TokenCache::new(0), &req(method, path, h), NOW) {
        Decision::Allow(a) => Ok(a.identity.map(|i| i.subject.clone()).unwrap_or_default()),
        Decision::Deny(d) => Err(d.reason),
    }
}

#[test]
fn a_rule_requiring_a_claim_refuses_a_validly_signed_user_token_with_403() {
    let cfg = with_config(|v| {
        v["rules"] = json!([{"match": {"prefix": "/tenant/"}, "requires": {"claims": {"type": "service", "is_service": true}}}]);
    });
    let service = token(
        Fixture::Ec256,
        &claims_with(NOW, json!({"type": "service", "is_service": true})),
    );
    let user = token(
        Fixture::Ec256,
        &claims_with(NOW, json!({"type": "user", "is_service": false})),
    );
    assert!(outcome(&cfg, "/tenant/7", &service).is_ok());
    assert_eq!(
        outcome(&cfg, "/tenant/7", &user),
        Err(Reason::ClaimNotAllowed)
    );
    assert_eq!(Reason::ClaimNotAllowed.status(), 403);
}

#[test]
fn a_provider_requiring_at_jwt_refuses_other_token_types() {
    let cfg = with_config(|v| v["providers"]["internal"]["typ"] = json!("at+jwt"));
    let mut h = serde_json::Map::new();
    h.insert("kid".into(), "ec256".into());
    let key = fixtures::signing_key(Fixture::Ec256);
    h.insert("typ".into(), "at+jwt".into());
    let at = crate::mint::sign(&key, Alg::ES256, &h, &claims(NOW)).unwrap();
    h.insert("typ".into(), "application/AT+JWT".into());
    let at_long = crate::mint::sign(&key, Alg::ES256, &h, &claims(NOW)).unwrap();
    let plain = token(Fixture::Ec256, &claims(NOW));
    assert!(outcome(&cfg, "/orders", &at).is_ok());
    assert!(outcome(&cfg, "/orders", &at_long).is_ok());
    assert_eq!(
        outcome(&cfg, "/orders", &plain),
        Err(Reason::WrongTokenType)
    );
}

#[test]
fn static_credentials_are_accepted_only_on_rules_naming_their_provider() {
    let salt = b"salt-of-16-bytes";
    let entry = format!(
        "billing:{}:{}",
        salt.iter().map(|b| format!("{b:02x}")).collect::<String>(),
        crate::statics::hash_hex(salt, b"legacy-secret")
    );
    let mut v = fixtures::config_json();
    v["providers"]["legacy"] = json!({"static_credentials": {"credentials_env": "LEGACY", "scopes": {"billing": ["auth:verify"]}}});
    v["rules"] = json!([
        {"match": {"prefix": "/auth/"}, "requires": {"providers": ["legacy", "internal"], "scopes_any": ["auth:verify"]}},
        {"match": {"prefix": "/"}, "requires": {}}
    ]);
    let env = move |k: &str| {
        if k == "LEGACY" {
            Some(entry.clone())
        } else {
            fixtures::env(k)
        }
    };
    let cfg = Config::from_json(v.to_string().as_bytes(), &env).unwrap();
    let good = [
        ("x-service-id", "billing"),
        ("x-service-secret", "legacy-secret"),
    ];
    assert_eq!(
        decide_headers(&cfg, "POST", "/auth/check", &good),
        Ok("billing".into())
    );
    let Decision::Allow(a) = decide(
        &cfg,
        &mut TokenCache::new(0),
        &req("POST", "/auth/check", &good),
        NOW,
    ) else {
        panic!()
    };
    assert_eq!(
        a.strip,
        Some(Strip::Header("x-service-secret".into())),
        "the secret is never forwarded"
    );
    let bad = [("x-service-id", "billing"), ("x-service-secret", "guess")];
    assert_eq!(
        decide_headers(&cfg, "POST", "/auth/check", &bad),
        Err(Reason::InvalidCredentials)
    );
    let no_secret = [("x-service-id", "billing")];
    assert_eq!(
        decide_headers(&cfg, "POST", "/auth/check", &no_secret),
        Err(Reason::InvalidCredentials)
    );
    // Routes that do not name the static provider never accept its credentials.
    assert_eq!(
        decide_headers(&cfg, "GET", "/orders", &good),
        Err(Reason::ProviderNotAllowed)
    );
    // A token and static credentials together are refused.
    let t = bearer(&token(Fixture::Ec256, &claims(NOW)));
    let both = [
        ("x-service-id", "billing"),
        ("x-service-secret", "legacy-secret"),
        ("authorization", t.as_str()),
    ];
    assert_eq!(
        decide_headers(&cfg, "POST", "/auth/check", &both),
        Err(Reason::MultipleTokens)
    );
}

#[test]
fn ambiguous_paths_are_recognised_in_every_spelling() {
    let cfg = config();
    for p in [
        "/health/../orders",
        "/health/./x",
        "/health/..",
        "/.",
        "/a/%2e%2e/b",
        "/a/%2E/b",
        "/a%2fb",
        "/a%2Fb",
        "/a%5cb",
        "/a\\b",
        "/health/%2e",
    ] {
        assert!(crate::decide::match_rule(&cfg, "GET", p).is_err(), "{p}");
    }
    for p in [
        "/health",
        "/health/.well-known",
        "/health/a..b",
        "/orders/a%20x",
    ] {
        assert!(
            matches!(crate::decide::match_rule(&cfg, "GET", p), Ok(Some(_))),
            "{p}"
        );
    }
    // Refused since issue 12 (they were matched before): a segment of dots only, white space
    // at a segment's edge, invalid percent-encoding.
    for p in ["/health/...", "/orders/%20x", "/a%2", "/a%"] {
        assert!(crate::decide::match_rule(&cfg, "GET", p).is_err(), "{p}");
    }
}

#[test]
fn an_ambiguous_path_is_refused_with_400_before_any_rule() {
    let cfg = config();
    for p in [
        "/health/..;/admin/rotate",
        "/health/.;/admin",
        "/admin/rotate;x=1",
        "//admin/rotate",
        "/admin/rotate%00",
        "/health/%2e%2e/admin",
    ] {
        assert_eq!(
            decide_headers(&cfg, "POST", p, &[]),
            Err(Reason::AmbiguousPath),
            "{p}"
        );
    }
    assert_eq!(Reason::AmbiguousPath.status(), 400);
}
