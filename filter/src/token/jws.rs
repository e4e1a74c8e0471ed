//! Compact JWS: the token layer on `jsonwebtoken` (12.x).
//!
//! Algorithm names are `jsonwebtoken`'s ([`jsonwebtoken::Algorithm`]), plus `ES512`, which
//! `jsonwebtoken` 12 does not have. A token is first read here, before any key is chosen:
//! exactly three canonical base64url segments, a header object whose `alg`, `kid` and `typ`
//! choose the keys, and refusals of everything svcauth does not process (`crit` with any value,
//! JWE and nested tokens). The signature is then checked by [`jsonwebtoken::decode`] with its
//! time, audience and issuer checks off (the host clock and svcauth's own claim checks stay in
//! `verify`), through [`PROVIDER`], the `jsonwebtoken` [`CryptoProvider`] of svcauth: it checks
//! that the key's family and curve fit the algorithm, then verifies with the host's native
//! crypto where the adapter offers it ([`with_host`]), else with the RustCrypto crates inside
//! the VM. `ES512` tokens take the same checks without `jsonwebtoken::decode` (see
//! `docs/design.md`).

use std::cell::Cell;
use std::rc::Rc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::{Error as JwtError, ErrorKind};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, EncodingKey, Validation};
use serde::{Deserialize, Deserializer};

use crate::contract::reason::Reason;
use crate::token::jwk::{Key, KeyMaterial};

pub use super::alg::{Alg, ALL_ALGS};

/// Deserializes any JSON value, `null` included, as "present".
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    serde::de::IgnoredAny::deserialize(d).map(|_| true)
}

/// The protected header fields svcauth reads before choosing a key. Unknown members are
/// ignored (RFC 7515), except those that change how the token must be processed, which are
/// refused whatever their value (`null` included).
#[derive(Debug, Deserialize)]
struct RawHeader {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    typ: Option<String>,
    #[serde(default, deserialize_with = "present")]
    crit: bool,
    #[serde(default, deserialize_with = "present")]
    enc: bool,
    #[serde(default, deserialize_with = "present")]
    zip: bool,
    #[serde(default)]
    cty: Option<String>,
}

/// A token split and decoded, not yet verified.
#[derive(Debug)]
pub struct Parsed<'t> {
    pub alg: Alg,
    pub kid: Option<String>,
    pub typ: Option<String>,
    /// The whole compact token.
    pub token: &'t str,
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
    if header.crit {
        return Err(Reason::CritUnsupported);
    }
    if header.enc || header.zip {
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
        token,
        signing_input,
        payload: b64(p)?,
        signature: b64(s)?,
    })
}

/// base64url without padding, canonical (non-zero trailing bits refused).
fn b64(segment: &str) -> Result<Vec<u8>, Reason> {
    URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| Reason::TokenMalformed)
}

/// Checks a signature with a key: [`RustCrypto`] inside the VM, or (in the adapter) the host's
/// native crypto for what it supports.
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

/// The host's native signature verification, offered by the adapter for one verification
/// at a time ([`with_host`]).
pub trait HostVerify {
    /// Verifies `signature` (JWS form) over `text` with the DER SubjectPublicKeyInfo `spki`.
    /// `None`: the host cannot do it (algorithm, or no such function); the VM does.
    fn verify(&self, alg: Alg, spki: &[u8], signature: &[u8], text: &[u8]) -> Option<bool>;
    /// Told when a signature was verified inside the VM while this host was offered.
    fn verified_in_vm(&self) {}
    /// Whether the VM may verify an RS*/ES* signature this host did not: false in the default
    /// `.wasm` (no RSA/ECDSA in the VM: such a signature verifies nothing, fail-closed).
    fn vm_verifies_rsa_ec(&self) -> bool {
        crate::token::vmcrypto::RSA_EC_IN_VM
    }
}

thread_local! {
    static HOST: Cell<Option<Rc<dyn HostVerify>>> = const { Cell::new(None) };
}

/// Runs `f` with `host` offered to [`PROVIDER`]'s verifiers (the wasm VM is single-threaded;
/// natively no host is ever offered).
pub fn with_host<R>(host: Rc<dyn HostVerify>, f: impl FnOnce() -> R) -> R {
    let before = HOST.with(|h| h.replace(Some(host)));
    let r = f();
    HOST.with(|h| h.set(before));
    r
}

fn current_host() -> Option<Rc<dyn HostVerify>> {
    HOST.with(|h| {
        let v = h.take();
        let c = v.clone();
        h.set(v);
        c
    })
}

/// svcauth's `jsonwebtoken` crypto provider: verification only (svcauth never signs in the
/// filter; the CLI's signing is in `mint`).
pub static PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory: no_signer,
    verifier_factory: new_verifier,
    key_utils: KeyUtils::new_unimplemented(),
};

