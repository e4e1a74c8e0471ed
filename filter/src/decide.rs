//! The decision for one request: `decide(config, cache, headers, now) -> Decision`.
//!
//! Host-free: the adapter hands in the request headers (with `:method` and `:path`) and the
//! host clock, and applies the result.

use std::rc::Rc;

use sha2::Digest as _;

use crate::cache::TokenCache;
use crate::config::{Action, Config, PathMatch, Rule};
use crate::contract::reason::Reason;
use crate::sources::extract;
pub use crate::sources::{Edit, Strip};
use crate::token::keys::KeyStore;
use crate::verify::{self, Verified};

/// The outcome for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow(Allowed),
    Deny(Denial),
}

/// An allowed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allowed {
    /// The matched rule; `None` for a bypassed CORS preflight.
    pub rule: Option<usize>,
    /// The caller, when the rule required a token.
    pub identity: Option<Rc<Verified>>,
    /// Where the credential was, to remove before forwarding (a provider's
    /// `forward_token: false`, a static secret header).
    pub strip: Option<Strip>,
    /// `Some(true)` cache hit, `Some(false)` miss, `None` no token checked.
    pub cache_hit: Option<bool>,
}

/// A denied request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    pub reason: Reason,
    pub rule: Option<usize>,
    pub provider: Option<usize>,
    /// The caller, only once its token's signature (or its static secret) verified.
    pub subject: Option<String>,
    /// The subject a token claims whose signature was not (yet) verified: for the log line
    /// only, never as the caller.
    pub unverified_subject: Option<String>,
    /// First 12 hex digits of the token's SHA-256: enough to correlate, useless to replay.
    pub token_hash: Option<String>,
    /// `Some(true)` cache hit, `Some(false)` miss, `None` no token checked.
    pub cache_hit: Option<bool>,
}

impl Denial {
    fn bare(reason: Reason, rule: Option<usize>) -> Denial {
        Denial {
            reason,
            rule,
            provider: None,
            subject: None,
            unverified_subject: None,
            token_hash: None,
            cache_hit: None,
        }
    }

    /// A denial with only a reason (no rule, provider or caller known).
    pub fn of(reason: Reason) -> Denial {
        Denial::bare(reason, None)
    }
}

/// The first value of header `name` (lower-case) in `headers`.
pub fn header<'h, K: AsRef<str>, V: AsRef<str>>(
    headers: &'h [(K, V)],
    name: &str,
) -> Option<&'h str> {
    headers
        .iter()
        .find(|(k, _)| k.as_ref() == name)
        .map(|(_, v)| v.as_ref())
}

/// Whether `rule` covers a request with this method: the method is listed (ASCII case
/// ignored, as some frameworks upper-case it), `HEAD` under a `GET` (frameworks serve `HEAD`
/// with the `GET` handler), or the rule lists none.
fn method_matches(rule: &Rule, method: &str) -> bool {
    rule.methods.is_empty()
        || rule.methods.iter().any(|m| {
            m.eq_ignore_ascii_case(method) || (m == "GET" && method.eq_ignore_ascii_case("HEAD"))
        })
}

fn path_matches(rule: &Rule, path: &str, fold: bool) -> bool {
    match &rule.path {
        PathMatch::Exact(p) => crate::path::exact_matches(path, p, fold),
        PathMatch::Prefix(p) => crate::path::prefix_matches(path, p, fold),
    }
}

/// Whether `granted` covers `required`: equal, or a granted `ns:*` covers `ns:anything`.
pub fn covers(granted: &[String], required: &str) -> bool {
    granted.iter().any(|g| {
        g == required
            || g.strip_suffix('*')
                .is_some_and(|ns| ns.ends_with(':') && required.starts_with(ns))
    })
}

/// The index of the first rule that matches the request (`path` is the raw `:path`), `None`
/// if none does, or why the path is refused. A path that a case-sensitive rule matches only
/// when ASCII case is ignored is refused too: some backends (Express by default) route
/// case-insensitively, so it could reach that rule's resource through a laxer rule.
pub fn match_rule(
    config: &Config,
    method: &str,
    path: &str,
) -> Result<Option<usize>, crate::path::Refusal> {
    let canon = crate::path::canonical(path)?;
    for (i, rule) in config.rules.iter().enumerate() {
        if !method_matches(rule, method) {
            continue;
        }
        if path_matches(rule, &canon, rule.ignore_case) {
            return Ok(Some(i));
        }
        if !rule.ignore_case && path_matches(rule, &canon, true) {
            return Err(crate::path::CASE_VARIANT);
        }
    }
    Ok(None)
}

