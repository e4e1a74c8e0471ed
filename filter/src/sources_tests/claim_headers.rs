//! Rich `claim_to_headers`: dot paths, lists of strings and the value bound at request time,
//! and the entries refused at configure time.

use serde_json::{json, Value};

use crate::config::Config;
use crate::contract::reason::Reason;
use crate::decide::Decision;
use crate::fixtures::{self, claims_with, token, Fixture, NOW};

use super::{compile, config_with, one, req, run, with_provider};

fn claim_config(entries: Value, max: Option<usize>) -> Config {
    let mut changes = json!({"claim_to_headers": entries});
    if let Some(m) = max {
        changes["max_claim_header_bytes"] = json!(m);
    }
    config_with(changes)
}

/// The claim headers of a token with `extra` claims, or the denial's reason.
fn rendered(cfg: &Config, extra: Value) -> Result<Vec<(String, String)>, Reason> {
    let t = token(Fixture::Ec256, &claims_with(NOW, extra));
    let h = req("/orders", &[("authorization", &format!("Bearer {t}"))]);
    match run(cfg, &h) {
        Decision::Allow(a) => Ok(a.identity.unwrap().claim_headers.clone()),
        Decision::Deny(d) => Err(d.reason),
    }
}

#[test]
fn nested_claims_and_lists_of_strings_become_headers() {
    let cfg = claim_config(
        json!([
            {"claim": "realm_access.roles", "header": "x-roles"},
            {"claim": "org.id", "header": "x-org"},
            {"claim": ["https://example.com/groups"], "header": "x-groups"},
            {"claim": "https://example.com/groups", "header": "x-dotted"}
        ]),
        None,
    );
    let roles = |v: Value| rendered(&cfg, json!({"realm_access": {"roles": v}}));
    assert_eq!(
        roles(json!(["admin", "user"])),
        one("x-roles", "admin,user")
    );
    assert_eq!(roles(json!(["only"])), one("x-roles", "only"));
    assert_eq!(roles(json!("a string")), one("x-roles", "a string"));
    assert_eq!(roles(json!(7)), one("x-roles", "7"));
    assert_eq!(roles(json!(true)), one("x-roles", "true"));
    assert_eq!(roles(json!("café ü")), one("x-roles", "café ü"));
    // Not rendered, so no header: a list with anything but strings, an empty list, an
    // object, null, or a path that leads nowhere.
    for v in [
        json!(["a", 1]),
        json!(["a", null]),
        json!([["a"]]),
        json!([{"a": "b"}]),
        json!([]),
        json!({"a": "b"}),
        json!(null),
    ] {
        assert_eq!(roles(v.clone()), Ok(vec![]), "{v}");
    }
    assert_eq!(rendered(&cfg, json!({"realm_access": "x"})), Ok(vec![]));
    assert_eq!(
        rendered(&cfg, json!({"realm_access": ["roles"]})),
        Ok(vec![])
    );
    assert_eq!(
        rendered(&cfg, json!({"realm_access.roles": ["a"]})),
        Ok(vec![])
    );
    assert_eq!(
        rendered(
            &cfg,
            json!({"org": {"id": 42}, "realm_access": {"roles": ["r"]}})
        ),
        Ok(vec![
            ("x-roles".to_string(), "r".to_string()),
            ("x-org".to_string(), "42".to_string())
        ])
    );
    // A member name with dots: the list form reaches it, the dot path does not.
    assert_eq!(
        rendered(&cfg, json!({"https://example.com/groups": ["g1", "g2"]})),
        one("x-groups", "g1,g2")
    );
}

#[test]
fn a_claim_that_cannot_go_into_a_header_unchanged_makes_the_token_malformed() {
    let cfg = claim_config(
        json!([{"claim": "realm_access.roles", "header": "x-roles"}]),
        Some(16),
    );
    let roles = |v: Value| rendered(&cfg, json!({"realm_access": {"roles": v}}));
    for v in [
        json!("a\r\nx-service-name: admin"),
        json!("a\nb"),
        json!("a\u{0}b"),
        json!("a\u{7f}"),
        json!("a\u{85}b"),
        json!(["a", "b\r\nc"]),
        json!(["a,b", "c"]),
        json!(["a", ""]),
        json!([" admin"]),
        json!(["admin\t"]),
        json!("x".repeat(17)),
        json!(["12345678", "12345678"]),
    ] {
        assert_eq!(roles(v.clone()), Err(Reason::TokenMalformed), "{v}");
    }
    // Up to the bound, and a tab inside, are fine.
    assert_eq!(
        roles(json!("x".repeat(16))),
        one("x-roles", &"x".repeat(16))
    );
    assert_eq!(
        roles(json!(["1234567", "1234567"])),
        one("x-roles", "1234567,1234567")
    );
    assert_eq!(roles(json!("a\tb")), one("x-roles", "a\tb"));
    // The default bound is 4096 bytes (tokens up to 32 KiB here, to carry such claims).
    let mut v = with_provider(json!({"claim_to_headers": [{"claim": "t", "header": "x-t"}]}));
    v["max_token_bytes"] = json!(32768);
    let cfg = compile(&v).unwrap();
    assert_eq!(cfg.providers[0].max_claim_header_bytes, 4096);
    assert_eq!(
        rendered(&cfg, json!({"t": "y".repeat(4096)})),
        one("x-t", &"y".repeat(4096))
    );
    assert_eq!(
        rendered(&cfg, json!({"t": "y".repeat(4097)})),
        Err(Reason::TokenMalformed)
    );
    assert_eq!(
        rendered(&cfg, json!({"t": vec!["y"; 2048]})),
        one("x-t", &vec!["y"; 2048].join(","))
    );
    assert_eq!(
        rendered(&cfg, json!({"t": vec!["y"; 2049]})),
        Err(Reason::TokenMalformed)
    );
}

