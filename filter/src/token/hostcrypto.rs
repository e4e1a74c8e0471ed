//! Signature verification by the host: Envoy's `verify_signature` foreign function (native
//! BoringSSL) takes a small protobuf message; this module builds it and reads the answer, and
//! converts JWS ECDSA signatures (`r || s`) to the ASN.1 DER form BoringSSL expects (with the
//! RustCrypto encoder).
//!
//! Envoy's function calls `EVP_DigestVerifyInit` with the hash and the key and sets no padding,
//! so it verifies RSA PKCS#1 v1.5 (RS256/384/512) and ECDSA on any curve BoringSSL knows
//! (ES256/384/512), never RSA-PSS. PS*, EdDSA and HMAC always stay in the wasm VM. The adapter
//! falls back to the VM for good as soon as the host lacks the function; `tests/host_crypto.rs`
//! holds both paths to the same decisions.

use crate::token::alg::Alg;

/// The hash name the host uses for `alg`, if the host can verify `alg`.
pub fn host_hash(alg: Alg) -> Option<&'static str> {
    match alg {
        Alg::RS256 | Alg::ES256 => Some("sha256"),
        Alg::RS384 | Alg::ES384 => Some("sha384"),
        Alg::RS512 | Alg::ES512 => Some("sha512"),
        _ => None,
    }
}

