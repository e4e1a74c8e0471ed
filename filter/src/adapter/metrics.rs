//! The filter's counters, defined once per VM. Envoy shows them as `wasmcustom.svcauth.*`.

use proxy_wasm::hostcalls::{define_metric, increment_metric, record_metric};
use proxy_wasm::types::MetricType;

use crate::reason::Reason;

/// Metric ids; `None` where the host refused to define one (then it is simply not counted).
pub struct Metrics {
    pub allowed: Option<u32>,
    pub denied: Option<u32>,
    per_reason: Vec<(Reason, Option<u32>)>,
    pub cache_hit: Option<u32>,
    pub cache_miss: Option<u32>,
    /// Signatures verified by the host's native crypto / inside the wasm VM.
    pub signature_host: Option<u32>,
    pub signature_wasm: Option<u32>,
    jwks_fetch_success: Option<u32>,
    jwks_fetch_failed: Option<u32>,
    /// Per provider (index-aligned): a gauge of the fetched keys' age, for remote providers.
    jwks_age: Vec<Option<u32>>,
}

fn counter(name: &str) -> Option<u32> {
    define_metric(MetricType::Counter, name).ok()
}

impl Metrics {
    pub fn define(config: &crate::config::Config) -> Metrics {
        Metrics {
            allowed: counter("svcauth.allowed"),
            denied: counter("svcauth.denied"),
            per_reason: Reason::ALL
                .iter()
                .map(|r| (*r, counter(&format!("svcauth.denied.{}", r.code()))))
                .collect(),
            cache_hit: counter("svcauth.cache_hit"),
            cache_miss: counter("svcauth.cache_miss"),
            signature_host: counter("svcauth.signature_host"),
            signature_wasm: counter("svcauth.signature_wasm"),
            jwks_fetch_success: counter("svcauth.jwks_fetch_success"),
            jwks_fetch_failed: counter("svcauth.jwks_fetch_failed"),
            jwks_age: config
                .providers
                .iter()
                .map(|p| {
                    p.remote_jwks.as_ref().and_then(|_| {
                        define_metric(
                            MetricType::Gauge,
                            &format!("svcauth.jwks_age_seconds.{}", p.name),
                        )
                        .ok()
                    })
                })
                .collect(),
        }
    }

    pub fn inc(id: Option<u32>) {
        if let Some(id) = id {
            let _ = increment_metric(id, 1);
        }
    }

    pub fn denied_for(&self, reason: Reason) {
        Self::inc(self.denied);
        Self::inc(
            self.per_reason
                .iter()
                .find(|(r, _)| *r == reason)
                .and_then(|(_, id)| *id),
        );
    }

    pub fn jwks_fetch(&self, ok: bool) {
        Self::inc(if ok {
            self.jwks_fetch_success
        } else {
            self.jwks_fetch_failed
        });
    }

    /// Records how old provider `p`'s fetched keys are.
    pub fn jwks_age(&self, p: usize, seconds: i64) {
        if let Some(Some(id)) = self.jwks_age.get(p) {
            let _ = record_metric(*id, u64::try_from(seconds).unwrap_or(0));
        }
    }

    pub fn cache(&self, hit: Option<bool>) {
        match hit {
            Some(true) => Self::inc(self.cache_hit),
            Some(false) => Self::inc(self.cache_miss),
            None => {}
        }
    }
}
