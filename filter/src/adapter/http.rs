//! The per-request context: read the request headers once, decide, apply.

use std::rc::Rc;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, LogLevel, MapType};

use super::jwks;
use super::root::{Shared, Waiter};
use super::{log, now_seconds};
use crate::cache::TokenCache;
use crate::config::{
    HEADER_SCOPES, HEADER_SERVICE, TAG_DECISION, TAG_PROVIDER, TAG_REASON, TAG_SERVICE,
};
use crate::decide::{self, Decision, Denial};
use crate::keys::KeyStore;
use crate::logline::{self, RequestFacts};
use crate::ratelimit::{self, Bucket};
use crate::reason::{self, Reason};

pub struct Http {
    pub shared: Option<Rc<Shared>>,
    /// This stream's context id (to be resumed by another context after a key refetch).
    id: u32,
    /// Audit mode: the line for this allowed call, written when the request ends (`on_log`).
    audit: Option<serde_json::Value>,
    /// A key refetch this request started: (call token, provider).
    fetch: Option<(u32, usize)>,
}

impl Http {
    pub fn new(shared: Option<Rc<Shared>>, id: u32) -> Http {
        Http {
            shared,
            id,
            audit: None,
            fetch: None,
        }
    }
}

impl Context for Http {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        _headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        let (Some(shared), Some((token, p))) = (self.shared.clone(), self.fetch.take()) else {
            return;
        };
        if token != token_id {
            return;
        }
        let now = now_seconds().unwrap_or(0);
        jwks::on_response(&shared, p, body_size, now);
        // Decides this request and every other one of this VM waiting for the same keys.
        resume_waiters(&shared, Some(p), now);
    }
}

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

/// Lower-case hex of `bytes` random bytes (at most 24; one host call); empty if the host has no
/// randomness.
fn random_hex(bytes: usize) -> String {
    let hex = |n: u8| char::from(if n < 10 { b'0' + n } else { b'a' + n - 10 });
    let mut buf = [0u8; 24];
    let slice = buf.get_mut(..bytes.min(24)).unwrap_or_default();
    if getrandom::fill(slice).is_err() {
        return String::new();
    }
    let mut out = String::with_capacity(slice.len() * 2);
    for b in slice.iter() {
        out.push(hex(b >> 4));
        out.push(hex(b & 15));
    }
    out
}

/// Adds an `x-request-id` when the request has none; never overwrites. (Envoy's connection
/// manager generates one before any filter runs unless `generate_request_id: false`; the tracer
/// reads it when the span ends, so the one added here becomes the span's `guid:x-request-id`.)
fn add_request_id(headers: &mut Vec<(String, String)>) {
    if decide::header(headers, "x-request-id").is_none() {
        let id = random_hex(16);
        if !id.is_empty() {
            set("x-request-id", &id);
            headers.push(("x-request-id".into(), id));
        }
    }
}

