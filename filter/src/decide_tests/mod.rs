//! Table-driven tests of `decide` against the fixture config, at the fixed clock `NOW`, one file
//! per concern: `tokens` (algorithms, invalid tokens and their reasons, time and required
//! claims), `rules` (rule matching, scopes, claims, static credentials, ambiguous paths) and
//! `requests` (where tokens are found, CORS, claim headers, the cache, denial lines, remote
//! keys). This file holds the fixtures they share; the tests may use anything in the crate.

mod requests;
mod rules;
mod tokens;

use crate::cache::TokenCache;
use crate::config::Config;
use crate::contract::reason::Reason;
use crate::decide::{decide, Decision};
use crate::fixtures::{self, NOW};

fn config() -> Config {
    Config::from_json(
        fixtures::config_json().to_string().as_bytes(),
        &fixtures::env,
    )
    .unwrap()
}

fn req(method: &str, path: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut h = vec![
        (":method".to_string(), method.to_string()),
        (":path".to_string(), path.to_string()),
    ];
    h.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    h
}

fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

/// `Ok(subject)` or `Err(reason)` for a GET of `path` with `token` as a bearer token.
fn outcome(cfg: &Config, path: &str, token: &str) -> Result<String, Reason> {
    let auth = bearer(token);
    let h = req("GET", path, &[("authorization", auth.as_str())]);
    match decide(cfg, &mut TokenCache::new(0), &h, NOW) {
        Decision::Allow(a) => Ok(a.identity.map(|i| i.subject.clone()).unwrap_or_default()),
        Decision::Deny(d) => Err(d.reason),
    }
}

fn with_config(edit: impl FnOnce(&mut serde_json::Value)) -> Config {
    let mut v = fixtures::config_json();
    edit(&mut v);
    Config::from_json(v.to_string().as_bytes(), &fixtures::env).unwrap()
}
