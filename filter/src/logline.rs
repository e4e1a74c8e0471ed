//! One structured JSON line per denial (and, in audit mode, per allowed call).
//!
//! Never the token, never an `Authorization` value: only the token's short hash. Request data
//! (method, path) is length-bounded and the query string is dropped, since queries carry secrets.

use serde_json::{json, Map, Value};

use crate::config::Config;
use crate::decide::{header, Denial};
use crate::verify::Verified;

const MAX_FIELD: usize = 256;

/// What the log needs from the request.
pub struct RequestFacts<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub request_id: &'a str,
    /// The trace id from the request's `traceparent`, if well-formed. For a denial this is the
    /// traceparent the request came with: Envoy's tracer continues that trace, so it is the
    /// exported span's trace id. Without one, Envoy starts its span (with its own trace id)
    /// before any filter runs and the filter cannot see that id: the log then has no trace id,
    /// and `request_id` (the span's `guid:x-request-id` tag) finds the span.
    pub trace_id: Option<&'a str>,
}

impl<'a> RequestFacts<'a> {
    /// Reads the facts from request headers.
    pub fn from_headers<K: AsRef<str>, V: AsRef<str>>(headers: &'a [(K, V)]) -> RequestFacts<'a> {
        RequestFacts {
            method: header(headers, ":method").unwrap_or_default(),
            path: header(headers, ":path").unwrap_or_default(),
            request_id: header(headers, "x-request-id").unwrap_or_default(),
            trace_id: header(headers, "traceparent").and_then(trace_id_of),
        }
    }
}

/// The trace id of a W3C `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`), if well-formed.
pub fn trace_id_of(traceparent: &str) -> Option<&str> {
    let mut parts = traceparent.trim().split('-');
    let (Some(ver), Some(tid), Some(pid), Some(flags)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let ok = hex(ver, 2)
        && ver != "ff"
        && hex(tid, 32)
        && hex(pid, 16)
        && hex(flags, 2)
        && tid != "00000000000000000000000000000000"
        && pid != "0000000000000000";
    ok.then_some(tid)
}

/// A request path for a log line: without its query or fragment (they carry secrets), bounded.
fn path_field(path: &str) -> &str {
    bounded(path.split(['?', '#']).next().unwrap_or_default())
}

/// At most `MAX_FIELD` bytes of `s`, cut on a character boundary.
fn bounded(s: &str) -> &str {
    if s.len() <= MAX_FIELD {
        return s;
    }
    let mut end = MAX_FIELD;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default()
}

/// The denial line: `{"svcauth":"deny","reason":…,"status":…,…}`.
pub fn denial(config: &Config, d: &Denial, req: &RequestFacts<'_>) -> String {
    let mut m = Map::new();
    m.insert("svcauth".into(), "deny".into());
    m.insert("reason".into(), d.reason.code().into());
    m.insert("status".into(), d.reason.status().into());
    let provider = d
        .provider
        .and_then(|p| config.providers.get(p))
        .map(|p| p.name.as_str());
    m.insert("provider".into(), provider.map_or(Value::Null, Into::into));
    m.insert(
        "subject".into(),
        d.subject
            .as_deref()
            .map_or(Value::Null, |s| bounded(s).into()),
    );
    // What a token claimed before its signature verified: labelled as such, never `subject`.
    if let Some(s) = &d.unverified_subject {
        m.insert("unverified_subject".into(), bounded(s).into());
    }
    m.insert("method".into(), bounded(req.method).into());
    m.insert("path".into(), path_field(req.path).into());
    m.insert("request_id".into(), bounded(req.request_id).into());
    m.insert(
        "trace_id".into(),
        req.trace_id.map_or(Value::Null, Into::into),
    );
    m.insert("rule".into(), d.rule.map_or(Value::Null, Into::into));
    m.insert(
        "token_sha256".into(),
        d.token_hash.as_deref().map_or(Value::Null, Into::into),
    );
    Value::Object(m).to_string()
}

/// The audit line for an allowed call with a verified caller, as a JSON value: the adapter
/// completes it when the request ends (with the trace id the upstream was sent) and writes it.
pub fn allowed(
    config: &Config,
    v: &Verified,
    rule: Option<usize>,
    req: &RequestFacts<'_>,
) -> Value {
    let provider = config.providers.get(v.provider).map(|p| p.name.as_str());
    let claims: Map<String, Value> = v
        .log_claims
        .iter()
        .map(|(k, val)| (k.clone(), Value::from(bounded(val))))
        .collect();
    json!({
        "svcauth": "allow",
        "provider": provider,
        "subject": bounded(&v.subject),
        "method": bounded(req.method),
        "path": path_field(req.path),
        "request_id": bounded(req.request_id),
        "trace_id": req.trace_id,
        "rule": rule,
        "claims": claims,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_traceparent_gives_its_trace_id() {
        assert_eq!(
            trace_id_of("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        for bad in [
            "",
            "00-xyz-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(trace_id_of(bad), None, "{bad}");
        }
    }

    #[test]
    fn logged_paths_lose_their_query_and_are_bounded() {
        assert_eq!(path_field("/a?token=secret"), "/a");
        assert_eq!(path_field("/a#frag"), "/a");
        assert_eq!(bounded(&"é".repeat(300)).len(), 256);
    }

    #[test]
    fn other_fields_keep_their_question_marks_and_hashes() {
        assert_eq!(bounded("svc#2?"), "svc#2?");
    }
}
