//! The adapter's logic against the host double: the rate-limit CAS loop, the fetch lease and
//! backoff, the waiter queue, the refetch through the root context, header application, and
//! the host calls each request path makes.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use serde_json::json;

use super::bucket::{self, Verdict, CAS_ATTEMPTS};
use super::fake::FakeHost;
use super::host::{Headers, Host, Ids, Level};
use super::lease;
use super::request::{self, Outcome, Stream};
use super::root::Root;
use super::waiters::{Waiter, Waiters};
use crate::fixtures::{self, claims, claims_with, token, Fixture, NOW};
use crate::ratelimit::Limit;
use crate::reason::Reason;

/// A root configured with `config` on `host`; the counter ids by name.
fn configured(host: &Rc<FakeHost>, config: &serde_json::Value) -> (Root, BTreeMap<String, u32>) {
    let names = RefCell::new(BTreeMap::new());
    let define = |name: &str, _gauge: bool| {
        let mut n = names.borrow_mut();
        let id = u32::try_from(n.len()).unwrap() + 1;
        n.insert(name.to_string(), id);
        Some(id)
    };
    let mut root = Root::default();
    let dyn_host: Rc<dyn Host> = host.clone();
    root.configure(
        dyn_host,
        config.to_string().as_bytes(),
        &fixtures::env,
        &define,
        &|_| Some(7),
    )
    .unwrap();
    (root, names.into_inner())
}

fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

fn limit(rpm: u32) -> Limit {
    Limit {
        callers: vec!["*".into()],
        requests_per_minute: rpm,
        burst: rpm,
    }
}

#[test]
fn the_rate_limiter_retries_lost_races_and_fails_closed_when_it_cannot_count() {
    let host = FakeHost::at(NOW);
    // A race lost a few times: retried, then counted.
    host.lose_cas.set(3);
    host.shared.borrow_mut().insert(
        crate::ratelimit::bucket_key("p", "svc"),
        (b"5000 0".to_vec(), 1),
    );
    assert_eq!(
        bucket::take(&host, "p", "svc", &limit(60)),
        Verdict::Allowed
    );
    // Lost every time: refused, never let through uncounted.
    host.lose_cas.set(u32::try_from(CAS_ATTEMPTS).unwrap());
    assert_eq!(
        bucket::take(&host, "p", "svc", &limit(60)),
        Verdict::Uncounted
    );
    assert_eq!(Verdict::Uncounted.retry_after(), Some(1));
    // A host error on read or write, or no clock: refused.
    host.fail_get.set(true);
    assert_eq!(
        bucket::take(&host, "p", "svc", &limit(60)),
        Verdict::Uncounted
    );
    host.fail_get.set(false);
    host.fail_set.set(true);
    assert_eq!(
        bucket::take(&host, "p", "svc", &limit(60)),
        Verdict::Uncounted
    );
    host.fail_set.set(false);
    host.clock.set(None);
    assert_eq!(
        bucket::take(&host, "p", "svc", &limit(60)),
        Verdict::Uncounted
    );
    // An empty bucket: limited, with the seconds until the next token.
    let host = FakeHost::at(NOW);
    for _ in 0..2 {
        assert_eq!(bucket::take(&host, "p", "svc", &limit(2)), Verdict::Allowed);
    }
    assert_eq!(
        bucket::take(&host, "p", "svc", &limit(2)),
        Verdict::Limited(30)
    );
}

#[test]
fn a_lease_is_taken_once_and_freed_by_time_even_if_its_holder_died() {
    let host = FakeHost::at(NOW);
    assert!(lease::take(&host, "l", NOW, NOW + 3, 1));
    // Held by VM 1: VM 2 cannot take it until it expires.
    assert!(!lease::take(&host, "l", NOW + 1, NOW + 4, 2));
    // VM 1 died holding it: at its expiry VM 2 takes it.
    assert!(lease::take(&host, "l", NOW + 3, NOW + 6, 2));
    // A race lost at the write: not taken.
    host.lose_cas.set(1);
    assert!(!lease::take(&host, "l", NOW + 10, NOW + 12, 3));
    // Unreadable shared data: not taken.
    host.fail_get.set(true);
    assert!(!lease::take(&host, "l", NOW + 20, NOW + 22, 3));
    host.fail_get.set(false);
    lease::hold(&host, "l", 0, 3);
    assert!(lease::take(&host, "l", NOW + 21, NOW + 23, 4));
    let steps: Vec<i64> = (1..=8).map(|f| lease::backoff(f, 300)).collect();
    assert_eq!(steps, [2, 4, 8, 16, 32, 64, 64, 64]);
    assert_eq!(lease::backoff(5, 10), 10);
    assert_eq!(lease::backoff(1, 0), 1);
}

