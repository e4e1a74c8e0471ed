//! `svcauth config check|services`: the filter's own `Config::from_json`, as `on_configure`
//! runs it, and a readable listing of what the compiled config does.

use std::ffi::OsString;

use lexopt::Arg::{Long, Short, Value as Pos};
use svcauth_filter::config::{Action, Config, PathMatch, Provider, Rule};
use svcauth_filter::jwk::KeyMaterial;

use crate::args;
use crate::files;
use crate::jwks::table;
use crate::{out, CliError, CmdResult};

pub const HELP: &str = "\
svcauth config: check a plugin configuration with the filter's own code

Usage:
  svcauth config check FILE [--env-file F]      validate it exactly as the filter's on_configure
  svcauth config services FILE [--env-file F]   list its providers and rules

FILE is the plugin configuration JSON (what Envoy's `configuration` value or Istio's
`pluginConfig` holds); `-` reads stdin. Run `svcauth config <check|services> --help` for more.
";

const CHECK_HELP: &str = "\
svcauth config check: validate a plugin configuration as the filter's on_configure does

Usage: svcauth config check FILE [--env-file F]

Runs the filter's own Config::from_json. Prints `ok: N providers, M rules` and exits 0, or
prints the message the filter logs when it refuses the config at load
(`svcauth: invalid configuration: <field>: <problem>`) and exits 2.

Secrets named by hmac_secret_env are read from this process's environment (in Envoy they come
from vm_config.environment_variables); only their presence and length are checked.

Options:
      --env-file F   also read NAME=VALUE lines from F (they take precedence over the environment)
  -h, --help         this help
";

const SERVICES_HELP: &str = "\
svcauth config services: list what a plugin configuration does

Usage: svcauth config services FILE [--env-file F]

Prints the providers (issuer, audiences, keys, algorithms, token headers) and then the rules in
order (first match wins): what each matches, the scopes it requires, the providers it accepts.
A request that matches no rule is denied.

Options:
      --env-file F   also read NAME=VALUE lines from F (for hmac_secret_env)
  -h, --help         this help
";

/// A lookup for `hmac_secret_env`: `--env-file` entries first, then this process's environment.
pub fn env_lookup(env_file: Option<&str>) -> Result<impl Fn(&str) -> Option<String>, CliError> {
    let vars = match env_file {
        Some(path) => args::parse_env_file(&files::read_text(path, "env file")?, path)?,
        None => Vec::new(),
    };
    Ok(move |name: &str| {
        vars.iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .or_else(|| std::env::var(name).ok())
    })
}

/// Reads and compiles a plugin config; a refusal is [`CliError::Config`] with the filter's message.
pub fn load(path: &str, env_file: Option<&str>) -> Result<Config, CliError> {
    let text = files::read_text(path, "plugin config")?;
    let env = env_lookup(env_file)?;
    Config::from_json(text.as_bytes(), &env).map_err(|e| CliError::Config(e.0))
}

fn file_and_env(
    argv: Vec<OsString>,
    help: &str,
) -> Result<Option<(String, Option<String>)>, CliError> {
    let mut p = lexopt::Parser::from_args(argv);
    let mut file: Option<String> = None;
    let mut env_file: Option<String> = None;
    while let Some(arg) = p.next()? {
        match arg {
            Short('h') | Long("help") => {
                out(help);
                return Ok(None);
            }
            Long("env-file") => {
                args::once(&mut env_file, args::value(&mut p, "env-file")?, "env-file")?
            }
            Pos(v) if file.is_none() => file = Some(args::string(v, "FILE")?),
            other => return Err(args::unexpected(other, "this command takes one FILE")),
        }
    }
    let file = file.ok_or_else(|| CliError::usage("expected FILE (the plugin config JSON)"))?;
    Ok(Some((file, env_file)))
}

fn plural(n: usize, one: &str) -> String {
    if n == 1 {
        format!("{n} {one}")
    } else {
        format!("{n} {one}s")
    }
}

pub fn check(argv: Vec<OsString>) -> CmdResult {
    let Some((file, env_file)) = file_and_env(argv, CHECK_HELP)? else {
        return Ok(0);
    };
    let config = load(&file, env_file.as_deref())?;
    out(&format!(
        "ok: {}, {}\n",
        plural(config.providers.len(), "provider"),
        plural(config.rules.len(), "rule")
    ));
    Ok(0)
}

/// `prefix /health`, `path /admin/rotate`.
pub fn rule_match(rule: &Rule) -> String {
    match &rule.path {
        PathMatch::Prefix(p) => format!("prefix {p}"),
        PathMatch::Exact(p) => format!("path {p}"),
    }
}

pub fn rule_methods(rule: &Rule) -> String {
    if rule.methods.is_empty() {
        "any".into()
    } else {
        rule.methods.join(",")
    }
}