fn no_signer(_: &Algorithm, _: &EncodingKey) -> jsonwebtoken::errors::Result<Box<dyn JwtSigner>> {
    Err(ErrorKind::UnsupportedAlgorithm.into())
}

/// The verifier for `alg` and `key`: refuses a key whose family does not fit the algorithm
/// (the algorithm-confusion check that `jsonwebtoken`'s own providers do, and a custom one
/// must do itself); the curve is checked when the key is read.
fn new_verifier(
    alg: &Algorithm,
    key: &DecodingKey,
) -> jsonwebtoken::errors::Result<Box<dyn JwtVerifier>> {
    if key.family() != alg.family() {
        return Err(ErrorKind::InvalidAlgorithm.into());
    }
    let ours = Alg::from_jwt(*alg).ok_or(JwtError::from(ErrorKind::UnsupportedAlgorithm))?;
    Ok(Box::new(Check {
        alg: *alg,
        ours,
        key: key.try_get_as_bytes()?.to_vec(),
    }))
}

/// One signature check: `key` is the DER SubjectPublicKeyInfo of an RSA or EC key, the raw
/// 32 bytes of an Ed25519 key, or the HMAC secret (see [`decoding_key`]).
struct Check {
    alg: Algorithm,
    ours: Alg,
    key: Vec<u8>,
}

impl signature::Verifier<Vec<u8>> for Check {
    fn verify(&self, msg: &[u8], sig: &Vec<u8>) -> Result<(), signature::Error> {
        if check(self.ours, &self.key, msg, sig) {
            Ok(())
        } else {
            Err(signature::Error::new())
        }
    }
}

impl JwtVerifier for Check {
    fn algorithm(&self) -> Algorithm {
        self.alg
    }
}

/// The host first (when offered and able), else the VM.
fn check(alg: Alg, key: &[u8], msg: &[u8], sig: &[u8]) -> bool {
    let host = current_host();
    if let Some(h) = &host {
        if !alg.is_hmac() && alg.family() != AlgorithmFamily::Ed {
            if let Some(valid) = h.verify(alg, key, sig, msg) {
                return valid;
            }
            if !h.vm_verifies_rsa_ec() {
                return false;
            }
        }
    }
    let valid = crate::token::vmcrypto::verify(alg, key, msg, sig);
    if let Some(h) = &host {
        h.verified_in_vm();
    }
    valid
}

/// The key as `jsonwebtoken` carries it to [`PROVIDER`]. `None` for an ES512 key, which
/// `jsonwebtoken` cannot carry (its EC family is ES256/ES384).
pub fn decoding_key(key: &Key) -> Option<DecodingKey> {
    match &key.material {
        KeyMaterial::Hmac(s) => DecodingKey::from_secret(s).ok(),
        KeyMaterial::Rsa(_) => Some(DecodingKey::from_rsa_der(&key.spki_der)),
        KeyMaterial::P256(_) | KeyMaterial::P384(_) => {
            Some(DecodingKey::from_ec_der(&key.spki_der))
        }
        KeyMaterial::P521(_) => None,
        KeyMaterial::Ed25519(k) => Some(DecodingKey::from_ed_der(k.as_bytes())),
    }
}

/// `jsonwebtoken`'s checks for one algorithm, with everything svcauth checks itself off: no
/// time checks (the host clock is svcauth's), no required claims, no audience or issuer.
fn validation(alg: Algorithm) -> Validation {
    let mut v = Validation::new(alg);
    v.required_spec_claims.clear();
    v.leeway = 0;
    v.validate_exp = false;
    v.validate_nbf = false;
    v.validate_aud = false;
    v
}

/// Installs [`PROVIDER`] as `jsonwebtoken`'s process default (the first call does); `true`
/// when it is the default, so that no other provider can ever verify a token of svcauth.
pub fn install_provider() -> bool {
    let _ = PROVIDER.install_default();
    CryptoProvider::try_get_default().is_some_and(|p| std::ptr::eq(p, &PROVIDER))
}

/// Verifies `parsed` with `key`. `false` when the key's family or curve does not fit the
/// algorithm, or the signature is not valid.
pub fn verify_with(parsed: &Parsed<'_>, key: &Key) -> bool {
    if !key.fits(parsed.alg) {
        return false;
    }
    match parsed.alg.jwt() {
        Some(alg) => {
            let Some(dk) = decoding_key(key) else {
                return false;
            };
            if !install_provider() {
                return false;
            }
            jsonwebtoken::decode::<serde::de::IgnoredAny>(parsed.token, &dk, &validation(alg))
                .is_ok()
        }
        // ES512: the same provider check, without jsonwebtoken's decode (it has no ES512).
        None => check(
            parsed.alg,
            &key.spki_der,
            parsed.signing_input.as_bytes(),
            &parsed.signature,
        ),
    }
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
