//! Compact JWS parsing and signature verification.
//!
//! A token is exactly three base64url segments (no padding, canonical) joined by dots. The
//! header must be a JSON object with a supported `alg`; `crit` and JWE fields (`enc`, `zip`)
//! are refused. Signatures are checked against [`crate::jwk::Key`]s whose family matches the
//! algorithm, so an RSA or EC public key can never be used as an HMAC secret.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::Deserialize;

use crate::jwk::{Key, KeyMaterial};
use crate::reason::Reason;

/// The signature algorithms svcauth verifies. `none` is not one of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Alg {
    HS256,
    HS384,
    HS512,
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    EdDSA,
}

/// Every supported algorithm, in a stable order.
pub const ALL_ALGS: [Alg; 12] = [
    Alg::HS256,
    Alg::HS384,
    Alg::HS512,
    Alg::RS256,
    Alg::RS384,
    Alg::RS512,
    Alg::PS256,
    Alg::PS384,
    Alg::PS512,
    Alg::ES256,
    Alg::ES384,
    Alg::EdDSA,
];

impl Alg {
    /// The JOSE name (`"RS256"`); exact, case-sensitive match as RFC 7515 requires.
    pub fn from_name(name: &str) -> Option<Alg> {
        ALL_ALGS.iter().copied().find(|a| a.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            Alg::HS256 => "HS256",
            Alg::HS384 => "HS384",
            Alg::HS512 => "HS512",
            Alg::RS256 => "RS256",
            Alg::RS384 => "RS384",
            Alg::RS512 => "RS512",
            Alg::PS256 => "PS256",
            Alg::PS384 => "PS384",
            Alg::PS512 => "PS512",
            Alg::ES256 => "ES256",
            Alg::ES384 => "ES384",
            Alg::EdDSA => "EdDSA",
        }
    }

    pub fn is_hmac(self) -> bool {
        matches!(self, Alg::HS256 | Alg::HS384 | Alg::HS512)
    }

    pub fn is_rsa(self) -> bool {
        matches!(
            self,
            Alg::RS256 | Alg::RS384 | Alg::RS512 | Alg::PS256 | Alg::PS384 | Alg::PS512
        )
    }
}

/// The protected header fields svcauth reads. Unknown members are ignored (RFC 7515), except
/// those that change how the token must be processed, which are refused.
/// `Some(value)` for a member that is there, whatever its value (`null` included).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<serde_json::Value>, D::Error> {
    serde_json::Value::deserialize(d).map(Some)
}

#[derive(Debug, Deserialize)]
struct RawHeader {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    typ: Option<String>,
    // `present`: a member written as `null` is still present (`"crit": null` is refused too).
    #[serde(default, deserialize_with = "present")]
    crit: Option<serde_json::Value>,
    #[serde(default, deserialize_with = "present")]
    enc: Option<serde_json::Value>,
    #[serde(default, deserialize_with = "present")]
    zip: Option<serde_json::Value>,
    #[serde(default)]
    cty: Option<String>,
}

/// A token split and decoded, not yet verified.
#[derive(Debug)]
pub struct Parsed<'t> {
    pub alg: Alg,
    pub kid: Option<String>,
    pub typ: Option<String>,
    /// `header.payload`: the bytes the signature covers.
    pub signing_input: &'t str,
    pub payload: Vec<u8>,
    pub signature: Vec<u8>,
}

/// Splits and decodes a compact JWS. Refuses anything that is not exactly `h.p.s`.
pub fn parse(token: &str) -> Result<Parsed<'_>, Reason> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Reason::TokenMalformed);
    };
    if h.is_empty() || p.is_empty() || s.is_empty() {
        return Err(Reason::TokenMalformed);
    }
    let header_bytes = b64(h)?;
    // serde would also read a struct from a JSON array; the header must be an object.
    if header_bytes.trim_ascii_start().first() != Some(&b'{') {
        return Err(Reason::TokenMalformed);
    }
    let header: RawHeader =
        serde_json::from_slice(&header_bytes).map_err(|_| Reason::TokenMalformed)?;
    if header.crit.is_some() {
        return Err(Reason::CritUnsupported);
    }
    if header.enc.is_some() || header.zip.is_some() {
        return Err(Reason::TokenMalformed);
    }
    if header
        .cty
        .as_deref()
        .is_some_and(|c| c.eq_ignore_ascii_case("jwt"))
    {
        // Nested JWTs are not accepted: the outer signature would vouch for an opaque blob.
        return Err(Reason::TokenMalformed);
    }
    let alg = Alg::from_name(&header.alg).ok_or(Reason::AlgNotAllowed)?;
    let signing_input = token
        .get(..h.len() + 1 + p.len())
        .ok_or(Reason::TokenMalformed)?;
    Ok(Parsed {
        alg,
        kid: header.kid,
        typ: header.typ,
        signing_input,
        payload: b64(p)?,
        signature: b64(s)?,
    })
}

