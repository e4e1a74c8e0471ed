//! Signature verification through Envoy's `verify_signature` foreign function (BoringSSL, in
//! native code) for RS256/384/512 and ES256/384, with the pure-Rust path as the fallback: for
//! the other algorithms, when `host_crypto` is off, and for good once the host turns out not to
//! have the function.

use std::cell::Cell;

use proxy_wasm::hostcalls;
use proxy_wasm::types::LogLevel;

use super::log;
use super::metrics::Metrics;
use crate::hostcrypto;
use crate::jwk::Key;
use crate::jws::{self, Parsed, Verifier};

pub struct HostCrypto {
    enabled: Cell<bool>,
    host_counter: Option<u32>,
    wasm_counter: Option<u32>,
}

impl HostCrypto {
    pub fn new(enabled: bool, metrics: &Metrics) -> HostCrypto {
        HostCrypto {
            enabled: Cell::new(enabled),
            host_counter: metrics.signature_host,
            wasm_counter: metrics.signature_wasm,
        }
    }

    fn host(&self, parsed: &Parsed<'_>, key: &Key) -> Option<bool> {
        if !self.enabled.get() {
            return None;
        }
        let args = match hostcrypto::request(parsed, key)? {
            Ok(a) => a,
            Err(()) => return Some(false),
        };
        match hostcalls::call_foreign_function("verify_signature", Some(&args)) {
            Ok(Some(answer)) => {
                if let Some(valid) = hostcrypto::decode_result(&answer) {
                    Metrics::inc(self.host_counter);
                    return Some(valid);
                }
                None
            }
            // A key or signature BoringSSL refuses to parse is an invalid signature.
            Err(proxy_wasm::types::Status::BadArgument) => {
                Metrics::inc(self.host_counter);
                Some(false)
            }
            _ => {
                self.enabled.set(false);
                log(LogLevel::Warn, "svcauth: the host has no verify_signature function; verifying signatures in the wasm VM");
                None
            }
        }
    }
}

impl Verifier for HostCrypto {
    fn verify(&self, parsed: &Parsed<'_>, key: &Key) -> bool {
        if let Some(valid) = self.host(parsed, key) {
            return valid;
        }
        Metrics::inc(self.wasm_counter);
        jws::verify_with(parsed, key)
    }
}
