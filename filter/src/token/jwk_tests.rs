//! Tests of `jwk`: JWK key material, skipped and refused keys, key choice.

use super::*;
use crate::fixtures;
use crate::token::set::parse_set;

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
