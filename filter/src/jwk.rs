//! JSON Web Keys: reading a JWK Set into verification keys, and choosing the keys that may
//! verify a given token, following `jwt_verify_lib` (the library inside Envoy's `jwt_authn`).
//!
//! A key of a type or curve no JWS algorithm of svcauth uses (an `X25519` or `secp256k1` key,
//! an encryption key, a symmetric `oct` key, a weak RSA key) is skipped with a message, so one
//! odd key never hides the others. A key of a supported type that is malformed (a missing or
//! bad member, a point off its curve) makes the whole set an error that names the key. EC keys
//! without `crv` take it from `alg` (P-256 when neither is given); EC coordinates shorter than
//! the curve's size are left-padded. A set may also be Google's X.509 form: an object of
//! `kid` → PEM certificate.

use base64::alphabet::URL_SAFE;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use serde_json::{Map, Value};

use crate::jws::Alg;

/// The public (or, for HMAC, secret) material of one key.
#[derive(Clone)]
pub enum KeyMaterial {
    Hmac(Vec<u8>),
    Rsa(rsa::PublicKey),
    P256(p256::ecdsa::VerifyingKey),
    P384(p384::ecdsa::VerifyingKey),
    P521(p521::ecdsa::VerifyingKey),
    Ed25519(ed25519_dalek::VerifyingKey),
}

impl std::fmt::Debug for KeyMaterial {
    // Never print key bytes (HMAC secrets above all).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            KeyMaterial::Hmac(_) => "Hmac(..)",
            KeyMaterial::Rsa(_) => "Rsa(..)",
            KeyMaterial::P256(_) => "P256(..)",
            KeyMaterial::P384(_) => "P384(..)",
            KeyMaterial::P521(_) => "P521(..)",
            KeyMaterial::Ed25519(_) => "Ed25519(..)",
        })
    }
}

/// A verification key with its optional `kid` and `alg` from the JWK.
#[derive(Debug, Clone)]
pub struct Key {
    pub kid: Option<String>,
    pub alg: Option<Alg>,
    pub material: KeyMaterial,
    /// The public key as DER SubjectPublicKeyInfo (RSA and EC keys), computed once, for a host
    /// that verifies signatures natively and for the provider; empty for other keys.
    pub spki_der: Vec<u8>,
}

impl Key {
    /// Whether this key's type can verify `alg` (the family check that stops algorithm confusion).
    pub fn fits(&self, alg: Alg) -> bool {
        let family_ok = match &self.material {
            KeyMaterial::Hmac(_) => alg.is_hmac(),
            KeyMaterial::Rsa(_) => alg.is_rsa(),
            KeyMaterial::P256(_) => alg == Alg::ES256,
            KeyMaterial::P384(_) => alg == Alg::ES384,
            KeyMaterial::P521(_) => alg == Alg::ES512,
            KeyMaterial::Ed25519(_) => alg == Alg::EdDSA,
        };
        family_ok && self.alg.is_none_or(|a| a == alg)
    }

    /// The algorithms this key can verify.
    pub fn algs(&self) -> Vec<Alg> {
        crate::jws::ALL_ALGS
            .iter()
            .copied()
            .filter(|a| self.fits(*a))
            .collect()
    }

    /// A key of `material`, with its SPKI DER computed.
    pub fn new(kid: Option<String>, alg: Option<Alg>, material: KeyMaterial) -> Key {
        let spki_der = spki_der(&material);
        Key {
            kid,
            alg,
            material,
            spki_der,
        }
    }
}

/// RSA moduli accepted: 2048 to 8192 bits (RFC 7518 §3.3 requires at least 2048).
const RSA_MIN_BITS: usize = 2048;
const RSA_MAX_BITS: usize = 8192;

/// At most this many keys in one JWK Set: a token without `kid` is tried against each key that
/// fits its algorithm, so the set size bounds the work one token can cause.
pub const MAX_KEYS: usize = 32;

/// The usable keys of a JWK Set, and one message per key that was skipped.
#[derive(Debug, Default)]
pub struct ParsedSet {
    pub keys: Vec<Key>,
    pub skipped: Vec<String>,
}

enum Outcome {
    Key(Box<Key>),
    /// Not a key svcauth uses: skipped, with the reason.
    Skip(String),
    /// A key of a supported type that is malformed: the set is refused.
    Bad(String),
}
use Outcome::{Bad, Skip};

