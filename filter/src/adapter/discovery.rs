//! OIDC discovery in the adapter: the `jwks_uri` a VM found, published in shared data so that
//! every worker fetches keys from the same one, and the handling of a fetched discovery
//! document: used (its `jwks_uri` published, the lease freed so the keys are fetched next) or
//! refused (logged at warn, counted, backed off through the lease), in which case the last good
//! `jwks_uri` stays in use. The document itself is checked by the core's `discovery`.
//!
//! Uses: `host`, `lease`, `remote`, `state`, and the core's `config` and `discovery`.

use super::host::Level;
use super::lease;
use super::remote::{self, Target};
use super::state::Shared;
use crate::config::{Discovery, JwksSource};

/// Provider `p`'s discovery settings, if it uses discovery.
pub fn settings(shared: &Shared, p: usize) -> Option<&Discovery> {
    match &shared.config.providers.get(p)?.remote_jwks.as_ref()?.source {
        JwksSource::Discovery(d) => Some(d),
        JwksSource::Fixed { .. } => None,
    }
}

/// The `jwks_uri` of provider `p` as published in shared data (read again only when it
/// changed, and checked again against the allowed hosts); this VM's last copy if the shared
/// one is absent or unreadable.
pub fn target(shared: &Shared, p: usize) -> Option<Target> {
    let d = settings(shared, p)?;
    let st = remote::get(&shared.remote, p)?;
    if let Ok((Some(data), cas)) = shared.host.get_shared(&st.target_key) {
        if cas.is_none() || cas != st.target_cas {
            if let Some(t) = Target::decode(&data, &d.allowed_jwks_hosts) {
                remote::update(&shared.remote, p, |s| {
                    s.target = Some(t);
                    s.target_cas = cas;
                });
            }
        }
    }
    remote::get(&shared.remote, p)?.target
}

fn name(shared: &Shared, p: usize) -> &str {
    shared
        .config
        .providers
        .get(p)
        .map_or("", |pr| pr.name.as_str())
}

/// Handles provider `p`'s fetched discovery document (`Err`: the fetch failed, and why).
/// True when the document was used.
pub fn on_document(shared: &Shared, p: usize, body: Result<Vec<u8>, String>, now: i64) -> bool {
    let (Some(d), Some(pr)) = (settings(shared, p), shared.config.providers.get(p)) else {
        return false;
    };
    let checked = body.and_then(|b| {
        crate::discovery::check_document(&b, d.max_bytes, &pr.issuer, &d.allowed_jwks_hosts)
    });
    let jwks = match checked {
        Ok(jwks) => jwks,
        Err(cause) => {
            failed(shared, p, &cause, now);
            return false;
        }
    };
    let before = target(shared, p);
    let changed_at = match &before {
        Some(t) if t.jwks.uri == jwks.uri => t.changed_at,
        _ => now,
    };
    let found = Target {
        jwks,
        discovered_at: now,
        changed_at,
    };
    let Some(st) = remote::get(&shared.remote, p) else {
        return false;
    };
    let _ = shared
        .host
        .set_shared(&st.target_key, &found.encode(), None);
    // Remember the published CAS so this VM does not read its own copy back.
    let cas = shared
        .host
        .get_shared(&st.target_key)
        .ok()
        .and_then(|(_, c)| c);
    let uri = found.jwks.uri.clone();
    remote::update(&shared.remote, p, |s| {
        s.target = Some(found);
        s.target_cas = cas;
        s.discovery_failures = 0;
    });
    // Free the lease: the keys are fetched next (at once if the jwks_uri is new).
    lease::hold(&*shared.host, &st.lease_key, 0, shared.nonce);
    shared.counters.discovery(true);
    match before {
        Some(b) if b.jwks.uri == uri => {}
        Some(b) => shared.log(Level::Info, || {
            format!(
                "svcauth: provider {}: OIDC discovery: jwks_uri moved from {} to {uri}",
                name(shared, p),
                b.jwks.uri
            )
        }),
        None => shared.log(Level::Info, || {
            format!(
                "svcauth: provider {}: OIDC discovery: jwks_uri {uri}",
                name(shared, p)
            )
        }),
    }
    true
}

/// A discovery of provider `p` failed (`cause`): counted, logged at warn, and the lease held
/// for the backoff. The last good `jwks_uri` (if any) stays in use.
pub fn failed(shared: &Shared, p: usize, cause: &str, now: i64) {
    shared.counters.discovery(false);
    let known = remote::get(&shared.remote, p).and_then(|s| s.target);
    shared.log(Level::Warn, || {
        let kept = match &known {
            Some(t) => format!("keeping jwks_uri {}", t.jwks.uri),
            None => {
                "no jwks_uri yet: requests for this provider are denied (keys_unavailable)".into()
            }
        };
        format!(
            "svcauth: provider {}: OIDC discovery failed: {cause}; {kept}",
            name(shared, p)
        )
    });
    let mut failures = 0;
    remote::update(&shared.remote, p, |s| {
        s.discovery_failures = s.discovery_failures.saturating_add(1);
        failures = s.discovery_failures;
    });
    let refresh =
        settings(shared, p).map_or(3600, |d| i64::try_from(d.refresh_seconds).unwrap_or(3600));
    if let Some(st) = remote::get(&shared.remote, p) {
        let until = now + lease::backoff(failures, refresh);
        lease::hold(&*shared.host, &st.lease_key, until, shared.nonce);
    }
}
