//! `svcauth config check|services`: the filter's own `Config::from_json`, as `on_configure`
//! runs it, and a readable listing of what the compiled config does.

use std::ffi::OsString;

use lexopt::Arg::{Long, Short, Value as Pos};
use svcauth_filter::config::{Action, Config, JwksSource, PathMatch, Provider, Rule, TokenSource};
use svcauth_filter::jwk::KeyMaterial;

use crate::args;
use crate::files;
use crate::jwks::table;
use crate::outcome::{out, CliError, CmdResult};

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

Runs the filter's own Config::from_json. Prints `ok: N providers, M rules` (then, for providers
with remote_jwks, where their keys are fetched: the path, or with OIDC discovery the document,
the issuer it must name, the hosts its jwks_uri may name, and the limits; for providers that
read tokens from cookies or query parameters, do not forward them, or copy claims into headers:
where, and how) and exits 0, or
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

Prints the providers (issuer, audiences, keys, algorithms, where the token is read: headers,
cookies, query parameters), the claims copied into headers, and then the rules in order (first
match wins): what each matches, the scopes it requires, the providers it accepts.
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
        "ok: {}, {}\n{}",
        plural(config.providers.len(), "provider"),
        plural(config.rules.len(), "rule"),
        remote_keys(&config) + &token_places(&config)
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

/// Where a provider reads its token: `authorization "Bearer "`, `x-service-token`,
/// `cookie session`, `param access_token`.
pub fn provider_sources(config: &Config, p: &Provider) -> String {
    p.sources
        .iter()
        .filter_map(|s| config.sources.get(*s))
        .map(TokenSource::describe)
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
            if p.forward_token || p.statics.is_some() {
                provider_sources(&config, p)
            } else {
                format!("{} (not forwarded)", provider_sources(&config, p))
            },
            provider_keys(p),
        ]);
    }
    s.push_str(&indent(&table(&rows)));
    if config
        .providers
        .iter()
        .any(|p| !p.claim_to_headers.is_empty())
    {
        s.push_str("\nclaim headers (set on allowed requests from the verified token; lists joined with ,):\n");
        let mut rows = vec![[
            "PROVIDER".to_string(),
            "CLAIM".to_string(),
            "HEADER".to_string(),
            "MAX BYTES".to_string(),
        ]];
        for p in &config.providers {
            for ch in &p.claim_to_headers {
                rows.push([
                    p.name.clone(),
                    ch.claim.clone(),
                    ch.header.clone(),
                    p.max_claim_header_bytes.to_string(),
                ]);
            }
        }
        s.push_str(&indent(&table(&rows)));
    }
    if let Some(remote) = remote_keys(&config).strip_suffix('\n') {
        s.push('\n');
        s.push_str(remote);
        s.push('\n');
    }
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

/// Where providers with `remote_jwks` fetch their keys (with OIDC discovery: the document, the
/// issuer it must name, the hosts its `jwks_uri` may name); empty when no provider does.
pub fn remote_keys(config: &Config) -> String {
    let mut s = String::new();
    for p in &config.providers {
        let Some(r) = &p.remote_jwks else {
            continue;
        };
        if s.is_empty() {
            s.push_str("remote keys:\n");
        }
        let keys = format!(
            "at most {} bytes, timeout {} ms, refreshed every {} s, refetched for an unknown kid at most every {} s",
            r.max_bytes, r.timeout_ms, r.refresh_seconds, r.refetch_interval_seconds
        );
        match &r.source {
            JwksSource::Fixed { path, authority } => s.push_str(&format!(
                "  {}: GET {path} via cluster {}, authority {authority}\n    keys:     {keys}\n",
                p.name, r.cluster
            )),
            JwksSource::Discovery(d) => s.push_str(&format!(
                "  {}: OIDC discovery\n    \
                 document: GET {} via cluster {}, authority {}, at most {} bytes, timeout {} ms, rediscovered every {} s\n    \
                 issuer:   must be exactly {}\n    \
                 jwks_uri: host one of {}; keys via cluster {}\n    \
                 keys:     {keys}\n",
                p.name,
                d.path,
                r.cluster,
                d.authority,
                d.max_bytes,
                d.timeout_ms,
                d.refresh_seconds,
                p.issuer,
                d.allowed_jwks_hosts.join(", "),
                d.jwks_cluster,
            )),
        }
    }
    s
}

