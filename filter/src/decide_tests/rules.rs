//! `decide` on the rules: first match by path, prefix and method, no match, scopes with
//! wildcards, required claims, static credentials per rule, and ambiguous paths.

use serde_json::json;

use crate::cache::TokenCache;
use crate::config::Config;
use crate::contract::reason::Reason;
use crate::decide::{covers, decide, Decision, Strip};
use crate::fixtures::{self, claims, claims_with, token, Fixture, NOW};

use super::{bearer, config, outcome, req, with_config};

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
