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

use crate::token::alg::Alg;
pub use crate::token::spki::RsaKey;

/// The public (or, for HMAC, secret) material of one key.
#[derive(Clone)]
pub enum KeyMaterial {
    Hmac(Vec<u8>),
    Rsa(RsaKey),
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
        crate::token::alg::ALL_ALGS
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

/// Parses a JWK Set object (`{"keys": [...]}`).
/// A set that is neither, more than [`MAX_KEYS`] keys, or a malformed key of a supported type
/// is an error; keys svcauth does not use are skipped and listed. An empty result is the
/// caller's to refuse.
pub fn parse_jwk_set(top: &Map<String, Value>) -> Result<ParsedSet, String> {
    let keys = match top.get("keys") {
        Some(Value::Array(keys)) => keys,
        Some(_) => return Err("not a JWK Set: \"keys\" is not an array".into()),
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
            None if name.starts_with("PS") && !crate::token::alg::RSA_EC_IN_VM => {
                return Ok(Skip(format!(
                    "alg {name:?} (RSA-PSS) needs the vm-crypto build, {}",
                    crate::token::alg::FALLBACK_WASM
                )))
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
            // From the affine coordinates (what `from_sec1_bytes` does for an uncompressed
            // point: canonical coordinates on the curve), without linking point decompression.
            use p256::elliptic_curve::point::AffineCoordinates as _;
            match crv {
                "P-256" => {
                    let (x, y) = ec_xy(obj, 32)?;
                    let point = Option::from(p256::AffinePoint::from_coordinates(
                        &p256::FieldBytes::try_from(x.as_slice()).map_err(|_| "bad x")?,
                        &p256::FieldBytes::try_from(y.as_slice()).map_err(|_| "bad y")?,
                    ));
                    KeyMaterial::P256(
                        point
                            .and_then(|p| p256::ecdsa::VerifyingKey::from_affine(p).ok())
                            .ok_or("not a point on P-256")?,
                    )
                }
                "P-384" => {
                    let (x, y) = ec_xy(obj, 48)?;
                    let point = Option::from(p384::AffinePoint::from_coordinates(
                        &p384::FieldBytes::try_from(x.as_slice()).map_err(|_| "bad x")?,
                        &p384::FieldBytes::try_from(y.as_slice()).map_err(|_| "bad y")?,
                    ));
                    KeyMaterial::P384(
                        point
                            .and_then(|p| p384::ecdsa::VerifyingKey::from_affine(p).ok())
                            .ok_or("not a point on P-384")?,
                    )
                }
                "P-521" => {
                    let (x, y) = ec_xy(obj, 66)?;
                    let point = Option::from(p521::AffinePoint::from_coordinates(
                        &p521::FieldBytes::try_from(x.as_slice()).map_err(|_| "bad x")?,
                        &p521::FieldBytes::try_from(y.as_slice()).map_err(|_| "bad y")?,
                    ));
                    KeyMaterial::P521(
                        point
                            .and_then(|p| p521::ecdsa::VerifyingKey::from_affine(p).ok())
                            .ok_or("not a point on P-521")?,
                    )
                }
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
fn rsa_key(obj: &Map<String, Value>) -> Result<Result<RsaKey, String>, String> {
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
    RsaKey::new(&n, &e, RSA_MIN_BITS..=RSA_MAX_BITS)
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
    use p256::pkcs8::EncodePublicKey as _;
    let doc = match m {
        KeyMaterial::Rsa(k) => return k.spki_der().unwrap_or_default(),
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

fn ec_xy(obj: &Map<String, Value>, len: usize) -> Result<(Vec<u8>, Vec<u8>), String> {
    Ok((coordinate(obj, "x", len)?, coordinate(obj, "y", len)?))
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
#[path = "jwk_tests.rs"]
mod tests;
