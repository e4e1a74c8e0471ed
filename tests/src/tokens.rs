//! Tokens, claims and key sets of the integration tests, on top of the filter's fixtures
//! (`svcauth_filter::fixtures`: the keys, the fixture config, `claims_with`, `token`): the
//! helpers several test files used to define for themselves. Uses the fixtures, `mint` and
//! the harness's [`crate::now`] and [`Response`].

use serde_json::{json, Map, Value};
use svcauth_filter::fixtures::{self, claims_with, Fixture};
use svcauth_filter::jws::Alg;
use svcauth_filter::mint::{sign, SigningKey};

use crate::Response;

/// The fixture claims valid now, with `changes` merged in (`null` removes a claim).
pub fn claims(changes: Value) -> Value {
    claims_with(crate::now(), changes)
}

/// An ES256 token of the fixture key `ec256` with [`claims`]`(changes)`.
pub fn ec(changes: Value) -> String {
    fixtures::token(Fixture::Ec256, &claims(changes))
}

/// `Bearer <token>`.
pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// A token signed by `key` with `alg` and `kid` (if any) in its header.
pub fn signed(key: &SigningKey, alg: Alg, kid: Option<&str>, claims: &Value) -> String {
    let mut h = Map::new();
    if let Some(kid) = kid {
        h.insert("kid".into(), kid.into());
    }
    sign(key, alg, &h, claims).unwrap()
}

/// A token of fixture `f` (its default algorithm) under the key id `kid`, valid now.
pub fn token_with(f: Fixture, kid: &str) -> String {
    signed(
        &fixtures::signing_key(f),
        f.default_alg(),
        Some(kid),
        &fixtures::claims(crate::now()),
    )
}

/// A JWK Set (JSON text) of these fixture public keys under these key ids.
pub fn key_set(keys: &[(Fixture, &str)]) -> String {
    json!({"keys": keys.iter().map(|(f, kid)| fixtures::public_jwk(*f, kid)).collect::<Vec<_>>()})
        .to_string()
}

/// The `reason` of a JSON denial body; empty when there is none.
pub fn body_reason(r: &Response) -> String {
    serde_json::from_str::<Value>(&r.body)
        .ok()
        .and_then(|v| v["reason"].as_str().map(str::to_string))
        .unwrap_or_default()
}

/// A loopback port nothing listens on (bound, then released).
pub fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
    l.local_addr().unwrap().port()
}
