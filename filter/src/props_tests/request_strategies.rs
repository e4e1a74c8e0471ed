//! Generators of requests for the properties: token-shaped text, structured and correctly signed
//! odd tokens, header values as the adapter decodes them, paths, header sets and clocks.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use proptest::prelude::*;
use serde_json::{json, Map, Value};

use crate::fixtures::{self, Fixture, NOW};
use crate::mint::{sign_raw, SigningKey};
use crate::token::jws::Alg;

use super::json_strategies::{json_value, number, text};
use super::valid_tokens;

/// Text shaped like a compact JWS: base64url-ish segments with stray `=`, `+`, `/`, spaces.
pub(super) fn token_like() -> impl Strategy<Value = String> {
    prop::collection::vec("[A-Za-z0-9_=+/ -]{0,40}", 1..7).prop_map(|s| s.join("."))
}

/// A JWS whose segments are base64url of arbitrary JSON (or bytes): reaches the header and
/// claims readers with every shape of `alg`, `kid`, `crit`, `cty`, `exp`, `aud`, ...
pub(super) fn structured_token() -> impl Strategy<Value = String> {
    let segment = prop_oneof![
        3 => json_value().prop_map(|v| v.to_string().into_bytes()),
        1 => prop::collection::vec(any::<u8>(), 0..64),
    ];
    (
        segment.clone(),
        segment,
        prop::collection::vec(any::<u8>(), 0..80),
    )
        .prop_map(|(h, p, s)| {
            format!(
                "{}.{}.{}",
                URL_SAFE_NO_PAD.encode(h),
                URL_SAFE_NO_PAD.encode(p),
                URL_SAFE_NO_PAD.encode(s)
            )
        })
}

/// Claims near the fixture's with a few members replaced by arbitrary JSON: odd `exp`, `aud`,
/// `sub` with control bytes, scopes of every shape.
fn odd_claims() -> impl Strategy<Value = Value> {
    prop::collection::vec(
        (
            prop::sample::select(vec![
                "iss",
                "sub",
                "aud",
                "exp",
                "nbf",
                "iat",
                "scope",
                "scp",
                "scopes",
                "tenant_id",
            ]),
            prop::option::weighted(
                0.85,
                prop_oneof![
                    json_value(),
                    text().prop_map(Value::String),
                    number(),
                    prop::collection::vec(text(), 0..5).prop_map(|v| json!(v)),
                ],
            ),
        ),
        0..4,
    )
    .prop_map(|edits| {
        let mut c = fixtures::claims(NOW);
        for (k, v) in edits {
            match (v, c.as_object_mut()) {
                (Some(v), _) => c[k] = v,
                (None, Some(m)) => {
                    m.remove(k);
                }
                (None, None) => {}
            }
        }
        c
    })
}

/// A correctly signed token (cheap HS256, or ES256) of a generated header and claims.
pub(super) fn signed_odd_token() -> impl Strategy<Value = String> {
    (
        any::<bool>(),
        prop::option::of(prop::sample::select(vec![
            json!("ec256"),
            json!("rsa-a"),
            json!("nope"),
            json!(7),
            json!("../../etc/passwd"),
        ])),
        prop::option::of(prop::sample::select(vec![
            json!({"jku": "http://127.0.0.1:1/jwks"}),
            json!({"cty": "JWT"}),
            json!({"crit": []}),
            json!({"typ": 1}),
            json!({"x5c": ["AAAA"]}),
        ])),
        odd_claims(),
    )
        .prop_map(|(hmac, kid, extra, claims)| {
            let alg = if hmac { Alg::HS256 } else { Alg::ES256 };
            let mut h = Map::new();
            h.insert("alg".into(), alg.name().into());
            if let Some(kid) = kid {
                h.insert("kid".into(), kid);
            }
            if let Some(Value::Object(extra)) = extra {
                h.extend(extra);
            }
            let key = if hmac {
                SigningKey::Hmac(fixtures::HMAC_SECRET.as_bytes().to_vec())
            } else {
                fixtures::signing_key(Fixture::Ec256)
            };
            sign_raw(
                &key,
                alg,
                &Value::Object(h).to_string(),
                &claims.to_string(),
            )
            .unwrap()
        })
}

/// Any token the strategies above make, or a valid one.
fn any_token() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => signed_odd_token(),
        1 => structured_token(),
        1 => token_like(),
        1 => any::<String>(),
        1 => (0..valid_tokens().len()).prop_map(|i| valid_tokens()[i].1.clone()),
    ]
}

/// Arbitrary bytes decoded as the adapter decodes header values (lossy UTF-8).
fn header_bytes() -> impl Strategy<Value = String> {
    prop::collection::vec(any::<u8>(), 0..200).prop_map(|b| String::from_utf8_lossy(&b).into())
}

fn header_value() -> impl Strategy<Value = String> {
    let scheme = prop::sample::select(vec![
        "Bearer ",
        "bearer ",
        "BEARER \t",
        "Bearer\t",
        "Bearer",
        "Basic ",
        "",
        " Bearer  ",
    ]);
    prop_oneof![
        3 => (scheme, any_token()).prop_map(|(s, t)| format!("{s}{t}")),
        1 => (any_token(), any_token()).prop_map(|(a, b)| format!("Bearer {a},Bearer {b}")),
        1 => header_bytes(),
        1 => any::<String>(),
    ]
}

fn path() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "/orders",
            "/health",
            "/admin/rotate",
            "/ai/x",
            "/write",
            "/any-token",
            "/",
            "",
            "/health/../orders",
            "/%2e%2e/admin",
            "/health\\..\\x",
            "/orders?x=/../#y",
            "/ORDERS",
            "//health",
            "*",
        ])
        .prop_map(str::to_string),
        "/[a-z./%\\\\?#é]{0,30}",
        any::<String>(),
    ]
}

pub(super) fn headers() -> impl Strategy<Value = Vec<(String, String)>> {
    let name = prop_oneof![
        4 => prop::sample::select(vec![
            "authorization", "x-service-token", "origin", "access-control-request-method",
            "x-request-id", "traceparent", "x-service-name", ":authority",
        ])
        .prop_map(str::to_string),
        1 => "[a-z:-]{1,16}",
    ];
    (
        prop::sample::select(vec!["GET", "POST", "OPTIONS", "get", "", "DELETE"]),
        path(),
        prop::collection::vec((name, header_value()), 0..4),
    )
        .prop_map(|(m, p, rest)| {
            let mut h = vec![
                (":method".to_string(), m.to_string()),
                (":path".to_string(), p),
            ];
            h.extend(rest);
            h
        })
}

pub(super) fn clock() -> impl Strategy<Value = i64> {
    prop_oneof![
        4 => (NOW - 1000)..(NOW + 1000),
        1 => any::<i64>(),
        1 => prop::sample::select(vec![i64::MIN, i64::MAX, 0, -1]),
    ]
}
