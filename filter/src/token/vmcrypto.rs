//! Signature verification inside the wasm VM, with the RustCrypto crates (the versions
//! `jsonwebtoken` 12 is built against): HMAC and EdDSA always; RSA and ECDSA when the host
//! cannot (PS*, `host_crypto` off, no `verify_signature` function) in the builds that have
//! them ([`RSA_EC_IN_VM`]: natively, and the `.wasm` with the `vm-crypto` feature). In the
//! default `.wasm` an RS*/ES* signature the host did not verify verifies nothing here.

use crate::token::alg::Alg;
pub use crate::token::alg::{FALLBACK_WASM, RSA_EC_IN_VM};

/// Verifies `sig` (JWS form) over `msg` for `alg`. `key` is the HMAC secret, the raw 32 bytes
/// of an Ed25519 key, or the DER SubjectPublicKeyInfo of an RSA or EC key; a key that does not
/// parse as the algorithm's family and curve verifies nothing.
pub fn verify(alg: Alg, key: &[u8], msg: &[u8], sig: &[u8]) -> bool {
    match alg {
        Alg::HS256 | Alg::HS384 | Alg::HS512 => hmac_ok(alg, key, msg, sig),
        Alg::EdDSA => {
            let Ok(bytes) = <[u8; 32]>::try_from(key) else {
                return false;
            };
            ed25519_dalek::VerifyingKey::from_bytes(&bytes).is_ok_and(|k| {
                ed25519_dalek::Signature::from_slice(sig)
                    .is_ok_and(|s| k.verify_strict(msg, &s).is_ok())
            })
        }
        _ => rsa_ec(alg, key, msg, sig),
    }
}

/// The default `.wasm`: RS*/ES* only on the host.
#[cfg(not(any(feature = "vm-crypto", not(target_arch = "wasm32"))))]
fn rsa_ec(_: Alg, _: &[u8], _: &[u8], _: &[u8]) -> bool {
    false
}

/// RSA (PKCS#1 v1.5 and PSS) and ECDSA on P-256/384/521; `key` is the DER
/// SubjectPublicKeyInfo.
#[cfg(any(feature = "vm-crypto", not(target_arch = "wasm32")))]
fn rsa_ec(alg: Alg, key: &[u8], msg: &[u8], sig: &[u8]) -> bool {
    use rsa::pkcs8::DecodePublicKey as _;
    use signature::Verifier as _;
    match alg {
        Alg::RS256 | Alg::RS384 | Alg::RS512 | Alg::PS256 | Alg::PS384 | Alg::PS512 => {
            rsa::PublicKey::from_public_key_der(key).is_ok_and(|k| rsa_ok(alg, &k, msg, sig))
        }
        Alg::ES256 => p256::ecdsa::VerifyingKey::from_public_key_der(key).is_ok_and(|k| {
            p256::ecdsa::Signature::from_slice(sig).is_ok_and(|s| k.verify(msg, &s).is_ok())
        }),
        Alg::ES384 => p384::ecdsa::VerifyingKey::from_public_key_der(key).is_ok_and(|k| {
            p384::ecdsa::Signature::from_slice(sig).is_ok_and(|s| k.verify(msg, &s).is_ok())
        }),
        Alg::ES512 => p521::ecdsa::VerifyingKey::from_public_key_der(key).is_ok_and(|k| {
            p521::ecdsa::Signature::from_slice(sig).is_ok_and(|s| k.verify(msg, &s).is_ok())
        }),
        _ => false,
    }
}

fn hmac_ok(alg: Alg, secret: &[u8], msg: &[u8], sig: &[u8]) -> bool {
    use hmac::Hmac;
    fn check<M: hmac::Mac + hmac::KeyInit>(secret: &[u8], msg: &[u8], sig: &[u8]) -> bool {
        match <M as hmac::KeyInit>::new_from_slice(secret) {
            Ok(mut m) => {
                m.update(msg);
                m.verify_slice(sig).is_ok()
            }
            Err(_) => false,
        }
    }
    match alg {
        Alg::HS256 => check::<Hmac<sha2::Sha256>>(secret, msg, sig),
        Alg::HS384 => check::<Hmac<sha2::Sha384>>(secret, msg, sig),
        Alg::HS512 => check::<Hmac<sha2::Sha512>>(secret, msg, sig),
        _ => false,
    }
}

#[cfg(any(feature = "vm-crypto", not(target_arch = "wasm32")))]
fn rsa_ok(alg: Alg, key: &rsa::PublicKey, msg: &[u8], sig: &[u8]) -> bool {
    use rsa::{Pkcs1v15Sign, Pss};
    use sha2::{Digest as _, Sha256, Sha384, Sha512};
    let result = match alg {
        Alg::RS256 => key.verify(Pkcs1v15Sign::new::<Sha256>(), &Sha256::digest(msg), sig),
        Alg::RS384 => key.verify(Pkcs1v15Sign::new::<Sha384>(), &Sha384::digest(msg), sig),
        Alg::RS512 => key.verify(Pkcs1v15Sign::new::<Sha512>(), &Sha512::digest(msg), sig),
        Alg::PS256 => key.verify(Pss::<Sha256>::new(), &Sha256::digest(msg), sig),
        Alg::PS384 => key.verify(Pss::<Sha384>::new(), &Sha384::digest(msg), sig),
        Alg::PS512 => key.verify(Pss::<Sha512>::new(), &Sha512::digest(msg), sig),
        _ => return false,
    };
    result.is_ok()
}