#[test]
fn waiters_are_bounded_per_provider_and_leave_by_provider_or_deadline() {
    let w = |id: u32, p: usize, deadline: i64| Waiter {
        context_id: id,
        provider: p,
        deadline,
        headers: Vec::new(),
    };
    let mut q = Waiters::default();
    assert!(q.push(w(1, 0, 10), 2));
    assert!(q.push(w(2, 0, 20), 2));
    assert!(!q.push(w(3, 0, 20), 2), "the bound holds");
    assert!(q.push(w(4, 1, 5), 2), "per provider");
    let expired: Vec<u32> = q.take_expired(10).iter().map(|x| x.context_id).collect();
    assert_eq!(expired, [1, 4]);
    let zero: Vec<u32> = q
        .take_provider(Some(0))
        .iter()
        .map(|x| x.context_id)
        .collect();
    assert_eq!(zero, [2]);
    assert_eq!(q.len(), 0);
}

#[test]
fn the_host_header_buffer_is_parsed_in_place_and_bad_buffers_are_refused() {
    // The proxy-wasm serialized map: count, (name len, value len)*, then name\0value\0 each.
    let mut buf = Vec::new();
    let pairs: [(&[u8], &[u8]); 3] = [
        (b":path", b"/a"),
        (b"authorization", b"Bearer \xff"),
        (b"x", b""),
    ];
    buf.extend_from_slice(&3u32.to_le_bytes());
    for (k, v) in pairs {
        buf.extend_from_slice(&u32::try_from(k.len()).unwrap().to_le_bytes());
        buf.extend_from_slice(&u32::try_from(v.len()).unwrap().to_le_bytes());
    }
    for (k, v) in pairs {
        buf.extend_from_slice(k);
        buf.push(0);
        buf.extend_from_slice(v);
        buf.push(0);
    }
    let h = Headers::parse(buf.clone()).unwrap();
    let p = h.pairs();
    assert_eq!(p.len(), 3);
    assert_eq!((p[0].0, p[0].1.as_ref()), (":path", "/a"));
    // A value that is not UTF-8 is read lossily: the scheme survives, the token cannot.
    assert_eq!(p[1].1.as_ref(), "Bearer \u{fffd}");
    assert_eq!((p[2].0, p[2].1.as_ref()), ("x", ""));
    for cut in [1, 5, 20, buf.len() - 1] {
        assert!(
            Headers::parse(buf[..cut].to_vec()).is_none(),
            "cut at {cut}"
        );
    }
    let mut huge = u32::MAX.to_le_bytes().to_vec();
    huge.extend_from_slice(&[0; 8]);
    assert!(Headers::parse(huge).is_none());
    assert_eq!(Headers::parse(Vec::new()).unwrap().len(), 0);
}

