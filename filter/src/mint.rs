//! Signing side: private keys, key generation, public JWKs and token signing.
//!
//! Used by the `svcauth` CLI and by the tests; compiled only with the `mint` feature (and in
//! this crate's own tests), never into the `.wasm`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use getrandom::SysRng;
use serde_json::{json, Map, Value};

use crate::token::alg::Alg;

/// A private signing key (or HMAC secret).
pub enum SigningKey {
    Hmac(Vec<u8>),
    Rsa(Box<rsa::PrivateKey>),
    P256(p256::ecdsa::SigningKey),
    P384(p384::ecdsa::SigningKey),
    P521(p521::ecdsa::SigningKey),
    Ed25519(ed25519_dalek::SigningKey),
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({})", self.kind())
    }
}

fn random<K: rsa::Generate>() -> Result<K, String> {
    K::try_generate_from_rng(&mut SysRng).map_err(|e| format!("no randomness: {e}"))
}

impl SigningKey {
    /// A fresh key for `alg` (RSA keys are 2048 bits; HMAC secrets 32 random bytes for HS256,
    /// 48 for HS384, 64 for HS512).
    pub fn generate(alg: Alg) -> Result<SigningKey, String> {
        Ok(match alg {
            a if a.is_rsa() => SigningKey::Rsa(Box::new(
                rsa::PrivateKey::new(&mut SysRng, 2048).map_err(|e| e.to_string())?,
            )),
            a if a.is_hmac() => {
                let len = match a {
                    Alg::HS384 => 48,
                    Alg::HS512 => 64,
                    _ => 32,
                };
                let mut secret = vec![0u8; len];
                getrandom::fill(&mut secret).map_err(|e| format!("no randomness: {e}"))?;
                SigningKey::Hmac(secret)
            }
            Alg::ES256 => SigningKey::P256(random()?),
            Alg::ES384 => SigningKey::P384(random()?),
            Alg::ES512 => SigningKey::P521(random()?),
            _ => {
                let mut secret = [0u8; 32];
                getrandom::fill(&mut secret).map_err(|e| format!("no randomness: {e}"))?;
                SigningKey::Ed25519(ed25519_dalek::SigningKey::from_bytes(&secret))
            }
        })
    }

    /// Reads a PKCS#8 PEM private key (RSA, EC P-256/P-384/P-521, Ed25519); PKCS#1 RSA too.
    pub fn from_pem(pem: &str) -> Result<SigningKey, String> {
        use rsa::pkcs1::DecodeRsaPrivateKey as _;
        use rsa::pkcs8::DecodePrivateKey as _;
        if let Ok(k) = rsa::PrivateKey::from_pkcs8_pem(pem) {
            return Ok(SigningKey::Rsa(Box::new(k)));
        }
        if let Ok(k) = rsa::PrivateKey::from_pkcs1_pem(pem) {
            return Ok(SigningKey::Rsa(Box::new(k)));
        }
        if let Ok(k) = p256::ecdsa::SigningKey::from_pkcs8_pem(pem) {
            return Ok(SigningKey::P256(k));
        }
        if let Ok(k) = p384::ecdsa::SigningKey::from_pkcs8_pem(pem) {
            return Ok(SigningKey::P384(k));
        }
        if let Ok(k) = p521::ecdsa::SigningKey::from_pkcs8_pem(pem) {
            return Ok(SigningKey::P521(k));
        }
        if let Ok(k) = ed25519_dalek::SigningKey::from_pkcs8_pem(pem) {
            return Ok(SigningKey::Ed25519(k));
        }
        Err(
            "not a PKCS#8 PEM private key of a supported type (RSA, EC P-256/P-384/P-521, Ed25519)"
                .into(),
        )
    }

