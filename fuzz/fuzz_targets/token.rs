//! `jws::parse` and `verify::verify` on arbitrary tokens (with valid ones spliced in by `$0`..).
#![no_main]

use libfuzzer_sys::fuzz_target;
use svcauth_filter::fixtures::NOW;
use svcauth_filter::{jws, verify};

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let t = common::splice(&String::from_utf8_lossy(data));
    let _ = jws::parse(&t);
    if let Ok(v) = verify::verify(common::config(), &t, NOW) {
        // Only the untouched fixture tokens verify.
        assert!(
            common::tokens().iter().any(|x| *x == t),
            "accepted {t:?} as {v:?}"
        );
    }
});