/// What a rule requires, in words.
pub fn rule_requires(rule: &Rule) -> String {
    match &rule.action {
        Action::Allow => "nothing: open (no token checked)".into(),
        Action::Require {
            scopes_all,
            scopes_any,
            ..
        } => {
            let mut parts = Vec::new();
            if !scopes_all.is_empty() {
                parts.push(format!("all of: {}", scopes_all.join(" ")));
            }
            if !scopes_any.is_empty() {
                parts.push(format!("any of: {}", scopes_any.join(" ")));
            }
            if parts.is_empty() {
                "a valid token (no scope)".into()
            } else {
                format!("scopes {}", parts.join("; "))
            }
        }
    }
}

/// The providers a rule accepts, by name.
pub fn rule_providers(config: &Config, rule: &Rule) -> String {
    match &rule.action {
        Action::Allow => "-".into(),
        Action::Require {
            providers: None, ..
        } => "any".into(),
        Action::Require {
            providers: Some(list),
            ..
        } => list
            .iter()
            .filter_map(|i| config.providers.get(*i).map(|p| p.name.clone()))
            .collect::<Vec<_>>()
            .join(","),
    }
}

/// `#2 prefix /, any method: requires scopes any of: a b`.
pub fn rule_summary(config: &Config, i: usize) -> String {
    let Some(r) = config.rules.get(i) else {
        return format!("#{i}");
    };
    let methods = if r.methods.is_empty() {
        "any method".to_string()
    } else {
        r.methods.join(",")
    };
    let requires = match &r.action {
        Action::Allow => "open (no token checked)".to_string(),
        Action::Require { providers, .. } => {
            let from = match providers {
                None => String::new(),
                Some(_) => format!(", from provider {}", rule_providers(config, r)),
            };
            format!("requires {}{from}", rule_requires(r))
        }
    };
    format!("#{i} {}, {methods}: {requires}", rule_match(r))
}

/// The token headers a provider reads: `authorization "Bearer "`, `x-service-token`.
pub fn provider_sources(config: &Config, p: &Provider) -> String {
    p.sources
        .iter()
        .filter_map(|s| config.sources.get(*s))
        .map(|s| match &s.prefix {
            Some(prefix) => format!("{} {prefix:?}", s.header),
            None => s.header.clone(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A provider's keys: `demo-rsa (RSA), (HMAC secret from the environment)`.
pub fn provider_keys(p: &Provider) -> String {
    if p.keys.is_empty() {
        return "(none inline: fetched at run time)".into();
    }
    p.keys
        .iter()
        .map(|k| {
            let kind = match k.material {
                KeyMaterial::Hmac(_) => "HMAC",
                KeyMaterial::Rsa(_) => "RSA",
                KeyMaterial::P256(_) => "P-256",
                KeyMaterial::P384(_) => "P-384",
                KeyMaterial::P521(_) => "P-521",
                KeyMaterial::Ed25519(_) => "Ed25519",
            };
            match &k.kid {
                Some(kid) => format!("{kid} ({kind})"),
                None => format!("({kind}, no kid)"),
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn services(argv: Vec<OsString>) -> CmdResult {
    let Some((file, env_file)) = file_and_env(argv, SERVICES_HELP)? else {
        return Ok(0);
    };
    let config = load(&file, env_file.as_deref())?;
    let mut s = format!(
        "providers ({}; the token's iss selects one):\n",
        config.providers.len()
    );
    let mut rows = vec![[
        "NAME".to_string(),
        "ISSUER".to_string(),
        "AUDIENCES".to_string(),
        "ALGORITHMS".to_string(),
        "TOKEN FROM".to_string(),
        "KEYS".to_string(),
    ]];
    for p in &config.providers {
        rows.push([
            p.name.clone(),
            p.issuer.clone(),
            p.audiences
                .as_ref()
                .map_or("(not checked)".into(), |a| a.join(",")),
            p.algorithms
                .iter()
                .map(|a| a.name())
                .collect::<Vec<_>>()
                .join(","),
            provider_sources(&config, p),
            provider_keys(p),
        ]);
    }
    s.push_str(&indent(&table(&rows)));
    s.push_str(&format!(
        "\nrules ({}; first match wins, a request that matches none is denied):\n",
        config.rules.len()
    ));
    let mut rows = vec![[
        "#".to_string(),
        "MATCH".to_string(),
        "METHODS".to_string(),
        "PROVIDERS".to_string(),
        "REQUIRES".to_string(),
    ]];
    for (i, r) in config.rules.iter().enumerate() {
        rows.push([
            i.to_string(),
            rule_match(r),
            rule_methods(r),
            rule_providers(&config, r),
            rule_requires(r),
        ]);
    }
    s.push_str(&indent(&table(&rows)));
    out(&s);
    Ok(0)
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}\n")).collect()
}
