//! The algorithm leaf of the token room: the JWS signature algorithms svcauth verifies, their
//! names and key families, and which of them this build verifies. Uses only `jsonwebtoken`'s
//! algorithm types.

use std::str::FromStr as _;

use jsonwebtoken::{Algorithm, AlgorithmFamily};

/// The signature algorithms svcauth verifies. `none` is not one of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Alg {
    HS256,
    HS384,
    HS512,
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    ES512,
    EdDSA,
}

/// Whether this build verifies RSA (RS*, PS*) and ECDSA (ES*) signatures inside the wasm VM:
/// natively always (the CLI, `cargo test`), in the `.wasm` only with the `vm-crypto` feature
/// (the fallback module [`FALLBACK_WASM`]). The default `.wasm` sends RS*/ES* to Envoy's
/// `verify_signature` and has no RSA-PSS.
pub const RSA_EC_IN_VM: bool = cfg!(any(feature = "vm-crypto", not(target_arch = "wasm32")));

/// The file name of the fallback module (`scripts/build-wasm` builds it beside the default one):
/// the filter with the `vm-crypto` feature.
pub const FALLBACK_WASM: &str = "svcauth_filter_vmcrypto.wasm";

/// Every algorithm this build verifies, in a stable order. The default `.wasm` has no RSA-PSS:
/// Envoy's `verify_signature` cannot do it and the VM's RSA arithmetic is only in the
/// `vm-crypto` build ([`RSA_EC_IN_VM`]), so there `PS*` is not an algorithm at
/// all (a token with it is `alg_not_allowed`, a JWK with it is skipped).
#[cfg(any(feature = "vm-crypto", not(target_arch = "wasm32")))]
pub const ALL_ALGS: [Alg; 13] = [
    Alg::HS256,
    Alg::HS384,
    Alg::HS512,
    Alg::RS256,
    Alg::RS384,
    Alg::RS512,
    Alg::PS256,
    Alg::PS384,
    Alg::PS512,
    Alg::ES256,
    Alg::ES384,
    Alg::ES512,
    Alg::EdDSA,
];

/// Every algorithm this build verifies (the default `.wasm`: no `PS*`).
#[cfg(not(any(feature = "vm-crypto", not(target_arch = "wasm32"))))]
pub const ALL_ALGS: [Alg; 10] = [
    Alg::HS256,
    Alg::HS384,
    Alg::HS512,
    Alg::RS256,
    Alg::RS384,
    Alg::RS512,
    Alg::ES256,
    Alg::ES384,
    Alg::ES512,
    Alg::EdDSA,
];

/// Why `name` is not an algorithm of this build, for a configuration error: the `PS*` names
/// of the default `.wasm` name the build that has them; any other name lists the supported ones.
pub fn unsupported(name: &str) -> String {
    unsupported_in(name, &ALL_ALGS)
}

fn unsupported_in(name: &str, algs: &[Alg]) -> String {
    let pss = ["PS256", "PS384", "PS512"].contains(&name);
    if pss && !algs.iter().any(|a| a.name() == name) {
        return format!(
            "unsupported algorithm {name:?} in this build: RSA-PSS is verified only inside the \
             wasm VM, by the vm-crypto build {FALLBACK_WASM} (Envoy's verify_signature cannot do it)"
        );
    }
    let names: Vec<&str> = algs.iter().map(|a| a.name()).collect();
    format!(
        "unsupported algorithm {name:?} (supported: {})",
        names.join(", ")
    )
}

impl Alg {
    /// The JOSE name (`"RS256"`); exact, case-sensitive match as RFC 7515 requires
    /// (`jsonwebtoken`'s names, and `ES512`).
    pub fn from_name(name: &str) -> Option<Alg> {
        if name == "ES512" {
            return Some(Alg::ES512);
        }
        Algorithm::from_str(name).ok().and_then(Alg::from_jwt)
    }

    /// `jsonwebtoken`'s algorithm; `None` for `ES512`, which it does not know.
    pub fn jwt(self) -> Option<Algorithm> {
        Some(match self {
            Alg::HS256 => Algorithm::HS256,
            Alg::HS384 => Algorithm::HS384,
            Alg::HS512 => Algorithm::HS512,
            Alg::RS256 => Algorithm::RS256,
            Alg::RS384 => Algorithm::RS384,
            Alg::RS512 => Algorithm::RS512,
            Alg::PS256 => Algorithm::PS256,
            Alg::PS384 => Algorithm::PS384,
            Alg::PS512 => Algorithm::PS512,
            Alg::ES256 => Algorithm::ES256,
            Alg::ES384 => Algorithm::ES384,
            Alg::EdDSA => Algorithm::EdDSA,
            Alg::ES512 => return None,
        })
    }

    /// The svcauth algorithm of a `jsonwebtoken` one (`None` for any it may add later).
    pub fn from_jwt(a: Algorithm) -> Option<Alg> {
        ALL_ALGS.iter().copied().find(|x| x.jwt() == Some(a))
    }

    pub fn name(self) -> &'static str {
        match self {
            Alg::HS256 => "HS256",
            Alg::HS384 => "HS384",
            Alg::HS512 => "HS512",
            Alg::RS256 => "RS256",
            Alg::RS384 => "RS384",
            Alg::RS512 => "RS512",
            Alg::PS256 => "PS256",
            Alg::PS384 => "PS384",
            Alg::PS512 => "PS512",
            Alg::ES256 => "ES256",
            Alg::ES384 => "ES384",
            Alg::ES512 => "ES512",
            Alg::EdDSA => "EdDSA",
        }
    }

    /// The key family (`jsonwebtoken`'s), `Ec` for `ES512` too.
    pub fn family(self) -> AlgorithmFamily {
        self.jwt().map_or(AlgorithmFamily::Ec, Algorithm::family)
    }

    pub fn is_hmac(self) -> bool {
        self.family() == AlgorithmFamily::Hmac
    }

    pub fn is_rsa(self) -> bool {
        self.family() == AlgorithmFamily::Rsa
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_algorithm_missing_from_the_build_names_the_build_that_has_it() {
        let default_build: Vec<Alg> = ALL_ALGS
            .iter()
            .copied()
            .filter(|a| !a.name().starts_with("PS"))
            .collect();
        let e = unsupported_in("PS384", &default_build);
        assert!(
            e.contains("\"PS384\" in this build") && e.contains(FALLBACK_WASM),
            "{e}"
        );
        let e = unsupported_in("none", &default_build);
        assert!(
            e.ends_with(
                "(supported: HS256, HS384, HS512, RS256, RS384, RS512, ES256, ES384, ES512, EdDSA)"
            ),
            "{e}"
        );
        // Natively every algorithm is there: a PS* name is never unsupported.
        const { assert!(RSA_EC_IN_VM) };
        assert!(unsupported("PS256").contains("(supported: HS256"));
        assert!(ALL_ALGS.iter().any(|a| a.name() == "PS512"));
    }
}
