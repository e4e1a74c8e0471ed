//! `decide` on the token itself: every algorithm family, invalid tokens with their reasons,
//! expiry within the skew, the lifetime bound, required claims, the allow-list and `typ`.

use serde_json::json;

use crate::config::Config;
use crate::contract::reason::Reason;
use crate::fixtures::{self, claims, claims_with, hmac_token, token, token_alg, Fixture, NOW};
use crate::mint::{sign_raw, SigningKey};
use crate::token::alg::Alg;

use super::{config, outcome, with_config};

#[test]
fn every_algorithm_family_is_accepted() {
    let cfg = config();
    let c = claims(NOW);
    let cases = [
        token_alg(Fixture::RsaA, Alg::RS256, &c),
        token_alg(Fixture::RsaA, Alg::RS384, &c),
        token_alg(Fixture::RsaA, Alg::RS512, &c),
        token_alg(Fixture::RsaA, Alg::PS256, &c),
        token_alg(Fixture::RsaA, Alg::PS384, &c),
        token_alg(Fixture::RsaA, Alg::PS512, &c),
        token(Fixture::RsaB, &c),
        token(Fixture::Ec256, &c),
        token(Fixture::Ec384, &c),
        token(Fixture::Ed25519, &c),
        hmac_token(Alg::HS256, &c),
        hmac_token(Alg::HS384, &c),
        hmac_token(Alg::HS512, &c),
    ];
    for t in cases {
        assert_eq!(
            outcome(&cfg, "/orders", &t),
            Ok("orders-service".into()),
            "{t}"
        );
    }
}

