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
//! Case counts keep the whole file well under a minute in a debug build on two cores;
//! `PROPTEST_CASES=N` runs every property N times instead.

use std::sync::OnceLock;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::Config as PtConfig;
use serde_json::{json, Map, Value};

use crate::cache::TokenCache;
use crate::config::Config;
use crate::decide::{decide, Decision};
use crate::fixtures::{self, claims_with, hmac_token, token_alg, Fixture, NOW};
use crate::mint::{sign_raw, SigningKey};
use crate::token::jws::{Alg, ALL_ALGS};
use crate::{jwk, jws, keys, verify};

// ------------------------------------------------------------------ shared inputs -----------

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
    static CONFIG: OnceLock<Config> = OnceLock::new();
    CONFIG.get_or_init(|| {
        Config::from_json(
            fixtures::config_json().to_string().as_bytes(),
            &fixtures::env,
        )
        .unwrap()
    })
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

/// A decision with its cache flag cleared: what a request sees, whatever the cache held.
fn without_cache_flag(d: Decision) -> Decision {
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
fn header_safe(s: &str) -> bool {
    !s.chars().any(|c| c.is_control() && c != '\t')
}

// ------------------------------------------------------------------ strategies --------------

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
fn number() -> impl Strategy<Value = Value> {
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

fn text() -> impl Strategy<Value = String> {
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
fn json_value() -> impl Strategy<Value = Value> {
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
fn near_valid_config() -> impl Strategy<Value = Value> {
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
fn jwk_value() -> impl Strategy<Value = Value> {
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

/// Text shaped like a compact JWS: base64url-ish segments with stray `=`, `+`, `/`, spaces.
fn token_like() -> impl Strategy<Value = String> {
    prop::collection::vec("[A-Za-z0-9_=+/ -]{0,40}", 1..7).prop_map(|s| s.join("."))
}

/// A JWS whose segments are base64url of arbitrary JSON (or bytes): reaches the header and
/// claims readers with every shape of `alg`, `kid`, `crit`, `cty`, `exp`, `aud`, ...
fn structured_token() -> impl Strategy<Value = String> {
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
fn signed_odd_token() -> impl Strategy<Value = String> {
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

fn headers() -> impl Strategy<Value = Vec<(String, String)>> {
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

fn clock() -> impl Strategy<Value = i64> {
    prop_oneof![
        4 => (NOW - 1000)..(NOW + 1000),
        1 => any::<i64>(),
        1 => prop::sample::select(vec![i64::MIN, i64::MAX, 0, -1]),
    ]
}

// ------------------------------------------------------------------ no panics ---------------

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
    fn pass(&mut self, check: &'static str, detail: impl FnOnce() -> String) {
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

// ------------------------------------------------------------------ tampering ---------------

/// The token with byte `i` replaced by `b`, decoded as the adapter decodes header values.
fn with_byte(t: &str, i: usize, b: u8) -> String {
    let mut bytes = t.as_bytes().to_vec();
    bytes[i] = b;
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Asserts that `tampered` is denied on a fresh cache and on one holding the original token,
/// and that `verify` refuses it.
fn assert_refused(original: &str, tampered: &str, what: &str) {
    let auth = format!("Bearer {tampered}");
    let req = request("/orders", &auth);
    let fresh = decide(config(), &mut TokenCache::new(0), &req, NOW);
    assert!(
        !allowed(&fresh),
        "{what}: tampered token allowed: {tampered}"
    );
    let mut warm = TokenCache::new(8);
    let ok = decide(
        config(),
        &mut warm,
        &request("/orders", &format!("Bearer {original}")),
        NOW,
    );
    assert!(allowed(&ok), "{what}: the original token is valid");
    assert!(
        !allowed(&decide(config(), &mut warm, &req, NOW)),
        "{what}: tampered token allowed next to its cached original"
    );
    assert!(verify::verify(config(), tampered, NOW).is_err(), "{what}");
}

/// Every position of an HS256 and an ES256 token, each replaced by a few bytes: the next
/// base64url character, characters that decode to other bits, separators, and non-ASCII.
#[test]
fn every_single_byte_change_of_a_valid_token_is_refused() {
    for (alg, t) in valid_tokens()
        .iter()
        .filter(|(a, _)| *a == "HS256" || *a == "ES256")
    {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        for (i, &orig) in t.as_bytes().iter().enumerate() {
            let next = ALPHABET
                .iter()
                .position(|&c| c == orig)
                .map_or(b'A', |p| ALPHABET[(p + 1) % ALPHABET.len()]);
            for b in [next, orig ^ 0x01, b'.', b'=', b' ', b',', 0x00, 0xff] {
                if b != orig {
                    assert_refused(
                        t,
                        &with_byte(t, i, b),
                        &format!("{alg} byte {i} -> {b:#04x}"),
                    );
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(cases(1500))]

    #[test]
    fn any_single_byte_change_of_any_valid_token_is_refused(which in any::<Index>(), pos in any::<Index>(), b in any::<u8>()) {
        let (alg, t) = which.get(valid_tokens());
        let i = pos.index(t.len());
        prop_assume!(t.as_bytes()[i] != b);
        let tampered = with_byte(t, i, b);
        let auth = format!("Bearer {tampered}");
        let d = decide(config(), &mut TokenCache::new(0), &request("/orders", &auth), NOW);
        prop_assert!(!allowed(&d), "{alg}: byte {i} -> {b:#04x} allowed: {tampered}");
    }
}

// ------------------------------------------------------------------ determinism -------------

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
