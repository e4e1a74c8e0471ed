//! Tests of `crypto`: the signature backends of a build with and without RSA/ECDSA in the VM,
//! on a host without `verify_signature` (the double has no foreign functions).

use std::collections::BTreeMap;
use std::rc::Rc;

use super::*;
use crate::adapter::fake::FakeHost;
use crate::fixtures::{self, claims, hmac_token, token_alg, Fixture};
use crate::token::jws;

const NOW: i64 = 1_700_000_000;

fn config(changes: serde_json::Value) -> Config {
    let mut c = fixtures::config_json();
    if let (Some(c), serde_json::Value::Object(ch)) = (c.as_object_mut(), changes) {
        c.extend(ch);
    }
    Config::from_json(c.to_string().as_bytes(), &fixtures::env).unwrap()
}

/// The backends for `config` on `host`, and the counter ids by name.
fn backends(
    host: &Rc<FakeHost>,
    config: &Config,
    vm_rsa_ec: bool,
) -> (HostCrypto, Rc<Counters>, BTreeMap<String, u32>) {
    let counters = Rc::new(Counters::define(config, &|n, g| host.define_metric(n, g)));
    let dyn_host: Rc<dyn Host> = host.clone();
    let crypto = HostCrypto::with_vm(config.host_crypto, vm_rsa_ec, dyn_host, counters.clone());
    (crypto, counters, host.metric_ids())
}

fn verifies(crypto: &HostCrypto, config: &Config, token: &str) -> bool {
    let parsed = jws::parse(token).unwrap();
    config.providers[0]
        .keys
        .iter()
        .filter(|k| k.fits(parsed.alg))
        .any(|k| crypto.verify(&parsed, k))
}

#[test]
fn without_vm_crypto_a_host_lacking_verify_signature_is_named_once_at_configure_time() {
    let host = Rc::new(FakeHost::at(NOW));
    let cfg = config(serde_json::json!({}));
    let (crypto, _, _) = backends(&host, &cfg, false);
    check_backends(&cfg, &crypto, &*host, false).unwrap();
    assert_eq!(host.count("foreign"), 1, "one probe");
    let logs = host.logs.borrow().clone();
    assert_eq!(logs.len(), 1, "{logs:?}");
    let (level, line) = &logs[0];
    assert_eq!(*level, Level::Error);
    for want in [
        "verify_signature",
        "internal (RS256, RS384, RS512, ES256, ES384)",
        "bad_signature",
        FALLBACK_WASM,
    ] {
        assert!(line.contains(want), "{want:?} missing from {line}");
    }
    assert!(!crypto.enabled(), "the host is not asked again");
}

#[test]
fn without_vm_crypto_rs_and_es_tokens_verify_nothing_and_eddsa_and_hmac_still_do() {
    let host = Rc::new(FakeHost::at(NOW));
    let cfg = config(serde_json::json!({}));
    let (crypto, counters, ids) = backends(&host, &cfg, false);
    check_backends(&cfg, &crypto, &*host, false).unwrap();
    let c = claims(NOW);
    for (f, alg) in [
        (Fixture::RsaA, jws::Alg::RS256),
        (Fixture::Ec256, jws::Alg::ES256),
        (Fixture::Ec384, jws::Alg::ES384),
    ] {
        assert!(!verifies(&crypto, &cfg, &token_alg(f, alg, &c)), "{alg:?}");
    }
    assert!(verifies(
        &crypto,
        &cfg,
        &token_alg(Fixture::Ed25519, jws::Alg::EdDSA, &c)
    ));
    assert!(verifies(&crypto, &cfg, &hmac_token(jws::Alg::HS256, &c)));
    counters.flush(&*host);
    assert_eq!(
        host.counter(ids["svcauth.signature_wasm"]),
        2,
        "EdDSA, HS256"
    );
    assert_eq!(host.counter(ids["svcauth.signature_host"]), 0);
    assert_eq!(host.count("foreign"), 1, "only the configure-time probe");
}

#[test]
fn with_vm_crypto_nothing_is_asked_at_configure_time_and_the_vm_verifies() {
    let host = Rc::new(FakeHost::at(NOW));
    let cfg = config(serde_json::json!({}));
    let (crypto, _, _) = backends(&host, &cfg, true);
    check_backends(&cfg, &crypto, &*host, true).unwrap();
    assert_eq!(host.total_calls(), 0);
    let t = token_alg(Fixture::RsaA, jws::Alg::RS256, &claims(NOW));
    assert!(verifies(&crypto, &cfg, &t));
    let logs = host.logs.borrow().clone();
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0].0, Level::Warn, "the first call finds out: {logs:?}");
}

#[test]
fn without_vm_crypto_host_crypto_off_is_refused_naming_the_fallback_build() {
    let host = Rc::new(FakeHost::at(NOW));
    let cfg = config(serde_json::json!({"host_crypto": false}));
    let (crypto, _, _) = backends(&host, &cfg, false);
    let e = check_backends(&cfg, &crypto, &*host, false).unwrap_err();
    assert!(e.starts_with("host_crypto: false"), "{e}");
    assert!(
        e.contains(FALLBACK_WASM) && e.contains("internal (RS256"),
        "{e}"
    );
    assert_eq!(host.total_calls(), 0);
    // The same configuration is fine where the VM verifies RSA and ECDSA.
    let (crypto, _, _) = backends(&host, &cfg, true);
    assert!(check_backends(&cfg, &crypto, &*host, true).is_ok());
}

#[test]
fn without_vm_crypto_providers_with_only_hmac_or_eddsa_ask_the_host_nothing() {
    let host = Rc::new(FakeHost::at(NOW));
    let cfg = config(serde_json::json!({}));
    let mut only = fixtures::config_json();
    only["providers"]["internal"]["algorithms"] = serde_json::json!(["EdDSA", "HS256"]);
    let only = Config::from_json(only.to_string().as_bytes(), &fixtures::env).unwrap();
    let (crypto, _, _) = backends(&host, &only, false);
    check_backends(&only, &crypto, &*host, false).unwrap();
    assert_eq!(host.total_calls(), 0);
    assert!(crypto.enabled());
    drop(cfg);
}