/// base64url for key members: padding optional, as `jwt_verify_lib` reads them (keys come from
/// the operator's configuration or key server, not from the token).
const KEY_B64: GeneralPurpose = GeneralPurpose::new(
    &URL_SAFE,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// Parses a JWK Set (`{"keys": [...]}`, or Google's `{"kid": "-----BEGIN CERTIFICATE-----..."}`).
/// A set that is neither, more than [`MAX_KEYS`] keys, or a malformed key of a supported type
/// is an error; keys svcauth does not use are skipped and listed. An empty result is the
/// caller's to refuse.
pub fn parse_set(json: &str) -> Result<ParsedSet, String> {
    let value: Value = serde_json::from_str(json).map_err(|e| format!("not a JWK Set: {e}"))?;
    let Value::Object(top) = value else {
        return Err("not a JWK Set: not a JSON object".into());
    };
    let keys = match top.get("keys") {
        Some(Value::Array(keys)) => keys,
        Some(_) => return Err("not a JWK Set: \"keys\" is not an array".into()),
        None if crate::x509::is_x509_set(&top) => return crate::x509::parse_x509_set(&top),
        None => return Err("not a JWK Set: no \"keys\" array".into()),
    };
    if keys.len() > MAX_KEYS {
        return Err(format!(
            "not a usable JWK Set: {} keys (at most {MAX_KEYS})",
            keys.len()
        ));
    }
    let mut out = ParsedSet::default();
    for (i, value) in keys.iter().enumerate() {
        let label = value
            .get("kid")
            .and_then(|k| k.as_str())
            .map(|k| format!("key {i} (kid {k:?})"))
            .unwrap_or_else(|| format!("key {i}"));
        match parse_key(value) {
            Outcome::Key(key) => out.keys.push(*key),
            Skip(why) => out.skipped.push(format!("{label}: {why}")),
            Bad(why) => return Err(format!("unusable key: {label}: {why}")),
        }
    }
    Ok(out)
}

/// An optional string member: `Ok(None)` when absent, an error when not a string.
fn opt_str<'v>(obj: &'v Map<String, Value>, name: &str) -> Result<Option<&'v str>, String> {
    match obj.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(format!("{name:?} is not a string")),
    }
}

fn field(obj: &Map<String, Value>, name: &str) -> Result<Vec<u8>, String> {
    let s = opt_str(obj, name)?.ok_or_else(|| format!("missing {name:?}"))?;
    KEY_B64
        .decode(s)
        .map_err(|_| format!("{name:?} is not base64url"))
}

/// Algorithms of keys that are never JWS signing keys (RFC 7518 §4): such a key is skipped.
fn is_encryption_alg(name: &str) -> bool {
    name.starts_with("RSA1_5")
        || name.starts_with("RSA-OAEP")
        || name.starts_with("ECDH-ES")
        || name.starts_with("A128")
        || name.starts_with("A192")
        || name.starts_with("A256")
        || name == "dir"
}

fn parse_key(value: &Value) -> Outcome {
    let Value::Object(obj) = value else {
        return Skip("not a JSON object".into());
    };
    match read_key(obj) {
        Ok(o) => o,
        Err(why) => Bad(why),
    }
}

