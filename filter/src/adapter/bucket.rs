//! The per-caller rate limit against the host: one token bucket per (provider, caller) in
//! shared data, updated with compare-and-swap so every worker VM draws from the same bucket.
//! Fails closed: a request that cannot be counted is refused, never let through uncounted.
//!
//! Uses: `host` (the seam) and `ratelimit` (the bucket arithmetic and its key).

use super::host::{Host, SharedError};
use crate::ratelimit::{self, Bucket, Limit};

/// How often a lost compare-and-swap is retried before the request is refused.
pub const CAS_ATTEMPTS: usize = 8;

/// The answer for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Counted and within the limit.
    Allowed,
    /// Over the limit: retry after this many seconds.
    Limited(u64),
    /// Could not be counted (no clock, a host error, a CAS loop that kept losing): refused,
    /// with a retry after one second.
    Uncounted,
}

impl Verdict {
    /// The `Retry-After` seconds when the request is refused.
    pub fn retry_after(self) -> Option<u64> {
        match self {
            Verdict::Allowed => None,
            Verdict::Limited(s) => Some(s),
            Verdict::Uncounted => Some(1),
        }
    }
}

/// Takes one request from `caller`'s bucket for `limit`.
pub fn take(host: &dyn Host, provider: &str, caller: &str, limit: &Limit) -> Verdict {
    let Some(now_ms) = host.now_millis() else {
        return Verdict::Uncounted;
    };
    let key = ratelimit::bucket_key(provider, caller);
    for _ in 0..CAS_ATTEMPTS {
        let Ok((data, cas)) = host.get_shared(&key) else {
            return Verdict::Uncounted;
        };
        let prev = data.as_deref().and_then(Bucket::decode);
        let (next, verdict) = match ratelimit::take(prev, limit, now_ms) {
            Ok(b) => (b, Verdict::Allowed),
            Err((b, retry)) => (b, Verdict::Limited(retry)),
        };
        match host.set_shared(&key, next.encode().as_bytes(), cas) {
            Ok(()) => return verdict,
            // Another worker updated the bucket since it was read: read it again.
            Err(SharedError::CasMismatch) => continue,
            Err(SharedError::Other) => return Verdict::Uncounted,
        }
    }
    Verdict::Uncounted
}
