//! Issue 12's doors, natively: one canonical path, verified identity only, preflights, header
//! spellings. The same cases run through a real Envoy in `tests/doors.rs` and
//! `tests/side_doors.rs`.

use proptest::prelude::*;
use serde_json::json;

use crate::cache::TokenCache;
use crate::config::{Config, HeaderFate};
use crate::contract::names::folds_to;
use crate::contract::reason::Reason;
use crate::decide::{decide, Decision, Denial};
use crate::fixtures::{self, claims, claims_with, token, Fixture, NOW};
use crate::token::alg::Alg;

fn config_with(changes: impl FnOnce(&mut serde_json::Value)) -> Config {
    let mut v = fixtures::config_json();
    changes(&mut v);
    // A static-credentials entry for providers that read `LEGACY`.
    let env = |k: &str| match k {
        "LEGACY" => Some(format!(
            "billing:{}:{}",
            "00".repeat(16),
            crate::statics::hash_hex(&[0u8; 16], b"legacy-secret")
        )),
        _ => fixtures::env(k),
    };
    Config::from_json(v.to_string().as_bytes(), &env).unwrap()
}

fn run(cfg: &Config, method: &str, path: &str, extra: &[(&str, &str)]) -> Decision {
    let mut h = vec![
        (":method".to_string(), method.to_string()),
        (":path".to_string(), path.to_string()),
    ];
    h.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    decide(cfg, &mut TokenCache::new(0), &h, NOW)
}

fn reason(d: &Decision) -> Option<Reason> {
    match d {
        Decision::Allow(_) => None,
        Decision::Deny(d) => Some(d.reason),
    }
}

fn denial(d: Decision) -> Denial {
    match d {
        Decision::Deny(d) => d,
        Decision::Allow(a) => panic!("allowed: {a:?}"),
    }
}

fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

/// An `orders:read` token: the demo's lesser scope.
fn reader() -> String {
    bearer(&token(Fixture::Ec256, &claims(NOW)))
}

fn admin() -> String {
    bearer(&token(
        Fixture::Ec256,
        &claims_with(NOW, json!({"scope": "internal:admin"})),
    ))
}

#[test]
fn spellings_of_the_admin_path_reach_the_admin_rule_or_are_refused() {
    let cfg = config_with(|_| {});
    let auth = reader();
    let h = [("authorization", auth.as_str())];
    for p in [
        "/admin/rotate",
        "/admin/rotate/",
        "/admin//rotate",
        "/%61dmin/rotate",
        "/admin/%72otate",
        "/admin/rotate?x=1",
        "/admin/rotate#f",
    ] {
        assert_eq!(
            reason(&run(&cfg, "POST", p, &h)),
            Some(Reason::InsufficientScope),
            "{p}"
        );
    }
    for p in [
        "//admin/rotate",
        "/admin/rotate;x=1",
        "/admin;x/rotate",
        "/health/..;/admin/rotate",
        "/health/.;/admin/rotate",
        "/health/../admin/rotate",
        "/health/%2e%2e/admin/rotate",
        "/admin/rotate%00",
        "/admin/rotate%20",
        "/admin%2frotate",
        "/admin\\rotate",
        "/ADMIN/rotate",
        "/Admin/Rotate/",
        "/admin/ROTATE",
    ] {
        assert_eq!(
            reason(&run(&cfg, "POST", p, &h)),
            Some(Reason::AmbiguousPath),
            "{p}"
        );
        // Open routes get no pass either: the check runs before any rule.
        assert_eq!(
            reason(&run(&cfg, "POST", p, &[])),
            Some(Reason::AmbiguousPath),
            "{p}"
        );
    }
    let auth = admin();
    assert_eq!(
        reason(&run(
            &cfg,
            "POST",
            "/admin/rotate",
            &[("authorization", auth.as_str())]
        )),
        None
    );
}

#[test]
fn ignore_case_matches_every_case_of_the_rule_path() {
    let cfg = config_with(|v| {
        v["rules"][1]["match"]["ignore_case"] = json!(true);
    });
    let auth = reader();
    let h = [("authorization", auth.as_str())];
    for p in ["/ADMIN/rotate", "/Admin/Rotate/", "/admin/ROTATE"] {
        assert_eq!(
            reason(&run(&cfg, "POST", p, &h)),
            Some(Reason::InsufficientScope),
            "{p}"
        );
    }
}

