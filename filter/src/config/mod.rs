//! Plugin configuration: the raw JSON shape (unknown fields refused), and its compiled,
//! immutable form built once per `on_configure` and shared by every request.
//!
//! Every error names the field it is about (`providers.internal.jwks: …`).
//!
//! The room's files, each using only those listed before it: `error` (`ConfigError`, a leaf
//! that `ratelimit` and `statics` use too) · `raw` (the serde shapes) · `sources` (token
//! locations) · `claims` (`claim_to_headers`) · `keys` (inline keys, HMAC secrets,
//! algorithms) · `remote` (`remote_jwks`) · `provider` · `rule` · `compiled` (`Config`,
//! the top-level compile). This file only names them and re-exports what other rooms use.
//! May use: `contract`, `path`, `token`, `ratelimit`, `statics`, `signing`, `discovery`.

mod claims;
mod compiled;
pub(crate) mod error;
mod keys;
mod provider;
mod raw;
mod remote;
mod rule;
mod sources;

pub use self::claims::ClaimHeader;
pub use self::compiled::{Config, HeaderFate};
pub use self::error::ConfigError;
pub use self::provider::Provider;
pub use self::raw::TagsAs;
pub use self::remote::{JwksSource, RemoteJwks};
pub use self::rule::{Action, PathMatch, Rule};
pub use self::sources::TokenSource;
pub use crate::discovery::Discovery;

#[cfg(test)]
mod tests;
