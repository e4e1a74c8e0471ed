//! Issue 16, items 2 and 3, through a real Envoy: tokens read from a cookie and from a query
//! parameter (`from_cookies`, `from_params`), what `forward_token: false` strips before the
//! request goes upstream (and what it keeps), log lines of requests that carry a token in
//! their query, and rich `claim_to_headers` (dot paths, lists of strings, the value bound).
//! What is asserted is what leaves Envoy: the reply, what the echo upstream received, the
//! svcauth log lines and Envoy's own access log.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::Duration;

use serde_json::{json, Value};
use svcauth_filter::fixtures::{self, Fixture};
use svcauth_tests::observe::log_line_for;
use svcauth_tests::{http, now, EchoUpstream, Envoy, Opts, Request, Response, RunDir};

const WAIT: Duration = Duration::from_secs(15);
const FWD_ISSUER: &str = "https://fwd.example";

/// Provider `internal` (the fixture's keys) reads `authorization: Bearer`, the `session`
/// cookie and the `access_token` parameter, and does not forward its token; provider `fwd`
/// reads only the `access_token` parameter and forwards it. Claims of `internal` go into
/// headers, bounded to 64 bytes. Audit lines on.
fn plugin_config() -> Value {
    let mut v = fixtures::config_json();
    let p = &mut v["providers"]["internal"];
    p["from_headers"] = json!([{"name": "authorization", "value_prefix": "Bearer "}]);
    p["from_cookies"] = json!(["session"]);
    p["from_params"] = json!(["access_token"]);
    p["forward_token"] = json!(false);
    p["max_claim_header_bytes"] = json!(64);
    p["claim_to_headers"] = json!([
        {"claim": "realm_access.roles", "header": "x-roles"},
        {"claim": "org.id", "header": "x-org"},
        {"claim": ["https://example.com/groups"], "header": "x-groups"},
        {"claim": "note", "header": "x-note"}
    ]);
    v["providers"]["fwd"] = json!({
        "issuer": FWD_ISSUER,
        "jwks": fixtures::jwks(),
        "from_params": ["access_token"]
    });
    v["log"] = json!({"allowed": true});
    v
}

/// Two file access logs of the connection manager: `default` in Envoy's default format (which
/// logs `%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%`, the query included), `no_query` with the request
/// id and `%PATH(NQ)%` (the path without its query).
fn access_log_yaml(default: &str, no_query: &str) -> String {
    let file = "name: envoy.access_loggers.file\n  typed_config:\n    \"@type\": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog";
    format!(
        "access_log:\n- {file}\n    path: {}\n- {file}\n    path: {}\n    log_format: {{text_format_source: {{inline_string: \"%REQ(X-REQUEST-ID)% %PATH(NQ)%\\n\"}}}}\n",
        svcauth_tests::yaml_str(default),
        svcauth_tests::yaml_str(no_query),
    )
}

struct Setup {
    envoy: Envoy,
    upstream: EchoUpstream,
    access_log: std::path::PathBuf,
    no_query_log: std::path::PathBuf,
    _dir: RunDir,
}

fn start() -> Setup {
    let upstream = EchoUpstream::start();
    let dir = RunDir::new();
    let access_log = dir.join("access.log");
    let no_query_log = dir.join("no-query.log");
    let opts = Opts::new(upstream.port())
        .env(fixtures::HMAC_ENV, fixtures::HMAC_SECRET)
        .hcm_extra(&access_log_yaml(
            &access_log.to_string_lossy(),
            &no_query_log.to_string_lossy(),
        ));
    let envoy = Envoy::start_plugin(&plugin_config().to_string(), &opts);
    Setup {
        envoy,
        upstream,
        access_log,
        no_query_log,
        _dir: dir,
    }
}

/// A token of provider `internal`, valid now, with `extra` claims.
fn internal(extra: Value) -> String {
    fixtures::token(Fixture::Ec256, &fixtures::claims_with(now(), extra))
}

/// A token of provider `fwd`, valid now.
fn fwd() -> String {
    let claims = fixtures::claims_with(now(), json!({"iss": FWD_ISSUER, "aud": null}));
    fixtures::token(Fixture::RsaA, &claims)
}

/// Sends the request and returns the reply and what the upstream received (if it did).
fn send(s: &Setup, path: &str, headers: &[(&str, &str)]) -> (Response, Option<Request>) {
    let before = s.upstream.request_count();
    let r = http(s.envoy.port(), "GET", path, headers);
    let got = if r.status == 200 {
        assert!(s.upstream.wait_requests(before + 1, WAIT));
        s.upstream.last_request()
    } else {
        assert_eq!(
            s.upstream.request_count(),
            before,
            "a denial reached the upstream"
        );
        None
    };
    (r, got)
}

