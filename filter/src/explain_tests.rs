//! The core names the check a request failed: for a table of requests, each failing at a
//! different check (a provider with `typ`, custom `scope_claims` and `required_claims`, a rule
//! with `requires.claims`, static credentials, a remote key set not fetched yet), the denial's
//! `check`, the failure `verify` returns and the explain observer agree, and the observer saw
//! every passed check before it, in the request's order. Uses the fixtures.

use serde_json::{json, Map, Value};

use crate::cache::TokenCache;
use crate::check::{Check, Explain};
use crate::config::Config;
use crate::contract::reason::Reason;
use crate::decide::{decide, decide_explained, Decision};
use crate::fixtures::{self, claims_with, signing_key, token, Fixture, NOW};
use crate::mint::{sign, sign_raw};
use crate::token::alg::Alg;
use crate::verify;

const TYPED_ISS: &str = "https://typed.auth";
const REMOTE_ISS: &str = "https://remote.auth";
const LEGACY_SECRET: &str = "legacy-secret";

/// What the observer saw: each passed check's name and detail, then the failed check.
#[derive(Default)]
struct Seen {
    passed: Vec<(&'static str, String)>,
    failed: Option<(Check, String)>,
}

impl Explain for Seen {
    fn pass(&mut self, check: Check, detail: impl FnOnce() -> String) {
        assert!(self.failed.is_none(), "{check} passed after a failure");
        self.passed.push((check.name(), detail()));
    }
    fn fail(&mut self, check: Check, detail: impl FnOnce() -> String) {
        assert!(
            self.failed.is_none(),
            "two failures: {check} after {:?}",
            self.failed
        );
        self.failed = Some((check, detail()));
    }
}

fn position(name: &str) -> usize {
    Check::ALL
        .iter()
        .position(|c| c.name() == name)
        .unwrap_or_else(|| panic!("{name:?} is no check's name"))
}

/// The fixture provider `internal` (all algorithms, scope claims `scope scp scopes`), plus
/// `typed` (ES256 only, `typ: at+jwt`, scopes in `roles`, `tier: gold` required, its token in
/// `x-typed-token`), `remote` (keys fetched at run time) and `legacy` (static credentials).
fn config() -> Config {
    let salt = b"salt-of-16-bytes";
    let entry = format!(
        "billing:{}:{}",
        salt.iter().map(|b| format!("{b:02x}")).collect::<String>(),
        crate::statics::hash_hex(salt, LEGACY_SECRET.as_bytes())
    );
    let mut v = fixtures::config_json();
    v["max_token_bytes"] = json!(4096);
    v["providers"]["typed"] = json!({
        "issuer": TYPED_ISS,
        "audiences": [fixtures::AUDIENCE],
        "jwks": fixtures::jwks(),
        "algorithms": ["ES256"],
        "typ": "at+jwt",
        "scope_claims": ["roles"],
        "required_claims": {"tier": "gold"},
        "from_headers": [{"name": "x-typed-token"}]
    });
    v["providers"]["remote"] = json!({
        "issuer": REMOTE_ISS,
        "remote_jwks": {"cluster": "jwks", "path": "/jwks.json"}
    });
    v["providers"]["legacy"] = json!({"static_credentials": {
        "credentials_env": "LEGACY", "scopes": {"billing": ["auth:verify"]}
    }});
    v["rules"] = json!([
        {"match": {"prefix": "/health"}, "allow": true},
        {"match": {"prefix": "/typed-only"}, "requires": {"providers": ["typed"], "scopes_any": ["orders:read"]}},
        {"match": {"prefix": "/internal-only"}, "requires": {"providers": ["internal"]}},
        {"match": {"prefix": "/team"}, "requires": {"claims": {"team": "payments"}}},
        {"match": {"prefix": "/auth/"}, "requires": {"providers": ["legacy"], "scopes_any": ["auth:verify"]}},
        {"match": {"prefix": "/orders"}, "requires": {"scopes_any": ["orders:read"]}}
    ]);
    let env = move |k: &str| match k {
        "LEGACY" => Some(entry.clone()),
        _ => fixtures::env(k),
    };
    Config::from_json(v.to_string().as_bytes(), &env).unwrap()
}

fn ec(claims: Value) -> String {
    token(Fixture::Ec256, &claims)
}

/// A token of the `typed` provider: ES256, `typ: at+jwt`, `tier: gold`, scopes in `roles`.
fn typed(changes: Value) -> String {
    let mut c = claims_with(
        NOW,
        json!({"iss": TYPED_ISS, "tier": "gold", "roles": ["orders:read"], "scope": null}),
    );
    if let (Some(obj), Some(ch)) = (c.as_object_mut(), changes.as_object()) {
        for (k, v) in ch {
            if v.is_null() {
                obj.remove(k);
            } else {
                obj.insert(k.clone(), v.clone());
            }
        }
    }
    let mut h = Map::new();
    h.insert("kid".into(), Fixture::Ec256.kid().into());
    h.insert("typ".into(), "at+jwt".into());
    sign(&signing_key(Fixture::Ec256), Alg::ES256, &h, &c).unwrap()
}

/// ES256 with the fixture key and a raw header and payload.
fn raw(header: &str, payload: &str) -> String {
    sign_raw(&signing_key(Fixture::Ec256), Alg::ES256, header, payload).unwrap()
}

fn request(path: &str, headers: &[(&str, String)]) -> Vec<(String, String)> {
    let mut h = vec![
        (":method".to_string(), "GET".to_string()),
        (":path".to_string(), path.to_string()),
    ];
    h.extend(headers.iter().map(|(k, v)| (k.to_string(), v.clone())));
    h
}

fn bearer(t: &str) -> Vec<(&'static str, String)> {
    vec![("authorization", format!("Bearer {t}"))]
}

struct Case {
    name: &'static str,
    path: &'static str,
    headers: Vec<(&'static str, String)>,
    reason: Reason,
    check: Check,
}

fn case(
    name: &'static str,
    path: &'static str,
    headers: Vec<(&'static str, String)>,
    reason: Reason,
    check: Check,
) -> Case {
    Case {
        name,
        path,
        headers,
        reason,
        check,
    }
}

#[rustfmt::skip]
fn cases() -> Vec<Case> {
    let kid = Fixture::Ec256.kid();
    let good = ec(claims_with(NOW, json!({})));
    let other = ec(claims_with(NOW, json!({"sub": "other"})));
    let forged = format!("{}.{}", good.rsplit_once('.').unwrap().0, other.rsplit_once('.').unwrap().1);
    let mut kid_header = Map::new();
    kid_header.insert("kid".into(), "no-such-kid".into());
    let unknown_kid = sign(&signing_key(Fixture::Ec256), Alg::ES256, &kid_header, &claims_with(NOW, json!({}))).unwrap();
    let legacy = |secret: &str| vec![("x-service-id", "billing".to_string()), ("x-service-secret", secret.to_string())];
    let ec_with = |changes: Value| bearer(&ec(claims_with(NOW, changes)));
    let crit = raw(&format!(r#"{{"alg":"ES256","kid":"{kid}","crit":["x"],"x":1}}"#), "{}");
    let duplicate = raw(&format!(r#"{{"alg":"ES256","kid":"{kid}"}}"#), r#"{"iss":"a","iss":"b"}"#);
    let es384 = {
        let mut h = Map::new();
        h.insert("kid".into(), Fixture::Ec384.kid().into());
        h.insert("typ".into(), "at+jwt".into());
        let c = claims_with(NOW, json!({"iss": TYPED_ISS, "tier": "gold"}));
        sign(&signing_key(Fixture::Ec384), Alg::ES384, &h, &c).unwrap()
    };
    let typ_jwt = token(Fixture::Ec256, &claims_with(NOW, json!({"iss": TYPED_ISS, "tier": "gold"})));
    let two = vec![("authorization", format!("Bearer {good}")), ("x-service-token", good.clone())];
    let x_typed = |t: String| vec![("x-typed-token", t)];
    let expired = json!({"iat": NOW - 7200, "exp": NOW - 3600});
    use Check as C;
    use Reason as R;
    // One row a line: the table reads as a table.
    vec![
        case("dot segment", "/orders/../admin", vec![], R::AmbiguousPath, C::Path),
        case("no rule", "/elsewhere", vec![], R::NoMatchingRule, C::Rule),
        case("no token", "/orders", vec![], R::TokenMissing, C::Token),
        case("two tokens", "/orders", two, R::MultipleTokens, C::Token),
        case("too large", "/orders", bearer(&"a".repeat(5000)), R::TokenTooLarge, C::Token),
        case("bad secret", "/auth/check", legacy("guess"), R::InvalidCredentials, C::Credentials),
        case("static on a jwt rule", "/orders", legacy(LEGACY_SECRET), R::ProviderNotAllowed, C::RuleProvider),
        case("not a jws", "/orders", bearer("not-a-jwt"), R::TokenMalformed, C::Format),
        case("crit", "/orders", bearer(&crit), R::CritUnsupported, C::Format),
        case("duplicate claims", "/orders", bearer(&duplicate), R::TokenMalformed, C::Claims),
        case("unknown issuer", "/orders", ec_with(json!({"iss": "https://x"})), R::IssuerMismatch, C::Issuer),
        case("issuer not a string", "/orders", ec_with(json!({"iss": 5})), R::TokenMalformed, C::Issuer),
        case("subject not a string", "/orders", ec_with(json!({"sub": 5})), R::TokenMalformed, C::Subject),
        case("alg the provider refuses", "/typed-only", x_typed(es384), R::AlgNotAllowed, C::Algorithm),
        case("typ JWT where at+jwt is required", "/typed-only", x_typed(typ_jwt), R::WrongTokenType, C::Type),
        case("expired", "/orders", ec_with(expired), R::TokenExpired, C::Lifetime),
        case("exp a string", "/orders", ec_with(json!({"exp": "soon"})), R::TokenMalformed, C::Lifetime),
        case("audience", "/orders", ec_with(json!({"aud": "billing"})), R::AudienceMismatch, C::Audience),
        case("provider's required claim", "/typed-only", x_typed(typed(json!({"tier": "silver"}))), R::ClaimMismatch, C::RequiredClaims),
        case("no subject", "/orders", ec_with(json!({"sub": null})), R::ClaimMismatch, C::Subject),
        case("remote keys not fetched", "/orders", ec_with(json!({"iss": REMOTE_ISS, "aud": null})), R::KeysUnavailable, C::Key),
        case("unknown kid", "/orders", bearer(&unknown_kid), R::UnknownKid, C::Key),
        case("forged", "/orders", bearer(&forged), R::BadSignature, C::Signature),
        case("scope a number", "/orders", ec_with(json!({"scope": 5})), R::TokenMalformed, C::Scopes),
        // `typed` reads its scopes from `roles` only: a bad `scope` is not its concern...
        case("typed: roles a number", "/typed-only", x_typed(typed(json!({"roles": 5, "scope": 5}))), R::TokenMalformed, C::Scopes),
        case("claim header with a line break", "/orders", ec_with(json!({"tenant_id": "a\nb"})), R::TokenMalformed, C::ClaimHeaders),
        case("typed token in authorization", "/typed-only", bearer(&typed(json!({}))), R::WrongTokenLocation, C::TokenLocation),
        case("internal token, typed rule", "/typed-only", bearer(&good), R::ProviderNotAllowed, C::RuleProvider),
        case("typed token, internal rule", "/internal-only", x_typed(typed(json!({}))), R::ProviderNotAllowed, C::RuleProvider),
        case("rule claim absent", "/team", bearer(&good), R::ClaimNotAllowed, C::RuleClaims),
        case("rule claim differs", "/team", ec_with(json!({"team": "ops"})), R::ClaimNotAllowed, C::RuleClaims),
        case("scope not granted", "/orders", ec_with(json!({"scope": "orders:write"})), R::InsufficientScope, C::RuleScopes),
        // ...and a `scope` claim grants it nothing.
        case("typed: scope instead of roles", "/typed-only", x_typed(typed(json!({"roles": null, "scope": "orders:read"}))), R::InsufficientScope, C::RuleScopes),
    ]
}

/// Decides `c` with an observer; checks that the denial, the observer and the silent data
/// path agree. Returns what the observer saw.
fn explained(cfg: &Config, c: &Case) -> Seen {
    let h = request(c.path, &c.headers);
    let mut seen = Seen::default();
    let decision = decide_explained(cfg, &h, NOW, &mut seen);
    let Decision::Deny(d) = &decision else {
        panic!("{}: allowed", c.name);
    };
    assert_eq!((d.reason, d.check), (c.reason, c.check), "{}", c.name);
    let failed = seen.failed.as_ref().map(|(check, _)| *check);
    assert_eq!(failed, Some(c.check), "{}: the observer's failure", c.name);
    let silent = decide(cfg, &mut TokenCache::new(0), &h, NOW);
    assert_eq!(
        silent, decision,
        "{}: the data path decides the same",
        c.name
    );
    seen
}

#[test]
fn every_denial_names_the_check_that_failed() {
    let cfg = config();
    let table = cases();
    let mut covered: Vec<Check> = table.iter().map(|c| c.check).collect();
    covered.dedup();
    for c in &table {
        explained(&cfg, c);
    }
    for check in Check::ALL {
        let decided_elsewhere = matches!(
            check,
            Check::Clock | Check::RequestSignature | Check::RateLimit
        );
        assert!(
            decided_elsewhere || covered.contains(&check),
            "no case fails at {check}"
        );
    }
}

#[test]
fn the_observer_sees_each_passed_check_in_order_before_the_failed_one() {
    let cfg = config();
    for c in cases() {
        let seen = explained(&cfg, &c);
        let mut at = None;
        for (name, _) in &seen.passed {
            let p = position(name);
            assert!(
                at < Some(p),
                "{}: {name} out of order in {:?}",
                c.name,
                seen.passed
            );
            at = Some(p);
        }
        let failed = position(c.check.name());
        assert!(
            at < Some(failed),
            "{}: a check after the failed one passed",
            c.name
        );
    }
}

#[test]
fn verify_alone_names_the_same_check_as_decide() {
    let cfg = config();
    let verification = |c: Check| {
        position(c.name()) >= position("format") && position(c.name()) <= position("claim headers")
    };
    for c in cases().into_iter().filter(|c| verification(c.check)) {
        let Some(t) = c
            .headers
            .first()
            .map(|(_, v)| v.trim_start_matches("Bearer ").to_string())
        else {
            continue;
        };
        let mut seen = Seen::default();
        let f = verify::verify_explained(&cfg, &t, NOW, &mut seen).unwrap_err();
        assert_eq!((f.reason, f.check), (c.reason, c.check), "{}", c.name);
        assert_eq!(
            seen.failed.map(|(check, _)| check),
            Some(c.check),
            "{}",
            c.name
        );
    }
}

#[test]
fn an_allowed_request_passes_every_check_it_met_and_fails_none() {
    let cfg = config();
    let typed_ok = request("/typed-only", &[("x-typed-token", typed(json!({})))]);
    let mut seen = Seen::default();
    let d = decide_explained(&cfg, &typed_ok, NOW, &mut seen);
    assert!(matches!(d, Decision::Allow(_)), "{d:?}");
    assert!(seen.failed.is_none());
    let names: Vec<&str> = seen.passed.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        names,
        [
            "path",
            "rule",
            "token",
            "clock",
            "format",
            "claims",
            "issuer",
            "algorithm",
            "type",
            "lifetime",
            "audience",
            "required claims",
            "subject",
            "key",
            "signature",
            "scopes",
            "token location",
            "rule provider",
            "rule claims",
            "rule scopes"
        ]
    );
    let detail = |name: &str| {
        seen.passed
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, d)| d.clone())
            .unwrap_or_default()
    };
    assert!(
        detail("scopes").contains("claim roles"),
        "{}",
        detail("scopes")
    );
    assert!(
        detail("required claims").contains("tier=\"gold\""),
        "{}",
        detail("required claims")
    );

    let team = request(
        "/team",
        &bearer(&ec(claims_with(NOW, json!({"team": "payments"})))),
    );
    let mut seen = Seen::default();
    assert!(matches!(
        decide_explained(&cfg, &team, NOW, &mut seen),
        Decision::Allow(_)
    ));
    let rule_claims = seen
        .passed
        .iter()
        .find(|(n, _)| *n == "rule claims")
        .unwrap();
    assert!(
        rule_claims.1.contains("team=\"payments\""),
        "{}",
        rule_claims.1
    );

    let mut seen = Seen::default();
    let statics = request(
        "/auth/check",
        &[
            ("x-service-id", "billing".to_string()),
            ("x-service-secret", LEGACY_SECRET.to_string()),
        ],
    );
    let allowed = decide_explained(&cfg, &statics, NOW, &mut seen);
    assert!(matches!(allowed, Decision::Allow(_)), "{allowed:?}");
    let names: Vec<&str> = seen.passed.iter().map(|(n, _)| *n).collect();
    let walk = [
        "path",
        "rule",
        "token",
        "rule provider",
        "credentials",
        "rule claims",
        "rule scopes",
    ];
    assert_eq!(names, walk);

    let mut seen = Seen::default();
    let open = decide_explained(&cfg, &request("/health", &[]), NOW, &mut seen);
    assert!(matches!(open, Decision::Allow(_)));
    let names: Vec<&str> = seen.passed.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, ["path", "rule", "token"]);
}

#[test]
fn failure_details_name_the_values_the_core_compared() {
    let cfg = config();
    let detail = |path: &str, headers: Vec<(&'static str, String)>| {
        let mut seen = Seen::default();
        decide_explained(&cfg, &request(path, &headers), NOW, &mut seen);
        seen.failed.map(|(_, d)| d).unwrap_or_default()
    };
    let d = detail(
        "/typed-only",
        vec![(
            "x-typed-token",
            typed(json!({"roles": null, "scope": "orders:read"})),
        )],
    );
    assert!(d.starts_with("insufficient_scope: granted \"\""), "{d}");
    let d = detail(
        "/team",
        bearer(&ec(claims_with(NOW, json!({"team": "ops"})))),
    );
    assert!(
        d.contains("team=\"payments\"") && d.contains("\"ops\""),
        "{d}"
    );
    let d = detail(
        "/orders",
        bearer(&ec(claims_with(
            NOW,
            json!({"iat": NOW - 7200, "exp": NOW - 3600}),
        ))),
    );
    assert!(d.starts_with("token_expired"), "{d}");
}

#[test]
fn check_names_are_unique_and_in_the_request_order() {
    for (i, a) in Check::ALL.iter().enumerate() {
        for b in Check::ALL.iter().skip(i + 1) {
            assert_ne!(a.name(), b.name());
        }
        assert_eq!(position(a.name()), i);
    }
}

#[test]
fn a_clock_that_fails_and_a_denial_after_the_decision_are_named_too() {
    let cfg = config();
    let h = request("/orders", &bearer(&ec(claims_with(NOW, json!({})))));
    let mut seen = Seen::default();
    let d = crate::decide::decide_observed(
        &cfg,
        &crate::token::keys::KeyStore::default(),
        &crate::token::jws::RustCrypto,
        &mut TokenCache::new(0),
        &h,
        &mut || None,
        &mut seen,
    );
    let Decision::Deny(d) = d else {
        panic!("allowed without a clock")
    };
    assert_eq!(
        (d.reason, d.check),
        (Reason::ClockUnavailable, Check::Clock)
    );
    assert_eq!(seen.failed.map(|(c, _)| c), Some(Check::Clock));
    let later = crate::decide::Denial::after(Check::RateLimit, Reason::RateLimited);
    assert_eq!(later.check, Check::RateLimit);
}