fn read_key(obj: &Map<String, Value>) -> Result<Outcome, String> {
    let kty = opt_str(obj, "kty")?.ok_or("missing \"kty\"")?;
    let kid = opt_str(obj, "kid")?.map(str::to_string);
    if opt_str(obj, "use")?.is_some_and(|u| u != "sig") {
        return Ok(Skip("not a signing key (use is not \"sig\")".into()));
    }
    let alg = match opt_str(obj, "alg")? {
        None => None,
        Some(name) => match Alg::from_name(name) {
            Some(a) => Some(a),
            None if is_encryption_alg(name) => {
                return Ok(Skip(format!("an encryption key (alg {name:?})")))
            }
            None => return Ok(Skip(format!("unsupported alg {name:?}"))),
        },
    };
    let material = match kty {
        "RSA" => match rsa_key(obj)? {
            Ok(k) => KeyMaterial::Rsa(k),
            Err(skip) => return Ok(Skip(skip)),
        },
        "EC" => {
            let crv = match opt_str(obj, "crv")? {
                Some(c) => c,
                // jwt_verify_lib: the curve of the alg, else P-256.
                None => match alg {
                    Some(Alg::ES384) => "P-384",
                    Some(Alg::ES512) => "P-521",
                    _ => "P-256",
                },
            };
            match crv {
                "P-256" => KeyMaterial::P256(
                    p256::ecdsa::VerifyingKey::from_sec1_bytes(&ec_point(obj, 32)?)
                        .map_err(|_| "not a point on P-256".to_string())?,
                ),
                "P-384" => KeyMaterial::P384(
                    p384::ecdsa::VerifyingKey::from_sec1_bytes(&ec_point(obj, 48)?)
                        .map_err(|_| "not a point on P-384".to_string())?,
                ),
                "P-521" => KeyMaterial::P521(
                    p521::ecdsa::VerifyingKey::from_sec1_bytes(&ec_point(obj, 66)?)
                        .map_err(|_| "not a point on P-521".to_string())?,
                ),
                other => return Ok(Skip(format!("unsupported EC curve {other:?}"))),
            }
        }
        "OKP" => match opt_str(obj, "crv")?.ok_or("missing \"crv\"")? {
            "Ed25519" => {
                let x = field(obj, "x")?;
                let bytes: [u8; 32] = x
                    .as_slice()
                    .try_into()
                    .map_err(|_| "Ed25519 x must be 32 bytes".to_string())?;
                KeyMaterial::Ed25519(
                    ed25519_dalek::VerifyingKey::from_bytes(&bytes)
                        .map_err(|_| "bad Ed25519 key".to_string())?,
                )
            }
            other => return Ok(Skip(format!("unsupported OKP curve {other:?}"))),
        },
        "oct" => {
            return Ok(Skip(
                "symmetric (oct) keys are not accepted in a JWK Set; use hmac_secret_env".into(),
            ))
        }
        other => return Ok(Skip(format!("unsupported key type {other:?}"))),
    };
    let key = Key::new(kid, alg, material);
    if key.algs().is_empty() {
        return Err("its alg does not fit its key type".into());
    }
    Ok(Outcome::Key(Box::new(key)))
}

/// `Ok(Err(reason))`: a well-formed RSA key svcauth does not use (weak, odd exponent).
fn rsa_key(obj: &Map<String, Value>) -> Result<Result<rsa::PublicKey, String>, String> {
    let n = strip_zeros(field(obj, "n")?);
    let e = strip_zeros(field(obj, "e")?);
    let bits = n
        .first()
        .map_or(0, |b| n.len() * 8 - b.leading_zeros() as usize);
    if !(RSA_MIN_BITS..=RSA_MAX_BITS).contains(&bits) {
        return Ok(Err(format!(
            "RSA modulus of {bits} bits (allowed 2048-8192)"
        )));
    }
    // jwt_verify_lib accepts only the exponents 3 and 65537.
    if e.as_slice() != [3] && e.as_slice() != [1, 0, 1] {
        return Ok(Err("RSA exponent other than 3 or 65537".into()));
    }
    rsa::PublicKey::new_with_size_limits(
        rsa::BoxedUint::from_be_slice_vartime(&n),
        rsa::BoxedUint::from_be_slice_vartime(&e),
        RSA_MIN_BITS..=RSA_MAX_BITS,
    )
    .map(Ok)
    .map_err(|e| format!("bad RSA key: {e}"))
}

fn strip_zeros(mut v: Vec<u8>) -> Vec<u8> {
    let lead = v.iter().take_while(|b| **b == 0).count();
    v.drain(..lead);
    v
}

/// The SubjectPublicKeyInfo DER of an RSA or EC key (RustCrypto's encoders); empty for others.
fn spki_der(m: &KeyMaterial) -> Vec<u8> {
    use rsa::pkcs8::EncodePublicKey as _;
    let doc = match m {
        KeyMaterial::Rsa(k) => k.to_public_key_der(),
        KeyMaterial::P256(k) => k.to_public_key_der(),
        KeyMaterial::P384(k) => k.to_public_key_der(),
        KeyMaterial::P521(k) => k.to_public_key_der(),
        KeyMaterial::Hmac(_) | KeyMaterial::Ed25519(_) => return Vec::new(),
    };
    doc.map(|d| d.into_vec()).unwrap_or_default()
}

/// One EC coordinate as exactly `len` bytes: shorter ones left-padded with zeros (as
/// `jwt_verify_lib` reads them as big numbers), longer ones only if the extra bytes are zeros.
fn coordinate(obj: &Map<String, Value>, name: &str, len: usize) -> Result<Vec<u8>, String> {
    let raw = strip_zeros(field(obj, name)?);
    if raw.len() > len {
        return Err(format!("EC coordinate {name:?} is longer than {len} bytes"));
    }
    let mut out = vec![0u8; len - raw.len()];
    out.extend_from_slice(&raw);
    Ok(out)
}