#[test]
fn claim_headers_that_cannot_be_rendered_are_refused_at_configure_time() {
    let entry = |claim: Value, header: &str| json!({"claim_to_headers": [{"claim": claim, "header": header}]});
    let field = "providers.internal.claim_to_headers[0]";
    let cases: Vec<(Value, String)> = vec![
        (entry(json!(""), "x-a"), format!("{field}.claim")),
        (
            entry(json!("a..b"), "x-a"),
            format!("{field}.claim: a..b has an empty member name"),
        ),
        (entry(json!(".a"), "x-a"), format!("{field}.claim")),
        (entry(json!("a."), "x-a"), format!("{field}.claim")),
        (entry(json!([]), "x-a"), format!("{field}.claim")),
        (entry(json!([""]), "x-a"), format!("{field}.claim")),
        (
            entry(json!(["a", 1]), "x-a"),
            format!("{field}.claim: a list of member names"),
        ),
        (
            entry(json!(5), "x-a"),
            format!("{field}.claim: must be a claim name"),
        ),
        (entry(json!({"a": 1}), "x-a"), format!("{field}.claim")),
    ];
    let mut cases = cases;
    for reserved in [
        "authorization",
        "Proxy-Authorization",
        "cookie",
        "host",
        "content-length",
        "content-encoding",
        "transfer-encoding",
        "te",
        "upgrade",
        "x-request-id",
        "traceparent",
        "x-service-name",
        "X-Service-Scopes",
        "x-svcauth-decision",
        "x-envoy-original-path",
        "x-forwarded-for",
        "x-service-token",
        "bad header",
        ":path",
    ] {
        cases.push((entry(json!("a"), reserved), format!("{field}.header")));
    }
    cases.push((
        json!({"claim_to_headers": [{"claim": "a", "header": "x-a"}, {"claim": "b", "header": "X-A"}]}),
        "providers.internal.claim_to_headers[1].header: \"x-a\" is set by claim_to_headers[0] already".into(),
    ));
    cases.push((
        json!({"claim_to_headers": [], "max_claim_header_bytes": 0}),
        "providers.internal.max_claim_header_bytes: must be between 1 and 65536".into(),
    ));
    cases.push((
        json!({"max_claim_header_bytes": 65537}),
        "providers.internal.max_claim_header_bytes".into(),
    ));
    for (changes, want) in cases {
        let e = compile(&with_provider(changes.clone()))
            .err()
            .unwrap_or_else(|| panic!("accepted: {changes}"));
        assert!(e.starts_with(&want), "{changes}: got {e:?}, want {want:?}");
    }
    // Nor may a claim header be where another provider reads its token or static secret.
    let mut v = fixtures::config_json();
    v["providers"]["other"] = json!({
        "issuer": "https://other.example", "jwks": fixtures::jwks(),
        "claim_to_headers": [{"claim": "a", "header": "x-service-token"}]
    });
    assert_eq!(
        compile(&v).unwrap_err(),
        "providers.other.claim_to_headers[0].header: \"x-service-token\" is where a provider reads its credentials"
    );
    let mut v = fixtures::config_json();
    v["providers"]["legacy"] = json!({"static_credentials": {"credentials_env": "NONE_SET"}});
    v["providers"]["internal"]["claim_to_headers"] =
        json!([{"claim": "a", "header": "x-service-secret"}]);
    let env = |n: &str| {
        fixtures::env(n).or_else(|| {
            (n == "NONE_SET").then(|| format!("billing:{}:{}", "00".repeat(8), "00".repeat(32)))
        })
    };
    let e = Config::from_json(v.to_string().as_bytes(), &env)
        .unwrap_err()
        .0;
    assert!(
        e.starts_with("providers.internal.claim_to_headers[0].header"),
        "{e}"
    );
    // A static-credentials provider takes none of these.
    let mut v = fixtures::config_json();
    v["providers"]["legacy"] =
        json!({"static_credentials": {"credentials_env": "NONE_SET"}, "from_params": ["t"]});
    let e = Config::from_json(v.to_string().as_bytes(), &env)
        .unwrap_err()
        .0;
    assert!(
        e.starts_with("providers.legacy: a static_credentials provider takes no token settings"),
        "{e}"
    );
}
