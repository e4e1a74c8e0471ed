//! Plugin configuration: the raw JSON shape (unknown fields refused), and its compiled,
//! immutable form built once per `on_configure` and shared by every request.
//!
//! Every error names the field it is about (`providers.internal.jwks: …`).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use crate::token::jwk::{Key, KeyMaterial};
use crate::token::jws::{Alg, ALL_ALGS};

use crate::contract::names::{
    folds_to, is_header_name, HEADER_SCOPES, HEADER_SERVICE, TAG_DECISION, TAG_PROVIDER,
    TAG_REASON, TAG_SERVICE,
};

const DEFAULT_MAX_TOKEN_BYTES: usize = 8192;
const DEFAULT_CLOCK_SKEW: u64 = 60;
const DEFAULT_CACHE_ENTRIES: usize = 1024;
const MIN_HMAC_SECRET_BYTES: usize = 32;
const DEFAULT_MAX_CLAIM_HEADER_BYTES: usize = 4096;

// ---------------------------------------------------------------- raw (as written) ------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    providers: BTreeMap<String, RawProvider>,
    rules: Vec<RawRule>,
    #[serde(default)]
    max_token_bytes: Option<usize>,
    #[serde(default)]
    bypass_cors_preflight: Option<bool>,
    #[serde(default)]
    cache: Option<RawCache>,
    #[serde(default)]
    log: Option<RawLog>,
    #[serde(default)]
    rate_limits: Vec<crate::ratelimit::RawLimit>,
    #[serde(default)]
    host_crypto: Option<bool>,
    #[serde(default)]
    decision_tags: Option<TagsAs>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCache {
    #[serde(default)]
    max_entries: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLog {
    #[serde(default)]
    allowed: bool,
    #[serde(default)]
    claims: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProvider {
    #[serde(default)]
    issuer: Option<String>,
    #[serde(default)]
    static_credentials: Option<crate::statics::RawStatic>,
    #[serde(default)]
    typ: Option<String>,
    #[serde(default)]
    audiences: Option<Vec<String>>,
    #[serde(default)]
    jwks: Option<Value>,
    #[serde(default)]
    remote_jwks: Option<RawRemoteJwks>,
    #[serde(default)]
    hmac_secret_env: Option<OneOrMany>,
    #[serde(default)]
    from_headers: Option<Vec<RawHeaderSource>>,
    #[serde(default)]
    from_cookies: Option<Vec<String>>,
    #[serde(default)]
    from_params: Option<Vec<String>>,
    #[serde(default)]
    clock_skew_seconds: Option<u64>,
    #[serde(default)]
    algorithms: Option<Vec<String>>,
    #[serde(default)]
    subject_claim: Option<String>,
    #[serde(default)]
    scope_claims: Option<Vec<String>>,
    #[serde(default)]
    required_claims: BTreeMap<String, Value>,
    #[serde(default)]
    max_lifetime_seconds: Option<u64>,
    #[serde(default)]
    require_expiration: Option<bool>,
    #[serde(default)]
    forward_token: Option<bool>,
    #[serde(default)]
    claim_to_headers: Vec<RawClaimHeader>,
    #[serde(default)]
    max_claim_header_bytes: Option<usize>,
    #[serde(default)]
    signed_requests: Option<crate::signing::RawSigning>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRemoteJwks {
    cluster: String,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    authority: Option<String>,
    #[serde(default)]
    refresh_seconds: Option<u64>,
    #[serde(default)]
    timeout_ms: Option<u64>,
    #[serde(default)]
    max_bytes: Option<usize>,
    #[serde(default)]
    refetch_interval_seconds: Option<u64>,
    #[serde(default)]
    max_waiting: Option<usize>,
    /// `true`, `false` or an object ([`crate::discovery::RawDiscovery`]).
    #[serde(default)]
    discovery: Option<crate::discovery::RawDiscoveryOpt>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHeaderSource {
    name: String,
    #[serde(default)]
    value_prefix: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClaimHeader {
    /// A dot path (`"realm_access.roles"`) or a list of member names (`["https://x.io/roles"]`).
    claim: Value,
    header: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    #[serde(rename = "match")]
    match_: RawMatch,
    #[serde(default)]
    allow: Option<bool>,
    #[serde(default)]
    requires: Option<RawRequires>,
    #[serde(default)]
    audit: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMatch {
    #[serde(default)]
    prefix: Option<String>,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    methods: Option<Vec<String>>,
    #[serde(default)]
    ignore_case: bool,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRequires {
    #[serde(default)]
    providers: Option<Vec<String>>,
    #[serde(default)]
    scopes_all: Vec<String>,
    #[serde(default)]
    scopes_any: Vec<String>,
    #[serde(default)]
    claims: BTreeMap<String, Value>,
    #[serde(default)]
    signed: bool,
}

// ---------------------------------------------------------------- compiled --------------------

/// Where a token may be found (`from_headers`, `from_cookies`, `from_params`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// A request header and an optional value prefix (e.g. `Bearer `).
    Header {
        /// Lower-case header name.
        name: String,
        /// Prefix before the token; the scheme part is compared case-insensitively.
        prefix: Option<String>,
    },
    /// A cookie of the `cookie` header(s), by its exact (case-sensitive) name.
    Cookie(String),
    /// A query parameter of `:path`, by its name (compared after percent-decoding).
    Param(String),
}

impl TokenSource {
    /// `authorization "Bearer "`, `x-service-token`, `cookie session`, `param access_token`.
    pub fn describe(&self) -> String {
        match self {
            TokenSource::Header { name, prefix: None } => name.clone(),
            TokenSource::Header {
                name,
                prefix: Some(p),
            } => format!("{name} {p:?}"),
            TokenSource::Cookie(c) => format!("cookie {c}"),
            TokenSource::Param(q) => format!("param {q}"),
        }
    }

    /// The header name, for a header source.
    pub fn header(&self) -> Option<&str> {
        match self {
            TokenSource::Header { name, .. } => Some(name),
            _ => None,
        }
    }
}

/// One `claim_to_headers` entry: where the claim is in the claims object, and its header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimHeader {
    /// The claim as written (`realm_access.roles`), for messages.
    pub claim: String,
    /// Member names from the claims object down to the value; never empty, no empty name.
    pub path: Vec<String>,
    /// Lower-case header name.
    pub header: String,
}

/// Where and how often a provider's JWK Set is fetched (through an Envoy cluster).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteJwks {
    /// The cluster of the JWKS fetch, or with discovery of the discovery document's.
    pub cluster: String,
    /// Where the JWK Set is: a fixed path, or found by OIDC discovery.
    pub source: JwksSource,
    /// JWKS refresh interval.
    pub refresh_seconds: u64,
    /// JWKS fetch timeout.
    pub timeout_ms: u64,
    /// Larger JWKS responses are refused before their body is read.
    pub max_bytes: usize,
    /// At most one refetch for an unknown `kid` per this many seconds, per worker VM.
    pub refetch_interval_seconds: u64,
    /// At most this many requests of one worker VM wait for a refetch; beyond, deny at once.
    pub max_waiting: usize,
}

/// Where a remote JWK Set is fetched from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    /// `GET path` from [`RemoteJwks::cluster`] with this `:authority`.
    Fixed { path: String, authority: String },
    /// The `jwks_uri` of the issuer's discovery document.
    Discovery(Discovery),
}

pub use crate::discovery::Discovery;

/// One issuer's verification settings.
#[derive(Debug)]
pub struct Provider {
    pub name: String,
    pub issuer: String,
    /// `None`: audience not checked.
    pub audiences: Option<Vec<String>>,
    /// Keys known at configure time (inline JWKS, HMAC secrets).
    pub keys: Vec<Key>,
    /// Keys fetched at run time, if configured.
    pub remote_jwks: Option<RemoteJwks>,
    pub algorithms: Vec<Alg>,
    /// Indices into [`Config::sources`].
    pub sources: Vec<usize>,
    pub clock_skew: i64,
    pub subject_claim: String,
    pub scope_claims: Vec<String>,
    pub required_claims: Vec<(String, Value)>,
    pub max_lifetime: Option<i64>,
    /// Whether a token without `exp` is refused (`exp_missing`); default `true`.
    pub require_expiration: bool,
    pub forward_token: bool,
    pub claim_to_headers: Vec<ClaimHeader>,
    /// The longest value a `claim_to_headers` header may get (a longer one: token malformed).
    pub max_claim_header_bytes: usize,
    /// Required `typ` header (compared case-insensitively, `application/` prefix optional).
    pub typ: Option<String>,
    /// Set for a static-credentials provider (then it has no issuer and no keys).
    pub statics: Option<crate::statics::StaticCreds>,
    /// Signed requests (`signed_requests`): the callers' secrets, window and body bound.
    pub signing: Option<crate::signing::Signing>,
}

/// What a rule matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatch {
    Exact(String),
    Prefix(String),
}

/// What a matched rule demands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Let through without a token.
    Allow,
    /// A valid token from one of `providers` (indices; `None` = any) with these scopes.
    Require {
        providers: Option<Vec<usize>>,
        scopes_all: Vec<String>,
        scopes_any: Vec<String>,
        /// Claims the caller's token must carry with exactly these values (403 otherwise).
        claims: Vec<(String, Value)>,
        /// The `scope="…"` value of a 403: the required scopes, space-separated.
        challenge: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// The rule's path in canonical form ([`crate::path::canonical`]).
    pub path: PathMatch,
    /// Compare the path ignoring ASCII case (`match.ignore_case`).
    pub ignore_case: bool,
    /// Upper-case methods; empty = any. A list with `GET` also matches `HEAD`.
    pub methods: Vec<String>,
    pub action: Action,
    /// Write an audit line for every allowed call on this rule.
    pub audit: bool,
    /// The request must be signed (`requires.signed`), whatever its provider's `required`.
    pub signed: bool,
}

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

pub use crate::config_error::ConfigError;

fn err<T>(field: impl std::fmt::Display, msg: impl std::fmt::Display) -> Result<T, ConfigError> {
    Err(ConfigError(format!("{field}: {msg}")))
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

/// Where the decision (`auth.decision`, `auth.service`, `auth.reason`, `auth.provider`) is
/// published for Envoy's tracer and access log (`decision_tags`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TagsAs {
    /// Filter state `wasm.svcauth_decision`, `wasm.svcauth_service`, `wasm.svcauth_reason`,
    /// `wasm.svcauth_provider` (tags: `value: "%FILTER_STATE(wasm.svcauth_decision:PLAIN)%"`):
    /// never forwarded upstream. The default.
    #[default]
    FilterState,
    /// The request headers `x-svcauth-decision`, `-service`, `-reason`, `-provider` (tags:
    /// `request_header`), for tracers that read only headers (Istio's Telemetry API). On
    /// allowed requests they reach the upstream too.
    RequestHeaders,
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

fn compile(raw: RawConfig, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
    if raw.providers.is_empty() {
        return err("providers", "at least one provider is required");
    }
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
    for (name, rp) in raw.providers {
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
    // Claim headers are stripped from every request: none may be where a provider reads its
    // credentials.
    for p in &providers {
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
    let mut rule_claims: Vec<String> = Vec::new();
    for r in &rules {
        if let Action::Require { claims, .. } = &r.action {
            for (c, _) in claims {
                if !rule_claims.contains(c) {
                    rule_claims.push(c.clone());
                }
            }
        }
    }
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

fn compile_provider(
    name: &str,
    rp: RawProvider,
    env: &dyn Fn(&str) -> Option<String>,
    sources: &mut Vec<TokenSource>,
) -> Result<Provider, ConfigError> {
    let at = |field: &str| format!("providers.{name}.{field}");
    if let Some(st) = rp.static_credentials {
        let jwt_only = rp.issuer.is_some()
            || rp.jwks.is_some()
            || rp.remote_jwks.is_some()
            || rp.hmac_secret_env.is_some()
            || rp.from_headers.is_some()
            || rp.from_cookies.is_some()
            || rp.from_params.is_some()
            || rp.max_claim_header_bytes.is_some()
            || rp.algorithms.is_some()
            || rp.typ.is_some()
            || !rp.required_claims.is_empty()
            || !rp.claim_to_headers.is_empty()
            || rp.signed_requests.is_some();
        if jwt_only {
            return err(
                format!("providers.{name}"),
                "a static_credentials provider takes no token settings (issuer, jwks, …)",
            );
        }
        let statics = crate::statics::compile(name, st, env)?;
        return Ok(Provider {
            name: name.to_string(),
            issuer: String::new(),
            audiences: None,
            keys: Vec::new(),
            remote_jwks: None,
            algorithms: Vec::new(),
            sources: Vec::new(),
            clock_skew: 0,
            subject_claim: String::new(),
            scope_claims: Vec::new(),
            required_claims: Vec::new(),
            max_lifetime: None,
            require_expiration: true,
            forward_token: false,
            claim_to_headers: Vec::new(),
            max_claim_header_bytes: DEFAULT_MAX_CLAIM_HEADER_BYTES,
            typ: None,
            statics: Some(statics),
            signing: None,
        });
    }
    let Some(issuer) = rp.issuer.filter(|i| !i.is_empty()) else {
        return err(
            at("issuer"),
            "is required and must not be empty (or use static_credentials)",
        );
    };
    let typ = match rp.typ {
        Some(t) if t.is_empty() || t.chars().any(char::is_control) => {
            return err(at("typ"), "must be a media type such as at+jwt")
        }
        t => t,
    };
    if let Some(auds) = &rp.audiences {
        if auds.is_empty() || auds.iter().any(|a| a.is_empty()) {
            return err(
                at("audiences"),
                "must list at least one non-empty audience (omit it to skip the check)",
            );
        }
    }
    let mut keys: Vec<Key> = Vec::new();
    if let Some(jwks) = rp.jwks {
        let text = match jwks {
            Value::String(s) => s,
            other @ Value::Object(_) => other.to_string(),
            _ => {
                return err(
                    at("jwks"),
                    "must be a JWK Set, as a JSON object or a JSON string",
                )
            }
        };
        let set = crate::token::set::parse_set(&text)
            .map_err(|e| ConfigError(format!("{}: {e}", at("jwks"))))?;
        if set.keys.is_empty() {
            return err(
                at("jwks"),
                set.skipped.first().map_or("has no keys".into(), |s| {
                    format!("unusable key: {s} (the set has no usable key)")
                }),
            );
        }
        for s in &set.skipped {
            log::warn!("svcauth: provider {name}: JWKS key skipped: {s}");
        }
        keys.extend(set.keys);
    }
    if let Some(vars) = rp.hmac_secret_env {
        let vars = match vars {
            OneOrMany::One(v) => vec![v],
            OneOrMany::Many(v) => v,
        };
        if vars.is_empty() {
            return err(
                at("hmac_secret_env"),
                "must name at least one environment variable",
            );
        }
        for var in vars {
            let Some(secret) = env(&var) else {
                return err(
                    at("hmac_secret_env"),
                    format!("environment variable {var} is not set (pass it with vm_config.environment_variables)"),
                );
            };
            if secret.len() < MIN_HMAC_SECRET_BYTES {
                return err(
                    at("hmac_secret_env"),
                    format!("the secret in {var} is shorter than {MIN_HMAC_SECRET_BYTES} bytes"),
                );
            }
            keys.push(Key {
                kid: None,
                alg: None,
                spki_der: Vec::new(),
                material: KeyMaterial::Hmac(secret.into_bytes()),
            });
        }
    }
    let remote_jwks = match rp.remote_jwks {
        None => None,
        Some(r) => Some(compile_remote(name, &issuer, r)?),
    };
    if keys.is_empty() && remote_jwks.is_none() {
        return err(
            format!("providers.{name}"),
            "no key source: set jwks, remote_jwks or hmac_secret_env",
        );
    }
    // Remote keys are not known yet: every asymmetric algorithm may be served by them.
    let usable: Vec<Alg> = ALL_ALGS
        .iter()
        .copied()
        .filter(|a| keys.iter().any(|k| k.fits(*a)) || (remote_jwks.is_some() && !a.is_hmac()))
        .collect();
    let algorithms = match rp.algorithms {
        None => usable,
        Some(names) => {
            if names.is_empty() {
                return err(at("algorithms"), "must list at least one algorithm");
            }
            let mut algs = Vec::new();
            for n in names {
                let Some(a) = Alg::from_name(&n) else {
                    return err(at("algorithms"), format!("unsupported algorithm {n:?} (supported: HS256/384/512, RS256/384/512, PS256/384/512, ES256, ES384, ES512, EdDSA)"));
                };
                if !usable.contains(&a) {
                    return err(
                        at("algorithms"),
                        format!("{n} is allowed but no configured key can verify it"),
                    );
                }
                algs.push(a);
            }
            algs
        }
    };
    let my_sources = compile_sources(
        name,
        rp.from_headers,
        rp.from_cookies,
        rp.from_params,
        sources,
    )?;
    let skew = rp.clock_skew_seconds.unwrap_or(DEFAULT_CLOCK_SKEW);
    if skew > 3600 {
        return err(at("clock_skew_seconds"), "must be at most 3600");
    }
    let subject_claim = rp.subject_claim.unwrap_or_else(|| "sub".into());
    if subject_claim.is_empty() {
        return err(at("subject_claim"), "must not be empty");
    }
    let scope_claims = rp
        .scope_claims
        .unwrap_or_else(|| vec!["scope".into(), "scp".into(), "scopes".into()]);
    if scope_claims.is_empty() {
        return err(at("scope_claims"), "must list at least one claim");
    }
    let max_lifetime = match rp.max_lifetime_seconds {
        Some(0) => return err(at("max_lifetime_seconds"), "must be positive"),
        Some(s) => Some(i64::try_from(s).unwrap_or(i64::MAX)),
        None => None,
    };
    let max_claim_header_bytes = rp
        .max_claim_header_bytes
        .unwrap_or(DEFAULT_MAX_CLAIM_HEADER_BYTES);
    if !(1..=65_536).contains(&max_claim_header_bytes) {
        return err(at("max_claim_header_bytes"), "must be between 1 and 65536");
    }
    let mut claim_to_headers: Vec<ClaimHeader> = Vec::new();
    for (i, ch) in rp.claim_to_headers.into_iter().enumerate() {
        let field = format!("providers.{name}.claim_to_headers[{i}]");
        let (claim, path) =
            claim_path(&ch.claim).map_err(|m| ConfigError(format!("{field}.claim: {m}")))?;
        let header = ch.header.to_ascii_lowercase();
        if !is_header_name(&header) || is_reserved_header(&header) {
            return err(
                format!("{field}.header"),
                format!("{:?} cannot be set from a claim", ch.header),
            );
        }
        if let Some(j) = claim_to_headers.iter().position(|c| c.header == header) {
            return err(
                format!("{field}.header"),
                format!("{header:?} is set by claim_to_headers[{j}] already"),
            );
        }
        claim_to_headers.push(ClaimHeader {
            claim,
            path,
            header,
        });
    }
    Ok(Provider {
        name: name.to_string(),
        issuer,
        audiences: rp.audiences,
        keys,
        remote_jwks,
        algorithms,
        sources: my_sources,
        clock_skew: i64::try_from(skew).unwrap_or(60),
        subject_claim,
        scope_claims,
        required_claims: rp.required_claims.into_iter().collect(),
        max_lifetime,
        require_expiration: rp.require_expiration.unwrap_or(true),
        forward_token: rp.forward_token.unwrap_or(true),
        claim_to_headers,
        max_claim_header_bytes,
        typ,
        statics: None,
        signing: match rp.signed_requests {
            Some(raw) => Some(crate::signing::compile(name, raw, env).map_err(ConfigError)?),
            None => None,
        },
    })
}

fn compile_remote(name: &str, issuer: &str, r: RawRemoteJwks) -> Result<RemoteJwks, ConfigError> {
    let at = |field: &str| format!("providers.{name}.remote_jwks.{field}");
    if r.cluster.is_empty() {
        return err(at("cluster"), "must name an Envoy cluster");
    }
    let refresh_seconds = r.refresh_seconds.unwrap_or(300);
    if !(1..=86_400).contains(&refresh_seconds) {
        return err(at("refresh_seconds"), "must be between 1 and 86400");
    }
    let timeout_ms = r.timeout_ms.unwrap_or(1500);
    if !(10..=60_000).contains(&timeout_ms) {
        return err(at("timeout_ms"), "must be between 10 and 60000");
    }
    let max_bytes = r.max_bytes.unwrap_or(65_536);
    if !(256..=1_048_576).contains(&max_bytes) {
        return err(at("max_bytes"), "must be between 256 and 1048576");
    }
    let refetch_interval_seconds = r.refetch_interval_seconds.unwrap_or(10);
    if !(1..=3600).contains(&refetch_interval_seconds) {
        return err(at("refetch_interval_seconds"), "must be between 1 and 3600");
    }
    let max_waiting = r.max_waiting.unwrap_or(1024);
    if !(1..=65_536).contains(&max_waiting) {
        return err(at("max_waiting"), "must be between 1 and 65536");
    }
    let check_authority = |authority: &str| {
        if authority.is_empty()
            || authority
                .chars()
                .any(|c| c.is_control() || c == ' ' || c == '/')
        {
            return err(
                at("authority"),
                format!("{authority:?} is not a host[:port]"),
            );
        }
        Ok(())
    };
    let source = match r.discovery {
        None | Some(crate::discovery::RawDiscoveryOpt::Off) => {
            let path = r.path.unwrap_or_else(|| "/.well-known/jwks.json".into());
            if !path.starts_with('/') || path.chars().any(|c| c.is_control() || c == ' ') {
                return err(at("path"), format!("{path:?} must be an absolute path"));
            }
            let authority = r.authority.unwrap_or_else(|| r.cluster.clone());
            check_authority(&authority)?;
            JwksSource::Fixed { path, authority }
        }
        Some(crate::discovery::RawDiscoveryOpt::On(d)) => {
            if r.path.is_some() {
                return err(
                    at("path"),
                    "not with discovery: the JWKS path is the discovery document's jwks_uri (discovery.path is the document's own path)",
                );
            }
            if let Some(a) = &r.authority {
                check_authority(a)?;
            }
            let d = crate::discovery::compile(
                &format!("providers.{name}.remote_jwks"),
                d,
                issuer,
                &r.cluster,
                r.authority,
                timeout_ms,
            )
            .map_err(ConfigError)?;
            JwksSource::Discovery(d)
        }
    };
    Ok(RemoteJwks {
        cluster: r.cluster,
        source,
        refresh_seconds,
        timeout_ms,
        max_bytes,
        refetch_interval_seconds,
        max_waiting,
    })
}

/// A provider's token locations, as indices into `sources` (shared by every provider, one
/// entry per distinct location). With none of `from_headers`, `from_cookies` and
/// `from_params` given, the default: `authorization: Bearer …`.
fn compile_sources(
    name: &str,
    from_headers: Option<Vec<RawHeaderSource>>,
    from_cookies: Option<Vec<String>>,
    from_params: Option<Vec<String>>,
    sources: &mut Vec<TokenSource>,
) -> Result<Vec<usize>, ConfigError> {
    let at = |field: &str| format!("providers.{name}.{field}");
    let from_headers = match (from_headers, &from_cookies, &from_params) {
        (None, None, None) => Some(vec![RawHeaderSource {
            name: "authorization".into(),
            value_prefix: Some("Bearer ".into()),
        }]),
        (h, _, _) => h,
    };
    for (field, empty) in [
        (
            "from_headers",
            from_headers.as_ref().is_some_and(Vec::is_empty),
        ),
        (
            "from_cookies",
            from_cookies.as_ref().is_some_and(Vec::is_empty),
        ),
        (
            "from_params",
            from_params.as_ref().is_some_and(Vec::is_empty),
        ),
    ] {
        if empty {
            return err(at(field), "must list at least one name (or be omitted)");
        }
    }
    let mut wanted: Vec<(String, TokenSource)> = Vec::new();
    for (i, s) in from_headers.unwrap_or_default().into_iter().enumerate() {
        let header = s.name.to_ascii_lowercase();
        let field = format!("providers.{name}.from_headers[{i}]");
        if !is_header_name(&header) {
            return err(
                format!("{field}.name"),
                format!("{:?} is not a valid header name", s.name),
            );
        }
        if header == "cookie" {
            return err(
                format!("{field}.name"),
                "a token in a cookie is read with from_cookies",
            );
        }
        if header == HEADER_SERVICE || header == HEADER_SCOPES || header.starts_with("x-svcauth-") {
            return err(
                format!("{field}.name"),
                format!("{header:?} is a header svcauth sets (and strips from every request)"),
            );
        }
        if s.value_prefix
            .as_deref()
            .is_some_and(|p| p.is_empty() || p.chars().any(|c| c.is_control()))
        {
            return err(
                format!("{field}.value_prefix"),
                "must be non-empty printable text",
            );
        }
        let src = TokenSource::Header {
            name: header,
            prefix: s.value_prefix,
        };
        let clash = sources
            .iter()
            .chain(wanted.iter().map(|(_, w)| w))
            .any(|x| x != &src && x.header().is_some() && x.header() == src.header());
        if clash {
            return err(
                field,
                format!(
                    "header {:?} is configured with two different prefixes",
                    src.header().unwrap_or_default()
                ),
            );
        }
        wanted.push((format!("from_headers[{i}]"), src));
    }
    for (i, c) in from_cookies.unwrap_or_default().into_iter().enumerate() {
        // RFC 6265 §4.1.1: a cookie name is an RFC 7230 token; its case is kept.
        let ok = !c.is_empty()
            && c.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !ok {
            return err(
                format!("providers.{name}.from_cookies[{i}]"),
                format!("{c:?} is not a cookie name (RFC 6265 token)"),
            );
        }
        wanted.push((format!("from_cookies[{i}]"), TokenSource::Cookie(c)));
    }
    for (i, q) in from_params.unwrap_or_default().into_iter().enumerate() {
        // Unreserved characters only (RFC 3986 §2.3), so that the name reads the same whether
        // a parser decodes it or not.
        let ok = !q.is_empty()
            && q.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
        if !ok {
            return err(
                format!("providers.{name}.from_params[{i}]"),
                format!("{q:?} is not a query parameter name (letters, digits, - . _ ~)"),
            );
        }
        wanted.push((format!("from_params[{i}]"), TokenSource::Param(q)));
    }
    let mut mine = Vec::with_capacity(wanted.len());
    for (field, src) in wanted {
        let idx = match sources.iter().position(|x| *x == src) {
            Some(i) => i,
            None => {
                sources.push(src);
                sources.len() - 1
            }
        };
        if mine.contains(&idx) {
            return err(at(&field), "is listed twice");
        }
        mine.push(idx);
    }
    Ok(mine)
}

/// A `claim_to_headers` claim: a dot path (`"realm_access.roles"`) or a list of member names
/// (`["https://example.com/roles"]`, for names that hold dots). The claim as written, and the
/// member names.
fn claim_path(v: &Value) -> Result<(String, Vec<String>), String> {
    let path: Vec<String> = match v {
        Value::String(s) => s.split('.').map(str::to_string).collect(),
        Value::Array(list) => {
            let mut out = Vec::with_capacity(list.len());
            for item in list {
                match item {
                    Value::String(s) => out.push(s.clone()),
                    _ => return Err("a list of member names must hold only strings".into()),
                }
            }
            out
        }
        _ => return Err(
            "must be a claim name, a dot path (\"realm_access.roles\") or a list of member names"
                .into(),
        ),
    };
    let written = match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if path.is_empty() || path.iter().any(String::is_empty) {
        return Err(format!(
            "{written} has an empty member name (write a name with dots as a list: [\"https://example.com/roles\"])"
        ));
    }
    Ok((written, path))
}

/// Headers a claim may never set: credentials, framing and hop-by-hop headers, routing and
/// tracing headers, and svcauth's own.
const RESERVED_HEADERS: [&str; 20] = [
    "authorization",
    "proxy-authorization",
    "cookie",
    "host",
    "content-length",
    "content-encoding",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "expect",
    "forwarded",
    "x-request-id",
    "traceparent",
    "tracestate",
    HEADER_SERVICE,
    HEADER_SCOPES,
];

fn is_reserved_header(h: &str) -> bool {
    RESERVED_HEADERS.contains(&h)
        || ["x-svcauth-", "x-envoy-", "x-forwarded-"]
            .iter()
            .any(|p| h.starts_with(p))
}

fn compile_rule(i: usize, rr: RawRule, providers: &[Provider]) -> Result<Rule, ConfigError> {
    let at = |field: &str| format!("rules[{i}].{field}");
    let path = match (rr.match_.prefix, rr.match_.path) {
        (Some(p), None) => PathMatch::Prefix(p),
        (None, Some(p)) => PathMatch::Exact(p),
        _ => return err(at("match"), "needs exactly one of prefix or path"),
    };
    let path = {
        let (PathMatch::Prefix(p) | PathMatch::Exact(p)) = &path;
        if !p.starts_with('/') || p.contains(['?', '#']) {
            return err(
                at("match"),
                format!("{p:?} must start with / and hold no query or fragment"),
            );
        }
        // Requests are matched in canonical form, so the rule's path is written in it too.
        let canon = match crate::path::canonical(p) {
            Ok(c) => c.into_owned(),
            Err(r) => {
                return err(
                    at("match"),
                    format!("{p:?} is not a canonical path ({})", r.what()),
                )
            }
        };
        match path {
            PathMatch::Prefix(_) => PathMatch::Prefix(canon),
            PathMatch::Exact(_) => PathMatch::Exact(canon),
        }
    };
    let mut methods = Vec::new();
    for m in rr.match_.methods.unwrap_or_default() {
        if m.is_empty() || !m.bytes().all(|b| b.is_ascii_alphabetic()) {
            return err(at("match.methods"), format!("{m:?} is not an HTTP method"));
        }
        methods.push(m.to_ascii_uppercase());
    }
    let signed = rr.requires.as_ref().is_some_and(|r| r.signed);
    let action = match (rr.allow, rr.requires) {
        (Some(true), None) => Action::Allow,
        (Some(true), Some(_)) => {
            return err(
                at("allow"),
                "a rule with allow: true cannot also have requires",
            )
        }
        (Some(false), _) => {
            return err(
                at("allow"),
                "only allow: true is meaningful; to require a token use requires",
            )
        }
        (None, None) => return err(format!("rules[{i}]"), "needs allow: true or requires"),
        (None, Some(req)) => {
            let providers = match req.providers {
                None => None,
                Some(names) => {
                    if names.is_empty() {
                        return err(
                            at("requires.providers"),
                            "must name at least one provider (omit it to accept any)",
                        );
                    }
                    let mut idx = Vec::new();
                    for n in names {
                        match providers.iter().position(|p| p.name == n) {
                            Some(x) => idx.push(x),
                            None => {
                                return err(
                                    at("requires.providers"),
                                    format!("unknown provider {n:?}"),
                                )
                            }
                        }
                    }
                    Some(idx)
                }
            };
            for (field, list) in [
                ("requires.scopes_all", &req.scopes_all),
                ("requires.scopes_any", &req.scopes_any),
            ] {
                if let Some(bad) = list.iter().find(|s| !is_scope_token(s)) {
                    return err(
                        at(field),
                        format!("{bad:?} is not a valid scope (RFC 6749 scope-token)"),
                    );
                }
            }
            let challenge = req
                .scopes_all
                .iter()
                .chain(req.scopes_any.iter())
                .cloned()
                .collect::<Vec<_>>()
                .join(" ");
            if req.claims.keys().any(|c| c.is_empty()) {
                return err(at("requires.claims"), "claim names must not be empty");
            }
            Action::Require {
                providers,
                scopes_all: req.scopes_all,
                scopes_any: req.scopes_any,
                claims: req.claims.into_iter().collect(),
                challenge,
            }
        }
    };
    if rr.audit && action == Action::Allow {
        return err(
            at("audit"),
            "audits callers, so it needs requires (an allow rule has no caller)",
        );
    }
    if let (
        true,
        Action::Require {
            providers: only, ..
        },
    ) = (signed, &action)
    {
        // Every provider the rule accepts must know its callers' signing secrets.
        let unsigned = providers
            .iter()
            .enumerate()
            .find(|(x, p)| only.as_ref().is_none_or(|o| o.contains(x)) && p.signing.is_none());
        if let Some((_, p)) = unsigned {
            return err(
                at("requires.signed"),
                format!("provider {:?} has no signed_requests (or name the providers that do in requires.providers)", p.name),
            );
        }
    }
    Ok(Rule {
        path,
        ignore_case: rr.match_.ignore_case,
        methods,
        action,
        audit: rr.audit,
        signed,
    })
}

/// RFC 6749 scope-token: %x21 / %x23-5B / %x5D-7E.
fn is_scope_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;
    use serde_json::json;

    fn compile_json(v: &Value) -> Result<Config, ConfigError> {
        Config::from_json(v.to_string().as_bytes(), &fixtures::env)
    }

    #[test]
    fn the_fixture_config_compiles_with_its_defaults() {
        let c = compile_json(&fixtures::config_json()).unwrap();
        assert_eq!(c.providers.len(), 1);
        let p = &c.providers[0];
        assert_eq!(p.keys.len(), 6, "five JWKS keys and one HMAC secret");
        assert_eq!(p.clock_skew, 60);
        assert_eq!(p.subject_claim, "sub");
        assert_eq!(p.scope_claims, vec!["scope", "scp", "scopes"]);
        assert!(p.forward_token);
        assert_eq!(c.max_token_bytes, 8192);
        // Off by default (issue 12), as in jwt_authn.
        assert!(!c.bypass_cors_preflight);
        assert_eq!(c.cache_max_entries, 1024);
        assert_eq!(c.sources.len(), 2);
        assert!(c.strip_headers.contains(&"x-tenant-id".to_string()));
        assert!(c.strip_headers.contains(&"x-service-name".to_string()));
    }

    #[test]
    fn the_contract_example_compiles_with_a_jwks_string() {
        let v = json!({
            "providers": {"internal": {
                "issuer": "https://auth.internal", "audiences": ["orders"],
                "jwks": fixtures::jwks_json(),
                "from_headers": [{"name": "authorization", "value_prefix": "Bearer "}, {"name": "x-service-token"}],
                "clock_skew_seconds": 60
            }},
            "rules": [
                {"match": {"prefix": "/health"}, "allow": true},
                {"match": {"path": "/admin/rotate", "methods": ["POST"]}, "requires": {"scopes_all": ["internal:admin"]}},
                {"match": {"prefix": "/"}, "requires": {"scopes_any": ["orders:read", "orders:write"]}}
            ]
        });
        let c = compile_json(&v).unwrap();
        assert_eq!(c.rules.len(), 3);
        assert_eq!(c.rules[0].action, Action::Allow);
    }

    /// Each bad config and the start of the message that must name the problem.
    #[test]
    fn bad_configs_are_refused_with_a_message_naming_the_field() {
        let base = fixtures::config_json();
        let with = |path: &[&str], value: Value| {
            let mut v = base.clone();
            let mut cur = &mut v;
            for (i, k) in path.iter().enumerate() {
                if i + 1 == path.len() {
                    cur[*k] = value.clone();
                } else {
                    cur = &mut cur[*k];
                }
            }
            v
        };
        let cases: Vec<(Value, &str)> = vec![
            (with(&["bogus"], json!(1)), "bogus: unknown field `bogus`"),
            (
                with(&["providers", "internal", "isuer"], json!("x")),
                "providers.internal.isuer: unknown field `isuer`",
            ),
            (
                with(&["providers", "internal", "jwks"], json!("{\"keys\": 5}")),
                "providers.internal.jwks: not a JWK Set",
            ),
            (
                with(
                    &["providers", "internal", "jwks"],
                    json!({"keys": [{"kty": "oct", "k": "AA"}]}),
                ),
                "providers.internal.jwks: unusable key",
            ),
            (
                with(
                    &["providers", "internal", "hmac_secret_env"],
                    json!("NOPE_NOT_SET"),
                ),
                "providers.internal.hmac_secret_env: environment variable NOPE_NOT_SET is not set",
            ),
            (
                with(&["providers", "internal", "algorithms"], json!(["none"])),
                "providers.internal.algorithms: unsupported algorithm \"none\"",
            ),
            (
                with(
                    &["providers", "internal", "from_headers"],
                    json!([{"name": "bad header"}]),
                ),
                "providers.internal.from_headers[0].name",
            ),
            (
                with(
                    &["providers", "internal", "claim_to_headers"],
                    json!([{"claim": "a", "header": "authorization"}]),
                ),
                "providers.internal.claim_to_headers[0].header",
            ),
            (with(&["rules"], json!([])), "rules: at least one rule"),
            (
                with(
                    &["rules"],
                    json!([{"match": {"prefix": "/"}, "requires": {"providers": ["ghost"]}}]),
                ),
                "rules[0].requires.providers: unknown provider \"ghost\"",
            ),
            (
                with(
                    &["rules"],
                    json!([{"match": {"prefix": "/", "path": "/x"}, "allow": true}]),
                ),
                "rules[0].match: needs exactly one",
            ),
            (
                with(
                    &["rules"],
                    json!([{"match": {"prefix": "x"}, "allow": true}]),
                ),
                "rules[0].match:",
            ),
            (
                with(&["rules"], json!([{"match": {"prefix": "/"}}])),
                "rules[0]: needs allow: true or requires",
            ),
            (
                with(
                    &["rules"],
                    json!([{"match": {"prefix": "/"}, "requires": {"scopes_all": ["a\"b"]}}]),
                ),
                "rules[0].requires.scopes_all",
            ),
            (
                with(
                    &["rules"],
                    json!([{"match": {"prefix": "/"}, "requires": {"scope_all": ["a"]}}]),
                ),
                "rules[0].requires.scope_all: unknown field `scope_all`",
            ),
            (with(&["max_token_bytes"], json!(10)), "max_token_bytes:"),
        ];
        for (cfg, want) in cases {
            let e = compile_json(&cfg)
                .err()
                .unwrap_or_else(|| panic!("accepted: {want}"));
            assert!(e.0.starts_with(want), "got {:?}, want prefix {want:?}", e.0);
        }
    }

    #[test]
    fn a_provider_without_any_key_source_is_refused() {
        let v = json!({"providers": {"p": {"issuer": "i"}}, "rules": [{"match": {"prefix": "/"}, "allow": true}]});
        assert_eq!(
            compile_json(&v).unwrap_err().0,
            "providers.p: no key source: set jwks, remote_jwks or hmac_secret_env"
        );
    }

    #[test]
    fn a_short_hmac_secret_is_refused() {
        let v = json!({"providers": {"p": {"issuer": "i", "hmac_secret_env": "S"}}, "rules": [{"match": {"prefix": "/"}, "allow": true}]});
        let e = Config::from_json(v.to_string().as_bytes(), &|_| Some("short".into())).unwrap_err();
        assert!(e.0.contains("shorter than 32 bytes"), "{e}");
        assert!(
            !e.0.contains("short\""),
            "the secret itself is never echoed"
        );
    }

    #[test]
    fn not_json_at_all_is_refused() {
        assert!(Config::from_json(b"not json", &fixtures::env)
            .unwrap_err()
            .0
            .starts_with("config:"));
        assert!(Config::from_json(b"", &fixtures::env).is_err());
    }
}
