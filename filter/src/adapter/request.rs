//! One request's walk through the adapter: read the headers once, strip what is ours, decide
//! (the core's `decide`), then apply the decision: identity headers and continue, or the
//! denial's log line and local reply. Also the requests that wait for a key refetch.
//!
//! Uses: `state`, `host`, `jwks`, `bucket`, `waiters`, and the core's `config`, `decide`,
//! `logline`, `ratelimit`, `reason`.

use std::borrow::Cow;
use std::rc::Rc;

use super::bucket;
use super::host::Level;
use super::jwks;
use super::signed::{self, AtHeaders};
use super::state::Shared;
use super::waiters::Waiter;
use crate::cache::TokenCache;
use crate::check::Check;
use crate::config::{HeaderFate, TagsAs};
use crate::contract::names::{
    HEADER_SCOPES, HEADER_SERVICE, PROP_DECISION, PROP_PROVIDER, PROP_REASON, PROP_SERVICE,
    TAG_DECISION, TAG_PROVIDER, TAG_REASON, TAG_SERVICE,
};
use crate::contract::reason::Reason;
use crate::decide::{self, Decision, Denial};
use crate::logline::{self, RequestFacts};
use crate::token::keys::KeyStore;
use crate::verify::Verified;

/// What the host should do with the request after a callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Continue,
    Pause,
}

/// A request's own state across callbacks.
#[derive(Debug, Default)]
pub struct Stream {
    /// This stream's context id (to be resumed by another context after a key refetch).
    pub id: u32,
    /// Audit mode: the line for this allowed call, written when the request ends.
    pub audit: Option<serde_json::Value>,
    /// A key refetch this stream dispatched itself (no refetch queue): (call token, provider).
    pub fetch: Option<(u32, usize)>,
    /// No body follows the headers (the headers callback's `end_of_stream`). `false`, the
    /// default, holds a request that must be signed for its body.
    pub headers_only: bool,
    /// Paused for a key refetch: its body and trailers wait too.
    pub waiting_keys: bool,
    /// Held for its body: its signature check is in the VM's `held` requests.
    pub held_for_body: bool,
}

