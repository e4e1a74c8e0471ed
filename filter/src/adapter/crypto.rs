//! Signature verification through Envoy's `verify_signature` foreign function (BoringSSL, in
//! native code) for RS256/384/512 and ES256/384/512, offered to svcauth's `jsonwebtoken`
//! crypto provider ([`crate::token::jws::PROVIDER`]) for the duration of each verification. The VM's
//! RustCrypto path is the fallback where the build has it (`vm-crypto`, and natively): for the
//! other algorithms, when `host_crypto` is off, and for good once the host turns out not to
//! have the function. The default `.wasm` has no RSA/ECDSA in the VM: [`check_backends`] asks
//! the host at configure time and says once what it cannot verify.
//!
//! Uses: `host`, `counters`, and the core's `config`, `hostcrypto`, `jwk`, `jws`.

use std::cell::Cell;
use std::rc::Rc;

use super::counters::Counters;
use super::host::{Foreign, Host, Level};
use crate::config::Config;
use crate::token::alg::{FALLBACK_WASM, RSA_EC_IN_VM};
use crate::token::hostcrypto;
use crate::token::jwk::Key;
use crate::token::jws::{self, Alg, HostVerify, Parsed, Verifier};

/// The host's crypto, as the crypto provider sees it.
struct Native {
    enabled: Cell<bool>,
    /// Whether the VM verifies RS*/ES* the host does not ([`RSA_EC_IN_VM`] in production).
    vm_rsa_ec: bool,
    host: Rc<dyn Host>,
    counters: Rc<Counters>,
}

pub struct HostCrypto {
    native: Rc<Native>,
}

impl HostCrypto {
    pub fn new(enabled: bool, host: Rc<dyn Host>, counters: Rc<Counters>) -> HostCrypto {
        HostCrypto::with_vm(enabled, RSA_EC_IN_VM, host, counters)
    }

    /// [`HostCrypto::new`] for a build whose VM does (`vm_rsa_ec`) or does not verify RSA and
    /// ECDSA (the tests take both).
    pub fn with_vm(
        enabled: bool,
        vm_rsa_ec: bool,
        host: Rc<dyn Host>,
        counters: Rc<Counters>,
    ) -> HostCrypto {
        HostCrypto {
            native: Rc::new(Native {
                enabled: Cell::new(enabled),
                vm_rsa_ec,
                host,
                counters,
            }),
        }
    }

    /// Whether RS*/ES* signatures go to the host.
    pub fn enabled(&self) -> bool {
        self.native.enabled.get()
    }
}

/// The algorithms Envoy's `verify_signature` verifies (and only it, in the default `.wasm`).
fn host_only(alg: Alg) -> bool {
    hostcrypto::host_hash(alg).is_some()
}

/// At configure time, in a build without RSA/ECDSA in the VM: refuses `host_crypto: false`
/// while a provider allows an RS*/ES* algorithm (nothing could verify it), and asks the host
/// once whether it has `verify_signature` (empty arguments: Envoy answers `BadArgument`
/// without verifying anything; a host without the function answers "not found"). Without it,
/// logs one error naming the function, the providers and algorithms whose tokens are denied
/// (`bad_signature`: their signatures verify nothing), and the fallback module; the host is not
/// asked again. In a build with the VM's RSA/ECDSA, or when no provider allows RS*/ES*,
/// nothing is asked (the first verification finds out, as before).
pub fn check_backends(
    config: &Config,
    crypto: &HostCrypto,
    host: &dyn Host,
    vm_rsa_ec: bool,
) -> Result<(), String> {
    if vm_rsa_ec {
        return Ok(());
    }
    let needs: Vec<String> = config
        .providers
        .iter()
        .filter_map(|p| {
            let algs: Vec<&str> = p
                .algorithms
                .iter()
                .filter(|a| host_only(**a))
                .map(|a| a.name())
                .collect();
            (!algs.is_empty()).then(|| format!("{} ({})", p.name, algs.join(", ")))
        })
        .collect();
    if needs.is_empty() {
        return Ok(());
    }
    if !crypto.enabled() {
        return Err(format!(
            "host_crypto: false, but this build verifies RS*/ES* signatures only through Envoy's \
             verify_signature, for providers {}: set host_crypto to true, or use the vm-crypto \
             build {FALLBACK_WASM}",
            needs.join(", ")
        ));
    }
    if host.call_foreign("verify_signature", &[]) == Foreign::Unavailable {
        crypto.native.enabled.set(false);
        host.log(
            Level::Error,
            &format!(
                "svcauth: the host has no verify_signature foreign function, and this build \
                 verifies RS*/ES* signatures only there: tokens of providers {} are denied \
                 (bad_signature); use the vm-crypto build {FALLBACK_WASM}, which verifies them \
                 inside the wasm VM",
                needs.join(", ")
            ),
        );
    }
    Ok(())
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
                if self.vm_rsa_ec {
                    self.host.log(
                        Level::Warn,
                        "svcauth: the host has no verify_signature function; verifying signatures in the wasm VM",
                    );
                } else {
                    self.host.log(
                        Level::Error,
                        &format!("svcauth: the host has no verify_signature function: RS*/ES* tokens are denied (bad_signature); use the vm-crypto build {FALLBACK_WASM}"),
                    );
                }
                None
            }
        }
    }

    fn verified_in_vm(&self) {
        self.counters.signature_wasm.bump();
    }

    fn vm_verifies_rsa_ec(&self) -> bool {
        self.vm_rsa_ec
    }
}

impl Verifier for HostCrypto {
    fn verify(&self, parsed: &Parsed<'_>, key: &Key) -> bool {
        let native: Rc<dyn HostVerify> = self.native.clone();
        jws::with_host(native, || jws::verify_with(parsed, key))
    }
}

#[cfg(test)]
#[path = "crypto_tests.rs"]
mod tests;