#[test]
fn generated_ids_are_hex_of_the_asked_length_and_differ() {
    let ids = Ids::new(1);
    let a = ids.hex(32);
    let b = ids.hex(32);
    assert_eq!(a.len(), 32);
    assert!(a
        .bytes()
        .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    assert_ne!(a, b);
    assert_eq!(ids.hex(16).len(), 16);
}

#[test]
fn replies_built_once_are_the_contract_replies() {
    let cfg = crate::config::Config::from_json(
        fixtures::config_json().to_string().as_bytes(),
        &fixtures::env,
    )
    .unwrap();
    let r = super::replies::Replies::new(&cfg);
    for reason in Reason::ALL {
        assert_eq!(
            r.body(reason, "rid\"1"),
            crate::reason::body(reason, "rid\"1")
        );
        assert_eq!(
            r.challenge(reason, None),
            crate::reason::www_authenticate(reason, "")
        );
    }
    assert_eq!(
        r.challenge(Reason::InsufficientScope, Some(1)),
        crate::reason::www_authenticate(Reason::InsufficientScope, "internal:admin")
    );
    assert_eq!(r.grpc_body(Reason::TokenMissing), "token_missing: no token");
}

#[test]
fn a_cached_allow_makes_one_header_read_one_clock_read_and_writes_only_what_it_sets() {
    let host = Rc::new(FakeHost::at(NOW));
    let (root, ids) = configured(&host, &fixtures::config_json());
    let shared = root.shared.clone().unwrap();
    let auth = bearer(&token(Fixture::Ec256, &claims(NOW)));
    let req = [
        (":method", "GET"),
        (":path", "/orders"),
        ("authorization", auth.as_str()),
        ("x-request-id", "rid-1"),
        (
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ),
        ("x_service_name", "evil"),
        ("X-Service-Scopes", "internal:admin"),
    ];
    for round in 0..2 {
        host.request(1, &req);
        let mut s = Stream {
            id: 1,
            ..Stream::default()
        };
        assert_eq!(
            request::on_request_headers(&shared, &mut s),
            Outcome::Continue
        );
        assert_eq!(host.count("get_headers"), 1, "round {round}");
        assert_eq!(host.count("clock"), 1, "round {round}");
        assert_eq!(host.count("increment"), 0, "counters wait for the tick");
        // The miss asks the host's crypto (this double has none: one warning, then in-VM).
        assert_eq!(host.count("foreign"), usize::from(round == 0));
        assert_eq!(host.count("log"), usize::from(round == 0));
        // Two spoofed spellings removed; identity and three tags set; nothing else.
        assert_eq!(host.count("remove_header"), 2);
        assert_eq!(host.count("set_header"), 5);
    }
    assert_eq!(
        host.header(1, "x-service-name").as_deref(),
        Some("orders-service")
    );
    assert_eq!(
        host.header(1, "x-service-scopes").as_deref(),
        Some("orders:read")
    );
    assert!(!host.names(1).iter().any(|n| n == "x_service_name"));
    // The tick flushes: one call per counter that moved.
    root.shared.as_ref().unwrap().counters.flush(&*host);
    assert_eq!(host.counter(ids["svcauth.allowed"]), 2);
    assert_eq!(host.counter(ids["svcauth.cache_miss"]), 1);
    assert_eq!(host.counter(ids["svcauth.cache_hit"]), 1);
}

#[test]
fn a_request_without_a_token_reads_no_clock_and_its_line_is_built_only_if_kept() {
    let host = Rc::new(FakeHost::at(NOW));
    let (root, ids) = configured(&host, &fixtures::config_json());
    let shared = root.shared.clone().unwrap();
    let req = [
        (":method", "GET"),
        (":path", "/orders"),
        ("x-request-id", "r"),
    ];
    host.request(1, &req);
    let mut s = Stream::default();
    assert_eq!(request::on_request_headers(&shared, &mut s), Outcome::Pause);
    assert_eq!(host.count("clock"), 0);
    assert_eq!(host.count("log"), 1);
    let replies = host.replies.borrow().clone();
    let (_, status, headers, body) = replies.last().unwrap();
    assert_eq!(*status, 401);
    assert!(headers.contains(&("www-authenticate".into(), "Bearer realm=\"svcauth\"".into())));
    assert_eq!(body, &crate::reason::body(Reason::TokenMissing, "r"));
    // At warn, the denial line is never built or written.
    shared.log_level.set(Level::Warn);
    host.request(2, &req);
    let mut s = Stream {
        id: 2,
        ..Stream::default()
    };
    request::on_request_headers(&shared, &mut s);
    assert_eq!(host.count("log"), 0);
    shared.counters.flush(&*host);
    assert_eq!(host.counter(ids["svcauth.denied.token_missing"]), 2);
    // A gRPC caller gets a short text body (Envoy's grpc-message) and no JSON content type.
    host.request(
        3,
        &[
            (":method", "POST"),
            (":path", "/orders"),
            ("content-type", "application/grpc"),
        ],
    );
    let mut s = Stream {
        id: 3,
        ..Stream::default()
    };
    request::on_request_headers(&shared, &mut s);
    let replies = host.replies.borrow().clone();
    let (_, _, headers, body) = replies.last().unwrap();
    assert_eq!(body, "token_missing: no token");
    assert!(!headers.iter().any(|(k, _)| k == "content-type"));
}

#[test]
fn a_token_without_a_host_clock_is_refused_with_503() {
    let host = Rc::new(FakeHost::at(NOW));
    let (root, _) = configured(&host, &fixtures::config_json());
    let shared = root.shared.clone().unwrap();
    host.clock.set(None);
    let auth = bearer(&token(Fixture::Ec256, &claims(NOW)));
    host.request(
        1,
        &[
            (":method", "GET"),
            (":path", "/orders"),
            ("authorization", &auth),
        ],
    );
    let mut s = Stream::default();
    assert_eq!(request::on_request_headers(&shared, &mut s), Outcome::Pause);
    assert_eq!(host.replies.borrow().last().unwrap().1, 503);
    // An open route needs no clock.
    host.request(2, &[(":method", "GET"), (":path", "/health")]);
    let mut s = Stream {
        id: 2,
        ..Stream::default()
    };
    assert_eq!(
        request::on_request_headers(&shared, &mut s),
        Outcome::Continue
    );
}

/// The fixture config with its provider's keys fetched from cluster `jwks` instead.
fn remote_config() -> serde_json::Value {
    let mut v = fixtures::config_json();
    let p = &mut v["providers"]["internal"];
    p.as_object_mut().unwrap().remove("jwks");
    p["remote_jwks"] = json!({"cluster": "jwks", "refetch_interval_seconds": 1, "max_waiting": 2});
    v
}

fn answer_fetch(host: &FakeHost, root: &mut Root, body: &str) {
    let token = host.dispatched.borrow().last().unwrap().0;
    *host.call_status.borrow_mut() = Some("200".into());
    *host.call_body.borrow_mut() = body.as_bytes().to_vec();
    root.call_response(token, body.len());
}

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
    let names = RefCell::new(0u32);
    let define = |_: &str, _: bool| {
        *names.borrow_mut() += 1;
        Some(*names.borrow())
    };
    let dyn_host: Rc<dyn Host> = host.clone();
    root.configure(
        dyn_host,
        remote_config().to_string().as_bytes(),
        &fixtures::env,
        &define,
        &|_| Some(7),
    )
    .unwrap();
    *host.call_status.borrow_mut() = Some("200".into());
    *host.call_body.borrow_mut() = fixtures::jwks_json().into_bytes();
    root.call_response(stale, fixtures::jwks_json().len());
    let shared = root.shared.clone().unwrap();
    assert!(
        shared.keys.borrow().get(0).is_none(),
        "the new VM state took nothing from it"
    );
}

