//! No input panics: plugin configs, JWK Sets, fetched bodies, tokens and requests, generated;
//! and `--explain` at the edges of the clock.

use crate::check::Check;
use proptest::prelude::*;
use serde_json::json;

use crate::cache::TokenCache;
use crate::config::Config;
use crate::decide::{decide, Decision};
use crate::fixtures::{self, claims_with, hmac_token, NOW};
use crate::token::jws::Alg;
use crate::{jwk, jws, keys, verify};

use super::json_strategies::{json_value, jwk_value, near_valid_config};
use super::request_strategies::{clock, headers, signed_odd_token, structured_token, token_like};
use super::{cases, config, header_safe, request, valid_tokens};

proptest! {
    #![proptest_config(cases(2000))]

    #[test]
    fn arbitrary_bytes_as_a_plugin_config_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let _ = Config::from_json(&bytes, &fixtures::env);
    }

    #[test]
    fn arbitrary_json_as_a_plugin_config_never_panics(v in json_value()) {
        let _ = Config::from_json(v.to_string().as_bytes(), &fixtures::env);
    }

    #[test]
    fn arbitrary_text_as_a_jwk_set_or_fetched_body_never_panics(s in any::<String>(), b in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = crate::token::set::parse_set(&s);
        let _ = keys::parse_fetched(&b, 65536);
        let _ = keys::decode_shared(&b);
    }

    #[test]
    fn arbitrary_text_as_a_token_never_panics(t in prop_oneof![any::<String>(), token_like(), structured_token()]) {
        let _ = jws::parse(&t);
        let _ = verify::verify(config(), &t, NOW);
    }
}

proptest! {
    #![proptest_config(cases(400))]

    #[test]
    fn a_near_valid_plugin_config_never_panics(v in near_valid_config(), secret in prop::option::of(".{0,40}")) {
        let env = |n: &str| if n == fixtures::HMAC_ENV { secret.clone().or_else(|| fixtures::env(n)) } else { None };
        if let Ok(cfg) = Config::from_json(v.to_string().as_bytes(), &env) {
            // Whatever compiled also decides without panicking.
            let t = &valid_tokens()[2].1;
            let _ = decide(&cfg, &mut TokenCache::new(cfg.cache_max_entries.min(8)), &request("/orders", &format!("Bearer {t}")), NOW);
        }
    }

    #[test]
    fn a_jwk_set_of_odd_keys_never_panics(keys in prop::collection::vec(jwk_value(), 0..4)) {
        let set = json!({"keys": keys}).to_string();
        if let Ok(parsed) = crate::token::set::parse_set(&set) {
            for k in &parsed.keys {
                prop_assert!(!k.algs().is_empty(), "a kept key verifies some algorithm");
            }
            let _ = jwk::candidates(&[parsed.keys.as_slice()], Alg::RS256, Some("k"));
        }
        let _ = keys::parse_fetched(set.as_bytes(), 65536);
    }

    #[test]
    fn signed_tokens_with_odd_headers_and_claims_never_panic_and_never_allow_unsafe_headers(
        t in signed_odd_token(), now in clock(), path in prop::sample::select(vec!["/orders", "/any-token", "/ai/x"]),
    ) {
        let auth = format!("Bearer {t}");
        let _ = verify::verify(config(), &t, now);
        let mut explained = Vec::new();
        let _ = verify::verify_explained(config(), &t, now, &mut Recorder(&mut explained));
        if let Decision::Allow(a) = decide(config(), &mut TokenCache::new(4), &request(path, &auth), now) {
            let id = a.identity.unwrap();
            prop_assert!(!id.subject.is_empty() && header_safe(&id.subject), "subject {:?}", id.subject);
            prop_assert!(header_safe(&id.scopes_joined), "scopes {:?}", id.scopes_joined);
            for (h, v) in &id.claim_headers {
                prop_assert!(header_safe(v), "{h}: {v:?}");
            }
        }
    }

    #[test]
    fn arbitrary_request_headers_paths_and_clocks_never_panic(h in headers(), now in clock()) {
        let mut cache = TokenCache::new(2);
        let _ = decide(config(), &mut cache, &h, now);
        let _ = decide(config(), &mut cache, &h, now.saturating_add(1));
    }
}

/// An `Explain` observer that builds every detail (the CLI's `--explain` path).
struct Recorder<'a>(&'a mut Vec<String>);

impl verify::Explain for Recorder<'_> {
    fn pass(&mut self, check: Check, detail: impl FnOnce() -> String) {
        self.0.push(format!("{check}: {}", detail()));
    }
}

#[test]
fn explaining_a_token_at_the_edges_of_the_clock_never_overflows() {
    let t = hmac_token(
        Alg::HS256,
        &claims_with(NOW, json!({"iat": i64::MIN, "exp": i64::MAX})),
    );
    for now in [i64::MIN, i64::MIN + 100, -1, 0, i64::MAX - 100, i64::MAX] {
        let mut lines = Vec::new();
        let _ = verify::verify_explained(config(), &t, now, &mut Recorder(&mut lines));
    }
}
