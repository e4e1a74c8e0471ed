//! Remote JWKS: fetching through an Envoy cluster, sharing the result between worker VMs, and
//! keeping the last good keys when a fetch fails.
//!
//! Shared data (one copy per Envoy process, for every VM with the same `vm_id`) holds, per key
//! source, the last good body with its fetch time, and a lease so that one VM fetches while the
//! others read what it published. Every VM reads the shared copy on its tick.
//!
//! With OIDC discovery the same lease covers two fetches: the discovery document (when no
//! `jwks_uri` is known, or when rediscovery is due) and the JWK Set at the discovered
//! `jwks_uri`. A scheduled fetch is one or the other, never both in one go: a good document
//! frees the lease, and the next tick fetches the keys.
//!
//! Uses: `state` (the VM's shared state and its host), `lease`, `remote`, `discovery`, and the
//! core's `config` and `keys`.

use super::discovery;
use super::host::Level;
use super::lease;
use super::remote::{self, Fetch, RemoteState};
use super::state::Shared;
use crate::config::{JwksSource, RemoteJwks};
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
    remote::get(&shared.remote, p)
}

fn with_state(shared: &Shared, p: usize, f: impl FnOnce(&mut RemoteState)) {
    remote::update(&shared.remote, p, f);
}

/// Whether a scheduled fetch of provider `p` is due and this VM got the lease for it; if so,
/// what the fetch [`start_fetch`] makes next asks for.
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
    let mut keys_due = fetched_at.is_none_or(|at| now >= at.saturating_add(refresh));
    let (kind, timeout_ms) = match &r.source {
        JwksSource::Fixed { .. } if keys_due => (Fetch::Jwks, r.timeout_ms),
        JwksSource::Fixed { .. } => return false,
        JwksSource::Discovery(d) => {
            let kind = match discovery::target(shared, p) {
                None => Fetch::Document,
                Some(t) => {
                    // Keys fetched before this jwks_uri was discovered came from another one.
                    if fetched_at.is_some_and(|at| at < t.changed_at) {
                        keys_due = true;
                    }
                    let every = i64::try_from(d.refresh_seconds).unwrap_or(3600);
                    let document_due = now >= t.discovered_at.saturating_add(every);
                    match (document_due, keys_due) {
                        (false, false) => return false,
                        (true, false) => Fetch::Document,
                        (false, true) => Fetch::Jwks,
                        // Both: take turns, so that a failing rediscovery does not stop the
                        // keys from being refreshed from the last good jwks_uri.
                        (true, true) if st.last == Fetch::Document => Fetch::Jwks,
                        (true, true) => Fetch::Document,
                    }
                }
            };
            let timeout_ms = match kind {
                Fetch::Document => d.timeout_ms,
                Fetch::Jwks => r.timeout_ms,
            };
            (kind, timeout_ms)
        }
    };
    let hold = i64::try_from(timeout_ms / 1000 + 2).unwrap_or(3);
    if !lease::take(&*shared.host, &st.lease_key, now, now + hold, shared.nonce) {
        return false;
    }
    with_state(shared, p, |s| s.next = kind);
    true
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
/// It asks for what [`due`] found due, else for the keys (an unknown-`kid` refetch); with
/// discovery and no `jwks_uri` known yet, for the discovery document.
pub fn start_fetch(shared: &Shared, p: usize, now: i64) -> Option<u32> {
    let r = remote(shared, p)?;
    let mut kind = Fetch::Jwks;
    with_state(shared, p, |s| kind = std::mem::take(&mut s.next));
    let target = match &r.source {
        JwksSource::Discovery(_) if kind == Fetch::Jwks => discovery::target(shared, p),
        _ => None,
    };
    let (cluster, authority, path, timeout_ms) = match (&r.source, &target) {
        (JwksSource::Fixed { path, authority }, _) => (&r.cluster, authority, path, r.timeout_ms),
        (JwksSource::Discovery(d), Some(t)) if kind == Fetch::Jwks => (
            &d.jwks_cluster,
            &t.jwks.authority,
            &t.jwks.path,
            r.timeout_ms,
        ),
        (JwksSource::Discovery(d), _) => {
            kind = Fetch::Document;
            (&r.cluster, &d.authority, &d.path, d.timeout_ms)
        }
    };
    with_state(shared, p, |s| s.last = kind);
    match shared
        .host
        .dispatch_get(cluster, authority, path, timeout_ms)
    {
        Ok(token) => {
            let until = now + i64::try_from(timeout_ms / 1000 + 1).unwrap_or(2);
            with_state(shared, p, |s| {
                s.in_flight_until = until;
                s.in_flight = kind;
            });
            Some(token)
        }
        Err(e) => {
            let cause = format!("dispatch to cluster {cluster:?} refused ({e})");
            match kind {
                Fetch::Document => discovery::failed(shared, p, &cause, now),
                Fetch::Jwks => {
                    let name = shared
                        .config
                        .providers
                        .get(p)
                        .map_or("", |pr| pr.name.as_str())
                        .to_string();
                    failed(shared, p, &name, &cause, now);
                }
            }
            None
        }
    }
}

/// Handles the response to a fetch of provider `p`: on success publishes and loads the keys; on
/// failure keeps the last good keys, logs the cause, counts, and backs off. A discovery
/// document goes to `discovery`. True when new keys were loaded.
pub fn on_response(shared: &Shared, p: usize, body_size: usize, now: i64) -> bool {
    let mut kind = Fetch::Jwks;
    with_state(shared, p, |s| {
        s.in_flight_until = 0;
        kind = std::mem::take(&mut s.in_flight);
    });
    if kind == Fetch::Document {
        let max = discovery::settings(shared, p).map_or(0, |d| d.max_bytes);
        let body = fetched_body(shared, max, body_size);
        discovery::on_document(shared, p, body, now);
        return false;
    }
    let name = shared
        .config
        .providers
        .get(p)
        .map_or("", |pr| pr.name.as_str())
        .to_string();
    let max = remote(shared, p).map_or(0, |r| r.max_bytes);
    match fetched_body(shared, max, body_size) {
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

/// The response body, after checking the status and the size (at most `max`) before reading it.
fn fetched_body(shared: &Shared, max: usize, body_size: usize) -> Result<Vec<u8>, String> {
    let Some(status) = shared.host.call_status() else {
        return Err("no response (timeout, connection failure or unknown cluster)".into());
    };
    if status != "200" {
        return Err(format!("HTTP status {status}"));
    }
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
