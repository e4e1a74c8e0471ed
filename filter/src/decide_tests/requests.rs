//! `decide` on the request around the token: the headers it is found in, CORS preflight, claims
//! to headers, the token cache, what a denial carries, and remote key sets.

use serde_json::json;

use crate::cache::TokenCache;
use crate::config::Config;
use crate::contract::reason::Reason;
use crate::decide::{decide, Decision, Strip};
use crate::fixtures::{self, claims, claims_with, hmac_token, token, Fixture, NOW};
use crate::token::alg::Alg;

use super::{bearer, config, req};

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
