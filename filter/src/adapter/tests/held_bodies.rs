//! Request bodies held for a signature check: only on routes that need one, until the whole
//! body (or its trailers) arrives, answered 503 if it never does, and while keys are refetched.

use std::rc::Rc;

use serde_json::json;

use super::{answer_fetch, bearer, configured, remote_config, reply_of};
use super::{sig_post, sig_reason, signed, signing_config, signing_root};
use crate::adapter::fake::FakeHost;
use crate::adapter::host::Level;
use crate::adapter::request::{self, Outcome, Stream};
use crate::fixtures::{self, claims, token, Fixture, NOW};

#[test]
fn a_route_that_needs_no_signature_neither_holds_nor_reads_its_body() {
    let host = Rc::new(FakeHost::at(NOW));
    let plain = signing_root(&host, &fixtures::config_json());
    let with_signing = signing_root(&host, &signing_config(false));
    let auth = bearer(&token(Fixture::Ec256, &claims(NOW)));
    let req = [
        (":method", "POST"),
        (":path", "/orders"),
        ("authorization", auth.as_str()),
        ("content-length", "100000"),
        ("x-request-id", "rid"),
    ];
    let mut calls = Vec::new();
    for root in [&plain, &with_signing] {
        let shared = root.shared.clone().unwrap();
        // Warm the token cache, then count a cached request's host calls.
        for id in [1, 2] {
            host.request(id, &req);
            let mut s = Stream {
                id,
                ..Stream::default()
            };
            assert_eq!(
                request::on_request_headers(&shared, &mut s),
                Outcome::Continue,
                "not held"
            );
            assert!(!s.held_for_body);
            if id == 2 {
                calls.push(host.calls.borrow().clone());
            }
            host.calls.borrow_mut().clear();
            for (size, end) in [(65536, false), (100000, true)] {
                assert_eq!(
                    crate::adapter::body::on_request_body(&shared, &mut s, size, end),
                    Outcome::Continue
                );
            }
            assert_eq!(host.total_calls(), 0, "the body costs no host call");
        }
        assert_eq!(shared.held.borrow().len(), 0);
    }
    assert_eq!(
        calls[0], calls[1],
        "signing settings cost nothing on a route that needs no signature"
    );
}

#[test]
fn a_signed_post_is_held_until_its_whole_body_is_checked_and_then_goes_on() {
    let host = Rc::new(FakeHost::at(NOW));
    let root = signing_root(&host, &signing_config(false));
    let shared = root.shared.clone().unwrap();
    let body = br#"{"report":"q3"}"#;
    let s = signed("POST", "/signed/run?fmt=csv", body, NOW - 10);
    let (mut st, o) = sig_post(&shared, &host, 1, "/signed/run?fmt=csv", &s, body);
    assert_eq!(o, Outcome::Pause, "held for its body");
    assert!(st.held_for_body);
    assert_eq!(host.header(1, "x-service-name"), None, "not decided yet");
    assert_eq!(host.count("send_reply"), 0);
    // A first part: still held; the body is not read before its end.
    host.calls.borrow_mut().clear();
    assert_eq!(
        crate::adapter::body::on_request_body(&shared, &mut st, 4, false),
        Outcome::Pause
    );
    assert_eq!(host.total_calls(), 0);
    // The last part: read once, checked, recorded, and the request goes on.
    assert_eq!(
        crate::adapter::body::on_request_body(&shared, &mut st, body.len(), true),
        Outcome::Continue
    );
    assert_eq!(host.count("get_body"), 1);
    assert_eq!((host.count("get_shared"), host.count("set_shared")), (1, 1));
    assert_eq!(
        host.header(1, "x-service-name").as_deref(),
        Some("orders-service")
    );
    assert!(!st.held_for_body);
    assert_eq!(shared.held.borrow().len(), 0);
}