/// The first callback of a request: its headers.
pub fn on_request_headers(shared: &Shared, stream: &mut Stream) -> Outcome {
    let host = &*shared.host;
    let raw = host.request_headers();
    // Anti-spoofing first: identity and tag headers are ours alone, in every spelling a backend
    // may fold into them; credentials we read go no further than this filter. (Filtered in
    // place: one vector per request.)
    let mut headers: Vec<(&str, Cow<'_, str>)> = raw.pairs();
    headers.retain(|(k, _)| match shared.config.header_fate(k) {
        HeaderFate::Keep => true,
        HeaderFate::Strip => {
            host.remove_request_header(k);
            false
        }
        HeaderFate::Consume => {
            host.remove_request_header(k);
            true
        }
    });
    let request_id;
    if decide::header(&headers, "x-request-id").is_none() {
        // Envoy's connection manager adds one unless `generate_request_id: false`.
        request_id = shared.ids.hex(32);
        host.set_request_header("x-request-id", &request_id);
        headers.push(("x-request-id", Cow::Borrowed(request_id.as_str())));
    }
    let mut now: Option<Option<i64>> = None;
    let mut clock = || *now.get_or_insert_with(|| host.now_millis().map(|ms| ms / 1000));
    let mut decision = decide_now(shared, &headers, &mut clock);
    if let Decision::Deny(d) = &decision {
        if d.reason == Reason::ClockUnavailable {
            shared.log(Level::Error, || {
                "svcauth: the host clock is unavailable; denying".into()
            });
        }
        if let Some((p, unknown_kid)) = missing_remote_key(shared, d) {
            let t = clock().unwrap_or(0);
            // Another worker may already have fetched the (new) keys.
            if jwks::sync(shared, p) {
                decision = decide_now(shared, &headers, &mut clock);
            } else if unknown_kid
                && !signed::may_require(&shared.config, d)
                && wait_for_keys(shared, stream, p, &headers, t)
            {
                stream.waiting_keys = true;
                return Outcome::Pause;
            }
        }
    }
    if let Decision::Allow(a) = &decision {
        // Signed requests: checked here when no body follows, else held for the body.
        match signed::at_headers(
            &shared.config,
            host,
            a,
            &headers,
            &mut clock,
            stream.headers_only,
        ) {
            AtHeaders::NotRequired | AtHeaders::Verified => {}
            AtHeaders::Deny(d) => decision = Decision::Deny(d),
            AtHeaders::Hold(p) => return hold_for_body(shared, stream, *p),
        }
    }
    let (outcome, audit) = apply(shared, &headers, decision);
    stream.audit = audit;
    outcome
}

/// Holds a request until its body has been checked (`on_request_body`).
fn hold_for_body(shared: &Shared, stream: &mut Stream, p: signed::Pending) -> Outcome {
    let Ok(mut held) = shared.held.try_borrow_mut() else {
        let d = signed::deny_held(&p, Reason::BodyUnavailable);
        return apply(shared, &p.headers, Decision::Deny(d)).0;
    };
    held.insert(stream.id, p);
    stream.held_for_body = true;
    Outcome::Pause
}

/// The last callback of a request: writes its audit line, if it has one.
pub fn on_log(shared: &Shared, stream: &mut Stream, traceparent: Option<String>) {
    let Some(mut line) = stream.audit.take() else {
        return;
    };
    // By now Envoy's router has replaced the traceparent with the span's context when a
    // tracer runs: log the trace id the upstream was sent, which is the exported span's.
    if let Some(tp) = traceparent {
        if let (Some(tid), Some(obj)) = (logline::trace_id_of(&tp), line.as_object_mut()) {
            obj.insert("trace_id".into(), tid.into());
        }
    }
    shared.log(Level::Info, || line.to_string());
}

/// A response to a refetch this stream dispatched itself.
pub fn on_stream_call_response(shared: &Shared, stream: &mut Stream, token: u32, size: usize) {
    let Some((mine, p)) = stream.fetch.take() else {
        return;
    };
    if mine != token {
        return;
    }
    let now = now_seconds(shared);
    jwks::on_response(shared, p, size, now);
    resume_waiters(shared, Some(p), now);
}

fn now_seconds(shared: &Shared) -> i64 {
    shared.host.now_millis().map_or(0, |ms| ms / 1000)
}

/// Pauses this request until provider `p`'s keys are refetched: asks the root context for the
/// refetch if the rate limit allows, or joins one in flight. False: decide now (no refetch
/// allowed and none in flight, or too many requests wait already).
fn wait_for_keys(
    shared: &Shared,
    stream: &mut Stream,
    p: usize,
    headers: &[(&str, Cow<'_, str>)],
    now: i64,
) -> bool {
    let Some(r) = jwks::remote(shared, p) else {
        return false;
    };
    let deadline = if jwks::may_refetch(shared, p, now) {
        let queued = shared
            .refetch_queue
            .is_some_and(|q| shared.host.enqueue(q, p.to_string().as_bytes()));
        if queued {
            // The root context dispatches it (on_queue_ready); mark it in flight now so that
            // other requests join it instead of asking again.
            let hold = i64::try_from(r.timeout_ms / 1000 + 1).unwrap_or(2);
            jwks::set_in_flight(shared, p, now + hold);
        } else {
            // No queue: fetch from this stream (a reset of it cancels the fetch).
            let Some(token) = jwks::start_fetch(shared, p, now) else {
                return false;
            };
            stream.fetch = Some((token, p));
        }
        jwks::in_flight_until(shared, p)
    } else {
        let until = jwks::in_flight_until(shared, p);
        if until <= now {
            return false;
        }
        until
    };
    let waiter = Waiter {
        context_id: stream.id,
        provider: p,
        deadline,
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    };
    shared
        .waiting
        .try_borrow_mut()
        .is_ok_and(|mut w| w.push(waiter, r.max_waiting))
}

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

fn decide_now<K: AsRef<str>, V: AsRef<str>>(
    shared: &Shared,
    headers: &[(K, V)],
    clock: &mut dyn FnMut() -> Option<i64>,
) -> Decision {
    let keys = shared.keys.try_borrow();
    let empty = KeyStore::default();
    let keys = keys.as_deref().unwrap_or(&empty);
    let config = &shared.config;
    match shared.cache.try_borrow_mut() {
        Ok(mut cache) => {
            decide::decide_lazy(config, keys, &shared.crypto, &mut cache, headers, clock)
        }
        Err(_) => decide::decide_lazy(
            config,
            keys,
            &shared.crypto,
            &mut TokenCache::new(0),
            headers,
            clock,
        ),
    }
}

/// Decides, again, the waiting requests of provider `p` (all providers: `None`), each in its
/// own stream's context, and resumes or answers them.
pub fn resume_waiters(shared: &Shared, p: Option<usize>, now: i64) {
    let ready = match shared.waiting.try_borrow_mut() {
        Ok(mut w) => w.take_provider(p),
        Err(_) => return,
    };
    resume(shared, ready, now);
}

/// Decides the waiting requests whose deadline passed on the keys there are.
pub fn expire_waiters(shared: &Shared, now: i64) {
    let ready = match shared.waiting.try_borrow_mut() {
        Ok(mut w) => w.take_expired(now),
        Err(_) => return,
    };
    resume(shared, ready, now);
}

fn resume(shared: &Shared, waiters: Vec<Waiter>, now: i64) {
    for w in waiters {
        // The stream may be gone (client hung up): then there is nothing to answer.
        if !shared.host.select_context(w.context_id) {
            continue;
        }
        let decision = decide_now(shared, &w.headers, &mut || Some(now));
        let (outcome, audit) = apply(shared, &w.headers, decision);
        if let Some(line) = audit {
            shared.log(Level::Info, || line.to_string());
        }
        if outcome == Outcome::Continue {
            shared.host.resume_request();
        }
    }
}

/// Applies a decision to the current stream: identity headers and `Continue`, or the denial's
/// log line and local reply and `Pause`. Returns the audit line to write, if any.
pub fn apply<K: AsRef<str>, V: AsRef<str>>(
    shared: &Shared,
    headers: &[(K, V)],
    decision: Decision,
) -> (Outcome, Option<serde_json::Value>) {
    let config = &shared.config;
    let host = &*shared.host;
    let a = match decision {
        Decision::Allow(a) => a,
        Decision::Deny(d) => {
            shared.counters.cache(d.cache_hit);
            return (deny(shared, headers, &d, None), None);
        }
    };
    if let Some(id) = &a.identity {
        if let Some(retry) = rate_limited(shared, id) {
            let d = Denial {
                rule: a.rule,
                provider: Some(id.provider),
                subject: Some(id.subject.clone()),
                cache_hit: a.cache_hit,
                ..Denial::after(Check::RateLimit, Reason::RateLimited)
            };
            shared.counters.cache(a.cache_hit);
            return (deny(shared, headers, &d, Some(retry)), None);
        }
    }
    // A W3C traceparent for the upstream when the request has none; never overwritten. (With
    // a tracer, Envoy's router replaces it with the span's context.)
    if decide::header(headers, "traceparent").is_none() {
        let tp = format!("00-{}-{}-01", shared.ids.hex(32), shared.ids.hex(16));
        host.set_request_header("traceparent", &tp);
    }
    shared.counters.cache(a.cache_hit);
    shared.counters.allowed.bump();
    tag(shared, Tag::Decision, "allow");
    let mut audit = None;
    match &a.identity {
        Some(id) => {
            host.set_request_header(HEADER_SERVICE, &id.subject);
            host.set_request_header(HEADER_SCOPES, &id.scopes_joined);
            for (h, v) in &id.claim_headers {
                host.set_request_header(h, v);
            }
            tag(shared, Tag::Service, &id.subject);
            if let Some(p) = config.providers.get(id.provider) {
                tag(shared, Tag::Provider, &p.name);
            }
            let rule_audit = a
                .rule
                .and_then(|r| config.rules.get(r))
                .is_some_and(|r| r.audit);
            if (config.log_allowed || rule_audit) && Level::Info >= shared.log_level.get() {
                let facts = RequestFacts::from_headers(headers);
                audit = Some(logline::allowed(config, id, a.rule, &facts));
            }
        }
        None => tag(shared, Tag::Service, "anonymous"),
    }
    // A credential the upstream must not see: a header, a cookie, or a query parameter.
    match a.strip.as_ref().map(|s| s.edit(headers)) {
        Some(decide::Edit::Remove(h)) => host.remove_request_header(h),
        Some(decide::Edit::Set(h, v)) => host.set_request_header(h, &v),
        Some(decide::Edit::Nothing) | None => {}
    }
    (Outcome::Continue, audit)
}

/// `Some(seconds)` when the caller's rate limit refuses this request.
fn rate_limited(shared: &Shared, id: &Rc<Verified>) -> Option<u64> {
    let limit = crate::ratelimit::limit_for(&shared.config.rate_limits, &id.subject)?;
    let provider = shared
        .config
        .providers
        .get(id.provider)
        .map_or("", |p| p.name.as_str());
    bucket::take(&*shared.host, provider, &id.subject, limit).retry_after()
}

/// Answers a denial: counts it, tags it, logs its line (if the host keeps it), and replies.
fn deny<K: AsRef<str>, V: AsRef<str>>(
    shared: &Shared,
    headers: &[(K, V)],
    d: &Denial,
    retry_after: Option<u64>,
) -> Outcome {
    let config = &shared.config;
    let host = &*shared.host;
    shared.counters.denied_for(d.reason);
    tag(shared, Tag::Decision, "deny");
    tag(shared, Tag::Reason, d.reason.code());
    // Only a verified caller is named (`subject` is set only after the signature verified).
    if let Some(s) = &d.subject {
        tag(shared, Tag::Service, s);
    }
    if let Some(p) = d.provider.and_then(|p| config.providers.get(p)) {
        tag(shared, Tag::Provider, &p.name);
    }
    let facts = RequestFacts::from_headers(headers);
    shared.log(Level::Info, || logline::denial(config, d, &facts));
    let grpc = decide::header(headers, "content-type").is_some_and(is_grpc);
    let retry = retry_after.map(|r| r.to_string());
    let mut reply: Vec<(&str, &str)> = Vec::with_capacity(4);
    if !grpc {
        reply.push(("content-type", "application/json"));
    }
    reply.push(("cache-control", "no-store"));
    reply.push(("x-svcauth-reason", d.reason.code()));
    match &retry {
        Some(r) => reply.push(("retry-after", r.as_str())),
        None => reply.push((
            "www-authenticate",
            shared.replies.challenge(d.reason, d.rule),
        )),
    }
    if grpc {
        // Envoy answers a gRPC request's local reply as a gRPC status (401 → 16, 403 → 7)
        // with the body as `grpc-message`: a short text, not the JSON document.
        let body = shared.replies.grpc_body(d.reason);
        host.send_reply(d.reason.status(), &reply, body.as_bytes());
    } else {
        let body = shared.replies.body(d.reason, facts.request_id);
        host.send_reply(d.reason.status(), &reply, body.as_bytes());
    }
    Outcome::Pause
}

/// One field of the published decision.
#[derive(Clone, Copy)]
enum Tag {
    Decision,
    Service,
    Reason,
    Provider,
}

/// Publishes one field of the decision where the config says (`decision_tags`).
fn tag(shared: &Shared, t: Tag, value: &str) {
    let host = &*shared.host;
    match shared.config.decision_tags {
        TagsAs::FilterState => {
            let name = match t {
                Tag::Decision => PROP_DECISION,
                Tag::Service => PROP_SERVICE,
                Tag::Reason => PROP_REASON,
                Tag::Provider => PROP_PROVIDER,
            };
            host.set_property(name, value);
        }
        TagsAs::RequestHeaders => {
            let name = match t {
                Tag::Decision => TAG_DECISION,
                Tag::Service => TAG_SERVICE,
                Tag::Reason => TAG_REASON,
                Tag::Provider => TAG_PROVIDER,
            };
            host.set_request_header(name, value);
        }
    }
}

/// Whether Envoy answers a local reply to a request of this content type as a gRPC status:
/// `application/grpc` or `application/grpc+<codec>` (not `application/grpc-web`).
fn is_grpc(content_type: &str) -> bool {
    content_type
        .strip_prefix("application/grpc")
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('+'))
}

#[cfg(test)]
mod grpc_tests {
    #[test]
    fn only_what_envoy_calls_grpc_gets_a_grpc_body() {
        for ct in [
            "application/grpc",
            "application/grpc+proto",
            "application/grpc+json",
        ] {
            assert!(super::is_grpc(ct), "{ct}");
        }
        for ct in [
            "application/grpc-web",
            "application/grpc-web+proto",
            "application/grpcx",
            "application/json",
            "Application/GRPC",
        ] {
            assert!(!super::is_grpc(ct), "{ct}");
        }
    }
}
