//! Shared test fixtures (as Envoy's `test_common.h`): fixed keys, their JWK Set, a plugin
//! config that uses them (also compiled once), named tokens, and the checks the property tests
//! and the fuzz targets both make of a decision. Compiled for tests and with the `mint` feature.
//!
//! The private keys in `filter/fixtures/` exist only for tests and the demo; they protect nothing.

use std::sync::OnceLock;

use serde_json::{json, Map, Value};

use crate::config::Config;
use crate::decide::Decision;
use crate::mint::{sign, SigningKey};
use crate::token::alg::Alg;

/// The issuer of the fixture provider.
pub const ISSUER: &str = "https://auth.internal";
/// The audience the fixture provider accepts.
pub const AUDIENCE: &str = "orders";
/// The fixture HMAC secret and the environment variable it is read from.
pub const HMAC_ENV: &str = "SVCAUTH_TEST_HMAC";
pub const HMAC_SECRET: &str = "fixture-hmac-secret-that-is-at-least-32-bytes";
/// A fixed clock for native tests: 2026-01-01T00:00:00Z.
pub const NOW: i64 = 1_767_225_600;

/// The fixture key pairs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fixture {
    /// RSA 2048, kid `rsa-a`, no `alg` in its JWK (so it serves RS* and PS*).
    RsaA,
    /// RSA 2048, kid `rsa-b`, `alg: RS256`.
    RsaB,
    /// EC P-256, kid `ec256`.
    Ec256,
    /// EC P-384, kid `ec384`.
    Ec384,
    /// EC P-521, kid `ec521`.
    Ec521,
    /// Ed25519, kid `ed25519`.
    Ed25519,
}

impl Fixture {
    /// The keys of [`jwks`] (and so of [`config_json`]). [`Fixture::Ec521`] is not among them,
    /// so that the fixture set stays the one the older tests count; [`jwks_with_p521`] has it.
    pub const ALL: [Fixture; 5] = [
        Fixture::RsaA,
        Fixture::RsaB,
        Fixture::Ec256,
        Fixture::Ec384,
        Fixture::Ed25519,
    ];

    pub fn kid(self) -> &'static str {
        match self {
            Fixture::RsaA => "rsa-a",
            Fixture::RsaB => "rsa-b",
            Fixture::Ec256 => "ec256",
            Fixture::Ec384 => "ec384",
            Fixture::Ec521 => "ec521",
            Fixture::Ed25519 => "ed25519",
        }
    }

    pub fn pem(self) -> &'static str {
        match self {
            Fixture::RsaA => include_str!("../fixtures/rsa-a.pem"),
            Fixture::RsaB => include_str!("../fixtures/rsa-b.pem"),
            Fixture::Ec256 => include_str!("../fixtures/ec256.pem"),
            Fixture::Ec384 => include_str!("../fixtures/ec384.pem"),
            Fixture::Ec521 => include_str!("../fixtures/ec521.pem"),
            Fixture::Ed25519 => include_str!("../fixtures/ed25519.pem"),
        }
    }

    /// The `alg` written in the fixture JWK, if any.
    pub fn jwk_alg(self) -> Option<Alg> {
        match self {
            Fixture::RsaB => Some(Alg::RS256),
            _ => None,
        }
    }

    /// An algorithm this key signs with.
    pub fn default_alg(self) -> Alg {
        match self {
            Fixture::RsaA | Fixture::RsaB => Alg::RS256,
            Fixture::Ec256 => Alg::ES256,
            Fixture::Ec384 => Alg::ES384,
            Fixture::Ec521 => Alg::ES512,
            Fixture::Ed25519 => Alg::EdDSA,
        }
    }
}

/// The private key of a fixture. Fixture PEMs are known-good, so a failure here is a broken
/// checkout; it degrades to an HMAC key that every test will notice.
pub fn signing_key(f: Fixture) -> SigningKey {
    SigningKey::from_pem(f.pem()).unwrap_or_else(|_| SigningKey::Hmac(b"broken-fixture".to_vec()))
}

/// The public JWK of a fixture with the given kid.
pub fn public_jwk(f: Fixture, kid: &str) -> Value {
    signing_key(f)
        .public_jwk(kid, f.jwk_alg())
        .unwrap_or(Value::Null)
}

/// The JWK Set of all fixture public keys (kids as in [`Fixture::kid`]).
pub fn jwks() -> Value {
    json!({"keys": Fixture::ALL.iter().map(|f| public_jwk(*f, f.kid())).collect::<Vec<_>>()})
}

pub fn jwks_json() -> String {
    jwks().to_string()
}

