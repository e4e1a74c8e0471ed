//! JSON Web Keys: parsing a JWK Set into verification keys, and choosing the keys that may
//! verify a given token (the rules of Envoy's jwt_verify_lib).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::Deserialize;

use crate::jws::Alg;

/// The public (or, for HMAC, secret) material of one key.
#[derive(Clone)]
pub enum KeyMaterial {
    Hmac(Vec<u8>),
    Rsa(rsa::RsaPublicKey),
    P256(p256::ecdsa::VerifyingKey),
    P384(p384::ecdsa::VerifyingKey),
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
    /// that verifies signatures natively; empty for other keys.
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
}

/// RSA moduli accepted: 2048 to 8192 bits (RFC 7518 §3.3 requires at least 2048).
const RSA_MIN_BITS: usize = 2048;
const RSA_MAX_BITS: usize = 8192;

#[derive(Deserialize)]
struct RawSet {
    keys: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct RawKey {
    kty: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    alg: Option<String>,
    #[serde(default, rename = "use")]
    use_: Option<String>,
    #[serde(default)]
    n: Option<String>,
    #[serde(default)]
    e: Option<String>,
    #[serde(default)]
    crv: Option<String>,
    #[serde(default)]
    x: Option<String>,
    #[serde(default)]
    y: Option<String>,
}

/// The usable keys of a JWK Set, and one message per key that was skipped.
#[derive(Debug, Default)]
pub struct ParsedSet {
    pub keys: Vec<Key>,
    pub skipped: Vec<String>,
}

/// Parses a JWK Set. A set that is not a JSON object with a `keys` array is an error; keys
/// that cannot be used (encryption keys, symmetric keys, unsupported types, weak RSA) are
/// skipped with a message, so one odd key never hides the others.
pub fn parse_set(json: &str) -> Result<ParsedSet, String> {
    let raw: RawSet = serde_json::from_str(json).map_err(|e| format!("not a JWK Set: {e}"))?;
    let mut out = ParsedSet::default();
    for (i, value) in raw.keys.into_iter().enumerate() {
        let label = value
            .get("kid")
            .and_then(|k| k.as_str())
            .map(|k| format!("key {i} (kid {k:?})"))
            .unwrap_or_else(|| format!("key {i}"));
        match serde_json::from_value::<RawKey>(value)
            .map_err(|e| e.to_string())
            .and_then(parse_key)
        {
            Ok(key) => out.keys.push(key),
            Err(e) => out.skipped.push(format!("{label}: {e}")),
        }
    }
    Ok(out)
}

fn parse_key(raw: RawKey) -> Result<Key, String> {
    if raw.use_.as_deref().is_some_and(|u| u != "sig") {
        return Err("not a signing key (use is not \"sig\")".into());
    }
    let alg = match raw.alg.as_deref() {
        None => None,
        Some(name) => {
            Some(Alg::from_name(name).ok_or_else(|| format!("unsupported alg {name:?}"))?)
        }
    };
    let material = match (raw.kty.as_str(), raw.crv.as_deref()) {
        ("RSA", _) => {
            let n = rsa::BigUint::from_bytes_be(&field(&raw.n, "n")?);
            let e = rsa::BigUint::from_bytes_be(&field(&raw.e, "e")?);
            let bits = n.bits();
            if !(RSA_MIN_BITS..=RSA_MAX_BITS).contains(&bits) {
                return Err(format!("RSA modulus of {bits} bits (allowed 2048-8192)"));
            }
            KeyMaterial::Rsa(
                rsa::RsaPublicKey::new_with_max_size(n, e, RSA_MAX_BITS)
                    .map_err(|e| format!("bad RSA key: {e}"))?,
            )
        }
        ("EC", Some("P-256")) => KeyMaterial::P256(
            p256::ecdsa::VerifyingKey::from_sec1_bytes(&ec_point(&raw, 32)?)
                .map_err(|_| "bad P-256 point".to_string())?,
        ),
        ("EC", Some("P-384")) => KeyMaterial::P384(
            p384::ecdsa::VerifyingKey::from_sec1_bytes(&ec_point(&raw, 48)?)
                .map_err(|_| "bad P-384 point".to_string())?,
        ),
        ("OKP", Some("Ed25519")) => {
            let x = field(&raw.x, "x")?;
            let bytes: [u8; 32] = x
                .as_slice()
                .try_into()
                .map_err(|_| "Ed25519 x must be 32 bytes".to_string())?;
            KeyMaterial::Ed25519(
                ed25519_dalek::VerifyingKey::from_bytes(&bytes)
                    .map_err(|_| "bad Ed25519 key".to_string())?,
            )
        }
        ("oct", _) => {
            return Err("symmetric (oct) keys are not accepted in a JWK Set; \
                        use hmac_secret_env"
                .into())
        }
        (kty, crv) => return Err(format!("unsupported key type {kty:?} / curve {crv:?}")),
    };
    let spki_der = spki_der(&material);
    let key = Key {
        kid: raw.kid,
        alg,
        material,
        spki_der,
    };
    if key.algs().is_empty() {
        return Err("its alg does not fit its key type".into());
    }
    Ok(key)
}

/// DER SubjectPublicKeyInfo prefixes of uncompressed P-256 and P-384 points (RFC 5480).
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];
const P384_SPKI_PREFIX: [u8; 23] = [
    0x30, 0x76, 0x30, 0x10, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x05, 0x2b,
    0x81, 0x04, 0x00, 0x22, 0x03, 0x62, 0x00,
];