fn ec_point(obj: &Map<String, Value>, len: usize) -> Result<Vec<u8>, String> {
    let x = coordinate(obj, "x", len)?;
    let y = coordinate(obj, "y", len)?;
    let mut point = Vec::with_capacity(1 + 2 * len);
    point.push(0x04);
    point.extend_from_slice(&x);
    point.extend_from_slice(&y);
    Ok(point)
}

/// The keys that may verify a token with `alg` and `kid`, in key-set order, from one or more
/// key lists (configured keys, then fetched ones).
///
/// As in jwt_verify_lib: a key whose type or `alg` does not fit is never tried; when both the
/// token and the key have a `kid`, they must be equal; a token without a `kid` is tried with
/// every key that fits its `alg` (first valid signature wins), which [`MAX_KEYS`] bounds.
pub fn candidates<'k>(lists: &[&'k [Key]], alg: Alg, kid: Option<&str>) -> Vec<&'k Key> {
    let fitting = lists.iter().flat_map(|l| l.iter()).filter(|k| k.fits(alg));
    if alg.is_hmac() {
        // HMAC secrets come only from `hmac_secret_env` (never a JWKS): the current and the
        // previous secret of a rotation are all tried, whatever the token's kid.
        return fitting.collect();
    }
    match kid {
        Some(kid) => fitting
            .filter(|k| k.kid.as_deref().is_none_or(|kk| kk == kid))
            .collect(),
        None => fitting.collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    #[test]
    fn the_fixture_set_parses_every_key_type() {
        let set = parse_set(&fixtures::jwks_json()).unwrap();
        assert!(set.skipped.is_empty(), "{:?}", set.skipped);
        assert_eq!(set.keys.len(), 5);
    }

    #[test]
    fn unsupported_keys_are_skipped_with_a_reason_and_the_rest_kept() {
        let json = serde_json::json!({"keys": [
            {"kty": "oct", "k": "c2VjcmV0", "kid": "sym"},
            {"kty": "OKP", "crv": "X25519", "x": "AA"},
            {"kty": "EC", "crv": "secp256k1", "x": "AA", "y": "AA"},
            {"kty": "RSA", "use": "enc", "n": "AQAB", "e": "AQAB"},
            {"kty": "RSA", "alg": "RSA-OAEP", "n": "AQAB", "e": "AQAB"},
            {"kty": "RSA", "n": "AQAB", "e": "AQAB", "kid": "tiny"},
            {"kty": "foo"},
            "not an object",
            fixtures::public_jwk(fixtures::Fixture::Ec256, "ok"),
        ]})
        .to_string();
        let set = parse_set(&json).unwrap();
        assert_eq!(set.keys.len(), 1);
        assert_eq!(set.skipped.len(), 8, "{:?}", set.skipped);
        assert!(set.skipped[0].contains("oct"));
        assert!(set.skipped[1].contains("X25519"));
        assert!(set.skipped[2].contains("secp256k1"));
        assert!(set.skipped[5].contains("bits"));
        assert!(set.skipped[6].contains("\"foo\""));
    }

    #[test]
    fn a_malformed_key_of_a_supported_type_refuses_the_set_and_names_the_key() {
        let good = fixtures::public_jwk(fixtures::Fixture::Ec256, "ok");
        let cases = [
            (
                serde_json::json!({"kty": "RSA", "kid": "k", "n": "AQAB"}),
                r#"key 1 (kid "k"): missing "e""#,
            ),
            (
                serde_json::json!({"kty": "EC", "crv": "P-256", "x": "AAAA", "y": "AAAA"}),
                "key 1: not a point on P-256",
            ),
            (
                serde_json::json!({"kty": "OKP", "x": "AAAA"}),
                r#"key 1: missing "crv""#,
            ),
            (
                serde_json::json!({"kty": "EC", "crv": "P-256", "alg": "RS256", "x": good["x"], "y": good["y"]}),
                "does not fit",
            ),
            (
                serde_json::json!({"kid": "nokty"}),
                r#"key 1 (kid "nokty"): missing "kty""#,
            ),
            (serde_json::json!({"kty": 5}), r#""kty" is not a string"#),
        ];
        for (bad, want) in cases {
            let json = serde_json::json!({"keys": [good.clone(), bad]}).to_string();
            let e = parse_set(&json).unwrap_err();
            assert!(e.starts_with("unusable key: ") && e.contains(want), "{e}");
        }
    }

    #[test]
    fn ec_keys_take_their_curve_from_alg_and_short_coordinates_are_padded() {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut jwk = fixtures::public_jwk(fixtures::Fixture::Ec384, "k");
        let obj = jwk.as_object_mut().unwrap();
        obj.remove("crv");
        obj.insert("alg".into(), "ES384".into());
        let set = parse_set(&serde_json::json!({"keys": [jwk.clone()]}).to_string()).unwrap();
        assert!(matches!(set.keys[0].material, KeyMaterial::P384(_)));
        // Neither crv nor alg: P-256, as jwt_verify_lib assumes; a P-384 point is then off-curve.
        jwk.as_object_mut().unwrap().remove("alg");
        assert!(parse_set(&serde_json::json!({"keys": [jwk]}).to_string()).is_err());
        // A coordinate with its leading zero byte dropped (as some issuers write them) is
        // padded back: find a key whose x starts with a zero byte (1 in 256).
        let (k, x) = (0..5000)
            .find_map(|_| {
                let k = crate::mint::SigningKey::generate(Alg::ES256)
                    .unwrap()
                    .public_jwk("k", None)?;
                let x = URL_SAFE_NO_PAD.decode(k["x"].as_str()?).ok()?;
                (x.first() == Some(&0)).then_some((k, x))
            })
            .unwrap();
        let mut short = k.clone();
        short["x"] = URL_SAFE_NO_PAD.encode(&x[1..]).into();
        assert!(parse_set(&serde_json::json!({"keys": [short]}).to_string()).is_ok());
        let mut long = k.clone();
        long["x"] = URL_SAFE_NO_PAD.encode([&[0u8][..], &x[..]].concat()).into();
        assert!(parse_set(&serde_json::json!({"keys": [long]}).to_string()).is_ok());
    }

    #[test]
    fn a_set_has_at_most_max_keys() {
        let k = fixtures::public_jwk(fixtures::Fixture::Ec256, "k");
        let set = serde_json::json!({"keys": vec![k; MAX_KEYS + 1]}).to_string();
        assert!(parse_set(&set).unwrap_err().contains("at most 32"));
    }

    #[test]
    fn rsa_and_ec_keys_carry_their_spki_der_for_the_host() {
        use rsa::pkcs8::DecodePublicKey as _;
        let set = parse_set(&fixtures::jwks_with_p521().to_string()).unwrap();
        assert_eq!(set.keys.len(), 6);
        for k in &set.keys {
            match &k.material {
                KeyMaterial::Rsa(r) => {
                    assert_eq!(
                        &rsa::PublicKey::from_public_key_der(&k.spki_der).unwrap(),
                        r
                    )
                }
                KeyMaterial::P256(p) => assert_eq!(
                    &p256::ecdsa::VerifyingKey::from_public_key_der(&k.spki_der).unwrap(),
                    p
                ),
                KeyMaterial::P384(p) => assert_eq!(
                    &p384::ecdsa::VerifyingKey::from_public_key_der(&k.spki_der).unwrap(),
                    p
                ),
                KeyMaterial::P521(p) => assert_eq!(
                    &p521::ecdsa::VerifyingKey::from_public_key_der(&k.spki_der).unwrap(),
                    p
                ),
                _ => assert!(k.spki_der.is_empty()),
            }
        }
    }

    #[test]
    fn a_set_that_is_not_an_object_with_keys_is_an_error() {
        for bad in ["[]", "{}", "{\"keys\":{}}", "nope", ""] {
            assert!(parse_set(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn key_choice_follows_kid_alg_and_family() {
        let set = parse_set(&fixtures::jwks_json()).unwrap();
        let keys = &set.keys;
        assert_eq!(candidates(&[keys], Alg::RS256, Some("rsa-a")).len(), 1);
        assert_eq!(candidates(&[keys], Alg::RS256, Some("nope")).len(), 0);
        // Two RSA keys fit RS256: without a kid, both are tried (as jwt_verify_lib does).
        assert_eq!(candidates(&[keys], Alg::RS256, None).len(), 2);
        assert_eq!(candidates(&[keys], Alg::ES256, None).len(), 1);
        // An RSA key is never an HMAC secret.
        assert_eq!(candidates(&[keys], Alg::HS256, Some("rsa-a")).len(), 0);
        // The EC P-256 key never verifies ES384.
        assert_eq!(candidates(&[keys], Alg::ES384, Some("ec256")).len(), 0);
    }
}
