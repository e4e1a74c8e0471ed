//! OIDC discovery through the host: the document, then the keys at its `jwks_uri`, shared by
//! every worker; lying, failing and moved documents.

use std::rc::Rc;

use serde_json::json;

use super::{answer_fetch, bearer, configured, reply_of};
use crate::adapter::fake::FakeHost;
use crate::adapter::host::Level;
use crate::adapter::request::{self, Outcome, Stream};
use crate::adapter::root::Root;
use crate::fixtures::{self, claims, token, Fixture, NOW};

/// The fixture provider with its keys found by OIDC discovery through cluster `idp`, the keys
/// themselves fetched through cluster `idp-keys`.
fn discovery_config(discovery: serde_json::Value) -> serde_json::Value {
    let mut v = fixtures::config_json();
    let p = &mut v["providers"]["internal"];
    p.as_object_mut().unwrap().remove("jwks");
    p["remote_jwks"] = json!({
        "cluster": "idp", "refetch_interval_seconds": 1, "max_waiting": 2, "discovery": discovery
    });
    v
}

fn document(issuer: &str, jwks_uri: &str) -> String {
    json!({"issuer": issuer, "jwks_uri": jwks_uri, "id_token_signing_alg_values_supported": ["ES256"]})
        .to_string()
}

/// The last dispatched call: (cluster, path).
fn last_dispatch(host: &FakeHost) -> (String, String) {
    let d = host.dispatched.borrow();
    let (_, c, p) = d.last().unwrap();
    (c.clone(), p.clone())
}

fn ec256_call(host: &FakeHost, root: &Root, id: u32) -> Outcome {
    let shared = root.shared.clone().unwrap();
    let auth = bearer(&token(Fixture::Ec256, &claims(NOW)));
    host.request(
        id,
        &[
            (":method", "GET"),
            (":path", "/orders"),
            ("authorization", auth.as_str()),
        ],
    );
    let mut s = Stream {
        id,
        ..Stream::default()
    };
    request::on_request_headers(&shared, &mut s)
}

fn set_clock(host: &FakeHost, s: i64) {
    host.clock.set(Some(s * 1000));
}

#[test]
fn discovery_finds_the_jwks_uri_then_the_keys_and_every_worker_uses_both() {
    let host = Rc::new(FakeHost::at(NOW));
    let cfg = discovery_config(json!({"jwks_cluster": "idp-keys"}));
    let (mut root, ids) = configured(&host, &cfg);
    // First the document, through the provider's cluster, at the issuer's well-known path.
    root.tick(Level::Info);
    assert_eq!(
        last_dispatch(&host),
        ("idp".into(), "/.well-known/openid-configuration".into())
    );
    let doc = document(
        fixtures::ISSUER,
        "https://auth.internal/oauth2/v1/keys?tenant=a",
    );
    answer_fetch(&host, &mut root, &doc);
    assert_eq!(host.dispatched.borrow().len(), 1, "one fetch at a time");
    // Before the keys arrive, the provider's tokens are refused (no keys loaded).
    ec256_call(&host, &root, 1);
    assert_eq!(reply_of(&host, 1).unwrap().0, 401);
    // The next tick fetches the keys at the discovered path, through the keys' cluster.
    root.tick(Level::Info);
    assert_eq!(
        last_dispatch(&host),
        ("idp-keys".into(), "/oauth2/v1/keys?tenant=a".into())
    );
    answer_fetch(&host, &mut root, &fixtures::jwks_json());
    assert_eq!(ec256_call(&host, &root, 2), Outcome::Continue);
    // Nothing more is due until a refresh.
    root.tick(Level::Info);
    assert_eq!(host.dispatched.borrow().len(), 2);
    root.shared.as_ref().unwrap().counters.flush(&*host);
    assert_eq!(host.counter(ids["svcauth.discovery_success"]), 1);
    assert_eq!(host.counter(ids["svcauth.discovery_failed"]), 0);
    assert_eq!(host.counter(ids["svcauth.jwks_fetch_success"]), 1);
    let logs = host.logs.borrow().clone();
    assert!(logs.iter().any(|(l, m)| *l == Level::Info
        && m.contains("OIDC discovery: jwks_uri https://auth.internal/oauth2/v1/keys?tenant=a")));
    // Another worker VM (same shared data) loads the published keys without fetching, and its
    // unknown-kid refetch goes to the jwks_uri the first one discovered.
    let (mut other, _) = configured(&host, &cfg);
    other.tick(Level::Info);
    assert_eq!(
        host.dispatched.borrow().len(),
        2,
        "the other worker fetched nothing"
    );
    assert_eq!(ec256_call(&host, &other, 3), Outcome::Continue);
    let shared = other.shared.clone().unwrap();
    let unknown = {
        let mut h = serde_json::Map::new();
        h.insert("kid".into(), "rotated".into());
        crate::mint::sign(
            &fixtures::signing_key(Fixture::Ec256),
            Fixture::Ec256.default_alg(),
            &h,
            &claims(NOW),
        )
        .unwrap()
    };
    let auth = bearer(&unknown);
    host.request(
        4,
        &[
            (":method", "GET"),
            (":path", "/orders"),
            ("authorization", auth.as_str()),
        ],
    );
    let mut s = Stream {
        id: 4,
        ..Stream::default()
    };
    assert_eq!(request::on_request_headers(&shared, &mut s), Outcome::Pause);
    let item = host.queue.borrow_mut().pop().unwrap();
    let mut items = vec![item];
    other.queue_ready(7, &mut || items.pop());
    assert_eq!(
        last_dispatch(&host),
        ("idp-keys".into(), "/oauth2/v1/keys?tenant=a".into())
    );
}

