//! Generators of JSON for the properties: field names the core reads, edge numbers, text,
//! arbitrary and near-valid configs, and JWKs of every plausible and implausible shape.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::{json, Map, Value};

use crate::fixtures::{self, NOW};
use crate::token::jws::ALL_ALGS;

/// Field names of every config and JWK object, so generated JSON often hits real fields.
const NAMES: &[&str] = &[
    "providers",
    "rules",
    "internal",
    "issuer",
    "audiences",
    "jwks",
    "remote_jwks",
    "hmac_secret_env",
    "from_headers",
    "name",
    "value_prefix",
    "clock_skew_seconds",
    "algorithms",
    "subject_claim",
    "scope_claims",
    "required_claims",
    "max_lifetime_seconds",
    "forward_token",
    "claim_to_headers",
    "claim",
    "header",
    "match",
    "prefix",
    "path",
    "methods",
    "allow",
    "requires",
    "scopes_all",
    "scopes_any",
    "max_token_bytes",
    "bypass_cors_preflight",
    "cache",
    "max_entries",
    "log",
    "allowed",
    "claims",
    "cluster",
    "authority",
    "refresh_seconds",
    "timeout_ms",
    "max_bytes",
    "refetch_interval_seconds",
    "keys",
    "kty",
    "kid",
    "alg",
    "use",
    "n",
    "e",
    "crv",
    "x",
    "y",
    "iss",
    "sub",
    "aud",
    "exp",
    "nbf",
    "iat",
    "scope",
    "scp",
    "scopes",
    "typ",
    "cty",
    "crit",
    "enc",
    "zip",
    "jku",
    "jwk",
    "x5u",
    "x5c",
];

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(NAMES).prop_map(str::to_string),
        1 => ".{0,12}",
    ]
}

/// Numbers at the edges: NumericDate limits, i64/u64 extremes, floats, negatives.
pub(super) fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1e300f64..1e300f64).prop_map(Value::from),
        prop::sample::select(vec![
            0i64,
            -1,
            1,
            NOW,
            NOW - 61,
            NOW - 59,
            NOW + 59,
            NOW + 61,
            NOW + 600,
            i64::MAX,
            i64::MIN,
            i64::MAX - 59,
            255,
            256,
            65536,
            65537,
            3600,
            3601,
        ])
        .prop_map(Value::from),
        Just(json!(u64::MAX)),
        Just(json!(1.5)),
        Just(json!(f64::MAX)),
    ]
}

pub(super) fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => ".{0,24}",
        1 => prop::sample::select(vec![
            "", "RS256", "ES256", "HS256", "none", "EC", "RSA", "OKP", "oct", "P-256", "P-384",
            "Ed25519", "sig", "enc", "Bearer ", "/", "/orders", "..", "%2e", "SVCAUTH_TEST_HMAC",
            fixtures::ISSUER, "orders", "orders:read", "a\r\nx-injected: 1", "\u{0}", "\u{202e}",
        ])
        .prop_map(str::to_string),
        1 => prop::collection::vec(any::<u8>(), 0..80).prop_map(|b| URL_SAFE_NO_PAD.encode(b)),
    ]
}

/// Arbitrary JSON, biased to the names and values the core reads.
pub(super) fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number(),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((name(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Every JSON pointer into `v` (objects and arrays, not the root).
fn pointers(v: &Value, at: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let p = format!("{at}/{}", k.replace('~', "~0").replace('/', "~1"));
                out.push(p.clone());
                pointers(x, &p, out);
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                let p = format!("{at}/{i}");
                out.push(p.clone());
                pointers(x, &p, out);
            }
        }
        _ => {}
    }
}

/// `base` with the value at one of its pointers replaced (or, for `None`, removed).
fn mutate(base: &Value, which: Index, with: Option<Value>) -> Value {
    let mut v = base.clone();
    let mut ptrs = Vec::new();
    pointers(&v, "", &mut ptrs);
    if ptrs.is_empty() {
        return with.unwrap_or(v);
    }
    let ptr = which.get(&ptrs).clone();
    match with {
        Some(new) => {
            if let Some(slot) = v.pointer_mut(&ptr) {
                *slot = new;
            }
        }
        None => {
            let (parent, last) = ptr.rsplit_once('/').unwrap();
            match v.pointer_mut(parent) {
                Some(Value::Object(m)) => {
                    m.remove(&last.replace("~1", "/").replace("~0", "~"));
                }
                Some(Value::Array(a)) => {
                    if let Ok(i) = last.parse::<usize>() {
                        if i < a.len() {
                            a.remove(i);
                        }
                    }
                }
                _ => {}
            }
        }
    }
    v
}

/// The fixture config with one to three fields replaced by arbitrary JSON or removed.
pub(super) fn near_valid_config() -> impl Strategy<Value = Value> {
    prop::collection::vec(
        (any::<Index>(), prop::option::weighted(0.8, json_value())),
        1..4,
    )
    .prop_map(|edits| {
        let mut v = fixtures::config_json();
        for (i, with) in edits {
            v = mutate(&v, i, with);
        }
        v
    })
}

/// A JWK with plausible and implausible members: right and wrong sizes, types and curves.
pub(super) fn jwk_value() -> impl Strategy<Value = Value> {
    let b64 = |max: usize| {
        prop::collection::vec(any::<u8>(), 0..max).prop_map(|b| URL_SAFE_NO_PAD.encode(b))
    };
    let modulus = prop_oneof![
        b64(300),
        // A 2048-bit number: reaches the RSA key constructor.
        prop::collection::vec(any::<u8>(), 256..=256).prop_map(|mut b| {
            b[0] |= 0x80;
            URL_SAFE_NO_PAD.encode(b)
        }),
    ];
    let coord = prop_oneof![
        b64(60),
        prop::collection::vec(any::<u8>(), 32..=32).prop_map(|b| URL_SAFE_NO_PAD.encode(b)),
        prop::collection::vec(any::<u8>(), 48..=48).prop_map(|b| URL_SAFE_NO_PAD.encode(b)),
    ];
    (
        prop::sample::select(vec!["RSA", "EC", "OKP", "oct", "rsa", ""]),
        prop::option::of(prop::sample::select(vec![
            "P-256", "P-384", "P-521", "Ed25519", "X25519", "",
        ])),
        prop::option::of(prop::sample::select(
            ALL_ALGS
                .iter()
                .map(|a| a.name())
                .chain(["none", "RSA-OAEP"])
                .collect::<Vec<_>>(),
        )),
        prop::option::of(prop::sample::select(vec!["sig", "enc", "x"])),
        prop::option::of(modulus),
        prop::option::of(prop_oneof![b64(9), Just("AQAB".to_string())]),
        prop::option::of(coord.clone()),
        prop::option::of(coord),
        prop::option::of(json_value()),
    )
        .prop_map(|(kty, crv, alg, use_, n, e, x, y, kid)| {
            let mut m = Map::new();
            m.insert("kty".into(), kty.into());
            let mut put = |k: &str, v: Option<String>| {
                if let Some(v) = v {
                    m.insert(k.into(), v.into());
                }
            };
            put("crv", crv.map(str::to_string));
            put("alg", alg.map(str::to_string));
            put("use", use_.map(str::to_string));
            put("n", n);
            put("e", e);
            put("x", x);
            put("y", y);
            if let Some(kid) = kid {
                m.insert("kid".into(), kid);
            }
            Value::Object(m)
        })
}
