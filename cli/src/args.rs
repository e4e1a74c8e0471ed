//! Small helpers over `lexopt`: values as UTF-8 strings, and error messages that never echo a
//! positional argument or an option's value (either could be a token or a secret).

use std::ffi::OsString;

use lexopt::Arg;

use crate::outcome::CliError;

/// Options people try that must never exist: a secret on the command line ends up in shell
/// history and in `ps`.
const SECRET_FLAGS: [&str; 5] = [
    "secret",
    "hmac-secret",
    "key-value",
    "password",
    "token-secret",
];

/// An error for an option or argument this command does not take.
pub fn unexpected(arg: Arg<'_>, cmd_takes: &str) -> CliError {
    match arg {
        Arg::Long(l) if SECRET_FLAGS.contains(&l) => CliError::usage(format!(
            "--{l}: secrets are never taken as arguments (they would stay in shell history and \
             show in ps); use --secret-env NAME or --secret-file FILE"
        )),
        Arg::Long(l) => CliError::usage(format!("unknown option --{l}")),
        Arg::Short(c) => CliError::usage(format!("unknown option -{c}")),
        // The value itself is not shown: it could be a token or a secret.
        Arg::Value(_) => CliError::usage(format!("unexpected argument ({cmd_takes})")),
    }
}

/// Describes a lexopt error without echoing values.
pub fn describe(e: &lexopt::Error) -> String {
    match e {
        lexopt::Error::MissingValue { option: Some(o) } => format!("{o} needs a value"),
        lexopt::Error::MissingValue { option: None } => "an option needs a value".into(),
        lexopt::Error::UnexpectedOption(o) => format!("unknown option {o}"),
        lexopt::Error::UnexpectedArgument(_) => "unexpected argument".into(),
        lexopt::Error::UnexpectedValue { option, .. } => format!("{option} takes no value"),
        lexopt::Error::ParsingFailed { value, .. } => {
            format!("could not parse a value ({} characters)", value.len())
        }
        lexopt::Error::NonUnicodeValue(_) => "a value is not valid UTF-8".into(),
        lexopt::Error::Custom(_) => "invalid arguments".into(),
    }
}

/// The next value of option `name` as a UTF-8 string.
pub fn value(p: &mut lexopt::Parser, name: &str) -> Result<String, CliError> {
    let v = p
        .value()
        .map_err(|_| CliError::usage(format!("--{name} needs a value")))?;
    string(v, name)
}

/// An `OsString` as UTF-8.
pub fn string(v: OsString, name: &str) -> Result<String, CliError> {
    v.into_string()
        .map_err(|_| CliError::usage(format!("{name}: not valid UTF-8")))
}

/// Whether text is short, printable and safe to echo in a message.
pub fn printable(s: &str) -> bool {
    s.len() <= 40 && !s.starts_with("eyJ") && s.chars().all(|c| c.is_ascii_graphic())
}

/// Sets an option that may be given once.
pub fn once<T>(slot: &mut Option<T>, v: T, name: &str) -> Result<(), CliError> {
    if slot.is_some() {
        return Err(CliError::usage(format!("--{name} given twice")));
    }
    *slot = Some(v);
    Ok(())
}

/// A required option.
pub fn need<T>(slot: Option<T>, name: &str) -> Result<T, CliError> {
    slot.ok_or_else(|| CliError::usage(format!("--{name} is required")))
}

/// Reads `--env-file` contents: `NAME=VALUE` lines, `#` comments, an optional `export `, and
/// optional matching quotes around the value. Errors name the line, never its content.
pub fn parse_env_file(text: &str, path: &str) -> Result<Vec<(String, String)>, CliError> {
    let mut vars = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line).trim_start();
        let Some((name, value)) = line.split_once('=') else {
            return Err(CliError::failed(format!(
                "{path}:{}: expected NAME=VALUE",
                i + 1
            )));
        };
        let name = name.trim();
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(CliError::failed(format!(
                "{path}:{}: not a valid variable name",
                i + 1
            )));
        }
        let value = value.trim();
        let value = ['"', '\'']
            .iter()
            .find_map(|q| value.strip_prefix(*q).and_then(|v| v.strip_suffix(*q)))
            .unwrap_or(value);
        vars.push((name.to_string(), value.to_string()));
    }
    Ok(vars)
}

impl From<lexopt::Error> for CliError {
    fn from(e: lexopt::Error) -> Self {
        CliError::Usage(describe(&e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_files_take_comments_exports_and_quotes() {
        let vars = parse_env_file("# c\n\nexport A=1\nB = \"two words\"\nC='x'\n", "f").unwrap();
        assert_eq!(
            vars,
            vec![
                ("A".to_string(), "1".to_string()),
                ("B".to_string(), "two words".to_string()),
                ("C".to_string(), "x".to_string())
            ]
        );
        let e = parse_env_file("A=1\nsecret-value-line\n", "f").unwrap_err();
        match e {
            CliError::Failed(m) => {
                assert_eq!(m, "f:2: expected NAME=VALUE");
            }
            other => panic!("{other:?}"),
        }
    }
}
