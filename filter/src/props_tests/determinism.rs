//! Decisions are deterministic: the same request at the same clock decides the same, and a
//! shared cache never changes a decision over sequences of requests on a moving clock.

use std::sync::OnceLock;

use proptest::prelude::*;
use serde_json::{json, Value};

use crate::cache::TokenCache;
use crate::decide::decide;
use crate::fixtures::{claims_with, hmac_token, token_alg, Fixture, NOW};
use crate::token::jws::Alg;

use super::request_strategies::{clock, headers};
use super::{allowed, cases, config, request, without_cache_flag};

/// Tokens whose expiries fall inside the clocks of [`sequence`], with scopes for some routes.
fn pool() -> &'static [String] {
    static POOL: OnceLock<Vec<String>> = OnceLock::new();
    POOL.get_or_init(|| {
        let with = |c: Value| claims_with(NOW, c);
        let mut v = vec![
            hmac_token(Alg::HS256, &with(json!({"exp": NOW + 5}))),
            hmac_token(Alg::HS256, &with(json!({"exp": NOW + 70, "iat": NOW - 10}))),
            token_alg(Fixture::Ec256, Alg::ES256, &with(json!({"nbf": NOW + 100}))),
            token_alg(Fixture::Ec256, Alg::ES256, &with(json!({"exp": NOW - 55}))),
            token_alg(
                Fixture::Ec256,
                Alg::ES256,
                &with(json!({"scope": "orders:*"})),
            ),
            hmac_token(
                Alg::HS512,
                &with(json!({"scope": ["ai-services:read"], "exp": NOW + 30})),
            ),
            hmac_token(Alg::HS256, &with(json!({"aud": "other"}))),
            token_alg(
                Fixture::Ed25519,
                Alg::EdDSA,
                &with(json!({"tenant_id": "t-1"})),
            ),
            "garbage".to_string(),
        ];
        // A valid header and payload under another token's signature.
        let (head, _) = v[0].rsplit_once('.').unwrap();
        let other_sig = v[1].rsplit_once('.').unwrap().1;
        v.push(format!("{head}.{other_sig}"));
        v
    })
}

/// A sequence of requests on a clock that only moves forward (as the host's does), crossing the
/// pool's expiry and not-before instants.
fn sequence() -> impl Strategy<Value = Vec<(usize, &'static str, i64)>> {
    prop::collection::vec(
        (
            0..pool().len(),
            prop::sample::select(vec!["/orders", "/ai/x", "/write", "/any-token", "/health"]),
            0i64..40,
        ),
        1..24,
    )
    .prop_map(|steps| {
        let mut now = NOW - 20;
        steps
            .into_iter()
            .map(|(t, p, dt)| {
                now += dt;
                (t, p, now)
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(cases(300))]

    #[test]
    fn the_same_request_at_the_same_clock_decides_the_same(h in headers(), now in clock()) {
        let a = decide(config(), &mut TokenCache::new(0), &h, now);
        let b = decide(config(), &mut TokenCache::new(16), &h, now);
        prop_assert_eq!(&a, &b);
    }

    #[test]
    fn a_shared_cache_never_changes_a_decision(steps in sequence(), size in 0usize..4) {
        let mut cache = TokenCache::new(size);
        for (t, path, now) in steps {
            let auth = format!("Bearer {}", pool()[t]);
            let req = request(path, &auth);
            let cached = decide(config(), &mut cache, &req, now);
            let fresh = decide(config(), &mut TokenCache::new(0), &req, now);
            prop_assert_eq!(without_cache_flag(cached), without_cache_flag(fresh), "token {} on {} at NOW{:+}", t, path, now - NOW);
        }
    }
}

#[test]
fn the_pool_holds_both_allowed_and_denied_tokens() {
    // Guards the determinism properties against a pool that decides everything one way.
    let outcomes: Vec<bool> = pool()
        .iter()
        .map(|t| {
            allowed(&decide(
                config(),
                &mut TokenCache::new(0),
                &request("/any-token", &format!("Bearer {t}")),
                NOW,
            ))
        })
        .collect();
    assert!(
        outcomes.iter().any(|a| *a) && outcomes.iter().any(|a| !*a),
        "{outcomes:?}"
    );
}
