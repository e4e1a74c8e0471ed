//! The verified-token cache, one per worker VM.
//!
//! Keyed by a hash of the token with a full compare on hit; an entry is used only while the
//! host clock is within the token's `exp` (plus the provider's skew), checked on every hit.
//! Only successful verifications are stored, so a hit never allows what a full check would
//! deny; rule and scope checks run on every request regardless.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::rc::Rc;

use crate::verify::Verified;

struct Entry {
    token: Box<str>,
    /// Last second (inclusive) at which the entry may be used.
    valid_until: i64,
    verified: Rc<Verified>,
}

/// A bounded map from token to its verified identity.
pub struct TokenCache {
    max_entries: usize,
    map: HashMap<u64, Entry>,
    hasher: std::collections::hash_map::RandomState,
    last_sweep: i64,
    rand: u64,
}

impl TokenCache {
    /// A cache of at most `max_entries` tokens (0 disables it).
    pub fn new(max_entries: usize) -> TokenCache {
        TokenCache {
            max_entries,
            map: HashMap::with_capacity(max_entries.min(1024)),
            hasher: std::collections::hash_map::RandomState::new(),
            last_sweep: i64::MIN,
            rand: 0x9e37_79b9_7f4a_7c15,
        }
    }

    /// Hashes the token's length and last 32 bytes (the signature's end: high entropy, and a
    /// hit is confirmed by a full compare anyway), so a lookup costs the same for any size.
    fn key(&self, token: &str) -> u64 {
        let bytes = token.as_bytes();
        let tail = bytes.get(bytes.len().saturating_sub(32)..).unwrap_or(bytes);
        let mut h = self.hasher.build_hasher();
        h.write_usize(bytes.len());
        h.write(tail);
        h.finish()
    }

    /// A cheap pseudo-random number (xorshift) for picking an eviction victim.
    fn next_rand(&mut self) -> u64 {
        let mut x = self.rand;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rand = x;
        x
    }

    /// The verified identity for `token` if cached and still within its lifetime at `now`.
    pub fn get(&mut self, token: &str, now: i64) -> Option<Rc<Verified>> {
        let k = self.key(token);
        let e = self.map.get(&k)?;
        if &*e.token != token {
            return None;
        }
        if now > e.valid_until {
            self.map.remove(&k);
            return None;
        }
        Some(Rc::clone(&e.verified))
    }

    /// Stores a verified token usable until `valid_until` (inclusive).
    pub fn insert(&mut self, token: &str, valid_until: i64, verified: Rc<Verified>, now: i64) {
        if self.max_entries == 0 {
            return;
        }
        if self.map.len() >= self.max_entries {
            // Drop expired entries, at most once a second (a full scan).
            if now > self.last_sweep {
                self.map.retain(|_, e| e.valid_until >= now);
                self.last_sweep = now;
            }
            if self.map.len() >= self.max_entries {
                // Still full of live tokens: drop a random one.
                let skip = usize::try_from(self.next_rand() % self.map.len() as u64).unwrap_or(0);
                if let Some(k) = self.map.keys().nth(skip).copied() {
                    self.map.remove(&k);
                }
            }
        }
        let k = self.key(token);
        self.map.insert(
            k,
            Entry {
                token: token.into(),
                valid_until,
                verified,
            },
        );
    }

    /// Empties the cache (keys or config changed).
    pub fn clear(&mut self) {
        self.map.clear();
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(sub: &str) -> Rc<Verified> {
        Rc::new(Verified {
            provider: 0,
            subject: sub.into(),
            scopes: vec![],
            scopes_joined: String::new(),
            claim_headers: vec![],
            log_claims: vec![],
            rule_claims: vec![],
            exp: 100,
        })
    }

    #[test]
    fn a_cached_token_is_returned_until_its_deadline_and_not_after() {
        let mut c = TokenCache::new(4);
        c.insert("t1", 100, v("a"), 0);
        assert_eq!(c.get("t1", 100).unwrap().subject, "a");
        assert!(c.get("t1", 101).is_none());
        assert!(c.is_empty(), "an expired entry is dropped on access");
    }

    #[test]
    fn a_different_token_never_hits() {
        let mut c = TokenCache::new(4);
        c.insert("t1", 100, v("a"), 0);
        assert!(c.get("t2", 0).is_none());
    }

    #[test]
    fn the_cache_never_grows_beyond_its_bound() {
        let mut c = TokenCache::new(3);
        for i in 0..50 {
            c.insert(&format!("t{i}"), 1000, v("a"), 0);
            assert!(c.len() <= 3);
        }
        assert!(c.get("t49", 0).is_some(), "the newest entry is kept");
    }

    #[test]
    fn a_zero_sized_cache_stores_nothing() {
        let mut c = TokenCache::new(0);
        c.insert("t1", 100, v("a"), 0);
        assert!(c.get("t1", 0).is_none());
    }
}
