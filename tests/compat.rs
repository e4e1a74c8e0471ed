//! Tokens and key sets that Envoy's `jwt_authn` accepts, through a real Envoy: tokens without
//! `kid` against a set with several keys of their type, JWK Sets with keys svcauth skips (and
//! says so), EC keys without `crv`, Google's X.509 key sets inline and fetched, and
//! `require_expiration: false`. (ES512 on the host and in the VM: tests/host_crypto.rs.)

use std::time::Duration;

use serde_json::{json, Map, Value};
use svcauth_filter::fixtures::{self, claims, Fixture};
use svcauth_filter::jws::Alg;
use svcauth_filter::mint::sign;
use svcauth_tests::{http, now, EchoUpstream, Envoy, HttpServer, Opts, Reply};

fn signed(f: Fixture, alg: Alg, kid: Option<&str>, c: &Value) -> String {
    let mut h = Map::new();
    if let Some(kid) = kid {
        h.insert("kid".into(), kid.into());
    }
    sign(&fixtures::signing_key(f), alg, &h, c).unwrap()
}

fn call(envoy: &Envoy, t: &str) -> (u16, String) {
    let r = http(
        envoy.port(),
        "GET",
        "/orders",
        &[("authorization", &format!("Bearer {t}"))],
    );
    let reason = r.json()["reason"].as_str().unwrap_or("allow").to_string();
    (r.status, reason)
}

fn start(provider: Value, opts: Opts) -> Envoy {
    let mut cfg = fixtures::config_json();
    if let (Some(p), Value::Object(extra)) =
        (cfg["providers"]["internal"].as_object_mut(), provider)
    {
        for (k, v) in extra {
            if v.is_null() {
                p.remove(&k);
            } else {
                p.insert(k, v);
            }
        }
    }
    Envoy::start_plugin(
        &cfg.to_string(),
        &opts.env(fixtures::HMAC_ENV, fixtures::HMAC_SECRET),
    )
}

#[test]
fn kidless_tokens_skipped_keys_and_ec_keys_without_crv() {
    let upstream = EchoUpstream::start();
    let mut ec_no_crv = fixtures::public_jwk(Fixture::Ec384, "ec384");
    ec_no_crv.as_object_mut().unwrap().remove("crv");
    ec_no_crv["alg"] = json!("ES384");
    let set = json!({"keys": [
        {"kty": "OKP", "crv": "X25519", "kid": "dh", "x": "hSDwCYkwp1R0i33ctD73Wg2_Og0mOBr066SpjqqbTmo"},
        fixtures::public_jwk(Fixture::RsaA, "rsa-a"),
        fixtures::public_jwk(Fixture::RsaB, "rsa-b"),
        ec_no_crv,
    ]});
    let envoy = start(json!({"jwks": set}), Opts::new(upstream.port()));
    envoy.wait_log_contains(
        "JWKS key skipped: key 0 (kid \"dh\"): unsupported OKP curve \"X25519\"",
        Duration::from_secs(5),
    );
    let c = claims(now());
    // No kid, two RSA keys: the second one's signature verifies, as in jwt_authn.
    assert_eq!(
        call(&envoy, &signed(Fixture::RsaB, Alg::RS256, None, &c)).0,
        200
    );
    assert_eq!(
        call(&envoy, &signed(Fixture::RsaA, Alg::RS384, None, &c)).0,
        200
    );
    assert_eq!(
        call(
            &envoy,
            &signed(Fixture::Ec384, Alg::ES384, Some("ec384"), &c)
        )
        .0,
        200
    );
    let stranger = svcauth_filter::mint::SigningKey::generate(Alg::RS256).unwrap();
    let t = sign(&stranger, Alg::RS256, &Map::new(), &c).unwrap();
    assert_eq!(call(&envoy, &t), (401, "bad_signature".into()));
}

#[test]
fn google_x509_key_sets_inline_and_fetched() {
    let upstream = EchoUpstream::start();
    let x509 = json!({"rsa-a": fixtures::RSA_A_CERT});
    let c = claims(now());
    let good = signed(Fixture::RsaA, Alg::RS256, Some("rsa-a"), &c);
    let inline = start(json!({"jwks": x509}), Opts::new(upstream.port()));
    assert_eq!(call(&inline, &good).0, 200);
    assert_eq!(
        call(
            &inline,
            &signed(Fixture::RsaB, Alg::RS256, Some("rsa-a"), &c)
        ),
        (401, "bad_signature".into())
    );
    drop(inline);
    let body = x509.to_string();
    let server = HttpServer::start(move |_req| Reply {
        status: 200,
        headers: vec![("content-type".into(), "application/json".into())],
        body: body.clone().into_bytes(),
    });
    let remote = json!({
        "jwks": null,
        "remote_jwks": {
            "cluster": "jwks", "path": "/oauth2/v1/certs", "authority": "www.googleapis.com",
            "refresh_seconds": 60, "timeout_ms": 1000
        }
    });
    let envoy = start(
        remote,
        Opts::new(upstream.port()).loopback_cluster("jwks", server.port()),
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut got = call(&envoy, &good);
    while got.0 != 200 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        got = call(&envoy, &good);
    }
    assert_eq!(got.0, 200, "{got:?}");
}

#[test]
fn require_expiration_is_per_provider_and_on_by_default() {
    let upstream = EchoUpstream::start();
    let mut c = claims(now());
    c.as_object_mut().unwrap().remove("exp");
    let t = signed(Fixture::Ec256, Alg::ES256, Some("ec256"), &c);
    let strict = start(json!({}), Opts::new(upstream.port()));
    assert_eq!(call(&strict, &t), (401, "exp_missing".into()));
    drop(strict);
    let lax = start(
        json!({"require_expiration": false}),
        Opts::new(upstream.port()),
    );
    assert_eq!(call(&lax, &t).0, 200);
    // Twice: the cached decision holds too.
    assert_eq!(call(&lax, &t).0, 200);
    let expired = signed(
        Fixture::Ec256,
        Alg::ES256,
        Some("ec256"),
        &fixtures::claims_with(now(), json!({"exp": now() - 3600})),
    );
    assert_eq!(call(&lax, &expired), (401, "token_expired".into()));
}