#[test]
fn a_document_that_lies_about_its_issuer_is_refused_counted_and_its_keys_never_fetched() {
    let host = Rc::new(FakeHost::at(NOW));
    let (mut root, ids) = configured(&host, &discovery_config(json!(true)));
    root.tick(Level::Info);
    let doc = document("https://evil.example", "https://auth.internal/keys");
    answer_fetch(&host, &mut root, &doc);
    let logs = host.logs.borrow().clone();
    let (level, line) = logs.last().unwrap();
    assert_eq!(*level, Level::Warn);
    assert!(
        line.contains("OIDC discovery failed: document issuer \"https://evil.example\" is not the provider's issuer \"https://auth.internal\"")
            && line.contains("no jwks_uri yet"),
        "{line}"
    );
    // Backed off: nothing until the lease's backoff (2 s) runs out, then the document again.
    root.tick(Level::Info);
    assert_eq!(host.dispatched.borrow().len(), 1);
    set_clock(&host, NOW + 2);
    root.tick(Level::Info);
    assert_eq!(host.dispatched.borrow().len(), 2);
    assert_eq!(last_dispatch(&host).1, "/.well-known/openid-configuration");
    // A jwks_uri on a host that is not allowed: refused the same way.
    answer_fetch(
        &host,
        &mut root,
        &document(fixtures::ISSUER, "https://keys.elsewhere.example/keys"),
    );
    let line = host.logs.borrow().last().unwrap().1.clone();
    assert!(line.contains("jwks_uri host \"keys.elsewhere.example\" is not allowed (allowed_jwks_hosts: auth.internal)"), "{line}");
    // Garbage and an oversized document: refused before a key is fetched.
    for (at, body, why) in [
        (NOW + 6, "<html>busy</html>".to_string(), "not JSON"),
        (
            NOW + 14,
            format!("{{\"x\":\"{}\"}}", "a".repeat(40_000)),
            "exceeds the 32768-byte limit",
        ),
    ] {
        set_clock(&host, at);
        root.tick(Level::Info);
        assert_eq!(
            last_dispatch(&host).1,
            "/.well-known/openid-configuration",
            "{why}"
        );
        answer_fetch(&host, &mut root, &body);
        let line = host.logs.borrow().last().unwrap().1.clone();
        assert!(line.contains(why), "{line}");
    }
    assert!(
        host.dispatched
            .borrow()
            .iter()
            .all(|d| d.2 == "/.well-known/openid-configuration"),
        "no key was ever fetched"
    );
    root.shared.as_ref().unwrap().counters.flush(&*host);
    assert_eq!(host.counter(ids["svcauth.discovery_failed"]), 4);
    assert_eq!(host.counter(ids["svcauth.discovery_success"]), 0);
    ec256_call(&host, &root, 1);
    let (status, body) = reply_of(&host, 1).unwrap();
    assert_eq!(status, 401);
    assert!(body.contains("keys_unavailable"), "{body}");
}

