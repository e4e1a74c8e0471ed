//! The configuration error (a message that starts with the field's path) and `err`, the one
//! way the config room builds one. A leaf: it uses nothing of the crate, so every file of
//! `config/` and the rooms it compiles (`ratelimit`, `statics`) can use it without a cycle.

/// A configuration error; the message starts with the field's path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// `Err(ConfigError("{field}: {msg}"))`.
pub(super) fn err<T>(
    field: impl std::fmt::Display,
    msg: impl std::fmt::Display,
) -> Result<T, ConfigError> {
    Err(ConfigError(format!("{field}: {msg}")))
}
