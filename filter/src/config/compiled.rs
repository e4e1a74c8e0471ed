//! The compiled, immutable configuration: `Config`, built once per `on_configure` by
//! `Config::from_json` (parse, then compile every provider and rule) and shared by every
//! request; `HeaderFate`, what happens to a client-sent header before the decision.
//! May use: `config::raw`, `config::error`, `config::provider`, `config::rule`,
//! `config::sources`, `ratelimit`, `contract::names`.

use crate::contract::names::{
    folds_to, HEADER_SCOPES, HEADER_SERVICE, TAG_DECISION, TAG_PROVIDER, TAG_REASON, TAG_SERVICE,
};

use super::error::{err, ConfigError};
use super::provider::{compile_provider, Provider};
use super::raw::{RawConfig, RawProvider, TagsAs};
use super::rule::{compile_rule, Action, Rule};
use super::sources::TokenSource;

/// `max_token_bytes` when not set.
const DEFAULT_MAX_TOKEN_BYTES: usize = 8192;
/// `cache.max_entries` when not set.
const DEFAULT_CACHE_ENTRIES: usize = 1024;

/// The compiled configuration.
#[derive(Debug)]
pub struct Config {
    pub providers: Vec<Provider>,
    pub rules: Vec<Rule>,
    /// Every distinct token location of every provider.
    pub sources: Vec<TokenSource>,
    pub max_token_bytes: usize,
    pub bypass_cors_preflight: bool,
    pub cache_max_entries: usize,
    pub log_allowed: bool,
    pub log_claims: Vec<String>,
    /// Headers removed from every request before anything else (anti-spoofing), in every
    /// spelling that [`folds_to`] them.
    pub strip_headers: Vec<String>,
    /// Headers read, then removed from every request (static credentials' secret headers):
    /// the exact name stays visible to the decision, other spellings are stripped.
    pub consumed_headers: Vec<String>,
    pub rate_limits: Vec<crate::ratelimit::Limit>,
    /// Verify RS256/384/512 and ES256/384 signatures with the host's native crypto (Envoy's
    /// `verify_signature` foreign function) when it has it.
    pub host_crypto: bool,
    /// How the decision is published for span tags and access logs.
    pub decision_tags: TagsAs,
    /// Every claim some rule's `requires.claims` names (kept with a verified token).
    pub rule_claims: Vec<String>,
}

impl Config {
    /// Parses and compiles a plugin configuration. `env` looks up environment variables (the
    /// Envoy process environment that `vm_config.environment_variables` passes in).
    pub fn from_json(
        json: &[u8],
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let de = &mut serde_json::Deserializer::from_slice(json);
        let raw: RawConfig = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner().to_string();
            let inner = inner
                .split(" at line ")
                .next()
                .unwrap_or_default()
                .to_string();
            if path == "." {
                ConfigError(format!("config: {inner}"))
            } else {
                ConfigError(format!("{path}: {inner}"))
            }
        })?;
        compile(raw, env)
    }

    pub fn provider_index(&self, name: &str) -> Option<usize> {
        self.providers.iter().position(|p| p.name == name)
    }

    /// What to do with request header `name` before deciding (anti-spoofing).
    pub fn header_fate(&self, name: &str) -> HeaderFate {
        if self.strip_headers.iter().any(|h| folds_to(name, h)) {
            return HeaderFate::Strip;
        }
        match self.consumed_headers.iter().find(|h| folds_to(name, h)) {
            Some(h) if h == name => HeaderFate::Consume,
            Some(_) => HeaderFate::Strip,
            None => HeaderFate::Keep,
        }
    }
}

/// The fate of one client-sent request header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderFate {
    /// Not ours: forwarded as sent.
    Keep,
    /// A spelling of a header svcauth sets: removed before anything reads it.
    Strip,
    /// A credential svcauth reads (static secret): visible to the decision, then removed.
    Consume,
}

