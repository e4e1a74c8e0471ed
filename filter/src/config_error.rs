//! The configuration error: a message that starts with the field's path. Its own leaf, so that
//! `config` and the rooms it compiles (`ratelimit`, `statics`) can all use it without a cycle.

/// A configuration error; the message starts with the field's path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
