//! One issuer's verification settings: `Provider`, and `compile_provider`, which builds one
//! from `providers.<name>` in named steps (a static-credentials provider; the issuer, `typ` and
//! audiences; the keys and algorithms; the token locations; the claim checks; the claim
//! headers; signed requests).
//! May use: `config::raw`, `config::error`, `config::keys`, `config::sources`,
//! `config::claims`, `config::remote`, `statics`, `signing`, `token`.

use serde_json::Value;

use crate::token::jwk::Key;
use crate::token::jws::Alg;

use super::claims::{compile_claim_headers, ClaimHeader, DEFAULT_MAX_CLAIM_HEADER_BYTES};
use super::error::{err, ConfigError};
use super::keys::{algorithms, hmac_keys, inline_keys};
use super::raw::RawProvider;
use super::remote::{compile_remote, RemoteJwks};
use super::sources::{compile_sources, TokenSource};

/// `clock_skew_seconds` when not set.
const DEFAULT_CLOCK_SKEW: u64 = 60;

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
    /// Indices into [`crate::config::Config::sources`].
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

/// `providers.<name>`. Token locations are added to `sources` (shared by every provider).
pub(super) fn compile_provider(
    name: &str,
    mut rp: RawProvider,
    env: &dyn Fn(&str) -> Option<String>,
    sources: &mut Vec<TokenSource>,
) -> Result<Provider, ConfigError> {
    let at = |field: &str| format!("providers.{name}.{field}");
    if let Some(st) = rp.static_credentials.take() {
        return compile_static(name, st, &rp, env);
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
    let mut keys = inline_keys(name, rp.jwks)?;
    keys.extend(hmac_keys(name, rp.hmac_secret_env, env)?);
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
    let algorithms = algorithms(name, rp.algorithms, &keys, remote_jwks.is_some())?;
    let my_sources = compile_sources(
        name,
        rp.from_headers,
        rp.from_cookies,
        rp.from_params,
        sources,
    )?;
    let checks = claim_checks(
        name,
        rp.clock_skew_seconds,
        rp.subject_claim,
        rp.scope_claims,
        rp.max_lifetime_seconds,
    )?;
    let (max_claim_header_bytes, claim_to_headers) =
        compile_claim_headers(name, rp.max_claim_header_bytes, rp.claim_to_headers)?;
    let signing = match rp.signed_requests {
        Some(raw) => Some(crate::signing::compile(name, raw, env).map_err(ConfigError)?),
        None => None,
    };
    Ok(Provider {
        name: name.to_string(),
        issuer,
        audiences: rp.audiences,
        keys,
        remote_jwks,
        algorithms,
        sources: my_sources,
        clock_skew: checks.clock_skew,
        subject_claim: checks.subject_claim,
        scope_claims: checks.scope_claims,
        required_claims: rp.required_claims.into_iter().collect(),
        max_lifetime: checks.max_lifetime,
        require_expiration: rp.require_expiration.unwrap_or(true),
        forward_token: rp.forward_token.unwrap_or(true),
        claim_to_headers,
        max_claim_header_bytes,
        typ,
        statics: None,
        signing,
    })
}

/// A `static_credentials` provider: no issuer, no keys, no token settings at all.
fn compile_static(
    name: &str,
    st: crate::statics::RawStatic,
    rp: &RawProvider,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Provider, ConfigError> {
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
    Ok(Provider {
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
    })
}

/// How a provider reads a verified token's claims, defaults applied.
struct ClaimChecks {
    clock_skew: i64,
    subject_claim: String,
    scope_claims: Vec<String>,
    max_lifetime: Option<i64>,
}

/// `clock_skew_seconds` (default 60, at most 3600), `subject_claim` (default `sub`),
/// `scope_claims` (default `scope`, `scp`, `scopes`) and `max_lifetime_seconds`.
fn claim_checks(
    name: &str,
    clock_skew_seconds: Option<u64>,
    subject_claim: Option<String>,
    scope_claims: Option<Vec<String>>,
    max_lifetime_seconds: Option<u64>,
) -> Result<ClaimChecks, ConfigError> {
    let at = |field: &str| format!("providers.{name}.{field}");
    let skew = clock_skew_seconds.unwrap_or(DEFAULT_CLOCK_SKEW);
    if skew > 3600 {
        return err(at("clock_skew_seconds"), "must be at most 3600");
    }
    let subject_claim = subject_claim.unwrap_or_else(|| "sub".into());
    if subject_claim.is_empty() {
        return err(at("subject_claim"), "must not be empty");
    }
    let scope_claims =
        scope_claims.unwrap_or_else(|| vec!["scope".into(), "scp".into(), "scopes".into()]);
    if scope_claims.is_empty() {
        return err(at("scope_claims"), "must list at least one claim");
    }
    let max_lifetime = match max_lifetime_seconds {
        Some(0) => return err(at("max_lifetime_seconds"), "must be positive"),
        Some(s) => Some(i64::try_from(s).unwrap_or(i64::MAX)),
        None => None,
    };
    Ok(ClaimChecks {
        clock_skew: i64::try_from(skew).unwrap_or(60),
        subject_claim,
        scope_claims,
        max_lifetime,
    })
}
