//! The proxy-wasm adapter: the only code that talks to the host, and all of it through one
//! seam ([`host::Host`]). The logic (request, root, jwks fetch, waiters, rate-limit loop,
//! lease, counters, replies) is compiled on every target and tested natively against a double
//! of the host (`tests`); only `wasm` (the `Host` implementation over `proxy_wasm::hostcalls`
//! and the SDK's context traits) is compiled for `wasm32` alone.
//!
//! The rooms, each using only those listed before it: `host` · `counters` · `replies` ·
//! `waiters` · `lease` · `bucket` · `crypto` · `remote` · `signed` · `state` · `discovery` ·
//! `jwks` · `request` · `body` · `root` · `wasm`.

// Natively, only the tests call the logic: the wasm contexts are not compiled there.
#![cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]

pub mod body;
pub mod bucket;
pub mod counters;
pub mod crypto;
pub mod discovery;
pub mod host;
pub mod jwks;
pub mod lease;
pub mod remote;
pub mod replies;
pub mod request;
pub mod root;
pub mod signed;
pub mod state;
pub mod waiters;

#[cfg(target_arch = "wasm32")]
mod wasm;

#[cfg(test)]
mod cost_tests;
#[cfg(test)]
mod fake;
#[cfg(test)]
mod tests;
