//! Host-native signature verification (Envoy's `verify_signature` foreign function) and the
//! pure-Rust path inside the wasm VM give the same decisions, token for token, in a real Envoy.
//! The VM path is the fallback build's (`svcauth_filter_vmcrypto.wasm`, feature `vm-crypto`);
//! the default build, which has RSA and ECDSA only on the host, decides every token as the
//! fallback's host path does, except RSA-PSS, which it does not have.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Map};
use svcauth_filter::fixtures::{self, claims, token_alg, Fixture};
use svcauth_filter::jws::Alg;
use svcauth_filter::mint::sign;
use svcauth_tests::{http, now, EchoUpstream, Envoy, Opts};

/// Replaces the signature of `t` with `f(signature bytes)`.
fn resign(t: &str, f: impl Fn(&mut Vec<u8>)) -> String {
    let (head, sig) = t.rsplit_once('.').unwrap();
    let mut bytes = URL_SAFE_NO_PAD.decode(sig).unwrap();
    f(&mut bytes);
    format!("{head}.{}", URL_SAFE_NO_PAD.encode(bytes))
}

fn tokens() -> Vec<(&'static str, String)> {
    let c = claims(now());
    let mut out = Vec::new();
    for (name, f, alg) in [
        ("RS256", Fixture::RsaA, Alg::RS256),
        ("RS384", Fixture::RsaA, Alg::RS384),
        ("RS512", Fixture::RsaA, Alg::RS512),
        ("RS256 alg-pinned key", Fixture::RsaB, Alg::RS256),
        ("ES256", Fixture::Ec256, Alg::ES256),
        ("ES384", Fixture::Ec384, Alg::ES384),
        ("ES512", Fixture::Ec521, Alg::ES512),
        ("PS256 (wasm path)", Fixture::RsaA, Alg::PS256),
        ("EdDSA (wasm path)", Fixture::Ed25519, Alg::EdDSA),
    ] {
        let good = token_alg(f, alg, &c);
        out.push((name, good.clone()));
        out.push((name, resign(&good, |s| s[5] ^= 0x01)));
        out.push((
            name,
            resign(&good, |s| {
                s.pop();
            }),
        ));
        out.push((name, resign(&good, |s| s.iter_mut().for_each(|b| *b = 0))));
        out.push((
            name,
            resign(&good, |s| s.iter_mut().for_each(|b| *b = 0xff)),
        ));
    }
    // Signed by another key under the right kid; an ES256 signature for the P-384 key's kid.
    let mut h = Map::new();
    h.insert("kid".into(), "rsa-a".into());
    out.push((
        "wrong RSA key",
        sign(&fixtures::signing_key(Fixture::RsaB), Alg::RS256, &h, &c).unwrap(),
    ));
    h.insert("kid".into(), "ec384".into());
    out.push((
        "ES256 for a P-384 kid",
        sign(&fixtures::signing_key(Fixture::Ec256), Alg::ES256, &h, &c).unwrap(),
    ));
    h.insert("kid".into(), "ec521".into());
    out.push((
        "ES384 for a P-521 kid",
        sign(&fixtures::signing_key(Fixture::Ec384), Alg::ES384, &h, &c).unwrap(),
    ));
    // A P-521 signature over another token's signing input: valid encoding, wrong signature.
    let other = token_alg(Fixture::Ec521, Alg::ES512, &claims(now() + 1));
    let good = token_alg(Fixture::Ec521, Alg::ES512, &c);
    out.push((
        "ES512 signature of another token",
        format!(
            "{}.{}",
            good.rsplit_once('.').unwrap().0,
            other.rsplit_once('.').unwrap().1
        ),
    ));
    // An ECDSA signature with r = 0 and s = 0, and one with a high bit everywhere.
    out.push((
        "ES256 r=s=0",
        resign(&token_alg(Fixture::Ec256, Alg::ES256, &c), |s| {
            s.iter_mut().for_each(|b| *b = 0)
        }),
    ));
    out
}

/// The decisions of the fallback build (`vm-crypto`) with `host_crypto` on or off.
fn outcomes(host_crypto: bool, tokens: &[(&str, String)]) -> (Vec<(u16, String)>, Envoy) {
    outcomes_of(true, host_crypto, tokens)
}

