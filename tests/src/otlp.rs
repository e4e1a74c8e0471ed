//! A small OTLP/gRPC trace receiver: what Envoy's `envoy.tracers.opentelemetry` exports to.
//!
//! It serves `opentelemetry.proto.collector.trace.v1.TraceService/Export` on a loopback port from
//! a background thread (its own tokio runtime) and keeps every span it receives as a
//! [`SpanRecord`]: ids as lower-case hex, name, the span status, the resource's `service.name`
//! and the attributes as text. Tests read them with [`OtlpReceiver::spans`] and
//! [`OtlpReceiver::wait_for`]; `src/bin/otlp-receiver.rs` prints them for the demo.
//! Stopped (and its thread joined) on drop.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};

use crate::grpc_thread::ServerThread;

/// One received span, flattened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpanRecord {
    /// 32 lower-case hex digits.
    pub trace_id: String,
    /// 16 lower-case hex digits.
    pub span_id: String,
    /// 16 lower-case hex digits, or empty for a root span.
    pub parent_span_id: String,
    pub name: String,
    /// The resource's `service.name`, if any.
    pub service: Option<String>,
    /// OTLP `Status.code`: 0 unset, 1 ok, 2 error.
    pub status_code: i32,
    /// Attributes, values rendered as text (strings as they are, numbers and bools in decimal).
    pub attributes: BTreeMap<String, String>,
}

impl SpanRecord {
    /// The attribute `key` as text.
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }

    /// The HTTP status Envoy recorded (`http.status_code`, or the newer
    /// `http.response.status_code`).
    pub fn http_status(&self) -> Option<u16> {
        self.attr("http.status_code")
            .or_else(|| self.attr("http.response.status_code"))
            .and_then(|s| s.parse().ok())
    }

    /// One line for people: trace id, HTTP status, name and the `auth.*` tags, e.g.
    /// `trace=4bf9… status=403 span="ingress" auth.decision=deny auth.reason=insufficient_scope …`.
    pub fn summary(&self) -> String {
        let mut line = format!(
            "trace={} status={} span={:?}",
            self.trace_id,
            self.http_status()
                .map_or_else(|| "-".to_string(), |s| s.to_string()),
            self.name
        );
        for (k, v) in &self.attributes {
            if k.starts_with("auth.") || k == "guid:x-request-id" {
                line.push_str(&format!(" {k}={v}"));
            }
        }
        line
    }
}

/// Called for every span as it arrives (e.g. to print it).
pub type OnSpan = Box<dyn Fn(&SpanRecord) + Send + Sync>;

struct Collector {
    spans: Arc<Mutex<Vec<SpanRecord>>>,
    on_span: Option<OnSpan>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let records = flatten(request.into_inner());
        if let Some(f) = &self.on_span {
            for r in &records {
                f(r);
            }
        }
        self.spans
            .lock()
            .map_err(|_| tonic::Status::internal("poisoned"))?
            .extend(records);
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn text(v: Option<&AnyValue>) -> String {
    match v.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(any_value::Value::BytesValue(b)) => hex(b),
        Some(any_value::Value::ArrayValue(a)) => {
            let items: Vec<String> = a.values.iter().map(|v| text(Some(v))).collect();
            format!("[{}]", items.join(","))
        }
        Some(any_value::Value::KvlistValue(kv)) => {
            let items: Vec<String> = kv
                .values
                .iter()
                .map(|kv| format!("{}={}", kv.key, text(kv.value.as_ref())))
                .collect();
            format!("{{{}}}", items.join(","))
        }
        None => String::new(),
    }
}

fn attributes(kvs: &[KeyValue]) -> BTreeMap<String, String> {
    kvs.iter()
        .map(|kv| (kv.key.clone(), text(kv.value.as_ref())))
        .collect()
}

/// Every span of an export request, with its resource's `service.name`.
fn flatten(req: ExportTraceServiceRequest) -> Vec<SpanRecord> {
    let mut out = Vec::new();
    for rs in req.resource_spans {
        let service = rs
            .resource
            .as_ref()
            .and_then(|r| attributes(&r.attributes).remove("service.name"));
        for ss in rs.scope_spans {
            for span in ss.spans {
                out.push(SpanRecord {
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    name: span.name.clone(),
                    service: service.clone(),
                    status_code: span.status.as_ref().map_or(0, |s| s.code),
                    attributes: attributes(&span.attributes),
                });
            }
        }
    }
    out
}

/// A running receiver. Stops on drop.
pub struct OtlpReceiver {
    server: ServerThread,
    spans: Arc<Mutex<Vec<SpanRecord>>>,
}

impl OtlpReceiver {
    /// Starts on 127.0.0.1 with an ephemeral port. Panics if it cannot.
    pub fn start() -> OtlpReceiver {
        OtlpReceiver::start_on(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), None)
            .unwrap_or_else(|e| panic!("start OTLP receiver: {e}"))
    }

    /// Starts on `addr`, calling `on_span` (if any) for every span as it arrives.
    pub fn start_on(addr: SocketAddr, on_span: Option<OnSpan>) -> std::io::Result<OtlpReceiver> {
        let spans = Arc::new(Mutex::new(Vec::new()));
        let collector = Collector {
            spans: Arc::clone(&spans),
            on_span,
        };
        let server = ServerThread::start(addr, "otlp-receiver", |incoming, stopped| async move {
            let _ = tonic::transport::Server::builder()
                .add_service(TraceServiceServer::new(collector))
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = stopped.await;
                })
                .await;
        })?;
        Ok(OtlpReceiver { server, spans })
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.server.addr.port()
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr
    }

    /// Every span received so far, in arrival order.
    pub fn spans(&self) -> Vec<SpanRecord> {
        self.spans.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Polls (every 50 ms, at most `timeout`) until a received span satisfies `pred`; returns it.
    pub fn wait_for(
        &self,
        timeout: Duration,
        mut pred: impl FnMut(&SpanRecord) -> bool,
    ) -> Option<SpanRecord> {
        let mut found = None;
        crate::wait_until(timeout, || {
            found = self.spans().into_iter().find(|s| pred(s));
            found.is_some()
        });
        found
    }

    /// Polls until at least `n` spans arrived (or `timeout` passes); returns all received.
    pub fn wait_spans(&self, n: usize, timeout: Duration) -> Vec<SpanRecord> {
        crate::wait_until(timeout, || self.spans().len() >= n);
        self.spans()
    }
}
