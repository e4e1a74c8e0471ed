//! `Config::from_json`, `token::set::parse_set` and fetched-key parsing on arbitrary bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use svcauth_filter::config::Config;
use svcauth_filter::{fixtures, keys};

fuzz_target!(|data: &[u8]| {
    let _ = Config::from_json(data, &fixtures::env);
    let _ = svcauth_filter::token::set::parse_set(&String::from_utf8_lossy(data));
    let _ = keys::parse_fetched(data, 65536);
});
