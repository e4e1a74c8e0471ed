//! Tokens in cookies and query parameters (issue 16): what `forward_token: false` rewrites
//! through the host, and log lines that never hold a token taken from the query.

use std::rc::Rc;

use serde_json::json;

use super::{answer_fetch, configured, remote_config, run_request};
use crate::adapter::fake::FakeHost;
use crate::adapter::host::Level;
use crate::adapter::request::{self, Outcome};
use crate::fixtures::{self, claims, claims_with, token, Fixture, NOW};

/// The fixture config reading also the `session` cookie and the `access_token` parameter,
/// with `forward_token` as given, audit lines on, and a nested list claim to a header.
fn sources_config(forward_token: bool) -> serde_json::Value {
    let mut v = fixtures::config_json();
    let p = &mut v["providers"]["internal"];
    p["from_cookies"] = json!(["session"]);
    p["from_params"] = json!(["access_token"]);
    p["forward_token"] = json!(forward_token);
    p["claim_to_headers"] = json!([{"claim": "realm_access.roles", "header": "x-roles"}]);
    v["log"] = json!({"allowed": true});
    v
}

#[test]
fn forward_token_false_rewrites_the_cookie_header_and_the_path_through_the_host() {
    let host = Rc::new(FakeHost::at(NOW));
    let (root, _) = configured(&host, &sources_config(false));
    let shared = root.shared.clone().unwrap();
    let t = token(
        Fixture::Ec256,
        &claims_with(NOW, json!({"realm_access": {"roles": ["admin", "user"]}})),
    );
    // A cookie among others: only it goes.
    let cookie = format!("a=1; session={t}; b=2");
    let (o, _) = run_request(
        &host,
        &shared,
        1,
        &[
            (":method", "GET"),
            (":path", "/orders"),
            ("cookie", &cookie),
        ],
    );
    assert_eq!(o, Outcome::Continue);
    assert_eq!(host.header(1, "cookie").as_deref(), Some("a=1; b=2"));
    assert_eq!(host.header(1, "x-roles").as_deref(), Some("admin,user"));
    assert_eq!(
        host.header(1, "x-service-name").as_deref(),
        Some("orders-service")
    );
    // The only cookie: the header goes.
    let cookie = format!("session={t}");
    run_request(
        &host,
        &shared,
        2,
        &[
            (":method", "GET"),
            (":path", "/orders"),
            ("cookie", &cookie),
        ],
    );
    assert!(!host.names(2).iter().any(|n| n == "cookie"));
    // A query parameter: the rest of the path is kept byte for byte.
    let path = format!("/orders/7?x=%2F+1&access_token={t}&y=&z");
    run_request(&host, &shared, 3, &[(":method", "GET"), (":path", &path)]);
    assert_eq!(
        host.header(3, ":path").as_deref(),
        Some("/orders/7?x=%2F+1&y=&z")
    );
    let path = format!("/orders?access_token={t}");
    run_request(&host, &shared, 4, &[(":method", "GET"), (":path", &path)]);
    assert_eq!(host.header(4, ":path").as_deref(), Some("/orders"));
    // The header source, as before.
    let auth = format!("Bearer {t}");
    run_request(
        &host,
        &shared,
        5,
        &[
            (":method", "GET"),
            (":path", "/orders?q=1"),
            ("authorization", &auth),
            ("cookie", "theme=dark"),
        ],
    );
    assert!(!host.names(5).iter().any(|n| n == "authorization"));
    assert_eq!(host.header(5, ":path").as_deref(), Some("/orders?q=1"));
    assert_eq!(host.header(5, "cookie").as_deref(), Some("theme=dark"));
    // With forward_token true nothing moves.
    let host = Rc::new(FakeHost::at(NOW));
    let (root, _) = configured(&host, &sources_config(true));
    let shared = root.shared.clone().unwrap();
    let path = format!("/orders?access_token={t}");
    let cookie = format!("a=1; session={t}");
    run_request(&host, &shared, 1, &[(":method", "GET"), (":path", &path)]);
    assert_eq!(host.header(1, ":path"), Some(path.clone()));
    // Not even written back unchanged (the double moves a written header to the end).
    assert_eq!(host.names(1).get(1).map(String::as_str), Some(":path"));
    run_request(
        &host,
        &shared,
        2,
        &[
            (":method", "GET"),
            (":path", "/orders"),
            ("cookie", &cookie),
        ],
    );
    assert_eq!(host.header(2, "cookie"), Some(cookie.clone()));
}

#[test]
fn denial_and_audit_lines_of_a_request_with_a_token_in_its_query_never_hold_it() {
    let host = Rc::new(FakeHost::at(NOW));
    let (root, _) = configured(&host, &sources_config(true));
    let shared = root.shared.clone().unwrap();
    let expired = token(Fixture::Ec256, &claims(NOW - 3600));
    let good = token(Fixture::Ec256, &claims(NOW));
    let no_token = |line: &str, t: &str| t.split('.').all(|part| !line.contains(part));
    let path = format!("/orders?x=1&access_token={expired}");
    let (o, _) = run_request(
        &host,
        &shared,
        1,
        &[(":method", "GET"), (":path", &path), ("x-request-id", "r1")],
    );
    assert_eq!(o, Outcome::Pause);
    let line = host.logs.borrow().last().unwrap().1.clone();
    assert!(line.contains("\"reason\":\"token_expired\""), "{line}");
    assert!(line.contains("\"path\":\"/orders\""), "{line}");
    assert!(no_token(&line, &expired), "{line}");
    let reply = host.replies.borrow().last().unwrap().clone();
    assert!(no_token(&reply.3, &expired), "the reply body: {}", reply.3);
    let path = format!("/orders?access_token={good}#f");
    let (o, mut s) = run_request(
        &host,
        &shared,
        2,
        &[(":method", "GET"), (":path", &path), ("x-request-id", "r2")],
    );
    assert_eq!(o, Outcome::Continue);
    request::on_log(&shared, &mut s, None);
    let line = host.logs.borrow().last().unwrap().1.clone();
    assert!(line.contains("\"svcauth\":\"allow\""), "{line}");
    assert!(line.contains("\"path\":\"/orders\""), "{line}");
    assert!(no_token(&line, &good), "{line}");
}

#[test]
fn a_request_that_waited_for_a_refetch_is_stripped_when_it_resumes() {
    let host = Rc::new(FakeHost::at(NOW));
    let mut v = remote_config();
    v["providers"]["internal"]["from_params"] = json!(["access_token"]);
    v["providers"]["internal"]["forward_token"] = json!(false);
    let (mut root, _) = configured(&host, &v);
    root.tick(Level::Info);
    let old = json!({"keys": [fixtures::public_jwk(Fixture::RsaA, "rsa-a")]}).to_string();
    answer_fetch(&host, &mut root, &old);
    let shared = root.shared.clone().unwrap();
    let t = token(Fixture::Ec256, &claims(NOW));
    let path = format!("/orders?a=1&access_token={t}");
    let (o, _) = run_request(&host, &shared, 1, &[(":method", "GET"), (":path", &path)]);
    assert_eq!(o, Outcome::Pause);
    let item = host.queue.borrow_mut().remove(0);
    let mut items = vec![item];
    root.queue_ready(7, &mut || items.pop());
    answer_fetch(&host, &mut root, &fixtures::jwks_json());
    assert_eq!(*host.resumed.borrow(), [1]);
    assert_eq!(host.header(1, ":path").as_deref(), Some("/orders?a=1"));
}
