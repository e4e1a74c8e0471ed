//! One VM's view of a remote key source: the shared-data keys of its published set, its fetch
//! lease and (with OIDC discovery) its discovered `jwks_uri`, and this VM's fetch state (in
//! flight, what is in flight, failures, refetch rate limit).
//!
//! Uses: the core's `config` and `discovery`.

use std::cell::RefCell;

use crate::config::{JwksSource, Provider, RemoteJwks};
use crate::discovery::JwksTarget;

/// What a fetch asks for.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Fetch {
    /// The JWK Set (at the fixed path, or at the discovered `jwks_uri`).
    #[default]
    Jwks,
    /// The OIDC discovery document.
    Document,
}

/// A `jwks_uri` found by discovery, as published in shared data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub jwks: JwksTarget,
    /// Host time (s) of the last good discovery.
    pub discovered_at: i64,
    /// Host time (s) at which this `jwks_uri` was first discovered: keys fetched before it came
    /// from another one.
    pub changed_at: i64,
}

impl Target {
    /// The shared-data form: `<discovered_at> <changed_at> <jwks_uri>` (a checked `jwks_uri`
    /// holds no space).
    pub fn encode(&self) -> Vec<u8> {
        format!(
            "{} {} {}",
            self.discovered_at, self.changed_at, self.jwks.uri
        )
        .into_bytes()
    }

    /// The inverse of [`Target::encode`]; the `jwks_uri` is checked again against
    /// `allowed_hosts` (the configuration may have changed since it was published).
    pub fn decode(data: &[u8], allowed_hosts: &[String]) -> Option<Target> {
        let text = std::str::from_utf8(data).ok()?;
        let mut parts = text.splitn(3, ' ');
        let discovered_at = parts.next()?.parse().ok()?;
        let changed_at = parts.next()?.parse().ok()?;
        let jwks = crate::discovery::jwks_target(parts.next()?, allowed_hosts).ok()?;
        Some(Target {
            jwks,
            discovered_at,
            changed_at,
        })
    }
}

/// Per provider with `remote_jwks`: this VM's view of the shared state.
#[derive(Debug, Default, Clone)]
pub struct RemoteState {
    /// Shared-data key of the published key set.
    pub data_key: String,
    /// Shared-data key of the fetch lease.
    pub lease_key: String,
    /// The CAS of the shared copy this VM loaded last.
    pub loaded_cas: Option<u32>,
    /// A fetch of this VM is in flight until this host time (s); 0 when none.
    pub in_flight_until: i64,
    /// What the fetch in flight asked for.
    pub in_flight: Fetch,
    /// What the next fetch asks for (set when a scheduled fetch is found due).
    pub next: Fetch,
    /// What the last fetch this VM started asked for.
    pub last: Fetch,
    /// Consecutive failed JWKS fetches (for the backoff of the VM that holds the lease).
    pub failures: u32,
    /// Host time (s) before which this VM does not refetch for an unknown `kid`.
    pub refetch_not_before: i64,
    /// With discovery: shared-data key of the discovered `jwks_uri`.
    pub target_key: String,
    /// With discovery: the `jwks_uri` this VM knows, and the CAS it was read with.
    pub target: Option<Target>,
    pub target_cas: Option<u32>,
    /// Consecutive failed discoveries.
    pub discovery_failures: u32,
}

impl RemoteState {
    pub fn new(p: &Provider, r: &RemoteJwks) -> RemoteState {
        let id = match &r.source {
            JwksSource::Fixed { path, authority } => {
                format!("{}|{}|{authority}|{path}", p.issuer, r.cluster)
            }
            JwksSource::Discovery(d) => format!(
                "{}|{}|{}|{}|discovery|{}",
                p.issuer, r.cluster, d.authority, d.path, d.jwks_cluster
            ),
        };
        RemoteState {
            data_key: format!("svcauth.jwks.{id}"),
            lease_key: format!("svcauth.lease.{id}"),
            target_key: format!("svcauth.discovery.{id}"),
            ..RemoteState::default()
        }
    }
}

/// All providers' states, as `Shared` holds them (`None` for providers without `remote_jwks`).
pub type States = RefCell<Vec<Option<RemoteState>>>;

/// A copy of provider `p`'s state.
pub fn get(all: &States, p: usize) -> Option<RemoteState> {
    all.try_borrow().ok()?.get(p)?.clone()
}

/// Changes provider `p`'s state.
pub fn update(all: &States, p: usize, f: impl FnOnce(&mut RemoteState)) {
    if let Ok(mut all) = all.try_borrow_mut() {
        if let Some(Some(s)) = all.get_mut(p) {
            f(s);
        }
    }
}
