//! Issue 16, items 2 and 3: token sources as `jwt_authn` has them (`from_cookies`,
//! `from_params`, what `forward_token: false` strips) and rich `claim_to_headers` (dot paths,
//! lists of strings, the value bound), against `decide` at the fixed clock `NOW`.

use serde_json::{json, Value};

use crate::cache::TokenCache;
use crate::config::{Config, TokenSource};
use crate::contract::reason::Reason;
use crate::decide::{decide, Decision};
use crate::fixtures::{self, claims, claims_with, token, Fixture, NOW};
use crate::logline::{self, RequestFacts};
use crate::sources::{path_without_param, percent_decode, Edit, Strip};

fn compile(v: &Value) -> Result<Config, String> {
    Config::from_json(v.to_string().as_bytes(), &fixtures::env).map_err(|e| e.0)
}

/// The fixture config with `changes` merged into provider `internal`.
fn with_provider(changes: Value) -> Value {
    let mut v = fixtures::config_json();
    for (k, val) in changes.as_object().unwrap() {
        v["providers"]["internal"][k] = val.clone();
    }
    v
}

fn config_with(changes: Value) -> Config {
    compile(&with_provider(changes)).unwrap()
}

/// A provider reading the `session` cookie, the `access_token` and `token` parameters and
/// `authorization: Bearer`.
fn sources() -> Value {
    json!({
        "from_headers": [{"name": "authorization", "value_prefix": "Bearer "}],
        "from_cookies": ["session"],
        "from_params": ["access_token", "token"]
    })
}

type Headers = Vec<(String, String)>;

fn req(path: &str, extra: &[(&str, &str)]) -> Headers {
    let mut h = vec![
        (":method".to_string(), "GET".to_string()),
        (":path".to_string(), path.to_string()),
    ];
    h.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    h
}

fn run(cfg: &Config, h: &[(String, String)]) -> Decision {
    decide(cfg, &mut TokenCache::new(0), h, NOW)
}

fn reason(d: &Decision) -> Option<Reason> {
    match d {
        Decision::Allow(_) => None,
        Decision::Deny(d) => Some(d.reason),
    }
}

fn good() -> String {
    token(Fixture::Ec256, &claims(NOW))
}

// ------------------------------------------------------------------- token sources ---

#[test]
fn sources_compile_shared_and_the_default_applies_only_when_none_is_given() {
    let cfg = config_with(sources());
    let p = &cfg.providers[0];
    let mine: Vec<&TokenSource> = p.sources.iter().map(|i| &cfg.sources[*i]).collect();
    assert_eq!(
        mine,
        [
            &TokenSource::Header {
                name: "authorization".into(),
                prefix: Some("Bearer ".into())
            },
            &TokenSource::Cookie("session".into()),
            &TokenSource::Param("access_token".into()),
            &TokenSource::Param("token".into()),
        ]
    );
    assert_eq!(
        mine.iter().map(|s| s.describe()).collect::<Vec<_>>(),
        [
            "authorization \"Bearer \"",
            "cookie session",
            "param access_token",
            "param token"
        ]
    );
    // Only a cookie: the authorization header is not read (jwt_authn's rule: the default is
    // for a provider that names no location at all).
    let mut v = fixtures::config_json();
    let p = v["providers"]["internal"].as_object_mut().unwrap();
    p.remove("from_headers");
    p.insert("from_cookies".into(), json!(["session"]));
    let cfg = compile(&v).unwrap();
    assert_eq!(cfg.sources, [TokenSource::Cookie("session".into())]);
    let auth = format!("Bearer {}", good());
    assert_eq!(
        reason(&run(&cfg, &req("/orders", &[("authorization", &auth)]))),
        Some(Reason::TokenMissing)
    );
    // No location named at all: authorization, Bearer, and no query parameter.
    let mut v = fixtures::config_json();
    v["providers"]["internal"]
        .as_object_mut()
        .unwrap()
        .remove("from_headers");
    let cfg = compile(&v).unwrap();
    assert_eq!(
        cfg.sources,
        [TokenSource::Header {
            name: "authorization".into(),
            prefix: Some("Bearer ".into())
        }]
    );
    let path = format!("/orders?access_token={}", good());
    assert_eq!(
        reason(&run(&cfg, &req(&path, &[]))),
        Some(Reason::TokenMissing)
    );
}

