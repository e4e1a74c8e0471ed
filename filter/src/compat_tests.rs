//! Tokens and key sets that Envoy's `jwt_authn` (`jwt_verify_lib`) accepts, held natively:
//! ES512, tokens without `kid`, JWK Sets with keys svcauth skips, EC keys without `crv`,
//! Google's X.509 key sets and `require_expiration`.

use serde_json::{json, Map, Value};

use crate::config::Config;
use crate::contract::reason::Reason;
use crate::fixtures::{self, claims, claims_with, Fixture, NOW};
use crate::mint::sign;
use crate::token::alg::Alg;
use crate::verify::verify;

fn config_with(provider: Value) -> Result<Config, String> {
    let mut c = fixtures::config_json();
    if let (Some(p), Value::Object(extra)) = (c["providers"]["internal"].as_object_mut(), provider)
    {
        p.extend(extra);
    }
    Config::from_json(c.to_string().as_bytes(), &fixtures::env).map_err(|e| e.to_string())
}

fn signed(f: Fixture, alg: Alg, kid: Option<&str>, claims: &Value) -> String {
    let mut h = Map::new();
    if let Some(kid) = kid {
        h.insert("kid".into(), kid.into());
    }
    sign(&fixtures::signing_key(f), alg, &h, claims).unwrap()
}

fn reason(c: &Config, t: &str) -> Option<Reason> {
    verify(c, t, NOW).err().map(|f| f.reason)
}

#[test]
fn es512_tokens_verify_with_p521_keys_in_the_vm() {
    let c = config_with(json!({"jwks": fixtures::jwks_with_p521()})).unwrap();
    let good = signed(Fixture::Ec521, Alg::ES512, Some("ec521"), &claims(NOW));
    assert_eq!(reason(&c, &good), None);
    let kidless = signed(Fixture::Ec521, Alg::ES512, None, &claims(NOW));
    assert_eq!(reason(&c, &kidless), None);
    // The P-384 key's signature under the P-521 kid, and a P-521 key for ES384: never.
    let other = signed(Fixture::Ec384, Alg::ES384, Some("ec521"), &claims(NOW));
    assert_eq!(reason(&c, &other), Some(Reason::UnknownKid));
    let mut t = good.clone();
    t.pop();
    t.push(if good.ends_with('A') { 'B' } else { 'A' });
    assert_eq!(reason(&c, &t), Some(Reason::BadSignature));
    // Without the P-521 key, ES512 has no key to go to.
    let plain = config_with(json!({})).unwrap();
    assert_eq!(reason(&plain, &good), Some(Reason::AlgNotAllowed));
}

#[test]
fn a_token_without_kid_is_tried_with_each_key_that_fits() {
    let c = config_with(json!({})).unwrap();
    // Two RSA keys in the set: the token signed by the second one verifies.
    let t = signed(Fixture::RsaB, Alg::RS256, None, &claims(NOW));
    assert_eq!(reason(&c, &t), None);
    let t = signed(Fixture::RsaA, Alg::PS256, None, &claims(NOW));
    assert_eq!(reason(&c, &t), None);
    // Signed by a key that is not in the set: every fitting key is tried, none verifies.
    let stranger = crate::mint::SigningKey::generate(Alg::ES256).unwrap();
    let t = sign(&stranger, Alg::ES256, &Map::new(), &claims(NOW)).unwrap();
    assert_eq!(reason(&c, &t), Some(Reason::BadSignature));
}

