//! Token sources as `jwt_authn` has them: `from_cookies` and `from_params` compiled and
//! refused, a token found in each place or in two, and what `forward_token: false` strips.

use serde_json::{json, Value};

use crate::config::{Config, TokenSource};
use crate::contract::reason::Reason;
use crate::decide::Decision;
use crate::fixtures::{self, claims, claims_with, token, Fixture, NOW};
use crate::logline::{self, RequestFacts};
use crate::sources::{path_without_param, percent_decode, Edit, Strip};

use super::{compile, config_with, good, reason, req, run, sources, with_provider, Headers};

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