#[test]
fn bad_sources_are_refused_naming_the_field() {
    let cases: Vec<(Value, &str)> = vec![
        (json!({"from_cookies": []}), "providers.internal.from_cookies: must list"),
        (json!({"from_params": []}), "providers.internal.from_params: must list"),
        (
            json!({"from_cookies": ["a b"]}),
            "providers.internal.from_cookies[0]: \"a b\" is not a cookie name",
        ),
        (
            json!({"from_cookies": ["a=b"]}),
            "providers.internal.from_cookies[0]",
        ),
        (json!({"from_cookies": [""]}), "providers.internal.from_cookies[0]"),
        (
            json!({"from_params": ["access token"]}),
            "providers.internal.from_params[0]: \"access token\" is not a query parameter name",
        ),
        (json!({"from_params": ["a%5Fb"]}), "providers.internal.from_params[0]"),
        (json!({"from_params": ["a&b"]}), "providers.internal.from_params[0]"),
        (json!({"from_params": ["a+b"]}), "providers.internal.from_params[0]"),
        (
            json!({"from_params": ["t", "t"]}),
            "providers.internal.from_params[1]: is listed twice",
        ),
        (
            json!({"from_headers": [{"name": "Cookie"}]}),
            "providers.internal.from_headers[0].name: a token in a cookie is read with from_cookies",
        ),
        (
            json!({"from_headers": [{"name": "x-service-name"}]}),
            "providers.internal.from_headers[0].name: \"x-service-name\" is a header svcauth sets",
        ),
        (
            json!({"from_headers": [{"name": "x-svcauth-provider"}]}),
            "providers.internal.from_headers[0].name",
        ),
    ];
    for (changes, want) in cases {
        let e = compile(&with_provider(changes.clone()))
            .err()
            .unwrap_or_else(|| panic!("accepted: {changes}"));
        assert!(e.starts_with(want), "{changes}: got {e:?}, want {want:?}");
    }
}

#[test]
fn a_token_in_a_cookie_or_a_query_parameter_is_accepted() {
    let cfg = config_with(sources());
    let t = good();
    let quoted = format!("theme=dark; session=\"{t}\"");
    let cases: Vec<Vec<(String, String)>> = vec![
        req("/orders", &[("cookie", &format!("session={t}"))]),
        req("/orders", &[("cookie", &format!("a=1;session={t} ; b=2"))]),
        req("/orders", &[("cookie", &quoted)]),
        // Two cookie headers (HTTP/1.1 clients may send them so).
        req(
            "/orders",
            &[("cookie", "a=1"), ("cookie", &format!("session={t}"))],
        ),
        req(&format!("/orders?access_token={t}"), &[]),
        req(&format!("/orders?a=1&token={t}&b"), &[]),
        // The parameter's name is read percent-decoded, as a backend reads it.
        req(&format!("/orders?access%5Ftoken={t}"), &[]),
        req(&format!("/orders?access_token={t}#frag"), &[]),
    ];
    for h in cases {
        let d = run(&cfg, &h);
        let Decision::Allow(a) = &d else {
            panic!("{h:?}: {d:?}")
        };
        assert_eq!(a.identity.as_ref().unwrap().subject, "orders-service");
        assert_eq!(a.strip, None, "forward_token defaults to true");
    }
    // A cookie of another name, a parameter of another name or in the path: no token.
    for h in [
        req("/orders", &[("cookie", &format!("Session={t}"))]),
        req("/orders", &[("cookie", &format!("xsession={t}"))]),
        req(&format!("/orders?my_access_token={t}"), &[]),
        req(&format!("/orders/access_token={t}"), &[]),
        req(&format!("/orders#access_token={t}"), &[]),
        req("/orders?access_token=", &[]),
        req("/orders?access_token", &[]),
        req("/orders", &[("cookie", "session=")]),
        req("/orders", &[("cookie", "session=\"\"")]),
    ] {
        assert_eq!(reason(&run(&cfg, &h)), Some(Reason::TokenMissing), "{h:?}");
    }
    // A value that is not a token is a malformed one (percent-decoded first).
    let h = req("/orders?access_token=a%2Eb%2Ec", &[]);
    assert_eq!(reason(&run(&cfg, &h)), Some(Reason::TokenMalformed));
}