#[test]
fn key_sets_load_like_jwt_verify_lib() {
    let mut ec_no_crv = fixtures::public_jwk(Fixture::Ec384, "ec384");
    ec_no_crv.as_object_mut().unwrap().remove("crv");
    ec_no_crv["alg"] = json!("ES384");
    let set = json!({"keys": [
        {"kty": "OKP", "crv": "X25519", "kid": "x", "x": "hSDwCYkwp1R0i33ctD73Wg2_Og0mOBr066SpjqqbTmo"},
        {"kty": "EC", "crv": "secp256k1", "kid": "k1", "x": "AA", "y": "AA"},
        ec_no_crv,
        fixtures::public_jwk(Fixture::Ec256, "ec256"),
    ]});
    let c = config_with(json!({"jwks": set})).unwrap();
    assert_eq!(
        c.providers[0]
            .keys
            .iter()
            .filter(|k| k.kid.is_some())
            .count(),
        2
    );
    let t = signed(Fixture::Ec384, Alg::ES384, Some("ec384"), &claims(NOW));
    assert_eq!(reason(&c, &t), None);
    // A set of skipped keys only, and a malformed key of a supported type, are refused.
    let e = config_with(json!({"jwks": {"keys": [{"kty": "OKP", "crv": "X25519", "x": "AA"}]}}))
        .unwrap_err();
    assert!(
        e.contains(
            "providers.internal.jwks: unusable key: key 0: unsupported OKP curve \"X25519\""
        ),
        "{e}"
    );
    let e = config_with(json!({"jwks": {"keys": [
        fixtures::public_jwk(Fixture::Ec256, "ec256"),
        {"kty": "EC", "crv": "P-256", "kid": "bad", "x": "AAAA", "y": "AAAA"},
    ]}}))
    .unwrap_err();
    assert!(
        e.contains(r#"unusable key: key 1 (kid "bad"): not a point on P-256"#),
        "{e}"
    );
}

#[test]
fn google_x509_key_sets_are_read_for_their_rsa_keys() {
    let set = json!({"rsa-a": fixtures::RSA_A_CERT});
    let c = config_with(json!({"jwks": set})).unwrap();
    let t = signed(Fixture::RsaA, Alg::RS256, Some("rsa-a"), &claims(NOW));
    assert_eq!(reason(&c, &t), None);
    let wrong_kid = signed(Fixture::RsaA, Alg::RS256, Some("other"), &claims(NOW));
    assert_eq!(reason(&c, &wrong_kid), Some(Reason::UnknownKid));
    // As in jwt_verify_lib, a certificate of an EC key refuses the set.
    let e = config_with(json!({"jwks": {"ec": fixtures::EC256_CERT}})).unwrap_err();
    assert!(e.contains("not an RSA key"), "{e}");
    // An object that is not all kid -> PEM certificate is not an X.509 set.
    let e = config_with(json!({"jwks": {"rsa-a": fixtures::RSA_A_CERT, "n": 5}})).unwrap_err();
    assert!(e.contains("not a JWK Set"), "{e}");
    let broken = fixtures::RSA_A_CERT.replacen("MII", "MIJ", 1);
    let e = config_with(json!({"jwks": {"rsa-a": broken}})).unwrap_err();
    assert!(e.contains("certificate \"rsa-a\""), "{e}");
}

#[test]
fn require_expiration_false_accepts_tokens_without_exp() {
    let mut no_exp = claims(NOW);
    no_exp.as_object_mut().unwrap().remove("exp");
    let t = signed(Fixture::Ec256, Alg::ES256, Some("ec256"), &no_exp);
    let strict = config_with(json!({})).unwrap();
    assert_eq!(reason(&strict, &t), Some(Reason::ExpMissing));
    let lax = config_with(json!({"require_expiration": false})).unwrap();
    let v = verify(&lax, &t, NOW).unwrap();
    assert_eq!(v.exp, i64::MAX);
    // The other checks still hold: an expired exp, a future nbf, a lifetime bound.
    let expired = signed(
        Fixture::Ec256,
        Alg::ES256,
        Some("ec256"),
        &claims_with(NOW, json!({"exp": NOW - 3600})),
    );
    assert_eq!(reason(&lax, &expired), Some(Reason::TokenExpired));
    let mut early = no_exp.clone();
    early["nbf"] = json!(NOW + 3600);
    let early = signed(Fixture::Ec256, Alg::ES256, Some("ec256"), &early);
    assert_eq!(reason(&lax, &early), Some(Reason::TokenNotYetValid));
    let bounded =
        config_with(json!({"require_expiration": false, "max_lifetime_seconds": 3600})).unwrap();
    assert_eq!(reason(&bounded, &t), Some(Reason::LifetimeTooLong));
}

#[test]
fn crit_is_refused_whatever_its_value() {
    let c = config_with(json!({})).unwrap();
    let key = fixtures::signing_key(Fixture::Ec256);
    for crit in ["null", "[]", "[\"exp\"]", "5", "{}"] {
        let h = format!(r#"{{"alg":"ES256","kid":"ec256","crit":{crit}}}"#);
        let t = crate::mint::sign_raw(&key, Alg::ES256, &h, &claims(NOW).to_string()).unwrap();
        assert_eq!(reason(&c, &t), Some(Reason::CritUnsupported), "crit {crit}");
    }
}