#[test]
fn rediscovery_follows_a_moved_jwks_uri_and_a_failed_one_keeps_the_last_good_uri_and_keys() {
    let host = Rc::new(FakeHost::at(NOW));
    let (mut root, ids) = configured(&host, &discovery_config(json!({"refresh_seconds": 10})));
    root.tick(Level::Info);
    answer_fetch(
        &host,
        &mut root,
        &document(fixtures::ISSUER, "https://auth.internal/k1"),
    );
    root.tick(Level::Info);
    assert_eq!(last_dispatch(&host).1, "/k1");
    answer_fetch(&host, &mut root, &fixtures::jwks_json());
    assert_eq!(ec256_call(&host, &root, 1), Outcome::Continue);
    // Rediscovery is due after 10 s; the document now lies.
    set_clock(&host, NOW + 10);
    root.tick(Level::Info);
    assert_eq!(last_dispatch(&host).1, "/.well-known/openid-configuration");
    answer_fetch(
        &host,
        &mut root,
        &document("https://auth.internal/", "https://auth.internal/evil"),
    );
    let line = host.logs.borrow().last().unwrap().1.clone();
    assert!(
        line.contains("keeping jwks_uri https://auth.internal/k1"),
        "{line}"
    );
    assert_eq!(
        ec256_call(&host, &root, 2),
        Outcome::Continue,
        "last good keys kept"
    );
    // A dispatch the host refuses is a failed discovery too.
    set_clock(&host, NOW + 12);
    host.fail_dispatch.set(true);
    root.tick(Level::Info);
    host.fail_dispatch.set(false);
    // After the backoff (4 s): the document again, which now names another jwks_uri; the keys
    // are fetched from it at once although the old ones are fresh.
    set_clock(&host, NOW + 16);
    root.tick(Level::Info);
    assert_eq!(last_dispatch(&host).1, "/.well-known/openid-configuration");
    answer_fetch(
        &host,
        &mut root,
        &document(fixtures::ISSUER, "https://auth.internal/k2"),
    );
    assert!(host.logs.borrow().iter().any(|(_, m)| m
        .contains("jwks_uri moved from https://auth.internal/k1 to https://auth.internal/k2")));
    set_clock(&host, NOW + 17);
    root.tick(Level::Info);
    assert_eq!(last_dispatch(&host).1, "/k2");
    answer_fetch(&host, &mut root, &fixtures::jwks_json());
    root.tick(Level::Info);
    assert_eq!(last_dispatch(&host).1, "/k2", "nothing more is due");
    assert!(!host.dispatched.borrow().iter().any(|d| d.2 == "/evil"));
    root.shared.as_ref().unwrap().counters.flush(&*host);
    assert_eq!(host.counter(ids["svcauth.discovery_failed"]), 2);
    assert_eq!(host.counter(ids["svcauth.discovery_success"]), 2);
    assert_eq!(host.counter(ids["svcauth.jwks_fetch_success"]), 2);
}

#[test]
fn while_rediscovery_fails_the_keys_are_still_refreshed_from_the_last_good_jwks_uri() {
    let host = Rc::new(FakeHost::at(NOW));
    let mut cfg = discovery_config(json!({"refresh_seconds": 5}));
    cfg["providers"]["internal"]["remote_jwks"]["refresh_seconds"] = json!(5);
    let (mut root, _) = configured(&host, &cfg);
    root.tick(Level::Info);
    answer_fetch(
        &host,
        &mut root,
        &document(fixtures::ISSUER, "https://auth.internal/k1"),
    );
    root.tick(Level::Info);
    answer_fetch(&host, &mut root, &fixtures::jwks_json());
    // Both are due: the document first; it fails; the keys' turn next.
    let mut paths = Vec::new();
    for t in [NOW + 5, NOW + 7] {
        set_clock(&host, t);
        root.tick(Level::Info);
        paths.push(last_dispatch(&host).1);
        let token = host.dispatched.borrow().last().unwrap().0;
        *host.call_status.borrow_mut() = Some("503".into());
        root.call_response(token, 0);
    }
    assert_eq!(paths, ["/.well-known/openid-configuration", "/k1"]);
}

#[test]
fn a_published_jwks_uri_is_checked_again_against_the_allowed_hosts() {
    let host = Rc::new(FakeHost::at(NOW));
    let (mut root, _) = configured(&host, &discovery_config(json!(true)));
    root.tick(Level::Info);
    answer_fetch(
        &host,
        &mut root,
        &document(fixtures::ISSUER, "https://auth.internal/k1"),
    );
    // Reconfigured with another allow-list: the shared jwks_uri is not taken over.
    let key = root.shared.as_ref().unwrap().remote.borrow()[0]
        .as_ref()
        .unwrap()
        .target_key
        .clone();
    assert!(host.shared.borrow().contains_key(&key));
    let (mut other, _) = configured(
        &host,
        &discovery_config(json!({"allowed_jwks_hosts": ["keys.idp.internal"]})),
    );
    other.tick(Level::Info);
    let s = other.shared.as_ref().unwrap();
    assert!(crate::adapter::discovery::target(s, 0).is_none());
    assert_eq!(
        crate::adapter::remote::Target::decode(
            b"1 1 https://auth.internal/k",
            &["auth.internal".into()]
        )
        .unwrap()
        .jwks
        .path,
        "/k"
    );
    assert!(crate::adapter::remote::Target::decode(
        b"1 https://auth.internal/k",
        &["auth.internal".into()]
    )
    .is_none());
}