#[test]
fn two_tokens_in_any_two_places_are_a_400() {
    let cfg = config_with(sources());
    let t = good();
    let auth = format!("Bearer {t}");
    let cookie = format!("session={t}");
    let two = format!("session={t}; session={t}");
    let cases: Vec<Vec<(String, String)>> = vec![
        req("/orders", &[("authorization", &auth), ("cookie", &cookie)]),
        req(
            &format!("/orders?access_token={t}"),
            &[("authorization", &auth)],
        ),
        req(&format!("/orders?access_token={t}"), &[("cookie", &cookie)]),
        req(&format!("/orders?access_token={t}&token={t}"), &[]),
        // The same parameter twice, in two spellings of its name.
        req(&format!("/orders?access_token={t}&access%5ftoken={t}"), &[]),
        req(&format!("/orders?access_token={t}&access_token={t}"), &[]),
        req("/orders", &[("cookie", &two)]),
        req("/orders", &[("cookie", &cookie), ("cookie", &cookie)]),
    ];
    for h in cases {
        assert_eq!(
            reason(&run(&cfg, &h)),
            Some(Reason::MultipleTokens),
            "{h:?}"
        );
    }
    // With static credentials beside it, too.
    let mut v = with_provider(sources());
    v["providers"]["legacy"] = json!({"static_credentials": {"credentials_env": "NONE_SET"}});
    let env = |n: &str| {
        fixtures::env(n).or_else(|| {
            (n == "NONE_SET").then(|| format!("billing:{}:{}", "00".repeat(8), "00".repeat(32)))
        })
    };
    let cfg = Config::from_json(v.to_string().as_bytes(), &env).unwrap();
    let h = req(
        &format!("/orders?access_token={t}"),
        &[("x-service-id", "billing"), ("x-service-secret", "s")],
    );
    assert_eq!(reason(&run(&cfg, &h)), Some(Reason::MultipleTokens));
}

#[test]
fn a_token_in_a_place_its_provider_does_not_read_is_in_the_wrong_location() {
    let mut v = with_provider(json!({"from_cookies": ["session"]}));
    v["providers"]["internal"]
        .as_object_mut()
        .unwrap()
        .remove("from_headers");
    v["providers"]["other"] = json!({
        "issuer": "https://other.example", "jwks": fixtures::jwks(), "from_params": ["access_token"]
    });
    let cfg = compile(&v).unwrap();
    let internal = good();
    let other = token(
        Fixture::Ec256,
        &claims_with(NOW, json!({"iss": "https://other.example", "aud": null})),
    );
    let at_param = |t: &str| req(&format!("/orders?access_token={t}"), &[]);
    let in_cookie = |t: &str| req("/orders", &[("cookie", &format!("session={t}"))]);
    assert_eq!(reason(&run(&cfg, &in_cookie(&internal))), None);
    assert_eq!(reason(&run(&cfg, &at_param(&other))), None);
    assert_eq!(
        reason(&run(&cfg, &at_param(&internal))),
        Some(Reason::WrongTokenLocation)
    );
    assert_eq!(
        reason(&run(&cfg, &in_cookie(&other))),
        Some(Reason::WrongTokenLocation)
    );
}

