//! The filter's counters, defined once per VM and kept in the VM: a request only adds to a
//! cell, and the root context's tick (every 500 ms) flushes the sums to the host, one host
//! call per counter that moved. Envoy shows them as `wasmcustom.svcauth.*`.
//!
//! Uses: `host` (the seam) and `reason` (one counter per reason code).

use std::cell::Cell;

use super::host::Host;
use crate::contract::reason::Reason;

/// One counter: its host id (`None` where the host refused to define it) and what it has not
/// been told yet.
#[derive(Debug, Default)]
pub struct Counter {
    id: Option<u32>,
    pending: Cell<u64>,
}

impl Counter {
    pub fn new(id: Option<u32>) -> Counter {
        Counter {
            id,
            pending: Cell::new(0),
        }
    }

    pub fn bump(&self) {
        self.pending.set(self.pending.get().saturating_add(1));
    }

    fn flush(&self, host: &dyn Host) {
        let n = self.pending.replace(0);
        if let (Some(id), true) = (self.id, n > 0) {
            host.increment(id, n);
        }
    }
}

/// Every counter of the filter.
#[derive(Debug, Default)]
pub struct Counters {
    pub allowed: Counter,
    pub denied: Counter,
    /// Index-aligned with [`Reason::ALL`].
    pub per_reason: Vec<Counter>,
    pub cache_hit: Counter,
    pub cache_miss: Counter,
    /// Signatures verified by the host's native crypto / inside the wasm VM.
    pub signature_host: Counter,
    pub signature_wasm: Counter,
    pub jwks_fetch_success: Counter,
    pub jwks_fetch_failed: Counter,
    /// OIDC discovery documents used / refused (fetch failed, wrong issuer, bad `jwks_uri`).
    pub discovery_success: Counter,
    pub discovery_failed: Counter,
    /// Per provider (index-aligned): a gauge of the fetched keys' age, for remote providers.
    pub jwks_age: Vec<Option<u32>>,
}

/// How counters are defined: `(name, is_gauge) -> id`.
pub type Define<'a> = dyn Fn(&str, bool) -> Option<u32> + 'a;

impl Counters {
    /// Defines every counter (names without Envoy's `wasmcustom.` prefix).
    pub fn define(config: &crate::config::Config, define: &Define<'_>) -> Counters {
        let c = |name: &str| Counter::new(define(name, false));
        Counters {
            allowed: c("svcauth.allowed"),
            denied: c("svcauth.denied"),
            per_reason: Reason::ALL
                .iter()
                .map(|r| c(&format!("svcauth.denied.{}", r.code())))
                .collect(),
            cache_hit: c("svcauth.cache_hit"),
            cache_miss: c("svcauth.cache_miss"),
            signature_host: c("svcauth.signature_host"),
            signature_wasm: c("svcauth.signature_wasm"),
            jwks_fetch_success: c("svcauth.jwks_fetch_success"),
            jwks_fetch_failed: c("svcauth.jwks_fetch_failed"),
            discovery_success: c("svcauth.discovery_success"),
            discovery_failed: c("svcauth.discovery_failed"),
            jwks_age: config
                .providers
                .iter()
                .map(|p| {
                    p.remote_jwks
                        .as_ref()
                        .and_then(|_| define(&format!("svcauth.jwks_age_seconds.{}", p.name), true))
                })
                .collect(),
        }
    }

    pub fn denied_for(&self, reason: Reason) {
        self.denied.bump();
        if let Some(i) = Reason::ALL.iter().position(|r| *r == reason) {
            if let Some(c) = self.per_reason.get(i) {
                c.bump();
            }
        }
    }

    pub fn cache(&self, hit: Option<bool>) {
        match hit {
            Some(true) => self.cache_hit.bump(),
            Some(false) => self.cache_miss.bump(),
            None => {}
        }
    }

    pub fn jwks_fetch(&self, ok: bool) {
        if ok {
            self.jwks_fetch_success.bump()
        } else {
            self.jwks_fetch_failed.bump()
        }
    }

    pub fn discovery(&self, ok: bool) {
        if ok {
            self.discovery_success.bump()
        } else {
            self.discovery_failed.bump()
        }
    }

    /// Records how old provider `p`'s fetched keys are (a gauge: written at once, on the tick).
    pub fn jwks_age(&self, host: &dyn Host, p: usize, seconds: i64) {
        if let Some(Some(id)) = self.jwks_age.get(p) {
            host.record(*id, u64::try_from(seconds).unwrap_or(0));
        }
    }

    /// Tells the host every count since the last flush.
    pub fn flush(&self, host: &dyn Host) {
        for c in [
            &self.allowed,
            &self.denied,
            &self.cache_hit,
            &self.cache_miss,
            &self.signature_host,
            &self.signature_wasm,
            &self.jwks_fetch_success,
            &self.jwks_fetch_failed,
            &self.discovery_success,
            &self.discovery_failed,
        ] {
            c.flush(host);
        }
        for c in &self.per_reason {
            c.flush(host);
        }
    }
}
