//! The per-request context: read the request headers once, decide, apply.

use std::rc::Rc;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, LogLevel, MapType};

use super::root::Shared;
use super::{log, now_seconds};
use crate::cache::TokenCache;
use crate::config::{
    HEADER_SCOPES, HEADER_SERVICE, TAG_DECISION, TAG_PROVIDER, TAG_REASON, TAG_SERVICE,
};
use crate::decide::{self, Decision, Denial};
use crate::logline::{self, RequestFacts};
use crate::reason::{self, Reason};

pub struct Http {
    pub shared: Option<Rc<Shared>>,
}

impl Context for Http {}

fn set(name: &str, value: &str) {
    let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, name, Some(value));
}

fn remove(name: &str) {
    let _ = hostcalls::remove_map_value(MapType::HttpRequestHeaders, name);
}

/// Request headers as text. Values that are not UTF-8 are converted lossily: such a value can
/// never be a valid token, and the rest of the filter only compares and logs.
fn request_headers() -> Vec<(String, String)> {
    match hostcalls::get_map_bytes(MapType::HttpRequestHeaders) {
        Ok(pairs) => pairs
            .into_iter()
            .map(|(k, v)| {
                let v = String::from_utf8(v)
                    .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
                (k, v)
            })
            .collect(),
        Err(_) => Vec::new(),
    }
}

fn random_hex(bytes: usize) -> String {
    let mut buf = [0u8; 16];
    let slice = buf.get_mut(..bytes.min(16)).unwrap_or_default();
    if getrandom::getrandom(slice).is_err() {
        return String::new();
    }
    slice.iter().map(|b| format!("{b:02x}")).collect()
}

/// Adds `x-request-id` and a W3C `traceparent` when the request has none; never overwrites.
fn add_trace_headers(headers: &mut Vec<(String, String)>) {
    if decide::header(headers, "x-request-id").is_none() {
        let id = random_hex(16);
        if !id.is_empty() {
            set("x-request-id", &id);
            headers.push(("x-request-id".into(), id));
        }
    }
    if decide::header(headers, "traceparent").is_none() {
        let (trace, span) = (random_hex(16), random_hex(8));
        if trace.len() == 32 && span.len() == 16 {
            let tp = format!("00-{trace}-{span}-01");
            set("traceparent", &tp);
            headers.push(("traceparent".into(), tp));
        }
    }
}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Some(shared) = self.shared.clone() else {
            // No valid configuration: fail closed.
            let _ = hostcalls::send_http_response(
                503,
                vec![("content-type", "application/json")],
                Some(br#"{"error":"svcauth_not_configured"}"#),
            );
            return Action::Pause;
        };
        let config = &shared.config;
        let mut headers = request_headers();
        // Anti-spoofing first: identity and tag headers are ours alone.
        for name in &config.strip_headers {
            if decide::header(&headers, name).is_some() {
                remove(name);
            }
        }
        headers.retain(|(k, _)| !config.strip_headers.iter().any(|s| s == k));
        add_trace_headers(&mut headers);
        let Some(now) = now_seconds() else {
            log(
                LogLevel::Error,
                "svcauth: the host clock is unavailable; denying",
            );
            return self.deny(
                &shared,
                &headers,
                &Denial {
                    reason: Reason::KeysUnavailable,
                    rule: None,
                    provider: None,
                    subject: None,
                    token_hash: None,
                    cache_hit: None,
                },
            );
        };
        let decision = match shared.cache.try_borrow_mut() {
            Ok(mut cache) => decide::decide(config, &mut cache, &headers, now),
            Err(_) => decide::decide(config, &mut TokenCache::new(0), &headers, now),
        };
        match decision {
            Decision::Allow(a) => {
                shared.metrics.cache(a.cache_hit);
                super::metrics::Metrics::inc(shared.metrics.allowed);
                set(TAG_DECISION, "allow");
                match &a.identity {
                    Some(id) => {
                        set(HEADER_SERVICE, &id.subject);
                        set(HEADER_SCOPES, &id.scopes_joined);
                        for (h, v) in &id.claim_headers {
                            set(h, v);
                        }
                        set(TAG_SERVICE, &id.subject);
                        if let Some(p) = config.providers.get(id.provider) {
                            set(TAG_PROVIDER, &p.name);
                        }
                        if config.log_allowed {
                            let facts = RequestFacts::from_headers(&headers);
                            log(
                                LogLevel::Info,
                                &logline::allowed(config, id, a.rule, &facts),
                            );
                        }
                    }
                    None => set(TAG_SERVICE, "anonymous"),
                }
                if let Some(h) = &a.remove_header {
                    remove(h);
                }
                Action::Continue
            }
            Decision::Deny(d) => {
                shared.metrics.cache(d.cache_hit);
                self.deny(&shared, &headers, &d)
            }
        }
    }
}

impl Http {
    fn deny(&self, shared: &Shared, headers: &[(String, String)], d: &Denial) -> Action {
        let config = &shared.config;
        shared.metrics.denied_for(d.reason);
        set(TAG_DECISION, "deny");
        set(TAG_REASON, d.reason.code());
        if let Some(s) = &d.subject {
            set(TAG_SERVICE, s);
        }
        if let Some(p) = d.provider.and_then(|p| config.providers.get(p)) {
            set(TAG_PROVIDER, &p.name);
        }
        let facts = RequestFacts::from_headers(headers);
        log(LogLevel::Info, &logline::denial(config, d, &facts));
        let challenge = reason::www_authenticate(d.reason, decide::challenge(config, d.rule));
        let body = reason::body(d.reason, facts.request_id);
        let _ = hostcalls::send_http_response(
            d.reason.status(),
            vec![
                ("www-authenticate", challenge.as_str()),
                ("content-type", "application/json"),
                ("cache-control", "no-store"),
                ("x-svcauth-reason", d.reason.code()),
            ],
            Some(body.as_bytes()),
        );
        Action::Pause
    }
}
