//! Observability in a real Envoy: the request span that Envoy's OpenTelemetry tracer exports
//! over OTLP/gRPC (to the project's receiver on loopback) carries the auth decision as tags, its
//! ids match the denial log line, and neither holds the token. Plus the stats after a known mix
//! of calls, in `/stats` and `/stats/prometheus`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::Duration;

use serde_json::{json, Value};
use svcauth_filter::fixtures::{self, Fixture};
use svcauth_tests::{http, now, EchoUpstream, Envoy, Opts, OtlpReceiver, SpanRecord};

const WAIT: Duration = Duration::from_secs(15);
const INCOMING_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const INCOMING_TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// The connection manager's `tracing:` section, as in `envoy/demo.yaml`.
fn tracing_yaml(service: &str) -> String {
    format!(
        r#"random_sampling: {{value: 100}}
provider:
  name: envoy.tracers.opentelemetry
  typed_config:
    "@type": type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig
    grpc_service: {{envoy_grpc: {{cluster_name: jaeger}}, timeout: 2s}}
    service_name: {service}
custom_tags:
- {{tag: auth.decision, request_header: {{name: x-svcauth-decision}}}}
- {{tag: auth.service, request_header: {{name: x-svcauth-service}}}}
- {{tag: auth.reason, request_header: {{name: x-svcauth-reason}}}}
- {{tag: auth.provider, request_header: {{name: x-svcauth-provider}}}}
"#
    )
}

fn traced_opts(upstream: &EchoUpstream, otlp: &OtlpReceiver) -> Opts {
    Opts::new(upstream.port())
        .env(fixtures::HMAC_ENV, fixtures::HMAC_SECRET)
        .grpc_cluster("jaeger", otlp.port())
        .tracing(&tracing_yaml("svcauth-test"))
        // Export every span as soon as it ends (the default batches 5 spans or waits 5 s).
        .runtime("tracing.opentelemetry.min_flush_spans", "1")
        .runtime("tracing.opentelemetry.flush_interval_ms", "200")
}

/// The JSON svcauth log lines (`{"svcauth":…}`) in Envoy's log, in order.
fn log_lines(envoy: &Envoy) -> Vec<Value> {
    envoy
        .log()
        .lines()
        .filter_map(|l| l.find("{\"").map(|i| &l[i..]))
        .filter_map(|j| serde_json::from_str::<Value>(j).ok())
        .filter(|v| v.get("svcauth").is_some())
        .collect()
}

/// Waits for the svcauth log line whose `request_id` is `id`.
fn log_line_for(envoy: &Envoy, id: &str) -> Value {
    let mut found = None;
    svcauth_tests::wait_until(WAIT, || {
        found = log_lines(envoy).into_iter().find(|v| v["request_id"] == id);
        found.is_some()
    });
    found.unwrap_or_else(|| panic!("no svcauth log line with request_id {id}:\n{}", envoy.log()))
}

fn span_for_request(otlp: &OtlpReceiver, request_id: &str) -> SpanRecord {
    otlp.wait_for(WAIT, |s| s.attr("guid:x-request-id") == Some(request_id))
        .unwrap_or_else(|| {
            panic!(
                "no span tagged guid:x-request-id={request_id}; received: {:#?}",
                otlp.spans()
            )
        })
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
    let span = span_for_request(&otlp, &allowed_rid);
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
    let span = span_for_request(&otlp, &rid);
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
    let span = span_for_request(&otlp, line["request_id"].as_str().unwrap());
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
    let span = span_for_request(&otlp, &rid);
    assert_eq!(span.http_status(), Some(401), "{span:#?}");
    assert_eq!(span.attr("auth.decision"), Some("deny"));
    assert_eq!(span.attr("auth.reason"), Some("token_missing"));
    assert_eq!(span.attr("auth.service"), None);

    // 5. A client cannot forge the tags: its x-svcauth-* headers are stripped before tagging.
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
    let span = span_for_request(&otlp, &rid);
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
    let span = span_for_request(&otlp, &rid);
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
    span_for_request(&otlp, &rid);
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