#[test]
fn invalid_tokens_are_denied_with_their_reason() {
    let cfg = config();
    let c = |changes| claims_with(NOW, changes);
    let ec = |claims| token(Fixture::Ec256, &claims);
    let rsa_pub_pem = {
        use rsa::pkcs8::EncodePublicKey as _;
        let SigningKey::Rsa(k) = fixtures::signing_key(Fixture::RsaA) else {
            unreachable!()
        };
        k.to_public_key()
            .to_public_key_pem(rsa::pkcs8::LineEnding::LF)
            .unwrap()
    };
    let cases: Vec<(&str, String, Reason)> = vec![
        (
            "expired beyond skew",
            ec(c(json!({"exp": NOW - 61}))),
            Reason::TokenExpired,
        ),
        (
            "not yet valid",
            ec(c(json!({"nbf": NOW + 61}))),
            Reason::TokenNotYetValid,
        ),
        (
            "issued in the future",
            ec(c(json!({"iat": NOW + 61}))),
            Reason::IssuedInFuture,
        ),
        ("no exp", ec(c(json!({"exp": null}))), Reason::ExpMissing),
        (
            "exp as string",
            ec(c(json!({"exp": "9999999999"}))),
            Reason::TokenMalformed,
        ),
        (
            "exp as float",
            ec(c(json!({"exp": 1.5e10}))),
            Reason::TokenMalformed,
        ),
        (
            "exp beyond i64",
            ec(c(json!({"exp": 1e30}))),
            Reason::TokenMalformed,
        ),
        (
            "wrong issuer",
            ec(c(json!({"iss": "https://evil"}))),
            Reason::IssuerMismatch,
        ),
        (
            "numeric issuer",
            ec(c(json!({"iss": 7}))),
            Reason::TokenMalformed,
        ),
        (
            "wrong audience",
            ec(c(json!({"aud": "payments"}))),
            Reason::AudienceMismatch,
        ),
        (
            "numeric audience",
            ec(c(json!({"aud": 5}))),
            Reason::TokenMalformed,
        ),
        (
            "no audience",
            ec(c(json!({"aud": null}))),
            Reason::AudienceMismatch,
        ),
        (
            "no subject",
            ec(c(json!({"sub": null}))),
            Reason::ClaimMismatch,
        ),
        (
            "subject with a newline",
            ec(c(json!({"sub": "a\r\nx-evil: 1"}))),
            Reason::TokenMalformed,
        ),
        (
            "scope with a control byte",
            ec(c(json!({"scope": "orders:read \u{0007}"}))),
            Reason::TokenMalformed,
        ),
        (
            "scope list with a number",
            ec(c(json!({"scope": ["orders:read", 5]}))),
            Reason::TokenMalformed,
        ),
        (
            "unknown kid",
            {
                let mut h = serde_json::Map::new();
                h.insert("kid".into(), "nope".into());
                crate::mint::sign(
                    &fixtures::signing_key(Fixture::Ec256),
                    Alg::ES256,
                    &h,
                    &claims(NOW),
                )
                .unwrap()
            },
            Reason::UnknownKid,
        ),
        (
            "bad signature",
            {
                let t = ec(claims(NOW));
                let (head, _) = t.rsplit_once('.').unwrap();
                let other = ec(c(json!({"sub": "x"})));
                format!("{head}.{}", other.rsplit_once('.').unwrap().1)
            },
            Reason::BadSignature,
        ),
        (
            "signed by another key with the right kid",
            {
                let mut h = serde_json::Map::new();
                h.insert("kid".into(), "rsa-a".into());
                crate::mint::sign(
                    &fixtures::signing_key(Fixture::RsaB),
                    Alg::RS256,
                    &h,
                    &claims(NOW),
                )
                .unwrap()
            },
            Reason::BadSignature,
        ),
        (
            "alg none",
            format!(
                "{}.{}.c2ln",
                b64(r#"{"alg":"none"}"#),
                b64(&claims(NOW).to_string())
            ),
            Reason::AlgNotAllowed,
        ),
        (
            "alg none, no signature",
            format!(
                "{}.{}.",
                b64(r#"{"alg":"none"}"#),
                b64(&claims(NOW).to_string())
            ),
            Reason::TokenMalformed,
        ),
        (
            "HS256 keyed with the RSA public key",
            sign_raw(
                &SigningKey::Hmac(rsa_pub_pem.into_bytes()),
                Alg::HS256,
                r#"{"alg":"HS256","kid":"rsa-a"}"#,
                &claims(NOW).to_string(),
            )
            .unwrap(),
            Reason::BadSignature,
        ),
        (
            "RS256 claimed by an EC key's kid",
            {
                let mut h = serde_json::Map::new();
                h.insert("kid".into(), "ec256".into());
                crate::mint::sign(
                    &fixtures::signing_key(Fixture::RsaA),
                    Alg::RS256,
                    &h,
                    &claims(NOW),
                )
                .unwrap()
            },
            Reason::UnknownKid,
        ),
        (
            "crit header",
            sign_raw(
                &fixtures::signing_key(Fixture::Ec256),
                Alg::ES256,
                r#"{"alg":"ES256","kid":"ec256","crit":["x"],"x":1}"#,
                &claims(NOW).to_string(),
            )
            .unwrap(),
            Reason::CritUnsupported,
        ),
        (
            "duplicate claim",
            sign_raw(
                &fixtures::signing_key(Fixture::Ec256),
                Alg::ES256,
                r#"{"alg":"ES256","kid":"ec256"}"#,
                &format!(
                    r#"{{"iss":"{}","sub":"a","aud":"orders","exp":{},"sub":"admin"}}"#,
                    fixtures::ISSUER,
                    NOW + 60
                ),
            )
            .unwrap(),
            Reason::TokenMalformed,
        ),
        (
            "payload is an array",
            sign_raw(
                &fixtures::signing_key(Fixture::Ec256),
                Alg::ES256,
                r#"{"alg":"ES256","kid":"ec256"}"#,
                "[1,2]",
            )
            .unwrap(),
            Reason::TokenMalformed,
        ),
        ("garbage", "not-a-token".into(), Reason::TokenMalformed),
        ("JWE", "a.b.c.d.e".into(), Reason::TokenMalformed),
        ("oversize", "a".repeat(8193), Reason::TokenTooLarge),
    ];
    for (name, t, want) in cases {
        assert_eq!(outcome(&cfg, "/orders", &t), Err(want), "{name}");
    }
}

fn b64(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}

#[test]
fn expiry_within_the_clock_skew_is_accepted() {
    let cfg = config();
    let t = token(
        Fixture::Ec256,
        &claims_with(NOW, json!({"exp": NOW - 59, "iat": NOW - 100})),
    );
    assert!(outcome(&cfg, "/orders", &t).is_ok());
    let t = token(Fixture::Ec256, &claims_with(NOW, json!({"nbf": NOW + 59})));
    assert!(outcome(&cfg, "/orders", &t).is_ok());
}

#[test]
fn a_lifetime_beyond_the_maximum_is_refused() {
    let mut v = fixtures::config_json();
    v["providers"]["internal"]["max_lifetime_seconds"] = json!(3600);
    let cfg = Config::from_json(v.to_string().as_bytes(), &fixtures::env).unwrap();
    let long = token(
        Fixture::Ec256,
        &claims_with(NOW, json!({"exp": NOW + 7200})),
    );
    assert_eq!(
        outcome(&cfg, "/orders", &long),
        Err(Reason::LifetimeTooLong)
    );
    let short = token(Fixture::Ec256, &claims(NOW));
    assert!(outcome(&cfg, "/orders", &short).is_ok());
}

#[test]
fn required_claims_and_another_subject_claim_are_honoured() {
    let mut v = fixtures::config_json();
    v["providers"]["internal"]["required_claims"] = json!({"type": "service", "is_service": true});
    v["providers"]["internal"]["subject_claim"] = json!("client_id");
    let cfg = Config::from_json(v.to_string().as_bytes(), &fixtures::env).unwrap();
    let good = token(
        Fixture::Ec256,
        &claims_with(
            NOW,
            json!({"type": "service", "is_service": true, "client_id": "billing"}),
        ),
    );
    assert_eq!(outcome(&cfg, "/orders", &good), Ok("billing".into()));
    let user = token(
        Fixture::Ec256,
        &claims_with(
            NOW,
            json!({"type": "user", "is_service": true, "client_id": "billing"}),
        ),
    );
    assert_eq!(outcome(&cfg, "/orders", &user), Err(Reason::ClaimMismatch));
    let stringly = token(
        Fixture::Ec256,
        &claims_with(
            NOW,
            json!({"type": "service", "is_service": "true", "client_id": "billing"}),
        ),
    );
    assert_eq!(
        outcome(&cfg, "/orders", &stringly),
        Err(Reason::ClaimMismatch)
    );
}

#[test]
fn an_algorithm_outside_the_allow_list_is_refused() {
    let mut v = fixtures::config_json();
    v["providers"]["internal"]["algorithms"] = json!(["ES256"]);
    let cfg = Config::from_json(v.to_string().as_bytes(), &fixtures::env).unwrap();
    assert!(outcome(&cfg, "/orders", &token(Fixture::Ec256, &claims(NOW))).is_ok());
    assert_eq!(
        outcome(&cfg, "/orders", &token(Fixture::RsaA, &claims(NOW))),
        Err(Reason::AlgNotAllowed)
    );
    assert_eq!(
        outcome(&cfg, "/orders", &hmac_token(Alg::HS256, &claims(NOW))),
        Err(Reason::AlgNotAllowed)
    );
}

#[test]
fn a_provider_requiring_at_jwt_refuses_other_token_types() {
    let cfg = with_config(|v| v["providers"]["internal"]["typ"] = json!("at+jwt"));
    let mut h = serde_json::Map::new();
    h.insert("kid".into(), "ec256".into());
    let key = fixtures::signing_key(Fixture::Ec256);
    h.insert("typ".into(), "at+jwt".into());
    let at = crate::mint::sign(&key, Alg::ES256, &h, &claims(NOW)).unwrap();
    h.insert("typ".into(), "application/AT+JWT".into());
    let at_long = crate::mint::sign(&key, Alg::ES256, &h, &claims(NOW)).unwrap();
    let plain = token(Fixture::Ec256, &claims(NOW));
    assert!(outcome(&cfg, "/orders", &at).is_ok());
    assert!(outcome(&cfg, "/orders", &at_long).is_ok());
    assert_eq!(
        outcome(&cfg, "/orders", &plain),
        Err(Reason::WrongTokenType)
    );
}