/// A CORS preflight: `OPTIONS` with `Origin` and `Access-Control-Request-Method`.
fn is_preflight<K: AsRef<str>, V: AsRef<str>>(method: &str, headers: &[(K, V)]) -> bool {
    let present = |name: &str| header(headers, name).is_some_and(|v| !v.trim().is_empty());
    method == "OPTIONS" && present("origin") && present("access-control-request-method")
}

fn token_hash(token: &str) -> String {
    let digest = sha2::Sha256::digest(token.as_bytes());
    let mut s = String::with_capacity(12);
    for b in digest.iter().take(6) {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// Decides one request. `headers` are the request headers as Envoy gives them (lower-case
/// names, with `:method` and `:path`); `now` is the host clock in seconds.
pub fn decide<K: AsRef<str>, V: AsRef<str>>(
    config: &Config,
    cache: &mut TokenCache,
    headers: &[(K, V)],
    now: i64,
) -> Decision {
    decide_with_keys(
        config,
        &KeyStore::default(),
        &crate::token::jws::RustCrypto,
        cache,
        headers,
        now,
    )
}

/// [`decide`] with the fetched keys of providers that use `remote_jwks`.
pub fn decide_with_keys<K: AsRef<str>, V: AsRef<str>>(
    config: &Config,
    keys: &KeyStore,
    crypto: &dyn crate::token::jws::Verifier,
    cache: &mut TokenCache,
    headers: &[(K, V)],
    now: i64,
) -> Decision {
    decide_lazy(config, keys, crypto, cache, headers, &mut || Some(now))
}

/// [`decide_with_keys`] with a clock that is read only when a token must be checked (the host
/// clock is a host call: open routes, refused paths and requests without a token never need
/// it). A clock that gives nothing denies with `clock_unavailable`.
pub fn decide_lazy<K: AsRef<str>, V: AsRef<str>>(
    config: &Config,
    keys: &KeyStore,
    crypto: &dyn crate::token::jws::Verifier,
    cache: &mut TokenCache,
    headers: &[(K, V)],
    clock: &mut dyn FnMut() -> Option<i64>,
) -> Decision {
    let method = header(headers, ":method").unwrap_or_default();
    let path = header(headers, ":path").unwrap_or_default();
    // The path check comes first, for every request: open routes and preflights included.
    let matched = match match_rule(config, method, path) {
        Ok(m) => m,
        Err(_) => return Decision::Deny(Denial::bare(Reason::AmbiguousPath, None)),
    };
    if config.bypass_cors_preflight && is_preflight(method, headers) {
        return Decision::Allow(Allowed {
            rule: None,
            identity: None,
            strip: None,
            cache_hit: None,
        });
    }
    let Some(ri) = matched else {
        return Decision::Deny(Denial::bare(Reason::NoMatchingRule, None));
    };
    let Some(rule) = config.rules.get(ri) else {
        return Decision::Deny(Denial::bare(Reason::NoMatchingRule, None));
    };
    let (providers, scopes_all, scopes_any, required_claims) = match &rule.action {
        Action::Allow => {
            return Decision::Allow(Allowed {
                rule: Some(ri),
                identity: None,
                strip: None,
                cache_hit: None,
            })
        }
        Action::Require {
            providers,
            scopes_all,
            scopes_any,
            claims,
            ..
        } => (providers, scopes_all, scopes_any, claims),
    };
    let found = match extract(config, headers) {
        Ok(f) => f,
        Err(reason) => return Decision::Deny(Denial::bare(reason, Some(ri))),
    };
    let credentials = static_credentials(config, headers);
    let deny_with = |reason: Reason,
                     provider: Option<usize>,
                     subject: Option<String>,
                     hit: Option<bool>,
                     token_hash: Option<String>| {
        Decision::Deny(Denial {
            reason,
            rule: Some(ri),
            provider,
            subject,
            unverified_subject: None,
            token_hash,
            cache_hit: hit,
        })
    };
    // The token's hash is for denial lines only: computed when a denial is built.
    let hash_of = |t: Option<&str>| t.map(token_hash);
    let mut token: Option<&str> = None;
    let (verified, hit, strip) = match (found.as_ref(), credentials) {
        (Some(_), Some(_)) => {
            return Decision::Deny(Denial::bare(Reason::MultipleTokens, Some(ri)))
        }
        (None, None) => return Decision::Deny(Denial::bare(Reason::TokenMissing, Some(ri))),
        (None, Some((pi, id, secret))) => {
            let Some(provider) = config.providers.get(pi) else {
                return Decision::Deny(Denial::bare(Reason::InvalidCredentials, Some(ri)));
            };
            // Static credentials only where a rule names their provider.
            if !providers.as_ref().is_some_and(|list| list.contains(&pi)) {
                return deny_with(Reason::ProviderNotAllowed, Some(pi), None, None, None);
            }
            let checked = provider
                .statics
                .as_ref()
                .zip(id.zip(secret))
                .and_then(|(st, (id, secret))| st.check(id, secret));
            let Some((id, scopes)) = checked else {
                return Decision::Deny(Denial {
                    provider: Some(pi),
                    unverified_subject: id.map(str::to_string),
                    ..Denial::bare(Reason::InvalidCredentials, Some(ri))
                });
            };
            let identity = Verified {
                provider: pi,
                subject: id.to_string(),
                scopes: scopes.to_vec(),
                scopes_joined: scopes.join(" "),
                claim_headers: Vec::new(),
                log_claims: Vec::new(),
                rule_claims: Vec::new(),
                exp: i64::MAX,
            };
            let secret_header = provider
                .statics
                .as_ref()
                .map(|s| Strip::Header(s.secret_header.clone()));
            (Rc::new(identity), None, secret_header)
        }
        (Some(found), None) => {
            let t: &str = &found.token;
            token = Some(t);
            if t.len() > config.max_token_bytes {
                return deny_with(Reason::TokenTooLarge, None, None, None, hash_of(token));
            }
            let Some(now) = clock() else {
                return Decision::Deny(Denial::bare(Reason::ClockUnavailable, Some(ri)));
            };
            let (verified, hit) = match cache.get(t, now) {
                Some(v) => (v, true),
                None => match verify::verify_with_keys(config, keys, crypto, t, now, &mut ()) {
                    Ok(v) => {
                        let v = Rc::new(v);
                        let skew = config.providers.get(v.provider).map_or(0, |p| p.clock_skew);
                        cache.insert(t, v.exp.saturating_add(skew), Rc::clone(&v), now);
                        (v, false)
                    }
                    Err(f) => {
                        return Decision::Deny(Denial {
                            provider: f.provider,
                            subject: f.subject,
                            unverified_subject: f.unverified_subject,
                            token_hash: hash_of(token),
                            cache_hit: Some(false),
                            ..Denial::bare(f.reason, Some(ri))
                        })
                    }
                },
            };
            let Some(provider) = config.providers.get(verified.provider) else {
                return deny_with(
                    Reason::IssuerMismatch,
                    None,
                    None,
                    Some(hit),
                    hash_of(token),
                );
            };
            if !provider.sources.contains(&found.source) {
                let who = Some(verified.subject.clone());
                return deny_with(
                    Reason::WrongTokenLocation,
                    Some(verified.provider),
                    who,
                    Some(hit),
                    hash_of(token),
                );
            }
            let remove = if provider.forward_token {
                None
            } else {
                config.sources.get(found.source).map(Strip::of)
            };
            (verified, Some(hit), remove)
        }
    };
    let deny = |reason: Reason| {
        deny_with(
            reason,
            Some(verified.provider),
            Some(verified.subject.clone()),
            hit,
            hash_of(token),
        )
    };
    if providers
        .as_ref()
        .is_some_and(|list| !list.contains(&verified.provider))
    {
        return deny(Reason::ProviderNotAllowed);
    }
    let claims_ok = required_claims.iter().all(|(name, want)| {
        verified
            .rule_claims
            .iter()
            .any(|(n, v)| n == name && v == want)
    });
    if !claims_ok {
        return deny(Reason::ClaimNotAllowed);
    }
    let all_ok = scopes_all.iter().all(|s| covers(&verified.scopes, s));
    let any_ok = scopes_any.is_empty() || scopes_any.iter().any(|s| covers(&verified.scopes, s));
    if !(all_ok && any_ok) {
        return deny(Reason::InsufficientScope);
    }
    Decision::Allow(Allowed {
        rule: Some(ri),
        identity: Some(verified),
        strip,
        cache_hit: hit,
    })
}

/// Static credentials in the request: the first static-credentials provider whose id or
/// secret header is present, with the id and secret (either may be missing).
fn static_credentials<'h, K: AsRef<str>, V: AsRef<str>>(
    config: &Config,
    headers: &'h [(K, V)],
) -> Option<(usize, Option<&'h str>, Option<&'h str>)> {
    config.providers.iter().enumerate().find_map(|(pi, p)| {
        let st = p.statics.as_ref()?;
        let id = header(headers, &st.id_header);
        let secret = header(headers, &st.secret_header);
        (id.is_some() || secret.is_some()).then_some((pi, id, secret))
    })
}

/// The `scope="…"` challenge for a denial (empty unless the rule requires scopes).
pub fn challenge(config: &Config, rule: Option<usize>) -> &str {
    match rule.and_then(|r| config.rules.get(r)).map(|r| &r.action) {
        Some(Action::Require { challenge, .. }) => challenge,
        _ => "",
    }
}
