//! `svcauth verify`'s command line: the help text, the options, and reading the token (from
//! the argument or stdin, never echoed). Uses the CLI's `args` helpers only.

use std::ffi::OsString;
use std::io::Read as _;

use lexopt::Arg::{Long, Short, Value as Pos};

use crate::args;
use crate::outcome::{out, CliError};

pub const HELP: &str = "\
svcauth verify: decide one request carrying TOKEN exactly as the filter in Envoy would

Usage: svcauth verify --config FILE [--method M] [--path P] [options] (TOKEN | - | --no-token)

Runs the filter's own code (the same crate Envoy runs as wasm: Config::from_json, then decide)
on a request `M P` that carries TOKEN where the config first looks for one (a header with
its value_prefix, a cookie, or a query parameter added to P), with this machine's clock, and
prints what Envoy would do: allow (forward upstream, with the identity headers it would set
and what it removes) or deny (the status, the reason code, the WWW-Authenticate challenge),
the caller, its scopes and the rule that matched. TOKEN `-` reads the token from stdin (keeps
it out of shell history and ps).

Options:
      --config FILE   the plugin configuration JSON (required; `-` for stdin is not allowed
                      together with TOKEN `-`)
      --method M      the request method                                [default: GET]
      --path P        the request path (with query, as sent)             [default: /]
      --header NAME   put the token in header NAME instead of the config's first token place
                      (with that header's value_prefix, e.g. \"Bearer \", if it has one)
      --no-token      send no token at all (e.g. to check an open route)
      --env-file F    NAME=VALUE lines for hmac_secret_env (take precedence over the environment,
                      which is read too: the filter reads vm_config.environment_variables)
      --now TIME      decide at TIME (seconds since the epoch, or relative: --now=+2h) instead of
                      this machine's clock
      --explain       show each check in the filter's order, the first failing one marked
      --json          print one JSON object instead of text
  -h, --help          this help

Exit status: 0 allowed, 1 denied, 2 usage error, unreadable input or invalid configuration
(printed as the filter logs it: `svcauth: invalid configuration: ...`).
";

pub struct Opts {
    pub config: String,
    pub method: String,
    pub path: String,
    pub header: Option<String>,
    pub env_file: Option<String>,
    pub now: Option<String>,
    pub explain: bool,
    pub json: bool,
    pub token: Option<String>,
}

pub fn parse(argv: Vec<OsString>) -> Result<Option<Opts>, CliError> {
    let mut p = lexopt::Parser::from_args(argv);
    let mut config = None;
    let mut method = None;
    let mut path = None;
    let mut header = None;
    let mut env_file = None;
    let mut now = None;
    let (mut no_token, mut explain, mut json) = (false, false, false);
    let mut token: Option<String> = None;
    while let Some(arg) = p.next()? {
        match arg {
            Short('h') | Long("help") => {
                out(HELP);
                return Ok(None);
            }
            Long("config") => args::once(&mut config, args::value(&mut p, "config")?, "config")?,
            Long("method") => args::once(&mut method, args::value(&mut p, "method")?, "method")?,
            Long("path") => args::once(&mut path, args::value(&mut p, "path")?, "path")?,
            Long("header") => args::once(&mut header, args::value(&mut p, "header")?, "header")?,
            Long("env-file") => {
                args::once(&mut env_file, args::value(&mut p, "env-file")?, "env-file")?
            }
            Long("now") => args::once(&mut now, args::value(&mut p, "now")?, "now")?,
            Long("no-token") => no_token = true,
            Long("explain") => explain = true,
            Long("json") => json = true,
            Pos(v) if token.is_none() => token = Some(args::string(v, "TOKEN")?),
            other => return Err(args::unexpected(other, "verify takes one TOKEN")),
        }
    }
    let config = args::need(config, "config")?;
    match (&token, no_token) {
        (Some(_), true) => {
            return Err(CliError::usage("give TOKEN or --no-token, not both"));
        }
        (None, false) => {
            return Err(CliError::usage(
                "expected TOKEN (or - to read it from stdin, or --no-token to send none)",
            ));
        }
        _ => {}
    }
    if config == "-" && token.as_deref() == Some("-") {
        return Err(CliError::usage(
            "stdin can hold the config or the token, not both",
        ));
    }
    let method = method.unwrap_or_else(|| "GET".into());
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(CliError::usage(
            "--method must be an HTTP method such as GET or POST",
        ));
    }
    let path = path.unwrap_or_else(|| "/".into());
    if !path.starts_with('/') || path.chars().any(char::is_control) {
        return Err(CliError::usage(
            "--path must start with / and hold no control characters",
        ));
    }
    Ok(Some(Opts {
        config,
        method: method.to_ascii_uppercase(),
        path,
        header: header.map(|h| h.to_ascii_lowercase()),
        env_file,
        now,
        explain,
        json,
        token,
    }))
}

pub fn read_token(arg: &str) -> Result<String, CliError> {
    let token = if arg == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|_| CliError::failed("cannot read the token from stdin"))?;
        s.trim().to_string()
    } else {
        arg.trim().to_string()
    };
    if token.is_empty() {
        return Err(CliError::failed("the token is empty"));
    }
    if token.chars().any(char::is_control) {
        // Not even Envoy would see such a header; and never echo the token.
        return Err(CliError::failed(
            "the token holds control characters (a line break?): it cannot be sent in a header",
        ));
    }
    Ok(token)
}