#[test]
fn methods_match_in_any_case_and_head_falls_under_get() {
    let cfg = config_with(|v| {
        v["rules"][1]["match"]["methods"] = json!(["GET"]);
    });
    let auth = reader();
    let h = [("authorization", auth.as_str())];
    for m in ["GET", "get", "HEAD", "head"] {
        assert_eq!(
            reason(&run(&cfg, m, "/admin/rotate", &h)),
            Some(Reason::InsufficientScope),
            "{m}"
        );
    }
    assert_eq!(reason(&run(&cfg, "POST", "/admin/rotate", &h)), None);
}

#[test]
fn a_rule_path_that_is_not_canonical_is_refused_at_configure() {
    for bad in ["/a/../b", "/a;x", "//a", "/a%2fb", "/a%zz"] {
        let mut v = fixtures::config_json();
        v["rules"][0]["match"]["prefix"] = json!(bad);
        let e = Config::from_json(v.to_string().as_bytes(), &fixtures::env).unwrap_err();
        assert!(e.0.starts_with("rules[0].match:"), "{bad}: {e}");
    }
    let cfg = config_with(|v| v["rules"][0]["match"]["prefix"] = json!("/h%65alth"));
    assert_eq!(reason(&run(&cfg, "GET", "/health", &[])), None);
}

#[test]
fn a_forged_token_never_names_the_caller() {
    let cfg = config_with(|_| {});
    let forged_claims = claims_with(NOW, json!({"sub": "admin-service"}));
    // Signed by RSA key B under RSA key A's kid: a bad signature.
    let mut head = serde_json::Map::new();
    head.insert("kid".into(), "rsa-a".into());
    let wrong_key = crate::mint::sign(
        &fixtures::signing_key(Fixture::RsaB),
        Alg::RS256,
        &head,
        &forged_claims,
    )
    .unwrap();
    let mut head = serde_json::Map::new();
    head.insert("kid".into(), "nobody".into());
    let unknown_kid = crate::mint::sign(
        &fixtures::signing_key(Fixture::RsaB),
        Alg::RS256,
        &head,
        &forged_claims,
    )
    .unwrap();
    let mut head = serde_json::Map::new();
    head.insert("kid".into(), "rsa-a".into());
    let expired_forged = crate::mint::sign(
        &fixtures::signing_key(Fixture::RsaB),
        Alg::RS256,
        &head,
        &claims_with(
            NOW - 7200,
            json!({"sub": "admin-service", "exp": NOW - 3600}),
        ),
    )
    .unwrap();
    for (t, want) in [
        (wrong_key, Reason::BadSignature),
        (unknown_kid, Reason::UnknownKid),
        (expired_forged, Reason::TokenExpired),
    ] {
        let auth = bearer(&t);
        let h = [("authorization", auth.as_str())];
        let d = denial(run(&cfg, "GET", "/orders", &h));
        assert_eq!(d.reason, want);
        assert_eq!(d.subject, None, "{want:?}");
        assert_eq!(d.unverified_subject.as_deref(), Some("admin-service"));
        let hv: Vec<(String, String)> = vec![(":path".into(), "/orders".into())];
        let line =
            crate::logline::denial(&cfg, &d, &crate::logline::RequestFacts::from_headers(&hv));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["subject"], serde_json::Value::Null, "{line}");
        assert_eq!(v["unverified_subject"], "admin-service", "{line}");
    }
    // A verified caller denied for scope is named.
    let auth = reader();
    let d = denial(run(
        &cfg,
        "POST",
        "/admin/rotate",
        &[("authorization", auth.as_str())],
    ));
    assert_eq!(d.subject.as_deref(), Some("orders-service"));
    assert_eq!(d.unverified_subject, None);
}

