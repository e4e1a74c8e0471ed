//! Remote JWKS: fetching through an Envoy cluster, sharing the result between worker VMs, and
//! keeping the last good keys when a fetch fails.
//!
//! Shared data (one copy per Envoy process, for every VM with the same `vm_id`) holds, per key
//! source, the last good body with its fetch time, and a lease so that one VM fetches while the
//! others read what it published. Every VM reads the shared copy on its tick.
//!
//! Uses: `state` (the VM's shared state and its host), `lease`, and the core's `config` and
//! `keys`.

use super::host::Level;
use super::lease;
use super::remote::RemoteState;
use super::state::Shared;
use crate::config::RemoteJwks;
use crate::token::keys::{self, decode_shared, encode_shared, Loaded};

/// Loads provider `p`'s keys from `body` into this VM (and empties the token cache, since the
/// keys changed). Logs each unusable key.
fn load(shared: &Shared, p: usize, fetched_at: i64, body: &[u8]) -> Result<(), String> {
    let max = shared
        .config
        .providers
        .get(p)
        .and_then(|pr| pr.remote_jwks.as_ref())
        .map_or(0, |r| r.max_bytes);
    let set = keys::parse_fetched(body, max)?;
    let name = shared
        .config
        .providers
        .get(p)
        .map_or("", |pr| pr.name.as_str());
    for skipped in &set.skipped {
        shared.log(Level::Warn, || {
            format!("svcauth: provider {name}: JWKS key skipped: {skipped}")
        });
    }
    if let Ok(mut store) = shared.keys.try_borrow_mut() {
        store.set(
            p,
            Loaded {
                keys: set.keys,
                fetched_at,
            },
        );
    }
    if let Ok(mut cache) = shared.cache.try_borrow_mut() {
        cache.clear();
    }
    Ok(())
}

/// Reads the shared copy of provider `p`'s keys and loads it if it changed. True if loaded.
pub fn sync(shared: &Shared, p: usize) -> bool {
    let Some(key) = state(shared, p).map(|s| s.data_key) else {
        return false;
    };
    let Ok((Some(data), cas)) = shared.host.get_shared(&key) else {
        return false;
    };
    if cas.is_some() && cas == state(shared, p).and_then(|s| s.loaded_cas) {
        return false;
    }
    let Some((at, body)) = decode_shared(&data) else {
        return false;
    };
    let ok = load(shared, p, at, body).is_ok();
    with_state(shared, p, |s| s.loaded_cas = cas);
    ok
}

fn state(shared: &Shared, p: usize) -> Option<RemoteState> {
    shared.remote.try_borrow().ok()?.get(p)?.clone()
}

fn with_state(shared: &Shared, p: usize, f: impl FnOnce(&mut RemoteState)) {
    if let Ok(mut all) = shared.remote.try_borrow_mut() {
        if let Some(Some(s)) = all.get_mut(p) {
            f(s);
        }
    }
}

/// Whether a scheduled fetch of provider `p` is due and this VM got the lease for it.
pub fn due(shared: &Shared, p: usize, now: i64) -> bool {
    let (Some(st), Some(r)) = (state(shared, p), remote(shared, p)) else {
        return false;
    };
    if st.in_flight_until > now {
        return false;
    }
    let fetched_at = shared
        .keys
        .try_borrow()
        .ok()
        .and_then(|k| k.get(p).map(|l| l.fetched_at));
    let refresh = i64::try_from(r.refresh_seconds).unwrap_or(300);
    if fetched_at.is_some_and(|at| now < at.saturating_add(refresh)) {
        return false;
    }
    let hold = i64::try_from(r.timeout_ms / 1000 + 2).unwrap_or(3);
    lease::take(&*shared.host, &st.lease_key, now, now + hold, shared.nonce)
}

/// Whether this VM may refetch provider `p`'s keys for an unknown `kid` now (rate limit).
pub fn may_refetch(shared: &Shared, p: usize, now: i64) -> bool {
    let (Some(st), Some(r)) = (state(shared, p), remote(shared, p)) else {
        return false;
    };
    if st.in_flight_until > now || now < st.refetch_not_before {
        return false;
    }
    let interval = i64::try_from(r.refetch_interval_seconds).unwrap_or(10);
    with_state(shared, p, |s| s.refetch_not_before = now + interval);
    true
}

/// Provider `p`'s `remote_jwks` settings, if it has them.
pub fn remote(shared: &Shared, p: usize) -> Option<&RemoteJwks> {
    shared.config.providers.get(p)?.remote_jwks.as_ref()
}

