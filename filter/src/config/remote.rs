//! Keys fetched at run time (`remote_jwks`): `RemoteJwks` (the cluster, refresh and refetch
//! intervals, bounds) and `JwksSource` (a fixed path, or the `jwks_uri` of OIDC discovery),
//! and their compile step.
//! May use: `config::raw`, `config::error`, `discovery`.

use crate::discovery::Discovery;

use super::error::{err, ConfigError};
use super::raw::RawRemoteJwks;

/// Where and how often a provider's JWK Set is fetched (through an Envoy cluster).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteJwks {
    /// The cluster of the JWKS fetch, or with discovery of the discovery document's.
    pub cluster: String,
    /// Where the JWK Set is: a fixed path, or found by OIDC discovery.
    pub source: JwksSource,
    /// JWKS refresh interval.
    pub refresh_seconds: u64,
    /// JWKS fetch timeout.
    pub timeout_ms: u64,
    /// Larger JWKS responses are refused before their body is read.
    pub max_bytes: usize,
    /// At most one refetch for an unknown `kid` per this many seconds, per worker VM.
    pub refetch_interval_seconds: u64,
    /// At most this many requests of one worker VM wait for a refetch; beyond, deny at once.
    pub max_waiting: usize,
}

/// Where a remote JWK Set is fetched from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    /// `GET path` from [`RemoteJwks::cluster`] with this `:authority`.
    Fixed { path: String, authority: String },
    /// The `jwks_uri` of the issuer's discovery document.
    Discovery(Discovery),
}

/// A provider's `remote_jwks`: the cluster, the intervals and bounds (defaults applied), and
/// where the set is: a fixed path and authority, or OIDC discovery from the issuer.
pub(super) fn compile_remote(
    name: &str,
    issuer: &str,
    r: RawRemoteJwks,
) -> Result<RemoteJwks, ConfigError> {
    let at = |field: &str| format!("providers.{name}.remote_jwks.{field}");
    if r.cluster.is_empty() {
        return err(at("cluster"), "must name an Envoy cluster");
    }
    let refresh_seconds = r.refresh_seconds.unwrap_or(300);
    if !(1..=86_400).contains(&refresh_seconds) {
        return err(at("refresh_seconds"), "must be between 1 and 86400");
    }
    let timeout_ms = r.timeout_ms.unwrap_or(1500);
    if !(10..=60_000).contains(&timeout_ms) {
        return err(at("timeout_ms"), "must be between 10 and 60000");
    }
    let max_bytes = r.max_bytes.unwrap_or(65_536);
    if !(256..=1_048_576).contains(&max_bytes) {
        return err(at("max_bytes"), "must be between 256 and 1048576");
    }
    let refetch_interval_seconds = r.refetch_interval_seconds.unwrap_or(10);
    if !(1..=3600).contains(&refetch_interval_seconds) {
        return err(at("refetch_interval_seconds"), "must be between 1 and 3600");
    }
    let max_waiting = r.max_waiting.unwrap_or(1024);
    if !(1..=65_536).contains(&max_waiting) {
        return err(at("max_waiting"), "must be between 1 and 65536");
    }
    let check_authority = |authority: &str| {
        if authority.is_empty()
            || authority
                .chars()
                .any(|c| c.is_control() || c == ' ' || c == '/')
        {
            return err(
                at("authority"),
                format!("{authority:?} is not a host[:port]"),
            );
        }
        Ok(())
    };
    let source = match r.discovery {
        None | Some(crate::discovery::RawDiscoveryOpt::Off) => {
            let path = r.path.unwrap_or_else(|| "/.well-known/jwks.json".into());
            if !path.starts_with('/') || path.chars().any(|c| c.is_control() || c == ' ') {
                return err(at("path"), format!("{path:?} must be an absolute path"));
            }
            let authority = r.authority.unwrap_or_else(|| r.cluster.clone());
            check_authority(&authority)?;
            JwksSource::Fixed { path, authority }
        }
        Some(crate::discovery::RawDiscoveryOpt::On(d)) => {
            if r.path.is_some() {
                return err(
                    at("path"),
                    "not with discovery: the JWKS path is the discovery document's jwks_uri (discovery.path is the document's own path)",
                );
            }
            if let Some(a) = &r.authority {
                check_authority(a)?;
            }
            let d = crate::discovery::compile(
                &format!("providers.{name}.remote_jwks"),
                d,
                issuer,
                &r.cluster,
                r.authority,
                timeout_ms,
            )
            .map_err(ConfigError)?;
            JwksSource::Discovery(d)
        }
    };
    Ok(RemoteJwks {
        cluster: r.cluster,
        source,
        refresh_seconds,
        timeout_ms,
        max_bytes,
        refetch_interval_seconds,
        max_waiting,
    })
}