/// The SubjectPublicKeyInfo DER of an RSA or EC key; empty for others.
fn spki_der(m: &KeyMaterial) -> Vec<u8> {
    match m {
        KeyMaterial::Rsa(k) => {
            use rsa::pkcs8::EncodePublicKey as _;
            k.to_public_key_der()
                .map(|d| d.into_vec())
                .unwrap_or_default()
        }
        KeyMaterial::P256(k) => {
            let mut v = P256_SPKI_PREFIX.to_vec();
            v.extend_from_slice(k.to_encoded_point(false).as_bytes());
            v
        }
        KeyMaterial::P384(k) => {
            let mut v = P384_SPKI_PREFIX.to_vec();
            v.extend_from_slice(k.to_encoded_point(false).as_bytes());
            v
        }
        KeyMaterial::Hmac(_) | KeyMaterial::Ed25519(_) => Vec::new(),
    }
}

fn field(v: &Option<String>, name: &str) -> Result<Vec<u8>, String> {
    let s = v.as_deref().ok_or_else(|| format!("missing {name:?}"))?;
    URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| format!("{name:?} is not base64url"))
}

fn ec_point(raw: &RawKey, len: usize) -> Result<Vec<u8>, String> {
    let x = field(&raw.x, "x")?;
    let y = field(&raw.y, "y")?;
    if x.len() != len || y.len() != len {
        return Err(format!("EC coordinates must be {len} bytes"));
    }
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
/// token and the key have a `kid`, they must be equal. A token without a `kid` is only verified
/// when exactly one key fits, so an unlabeled token cannot go shopping for a key.
/// HMAC secrets are the exception: see below.
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
        None => {
            let all: Vec<&Key> = fitting.collect();
            if all.len() == 1 {
                all
            } else {
                Vec::new()
            }
        }
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
    fn unusable_keys_are_skipped_with_a_reason_and_the_rest_kept() {
        let json = serde_json::json!({"keys": [
            {"kty": "oct", "k": "c2VjcmV0", "kid": "sym"},
            {"kty": "RSA", "n": "AQAB", "e": "AQAB", "kid": "tiny"},
            {"kty": "EC", "crv": "P-521", "x": "AA", "y": "AA"},
            {"kty": "RSA", "use": "enc", "n": "AQAB", "e": "AQAB"},
            fixtures::public_jwk(fixtures::Fixture::Ec256, "ok"),
        ]})
        .to_string();
        let set = parse_set(&json).unwrap();
        assert_eq!(set.keys.len(), 1);
        assert_eq!(set.skipped.len(), 4, "{:?}", set.skipped);
        assert!(set.skipped[0].contains("oct"));
        assert!(set.skipped[1].contains("bits"));
    }

    #[test]
    fn rsa_and_ec_keys_carry_their_spki_der_for_the_host() {
        use rsa::pkcs8::DecodePublicKey as _;
        let set = parse_set(&fixtures::jwks_json()).unwrap();
        for k in &set.keys {
            match &k.material {
                KeyMaterial::Rsa(r) => {
                    assert_eq!(
                        &rsa::RsaPublicKey::from_public_key_der(&k.spki_der).unwrap(),
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
        // Two RSA keys fit RS256: without a kid, none is chosen.
        assert_eq!(candidates(&[keys], Alg::RS256, None).len(), 0);
        assert_eq!(candidates(&[keys], Alg::ES256, None).len(), 1);
        // An RSA key is never an HMAC secret.
        assert_eq!(candidates(&[keys], Alg::HS256, Some("rsa-a")).len(), 0);
        // The EC P-256 key never verifies ES384.
        assert_eq!(candidates(&[keys], Alg::ES384, Some("ec256")).len(), 0);
    }
}