/// Providers whose token is read from a cookie or a query parameter, or not forwarded, and
/// the claims copied into headers; empty when no provider does any of these.
pub fn token_places(config: &Config) -> String {
    let mut s = String::new();
    for p in config.providers.iter().filter(|p| p.statics.is_none()) {
        let unusual = p.sources.iter().any(|i| {
            config
                .sources
                .get(*i)
                .is_some_and(|src| src.header().is_none())
        });
        if unusual || !p.forward_token {
            let fate = if p.forward_token {
                "forwarded upstream"
            } else {
                "removed before the upstream (forward_token: false)"
            };
            s.push_str(&format!(
                "  {}: token from {}; {fate}\n",
                p.name,
                provider_sources(config, p)
            ));
        }
        if !p.claim_to_headers.is_empty() {
            let pairs: Vec<String> = p
                .claim_to_headers
                .iter()
                .map(|c| format!("{} -> {}", c.claim, c.header))
                .collect();
            s.push_str(&format!(
                "  {}: claim headers {} (lists joined with ,; longer than {} bytes: token malformed)\n",
                p.name,
                pairs.join(", "),
                p.max_claim_header_bytes
            ));
        }
    }
    if s.is_empty() {
        s
    } else {
        format!("tokens:\n{s}")
    }
}

#[cfg(test)]
mod token_places_tests {
    use super::*;

    #[test]
    fn cookies_params_forwarding_and_claim_headers_are_listed() {
        let v = serde_json::json!({
            "providers": {
                "a": {"issuer": "i", "hmac_secret_env": "S", "from_cookies": ["session"],
                      "from_params": ["access_token"], "forward_token": false,
                      "claim_to_headers": [{"claim": "realm_access.roles", "header": "x-roles"}]},
                "b": {"issuer": "j", "hmac_secret_env": "S"}
            },
            "rules": [{"match": {"prefix": "/"}, "requires": {}}]
        });
        let secret = "s".repeat(32);
        let c = Config::from_json(v.to_string().as_bytes(), &|_| Some(secret.clone())).unwrap();
        assert_eq!(
            token_places(&c),
            "tokens:\n  a: token from cookie session, param access_token; removed before the upstream (forward_token: false)\n  \
             a: claim headers realm_access.roles -> x-roles (lists joined with ,; longer than 4096 bytes: token malformed)\n"
        );
        let v = serde_json::json!({
            "providers": {"b": {"issuer": "j", "hmac_secret_env": "S"}},
            "rules": [{"match": {"prefix": "/"}, "requires": {}}]
        });
        let c = Config::from_json(v.to_string().as_bytes(), &|_| Some(secret.clone())).unwrap();
        assert_eq!(token_places(&c), "");
    }
}

#[cfg(test)]
mod remote_keys_tests {
    use super::*;

    fn config(remote: serde_json::Value) -> Config {
        let v = serde_json::json!({
            "providers": {"idp": {"issuer": "https://auth.internal/realms/a", "remote_jwks": remote}},
            "rules": [{"match": {"prefix": "/"}, "requires": {}}]
        });
        Config::from_json(v.to_string().as_bytes(), &|_| None).unwrap()
    }

    #[test]
    fn discovery_settings_are_listed_with_their_defaults() {
        let c =
            config(serde_json::json!({"cluster": "idp", "discovery": {"jwks_cluster": "keys"}}));
        assert_eq!(
            remote_keys(&c),
            "remote keys:\n  idp: OIDC discovery\n    \
             document: GET /realms/a/.well-known/openid-configuration via cluster idp, authority auth.internal, at most 32768 bytes, timeout 1500 ms, rediscovered every 3600 s\n    \
             issuer:   must be exactly https://auth.internal/realms/a\n    \
             jwks_uri: host one of auth.internal; keys via cluster keys\n    \
             keys:     at most 65536 bytes, timeout 1500 ms, refreshed every 300 s, refetched for an unknown kid at most every 10 s\n"
        );
        let c = config(serde_json::json!({"cluster": "jwks"}));
        assert!(remote_keys(&c).starts_with(
            "remote keys:\n  idp: GET /.well-known/jwks.json via cluster jwks, authority jwks\n"
        ));
    }
}
