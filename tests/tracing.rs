//! Observability in a real Envoy: the request span that Envoy's OpenTelemetry tracer exports
//! over OTLP/gRPC (to the project's receiver on loopback) carries the auth decision as tags (read
//! from the filter state svcauth sets, or with `decision_tags: request_headers` from its request
//! headers), its ids match the denial log line and `envoy/demo.yaml`'s JSON access log, and
//! none of them holds the token. Plus the stats after a known mix of calls, in `/stats` and
//! `/stats/prometheus`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::Duration;

use serde_json::{json, Map, Value};
use svcauth_filter::fixtures::{self, Fixture};
use svcauth_filter::jws::Alg;
use svcauth_filter::mint::{sign, SigningKey};
use svcauth_tests::observe::{log_line_for, span_for, tracing_yaml, FILTER_STATE_TAGS};
use svcauth_tests::{http, now, EchoUpstream, Envoy, Opts, OtlpReceiver, SpanRecord};

const WAIT: Duration = Duration::from_secs(15);
const INCOMING_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const INCOMING_TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// Span tags read from the request headers svcauth sets with `decision_tags` =
/// `request_headers` (what Istio's Telemetry API can read).
const HEADER_TAGS: &str = r#"custom_tags:
- {tag: auth.decision, request_header: {name: x-svcauth-decision}}
- {tag: auth.service, request_header: {name: x-svcauth-service}}
- {tag: auth.reason, request_header: {name: x-svcauth-reason}}
- {tag: auth.provider, request_header: {name: x-svcauth-provider}}
"#;

fn traced_opts(upstream: &EchoUpstream, otlp: &OtlpReceiver) -> Opts {
    traced_opts_with(upstream, otlp, FILTER_STATE_TAGS)
}

fn traced_opts_with(upstream: &EchoUpstream, otlp: &OtlpReceiver, custom_tags: &str) -> Opts {
    Opts::new(upstream.port())
        .env(fixtures::HMAC_ENV, fixtures::HMAC_SECRET)
        .grpc_cluster("jaeger", otlp.port())
        .tracing(&tracing_yaml("svcauth-test", custom_tags))
        // Export every span as soon as it ends (the default batches 5 spans or waits 5 s).
        .runtime("tracing.opentelemetry.min_flush_spans", "1")
        .runtime("tracing.opentelemetry.flush_interval_ms", "200")
}

