//! `svcauth`: mint, verify and explain service tokens with the filter's own code.
//!
//! Every decision this command prints comes from `svcauth_filter` itself (the crate Envoy runs
//! as wasm): `Config::from_json` for configs, `decide::decide_explained` for requests and
//! `--explain` (one call: the decision and the checks it ran). Exit status: 0 success (verify:
//! allowed), 1 verify: denied, 2 any error.

mod args;
mod config_cmd;
mod files;
mod jwks;
mod keygen;
mod mint;
mod outcome;
mod time;
mod verify;

use std::process::ExitCode;

use outcome::{note, out, CliError, CmdResult, EXIT_ERROR};

const HELP: &str = "\
svcauth: mint, verify and explain service tokens with the svcauth filter's own code

Usage: svcauth <command> [options]

Keys and key sets:
  keygen           generate a signing key: private PEM + public JWK (or an HMAC secret)
  jwks add         add public JWKs to a JWK Set file (a new key beside the old one)
  jwks remove      remove keys from a JWK Set file by kid (once no token uses them)
  jwks show        list the keys of a JWK Set file, or print it for a plugin config

Tokens:
  mint             sign a service token and print it
  verify           decide a request carrying a token exactly as the filter in Envoy would

Plugin configuration:
  config check     validate a plugin config as the filter's on_configure does
  config services  list the rules in order, the scopes each requires, the providers it accepts

Run `svcauth <command> --help` (or `svcauth help <command>`) for a command's options.

Exit status: 0 success (verify: allowed), 1 verify: denied, 2 usage, input or config error.
Secrets and tokens never appear in error messages; secrets are never taken as arguments.
";

fn run(argv: Vec<std::ffi::OsString>) -> (String, CmdResult) {
    let mut it = argv.into_iter();
    let first = it.next().map(|a| a.to_string_lossy().into_owned());
    let rest: Vec<std::ffi::OsString> = it.collect();
    let Some(cmd) = first else {
        out(HELP);
        return ("svcauth".into(), Err(CliError::usage("no command given")));
    };
    let sub = rest.first().map(|a| a.to_string_lossy().into_owned());
    let tail = || rest.iter().skip(1).cloned().collect::<Vec<_>>();
    match (cmd.as_str(), sub.as_deref()) {
        ("-h" | "--help", _) => {
            out(HELP);
            ("svcauth".into(), Ok(0))
        }
        ("help", None) => {
            out(HELP);
            ("svcauth".into(), Ok(0))
        }
        ("help", Some(_)) => {
            // `svcauth help jwks add` is `svcauth jwks add --help`.
            let mut again: Vec<std::ffi::OsString> = rest.clone();
            again.push("--help".into());
            run(again)
        }
        ("-V" | "--version", _) => {
            out(&format!("svcauth {}\n", env!("CARGO_PKG_VERSION")));
            ("svcauth".into(), Ok(0))
        }
        ("keygen", _) => ("svcauth keygen".into(), keygen::run(rest)),
        ("mint", _) => ("svcauth mint".into(), mint::run(rest)),
        ("verify", _) => ("svcauth verify".into(), verify::run(rest)),
        ("jwks", Some("add")) => ("svcauth jwks add".into(), jwks::add(tail())),
        ("jwks", Some("remove" | "rm")) => ("svcauth jwks remove".into(), jwks::remove(tail())),
        ("jwks", Some("show")) => ("svcauth jwks show".into(), jwks::show(tail())),
        ("jwks", Some("-h" | "--help")) => {
            out(jwks::HELP);
            ("svcauth jwks".into(), Ok(0))
        }
        ("jwks", _) => {
            out(jwks::HELP);
            (
                "svcauth jwks".into(),
                Err(CliError::usage(
                    "expected a subcommand: add, remove or show",
                )),
            )
        }
        ("config", Some("check")) => ("svcauth config check".into(), config_cmd::check(tail())),
        ("config", Some("services")) => (
            "svcauth config services".into(),
            config_cmd::services(tail()),
        ),
        ("config", Some("-h" | "--help")) => {
            out(config_cmd::HELP);
            ("svcauth config".into(), Ok(0))
        }
        ("config", _) => {
            out(config_cmd::HELP);
            (
                "svcauth config".into(),
                Err(CliError::usage("expected a subcommand: check or services")),
            )
        }
        (other, _) => {
            let shown = if args::printable(other) {
                format!("unknown command {other:?}")
            } else {
                "unknown command".to_string()
            };
            ("svcauth".into(), Err(CliError::usage(shown)))
        }
    }
}

fn main() -> ExitCode {
    // A panic is a bug; say so in one line, without a backtrace or any input.
    std::panic::set_hook(Box::new(|info| {
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        note(&format!(
            "svcauth: internal error{at} (a bug: please report it)"
        ));
    }));
    let argv: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let (name, result) = run(argv);
    match result {
        Ok(code) => ExitCode::from(code),
        Err(CliError::Usage(msg)) => {
            note(&format!("{name}: {msg}"));
            note(&format!("Run `{name} --help` for usage."));
            ExitCode::from(EXIT_ERROR)
        }
        Err(CliError::Failed(msg)) => {
            note(&format!("{name}: error: {msg}"));
            ExitCode::from(EXIT_ERROR)
        }
        Err(CliError::Config(msg)) => {
            note(&format!("svcauth: invalid configuration: {msg}"));
            ExitCode::from(EXIT_ERROR)
        }
    }
}