/// A self-signed X.509 certificate (PEM) of the `rsa-a` key, and one of the `ec256` key.
pub const RSA_A_CERT: &str = include_str!("../fixtures/rsa-a.crt");
pub const EC256_CERT: &str = include_str!("../fixtures/ec256.crt");

/// [`jwks`] plus the P-521 key (kid `ec521`).
pub fn jwks_with_p521() -> Value {
    let mut set = jwks();
    if let Some(keys) = set.get_mut("keys").and_then(Value::as_array_mut) {
        keys.push(public_jwk(Fixture::Ec521, Fixture::Ec521.kid()));
    }
    set
}

/// Standard valid claims at `now`: issuer, subject `orders-service`, audience, 10 minutes life,
/// scope `orders:read`.
pub fn claims(now: i64) -> Value {
    json!({
        "iss": ISSUER,
        "sub": "orders-service",
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + 600,
        "scope": "orders:read",
    })
}

/// `claims(now)` with `changes` merged in (a `null` value removes the claim).
pub fn claims_with(now: i64, changes: Value) -> Value {
    let mut c = claims(now);
    if let (Some(obj), Some(ch)) = (c.as_object_mut(), changes.as_object()) {
        for (k, v) in ch {
            if v.is_null() {
                obj.remove(k);
            } else {
                obj.insert(k.clone(), v.clone());
            }
        }
    }
    c
}

/// A token signed by fixture `f` with its kid and default algorithm.
pub fn token(f: Fixture, claims: &Value) -> String {
    token_alg(f, f.default_alg(), claims)
}

/// A token signed by fixture `f` with `alg` and its kid.
pub fn token_alg(f: Fixture, alg: Alg, claims: &Value) -> String {
    let mut h = Map::new();
    h.insert("kid".into(), f.kid().into());
    sign(&signing_key(f), alg, &h, claims).unwrap_or_default()
}

/// An HS* token signed with the fixture HMAC secret.
pub fn hmac_token(alg: Alg, claims: &Value) -> String {
    let key = SigningKey::Hmac(HMAC_SECRET.as_bytes().to_vec());
    sign(&key, alg, &Map::new(), claims).unwrap_or_default()
}

/// The fixture plugin config: one provider `internal` reading the fixture JWKS and HMAC secret,
/// with the contract's example rules plus a few for tests.
pub fn config_json() -> Value {
    json!({
        "providers": {
            "internal": {
                "issuer": ISSUER,
                "audiences": [AUDIENCE],
                "jwks": jwks(),
                "hmac_secret_env": HMAC_ENV,
                "from_headers": [
                    {"name": "authorization", "value_prefix": "Bearer "},
                    {"name": "x-service-token"}
                ],
                "claim_to_headers": [{"claim": "tenant_id", "header": "x-tenant-id"}]
            }
        },
        "rules": [
            {"match": {"prefix": "/health"}, "allow": true},
            {"match": {"path": "/admin/rotate", "methods": ["POST"]},
             "requires": {"scopes_all": ["internal:admin"]}},
            {"match": {"prefix": "/ai/"}, "requires": {"scopes_any": ["ai-services:read"]}},
            {"match": {"prefix": "/write"}, "requires": {"scopes_all": ["orders:read", "orders:write"]}},
            {"match": {"prefix": "/any-token"}, "requires": {}},
            {"match": {"prefix": "/"}, "requires": {"scopes_any": ["orders:read", "orders:write"]}}
        ]
    })
}

/// Environment lookups for [`config_json`]: only the fixture HMAC secret.
pub fn env(name: &str) -> Option<String> {
    (name == HMAC_ENV).then(|| HMAC_SECRET.to_string())
}

/// [`config_json`] compiled once (with [`env`]); `None` only if it does not compile, which
/// every test that uses it reports.
pub fn compiled() -> Option<&'static Config> {
    static CONFIG: OnceLock<Option<Config>> = OnceLock::new();
    CONFIG
        .get_or_init(|| Config::from_json(config_json().to_string().as_bytes(), &env).ok())
        .as_ref()
}

/// A decision with its cache flag cleared: what a request sees, whatever the cache held.
pub fn without_cache_flag(d: Decision) -> Decision {
    match d {
        Decision::Allow(mut a) => {
            a.cache_hit = None;
            Decision::Allow(a)
        }
        Decision::Deny(mut d) => {
            d.cache_hit = None;
            Decision::Deny(d)
        }
    }
}

/// A header value Envoy would forward as one header: no CR, LF, NUL or other controls but tab.
pub fn header_safe(s: &str) -> bool {
    !s.chars().any(|c| c.is_control() && c != '\t')
}