#[test]
fn spans_carry_the_decision_and_match_the_denial_log() {
    let otlp = OtlpReceiver::start();
    let upstream = EchoUpstream::start();
    let config = json!({
        "providers": fixtures::config_json()["providers"],
        "rules": fixtures::config_json()["rules"],
        "log": {"allowed": true},
    });
    let envoy = Envoy::start_plugin(&config.to_string(), &traced_opts(&upstream, &otlp));
    let t = now();
    let good = fixtures::token(Fixture::Ec256, &fixtures::claims_with(t, json!({})));
    let no_scope = fixtures::token(
        Fixture::Ec256,
        &fixtures::claims_with(t, json!({"sub": "billing", "scope": "billing:read"})),
    );

    // 1. Allowed, with an incoming traceparent: the span continues that trace.
    let r = http(
        envoy.port(),
        "GET",
        "/orders/1",
        &[
            ("authorization", &format!("Bearer {good}")),
            ("traceparent", INCOMING_TRACEPARENT),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let seen = upstream.last_request().unwrap();
    let allowed_rid = seen.header("x-request-id").unwrap().to_string();
    let span = span_for(&otlp, &allowed_rid);
    assert_eq!(span.trace_id, INCOMING_TRACE, "{span:#?}");
    assert_eq!(span.parent_span_id, "00f067aa0ba902b7", "{span:#?}");
    assert_eq!(span.http_status(), Some(200), "{span:#?}");
    assert_eq!(span.attr("auth.decision"), Some("allow"), "{span:#?}");
    assert_eq!(
        span.attr("auth.service"),
        Some("orders-service"),
        "{span:#?}"
    );
    assert_eq!(span.attr("auth.provider"), Some("internal"), "{span:#?}");
    assert_eq!(span.attr("auth.reason"), None, "{span:#?}");
    assert_eq!(span.service.as_deref(), Some("svcauth-test"));
    // The upstream sees the span's context (Envoy's router injects it).
    let up_tp = seen.header("traceparent").unwrap();
    assert!(up_tp.contains(INCOMING_TRACE), "{up_tp}");
    // The audit line names the same trace and request.
    let audit = log_line_for(&envoy, &allowed_rid);
    assert_eq!(audit["svcauth"], "allow");
    assert_eq!(audit["trace_id"], INCOMING_TRACE);

    // 2. Allowed without any trace context: the filter's traceparent does not start the span
    //    (Envoy's tracer started it before the filter ran) and the router replaces it upstream;
    //    the audit line reports the trace id the upstream saw, which is the span's.
    let r = http(
        envoy.port(),
        "GET",
        "/orders/2",
        &[("authorization", &format!("Bearer {good}"))],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let seen = upstream.last_request().unwrap();
    let rid = seen.header("x-request-id").unwrap().to_string();
    let span = span_for(&otlp, &rid);
    assert_eq!(span.parent_span_id, "", "a root span: {span:#?}");
    let up_tp = seen.header_all("traceparent");
    assert_eq!(up_tp.len(), 1, "{up_tp:?}");
    assert!(up_tp[0].contains(&span.trace_id), "{up_tp:?} vs {span:#?}");
    let audit = log_line_for(&envoy, &rid);
    assert_eq!(audit["trace_id"], span.trace_id.as_str(), "{audit}");

    // 3. Denied (insufficient scope), with a traceparent: 403 span, reason tag, log ids match.
    let r = http(
        envoy.port(),
        "GET",
        "/orders/3",
        &[
            ("authorization", &format!("Bearer {no_scope}")),
            (
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            ),
        ],
    );
    assert_eq!(r.status, 403, "{}", r.body);
    let rid = r.json()["request_id"].as_str().unwrap().to_string();
    let line = log_line_for(&envoy, &rid);
    assert_eq!(line["svcauth"], "deny");
    assert_eq!(line["reason"], "insufficient_scope");
    let span = span_for(&otlp, line["request_id"].as_str().unwrap());
    assert_eq!(span.http_status(), Some(403), "{span:#?}");
    assert_eq!(span.attr("auth.decision"), Some("deny"), "{span:#?}");
    assert_eq!(
        span.attr("auth.reason"),
        Some("insufficient_scope"),
        "{span:#?}"
    );
    assert_eq!(span.attr("auth.service"), Some("billing"), "{span:#?}");
    assert_eq!(line["trace_id"], span.trace_id.as_str());
    assert_eq!(span.trace_id, "0af7651916cd43dd8448eb211c80319c");

    // 4. Denied without a token and without trace context: 401 span with the reason; the log
    //    line has no trace id (the span's is not visible to the filter) but the request id
    //    that the span carries as guid:x-request-id.
    let r = http(envoy.port(), "GET", "/orders/4", &[]);
    assert_eq!(r.status, 401, "{}", r.body);
    let rid = r.json()["request_id"].as_str().unwrap().to_string();
    let line = log_line_for(&envoy, &rid);
    assert_eq!(line["reason"], "token_missing");
    assert_eq!(line["trace_id"], Value::Null, "{line}");
    let span = span_for(&otlp, &rid);
    assert_eq!(span.http_status(), Some(401), "{span:#?}");
    assert_eq!(span.attr("auth.decision"), Some("deny"));
    assert_eq!(span.attr("auth.reason"), Some("token_missing"));
    assert_eq!(span.attr("auth.service"), None);

    // 5. A client cannot forge the tags: they are filter state, and its x-svcauth-* headers are
    //    stripped anyway.
    let r = http(
        envoy.port(),
        "GET",
        "/health",
        &[
            ("x-svcauth-decision", "allow"),
            ("x-svcauth-service", "admin-forged"),
            ("x-svcauth-reason", "forged"),
        ],
    );
    assert_eq!(r.status, 200);
    let rid = upstream
        .last_request()
        .unwrap()
        .header("x-request-id")
        .unwrap()
        .to_string();
    let span = span_for(&otlp, &rid);
    assert_eq!(span.attr("auth.service"), Some("anonymous"), "{span:#?}");
    assert_eq!(span.attr("auth.reason"), None, "{span:#?}");

    // No span attribute and no log line contains a token (nor any part of its signature).
    let log = envoy.log();
    for token in [&good, &no_scope] {
        let sig = token.rsplit('.').next().unwrap();
        assert!(!log.contains(sig.get(..20).unwrap()), "token in the log");
        for s in otlp.spans() {
            for (k, v) in &s.attributes {
                assert!(
                    !v.contains(sig.get(..20).unwrap()),
                    "token in span attribute {k}"
                );
            }
        }
    }
    for s in otlp.spans() {
        assert!(
            !s.attributes.keys().any(|k| k.contains("authorization")),
            "{s:#?}"
        );
    }
}

/// The request headers svcauth sets only with `"decision_tags": "request_headers"`.
const TAG_HEADERS: [&str; 4] = [
    "x-svcauth-decision",
    "x-svcauth-service",
    "x-svcauth-reason",
    "x-svcauth-provider",
];

/// The span tags of the decision and the access-log fields that carry the same values.
const DECISION_FIELDS: [(&str, &str); 4] = [
    ("auth.decision", "decision"),
    ("auth.service", "service"),
    ("auth.reason", "reason"),
    ("auth.provider", "provider"),
];

/// The decision tags of one span (or access log line), in [`DECISION_FIELDS`] order.
type Tags<'a> = [Option<&'a str>; 4];

/// [`Tags`] that own their text.
type OwnedTags = [Option<String>; 4];

/// `envoy/demo.yaml`'s connection manager.
fn demo_hcm() -> Value {
    let path = svcauth_tests::repo_root().join("envoy/demo.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let doc: Value = serde_norway::from_str(&text).unwrap();
    doc["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
        .clone()
}

/// The JSON access log lines on Envoy's stdout (where `envoy/demo.yaml`'s access log writes).
fn access_lines(envoy: &Envoy) -> Vec<Value> {
    std::fs::read_to_string(envoy.dir().join("stdout.txt"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v.get("request_id").is_some())
        .collect()
}

/// Waits for the access log line whose `request_id` is `id`.
fn access_line_for(envoy: &Envoy, id: &str) -> Value {
    let mut found = None;
    svcauth_tests::wait_until(WAIT, || {
        found = access_lines(envoy)
            .into_iter()
            .find(|v| v["request_id"] == id);
        found.is_some()
    });
    found.unwrap_or_else(|| {
        panic!(
            "no access log line with request_id {id}; stdout:\n{}",
            std::fs::read_to_string(envoy.dir().join("stdout.txt")).unwrap_or_default()
        )
    })
}

/// A text field of an access log line; `null` (an unset filter state) and absence are `None`.
fn field<'a>(line: &'a Value, name: &str) -> Option<&'a str> {
    match line.get(name) {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_str()
                .unwrap_or_else(|| panic!("{name} is not text: {line}")),
        ),
    }
}

/// The decision tags of a span, in [`DECISION_FIELDS`] order.
fn span_tags(span: &SpanRecord) -> Tags<'_> {
    DECISION_FIELDS.map(|(tag, _)| span.attr(tag))
}

#[test]
fn the_access_log_joins_every_decision_to_its_span_without_a_traceparent() {
    // envoy/demo.yaml's tags are the ones the other tests here use, and its access log is the
    // one this test runs.
    let hcm = demo_hcm();
    let tags: Value = serde_norway::from_str(FILTER_STATE_TAGS).unwrap();
    assert_eq!(
        hcm["tracing"]["custom_tags"], tags["custom_tags"],
        "envoy/demo.yaml custom_tags"
    );
    let access_log = &hcm["access_log"];
    assert!(access_log.is_array(), "envoy/demo.yaml has an access_log");
    let format = &access_log[0]["typed_config"]["log_format"]["json_format"];
    assert_eq!(format["trace_id"], "%TRACE_ID%");
    assert_eq!(format["request_id"], "%REQ(X-REQUEST-ID)%");
    assert_eq!(format["status"], "%RESPONSE_CODE%");

    let otlp = OtlpReceiver::start();
    let upstream = EchoUpstream::start();
    let opts = traced_opts(&upstream, &otlp).hcm_extra(&format!("access_log: {access_log}\n"));
    let envoy = Envoy::start_plugin(&fixtures::config_json().to_string(), &opts);
    let t = now();
    let good = fixtures::token(Fixture::Ec256, &fixtures::claims_with(t, json!({})));
    let no_scope = fixtures::token(
        Fixture::Ec256,
        &fixtures::claims_with(t, json!({"sub": "billing", "scope": "billing:read"})),
    );
    let bearer = |tok: &str| format!("Bearer {tok}");

    // (request, status, the tags in DECISION_FIELDS order), none with a traceparent.
    let cases: [(&str, Option<String>, u16, Tags); 3] = [
        (
            "/orders/1",
            Some(bearer(&good)),
            200,
            [
                Some("allow"),
                Some("orders-service"),
                None,
                Some("internal"),
            ],
        ),
        (
            "/orders/2",
            None,
            401,
            [Some("deny"), None, Some("token_missing"), None],
        ),
        (
            "/orders/3",
            Some(bearer(&no_scope)),
            403,
            [
                Some("deny"),
                Some("billing"),
                Some("insufficient_scope"),
                Some("internal"),
            ],
        ),
    ];
    for (path, auth, status, want) in &cases {
        upstream.clear();
        let headers: Vec<(&str, &str)> = auth
            .as_deref()
            .map(|a| vec![("authorization", a)])
            .unwrap_or_default();
        let r = http(envoy.port(), "GET", path, &headers);
        assert_eq!(r.status, *status, "{path}: {}", r.body);
        let rid = if *status == 200 {
            let seen = upstream.last_request().unwrap();
            // The tags are filter state: none of them reaches the upstream as a header.
            for h in TAG_HEADERS {
                assert_eq!(seen.header(h), None, "{path}: {h} reached the upstream");
            }
            seen.header("x-request-id").unwrap().to_string()
        } else {
            // svcauth's own denial line cannot know the span's trace id ...
            let rid = r.json()["request_id"].as_str().unwrap().to_string();
            let denial = log_line_for(&envoy, &rid);
            assert_eq!(denial["trace_id"], Value::Null, "{denial}");
            rid
        };
        let span = span_for(&otlp, &rid);
        assert_eq!(span.parent_span_id, "", "{path}: a root span: {span:#?}");
        assert_eq!(span.http_status(), Some(*status), "{path}: {span:#?}");
        assert_eq!(&span_tags(&span), want, "{path}: {span:#?}");
        // ... the access log's line for the same request does, with the same decision.
        let line = access_line_for(&envoy, &rid);
        assert_eq!(
            line["trace_id"],
            span.trace_id.as_str(),
            "{path}: {line} vs {span:#?}"
        );
        assert_eq!(line["status"], *status, "{path}: {line}");
        let fields = DECISION_FIELDS.map(|(_, name)| field(&line, name));
        assert_eq!(&fields, want, "{path}: {line}");
    }
    // Neither the access log nor the spans hold a token.
    let out = std::fs::read_to_string(envoy.dir().join("stdout.txt")).unwrap();
    for token in [&good, &no_scope] {
        let sig = token.rsplit('.').next().unwrap();
        assert!(
            !out.contains(sig.get(..20).unwrap()),
            "token in the access log"
        );
    }
}

/// The decision tags of five requests (allowed, open route with forged tag headers, no token,
/// missing scope, bad signature) through an Envoy whose svcauth has `decision_tags` (absent: the
/// default) and whose tracer reads `custom_tags`; and the tag headers the upstream got on the
/// allowed one.
fn tags_of_five_requests(
    decision_tags: Option<&str>,
    custom_tags: &str,
) -> (Vec<OwnedTags>, Vec<(String, String)>) {
    let otlp = OtlpReceiver::start();
    let upstream = EchoUpstream::start();
    let mut config = fixtures::config_json();
    if let Some(mode) = decision_tags {
        config["decision_tags"] = json!(mode);
    }
    let envoy = Envoy::start_plugin(
        &config.to_string(),
        &traced_opts_with(&upstream, &otlp, custom_tags),
    );
    let t = now();
    let good = fixtures::token(Fixture::Ec256, &fixtures::claims_with(t, json!({})));
    let no_scope = fixtures::token(
        Fixture::Ec256,
        &fixtures::claims_with(t, json!({"sub": "billing", "scope": "billing:read"})),
    );
    // A key in no JWK Set, under the fixture's kid: the signature does not verify.
    let stranger = SigningKey::generate(Alg::ES256).unwrap();
    let mut header = Map::new();
    header.insert("kid".into(), Fixture::Ec256.kid().into());
    let forged = sign(
        &stranger,
        Alg::ES256,
        &header,
        &fixtures::claims_with(t, json!({})),
    )
    .unwrap();
    let forged_tags = [
        ("x-svcauth-decision", "allow"),
        ("x-svcauth-service", "admin-forged"),
        ("x-svcauth-reason", "forged"),
        ("x-svcauth-provider", "forged"),
    ];
    let mut tags = Vec::new();
    let mut leaked = Vec::new();
    let requests: [(&str, Option<&str>, u16); 5] = [
        ("/orders/1", Some(&good), 200),
        ("/health", None, 200),
        ("/orders/2", None, 401),
        ("/orders/3", Some(&no_scope), 403),
        ("/orders/4", Some(&forged), 401),
    ];
    for (path, token, status) in requests {
        upstream.clear();
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers: Vec<(&str, &str)> = forged_tags.to_vec();
        if let Some(a) = &auth {
            headers.push(("authorization", a));
        }
        let r = http(envoy.port(), "GET", path, &headers);
        assert_eq!(r.status, status, "{path}: {}", r.body);
        let rid = if status == 200 {
            let seen = upstream.last_request().unwrap();
            if path == "/orders/1" {
                for h in TAG_HEADERS {
                    for v in seen.header_all(h) {
                        leaked.push((h.to_string(), v.to_string()));
                    }
                }
            }
            seen.header("x-request-id").unwrap().to_string()
        } else {
            r.json()["request_id"].as_str().unwrap().to_string()
        };
        let span = span_for(&otlp, &rid);
        tags.push(span_tags(&span).map(|v| v.map(str::to_string)));
    }
    (tags, leaked)
}

#[test]
fn request_header_tags_give_the_same_span_tags_and_reach_the_upstream() {
    let some = |v: &str| Some(v.to_string());
    let want: Vec<OwnedTags> = vec![
        [
            some("allow"),
            some("orders-service"),
            None,
            some("internal"),
        ],
        [some("allow"), some("anonymous"), None, None],
        [some("deny"), None, some("token_missing"), None],
        [
            some("deny"),
            some("billing"),
            some("insufficient_scope"),
            some("internal"),
        ],
        // A signature that does not verify names no caller.
        [some("deny"), None, some("bad_signature"), some("internal")],
    ];
    let (state, state_leaked) = tags_of_five_requests(None, FILTER_STATE_TAGS);
    assert_eq!(state, want, "decision_tags: filter_state (the default)");
    assert_eq!(state_leaked, Vec::<(String, String)>::new());
    let (headers, headers_leaked) = tags_of_five_requests(Some("request_headers"), HEADER_TAGS);
    assert_eq!(headers, want, "decision_tags: request_headers");
    // With request headers the tags also reach the upstream of an allowed request (the
    // filter's values: the client's copies are stripped).
    let pair = |h: &str, v: &str| (h.to_string(), v.to_string());
    assert_eq!(
        headers_leaked,
        [
            pair("x-svcauth-decision", "allow"),
            pair("x-svcauth-service", "orders-service"),
            pair("x-svcauth-provider", "internal"),
        ]
    );
}

#[test]
fn without_generate_request_id_the_filter_adds_the_request_id_the_span_carries() {
    let otlp = OtlpReceiver::start();
    let upstream = EchoUpstream::start();
    let opts = traced_opts(&upstream, &otlp).hcm_extra("generate_request_id: false\n");
    let envoy = Envoy::start_plugin(&fixtures::config_json().to_string(), &opts);

    // Denied: the filter's x-request-id is in the reply, the log and the span.
    let r = http(envoy.port(), "GET", "/orders/1", &[]);
    assert_eq!(r.status, 401, "{}", r.body);
    let rid = r.json()["request_id"].as_str().unwrap().to_string();
    assert_eq!(rid.len(), 32, "{rid}");
    let line = log_line_for(&envoy, &rid);
    assert_eq!(line["reason"], "token_missing");
    let span = span_for(&otlp, &rid);
    assert_eq!(span.http_status(), Some(401));

    // Allowed: the upstream gets the filter's x-request-id; existing ones are never replaced.
    let r = http(
        envoy.port(),
        "GET",
        "/health",
        &[("x-request-id", "client-rid-1")],
    );
    assert_eq!(r.status, 200);
    let seen = upstream.last_request().unwrap();
    assert_eq!(seen.header_all("x-request-id"), ["client-rid-1"]);
    let r = http(envoy.port(), "GET", "/health", &[]);
    assert_eq!(r.status, 200);
    let seen = upstream.last_request().unwrap();
    let rid = seen.header("x-request-id").unwrap().to_string();
    assert_eq!(rid.len(), 32);
    span_for(&otlp, &rid);
}

#[test]
fn without_a_tracer_the_filter_adds_a_traceparent_and_keeps_existing_ones() {
    let upstream = EchoUpstream::start();
    let opts = Opts::new(upstream.port()).env(fixtures::HMAC_ENV, fixtures::HMAC_SECRET);
    let config = json!({
        "providers": fixtures::config_json()["providers"],
        "rules": fixtures::config_json()["rules"],
        "log": {"allowed": true},
    });
    let envoy = Envoy::start_plugin(&config.to_string(), &opts);
    let good = fixtures::token(Fixture::Ec256, &fixtures::claims_with(now(), json!({})));

    // No traceparent: a fresh one goes upstream, and the audit line names its trace id.
    let r = http(
        envoy.port(),
        "GET",
        "/orders/1",
        &[("authorization", &format!("Bearer {good}"))],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let seen = upstream.last_request().unwrap();
    let tps = seen.header_all("traceparent");
    assert_eq!(tps.len(), 1, "{tps:?}");
    let trace = svcauth_filter::logline::trace_id_of(tps[0])
        .unwrap_or_else(|| panic!("not a W3C traceparent: {}", tps[0]))
        .to_string();
    let rid = seen.header("x-request-id").unwrap().to_string();
    let audit = log_line_for(&envoy, &rid);
    assert_eq!(audit["trace_id"], trace.as_str(), "{audit}");

    // A second call gets other ids.
    http(
        envoy.port(),
        "GET",
        "/orders/2",
        &[("authorization", &format!("Bearer {good}"))],
    );
    let again = upstream.last_request().unwrap();
    assert_ne!(again.header("traceparent").unwrap(), tps[0]);

    // An existing traceparent (and tracestate) is passed on untouched.
    http(
        envoy.port(),
        "GET",
        "/health",
        &[("traceparent", INCOMING_TRACEPARENT), ("tracestate", "k=v")],
    );
    let seen = upstream.last_request().unwrap();
    assert_eq!(seen.header_all("traceparent"), [INCOMING_TRACEPARENT]);
    assert_eq!(seen.header("tracestate"), Some("k=v"));
}

/// The value of `name` in Prometheus text (`name value` or `name{…} value`).
fn prometheus_value(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (n, v) = l.rsplit_once(' ')?;
        let n = n.split('{').next()?;
        (n == name).then(|| v.trim().parse().ok()).flatten()
    })
}