    /// PKCS#8 PEM of a private key. HMAC secrets have no PEM form.
    pub fn to_pem(&self) -> Result<String, String> {
        use rsa::pkcs8::{EncodePrivateKey as _, LineEnding};
        let doc = match self {
            SigningKey::Hmac(_) => return Err("an HMAC secret has no PEM form".into()),
            SigningKey::Rsa(k) => k.to_pkcs8_pem(LineEnding::LF),
            SigningKey::P256(k) => k.to_pkcs8_pem(LineEnding::LF),
            SigningKey::P384(k) => k.to_pkcs8_pem(LineEnding::LF),
            SigningKey::P521(k) => k.to_pkcs8_pem(LineEnding::LF),
            SigningKey::Ed25519(k) => k.to_pkcs8_pem(LineEnding::LF),
        };
        doc.map(|d| d.to_string()).map_err(|e| e.to_string())
    }

    /// A short name of the key type, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            SigningKey::Hmac(_) => "HMAC secret",
            SigningKey::Rsa(_) => "RSA",
            SigningKey::P256(_) => "EC P-256",
            SigningKey::P384(_) => "EC P-384",
            SigningKey::P521(_) => "EC P-521",
            SigningKey::Ed25519(_) => "Ed25519",
        }
    }

    /// Whether this key can sign `alg`.
    pub fn fits(&self, alg: Alg) -> bool {
        match self {
            SigningKey::Hmac(_) => alg.is_hmac(),
            SigningKey::Rsa(_) => alg.is_rsa(),
            SigningKey::P256(_) => alg == Alg::ES256,
            SigningKey::P384(_) => alg == Alg::ES384,
            SigningKey::P521(_) => alg == Alg::ES512,
            SigningKey::Ed25519(_) => alg == Alg::EdDSA,
        }
    }

    /// The public JWK (with `kid`, `use: sig`, and `alg` when given). `None` for HMAC.
    pub fn public_jwk(&self, kid: &str, alg: Option<Alg>) -> Option<Value> {
        use rsa::traits::PublicKeyParts as _;
        let b = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
        fn ec(crv: &str, point: &[u8], n: usize) -> Value {
            // Uncompressed SEC1: 0x04 || x || y.
            let x = point.get(1..1 + n).unwrap_or_default();
            let y = point.get(1 + n..).unwrap_or_default();
            json!({"kty": "EC", "crv": crv, "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y)})
        }
        let mut jwk = match self {
            SigningKey::Hmac(_) => return None,
            SigningKey::Rsa(k) => json!({
                "kty": "RSA", "n": b(&k.n_bytes()), "e": b(&k.e_bytes()),
            }),
            SigningKey::P256(k) => ec(
                "P-256",
                k.verifying_key().to_sec1_point(false).as_bytes(),
                32,
            ),
            SigningKey::P384(k) => ec(
                "P-384",
                k.verifying_key().to_sec1_point(false).as_bytes(),
                48,
            ),
            SigningKey::P521(k) => ec(
                "P-521",
                k.verifying_key().to_sec1_point(false).as_bytes(),
                66,
            ),
            SigningKey::Ed25519(k) => {
                json!({"kty": "OKP", "crv": "Ed25519", "x": b(k.verifying_key().as_bytes())})
            }
        };
        if let Some(obj) = jwk.as_object_mut() {
            obj.insert("kid".into(), kid.into());
            obj.insert("use".into(), "sig".into());
            if let Some(a) = alg {
                obj.insert("alg".into(), a.name().into());
            }
        }
        Some(jwk)
    }

    /// Signs `input` with `alg`; the raw JWS signature bytes.
    pub fn sign_bytes(&self, alg: Alg, input: &[u8]) -> Result<Vec<u8>, String> {
        use hmac::{KeyInit as _, Mac as _};
        use rsa::{Pkcs1v15Sign, Pss};
        use sha2::{Digest as _, Sha256, Sha384, Sha512};
        use signature::Signer as _;
        if !self.fits(alg) {
            return Err(format!("a {} key cannot sign {}", self.kind(), alg.name()));
        }
        let err = |e: &dyn std::fmt::Display| e.to_string();
        Ok(match (self, alg) {
            (SigningKey::Hmac(s), Alg::HS256) => {
                let mut m = hmac::Hmac::<Sha256>::new_from_slice(s).map_err(|e| err(&e))?;
                m.update(input);
                m.finalize().into_bytes().to_vec()
            }
            (SigningKey::Hmac(s), Alg::HS384) => {
                let mut m = hmac::Hmac::<Sha384>::new_from_slice(s).map_err(|e| err(&e))?;
                m.update(input);
                m.finalize().into_bytes().to_vec()
            }
            (SigningKey::Hmac(s), _) => {
                let mut m = hmac::Hmac::<Sha512>::new_from_slice(s).map_err(|e| err(&e))?;
                m.update(input);
                m.finalize().into_bytes().to_vec()
            }
            (SigningKey::Rsa(k), a) => {
                let r = match a {
                    Alg::RS256 => k.sign(Pkcs1v15Sign::new::<Sha256>(), &Sha256::digest(input)),
                    Alg::RS384 => k.sign(Pkcs1v15Sign::new::<Sha384>(), &Sha384::digest(input)),
                    Alg::RS512 => k.sign(Pkcs1v15Sign::new::<Sha512>(), &Sha512::digest(input)),
                    Alg::PS256 => {
                        k.sign_with_rng(&mut SysRng, Pss::<Sha256>::new(), &Sha256::digest(input))
                    }
                    Alg::PS384 => {
                        k.sign_with_rng(&mut SysRng, Pss::<Sha384>::new(), &Sha384::digest(input))
                    }
                    _ => k.sign_with_rng(&mut SysRng, Pss::<Sha512>::new(), &Sha512::digest(input)),
                };
                r.map_err(|e| err(&e))?
            }
            (SigningKey::P256(k), _) => {
                let s: p256::ecdsa::Signature = k.try_sign(input).map_err(|e| err(&e))?;
                s.to_bytes().to_vec()
            }
            (SigningKey::P384(k), _) => {
                let s: p384::ecdsa::Signature = k.try_sign(input).map_err(|e| err(&e))?;
                s.to_bytes().to_vec()
            }
            (SigningKey::P521(k), _) => {
                let s: p521::ecdsa::Signature = k.try_sign(input).map_err(|e| err(&e))?;
                s.to_bytes().to_vec()
            }
            (SigningKey::Ed25519(k), _) => {
                let s: ed25519_dalek::Signature = k.try_sign(input).map_err(|e| err(&e))?;
                s.to_bytes().to_vec()
            }
        })
    }
}

/// Signs a JWT: the header is `{"alg": alg, "typ": "JWT"}` plus `extra_header` (e.g. `kid`;
/// an `alg` or `typ` there overrides the default), the payload is `claims`.
pub fn sign(
    key: &SigningKey,
    alg: Alg,
    extra_header: &Map<String, Value>,
    claims: &Value,
) -> Result<String, String> {
    let mut header = Map::new();
    header.insert("alg".into(), alg.name().into());
    header.insert("typ".into(), "JWT".into());
    for (k, v) in extra_header {
        header.insert(k.clone(), v.clone());
    }
    sign_raw(
        key,
        alg,
        &Value::Object(header).to_string(),
        &claims.to_string(),
    )
}

/// Signs arbitrary header and payload text (for tests of odd tokens): `b64(header).b64(payload).sig`.
pub fn sign_raw(
    key: &SigningKey,
    alg: Alg,
    header_json: &str,
    payload_json: &str,
) -> Result<String, String> {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header_json),
        URL_SAFE_NO_PAD.encode(payload_json)
    );
    let sig = key.sign_bytes(alg, input.as_bytes())?;
    Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{self, Fixture};

    #[test]
    fn every_generated_key_round_trips_through_pem_and_signs() {
        for alg in [Alg::ES256, Alg::ES384, Alg::ES512, Alg::EdDSA] {
            let key = SigningKey::generate(alg).unwrap();
            let again = SigningKey::from_pem(&key.to_pem().unwrap()).unwrap();
            assert!(again.fits(alg));
            assert!(again.public_jwk("k", Some(alg)).is_some());
        }
        assert!(SigningKey::generate(Alg::HS256).unwrap().to_pem().is_err());
    }

    #[test]
    fn a_key_refuses_an_algorithm_of_another_family() {
        let key = fixtures::signing_key(Fixture::Ec256);
        assert!(sign(&key, Alg::RS256, &Map::new(), &json!({})).is_err());
    }
}