fn varint(out: &mut Vec<u8>, mut v: usize) {
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn field(out: &mut Vec<u8>, number: u8, data: &[u8]) {
    out.push((number << 3) | 2);
    varint(out, data.len());
    out.extend_from_slice(data);
}

/// `VerifySignatureArguments { hash_function = 1, public_key = 2 (DER), signature = 3, text = 4 }`.
pub fn encode_args(hash: &str, spki_der: &[u8], signature: &[u8], text: &[u8]) -> Vec<u8> {
    let mut out =
        Vec::with_capacity(16 + hash.len() + spki_der.len() + signature.len() + text.len());
    field(&mut out, 1, hash.as_bytes());
    field(&mut out, 2, spki_der);
    field(&mut out, 3, signature);
    field(&mut out, 4, text);
    out
}

fn read_varint(data: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v: u64 = 0;
    for shift in (0..64).step_by(7) {
        let b = *data.get(*pos)?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// Reads `VerifySignatureResult { bool result = 1; string error = 2; }`: `Some(result)`, or
/// `None` for an answer that is not such a message.
pub fn decode_result(data: &[u8]) -> Option<bool> {
    let mut pos = 0;
    let mut result = false;
    while pos < data.len() {
        let tag = read_varint(data, &mut pos)?;
        match (tag >> 3, tag & 7) {
            (1, 0) => result = read_varint(data, &mut pos)? == 1,
            (_, 0) => {
                read_varint(data, &mut pos)?;
            }
            (_, 2) => {
                let len = usize::try_from(read_varint(data, &mut pos)?).ok()?;
                pos = pos.checked_add(len).filter(|p| *p <= data.len())?;
            }
            _ => return None,
        }
    }
    Some(result)
}

/// A JWS ECDSA signature (`r || s`, each the curve's size) as ASN.1 DER `SEQUENCE { r, s }`,
/// with the `der` crate's encoder (minimal integers, a sign byte where needed). `None` when the
/// length is not twice the curve's size for `alg`. Out-of-range values are still encoded and
/// left to the host to refuse, as any invalid signature.
pub fn ecdsa_der(alg: Alg, raw: &[u8]) -> Option<Vec<u8>> {
    use der::asn1::UintRef;
    use der::{Encode as _, Header, Length, Tag};
    let n = match alg {
        Alg::ES256 => 32,
        Alg::ES384 => 48,
        Alg::ES512 => 66,
        _ => return None,
    };
    if raw.len() != 2 * n {
        return None;
    }
    let (r, s) = raw.split_at(n);
    let r = UintRef::new(r).ok()?.to_der().ok()?;
    let s = UintRef::new(s).ok()?.to_der().ok()?;
    let len = Length::try_from(r.len() + s.len()).ok()?;
    let mut out = Header::new(Tag::Sequence, len).to_der().ok()?;
    out.extend_from_slice(&r);
    out.extend_from_slice(&s);
    Some(out)
}

/// The foreign-function argument for verifying `signature` (JWS form) over `text` with the
/// SubjectPublicKeyInfo `spki` on the host, or `None` when the host cannot do it (algorithm, no
/// key) and the wasm path must. `Some(Err(()))`: the signature cannot be valid (an ECDSA
/// signature of the wrong length) without asking anyone.
pub fn request(
    alg: Alg,
    spki: &[u8],
    signature: &[u8],
    text: &[u8],
) -> Option<Result<Vec<u8>, ()>> {
    let hash = host_hash(alg)?;
    if spki.is_empty() {
        return None;
    }
    let der_sig;
    let sig: &[u8] = if alg.is_rsa() {
        signature
    } else {
        match ecdsa_der(alg, signature) {
            Some(d) => {
                der_sig = d;
                &der_sig
            }
            None => return Some(Err(())),
        }
    };
    Some(Ok(encode_args(hash, spki, sig, text)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_the_protobuf_envoy_expects() {
        let a = encode_args("sha256", &[1, 2], &[3], b"t");
        assert_eq!(
            a,
            vec![
                0x0a, 6, b's', b'h', b'a', b'2', b'5', b'6', 0x12, 2, 1, 2, 0x1a, 1, 3, 0x22, 1,
                b't'
            ]
        );
        let long = encode_args("sha256", &[0u8; 300], &[], b"");
        assert_eq!(&long[8..11], &[0x12, 0xac, 0x02], "300 as a varint");
    }

    #[test]
    fn results_are_read_and_garbage_is_not_a_result() {
        assert_eq!(decode_result(&[0x08, 0x01]), Some(true));
        assert_eq!(
            decode_result(&[0x08, 0x00, 0x12, 0x03, b'b', b'a', b'd']),
            Some(false)
        );
        assert_eq!(decode_result(&[]), Some(false), "proto3 default: false");
        assert_eq!(decode_result(&[0x12, 0x09, b'x']), None, "truncated");
        assert_eq!(decode_result(&[0x0b]), None, "unknown wire type");
    }

    #[test]
    fn ecdsa_signatures_become_minimal_der() {
        let mut raw = vec![0u8; 64];
        raw[31] = 1; // r = 1
        raw[32] = 0x80; // s has its top bit set: needs a sign byte
        let der = ecdsa_der(Alg::ES256, &raw).unwrap();
        assert_eq!(&der[..5], &[0x30, 3 + 35, 0x02, 0x01, 0x01]);
        assert_eq!(&der[5..8], &[0x02, 33, 0x00]);
        assert_eq!(der.len(), 2 + 3 + 35);
        assert!(ecdsa_der(Alg::ES256, &[0u8; 63]).is_none());
        assert_eq!(
            ecdsa_der(Alg::ES256, &[0u8; 64]).unwrap(),
            vec![0x30, 6, 0x02, 1, 0, 0x02, 1, 0],
            "zero is still encoded; the host refuses it"
        );
        let p384 = ecdsa_der(Alg::ES384, &[0xffu8; 96]).unwrap();
        assert_eq!(
            &p384[..3],
            &[0x30, 2 * 51, 0x02],
            "two 49-byte integers, short-form length"
        );
        let p521 = ecdsa_der(Alg::ES512, &[0xffu8; 132]).unwrap();
        assert_eq!(&p521[..4], &[0x30, 0x81, 2 * 69, 0x02], "long-form length");
        assert!(ecdsa_der(Alg::ES512, &[1u8; 96]).is_none());
    }

    #[test]
    fn only_rs_and_es_algorithms_go_to_the_host() {
        assert_eq!(host_hash(Alg::RS384), Some("sha384"));
        assert_eq!(host_hash(Alg::ES512), Some("sha512"));
        for a in [Alg::PS256, Alg::HS256, Alg::EdDSA] {
            assert_eq!(host_hash(a), None);
        }
    }
}
