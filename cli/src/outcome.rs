//! What a command ends with: its error type, its exit status, and the two output helpers.
//! A leaf: every command uses it; it uses nothing of the crate.

use std::io::Write as _;

/// Why a command could not do what it was asked. Every variant exits with status 2.
#[derive(Debug)]
pub enum CliError {
    /// A bad command line: printed with a pointer to `--help`.
    Usage(String),
    /// A bad input or a failed operation (unreadable file, wrong key type, …).
    Failed(String),
    /// A plugin configuration the filter would refuse: printed exactly as the filter logs it.
    Config(String),
}

impl CliError {
    pub fn usage(msg: impl Into<String>) -> CliError {
        CliError::Usage(msg.into())
    }
    pub fn failed(msg: impl Into<String>) -> CliError {
        CliError::Failed(msg.into())
    }
}

/// A command's result: the exit status on success (0, or 1 for a denied `verify`).
pub type CmdResult = Result<u8, CliError>;

/// Status of a `verify` that denied the request.
pub const EXIT_DENIED: u8 = 1;
/// Status of every error: usage, unreadable or invalid input, invalid configuration.
pub const EXIT_ERROR: u8 = 2;

/// Writes to stdout, ignoring a closed pipe (`svcauth jwks show | head -1`).
pub fn out(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
}

/// Writes a line to stderr (warnings, notes).
pub fn note(text: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}