#[test]
fn a_verified_denial_names_its_caller_and_a_forged_one_does_not() {
    let host = Rc::new(FakeHost::at(NOW));
    let (root, _) = configured(&host, &fixtures::config_json());
    let shared = root.shared.clone().unwrap();
    let reader = bearer(&token(Fixture::Ec256, &claims(NOW)));
    host.request(
        1,
        &[
            (":method", "POST"),
            (":path", "/admin/rotate"),
            ("authorization", &reader),
        ],
    );
    request::on_request_headers(
        &shared,
        &mut Stream {
            id: 1,
            ..Stream::default()
        },
    );
    assert_eq!(
        host.header(1, "x-svcauth-service").as_deref(),
        Some("orders-service")
    );
    let forged = {
        let t = token(
            Fixture::Ec256,
            &claims_with(NOW, json!({"sub": "admin-service"})),
        );
        let (head, _) = t.rsplit_once('.').unwrap();
        let other = token(Fixture::Ec256, &claims(NOW));
        format!("{head}.{}", other.rsplit_once('.').unwrap().1)
    };
    let auth = bearer(&forged);
    host.request(
        2,
        &[
            (":method", "GET"),
            (":path", "/orders"),
            ("authorization", &auth),
        ],
    );
    request::on_request_headers(
        &shared,
        &mut Stream {
            id: 2,
            ..Stream::default()
        },
    );
    assert_eq!(host.header(2, "x-svcauth-service"), None);
    assert_eq!(
        host.header(2, "x-svcauth-reason").as_deref(),
        Some("bad_signature")
    );
    let line = &host.logs.borrow().last().unwrap().1.clone();
    assert!(line.contains("\"subject\":null"), "{line}");
    assert!(
        line.contains("\"unverified_subject\":\"admin-service\""),
        "{line}"
    );
}
