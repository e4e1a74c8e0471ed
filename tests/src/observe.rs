//! What the tests read back from a running Envoy: svcauth's JSON log lines, the spans an
//! [`OtlpReceiver`] got, and the OpenTelemetry `tracing:` section that makes Envoy send them.
//! Uses the harness ([`Envoy`], [`OtlpReceiver`], [`crate::wait_until`]).

use std::time::Duration;

use serde_json::Value;

use crate::{Envoy, OtlpReceiver, SpanRecord};

/// How long the helpers below wait for a log line or a span.
pub const OBSERVE_WAIT: Duration = Duration::from_secs(15);

/// Span tags read from the filter state svcauth sets (`decision_tags` default).
pub const FILTER_STATE_TAGS: &str = r#"custom_tags:
- {tag: auth.decision, value: "%FILTER_STATE(wasm.svcauth_decision:PLAIN)%"}
- {tag: auth.service, value: "%FILTER_STATE(wasm.svcauth_service:PLAIN)%"}
- {tag: auth.reason, value: "%FILTER_STATE(wasm.svcauth_reason:PLAIN)%"}
- {tag: auth.provider, value: "%FILTER_STATE(wasm.svcauth_provider:PLAIN)%"}
"#;

/// The connection manager's `tracing:` section, as in `envoy/demo.yaml`: every request
/// sampled, spans to cluster `jaeger` (OTLP/gRPC) as `service`, with `custom_tags` (a YAML
/// `custom_tags:` list, e.g. [`FILTER_STATE_TAGS`]).
pub fn tracing_yaml(service: &str, custom_tags: &str) -> String {
    format!(
        r#"random_sampling: {{value: 100}}
provider:
  name: envoy.tracers.opentelemetry
  typed_config:
    "@type": type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig
    grpc_service: {{envoy_grpc: {{cluster_name: jaeger}}, timeout: 2s}}
    service_name: {service}
{custom_tags}"#
    )
}

/// The svcauth JSON log lines (`{"svcauth":…}`) in Envoy's log, in order.
pub fn log_lines(envoy: &Envoy) -> Vec<Value> {
    envoy
        .log()
        .lines()
        .filter_map(|l| l.find("{\"").map(|i| &l[i..]))
        .filter_map(|j| serde_json::from_str::<Value>(j).ok())
        .filter(|v| v.get("svcauth").is_some())
        .collect()
}

/// Waits (at most [`OBSERVE_WAIT`]) for the svcauth log line whose `request_id` is `id`.
pub fn log_line_for(envoy: &Envoy, id: &str) -> Value {
    let mut found = None;
    crate::wait_until(OBSERVE_WAIT, || {
        found = log_lines(envoy).into_iter().find(|v| v["request_id"] == id);
        found.is_some()
    });
    found.unwrap_or_else(|| panic!("no svcauth log line with request_id {id}:\n{}", envoy.log()))
}

/// Waits (at most [`OBSERVE_WAIT`]) for the span tagged `guid:x-request-id` = `id`.
pub fn span_for(otlp: &OtlpReceiver, id: &str) -> SpanRecord {
    otlp.wait_for(OBSERVE_WAIT, |s| s.attr("guid:x-request-id") == Some(id))
        .unwrap_or_else(|| {
            panic!(
                "no span tagged guid:x-request-id={id}; received: {:#?}",
                otlp.spans()
            )
        })
}