/// Adds a W3C `traceparent` with fresh random ids when the request has none; never overwrites.
/// Only on allowed requests: it is for the upstream. Envoy's tracer, when configured, has
/// already started the request's span (continuing an incoming traceparent, else with its own
/// trace id) and its router replaces this header with the span's context; without a tracer
/// this is the trace context the upstream receives.
fn add_traceparent(headers: &mut Vec<(String, String)>) {
    if decide::header(headers, "traceparent").is_none() {
        let ids = random_hex(24);
        if let (Some(trace), Some(span)) = (ids.get(..32), ids.get(32..48)) {
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
        headers.retain(|(k, _)| {
            let spoofed = config.strip_headers.iter().any(|s| s == k);
            if spoofed {
                remove(k);
            }
            !spoofed
        });
        add_request_id(&mut headers);
        let Some(now) = now_seconds() else {
            log(
                LogLevel::Error,
                "svcauth: the host clock is unavailable; denying",
            );
            return deny(
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
        let mut decision = decide_now(&shared, &headers, now);
        if let Decision::Deny(d) = &decision {
            if let Some((p, unknown_kid)) = missing_remote_key(&shared, d) {
                // Another worker may already have fetched the (new) keys.
                if jwks::sync(&shared, p) {
                    decision = decide_now(&shared, &headers, now);
                } else if unknown_kid {
                    if let Some(action) = self.wait_for_keys(&shared, p, headers.clone(), now) {
                        return action;
                    }
                }
            }
        }
        let (action, audit) = apply(&shared, &mut headers, decision);
        self.audit = audit;
        action
    }

    fn on_log(&mut self) {
        let Some(mut line) = self.audit.take() else {
            return;
        };
        // By now Envoy's router has replaced the traceparent with the span's context when a
        // tracer runs: log the trace id the upstream was sent, which is the exported span's.
        if let Ok(Some(tp)) = hostcalls::get_map_value(MapType::HttpRequestHeaders, "traceparent") {
            if let (Some(tid), Some(obj)) = (logline::trace_id_of(&tp), line.as_object_mut()) {
                obj.insert("trace_id".into(), tid.into());
            }
        }
        log(LogLevel::Info, &line.to_string());
    }
}

impl Http {
    /// Pauses this request until provider `p`'s keys are refetched: starts the refetch if the
    /// rate limit allows, or joins one of this VM already in flight. `None`: decide now.
    fn wait_for_keys(
        &mut self,
        shared: &Shared,
        p: usize,
        headers: Vec<(String, String)>,
        now: i64,
    ) -> Option<Action> {
        let deadline = if jwks::may_refetch(shared, p, now) {
            let token = jwks::start_fetch(shared, p, now)?;
            self.fetch = Some((token, p));
            jwks::in_flight_until(shared, p)
        } else {
            let until = jwks::in_flight_until(shared, p);
            if until <= now {
                return None;
            }
            until
        };
        shared.waiting.try_borrow_mut().ok()?.push(Waiter {
            context_id: self.id,
            provider: p,
            deadline,
            headers,
        });
        Some(Action::Pause)
    }
}

/// The provider whose fetched keys lack the token's `kid`, if that is why `d` denies.
/// For a denial because a remote provider's keys lack the token's `kid` (`true`) or are not
/// loaded in this VM yet (`false`): the provider.
fn missing_remote_key(shared: &Shared, d: &Denial) -> Option<(usize, bool)> {
    let p = d.provider?;
    jwks::remote(shared, p)?;
    match d.reason {
        Reason::UnknownKid => Some((p, true)),
        Reason::KeysUnavailable => Some((p, false)),
        _ => None,
    }
}

fn decide_now(shared: &Shared, headers: &[(String, String)], now: i64) -> Decision {
    let keys = shared.keys.try_borrow();
    let empty = KeyStore::default();
    let keys = keys.as_deref().unwrap_or(&empty);
    match shared.cache.try_borrow_mut() {
        Ok(mut cache) => decide::decide_with_keys(
            &shared.config,
            keys,
            &shared.crypto,
            &mut cache,
            headers,
            now,
        ),
        Err(_) => decide::decide_with_keys(
            &shared.config,
            keys,
            &shared.crypto,
            &mut TokenCache::new(0),
            headers,
            now,
        ),
    }
}

/// Decides, again, the waiting requests of provider `p` (all providers: `None`), each in its
/// own stream's context, and resumes or answers them.
pub fn resume_waiters(shared: &Shared, p: Option<usize>, now: i64) {
    let ready: Vec<Waiter> = match shared.waiting.try_borrow_mut() {
        Ok(mut w) => {
            let (ready, rest) = w.drain(..).partition(|x| p.is_none_or(|p| x.provider == p));
            *w = rest;
            ready
        }
        Err(_) => return,
    };
    resume(shared, ready, now);
}

/// Decides the waiting requests whose deadline passed on the keys there are.
pub fn expire_waiters(shared: &Shared, now: i64) {
    let ready: Vec<Waiter> = match shared.waiting.try_borrow_mut() {
        Ok(mut w) => {
            let (ready, rest) = w.drain(..).partition(|x| x.deadline <= now);
            *w = rest;
            ready
        }
        Err(_) => return,
    };
    resume(shared, ready, now);
}

fn resume(shared: &Shared, waiters: Vec<Waiter>, now: i64) {
    for mut w in waiters {
        // The stream may be gone (client hung up): then there is nothing to answer.
        if hostcalls::set_effective_context(w.context_id).is_err() {
            continue;
        }
        let decision = decide_now(shared, &w.headers, now);
        let (action, audit) = apply(shared, &mut w.headers, decision);
        if let Some(line) = audit {
            log(LogLevel::Info, &line.to_string());
        }
        if action == Action::Continue {
            let _ = hostcalls::resume_http_request();
        }
    }
}

/// Applies a decision to the current stream: identity headers and `Continue`, or the denial's
/// log line and local reply and `Pause`. Returns the audit line to write, if any.
fn apply(
    shared: &Shared,
    headers: &mut Vec<(String, String)>,
    decision: Decision,
) -> (Action, Option<serde_json::Value>) {
    let config = &shared.config;
    let mut audit = None;
    match decision {
        Decision::Allow(a) => {
            if let Some(id) = &a.identity {
                if let Some(retry) = rate_limited(shared, id) {
                    let d = Denial {
                        reason: Reason::RateLimited,
                        rule: a.rule,
                        provider: Some(id.provider),
                        subject: Some(id.subject.clone()),
                        token_hash: None,
                        cache_hit: a.cache_hit,
                    };
                    shared.metrics.cache(a.cache_hit);
                    return (deny_retry(shared, headers, &d, Some(retry)), None);
                }
            }
            add_traceparent(headers);
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
                    let rule_audit = a
                        .rule
                        .and_then(|r| config.rules.get(r))
                        .is_some_and(|r| r.audit);
                    if config.log_allowed || rule_audit {
                        let facts = RequestFacts::from_headers(headers);
                        audit = Some(logline::allowed(config, id, a.rule, &facts));
                    }
                }
                None => set(TAG_SERVICE, "anonymous"),
            }
            if let Some(h) = &a.remove_header {
                remove(h);
            }
            (Action::Continue, audit)
        }
        Decision::Deny(d) => {
            shared.metrics.cache(d.cache_hit);
            (deny(shared, headers, &d), None)
        }
    }
}

fn deny(shared: &Shared, headers: &[(String, String)], d: &Denial) -> Action {
    deny_retry(shared, headers, d, None)
}

/// Takes one request from the caller's token bucket (shared by every worker VM through shared
/// data, updated with compare-and-swap). `Some(seconds)` to wait when the bucket is empty.
fn rate_limited(shared: &Shared, id: &crate::verify::Verified) -> Option<u64> {
    let limit = ratelimit::limit_for(&shared.config.rate_limits, &id.subject)?;
    let now_ms = super::now_millis()?;
    let provider = shared
        .config
        .providers
        .get(id.provider)
        .map_or("", |p| p.name.as_str());
    let key = format!("svcauth.rl.{provider}.{}", id.subject);
    for _ in 0..8 {
        let (data, cas) = hostcalls::get_shared_data(&key).ok()?;
        let prev = data.as_deref().and_then(Bucket::decode);
        let (next, verdict) = match ratelimit::take(prev, limit, now_ms) {
            Ok(b) => (b, None),
            Err((b, retry)) => (b, Some(retry)),
        };
        match hostcalls::set_shared_data(&key, Some(next.encode().as_bytes()), cas) {
            Ok(()) => return verdict,
            Err(_) => continue, // another worker updated the bucket: read it again
        }
    }
    // Contended beyond reason: count the request against nothing rather than fail the call.
    None
}

fn deny_retry(
    shared: &Shared,
    headers: &[(String, String)],
    d: &Denial,
    retry_after: Option<u64>,
) -> Action {
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
    let retry = retry_after.map(|r| r.to_string());
    let mut reply = vec![
        ("content-type", "application/json"),
        ("cache-control", "no-store"),
        ("x-svcauth-reason", d.reason.code()),
    ];
    match &retry {
        Some(r) => reply.push(("retry-after", r.as_str())),
        None => reply.push(("www-authenticate", challenge.as_str())),
    }
    let _ = hostcalls::send_http_response(d.reason.status(), reply, Some(body.as_bytes()));
    Action::Pause
}
