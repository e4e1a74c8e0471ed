//! Per-caller rate limits: a token bucket per (provider, caller), its state kept by the adapter
//! in shared data so every worker VM draws from the same bucket.
//!
//! ```json
//! "rate_limits": [
//!   {"callers": ["reporting-service"], "requests_per_minute": 60},
//!   {"callers": ["*"], "requests_per_minute": 1200, "burst": 100}
//! ]
//! ```
//! The first entry naming the caller (its subject) or `*` applies; a caller no entry names is
//! not limited.

use serde::Deserialize;

use crate::config::error::ConfigError;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLimit {
    callers: Vec<String>,
    requests_per_minute: u32,
    #[serde(default)]
    burst: Option<u32>,
}

/// One compiled limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limit {
    /// Subjects it applies to; `*` matches every caller.
    pub callers: Vec<String>,
    pub requests_per_minute: u32,
    /// Bucket capacity (default: `requests_per_minute`).
    pub burst: u32,
}

/// The shared-data key of a caller's bucket. The provider name is length-prefixed, so no two
/// (provider, caller) pairs share a key whatever dots their names hold (`a.b`/`c` vs `a`/`b.c`).
pub fn bucket_key(provider: &str, caller: &str) -> String {
    format!("svcauth.rl.{}.{provider}.{caller}", provider.len())
}

pub(crate) fn compile(raw: Vec<RawLimit>) -> Result<Vec<Limit>, ConfigError> {
    let mut out = Vec::with_capacity(raw.len());
    for (i, r) in raw.into_iter().enumerate() {
        let at = format!("rate_limits[{i}]");
        if r.callers.is_empty() || r.callers.iter().any(String::is_empty) {
            return Err(ConfigError(format!(
                "{at}.callers: must list callers (subjects) or \"*\""
            )));
        }
        if r.requests_per_minute == 0 || r.requests_per_minute > 6_000_000 {
            return Err(ConfigError(format!(
                "{at}.requests_per_minute: must be between 1 and 6000000"
            )));
        }
        let burst = r.burst.unwrap_or(r.requests_per_minute);
        if burst == 0 {
            return Err(ConfigError(format!("{at}.burst: must be at least 1")));
        }
        out.push(Limit {
            callers: r.callers,
            requests_per_minute: r.requests_per_minute,
            burst,
        });
    }
    Ok(out)
}

/// The limit for `subject`, if any.
pub fn limit_for<'l>(limits: &'l [Limit], subject: &str) -> Option<&'l Limit> {
    limits
        .iter()
        .find(|l| l.callers.iter().any(|c| c == "*" || c == subject))
}

/// A bucket's state: tokens in thousandths, and when it was last refilled (host ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bucket {
    pub milli_tokens: i64,
    pub at_ms: i64,
}

impl Bucket {
    /// `"<milli_tokens> <at_ms>"`, as kept in shared data.
    pub fn encode(self) -> String {
        format!("{} {}", self.milli_tokens, self.at_ms)
    }

    pub fn decode(s: &[u8]) -> Option<Bucket> {
        let s = std::str::from_utf8(s).ok()?;
        let (a, b) = s.split_once(' ')?;
        Some(Bucket {
            milli_tokens: a.parse().ok()?,
            at_ms: b.parse().ok()?,
        })
    }
}

/// Takes one request from the bucket at `now_ms`. `Ok(new state)` if allowed; `Err((state,
/// seconds until a token is available))` if not.
pub fn take(prev: Option<Bucket>, limit: &Limit, now_ms: i64) -> Result<Bucket, (Bucket, u64)> {
    let cap = i64::from(limit.burst) * 1000;
    let rate = i64::from(limit.requests_per_minute); // milli-tokens per ms = rate / 60
    let b = match prev {
        None => Bucket {
            milli_tokens: cap,
            at_ms: now_ms,
        },
        Some(p) => {
            let elapsed = now_ms.saturating_sub(p.at_ms).max(0);
            let refill = elapsed.saturating_mul(rate) / 60;
            Bucket {
                milli_tokens: p.milli_tokens.saturating_add(refill).min(cap),
                at_ms: now_ms,
            }
        }
    };
    if b.milli_tokens >= 1000 {
        Ok(Bucket {
            milli_tokens: b.milli_tokens - 1000,
            at_ms: now_ms,
        })
    } else {
        let missing = 1000 - b.milli_tokens;
        // ms until `missing` milli-tokens refill, rounded up to whole seconds.
        let ms = (missing * 60 + rate - 1) / rate.max(1);
        let secs = u64::try_from((ms + 999) / 1000).unwrap_or(1).max(1);
        Err((b, secs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_keys_of_dotted_names_never_collide() {
        assert_ne!(bucket_key("a.b", "c"), bucket_key("a", "b.c"));
        assert_ne!(bucket_key("a", "b.c.d"), bucket_key("a.b", "c.d"));
        assert_eq!(bucket_key("p", "svc"), "svcauth.rl.1.p.svc");
    }

    fn limit(rpm: u32, burst: u32) -> Limit {
        Limit {
            callers: vec!["*".into()],
            requests_per_minute: rpm,
            burst,
        }
    }

    #[test]
    fn a_full_bucket_allows_its_burst_then_refuses_with_a_retry_after() {
        let l = limit(60, 3);
        let mut state = None;
        for _ in 0..3 {
            state = Some(take(state, &l, 0).unwrap());
        }
        let (_, retry) = take(state, &l, 0).unwrap_err();
        assert_eq!(retry, 1, "60 per minute refills one per second");
    }

    #[test]
    fn the_bucket_refills_at_the_configured_rate() {
        let l = limit(60, 1);
        let s = take(None, &l, 0).unwrap();
        assert!(take(Some(s), &l, 500).is_err());
        assert!(take(Some(s), &l, 1000).is_ok());
    }

    #[test]
    fn a_slow_limit_tells_the_caller_to_wait_longer() {
        let l = limit(2, 1);
        let s = take(None, &l, 0).unwrap();
        let (_, retry) = take(Some(s), &l, 0).unwrap_err();
        assert_eq!(retry, 30);
    }

    #[test]
    fn the_first_limit_naming_the_caller_applies() {
        let ls = vec![
            Limit {
                callers: vec!["batch".into()],
                requests_per_minute: 1,
                burst: 1,
            },
            limit(100, 100),
        ];
        assert_eq!(
            limit_for(&ls, "batch").map(|l| l.requests_per_minute),
            Some(1)
        );
        assert_eq!(
            limit_for(&ls, "web").map(|l| l.requests_per_minute),
            Some(100)
        );
        assert!(limit_for(&ls[..1], "web").is_none());
    }

    #[test]
    fn bucket_state_round_trips_and_garbage_is_none() {
        let b = Bucket {
            milli_tokens: 1500,
            at_ms: 42,
        };
        assert_eq!(Bucket::decode(b.encode().as_bytes()), Some(b));
        assert_eq!(Bucket::decode(b"x y"), None);
        assert_eq!(Bucket::decode(&[0xff]), None);
    }
}
