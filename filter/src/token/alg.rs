//! The algorithm leaf of the token room: the JWS signature algorithms svcauth verifies, their
//! names and key families. Uses only `jsonwebtoken`'s algorithm types.

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

/// Every supported algorithm, in a stable order.
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
