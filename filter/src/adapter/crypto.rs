//! Signature verification through Envoy's `verify_signature` foreign function (BoringSSL, in
//! native code) for RS256/384/512 and ES256/384/512, offered to svcauth's `jsonwebtoken`
//! crypto provider ([`crate::jws::PROVIDER`]) for the duration of each verification. The VM's
//! RustCrypto path is the fallback: for the other algorithms, when `host_crypto` is off, and
//! for good once the host turns out not to have the function.

use std::cell::Cell;
use std::rc::Rc;

use proxy_wasm::hostcalls;

use super::metrics::Metrics;
use crate::hostcrypto;
use crate::jwk::Key;
use crate::jws::{self, Alg, HostVerify, Parsed, Verifier};

struct Host {
    enabled: Cell<bool>,
    host_counter: Option<u32>,
    wasm_counter: Option<u32>,
}

pub struct HostCrypto {
    host: Rc<Host>,
}

impl HostCrypto {
    pub fn new(enabled: bool, metrics: &Metrics) -> HostCrypto {
        HostCrypto {
            host: Rc::new(Host {
                enabled: Cell::new(enabled),
                host_counter: metrics.signature_host,
                wasm_counter: metrics.signature_wasm,
            }),
        }
    }
}

impl HostVerify for Host {
    fn verify(&self, alg: Alg, spki: &[u8], signature: &[u8], text: &[u8]) -> Option<bool> {
        if !self.enabled.get() {
            return None;
        }
        let args = match hostcrypto::request(alg, spki, signature, text)? {
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
                log::warn!("svcauth: the host has no verify_signature function; verifying signatures in the wasm VM");
                None
            }
        }
    }

    fn verified_in_vm(&self) {
        Metrics::inc(self.wasm_counter);
    }
}

impl Verifier for HostCrypto {
    fn verify(&self, parsed: &Parsed<'_>, key: &Key) -> bool {
        let host: Rc<dyn HostVerify> = self.host.clone();
        jws::with_host(host, || jws::verify_with(parsed, key))
    }
}