/// Every provider, then every rule, then the top-level settings (defaults applied).
fn compile(raw: RawConfig, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
    if raw.providers.is_empty() {
        return err("providers", "at least one provider is required");
    }
    let Providers {
        providers,
        sources,
        strip,
        consumed,
    } = compile_providers(raw.providers, env)?;
    check_claim_headers(&providers, &sources)?;
    if raw.rules.is_empty() {
        return err(
            "rules",
            "at least one rule is required (a request that matches no rule is denied)",
        );
    }
    let mut rules = Vec::new();
    for (i, rr) in raw.rules.into_iter().enumerate() {
        rules.push(compile_rule(i, rr, &providers)?);
    }
    let max_token_bytes = raw.max_token_bytes.unwrap_or(DEFAULT_MAX_TOKEN_BYTES);
    if !(256..=65536).contains(&max_token_bytes) {
        return err("max_token_bytes", "must be between 256 and 65536");
    }
    let cache_max_entries = raw
        .cache
        .and_then(|c| c.max_entries)
        .unwrap_or(DEFAULT_CACHE_ENTRIES);
    if cache_max_entries > 1_000_000 {
        return err(
            "cache.max_entries",
            "must be at most 1000000 (0 turns the cache off)",
        );
    }
    let (log_allowed, log_claims) = raw.log.map(|l| (l.allowed, l.claims)).unwrap_or_default();
    let rate_limits = crate::ratelimit::compile(raw.rate_limits)?;
    let rule_claims = rule_claims(&rules);
    Ok(Config {
        providers,
        rules,
        sources,
        max_token_bytes,
        bypass_cors_preflight: raw.bypass_cors_preflight.unwrap_or(false),
        cache_max_entries,
        log_allowed,
        log_claims,
        strip_headers: strip,
        consumed_headers: consumed,
        rate_limits,
        rule_claims,
        host_crypto: raw.host_crypto.unwrap_or(true),
        decision_tags: raw.decision_tags.unwrap_or_default(),
    })
}

/// The compiled providers, the token locations they share, and the headers taken from every
/// request because of them.
struct Providers {
    providers: Vec<Provider>,
    sources: Vec<TokenSource>,
    /// Our identity and tag headers, and every claim header.
    strip: Vec<String>,
    /// Every static provider's secret header.
    consumed: Vec<String>,
}

/// Every provider, in name order; no two token providers may share an issuer (the token's
/// `iss` selects the provider).
fn compile_providers(
    raw: std::collections::BTreeMap<String, RawProvider>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Providers, ConfigError> {
    let mut sources: Vec<TokenSource> = Vec::new();
    let mut providers = Vec::new();
    let mut strip: Vec<String> = [
        HEADER_SERVICE,
        HEADER_SCOPES,
        TAG_DECISION,
        TAG_SERVICE,
        TAG_REASON,
        TAG_PROVIDER,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut consumed: Vec<String> = Vec::new();
    for (name, rp) in raw {
        let p = compile_provider(&name, rp, env, &mut sources)?;
        if let Some(other) = providers.iter().find(|o: &&Provider| {
            p.statics.is_none() && o.statics.is_none() && o.issuer == p.issuer
        }) {
            return err(
                format!("providers.{name}.issuer"),
                format!(
                    "issuer {:?} is also provider {:?}'s; the token's iss selects the provider",
                    p.issuer, other.name
                ),
            );
        }
        for ch in &p.claim_to_headers {
            if !strip.contains(&ch.header) {
                strip.push(ch.header.clone());
            }
        }
        if let Some(st) = &p.statics {
            if !consumed.contains(&st.secret_header) {
                consumed.push(st.secret_header.clone());
            }
        }
        providers.push(p);
    }
    Ok(Providers {
        providers,
        sources,
        strip,
        consumed,
    })
}

/// Claim headers are stripped from every request: none may be where a provider reads its
/// credentials.
fn check_claim_headers(providers: &[Provider], sources: &[TokenSource]) -> Result<(), ConfigError> {
    for p in providers {
        for (i, ch) in p.claim_to_headers.iter().enumerate() {
            let h = ch.header.as_str();
            let credential = sources.iter().any(|s| s.header() == Some(h))
                || providers
                    .iter()
                    .filter_map(|o| o.statics.as_ref())
                    .any(|st| st.id_header == h || st.secret_header == h);
            if credential {
                return err(
                    format!("providers.{}.claim_to_headers[{i}].header", p.name),
                    format!("{h:?} is where a provider reads its credentials"),
                );
            }
        }
    }
    Ok(())
}

/// Every claim some rule's `requires.claims` names, once, in rule order.
fn rule_claims(rules: &[Rule]) -> Vec<String> {
    let mut rule_claims: Vec<String> = Vec::new();
    for r in rules {
        if let Action::Require { claims, .. } = &r.action {
            for (c, _) in claims {
                if !rule_claims.contains(c) {
                    rule_claims.push(c.clone());
                }
            }
        }
    }
    rule_claims
}