#[test]
fn forward_token_false_strips_the_token_where_it_was_and_keeps_the_rest() {
    let mut changes = sources();
    changes["forward_token"] = json!(false);
    let cfg = config_with(changes);
    let t = good();
    let strip = |h: &[(String, String)]| match run(&cfg, h) {
        Decision::Allow(a) => a.strip.unwrap(),
        d => panic!("{d:?}"),
    };
    let cases: Vec<(Headers, Strip, Edit<'static>)> = vec![
        (
            req("/orders", &[("authorization", &format!("Bearer {t}"))]),
            Strip::Header("authorization".into()),
            Edit::Remove("authorization"),
        ),
        (
            req("/orders", &[("cookie", &format!("a=1; session={t};b=x=y"))]),
            Strip::Cookie("session".into()),
            Edit::Set("cookie", "a=1; b=x=y".into()),
        ),
        (
            req("/orders", &[("cookie", &format!("session=\"{t}\""))]),
            Strip::Cookie("session".into()),
            Edit::Remove("cookie"),
        ),
        (
            req(
                "/orders",
                &[("cookie", "a=1"), ("cookie", &format!(" session={t}; b=2"))],
            ),
            Strip::Cookie("session".into()),
            Edit::Set("cookie", "a=1; b=2".into()),
        ),
        (
            req(&format!("/orders?access_token={t}"), &[]),
            Strip::Param("access_token".into()),
            Edit::Set(":path", "/orders".into()),
        ),
        (
            req(
                &format!("/o/p?a=%2F+x&access_token={t}&b=&&c#f?access_token=x"),
                &[],
            ),
            Strip::Param("access_token".into()),
            Edit::Set(":path", "/o/p?a=%2F+x&b=&&c#f?access_token=x".into()),
        ),
        (
            req(&format!("/orders?access%5Ftoken={t}&z=1"), &[]),
            Strip::Param("access_token".into()),
            Edit::Set(":path", "/orders?z=1".into()),
        ),
        (
            req(&format!("/orders?token={t}&access_token="), &[]),
            Strip::Param("token".into()),
            Edit::Set(":path", "/orders?access_token=".into()),
        ),
    ];
    for (h, want_strip, want_edit) in cases {
        let s = strip(&h);
        assert_eq!(s, want_strip, "{h:?}");
        assert_eq!(s.edit(&h), want_edit, "{h:?}");
    }
    // An open route keeps everything.
    let h = req(&format!("/health?access_token={t}"), &[]);
    let Decision::Allow(a) = run(&cfg, &h) else {
        panic!()
    };
    assert_eq!(a.strip, None);
}

#[test]
fn the_path_rewrite_keeps_every_other_byte() {
    let cases = [
        ("/a?t=1", Some("/a")),
        ("/a?x=1&t=1", Some("/a?x=1")),
        ("/a?t=1&x=1", Some("/a?x=1")),
        ("/a?x=%41&t=1&y=%zz&t", Some("/a?x=%41&y=%zz")),
        ("/a?t=1#frag", Some("/a#frag")),
        ("/a?x&t=1&", Some("/a?x&")),
        ("/a?%74=1", Some("/a")),
        ("/a?x=t", None),
        ("/a", None),
        ("/a#?t=1", None),
        ("/a?tt=1&xt=1", None),
    ];
    for (path, want) in cases {
        assert_eq!(path_without_param(path, "t").as_deref(), want, "{path}");
    }
    assert_eq!(percent_decode("a%2e%2Eb%zz%4"), "a..b%zz%4");
    assert_eq!(percent_decode("a+b"), "a+b");
    assert_eq!(percent_decode("%ff"), "\u{fffd}");
}

#[test]
fn log_lines_of_a_request_with_a_token_in_its_query_never_hold_the_token() {
    let mut changes = sources();
    changes["forward_token"] = json!(true);
    let cfg = config_with(changes);
    let t = good();
    let expired = token(Fixture::Ec256, &claims(NOW - 3600));
    for (tok, denied) in [(&expired, true), (&t, false)] {
        let path = format!("/orders?x=1&access_token={tok}");
        let h = req(&path, &[("x-request-id", "r1")]);
        let facts = RequestFacts::from_headers(&h);
        let line = match run(&cfg, &h) {
            Decision::Deny(d) => {
                assert!(denied);
                assert_eq!(d.reason, Reason::TokenExpired);
                logline::denial(&cfg, &d, &facts)
            }
            Decision::Allow(a) => {
                assert!(!denied);
                logline::allowed(&cfg, a.identity.as_ref().unwrap(), a.rule, &facts).to_string()
            }
        };
        assert!(line.contains("\"path\":\"/orders\""), "{line}");
        for part in tok.split('.') {
            assert!(!line.contains(part), "{line} holds the token");
        }
    }
}

// --------------------------------------------------------------- claims to headers ---

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

fn one(h: &str, v: &str) -> Result<Vec<(String, String)>, Reason> {
    Ok(vec![(h.to_string(), v.to_string())])
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