fn reason(r: &Response) -> String {
    r.header("x-svcauth-reason").unwrap_or_default().to_string()
}

/// Whether `text` holds any of the token's three parts.
fn holds(text: &str, token: &str) -> bool {
    token.split('.').any(|part| text.contains(part))
}

/// The line of access log `file` of the request whose `x-request-id` is `id` (both formats log
/// it); waits for Envoy to write it.
fn access_line_for(file: &std::path::Path, id: &str) -> String {
    let mut found = None;
    svcauth_tests::wait_until(WAIT, || {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        found = text.lines().find(|l| l.contains(id)).map(str::to_string);
        found.is_some()
    });
    found.unwrap_or_else(|| panic!("no access log line for {id}"))
}

#[test]
fn tokens_from_cookies_and_params_are_accepted_and_stripped_before_the_upstream() {
    let s = start();
    let t = internal(json!({}));

    // A cookie among others: accepted, and only it is gone upstream.
    let cookie = format!("theme=dark; session={t}; lang=en");
    let (r, up) = send(&s, "/orders", &[("cookie", &cookie)]);
    assert_eq!(r.status, 200, "{}", r.body);
    let up = up.unwrap();
    assert_eq!(up.header("x-service-name"), Some("orders-service"));
    assert_eq!(up.header_all("cookie"), ["theme=dark; lang=en"]);
    assert!(!holds(&format!("{:?}", up.headers), &t), "{:?}", up.headers);

    // The only cookie: the cookie header is gone.
    let cookie = format!("session={t}");
    let (r, up) = send(&s, "/orders", &[("cookie", &cookie)]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(up.unwrap().header("cookie").is_none());

    // A query parameter: accepted, removed, the rest of the path kept byte for byte.
    let path = format!("/orders/7?a=1&access_token={t}&b=%2F+c&d");
    let (r, up) = send(&s, &path, &[("x-request-id", "param-strip")]);
    assert_eq!(r.status, 200, "{}", r.body);
    let up = up.unwrap();
    assert_eq!(up.path, "/orders/7?a=1&b=%2F+c&d");
    assert_eq!(up.header("x-service-name"), Some("orders-service"));
    let path = format!("/orders?access_token={t}");
    let (_, up) = send(&s, &path, &[]);
    assert_eq!(up.unwrap().path, "/orders");

    // The header, as before; the query and cookies are left alone.
    let auth = format!("Bearer {t}");
    let (r, up) = send(
        &s,
        "/orders?q=1",
        &[("authorization", &auth), ("cookie", "theme=dark")],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let up = up.unwrap();
    assert!(up.header("authorization").is_none());
    assert_eq!(up.path, "/orders?q=1");
    assert_eq!(up.header("cookie"), Some("theme=dark"));

    // A provider that forwards its token: the parameter reaches the upstream intact.
    let f = fwd();
    let path = format!("/orders?x=1&access_token={f}");
    let (r, up) = send(&s, &path, &[("x-request-id", "fwd-allow")]);
    assert_eq!(r.status, 200, "{}", r.body);
    let up = up.unwrap();
    assert_eq!(up.path, path);
    assert_eq!(up.header("x-service-name"), Some("orders-service"));

    // Two tokens in two places: 400. A token where its provider does not look: 401.
    let cookie = format!("session={t}");
    let path = format!("/orders?access_token={t}");
    let (r, _) = send(&s, &path, &[("cookie", &cookie)]);
    assert_eq!((r.status, reason(&r).as_str()), (400, "multiple_tokens"));
    let cookie = format!("session={f}");
    let (r, _) = send(&s, "/orders", &[("cookie", &cookie)]);
    assert_eq!(
        (r.status, reason(&r).as_str()),
        (401, "wrong_token_location")
    );

    // Log lines: the denial of a request with the token in its query, and the audit line of
    // an allowed one, have the path without the query and no part of the token.
    let expired = fixtures::token(Fixture::Ec256, &fixtures::claims(now() - 3600));
    let path = format!("/orders?access_token={expired}&x=1");
    let (r, _) = send(&s, &path, &[("x-request-id", "param-deny")]);
    assert_eq!((r.status, reason(&r).as_str()), (401, "token_expired"));
    assert!(!holds(&r.body, &expired), "{}", r.body);
    let deny = log_line_for(&s.envoy, "param-deny");
    assert_eq!(deny["svcauth"], "deny");
    assert_eq!(deny["path"], "/orders");
    let audit = log_line_for(&s.envoy, "fwd-allow");
    assert_eq!(audit["svcauth"], "allow");
    assert_eq!(audit["provider"], "fwd");
    assert_eq!(audit["path"], "/orders");
    let strip_audit = log_line_for(&s.envoy, "param-strip");
    assert_eq!(strip_audit["path"], "/orders/7");
    let log = s.envoy.log();
    for tok in [&t, &f, &expired] {
        assert!(!holds(&log, tok), "Envoy's log holds a token:\n{log}");
    }

    // Envoy's own access log (default format) records :path with its query: the token of a
    // denied request and of a provider that forwards it. A token stripped by the filter is
    // gone from the path the access log records.
    let line = access_line_for(&s.access_log, "param-deny");
    assert!(holds(&line, &expired), "{line}");
    let line = access_line_for(&s.access_log, "fwd-allow");
    assert!(holds(&line, &f), "{line}");
    let line = access_line_for(&s.access_log, "param-strip");
    assert!(line.contains("\"GET /orders/7?a=1&b=%2F+c&d "), "{line}");
    assert!(!holds(&line, &t), "{line}");
    // `%PATH(NQ)%` logs the path without its query.
    for (id, path) in [
        ("param-deny", "/orders"),
        ("fwd-allow", "/orders"),
        ("param-strip", "/orders/7"),
    ] {
        assert_eq!(access_line_for(&s.no_query_log, id), format!("{id} {path}"));
    }
}

#[test]
fn nested_and_list_claims_reach_the_upstream_and_unrenderable_ones_never_do() {
    let s = start();
    let t = internal(json!({
        "realm_access": {"roles": ["admin", "user"]},
        "org": {"id": 42},
        "https://example.com/groups": ["g1", "g2"],
        "note": "plain text"
    }));
    let auth = format!("Bearer {t}");
    let (r, up) = send(
        &s,
        "/orders",
        &[
            ("authorization", &auth),
            ("x-roles", "forged"),
            ("x_org", "forged"),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let up = up.unwrap();
    assert_eq!(up.header_all("x-roles"), ["admin,user"]);
    assert_eq!(up.header_all("x-org"), ["42"]);
    assert_eq!(up.header_all("x-groups"), ["g1,g2"]);
    assert_eq!(up.header_all("x-note"), ["plain text"]);
    assert!(up.header("x_org").is_none());

    // Not rendered (a list with a non-string, an object): no header, and the client's copy
    // is still stripped.
    let t = internal(json!({"realm_access": {"roles": ["admin", 7]}, "org": {"id": {"x": 1}}}));
    let auth = format!("Bearer {t}");
    let (r, up) = send(
        &s,
        "/orders",
        &[("authorization", &auth), ("x-roles", "forged")],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let up = up.unwrap();
    assert!(up.header("x-roles").is_none(), "{:?}", up.headers);
    assert!(up.header("x-org").is_none(), "{:?}", up.headers);

    // CR/LF, a comma inside a list element, or a value over max_claim_header_bytes (64): the
    // token is malformed and nothing reaches the upstream.
    for claims in [
        json!({"note": "a\r\nx-injected: 1"}),
        json!({"note": "a\nx-injected: 1"}),
        json!({"realm_access": {"roles": ["admin", "b\r\nx-injected: 1"]}}),
        json!({"realm_access": {"roles": ["admin,root"]}}),
        json!({"note": "x".repeat(65)}),
        json!({"realm_access": {"roles": vec!["abcdefg"; 9]}}),
    ] {
        let t = internal(claims.clone());
        let auth = format!("Bearer {t}");
        let (r, up) = send(&s, "/orders", &[("authorization", &auth)]);
        assert_eq!(
            (r.status, reason(&r).as_str()),
            (401, "token_malformed"),
            "{claims}"
        );
        assert!(up.is_none());
    }
    // At the bound it is a header.
    let t =
        internal(json!({"note": "y".repeat(64), "realm_access": {"roles": vec!["abcdefg"; 8]}}));
    let auth = format!("Bearer {t}");
    let (r, up) = send(&s, "/orders", &[("authorization", &auth)]);
    assert_eq!(r.status, 200, "{}", r.body);
    let up = up.unwrap();
    assert_eq!(up.header("x-note"), Some("y".repeat(64).as_str()));
    assert_eq!(
        up.header("x-roles"),
        Some(["abcdefg"; 8].join(",").as_str())
    );
    assert!(up.header("x-injected").is_none());
}
