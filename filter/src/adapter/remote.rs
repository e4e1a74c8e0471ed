//! One VM's view of a remote key source: the shared-data keys of its published set and fetch
//! lease, and this VM's fetch state (in flight, failures, refetch rate limit).
//!
//! Uses: the core's `config`.

use crate::config::{Provider, RemoteJwks};

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
    /// Consecutive failures (for the backoff of the VM that holds the lease).
    pub failures: u32,
    /// Host time (s) before which this VM does not refetch for an unknown `kid`.
    pub refetch_not_before: i64,
}

impl RemoteState {
    pub fn new(p: &Provider, r: &RemoteJwks) -> RemoteState {
        let id = format!("{}|{}|{}|{}", p.issuer, r.cluster, r.authority, r.path);
        RemoteState {
            data_key: format!("svcauth.jwks.{id}"),
            lease_key: format!("svcauth.lease.{id}"),
            ..RemoteState::default()
        }
    }
}