#[test]
fn a_held_request_whose_body_never_comes_is_answered_503_and_a_gone_one_is_forgotten() {
    let host = Rc::new(FakeHost::at(NOW));
    let mut root = signing_root(&host, &signing_config(false));
    let shared = root.shared.clone().unwrap();
    let s = signed("POST", "/signed/a", b"x", NOW);
    let (_, o) = sig_post(&shared, &host, 1, "/signed/a", &s, b"x");
    assert_eq!(o, Outcome::Pause);
    let (gone, _) = sig_post(&shared, &host, 2, "/signed/a", &s, b"x");
    sig_forget(&shared, &gone);
    assert_eq!(
        shared.held.borrow().len(),
        1,
        "a stream that is gone is forgotten"
    );
    root.tick(Level::Info);
    assert_eq!(reply_of(&host, 1), None, "not before its deadline");
    host.clock.set(Some(
        (NOW + crate::adapter::signed::FIRST_BODY_SECONDS) * 1000,
    ));
    root.tick(Level::Info);
    assert_eq!(sig_reason(&host, 1), Some((503, "body_unavailable".into())));
    let errors: Vec<String> = host
        .logs
        .borrow()
        .iter()
        .filter(|(l, _)| *l == Level::Error)
        .map(|(_, m)| m.clone())
        .collect();
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].contains("allow_on_headers_stop_iteration"),
        "{errors:?}"
    );
    assert_eq!(shared.held.borrow().len(), 0);
}

fn sig_forget(shared: &crate::adapter::state::Shared, s: &Stream) {
    crate::adapter::body::forget(shared, s);
}

#[test]
fn trailers_end_a_held_body_and_a_request_waiting_for_keys_holds_its_body_until_decided() {
    let host = Rc::new(FakeHost::at(NOW));
    let root = signing_root(&host, &signing_config(false));
    let shared = root.shared.clone().unwrap();
    let body = b"abc";
    let s = signed("POST", "/signed/t", body, NOW);
    let (mut st, _) = sig_post(&shared, &host, 1, "/signed/t", &s, body);
    assert_eq!(
        crate::adapter::body::on_request_body(&shared, &mut st, 3, false),
        Outcome::Pause
    );
    assert_eq!(
        crate::adapter::body::on_request_trailers(&shared, &mut st),
        Outcome::Continue
    );
    assert_eq!(
        host.header(1, "x-service-name").as_deref(),
        Some("orders-service")
    );
    // Waiting for a key refetch: the body and trailers wait until the stream is decided.
    let host = Rc::new(FakeHost::at(NOW));
    let (mut root, _) = configured(&host, &remote_config());
    root.tick(Level::Info);
    let old = json!({"keys": [fixtures::public_jwk(Fixture::RsaA, "rsa-a")]}).to_string();
    answer_fetch(&host, &mut root, &old);
    let shared = root.shared.clone().unwrap();
    let auth = bearer(&token(Fixture::Ec256, &claims(NOW)));
    host.request(
        1,
        &[
            (":method", "POST"),
            (":path", "/orders"),
            ("authorization", &auth),
        ],
    );
    let mut st = Stream {
        id: 1,
        ..Stream::default()
    };
    assert_eq!(
        request::on_request_headers(&shared, &mut st),
        Outcome::Pause
    );
    assert!(st.waiting_keys);
    assert_eq!(
        crate::adapter::body::on_request_body(&shared, &mut st, 10, true),
        Outcome::Pause,
        "held while it waits"
    );
    assert_eq!(
        crate::adapter::body::on_request_trailers(&shared, &mut st),
        Outcome::Pause
    );
    let item = host.queue.borrow_mut().remove(0);
    let mut items = vec![item];
    root.queue_ready(7, &mut || items.pop());
    answer_fetch(&host, &mut root, &fixtures::jwks_json());
    assert_eq!(*host.resumed.borrow(), [1]);
    assert_eq!(
        crate::adapter::body::on_request_body(&shared, &mut st, 20, false),
        Outcome::Continue,
        "decided: the rest goes on"
    );
}

#[test]
fn a_signed_route_does_not_wait_for_a_key_refetch() {
    let host = Rc::new(FakeHost::at(NOW));
    let mut v = signing_config(false);
    let p = &mut v["providers"]["internal"];
    p.as_object_mut().unwrap().remove("jwks");
    p["remote_jwks"] = json!({"cluster": "jwks"});
    let mut root = signing_root(&host, &v);
    root.tick(Level::Info);
    let old = json!({"keys": [fixtures::public_jwk(Fixture::RsaA, "rsa-a")]}).to_string();
    answer_fetch(&host, &mut root, &old);
    let shared = root.shared.clone().unwrap();
    let s = signed("POST", "/signed/x", b"", NOW);
    let (st, o) = sig_post(&shared, &host, 1, "/signed/x", &s, b"");
    assert_eq!(o, Outcome::Pause);
    assert!(!st.waiting_keys);
    assert_eq!(sig_reason(&host, 1), Some((401, "unknown_kid".into())));
}
