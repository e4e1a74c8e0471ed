//! The config room's tests: the fixture and contract configs compile with their defaults,
//! and bad configs are refused with a message that names the field.

use serde_json::{json, Value};

use super::*;
use crate::fixtures;

fn compile_json(v: &Value) -> Result<Config, ConfigError> {
    Config::from_json(v.to_string().as_bytes(), &fixtures::env)
}

#[test]
fn the_fixture_config_compiles_with_its_defaults() {
    let c = compile_json(&fixtures::config_json()).unwrap();
    assert_eq!(c.providers.len(), 1);
    let p = &c.providers[0];
    assert_eq!(p.keys.len(), 6, "five JWKS keys and one HMAC secret");
    assert_eq!(p.clock_skew, 60);
    assert_eq!(p.subject_claim, "sub");
    assert_eq!(p.scope_claims, vec!["scope", "scp", "scopes"]);
    assert!(p.forward_token);
    assert_eq!(c.max_token_bytes, 8192);
    // Off by default (issue 12), as in jwt_authn.
    assert!(!c.bypass_cors_preflight);
    assert_eq!(c.cache_max_entries, 1024);
    assert_eq!(c.sources.len(), 2);
    assert!(c.strip_headers.contains(&"x-tenant-id".to_string()));
    assert!(c.strip_headers.contains(&"x-service-name".to_string()));
}

#[test]
fn the_contract_example_compiles_with_a_jwks_string() {
    let v = json!({
        "providers": {"internal": {
            "issuer": "https://auth.internal", "audiences": ["orders"],
            "jwks": fixtures::jwks_json(),
            "from_headers": [{"name": "authorization", "value_prefix": "Bearer "}, {"name": "x-service-token"}],
            "clock_skew_seconds": 60
        }},
        "rules": [
            {"match": {"prefix": "/health"}, "allow": true},
            {"match": {"path": "/admin/rotate", "methods": ["POST"]}, "requires": {"scopes_all": ["internal:admin"]}},
            {"match": {"prefix": "/"}, "requires": {"scopes_any": ["orders:read", "orders:write"]}}
        ]
    });
    let c = compile_json(&v).unwrap();
    assert_eq!(c.rules.len(), 3);
    assert_eq!(c.rules[0].action, Action::Allow);
}

/// Each bad config and the start of the message that must name the problem.
#[test]
fn bad_configs_are_refused_with_a_message_naming_the_field() {
    let base = fixtures::config_json();
    let with = |path: &[&str], value: Value| {
        let mut v = base.clone();
        let mut cur = &mut v;
        for (i, k) in path.iter().enumerate() {
            if i + 1 == path.len() {
                cur[*k] = value.clone();
            } else {
                cur = &mut cur[*k];
            }
        }
        v
    };
    let cases: Vec<(Value, &str)> = vec![
        (with(&["bogus"], json!(1)), "bogus: unknown field `bogus`"),
        (
            with(&["providers", "internal", "isuer"], json!("x")),
            "providers.internal.isuer: unknown field `isuer`",
        ),
        (
            with(&["providers", "internal", "jwks"], json!("{\"keys\": 5}")),
            "providers.internal.jwks: not a JWK Set",
        ),
        (
            with(
                &["providers", "internal", "jwks"],
                json!({"keys": [{"kty": "oct", "k": "AA"}]}),
            ),
            "providers.internal.jwks: unusable key",
        ),
        (
            with(
                &["providers", "internal", "hmac_secret_env"],
                json!("NOPE_NOT_SET"),
            ),
            "providers.internal.hmac_secret_env: environment variable NOPE_NOT_SET is not set",
        ),
        (
            with(&["providers", "internal", "algorithms"], json!(["none"])),
            "providers.internal.algorithms: unsupported algorithm \"none\"",
        ),
        (
            with(
                &["providers", "internal", "from_headers"],
                json!([{"name": "bad header"}]),
            ),
            "providers.internal.from_headers[0].name",
        ),
        (
            with(
                &["providers", "internal", "claim_to_headers"],
                json!([{"claim": "a", "header": "authorization"}]),
            ),
            "providers.internal.claim_to_headers[0].header",
        ),
        (with(&["rules"], json!([])), "rules: at least one rule"),
        (
            with(
                &["rules"],
                json!([{"match": {"prefix": "/"}, "requires": {"providers": ["ghost"]}}]),
            ),
            "rules[0].requires.providers: unknown provider \"ghost\"",
        ),
        (
            with(
                &["rules"],
                json!([{"match": {"prefix": "/", "path": "/x"}, "allow": true}]),
            ),
            "rules[0].match: needs exactly one",
        ),
        (
            with(
                &["rules"],
                json!([{"match": {"prefix": "x"}, "allow": true}]),
            ),
            "rules[0].match:",
        ),
        (
            with(&["rules"], json!([{"match": {"prefix": "/"}}])),
            "rules[0]: needs allow: true or requires",
        ),
        (
            with(
                &["rules"],
                json!([{"match": {"prefix": "/"}, "requires": {"scopes_all": ["a\"b"]}}]),
            ),
            "rules[0].requires.scopes_all",
        ),
        (
            with(
                &["rules"],
                json!([{"match": {"prefix": "/"}, "requires": {"scope_all": ["a"]}}]),
            ),
            "rules[0].requires.scope_all: unknown field `scope_all`",
        ),
        (with(&["max_token_bytes"], json!(10)), "max_token_bytes:"),
    ];
    for (cfg, want) in cases {
        let e = compile_json(&cfg)
            .err()
            .unwrap_or_else(|| panic!("accepted: {want}"));
        assert!(e.0.starts_with(want), "got {:?}, want prefix {want:?}", e.0);
    }
}

#[test]
fn a_provider_without_any_key_source_is_refused() {
    let v = json!({"providers": {"p": {"issuer": "i"}}, "rules": [{"match": {"prefix": "/"}, "allow": true}]});
    assert_eq!(
        compile_json(&v).unwrap_err().0,
        "providers.p: no key source: set jwks, remote_jwks or hmac_secret_env"
    );
}

#[test]
fn a_short_hmac_secret_is_refused() {
    let v = json!({"providers": {"p": {"issuer": "i", "hmac_secret_env": "S"}}, "rules": [{"match": {"prefix": "/"}, "allow": true}]});
    let e = Config::from_json(v.to_string().as_bytes(), &|_| Some("short".into())).unwrap_err();
    assert!(e.0.contains("shorter than 32 bytes"), "{e}");
    assert!(
        !e.0.contains("short\""),
        "the secret itself is never echoed"
    );
}

#[test]
fn not_json_at_all_is_refused() {
    assert!(Config::from_json(b"not json", &fixtures::env)
        .unwrap_err()
        .0
        .starts_with("config:"));
    assert!(Config::from_json(b"", &fixtures::env).is_err());
}
