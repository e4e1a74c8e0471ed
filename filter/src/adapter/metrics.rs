//! The filter's counters, defined once per VM. Envoy shows them as `wasmcustom.svcauth.*`.

use proxy_wasm::hostcalls::{define_metric, increment_metric};
use proxy_wasm::types::MetricType;

use crate::reason::Reason;

/// Metric ids; `None` where the host refused to define one (then it is simply not counted).
pub struct Metrics {
    pub allowed: Option<u32>,
    pub denied: Option<u32>,
    per_reason: Vec<(Reason, Option<u32>)>,
    pub cache_hit: Option<u32>,
    pub cache_miss: Option<u32>,
}

fn counter(name: &str) -> Option<u32> {
    define_metric(MetricType::Counter, name).ok()
}

impl Metrics {
    pub fn define() -> Metrics {
        Metrics {
            allowed: counter("svcauth.allowed"),
            denied: counter("svcauth.denied"),
            per_reason: Reason::ALL
                .iter()
                .map(|r| (*r, counter(&format!("svcauth.denied.{}", r.code()))))
                .collect(),
            cache_hit: counter("svcauth.cache_hit"),
            cache_miss: counter("svcauth.cache_miss"),
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

    pub fn cache(&self, hit: Option<bool>) {
        match hit {
            Some(true) => Self::inc(self.cache_hit),
            Some(false) => Self::inc(self.cache_miss),
            None => {}
        }
    }
}
