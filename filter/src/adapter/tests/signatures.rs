//! Signed requests checked: tampered, stale, replayed, unsigned and oversized requests, a
//! signed request without a body, the replay check across workers, and configure-time refusals.

use std::rc::Rc;

use serde_json::json;

use super::{sig_post, sig_reason, signed, signing_config, signing_env, signing_root};
use super::{CLIENT_SECRET, SIGNING_ENV};
use crate::adapter::fake::FakeHost;
use crate::adapter::host::Host;
use crate::adapter::request::{self, Outcome, Stream};
use crate::fixtures::{self, NOW};

#[test]
fn tampered_stale_replayed_unsigned_and_oversized_requests_are_refused() {
    let host = Rc::new(FakeHost::at(NOW));
    let root = signing_root(&host, &signing_config(false));
    let shared = root.shared.clone().unwrap();
    let path = "/signed/run";
    let body = b"amount=10";
    // Tampered body: held, refused at its end.
    let s = signed("POST", path, body, NOW);
    let (mut st, _) = sig_post(&shared, &host, 1, path, &s, b"amount=99");
    crate::adapter::body::on_request_body(&shared, &mut st, 9, true);
    assert_eq!(
        sig_reason(&host, 1),
        Some((401, "signature_invalid".into()))
    );
    assert_eq!(host.header(1, "x-service-name"), None);
    // Another path under the same signature.
    let (mut st, _) = sig_post(&shared, &host, 2, "/signed/other", &s, body);
    crate::adapter::body::on_request_body(&shared, &mut st, body.len(), true);
    assert_eq!(
        sig_reason(&host, 2),
        Some((401, "signature_invalid".into()))
    );
    // A stale and a future timestamp: refused at the headers, nothing held.
    for (id, ts) in [(3, NOW - 301), (4, NOW + 301)] {
        let s = signed("POST", path, body, ts);
        let (st, o) = sig_post(&shared, &host, id, path, &s, body);
        assert_eq!(o, Outcome::Pause);
        assert!(!st.held_for_body);
        assert_eq!(
            sig_reason(&host, id),
            Some((401, "signature_expired".into()))
        );
    }
    // The good request passes once; the same signature again is a replay.
    let s = signed("POST", path, body, NOW);
    for (id, want) in [
        (5, None),
        (6, Some((401, "signature_replayed".to_string()))),
    ] {
        let (mut st, _) = sig_post(&shared, &host, id, path, &s, body);
        let o = crate::adapter::body::on_request_body(&shared, &mut st, body.len(), true);
        assert_eq!(sig_reason(&host, id), want);
        assert_eq!(o == Outcome::Continue, want.is_none());
    }
    // No signature, no timestamp, or an empty one: missing; two signatures: invalid.
    let auth = s.auth.clone();
    for (id, extra, want) in [
        (7, vec![], "signature_missing"),
        (
            8,
            vec![("x-signature", s.sig.as_str())],
            "signature_missing",
        ),
        (
            9,
            vec![("x-timestamp", " "), ("x-signature", s.sig.as_str())],
            "signature_missing",
        ),
        (
            10,
            vec![("x-timestamp", s.ts.as_str()), ("x-signature", "zz")],
            "signature_invalid",
        ),
        (
            11,
            vec![
                ("x-timestamp", s.ts.as_str()),
                ("x-signature", s.sig.as_str()),
                ("x-signature", s.sig.as_str()),
            ],
            "signature_invalid",
        ),
    ] {
        let mut h = vec![
            (":method", "POST"),
            (":path", path),
            ("authorization", auth.as_str()),
        ];
        h.extend(extra);
        host.request(id, &h);
        let mut st = Stream {
            id,
            ..Stream::default()
        };
        request::on_request_headers(&shared, &mut st);
        assert_eq!(
            sig_reason(&host, id),
            Some((401, want.into())),
            "request {id}"
        );
        assert!(!st.held_for_body);
    }
    // Larger than max_body_bytes (64): by its content-length at once, or as it arrives.
    let big = vec![b'x'; 65];
    let s = signed("POST", path, &big, NOW);
    let (_, o) = sig_post(&shared, &host, 12, path, &s, &big);
    assert_eq!(o, Outcome::Pause);
    assert_eq!(sig_reason(&host, 12), Some((413, "body_too_large".into())));
    host.request(
        13,
        &[
            (":method", "POST"),
            (":path", path),
            ("authorization", auth.as_str()),
            ("x-timestamp", s.ts.as_str()),
            ("x-signature", s.sig.as_str()),
        ],
    );
    let mut st = Stream {
        id: 13,
        ..Stream::default()
    };
    assert_eq!(
        request::on_request_headers(&shared, &mut st),
        Outcome::Pause
    );
    assert_eq!(
        crate::adapter::body::on_request_body(&shared, &mut st, 40, false),
        Outcome::Pause
    );
    host.calls.borrow_mut().clear();
    assert_eq!(
        crate::adapter::body::on_request_body(&shared, &mut st, 80, false),
        Outcome::Pause
    );
    assert_eq!(host.count("get_body"), 0, "refused unread");
    assert_eq!(sig_reason(&host, 13), Some((413, "body_too_large".into())));
    // Every refusal named the verified caller.
    let line = host.logs.borrow().last().unwrap().1.clone();
    assert!(line.contains(r#""subject":"orders-service""#), "{line}");
    assert_eq!(shared.held.borrow().len(), 0);
    // A caller without a secret cannot sign: refused at the headers.
    let mut other = signing_config(false);
    other["providers"]["internal"]["signed_requests"]["secrets_env"] = json!("OTHER_SIGNING");
    let env = |n: &str| {
        (n == "OTHER_SIGNING")
            .then(|| format!("billing-client:{CLIENT_SECRET}"))
            .or_else(|| fixtures::env(n))
    };
    let cfg = crate::config::Config::from_json(other.to_string().as_bytes(), &env).unwrap();
    let dyn_host: Rc<dyn Host> = host.clone();
    let shared = crate::adapter::state::Shared::new(dyn_host, cfg, &|_, _| None, 1, None);
    let s = signed("POST", path, body, NOW);
    let (st, _) = sig_post(&shared, &host, 14, path, &s, body);
    assert!(!st.held_for_body);
    assert_eq!(
        sig_reason(&host, 14),
        Some((401, "signature_invalid".into()))
    );
}

#[test]
fn a_signed_request_without_a_body_is_checked_at_its_headers() {
    let host = Rc::new(FakeHost::at(NOW));
    let root = signing_root(&host, &signing_config(true));
    let shared = root.shared.clone().unwrap();
    // `required: true`: every route of the provider, not only /signed/.
    let s = signed("GET", "/orders?page=2", b"", NOW + 5);
    host.request(
        1,
        &[
            (":method", "GET"),
            (":path", "/orders?page=2"),
            ("authorization", s.auth.as_str()),
            ("x-timestamp", s.ts.as_str()),
            ("x-signature", s.sig.as_str()),
        ],
    );
    let mut st = Stream {
        id: 1,
        headers_only: true,
        ..Stream::default()
    };
    assert_eq!(
        request::on_request_headers(&shared, &mut st),
        Outcome::Continue
    );
    assert_eq!(host.count("get_body"), 0);
    assert_eq!(
        host.header(1, "x-service-name").as_deref(),
        Some("orders-service")
    );
    // An unsigned GET of that provider is refused; an open route needs nothing.
    host.request(
        2,
        &[
            (":method", "GET"),
            (":path", "/orders"),
            ("authorization", s.auth.as_str()),
        ],
    );
    let mut st = Stream {
        id: 2,
        headers_only: true,
        ..Stream::default()
    };
    request::on_request_headers(&shared, &mut st);
    assert_eq!(
        sig_reason(&host, 2),
        Some((401, "signature_missing".into()))
    );
    host.request(3, &[(":method", "GET"), (":path", "/health")]);
    let mut st = Stream {
        id: 3,
        ..Stream::default()
    };
    assert_eq!(
        request::on_request_headers(&shared, &mut st),
        Outcome::Continue
    );
}

#[test]
fn a_replay_is_refused_by_every_worker_and_a_replay_check_that_cannot_be_made_fails_closed() {
    let host = Rc::new(FakeHost::at(NOW));
    // Two worker VMs of one Envoy: two roots over one host's shared data.
    let a = signing_root(&host, &signing_config(false)).shared.unwrap();
    // Every slot of every caller with a secret exists (with a CAS) before any request.
    let slots = host
        .shared
        .borrow()
        .keys()
        .filter(|k| k.starts_with("svcauth.replay."))
        .count();
    assert_eq!(slots, crate::signing::REPLAY_SLOTS);
    let b = signing_root(&host, &signing_config(false)).shared.unwrap();
    let path = "/signed/pay";
    let s = signed("POST", path, b"", NOW);
    let get = |shared: &crate::adapter::state::Shared, id: u32| {
        sig_post(shared, &host, id, path, &s, b"").1
    };
    assert_eq!(get(&a, 1), Outcome::Continue);
    // A lost compare-and-swap is read again: the other worker's write is seen.
    host.lose_cas.set(1);
    assert_eq!(get(&b, 2), Outcome::Pause);
    assert_eq!(
        sig_reason(&host, 2),
        Some((401, "signature_replayed".into()))
    );
    // Shared data failing, or a CAS that keeps losing: 503, never let through unchecked.
    for (id, setup) in [(3u32, 0u8), (4, 1), (5, 2)] {
        let s = signed("POST", path, b"", NOW - i64::from(id));
        host.fail_get.set(setup == 0);
        host.fail_set.set(setup == 1);
        host.lose_cas.set(if setup == 2 { 100 } else { 0 });
        let o = sig_post(&a, &host, id, path, &s, b"").1;
        assert_eq!(
            o,
            Outcome::Pause,
            "case {setup} {:?}",
            host.replies.borrow().last()
        );
        assert_eq!(
            sig_reason(&host, id),
            Some((503, "replay_check_unavailable".into())),
            "case {setup}"
        );
    }
    host.fail_get.set(false);
    host.fail_set.set(false);
    host.lose_cas.set(0);
    // A caller whose slot is full of live signatures is refused (64 per caller: one a slot).
    let mut refused = 0;
    for i in 0..200i64 {
        let s = signed("POST", "/signed/fill", b"", NOW - 100 + i);
        let id = 100 + u32::try_from(i).unwrap();
        if sig_post(&a, &host, id, "/signed/fill", &s, b"").1 == Outcome::Pause {
            assert_eq!(
                sig_reason(&host, id),
                Some((503, "replay_check_unavailable".into()))
            );
            refused += 1;
        }
    }
    assert!(refused > 0, "bounded");
    // Once the window has passed, the slots are free again.
    host.clock.set(Some((NOW + 400) * 1000));
    let s = signed("POST", path, b"", NOW + 400);
    assert_eq!(sig_post(&a, &host, 400, path, &s, b"").1, Outcome::Continue);
}

#[test]
fn signing_settings_a_rule_cannot_use_are_refused_at_configure_time() {
    let try_config = |v: &serde_json::Value| {
        crate::config::Config::from_json(v.to_string().as_bytes(), &signing_env).map(|_| ())
    };
    // A signed rule that accepts a provider without signed_requests.
    let mut v = fixtures::config_json();
    v["rules"].as_array_mut().unwrap().insert(
        0,
        json!({"match": {"prefix": "/s/"}, "requires": {"signed": true}}),
    );
    let e = try_config(&v).unwrap_err().0;
    assert!(
        e.starts_with("rules[0].requires.signed: provider \"internal\""),
        "{e}"
    );
    // Static credentials do not sign.
    let v = json!({
        "providers": {"legacy": {"static_credentials": {"credentials_env": SIGNING_ENV},
                                 "signed_requests": {"secrets_env": SIGNING_ENV}}},
        "rules": [{"match": {"prefix": "/"}, "allow": true}]
    });
    assert!(try_config(&v)
        .unwrap_err()
        .0
        .starts_with("providers.legacy:"));
    // The field names the provider and the setting.
    let mut v = signing_config(false);
    v["providers"]["internal"]["signed_requests"]["window_seconds"] = json!(0);
    assert!(try_config(&v)
        .unwrap_err()
        .0
        .starts_with("providers.internal.signed_requests.window_seconds:"));
    assert!(try_config(&signing_config(true)).is_ok());
}
