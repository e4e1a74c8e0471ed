//! Key refetches through the root context: waiters for an unknown kid, a refetch that times
//! out, and a fetch answered after the VM was reconfigured.

use std::rc::Rc;

use serde_json::json;

use super::{answer_fetch, bearer, configured, remote_config};
use crate::adapter::fake::FakeHost;
use crate::adapter::host::Level;
use crate::adapter::request::{self, Outcome, Stream};
use crate::fixtures::{self, claims, token, Fixture, NOW};

#[test]
fn an_unknown_kid_waits_for_a_refetch_the_root_dispatches_and_a_reset_cancels_nothing() {
    let host = Rc::new(FakeHost::at(NOW));
    let (mut root, _) = configured(&host, &remote_config());
    // The first key set arrives through the tick's scheduled fetch.
    root.tick(Level::Info);
    assert_eq!(host.dispatched.borrow().len(), 1);
    let old = json!({"keys": [fixtures::public_jwk(Fixture::RsaA, "rsa-a")]}).to_string();
    answer_fetch(&host, &mut root, &old);
    let shared = root.shared.clone().unwrap();
    // Three requests carry a kid the set lacks; the bound is two waiters.
    let auth = bearer(&token(Fixture::Ec256, &claims(NOW)));
    let req = [
        (":method", "GET"),
        (":path", "/orders"),
        ("authorization", auth.as_str()),
    ];
    let mut outcomes = Vec::new();
    for id in 1..=3 {
        host.request(id, &req);
        let mut s = Stream {
            id,
            ..Stream::default()
        };
        outcomes.push(request::on_request_headers(&shared, &mut s));
        assert!(s.fetch.is_none(), "the stream dispatched nothing itself");
    }
    assert_eq!(outcomes, [Outcome::Pause, Outcome::Pause, Outcome::Pause]);
    let third = host.replies.borrow().iter().any(|r| r.0 == 3 && r.1 == 401);
    assert!(third, "beyond max_waiting the request is denied at once");
    // One refetch asked for, through the queue; the root dispatches it.
    assert_eq!(host.queue.borrow().len(), 1);
    let item = host.queue.borrow_mut().remove(0);
    let mut items = vec![item];
    root.queue_ready(7, &mut || items.pop());
    assert_eq!(host.dispatched.borrow().len(), 2);
    // Client 1 resets; the new keys still reach client 2.
    host.live.borrow_mut().remove(&1);
    let new = fixtures::jwks_json();
    answer_fetch(&host, &mut root, &new);
    assert_eq!(*host.resumed.borrow(), [2]);
    assert_eq!(
        host.header(2, "x-service-name").as_deref(),
        Some("orders-service")
    );
}

#[test]
fn a_refetch_that_times_out_answers_its_waiters_on_the_keys_there_are() {
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
            (":method", "GET"),
            (":path", "/orders"),
            ("authorization", &auth),
        ],
    );
    let mut s = Stream {
        id: 1,
        ..Stream::default()
    };
    assert_eq!(request::on_request_headers(&shared, &mut s), Outcome::Pause);
    // The fetch never answers; past the deadline the tick decides on the old keys.
    host.clock.set(Some((NOW + 5) * 1000));
    root.tick(Level::Info);
    let replies = host.replies.borrow().clone();
    let r = replies.iter().find(|r| r.0 == 1).unwrap();
    assert_eq!(r.1, 401);
    assert!(r.3.contains("unknown_kid"));
}

#[test]
fn a_fetch_answered_after_the_vm_was_reconfigured_is_ignored() {
    let host = Rc::new(FakeHost::at(NOW));
    let (mut root, _) = configured(&host, &remote_config());
    root.tick(Level::Info);
    let stale = host.dispatched.borrow().last().unwrap().0;
    super::configure(
        &mut root,
        &host,
        host.clone(),
        &remote_config(),
        &fixtures::env,
    );
    *host.call_status.borrow_mut() = Some("200".into());
    *host.call_body.borrow_mut() = fixtures::jwks_json().into_bytes();
    root.call_response(stale, fixtures::jwks_json().len());
    let shared = root.shared.clone().unwrap();
    assert!(
        shared.keys.borrow().get(0).is_none(),
        "the new VM state took nothing from it"
    );
}
