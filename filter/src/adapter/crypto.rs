//! Signature verification through Envoy's `verify_signature` foreign function (BoringSSL, in
//! native code) for RS256/384/512 and ES256/384/512, offered to svcauth's `jsonwebtoken`
//! crypto provider ([`crate::token::jws::PROVIDER`]) for the duration of each verification. The VM's
//! RustCrypto path is the fallback: for the other algorithms, when `host_crypto` is off, and
//! for good once the host turns out not to have the function.
//!
//! Uses: `host`, `counters`, and the core's `hostcrypto`, `jwk`, `jws`.

use std::cell::Cell;
use std::rc::Rc;

use super::counters::Counters;
use super::host::{Foreign, Host, Level};
use crate::token::hostcrypto;
use crate::token::jwk::Key;
use crate::token::jws::{self, Alg, HostVerify, Parsed, Verifier};

/// The host's crypto, as the crypto provider sees it.
struct Native {
    enabled: Cell<bool>,
    host: Rc<dyn Host>,
    counters: Rc<Counters>,
}

pub struct HostCrypto {
    native: Rc<Native>,
}

impl HostCrypto {
    pub fn new(enabled: bool, host: Rc<dyn Host>, counters: Rc<Counters>) -> HostCrypto {
        HostCrypto {
            native: Rc::new(Native {
                enabled: Cell::new(enabled),
                host,
                counters,
            }),
        }
    }
}

impl HostVerify for Native {
    fn verify(&self, alg: Alg, spki: &[u8], signature: &[u8], text: &[u8]) -> Option<bool> {
        if !self.enabled.get() {
            return None;
        }
        let args = match hostcrypto::request(alg, spki, signature, text)? {
            Ok(a) => a,
            Err(()) => return Some(false),
        };
        match self.host.call_foreign("verify_signature", &args) {
            Foreign::Answer(Some(answer)) => {
                let valid = hostcrypto::decode_result(&answer)?;
                self.counters.signature_host.bump();
                Some(valid)
            }
            Foreign::Answer(None) => None,
            // A key or signature BoringSSL refuses to parse is an invalid signature.
            Foreign::BadArgument => {
                self.counters.signature_host.bump();
                Some(false)
            }
            Foreign::Unavailable => {
                self.enabled.set(false);
                self.host.log(
                    Level::Warn,
                    "svcauth: the host has no verify_signature function; verifying signatures in the wasm VM",
                );
                None
            }
        }
    }

    fn verified_in_vm(&self) {
        self.counters.signature_wasm.bump();
    }
}

impl Verifier for HostCrypto {
    fn verify(&self, parsed: &Parsed<'_>, key: &Key) -> bool {
        let native: Rc<dyn HostVerify> = self.native.clone();
        jws::with_host(native, || jws::verify_with(parsed, key))
    }
}
