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
use crate::contract::reason::Reason;
use crate::fixtures::{self, claims, claims_with, token, Fixture, NOW};
use crate::ratelimit::Limit;

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
            crate::contract::reason::body(reason, "rid\"1")
        );
        assert_eq!(
            r.challenge(reason, None),
            crate::contract::reason::www_authenticate(reason, "")
        );
    }
    assert_eq!(
        r.challenge(Reason::InsufficientScope, Some(1)),
        crate::contract::reason::www_authenticate(Reason::InsufficientScope, "internal:admin")
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
        // Two spoofed spellings removed; the two identity headers set for the upstream; the
        // decision published as three properties (no tag header reaches the upstream).
        assert_eq!(host.count("remove_header"), 2);
        assert_eq!(host.count("set_header"), 2);
        assert_eq!(host.count("set_property"), 3);
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
    assert_eq!(
        body,
        &crate::contract::reason::body(Reason::TokenMissing, "r")
    );
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

// ------------------------------------------- issue 16: token sources, stripped upstream ---

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

/// Runs one request on context `id`; its outcome and stream.
fn run_request(
    host: &FakeHost,
    shared: &super::state::Shared,
    id: u32,
    req: &[(&str, &str)],
) -> (Outcome, Stream) {
    host.request(id, req);
    let mut s = Stream {
        id,
        ..Stream::default()
    };
    let o = request::on_request_headers(shared, &mut s);
    (o, s)
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
    let prop = |id: u32, name: &str| {
        host.properties
            .borrow()
            .get(&(id, name.to_string()))
            .cloned()
    };
    assert_eq!(
        prop(1, "svcauth_service").as_deref(),
        Some("orders-service")
    );
    assert_eq!(host.header(1, "x-svcauth-service"), None);
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
    assert_eq!(prop(2, "svcauth_service"), None);
    assert_eq!(prop(2, "svcauth_reason").as_deref(), Some("bad_signature"));
    assert_eq!(prop(2, "svcauth_decision").as_deref(), Some("deny"));
    let line = &host.logs.borrow().last().unwrap().1.clone();
    assert!(line.contains("\"subject\":null"), "{line}");
    assert!(
        line.contains("\"unverified_subject\":\"admin-service\""),
        "{line}"
    );
}

// ------------------------------------------------------------------ OIDC discovery ----------

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

fn reply_of(host: &FakeHost, id: u32) -> Option<(u32, String)> {
    host.replies
        .borrow()
        .iter()
        .rev()
        .find(|r| r.0 == id)
        .map(|r| (r.1, r.3.clone()))
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
    assert!(super::discovery::target(s, 0).is_none());
    assert_eq!(
        super::remote::Target::decode(b"1 1 https://auth.internal/k", &["auth.internal".into()])
            .unwrap()
            .jwks
            .path,
        "/k"
    );
    assert!(
        super::remote::Target::decode(b"1 https://auth.internal/k", &["auth.internal".into()])
            .is_none()
    );
}

// ---------------------------------------------------------------- signed requests ------------

const SIGNING_ENV: &str = "SVCAUTH_TEST_SIGNING";
const CLIENT_SECRET: &str = "orders-service-signing-secret-0001";

/// The fixture config with signing secrets for `orders-service` on provider `internal`
/// (`required` as given) and a `/signed/` rule that requires a signature.
fn signing_config(required: bool) -> serde_json::Value {
    let mut v = fixtures::config_json();
    v["providers"]["internal"]["signed_requests"] = json!({
        "secrets_env": SIGNING_ENV, "required": required, "max_body_bytes": 64,
        "replay_cache_per_caller": 64
    });
    let rules = v["rules"].as_array_mut().unwrap();
    rules.insert(
        0,
        json!({"match": {"prefix": "/signed/"}, "requires": {"signed": true}}),
    );
    v
}

fn signing_env(name: &str) -> Option<String> {
    if name == SIGNING_ENV {
        return Some(format!("orders-service:{CLIENT_SECRET}"));
    }
    fixtures::env(name)
}

/// A root on `host` configured with `config` (with the signing secrets in its environment).
fn signing_root(host: &Rc<FakeHost>, config: &serde_json::Value) -> Root {
    let mut root = Root::default();
    let dyn_host: Rc<dyn Host> = host.clone();
    let n = RefCell::new(0u32);
    let define = |_: &str, _: bool| {
        *n.borrow_mut() += 1;
        Some(*n.borrow())
    };
    root.configure(
        dyn_host,
        config.to_string().as_bytes(),
        &signing_env,
        &define,
        &|_| Some(7),
    )
    .unwrap();
    root
}

/// `X-Signature` for a request, as the client signs it.
fn sign_req(method: &str, path: &str, body: &[u8], ts: &str) -> String {
    let mac = crate::signing::mac(CLIENT_SECRET.as_bytes(), method, path, body, ts);
    crate::signing::hex(&mac)
}

struct Signed {
    auth: String,
    ts: String,
    sig: String,
}

fn signed(method: &str, path: &str, body: &[u8], ts: i64) -> Signed {
    let ts = ts.to_string();
    Signed {
        auth: bearer(&token(Fixture::Ec256, &claims(NOW))),
        sig: sign_req(method, path, body, &ts),
        ts,
    }
}

/// Starts request `id` (`POST path` with these signature parts) and runs its headers callback.
fn sig_post(
    shared: &super::state::Shared,
    host: &FakeHost,
    id: u32,
    path: &str,
    s: &Signed,
    body: &[u8],
) -> (Stream, Outcome) {
    let len = body.len().to_string();
    host.request(
        id,
        &[
            (":method", "POST"),
            (":path", path),
            ("authorization", s.auth.as_str()),
            ("x-timestamp", s.ts.as_str()),
            ("x-signature", s.sig.as_str()),
            ("content-length", len.as_str()),
            ("x-request-id", "rid"),
        ],
    );
    host.bodies.borrow_mut().insert(id, body.to_vec());
    let mut st = Stream {
        id,
        headers_only: body.is_empty(),
        ..Stream::default()
    };
    let o = request::on_request_headers(shared, &mut st);
    (st, o)
}

fn sig_reply(host: &FakeHost, id: u32) -> Option<(u32, String)> {
    host.replies
        .borrow()
        .iter()
        .rev()
        .find(|r| r.0 == id)
        .map(|r| (r.1, r.3.clone()))
}

fn sig_reason(host: &FakeHost, id: u32) -> Option<(u32, String)> {
    sig_reply(host, id).map(|(status, body)| {
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        (status, v["reason"].as_str().unwrap_or_default().to_string())
    })
}

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
                    super::body::on_request_body(&shared, &mut s, size, end),
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
        super::body::on_request_body(&shared, &mut st, 4, false),
        Outcome::Pause
    );
    assert_eq!(host.total_calls(), 0);
    // The last part: read once, checked, recorded, and the request goes on.
    assert_eq!(
        super::body::on_request_body(&shared, &mut st, body.len(), true),
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
fn tampered_stale_replayed_unsigned_and_oversized_requests_are_refused() {
    let host = Rc::new(FakeHost::at(NOW));
    let root = signing_root(&host, &signing_config(false));
    let shared = root.shared.clone().unwrap();
    let path = "/signed/run";
    let body = b"amount=10";
    // Tampered body: held, refused at its end.
    let s = signed("POST", path, body, NOW);
    let (mut st, _) = sig_post(&shared, &host, 1, path, &s, b"amount=99");
    super::body::on_request_body(&shared, &mut st, 9, true);
    assert_eq!(
        sig_reason(&host, 1),
        Some((401, "signature_invalid".into()))
    );
    assert_eq!(host.header(1, "x-service-name"), None);
    // Another path under the same signature.
    let (mut st, _) = sig_post(&shared, &host, 2, "/signed/other", &s, body);
    super::body::on_request_body(&shared, &mut st, body.len(), true);
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
        let o = super::body::on_request_body(&shared, &mut st, body.len(), true);
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
        super::body::on_request_body(&shared, &mut st, 40, false),
        Outcome::Pause
    );
    host.calls.borrow_mut().clear();
    assert_eq!(
        super::body::on_request_body(&shared, &mut st, 80, false),
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
    let shared = super::state::Shared::new(dyn_host, cfg, &|_, _| None, 1, None);
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
    let get = |shared: &super::state::Shared, id: u32| sig_post(shared, &host, id, path, &s, b"").1;
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
    assert_eq!(sig_reply(&host, 1), None, "not before its deadline");
    host.clock
        .set(Some((NOW + super::signed::FIRST_BODY_SECONDS) * 1000));
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

fn sig_forget(shared: &super::state::Shared, s: &Stream) {
    super::body::forget(shared, s);
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
        super::body::on_request_body(&shared, &mut st, 3, false),
        Outcome::Pause
    );
    assert_eq!(
        super::body::on_request_trailers(&shared, &mut st),
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
        super::body::on_request_body(&shared, &mut st, 10, true),
        Outcome::Pause,
        "held while it waits"
    );
    assert_eq!(
        super::body::on_request_trailers(&shared, &mut st),
        Outcome::Pause
    );
    let item = host.queue.borrow_mut().remove(0);
    let mut items = vec![item];
    root.queue_ready(7, &mut || items.pop());
    answer_fetch(&host, &mut root, &fixtures::jwks_json());
    assert_eq!(*host.resumed.borrow(), [1]);
    assert_eq!(
        super::body::on_request_body(&shared, &mut st, 20, false),
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
