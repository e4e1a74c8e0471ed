//! Signed requests against the host: whether an allowed request must be signed, its headers'
//! checks, holding it for its body, the body's check, and the replay cache in shared data
//! (one slot per caller and signature byte, updated with compare-and-swap so that every worker
//! VM of the Envoy refuses a replay). `request` applies the outcome.
//!
//! A request that needs no signature costs nothing here: no host call, no copy, no buffering.
//!
//! Uses: `host`, and the core's `config`, `decide`, `reason`, `signing`.

use std::borrow::Cow;
use std::collections::BTreeMap;

use super::host::{Host, SharedError};
use crate::check::Check;
use crate::config::Config;
use crate::contract::reason::Reason;
use crate::decide::{self, Allowed, Denial};
use crate::signing::{self, Refusal, Signing};

/// How long a request held for its body waits for the body's first bytes (host seconds).
/// Without `allow_on_headers_stop_iteration` Envoy never delivers them; the tick then answers
/// `503 body_unavailable` instead of leaving the client hanging.
pub const FIRST_BODY_SECONDS: i64 = 10;

/// How often a lost compare-and-swap on a replay slot is retried before refusing.
pub const CAS_ATTEMPTS: usize = 8;

/// A request held for its body, and what its signature check needs then.
#[derive(Debug)]
pub struct Pending {
    /// The request headers (owned: the host's buffer is gone by the body callback).
    pub headers: Vec<(String, String)>,
    /// The decision to apply once the body is checked.
    pub allowed: Allowed,
    signature: [u8; 32],
    timestamp: String,
    ts: i64,
    /// Host time (s) by which the body's first bytes must have arrived.
    pub deadline: i64,
    /// Whether a body callback came.
    pub body_seen: bool,
    /// The body bytes buffered at the last body callback.
    pub size: usize,
}

/// The requests of one VM held for their bodies, by context id.
#[derive(Debug, Default)]
pub struct Held {
    map: BTreeMap<u32, Pending>,
    /// The "no body arrived" error has been logged (once per VM).
    pub warned: bool,
}

impl Held {
    pub fn insert(&mut self, context_id: u32, p: Pending) {
        self.map.insert(context_id, p);
    }

    pub fn get_mut(&mut self, context_id: u32) -> Option<&mut Pending> {
        self.map.get_mut(&context_id)
    }

    pub fn remove(&mut self, context_id: u32) -> Option<Pending> {
        self.map.remove(&context_id)
    }

    /// Removes the requests that saw no body by `now`.
    pub fn take_expired(&mut self, now: i64) -> Vec<(u32, Pending)> {
        let ids: Vec<u32> = self
            .map
            .iter()
            .filter(|(_, p)| !p.body_seen && p.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        ids.into_iter()
            .filter_map(|id| self.map.remove(&id).map(|p| (id, p)))
            .collect()
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }
}

/// What the headers say about an allowed request's signature.
#[derive(Debug)]
pub enum AtHeaders {
    /// No signature needed: decide as allowed.
    NotRequired,
    /// Signed, and checked (no body follows): decide as allowed.
    Verified,
    /// Refused.
    Deny(Denial),
    /// Checked as far as the headers go: hold the request for its body.
    Hold(Box<Pending>),
}

/// The signing settings an allowed request must satisfy, if it must be signed: its provider's
/// `signed_requests` when `required`, or its rule's `requires.signed`.
fn required<'c>(config: &'c Config, allowed: &Allowed) -> Option<Result<&'c Signing, Reason>> {
    let id = allowed.identity.as_ref()?;
    let signing = config
        .providers
        .get(id.provider)
        .and_then(|p| p.signing.as_ref());
    let rule = allowed
        .rule
        .and_then(|r| config.rules.get(r))
        .is_some_and(|r| r.signed);
    match signing {
        Some(s) if s.required || rule => Some(Ok(s)),
        // The configuration refuses such a rule; should one pass, nothing is let through.
        None if rule => Some(Err(Reason::SignatureInvalid)),
        _ => None,
    }
}

