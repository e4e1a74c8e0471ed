//! Properties of the core on generated inputs (proptest), the complement of the example tables:
//!
//! - no input panics: arbitrary bytes and near-valid JSON as plugin configs, JWK Sets and fetched
//!   key bodies; arbitrary text and near-valid JWS as tokens; arbitrary request headers, paths
//!   and clocks through `decide` (a panic would kill the wasm VM, and every request with it);
//! - tampering never passes: any single-byte change to a valid token's header, payload or
//!   signature is never allowed (exhaustively over every position for two tokens, by sampling
//!   for every algorithm family), also when the untouched token sits in the cache;
//! - an allowed identity never carries a byte that could split or inject a header;
//! - decisions are deterministic: the same request at the same clock decides the same, and a
//!   shared cache never changes a decision (only its `cache_hit`), over sequences of requests on
//!   a moving clock that cross tokens' expiries.
//!
//! Case counts keep the whole module well under a minute in a debug build on two cores;
//! `PROPTEST_CASES=N` runs every property N times instead.
//!
//! One file per kind: `no_panics`, `tampering`, `determinism`; the generators they draw from are
//! in `json_strategies` (JSON, configs, JWKs) and `request_strategies` (tokens, headers, paths,
//! clocks); this file holds the shared inputs (case counts, the config, valid tokens). The tests
//! may use anything in the crate.

mod determinism;
mod json_strategies;
mod no_panics;
mod request_strategies;
mod tampering;

use std::sync::OnceLock;

use proptest::test_runner::Config as PtConfig;

use crate::config::Config;
use crate::decide::Decision;
use crate::fixtures::{self, hmac_token, token_alg, Fixture, NOW};
pub(super) use crate::fixtures::{header_safe, without_cache_flag};
use crate::token::jws::Alg;

fn cases(n: u32) -> PtConfig {
    let n = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(n);
    PtConfig {
        cases: n,
        // Failures print the minimal input and seed; no regression files in the source tree.
        failure_persistence: None,
        ..PtConfig::default()
    }
}

fn config() -> &'static Config {
    fixtures::compiled().unwrap()
}

/// Valid tokens at `NOW` (scope `orders:read`, allowed on `/orders`), one per algorithm family.
fn valid_tokens() -> &'static [(&'static str, String)] {
    static TOKENS: OnceLock<Vec<(&'static str, String)>> = OnceLock::new();
    TOKENS.get_or_init(|| {
        let c = fixtures::claims(NOW);
        vec![
            ("HS256", hmac_token(Alg::HS256, &c)),
            ("HS512", hmac_token(Alg::HS512, &c)),
            ("ES256", token_alg(Fixture::Ec256, Alg::ES256, &c)),
            ("ES384", token_alg(Fixture::Ec384, Alg::ES384, &c)),
            ("RS256", token_alg(Fixture::RsaA, Alg::RS256, &c)),
            ("PS256", token_alg(Fixture::RsaA, Alg::PS256, &c)),
            ("RS256 rsa-b", token_alg(Fixture::RsaB, Alg::RS256, &c)),
            ("EdDSA", token_alg(Fixture::Ed25519, Alg::EdDSA, &c)),
        ]
    })
}

fn request(path: &str, auth: &str) -> Vec<(String, String)> {
    vec![
        (":method".into(), "GET".into()),
        (":path".into(), path.into()),
        ("authorization".into(), auth.into()),
    ]
}

fn allowed(d: &Decision) -> bool {
    matches!(d, Decision::Allow(_))
}
