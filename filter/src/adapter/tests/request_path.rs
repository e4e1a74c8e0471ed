//! One request through the adapter: the host calls a cached allow, a missing token and a
//! missing clock make, the headers and properties it writes, the counters it moves.

use std::rc::Rc;

use serde_json::json;

use super::{bearer, configured};
use crate::adapter::fake::FakeHost;
use crate::adapter::host::Level;
use crate::adapter::request::{self, Outcome, Stream};
use crate::contract::reason::Reason;
use crate::fixtures::{self, claims, claims_with, token, Fixture, NOW};

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

#[test]
fn a_caller_over_its_rate_limit_gets_429_with_retry_after_and_is_counted_not_forwarded() {
    let host = Rc::new(FakeHost::at(NOW));
    let mut config = fixtures::config_json();
    config["rate_limits"] = json!([{"callers": ["*"], "requests_per_minute": 60, "burst": 2}]);
    let (root, ids) = configured(&host, &config);
    let shared = root.shared.clone().unwrap();
    let auth = bearer(&token(Fixture::Ec256, &claims(NOW)));
    let req = [
        (":method", "GET"),
        (":path", "/orders"),
        ("authorization", auth.as_str()),
        ("x-request-id", "rid-rl"),
    ];
    // The burst: two forwarded, with the caller's identity.
    for id in 1..=2 {
        let (o, _) = super::run_request(&host, &shared, id, &req);
        assert_eq!(o, Outcome::Continue, "request {id}");
        assert_eq!(
            host.header(id, "x-service-name").as_deref(),
            Some("orders-service")
        );
    }
    // The third in the same second: refused by the adapter after `decide` allowed it.
    let (o, _) = super::run_request(&host, &shared, 3, &req);
    assert_eq!(o, Outcome::Pause);
    assert_eq!(host.header(3, "x-service-name"), None);
    let replies = host.replies.borrow().clone();
    let (id, status, headers, body) = replies.last().unwrap();
    assert_eq!((*id, *status), (3, 429));
    assert!(headers.contains(&("retry-after".into(), "1".into())));
    assert!(headers.contains(&("x-svcauth-reason".into(), "rate_limited".into())));
    assert!(!headers.iter().any(|(k, _)| k == "www-authenticate"));
    assert!(body.contains("rate_limited"), "{body}");
    // Tagged with the verified caller; the denial line names it too.
    assert_eq!(
        host.properties
            .borrow()
            .get(&(3, "svcauth_reason".to_string()))
            .map(String::as_str),
        Some("rate_limited")
    );
    assert_eq!(
        host.properties
            .borrow()
            .get(&(3, "svcauth_service".to_string()))
            .map(String::as_str),
        Some("orders-service")
    );
    let line = host.logs.borrow().last().unwrap().1.clone();
    assert!(line.contains("\"reason\":\"rate_limited\""), "{line}");
    assert!(line.contains("\"subject\":\"orders-service\""), "{line}");
    shared.counters.flush(&*host);
    assert_eq!(host.counter(ids["svcauth.allowed"]), 2);
    assert_eq!(host.counter(ids["svcauth.denied.rate_limited"]), 1);
}
