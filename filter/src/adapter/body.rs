//! The request's body phase: a request held for its signature check (`signed`) gets its body
//! buffered by Envoy and checked at its end (or at its trailers); a request paused for a key
//! refetch holds its body until it is decided. Every other request's body passes at once,
//! without a host call. Also the tick's answer to held requests whose body never came.
//!
//! Uses: `state`, `host`, `signed`, `request` (to apply the decision), the core's `decide`
//! and `reason`.

use super::host::Level;
use super::request::{apply, Outcome, Stream};
use super::signed;
use super::state::Shared;
use crate::contract::reason::Reason;
use crate::decide::Decision;

/// A part of the request body arrived (`size`: the bytes buffered so far; `end`: the last).
/// Nothing to do (no host call) unless the request waits for keys or for its body's check.
pub fn on_request_body(shared: &Shared, stream: &mut Stream, size: usize, end: bool) -> Outcome {
    if stream.waiting_keys {
        return still_waiting(shared, stream);
    }
    if !stream.held_for_body {
        return Outcome::Continue;
    }
    let (over, pending) = {
        let Ok(mut held) = shared.held.try_borrow_mut() else {
            return Outcome::Pause;
        };
        let Some(p) = held.get_mut(stream.id) else {
            // Answered already (no body in time).
            return Outcome::Pause;
        };
        p.body_seen = true;
        p.size = size;
        let over = size > signed::max_body(&shared.config, p);
        if !over && !end {
            // Envoy buffers it (StopIterationAndBuffer) until the last part.
            return Outcome::Pause;
        }
        (over, held.remove(stream.id))
    };
    let Some(p) = pending else {
        return Outcome::Pause;
    };
    if over {
        return refuse(shared, stream, &p, Reason::BodyTooLarge);
    }
    body_checked(shared, stream, p, size)
}

/// Trailers end the body of a held request.
pub fn on_request_trailers(shared: &Shared, stream: &mut Stream) -> Outcome {
    if stream.waiting_keys {
        return still_waiting(shared, stream);
    }
    if !stream.held_for_body {
        return Outcome::Continue;
    }
    let pending = shared
        .held
        .try_borrow_mut()
        .ok()
        .and_then(|mut h| h.remove(stream.id));
    match pending {
        Some(p) => {
            let size = p.size;
            body_checked(shared, stream, p, size)
        }
        None => Outcome::Pause,
    }
}

/// Checks the signature of held request `p` over its `size` buffered body bytes.
fn body_checked(shared: &Shared, stream: &mut Stream, p: signed::Pending, size: usize) -> Outcome {
    let host = &*shared.host;
    let Some(body) = host.request_body(0, size).filter(|b| b.len() == size) else {
        return refuse(shared, stream, &p, Reason::BodyUnavailable);
    };
    let Some(now) = now_opt(shared) else {
        return refuse(shared, stream, &p, Reason::ClockUnavailable);
    };
    let decision = match signed::at_body(&shared.config, host, &p, &body, now) {
        Ok(()) => Decision::Allow(p.allowed),
        Err(d) => Decision::Deny(d),
    };
    drop(body);
    stream.held_for_body = false;
    let (outcome, audit) = apply(shared, &p.headers, decision);
    stream.audit = audit;
    outcome
}

fn refuse(shared: &Shared, stream: &mut Stream, p: &signed::Pending, reason: Reason) -> Outcome {
    stream.held_for_body = false;
    apply(
        shared,
        &p.headers,
        Decision::Deny(signed::deny_held(p, reason)),
    )
    .0
}

/// A request paused for a key refetch holds its body (and trailers) until it is decided; once
/// it is (resumed by another context), the rest goes on.
fn still_waiting(shared: &Shared, stream: &mut Stream) -> Outcome {
    let waiting = shared
        .waiting
        .try_borrow()
        .map_or(true, |w| w.holds(stream.id));
    if waiting {
        Outcome::Pause
    } else {
        stream.waiting_keys = false;
        Outcome::Continue
    }
}

/// Answers the requests held for a body that never came (`503 body_unavailable`).
pub fn expire_held(shared: &Shared, now: i64) {
    let expired = match shared.held.try_borrow_mut() {
        Ok(mut h) if h.len() > 0 => h.take_expired(now),
        _ => return,
    };
    for (id, p) in expired {
        if !shared.host.select_context(id) {
            continue;
        }
        let first = shared
            .held
            .try_borrow_mut()
            .is_ok_and(|mut h| !std::mem::replace(&mut h.warned, true));
        if first {
            shared.log(Level::Error, || {
                format!("svcauth: the body of a request that must be signed did not reach the filter within {} s; set allow_on_headers_stop_iteration: true on the wasm filter (Envoy >= 1.35), or the request cannot be checked", signed::FIRST_BODY_SECONDS)
            });
        }
        let d = signed::deny_held(&p, Reason::BodyUnavailable);
        apply(shared, &p.headers, Decision::Deny(d));
    }
}

/// The stream is gone: forgets what it held.
pub fn forget(shared: &Shared, stream: &Stream) {
    if stream.held_for_body {
        if let Ok(mut h) = shared.held.try_borrow_mut() {
            h.remove(stream.id);
        }
    }
}

fn now_opt(shared: &Shared) -> Option<i64> {
    shared.host.now_millis().map(|ms| ms / 1000)
}