/// The decisions of the fallback build (`vm_crypto`) or the default one.
fn outcomes_of(
    vm_crypto: bool,
    host_crypto: bool,
    tokens: &[(&str, String)],
) -> (Vec<(u16, String)>, Envoy) {
    let upstream = EchoUpstream::start();
    let mut cfg = fixtures::config_json();
    cfg["host_crypto"] = json!(host_crypto);
    cfg["providers"]["internal"]["jwks"] = fixtures::jwks_with_p521();
    cfg["cache"] = json!({"max_entries": 0});
    let mut opts = Opts::new(upstream.port()).env(fixtures::HMAC_ENV, fixtures::HMAC_SECRET);
    if vm_crypto {
        opts = opts.vm_crypto();
    }
    let envoy = Envoy::start_plugin(&cfg.to_string(), &opts);
    let results = tokens
        .iter()
        .map(|(_, t)| {
            let r = http(
                envoy.port(),
                "GET",
                "/orders",
                &[("authorization", &format!("Bearer {t}"))],
            );
            let reason = r.json()["reason"].as_str().unwrap_or("allow").to_string();
            (r.status, reason)
        })
        .collect();
    (results, envoy)
}

#[test]
fn host_native_and_wasm_signature_checks_decide_every_token_alike() {
    let table = tokens();
    let (host, host_envoy) = outcomes(true, &table);
    let (wasm, wasm_envoy) = outcomes(false, &table);
    for (((name, _), h), w) in table.iter().zip(&host).zip(&wasm) {
        assert_eq!(h, w, "{name}: host {h:?} vs wasm {w:?}");
    }
    let allowed = host.iter().filter(|(s, _)| *s == 200).count();
    assert_eq!(
        allowed, 9,
        "each algorithm's untouched token, and nothing else: {host:?}"
    );
    let refused = |r: &str| r == "bad_signature" || r == "unknown_kid";
    assert!(
        host.iter()
            .all(|(s, r)| *s == 200 || (*s == 401 && refused(r))),
        "{host:?}"
    );
    // The host really verified the RS/ES signatures; with host_crypto off it never did.
    host_envoy.settle_counters();
    wasm_envoy.settle_counters();
    let host_verified = host_envoy
        .stat("wasmcustom.svcauth.signature_host")
        .unwrap_or(0);
    assert!(host_verified >= 30, "host verified {host_verified}");
    assert_eq!(
        wasm_envoy.stat("wasmcustom.svcauth.signature_host"),
        Some(0)
    );
    assert!(
        wasm_envoy
            .stat("wasmcustom.svcauth.signature_wasm")
            .unwrap_or(0)
            >= 40
    );
}

/// The default build (no RSA or ECDSA in the VM) gives every token the fallback's host-path
/// decision; PS256, which only the VM can verify, is not an algorithm there.
#[test]
fn the_default_build_decides_like_the_fallback_on_the_host_and_refuses_rsa_pss() {
    let table = tokens();
    let (fallback, _) = outcomes(true, &table);
    let (default, envoy) = outcomes_of(false, true, &table);
    for (((name, _), f), d) in table.iter().zip(&fallback).zip(&default) {
        if name.starts_with("PS256") {
            assert_eq!(d, &(401, "alg_not_allowed".to_string()), "{name}");
        } else {
            assert_eq!(d, f, "{name}: default {d:?} vs fallback {f:?}");
        }
    }
    // Only EdDSA and HMAC are verified inside the default build's VM.
    envoy.settle_counters();
    let in_vm = envoy.stat("wasmcustom.svcauth.signature_wasm").unwrap_or(0);
    let eddsa = table.iter().filter(|(n, _)| n.starts_with("EdDSA")).count();
    assert!(in_vm <= eddsa as u64, "{in_vm} in the VM");
}

/// Envoy 1.40's `verify_signature` verifies ES512 (P-521, SHA-512) natively: every ES512 token
/// is decided by the host, none in the VM; PS256 (RSA-PSS, which the function cannot do) only
/// in the VM.
#[test]
fn es512_goes_to_the_host_and_ps256_stays_in_the_vm() {
    let c = claims(now());
    let es512 = vec![
        ("ES512", token_alg(Fixture::Ec521, Alg::ES512, &c)),
        (
            "ES512 flipped",
            resign(&token_alg(Fixture::Ec521, Alg::ES512, &c), |s| s[7] ^= 1),
        ),
    ];
    let (got, envoy) = outcomes_of(false, true, &es512);
    envoy.settle_counters();
    assert_eq!(got[0], (200, "allow".to_string()));
    assert_eq!(got[1], (401, "bad_signature".to_string()));
    assert_eq!(envoy.stat("wasmcustom.svcauth.signature_host"), Some(2));
    assert_eq!(envoy.stat("wasmcustom.svcauth.signature_wasm"), Some(0));
    let ps = vec![("PS256", token_alg(Fixture::RsaA, Alg::PS256, &c))];
    let (got, envoy) = outcomes(true, &ps);
    envoy.settle_counters();
    assert_eq!(got[0].0, 200);
    assert_eq!(envoy.stat("wasmcustom.svcauth.signature_host"), Some(0));
    assert_eq!(envoy.stat("wasmcustom.svcauth.signature_wasm"), Some(1));
}