/// Whether a request denied with `d` (before its signature is known) might need a signature:
/// such a request is not held for a key refetch, since a waiting request is decided without
/// its body.
pub fn may_require(config: &Config, d: &Denial) -> bool {
    let rule = d
        .rule
        .and_then(|r| config.rules.get(r))
        .is_some_and(|r| r.signed);
    let provider = d
        .provider
        .and_then(|p| config.providers.get(p))
        .and_then(|p| p.signing.as_ref())
        .is_some_and(|s| s.required);
    rule || provider
}

fn denial(allowed: &Allowed, reason: Reason) -> Denial {
    Denial {
        rule: allowed.rule,
        provider: allowed.identity.as_ref().map(|id| id.provider),
        // The token verified: the caller is known.
        subject: allowed.identity.as_ref().map(|id| id.subject.clone()),
        cache_hit: allowed.cache_hit,
        ..Denial::after(Check::RequestSignature, reason)
    }
}

/// Checks an allowed request's signature headers. `now` is the host clock (seconds);
/// `headers_only`: no body follows.
pub fn at_headers(
    config: &Config,
    host: &dyn Host,
    allowed: &Allowed,
    headers: &[(&str, Cow<'_, str>)],
    now: &mut dyn FnMut() -> Option<i64>,
    headers_only: bool,
) -> AtHeaders {
    let signing = match required(config, allowed) {
        None => return AtHeaders::NotRequired,
        Some(Ok(s)) => s,
        Some(Err(r)) => return AtHeaders::Deny(denial(allowed, r)),
    };
    let deny = |r: Reason| AtHeaders::Deny(denial(allowed, r));
    let (mut ts, mut sig) = (Vec::new(), Vec::new());
    for (k, v) in headers {
        if *k == signing.timestamp_header {
            ts.push(v.as_ref());
        } else if *k == signing.signature_header {
            sig.push(v.as_ref());
        }
    }
    let (timestamp, signature) = match (ts.as_slice(), sig.as_slice()) {
        ([t], [s]) if !t.trim().is_empty() && !s.trim().is_empty() => (*t, *s),
        ([], _) | (_, []) => return deny(Reason::SignatureMissing),
        ([t], [s]) if t.trim().is_empty() || s.trim().is_empty() => {
            return deny(Reason::SignatureMissing)
        }
        _ => return deny(Reason::SignatureInvalid),
    };
    let (Some(t), Some(signature)) = (
        signing::parse_timestamp(timestamp),
        signing::parse_signature(signature),
    ) else {
        return deny(Reason::SignatureInvalid);
    };
    let Some(now) = now() else {
        return deny(Reason::ClockUnavailable);
    };
    if let Err(r) = signing::check_time(t, now, signing.window) {
        return deny(r);
    }
    let subject = allowed
        .identity
        .as_ref()
        .map_or("", |id| id.subject.as_str());
    if signing.secret(subject).is_none() {
        return deny(Reason::SignatureInvalid);
    }
    let declared = decide::header(headers, "content-length").and_then(|v| v.trim().parse().ok());
    if declared.is_some_and(|n: u64| n > u64::try_from(signing.max_body_bytes).unwrap_or(u64::MAX))
    {
        return deny(Reason::BodyTooLarge);
    }
    let pending = Pending {
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        allowed: allowed.clone(),
        signature,
        timestamp: timestamp.trim_matches([' ', '\t']).to_string(),
        ts: t,
        deadline: now + FIRST_BODY_SECONDS,
        body_seen: false,
        size: 0,
    };
    if headers_only {
        return match at_body(config, host, &pending, b"", now) {
            Ok(()) => AtHeaders::Verified,
            Err(d) => AtHeaders::Deny(d),
        };
    }
    AtHeaders::Hold(Box::new(pending))
}

/// The bound on the body of a held request.
pub fn max_body(config: &Config, p: &Pending) -> usize {
    required(config, &p.allowed)
        .and_then(Result::ok)
        .map_or(0, |s| s.max_body_bytes)
}

/// A denial of a held request for `reason`.
pub fn deny_held(p: &Pending, reason: Reason) -> Denial {
    denial(&p.allowed, reason)
}

/// Checks the signature of held request `p` over its whole `body`, then admits it to the
/// replay cache. `now` is the host clock (seconds).
pub fn at_body(
    config: &Config,
    host: &dyn Host,
    p: &Pending,
    body: &[u8],
    now: i64,
) -> Result<(), Denial> {
    let fail = |r: Reason| Err(denial(&p.allowed, r));
    let (Some(Ok(signing)), Some(id)) = (required(config, &p.allowed), p.allowed.identity.as_ref())
    else {
        return fail(Reason::SignatureInvalid);
    };
    let Some(secret) = signing.secret(&id.subject) else {
        return fail(Reason::SignatureInvalid);
    };
    let method = decide::header(&p.headers, ":method").unwrap_or_default();
    let path = decide::header(&p.headers, ":path").unwrap_or_default();
    if !signing::verify(secret, &p.signature, method, path, body, &p.timestamp) {
        return fail(Reason::SignatureInvalid);
    }
    let provider = config
        .providers
        .get(id.provider)
        .map_or("", |p| p.name.as_str());
    let key = signing::replay_key(provider, &id.subject, signing::slot_of(&p.signature));
    let expires = p.ts.saturating_add(signing.window);
    match admit(
        host,
        &key,
        &p.signature,
        expires,
        now,
        signing.replay_per_slot,
    ) {
        Ok(()) => Ok(()),
        Err(r) => fail(r),
    }
}

/// Creates every caller's replay slots that do not exist yet (at configure time, before any
/// request): proxy-wasm shared data has no atomic "create", so a slot must exist, with a CAS,
/// before two workers may race to write it. Creating an absent slot overwrites nothing, since
/// no worker admits a signature to a slot it did not find.
pub fn prepare(host: &dyn Host, config: &Config) {
    for p in &config.providers {
        let Some(s) = &p.signing else {
            continue;
        };
        for caller in s.callers() {
            for slot in 0..signing::REPLAY_SLOTS {
                let key = signing::replay_key(&p.name, caller, slot);
                if let Ok((_, None)) = host.get_shared(&key) {
                    let _ = host.set_shared(&key, b"", None);
                }
            }
        }
    }
}

/// Records `signature` in its replay slot `key`; `Err` if it is there already (a replay) or
/// cannot be recorded (slot full, shared data failing, a CAS loop that keeps losing).
fn admit(
    host: &dyn Host,
    key: &str,
    signature: &[u8; 32],
    expires: i64,
    now: i64,
    capacity: usize,
) -> Result<(), Reason> {
    for _ in 0..CAS_ATTEMPTS {
        // A slot without a CAS was not created at configure time: a write to it could not be
        // made atomic, so nothing is admitted through it.
        let Ok((data, cas @ Some(_))) = host.get_shared(key) else {
            return Err(Reason::ReplayCheckUnavailable);
        };
        let next = match signing::admit(data.as_deref(), signature, expires, now, capacity) {
            Ok(next) => next,
            Err(Refusal::Replayed) => return Err(Reason::SignatureReplayed),
            Err(Refusal::Full) => return Err(Reason::ReplayCheckUnavailable),
        };
        match host.set_shared(key, &next, cas) {
            Ok(()) => return Ok(()),
            // Another worker wrote the slot since it was read: read it again (it may hold
            // this very signature now).
            Err(SharedError::CasMismatch) => continue,
            Err(SharedError::Other) => return Err(Reason::ReplayCheckUnavailable),
        }
    }
    Err(Reason::ReplayCheckUnavailable)
}
