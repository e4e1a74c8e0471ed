//! # svcauth
//!
//! A proxy-wasm HTTP filter that authenticates service-to-service calls with service JWTs.
//! The core (everything but `adapter`) is host-free and tested natively; the adapter is the
//! thin proxy-wasm layer compiled only for `wasm32`.
//!
//! ```json
//! {
//!   "providers": {
//!     "internal": {
//!       "issuer": "https://auth.internal",
//!       "audiences": ["orders"],
//!       "jwks": "{\"keys\":[...]}",
//!       "from_headers": [{"name": "authorization", "value_prefix": "Bearer "}],
//!       "clock_skew_seconds": 60
//!     }
//!   },
//!   "rules": [
//!     {"match": {"prefix": "/health"}, "allow": true},
//!     {"match": {"prefix": "/"}, "requires": {"scopes_any": ["orders:read"]}}
//!   ]
//! }
//! ```
//!
//! The data path: [`decide::decide`] extracts the token, matches the first rule, verifies the
//! token ([`verify::verify`], cached in [`cache::TokenCache`]) and checks scopes; the adapter
//! strips spoofed identity headers, sets trusted ones, or answers with the reply built by
//! [`reason`]. See `docs/config.md` for every field.

pub mod cache;
pub mod check;
mod claims;
pub mod config;
pub mod contract;
pub mod decide;
pub mod decision;
pub mod discovery;
pub mod logline;
pub mod path;
pub mod ratelimit;
pub mod rules;
pub mod signing;
pub mod sources;
pub mod statics;
pub mod token;
pub mod verify;

// The token room's files by their old names, for the crates that use them (CLI, tests).
pub use token::{hostcrypto, jwk, jws, keys};

#[cfg(any(test, feature = "mint"))]
pub mod fixtures;
#[cfg(any(test, feature = "mint"))]
pub mod mint;

#[cfg(test)]
mod compat_tests;
#[cfg(test)]
mod decide_tests;
#[cfg(test)]
mod discovery_tests;
#[cfg(test)]
mod doors_tests;
#[cfg(test)]
mod explain_tests;
#[cfg(test)]
mod props_tests;
#[cfg(test)]
mod signing_tests;
#[cfg(test)]
mod sources_tests;

mod adapter;