#[test]
fn a_preflight_bypass_applies_after_the_path_check_and_to_real_preflights_only() {
    let cfg = config_with(|v| v["bypass_cors_preflight"] = json!(true));
    let pre = [
        ("origin", "https://x"),
        ("access-control-request-method", "POST"),
    ];
    assert_eq!(reason(&run(&cfg, "OPTIONS", "/admin/rotate", &pre)), None);
    for p in [
        "/health/..;/admin/rotate",
        "/admin/rotate;x=1",
        "//admin/rotate",
    ] {
        assert_eq!(
            reason(&run(&cfg, "OPTIONS", p, &pre)),
            Some(Reason::AmbiguousPath),
            "{p}"
        );
    }
    for partial in [
        &pre[..1],
        &pre[1..],
        &[("origin", ""), ("access-control-request-method", "POST")][..],
    ] {
        assert_eq!(
            reason(&run(&cfg, "OPTIONS", "/orders", partial)),
            Some(Reason::TokenMissing)
        );
    }
    assert_eq!(
        reason(&run(&cfg, "GET", "/orders", &pre)),
        Some(Reason::TokenMissing)
    );
}

#[test]
fn every_spelling_of_our_headers_is_stripped_and_the_secret_consumed() {
    let cfg = config_with(|v| {
        v["providers"]["internal"]["claim_to_headers"] =
            json!([{"claim": "tenant_id", "header": "x-tenant-id"}]);
        v["providers"]["legacy"] = json!({"static_credentials": {"credentials_env": "LEGACY", "scopes": {"billing": ["auth:verify"]}}});
    });
    for name in [
        "x-service-name",
        "x_service_name",
        "X-Service_Name",
        "x-SERVICE-scopes",
        "x_svcauth_decision",
        "x-svcauth-service",
        "x_tenant_id",
        "x_service_secret",
        "X-Service-Secret",
    ] {
        assert_eq!(cfg.header_fate(name), HeaderFate::Strip, "{name}");
    }
    assert_eq!(cfg.header_fate("x-service-secret"), HeaderFate::Consume);
    for name in [
        "authorization",
        "x-service-id",
        "x-request-id",
        "x-service-namex",
    ] {
        assert_eq!(cfg.header_fate(name), HeaderFate::Keep, "{name}");
    }
}

#[test]
fn refetch_interval_below_one_second_is_refused() {
    let mut v = fixtures::config_json();
    v["providers"]["internal"]["remote_jwks"] =
        json!({"cluster": "jwks", "refetch_interval_seconds": 0});
    let e = Config::from_json(v.to_string().as_bytes(), &fixtures::env).unwrap_err();
    assert!(e.0.contains("refetch_interval_seconds"), "{e}");
}

proptest! {
    /// For any path, either it is refused, or its canonical form is a fixed point.
    #[test]
    fn canonical_paths_are_fixed_points(raw in "[/a-zA-Z0-9%.;\\\\?#:@!$&'()*+,=~_ -]{0,40}") {
        if let Ok(c) = crate::path::canonical(&raw) {
            let again = crate::path::canonical(&c);
            prop_assert_eq!(again.as_deref().ok(), Some(c.as_ref()), "{:?}", raw);
        }
    }

    /// Percent-encodings of arbitrary bytes: refused or canonical, never a panic.
    #[test]
    fn encoded_bytes_are_refused_or_canonical(bytes in proptest::collection::vec(any::<u8>(), 0..24)) {
        let mut raw = String::from("/");
        for b in &bytes {
            raw.push_str(&format!("%{b:02x}"));
        }
        if let Ok(c) = crate::path::canonical(&raw) {
            prop_assert!(c.starts_with('/') && !c.starts_with("//"));
            prop_assert!(!c.contains(['\\', ';', '\0']));
            prop_assert!(!c.split('/').any(|s| s == "." || s == ".."));
            let again = crate::path::canonical(&c);
            prop_assert_eq!(again.as_deref().ok(), Some(c.as_ref()));
        }
    }

    /// Header folding is symmetric and ignores only case and `_`/`-`.
    #[test]
    fn folding_only_ignores_case_and_underscores(name in "[a-zA-Z_-]{1,16}") {
        let ours = name.to_ascii_lowercase().replace('_', "-");
        prop_assert!(folds_to(&name, &ours));
        let longer = format!("{ours}x");
        prop_assert!(!folds_to(&name, &longer));
    }
}