fn b64(segment: &str) -> Result<Vec<u8>, Reason> {
    URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| Reason::TokenMalformed)
}

/// Checks a signature with a key: the pure-Rust [`RustCrypto`], or (in the adapter) the host's
/// native crypto for the algorithms it supports.
pub trait Verifier {
    fn verify(&self, parsed: &Parsed<'_>, key: &Key) -> bool;
}

/// Signature verification inside the wasm VM (RustCrypto crates).
pub struct RustCrypto;

impl Verifier for RustCrypto {
    fn verify(&self, parsed: &Parsed<'_>, key: &Key) -> bool {
        verify_with(parsed, key)
    }
}

/// Verifies `parsed` with `key`. `false` when the key's family does not fit the algorithm.
pub fn verify_with(parsed: &Parsed<'_>, key: &Key) -> bool {
    let msg = parsed.signing_input.as_bytes();
    let sig = parsed.signature.as_slice();
    match (&key.material, parsed.alg) {
        (KeyMaterial::Hmac(secret), a) if a.is_hmac() => hmac_ok(a, secret, msg, sig),
        (KeyMaterial::Rsa(k), a) if a.is_rsa() => rsa_ok(a, k, msg, sig),
        (KeyMaterial::P256(k), Alg::ES256) => {
            use p256::ecdsa::signature::Verifier as _;
            p256::ecdsa::Signature::from_slice(sig).is_ok_and(|s| k.verify(msg, &s).is_ok())
        }
        (KeyMaterial::P384(k), Alg::ES384) => {
            use p384::ecdsa::signature::Verifier as _;
            p384::ecdsa::Signature::from_slice(sig).is_ok_and(|s| k.verify(msg, &s).is_ok())
        }
        (KeyMaterial::Ed25519(k), Alg::EdDSA) => ed25519_dalek::Signature::from_slice(sig)
            .is_ok_and(|s| k.verify_strict(msg, &s).is_ok()),
        _ => false,
    }
}

fn hmac_ok(alg: Alg, secret: &[u8], msg: &[u8], sig: &[u8]) -> bool {
    use hmac::{Hmac, Mac as _};
    fn check<M: hmac::Mac>(
        mac: Result<M, hmac::digest::InvalidLength>,
        msg: &[u8],
        sig: &[u8],
    ) -> bool {
        match mac {
            Ok(mut m) => {
                m.update(msg);
                m.verify_slice(sig).is_ok()
            }
            Err(_) => false,
        }
    }
    match alg {
        Alg::HS256 => check(Hmac::<sha2::Sha256>::new_from_slice(secret), msg, sig),
        Alg::HS384 => check(Hmac::<sha2::Sha384>::new_from_slice(secret), msg, sig),
        Alg::HS512 => check(Hmac::<sha2::Sha512>::new_from_slice(secret), msg, sig),
        _ => false,
    }
}

fn rsa_ok(alg: Alg, key: &rsa::RsaPublicKey, msg: &[u8], sig: &[u8]) -> bool {
    use rsa::{Pkcs1v15Sign, Pss};
    use sha2::{Digest as _, Sha256, Sha384, Sha512};
    let result = match alg {
        Alg::RS256 => key.verify(Pkcs1v15Sign::new::<Sha256>(), &Sha256::digest(msg), sig),
        Alg::RS384 => key.verify(Pkcs1v15Sign::new::<Sha384>(), &Sha384::digest(msg), sig),
        Alg::RS512 => key.verify(Pkcs1v15Sign::new::<Sha512>(), &Sha512::digest(msg), sig),
        Alg::PS256 => key.verify(Pss::new::<Sha256>(), &Sha256::digest(msg), sig),
        Alg::PS384 => key.verify(Pss::new::<Sha384>(), &Sha384::digest(msg), sig),
        Alg::PS512 => key.verify(Pss::new::<Sha512>(), &Sha512::digest(msg), sig),
        _ => return false,
    };
    result.is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(s: &str) -> String {
        URL_SAFE_NO_PAD.encode(s)
    }

    fn token(header: &str, payload: &str) -> String {
        format!("{}.{}.c2ln", enc(header), enc(payload))
    }

    #[test]
    fn a_well_formed_token_is_split_and_decoded() {
        let t = token(r#"{"alg":"RS256","kid":"k1","typ":"JWT"}"#, r#"{"a":1}"#);
        let p = parse(&t).unwrap();
        assert_eq!(p.alg, Alg::RS256);
        assert_eq!(p.kid.as_deref(), Some("k1"));
        assert_eq!(p.payload, br#"{"a":1}"#);
        assert_eq!(p.signature, b"sig");
        assert!(t.starts_with(p.signing_input));
    }

    #[test]
    fn malformed_tokens_are_refused_with_their_reason() {
        let cases: Vec<(String, Reason)> = vec![
            ("".into(), Reason::TokenMalformed),
            ("abc".into(), Reason::TokenMalformed),
            ("a.b".into(), Reason::TokenMalformed),
            ("a.b.c.d.e".into(), Reason::TokenMalformed),
            (
                format!("{}..c2ln", enc(r#"{"alg":"RS256"}"#)),
                Reason::TokenMalformed,
            ),
            (token(r#"{"alg":"none"}"#, "{}"), Reason::AlgNotAllowed),
            (token(r#"{"alg":"None"}"#, "{}"), Reason::AlgNotAllowed),
            (token(r#"{"alg":"rs256"}"#, "{}"), Reason::AlgNotAllowed),
            (
                token(r#"{"alg":"RS256","crit":["exp"]}"#, "{}"),
                Reason::CritUnsupported,
            ),
            (
                token(r#"{"alg":"RS256","crit":null}"#, "{}"),
                Reason::CritUnsupported,
            ),
            (
                token(r#"{"alg":"RS256","crit":[]}"#, "{}"),
                Reason::CritUnsupported,
            ),
            (
                token(r#"{"alg":"RS256","enc":null}"#, "{}"),
                Reason::TokenMalformed,
            ),
            (
                token(r#"{"alg":"RS256","enc":"A128GCM"}"#, "{}"),
                Reason::TokenMalformed,
            ),
            (
                token(r#"{"alg":"RS256","cty":"JWT"}"#, "{}"),
                Reason::TokenMalformed,
            ),
            (
                token(r#"{"alg":"RS256","alg":"HS256"}"#, "{}"),
                Reason::TokenMalformed,
            ),
            (token(r#"["RS256"]"#, "{}"), Reason::TokenMalformed),
            (token(r#"{"alg":256}"#, "{}"), Reason::TokenMalformed),
            (
                token(r#"{"alg":"RS256","kid":7}"#, "{}"),
                Reason::TokenMalformed,
            ),
            (
                format!("{}=.{}.c2ln", enc(r#"{"alg":"RS256"}"#), enc("{}")),
                Reason::TokenMalformed,
            ),
            (
                format!("{}.e30.c2+n", enc(r#"{"alg":"RS256"}"#)),
                Reason::TokenMalformed,
            ),
        ];
        for (t, want) in cases {
            assert_eq!(parse(&t).err(), Some(want), "token {t:?}");
        }
    }

    #[test]
    fn non_utf8_header_is_refused() {
        let t = format!("{}.e30.c2ln", URL_SAFE_NO_PAD.encode([0xff, 0xfe, b'{']));
        assert_eq!(parse(&t).err(), Some(Reason::TokenMalformed));
    }

    #[test]
    fn non_canonical_trailing_bits_are_refused() {
        // "e30" is "{}"; "e31" decodes to the same bytes with non-zero trailing bits.
        let t = format!("{}.e31.c2ln", enc(r#"{"alg":"RS256"}"#));
        assert_eq!(parse(&t).err(), Some(Reason::TokenMalformed));
    }
}
