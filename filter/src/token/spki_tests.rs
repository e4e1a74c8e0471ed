//! Tests of `spki`: svcauth's RSA public keys against RustCrypto's `rsa::PublicKey`.

use super::*;
use crate::fixtures::{self, Fixture};
use rsa::pkcs8::{DecodePublicKey as _, EncodePublicKey as _};
use rsa::traits::PublicKeyParts as _;

fn rustcrypto(f: Fixture) -> rsa::PublicKey {
    let jwk = fixtures::public_jwk(f, "k");
    let set =
        crate::token::set::parse_set(&serde_json::json!({"keys": [jwk]}).to_string()).unwrap();
    rsa::PublicKey::from_public_key_der(&set.keys[0].spki_der).unwrap()
}

#[test]
fn the_der_is_byte_for_byte_what_rustcrypto_writes() {
    for f in [Fixture::RsaA, Fixture::RsaB] {
        let theirs = rustcrypto(f);
        let ours = RsaKey::new(&theirs.n_bytes(), &theirs.e_bytes(), 2048..=8192).unwrap();
        assert_eq!(
            ours.spki_der().unwrap(),
            theirs.to_public_key_der().unwrap().as_bytes()
        );
        assert_eq!(theirs, ours);
        assert_eq!(ours.bits(), 2048);
        let back = RsaKey::from_spki_der(&ours.spki_der().unwrap()).unwrap();
        assert_eq!(back, ours);
    }
}

#[test]
fn keys_rustcrypto_refuses_are_refused_with_its_reasons() {
    let good = rustcrypto(Fixture::RsaA);
    let n = good.n_bytes().to_vec();
    let mut even = n.clone();
    *even.last_mut().unwrap() &= 0xfe;
    let cases: [(Vec<u8>, Vec<u8>, &str); 6] = [
        (n.clone(), vec![1, 0, 0], "invalid exponent"),
        (even.clone(), vec![1, 0, 1], "invalid modulus"),
        (n.clone(), vec![1], "public exponent too small"),
        (n.clone(), vec![4, 0, 0, 0, 1], "public exponent too large"),
        (n[..128].to_vec(), vec![1, 0, 1], "modulus too small"),
        (n.clone(), vec![], "invalid exponent"),
    ];
    for (n, e, want) in cases {
        assert_eq!(RsaKey::new(&n, &e, 2048..=8192).unwrap_err(), want);
        let theirs = rsa::PublicKey::new_with_size_limits(
            rsa::BoxedUint::from_be_slice_vartime(&n),
            rsa::BoxedUint::from_be_slice_vartime(&e),
            2048..=8192,
        );
        assert!(theirs.is_err(), "rsa accepts what svcauth refuses: {want}");
    }
    // Leading zeros are not part of the number.
    let padded = [&[0u8, 0][..], &n].concat();
    let k = RsaKey::new(&padded, &[0, 1, 0, 1], 2048..=8192).unwrap();
    assert_eq!(k.n(), n.as_slice());
    assert_eq!(k.e(), &[1, 0, 1]);
    assert_eq!(format!("{k:?}"), "RsaKey(2048 bits)");
}

#[test]
fn only_rsa_subject_public_keys_are_read() {
    use p256::pkcs8::EncodePublicKey as _;
    let ec = fixtures::public_jwk(Fixture::Ec256, "k");
    let set = crate::token::set::parse_set(&serde_json::json!({"keys": [ec]}).to_string()).unwrap();
    let crate::token::jwk::KeyMaterial::P256(p) = &set.keys[0].material else {
        panic!("not a P-256 key");
    };
    let der = p.to_public_key_der().unwrap();
    assert_eq!(
        RsaKey::from_spki_der(der.as_bytes()).unwrap_err(),
        "not an RSA key"
    );
    assert!(RsaKey::from_spki_der(b"\x30\x00").is_err());
}
