//! `decide` on arbitrary requests: the first byte moves the clock, the rest is `name: value`
//! lines (lossy UTF-8, as the adapter reads header values). Two calls share a cache.
#![no_main]

use libfuzzer_sys::fuzz_target;
use svcauth_filter::cache::TokenCache;
use svcauth_filter::decide::{decide, Decision};
use svcauth_filter::fixtures::{header_safe, without_cache_flag, NOW};

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let Some((&clock, rest)) = data.split_first() else {
        return;
    };
    let now = NOW + (i64::from(clock) - 128) * 8;
    let text = common::splice(&String::from_utf8_lossy(rest));
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in text.split('\n') {
        let (k, v) = line.split_once(": ").unwrap_or((line, ""));
        headers.push((k.to_ascii_lowercase(), v.to_string()));
    }
    let mut cache = TokenCache::new(4);
    let first = decide(common::config(), &mut cache, &headers, now);
    let again = decide(common::config(), &mut cache, &headers, now);
    // A cache hit never changes what is decided.
    let (first, again) = (without_cache_flag(first), without_cache_flag(again));
    assert_eq!(first, again);
    if let Decision::Allow(a) = first {
        if let Some(id) = a.identity {
            assert!(header_safe(&id.subject));
            assert!(header_safe(&id.scopes_joined));
        }
    }
});