/// Marks provider `p`'s fetch as in flight in this VM until `until` (0: done).
pub fn set_in_flight(shared: &Shared, p: usize, until: i64) {
    with_state(shared, p, |s| s.in_flight_until = until);
}

/// Until when this VM's fetch of provider `p` is in flight (0 or past: none).
pub fn in_flight_until(shared: &Shared, p: usize) -> i64 {
    state(shared, p).map_or(0, |s| s.in_flight_until)
}

/// Starts a fetch of provider `p` from the current context; marks it in flight. The token.
pub fn start_fetch(shared: &Shared, p: usize, now: i64) -> Option<u32> {
    let r = remote(shared, p)?;
    match shared
        .host
        .dispatch_get(&r.cluster, &r.authority, &r.path, r.timeout_ms)
    {
        Ok(token) => {
            set_in_flight(
                shared,
                p,
                now + i64::try_from(r.timeout_ms / 1000 + 1).unwrap_or(2),
            );
            Some(token)
        }
        Err(e) => {
            let name = shared
                .config
                .providers
                .get(p)
                .map_or("", |pr| pr.name.as_str())
                .to_string();
            failed(
                shared,
                p,
                &name,
                &format!("dispatch to cluster {:?} refused ({e})", r.cluster),
                now,
            );
            None
        }
    }
}

/// Handles the response to a fetch of provider `p`: on success publishes and loads the keys; on
/// failure keeps the last good keys, logs the cause, counts, and backs off.
/// True when new keys were loaded.
pub fn on_response(shared: &Shared, p: usize, body_size: usize, now: i64) -> bool {
    set_in_flight(shared, p, 0);
    let name = shared
        .config
        .providers
        .get(p)
        .map_or("", |pr| pr.name.as_str())
        .to_string();
    match fetched_body(shared, p, body_size) {
        Ok(body) => match load(shared, p, now, &body) {
            Ok(()) => {
                if let Some(st) = state(shared, p) {
                    let data = encode_shared(now, &body);
                    let _ = shared.host.set_shared(&st.data_key, &data, None);
                    // Remember the published CAS so the tick does not reload our own copy.
                    let cas = shared
                        .host
                        .get_shared(&st.data_key)
                        .ok()
                        .and_then(|(_, c)| c);
                    with_state(shared, p, |s| {
                        s.loaded_cas = cas;
                        s.failures = 0;
                    });
                    // Free the lease: the next refresh is due by the fetch time, not the lease.
                    lease::hold(&*shared.host, &st.lease_key, 0, shared.nonce);
                }
                shared.counters.jwks_fetch(true);
                true
            }
            Err(e) => {
                failed(shared, p, &name, &format!("unusable JWKS: {e}"), now);
                false
            }
        },
        Err(e) => {
            failed(shared, p, &name, &e, now);
            false
        }
    }
}

fn failed(shared: &Shared, p: usize, name: &str, cause: &str, now: i64) {
    shared.counters.jwks_fetch(false);
    let kept = if shared
        .keys
        .try_borrow()
        .ok()
        .is_some_and(|k| k.get(p).is_some())
    {
        "keeping the last good keys"
    } else {
        "no keys yet: requests for this provider are denied (keys_unavailable)"
    };
    shared.log(Level::Warn, || {
        format!("svcauth: provider {name}: JWKS fetch failed: {cause}; {kept}")
    });
    let mut failures = 0;
    with_state(shared, p, |s| {
        s.failures = s.failures.saturating_add(1);
        failures = s.failures;
    });
    let refresh =
        remote(shared, p).map_or(300, |r| i64::try_from(r.refresh_seconds).unwrap_or(300));
    let backoff = lease::backoff(failures, refresh);
    if let Some(st) = state(shared, p) {
        lease::hold(&*shared.host, &st.lease_key, now + backoff, shared.nonce);
    }
}

/// The response body, after checking the status and the size before reading it.
fn fetched_body(shared: &Shared, p: usize, body_size: usize) -> Result<Vec<u8>, String> {
    let Some(status) = shared.host.call_status() else {
        return Err("no response (timeout, connection failure or unknown cluster)".into());
    };
    if status != "200" {
        return Err(format!("HTTP status {status}"));
    }
    let max = remote(shared, p).map_or(0, |r| r.max_bytes);
    if body_size > max {
        return Err(format!(
            "body of {body_size} bytes exceeds the {max}-byte limit"
        ));
    }
    match shared.host.call_body(body_size) {
        Some(b) if !b.is_empty() => Ok(b),
        Some(_) => Err("empty body".into()),
        None => Err("the host gave no response body".into()),
    }
}
