//! Issue 16, items 2 and 3: token sources as `jwt_authn` has them (`from_cookies`,
//! `from_params`, what `forward_token: false` strips) and rich `claim_to_headers` (dot paths,
//! lists of strings, the value bound), against `decide` at the fixed clock `NOW`.
//!
//! One file per item: `token_sources` (where a token may be, what stripping it changes) and
//! `claim_headers` (claims to headers); this file holds the fixtures they share. The tests may
//! use anything in the crate.

mod claim_headers;
mod token_sources;

use serde_json::{json, Value};

use crate::cache::TokenCache;
use crate::config::Config;
use crate::contract::reason::Reason;
use crate::decide::{decide, Decision};
use crate::fixtures::{self, claims, token, Fixture, NOW};

fn compile(v: &Value) -> Result<Config, String> {
    Config::from_json(v.to_string().as_bytes(), &fixtures::env).map_err(|e| e.0)
}

/// The fixture config with `changes` merged into provider `internal`.
fn with_provider(changes: Value) -> Value {
    let mut v = fixtures::config_json();
    for (k, val) in changes.as_object().unwrap() {
        v["providers"]["internal"][k] = val.clone();
    }
    v
}

fn config_with(changes: Value) -> Config {
    compile(&with_provider(changes)).unwrap()
}

/// A provider reading the `session` cookie, the `access_token` and `token` parameters and
/// `authorization: Bearer`.
fn sources() -> Value {
    json!({
        "from_headers": [{"name": "authorization", "value_prefix": "Bearer "}],
        "from_cookies": ["session"],
        "from_params": ["access_token", "token"]
    })
}

type Headers = Vec<(String, String)>;

fn req(path: &str, extra: &[(&str, &str)]) -> Headers {
    let mut h = vec![
        (":method".to_string(), "GET".to_string()),
        (":path".to_string(), path.to_string()),
    ];
    h.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    h
}

fn run(cfg: &Config, h: &[(String, String)]) -> Decision {
    decide(cfg, &mut TokenCache::new(0), h, NOW)
}

fn reason(d: &Decision) -> Option<Reason> {
    match d {
        Decision::Allow(_) => None,
        Decision::Deny(d) => Some(d.reason),
    }
}

fn good() -> String {
    token(Fixture::Ec256, &claims(NOW))
}

fn one(h: &str, v: &str) -> Result<Vec<(String, String)>, Reason> {
    Ok(vec![(h.to_string(), v.to_string())])
}