#[test]
fn stats_count_every_decision_exactly() {
    let upstream = EchoUpstream::start();
    let opts = Opts::new(upstream.port()).env(fixtures::HMAC_ENV, fixtures::HMAC_SECRET);
    let envoy = Envoy::start_plugin(&fixtures::config_json().to_string(), &opts);
    let t = now();
    let good = fixtures::token(Fixture::Ec256, &fixtures::claims_with(t, json!({})));
    let other = fixtures::token(
        Fixture::Ec256,
        &fixtures::claims_with(t, json!({"sub": "x"})),
    );
    let no_scope = fixtures::token(
        Fixture::Ec256,
        &fixtures::claims_with(t, json!({"scope": "billing:read"})),
    );
    let expired = fixtures::token(
        Fixture::Ec256,
        &fixtures::claims_with(t, json!({"iat": t - 7200, "exp": t - 3600})),
    );
    let bearer = |tok: &str| format!("Bearer {tok}");
    let call = |path: &str, tok: Option<&str>| {
        let auth = tok.map(bearer);
        let headers: Vec<(&str, &str)> = auth
            .as_deref()
            .map(|a| vec![("authorization", a)])
            .unwrap_or_default();
        http(envoy.port(), "GET", path, &headers).status
    };
    // 3 allowed with a token (1 miss + 2 hits on `good`, 1 miss on `other`) → 4 allowed;
    // 1 anonymous allowed (no cache lookup) → 5 allowed.
    assert_eq!(call("/orders", Some(&good)), 200);
    assert_eq!(call("/orders", Some(&good)), 200);
    assert_eq!(call("/orders", Some(&good)), 200);
    assert_eq!(call("/orders", Some(&other)), 200);
    assert_eq!(call("/health", None), 200);
    // Denied: 2 missing, 1 malformed, 1 expired, 2 insufficient scope (1 miss + 1 hit).
    assert_eq!(call("/orders", None), 401);
    assert_eq!(call("/orders", None), 401);
    assert_eq!(call("/orders", Some("not-a-jwt")), 401);
    assert_eq!(call("/orders", Some(&expired)), 401);
    assert_eq!(call("/orders", Some(&no_scope)), 403);
    assert_eq!(call("/orders", Some(&no_scope)), 403);

    let expect = [
        ("allowed", 5),
        ("denied", 6),
        ("denied.token_missing", 2),
        ("denied.token_malformed", 1),
        ("denied.token_expired", 1),
        ("denied.insufficient_scope", 2),
        ("denied.bad_signature", 0),
        ("cache_hit", 3),
        ("cache_miss", 5),
    ];
    envoy.settle_counters();
    let stats = envoy.stats();
    let prom = envoy.admin("/stats/prometheus");
    assert_eq!(prom.status, 200);
    let mut report = String::new();
    for (name, want) in expect {
        let full = format!("wasmcustom.svcauth.{name}");
        let got = envoy.stat(&full);
        // Envoy lists wasm counters without the `wasmcustom` namespace and `envoy_` prefix.
        let prom_name = format!("svcauth_{}", name.replace('.', "_"));
        let got_prom = prometheus_value(&prom.body, &prom_name);
        if got != Some(want) || got_prom != Some(want) {
            report.push_str(&format!(
                "{full}: want {want}, /stats {got:?}, /stats/prometheus {prom_name} {got_prom:?}\n"
            ));
        }
    }
    assert!(
        report.is_empty(),
        "{report}\n/stats (svcauth):\n{}\n/stats/prometheus (svcauth):\n{}",
        stats
            .lines()
            .filter(|l| l.contains("svcauth"))
            .collect::<Vec<_>>()
            .join("\n"),
        prom.body
            .lines()
            .filter(|l| l.contains("svcauth"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}
