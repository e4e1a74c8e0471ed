//! RSA public keys as svcauth keeps them: the modulus and the exponent as big-endian bytes,
//! checked as RustCrypto's `rsa::PublicKey::new` checks them, and written as the DER
//! SubjectPublicKeyInfo the host's `verify_signature` (and the VM's verifier) reads, with
//! RustCrypto's `pkcs1` and `spki` encoders.
//!
//! Why not `rsa::PublicKey` itself: building one computes Montgomery parameters with
//! `crypto-bigint`, which put ~57 KB into the default `.wasm`, where the host does all RSA
//! arithmetic. The VM's verifier (`vmcrypto`, feature `vm-crypto`) reads this DER back into an
//! `rsa::PublicKey` when it verifies.
//!
//! Uses: nothing of svcauth.

use std::ops::RangeInclusive;

use spki::der::asn1::{BitStringRef, UintRef};
use spki::der::{Decode as _, Encode as _};

/// `id-RSASSA-PSS` (RFC 4055), which `rsa` also reads as an RSA public key.
const RSASSA_PSS_OID: spki::ObjectIdentifier =
    spki::ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.10");

/// What `rsa::PublicKey` accepts as exponent: odd, at least 3, at most 2^33 - 1.
const MAX_EXPONENT: u64 = (1 << 33) - 1;

/// An RSA public key: `n` and `e`, big-endian, without leading zero bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct RsaKey {
    n: Vec<u8>,
    e: Vec<u8>,
}

impl std::fmt::Debug for RsaKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RsaKey({} bits)", self.bits())
    }
}

fn strip(b: &[u8]) -> &[u8] {
    let lead = b.iter().take_while(|x| **x == 0).count();
    b.get(lead..).unwrap_or_default()
}

fn bit_width(b: &[u8]) -> usize {
    b.first()
        .map_or(0, |top| b.len() * 8 - top.leading_zeros() as usize)
}

impl RsaKey {
    /// The key of modulus `n` and exponent `e` (big-endian), with the checks of RustCrypto's
    /// `rsa::PublicKey::new_with_size_limits`: the modulus's bit width in `bits`, the modulus
    /// odd, the exponent odd, from 3 to 2^33 - 1 and below the modulus.
    pub fn new(n: &[u8], e: &[u8], bits: RangeInclusive<usize>) -> Result<RsaKey, String> {
        let (n, e) = (strip(n), strip(e));
        let width = bit_width(n);
        if width < *bits.start() {
            return Err("modulus too small".into());
        }
        if width > *bits.end() {
            return Err("modulus too large".into());
        }
        if n.last().is_none_or(|b| b & 1 == 0) || bit_width(e) >= width {
            return Err("invalid modulus".into());
        }
        if e.last().is_none_or(|b| b & 1 == 0) {
            return Err("invalid exponent".into());
        }
        let e_value = (e.len() <= 8).then(|| e.iter().fold(0u64, |v, b| (v << 8) | u64::from(*b)));
        match e_value {
            Some(v) if v < 2 => return Err("public exponent too small".into()),
            Some(v) if v <= MAX_EXPONENT => {}
            _ => return Err("public exponent too large".into()),
        }
        Ok(RsaKey {
            n: n.to_vec(),
            e: e.to_vec(),
        })
    }

    /// The key of a DER SubjectPublicKeyInfo (`rsaEncryption` with NULL parameters, or
    /// `id-RSASSA-PSS` without parameters), with
    /// [`RsaKey::new`]'s checks for 1024 to 8192 bits (`rsa::PublicKey::from_public_key_der`).
    pub fn from_spki_der(der: &[u8]) -> Result<RsaKey, String> {
        let info = spki::SubjectPublicKeyInfoRef::from_der(der).map_err(|e| e.to_string())?;
        // As `rsa` reads them: rsaEncryption with NULL parameters, or RSASSA-PSS without any.
        let params = info.algorithm.parameters;
        match info.algorithm.oid {
            pkcs1::ALGORITHM_OID if params.is_some_and(|p| p.is_null()) => {}
            RSASSA_PSS_OID if params.is_none() => {}
            _ => return Err("not an RSA key".into()),
        }
        let bytes = info
            .subject_public_key
            .as_bytes()
            .ok_or("the key is not a whole number of bytes")?;
        let key = pkcs1::RsaPublicKeyRef::from_der(bytes).map_err(|e| e.to_string())?;
        RsaKey::new(
            key.modulus.as_bytes(),
            key.public_exponent.as_bytes(),
            1024..=8192,
        )
    }

    /// The modulus's width in bits.
    pub fn bits(&self) -> usize {
        bit_width(&self.n)
    }

    /// The modulus's length in bytes (as `rsa::traits::PublicKeyParts::n_bytes`).
    pub fn n_len(&self) -> usize {
        self.n.len()
    }

    /// The modulus, big-endian, without leading zeros.
    pub fn n(&self) -> &[u8] {
        &self.n
    }

    /// The exponent, big-endian, without leading zeros.
    pub fn e(&self) -> &[u8] {
        &self.e
    }

    /// The DER SubjectPublicKeyInfo (`rsaEncryption` with NULL parameters, the PKCS#1
    /// `RSAPublicKey` as the bit string), as `rsa`'s `EncodePublicKey` writes it.
    pub fn spki_der(&self) -> Option<Vec<u8>> {
        let pkcs1 = pkcs1::RsaPublicKeyRef {
            modulus: UintRef::new(&self.n).ok()?,
            public_exponent: UintRef::new(&self.e).ok()?,
        }
        .to_der()
        .ok()?;
        spki::SubjectPublicKeyInfoRef {
            algorithm: pkcs1::ALGORITHM_ID,
            subject_public_key: BitStringRef::from_bytes(&pkcs1).ok()?,
        }
        .to_der()
        .ok()
    }
}

/// The same key as RustCrypto's (for tests that compare the two).
#[cfg(test)]
impl PartialEq<RsaKey> for rsa::PublicKey {
    fn eq(&self, other: &RsaKey) -> bool {
        use rsa::traits::PublicKeyParts as _;
        self.n_bytes().as_ref() == other.n() && self.e_bytes().as_ref() == other.e()
    }
}

#[cfg(test)]
#[path = "spki_tests.rs"]
mod tests;
