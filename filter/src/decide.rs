//! The decision for one request: `decide(config, cache, headers, now) -> Decision`.
//!
//! Host-free: the adapter hands in the request headers (with `:method` and `:path`) and the
//! host clock, and applies the result. Every check it runs (and those `verify` runs) is
//! reported to an [`Explain`] observer, the failed one named on the [`Denial`]. Uses cache,
//! check, config, contract, decision, rules, sources, token and verify.

use std::rc::Rc;

use sha2::Digest as _;

use crate::cache::TokenCache;
pub use crate::check::{Check, Explain};
use crate::config::{Action, Config};
use crate::contract::reason::Reason;
pub use crate::decision::{header, Allowed, Decision, Denial};
pub use crate::rules::{challenge, covers, match_rule};
use crate::sources::extract;
pub use crate::sources::{Edit, Strip};
use crate::token::keys::KeyStore;
use crate::verify::{self, Verified};

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
    decide_observed(config, keys, crypto, cache, headers, clock, &mut ())
}

/// [`decide`] without a cache, reporting to `ex` every check the request passed, in order,
/// then the one it failed (the denial's [`Denial::check`]): one call gives the decision and
/// its explanation (`svcauth verify --explain`).
pub fn decide_explained<K: AsRef<str>, V: AsRef<str>, E: Explain>(
    config: &Config,
    headers: &[(K, V)],
    now: i64,
    ex: &mut E,
) -> Decision {
    decide_observed(
        config,
        &KeyStore::default(),
        &crate::token::jws::RustCrypto,
        &mut TokenCache::new(0),
        headers,
        &mut || Some(now),
        ex,
    )
}

/// Reports the failed check of `d` to `ex` and denies.
fn refuse<E: Explain>(ex: &mut E, d: Denial, detail: impl FnOnce() -> String) -> Decision {
    ex.fail(d.check, detail);
    Decision::Deny(d)
}

/// [`decide_lazy`] reporting each check to `ex` (`()` on the data path: compiles to nothing).
pub fn decide_observed<K: AsRef<str>, V: AsRef<str>, E: Explain>(
    config: &Config,
    keys: &KeyStore,
    crypto: &dyn crate::token::jws::Verifier,
    cache: &mut TokenCache,
    headers: &[(K, V)],
    clock: &mut dyn FnMut() -> Option<i64>,
    ex: &mut E,
) -> Decision {
    let method = header(headers, ":method").unwrap_or_default();
    let path = header(headers, ":path").unwrap_or_default();
    // The path check comes first, for every request: open routes and preflights included.
    let matched = match match_rule(config, method, path) {
        Ok(m) => m,
        Err(refusal) => {
            let d = Denial::bare(Reason::AmbiguousPath, Check::Path, None);
            return refuse(ex, d, || {
                format!("ambiguous_path: {} in {path}", refusal.what())
            });
        }
    };
    ex.pass(Check::Path, || "one reading".into());
    if config.bypass_cors_preflight && is_preflight(method, headers) {
        ex.pass(Check::Rule, || {
            "CORS preflight: bypassed (bypass_cors_preflight)".into()
        });
        return Decision::Allow(Allowed {
            rule: None,
            identity: None,
            strip: None,
            cache_hit: None,
        });
    }
    let Some((ri, rule)) = matched.and_then(|ri| Some((ri, config.rules.get(ri)?))) else {
        let d = Denial::bare(Reason::NoMatchingRule, Check::Rule, None);
        return refuse(ex, d, || {
            format!("no_matching_rule: no rule matches {method} {path}")
        });
    };
    ex.pass(Check::Rule, || format!("#{ri} matches {method} {path}"));
    let (providers, scopes_all, scopes_any, required_claims) = match &rule.action {
        Action::Allow => {
            ex.pass(Check::Token, || "not needed: the rule is open".into());
            return Decision::Allow(Allowed {
                rule: Some(ri),
                identity: None,
                strip: None,
                cache_hit: None,
            });
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
        Err(reason) => {
            let d = Denial::bare(reason, Check::Token, Some(ri));
            return refuse(ex, d, || {
                format!(
                    "{}: more than one configured place (header, cookie, query parameter) \
                     holds a token",
                    reason.code()
                )
            });
        }
    };
    let credentials = static_credentials(config, headers);
    // The token's hash is for denial lines only: computed when a denial is built.
    let hash_of = |t: Option<&str>| t.map(token_hash);
    let mut token: Option<&str> = None;
    let (verified, hit, strip) = match (found.as_ref(), credentials) {
        (Some(_), Some(_)) => {
            let d = Denial::bare(Reason::MultipleTokens, Check::Token, Some(ri));
            return refuse(ex, d, || {
                "multiple_tokens: a token and static credentials".into()
            });
        }
        (None, None) => {
            let d = Denial::bare(Reason::TokenMissing, Check::Token, Some(ri));
            return refuse(ex, d, || {
                let all: Vec<String> = config.sources.iter().map(|s| s.describe()).collect();
                format!(
                    "token_missing: no token in any configured place: {}",
                    all.join(", ")
                )
            });
        }
        (None, Some((pi, id, secret))) => {
            let Some(provider) = config.providers.get(pi) else {
                let d = Denial::bare(Reason::InvalidCredentials, Check::Credentials, Some(ri));
                return refuse(ex, d, || "invalid_credentials: no such provider".into());
            };
            ex.pass(Check::Token, || {
                format!("static credentials of provider {:?}", provider.name)
            });
            // Static credentials only where a rule names their provider.
            if !providers.as_ref().is_some_and(|list| list.contains(&pi)) {
                let d = Denial {
                    provider: Some(pi),
                    ..Denial::bare(Reason::ProviderNotAllowed, Check::RuleProvider, Some(ri))
                };
                return refuse(ex, d, || {
                    format!(
                        "provider_not_allowed: the rule does not name static-credentials \
                         provider {:?}",
                        provider.name
                    )
                });
            }
            ex.pass(Check::RuleProvider, || {
                format!("the rule names {:?}", provider.name)
            });
            let checked = provider
                .statics
                .as_ref()
                .zip(id.zip(secret))
                .and_then(|(st, (id, secret))| st.check(id, secret));
            let Some((id, scopes)) = checked else {
                let d = Denial {
                    provider: Some(pi),
                    unverified_subject: id.map(str::to_string),
                    ..Denial::bare(Reason::InvalidCredentials, Check::Credentials, Some(ri))
                };
                return refuse(ex, d, || {
                    "invalid_credentials: the id or the secret is missing or wrong".into()
                });
            };
            ex.pass(Check::Credentials, || format!("id {id:?}"));
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
            let place = || {
                config
                    .sources
                    .get(found.source)
                    .map_or("?".into(), |s| s.describe())
            };
            if t.len() > config.max_token_bytes {
                let d = Denial {
                    token_hash: hash_of(token),
                    ..Denial::bare(Reason::TokenTooLarge, Check::Token, Some(ri))
                };
                return refuse(ex, d, || {
                    format!(
                        "token_too_large: {} bytes > max_token_bytes {}",
                        t.len(),
                        config.max_token_bytes
                    )
                });
            }
            ex.pass(Check::Token, || {
                format!("found in {} ({} bytes)", place(), t.len())
            });
            let Some(now) = clock() else {
                let d = Denial::bare(Reason::ClockUnavailable, Check::Clock, Some(ri));
                return refuse(ex, d, || "clock_unavailable: the host clock failed".into());
            };
            ex.pass(Check::Clock, || format!("now {now}"));
            let (verified, hit) = match cache.get(t, now) {
                Some(v) => {
                    ex.pass(Check::Signature, || "verified earlier (cached)".into());
                    (v, true)
                }
                None => match verify::verify_with_keys(config, keys, crypto, t, now, ex) {
                    Ok(v) => {
                        let v = Rc::new(v);
                        let skew = config.providers.get(v.provider).map_or(0, |p| p.clock_skew);
                        cache.insert(t, v.exp.saturating_add(skew), Rc::clone(&v), now);
                        (v, false)
                    }
                    // `verify` reported the failed check.
                    Err(f) => {
                        return Decision::Deny(Denial {
                            provider: f.provider,
                            subject: f.subject,
                            unverified_subject: f.unverified_subject,
                            token_hash: hash_of(token),
                            cache_hit: Some(false),
                            ..Denial::bare(f.reason, f.check, Some(ri))
                        })
                    }
                },
            };
            let Some(provider) = config.providers.get(verified.provider) else {
                let d = Denial {
                    token_hash: hash_of(token),
                    cache_hit: Some(hit),
                    ..Denial::bare(Reason::IssuerMismatch, Check::Issuer, Some(ri))
                };
                return refuse(ex, d, || "issuer_mismatch: no such provider".into());
            };
            if !provider.sources.contains(&found.source) {
                let d = Denial {
                    provider: Some(verified.provider),
                    subject: Some(verified.subject.clone()),
                    token_hash: hash_of(token),
                    cache_hit: Some(hit),
                    ..Denial::bare(Reason::WrongTokenLocation, Check::TokenLocation, Some(ri))
                };
                return refuse(ex, d, || {
                    format!(
                        "wrong_token_location: provider {:?} does not read {}",
                        provider.name,
                        place()
                    )
                });
            }
            ex.pass(Check::TokenLocation, || {
                format!("provider {:?} reads {}", provider.name, place())
            });
            let remove = if provider.forward_token {
                None
            } else {
                config.sources.get(found.source).map(Strip::of)
            };
            (verified, Some(hit), remove)
        }
    };
    let pname = || {
        config
            .providers
            .get(verified.provider)
            .map_or("?", |p| p.name.as_str())
    };
    let denial = |reason: Reason, check: Check| Denial {
        provider: Some(verified.provider),
        subject: Some(verified.subject.clone()),
        token_hash: hash_of(token),
        cache_hit: hit,
        ..Denial::bare(reason, check, Some(ri))
    };
    if let Some(list) = providers {
        if !list.contains(&verified.provider) {
            let d = denial(Reason::ProviderNotAllowed, Check::RuleProvider);
            return refuse(ex, d, || {
                format!(
                    "provider_not_allowed: the rule does not accept {:?}",
                    pname()
                )
            });
        }
        if credentials.is_none() {
            ex.pass(Check::RuleProvider, || {
                format!("the rule accepts {:?}", pname())
            });
        }
    } else {
        ex.pass(Check::RuleProvider, || {
            "the rule accepts any provider".into()
        });
    }
    let missing = required_claims.iter().find(|(name, want)| {
        !verified
            .rule_claims
            .iter()
            .any(|(n, v)| n == name && v == want)
    });
    if let Some((name, want)) = missing {
        let d = denial(Reason::ClaimNotAllowed, Check::RuleClaims);
        return refuse(ex, d, || {
            let got = verified
                .rule_claims
                .iter()
                .find(|(n, _)| n == name)
                .map_or("absent".into(), |(_, v)| v.to_string());
            format!("claim_not_allowed: the rule requires {name}={want}; the token has {got}")
        });
    }
    ex.pass(Check::RuleClaims, || {
        if required_claims.is_empty() {
            return "none required".into();
        }
        let each: Vec<String> = required_claims
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        format!("{} match", each.join(", "))
    });
    let all_ok = scopes_all.iter().all(|s| covers(&verified.scopes, s));
    let any_ok = scopes_any.is_empty() || scopes_any.iter().any(|s| covers(&verified.scopes, s));
    let needs = || {
        let mut parts = Vec::new();
        if !scopes_all.is_empty() {
            parts.push(format!("all of {}", scopes_all.join(" ")));
        }
        if !scopes_any.is_empty() {
            parts.push(format!("any of {}", scopes_any.join(" ")));
        }
        if parts.is_empty() {
            return "none required".to_string();
        }
        parts.join(" and ")
    };
    if !(all_ok && any_ok) {
        let d = denial(Reason::InsufficientScope, Check::RuleScopes);
        return refuse(ex, d, || {
            format!(
                "insufficient_scope: granted {:?}; the rule requires {}",
                verified.scopes_joined,
                needs()
            )
        });
    }
    ex.pass(Check::RuleScopes, || {
        format!(
            "granted {:?} satisfies: {}",
            verified.scopes_joined,
            needs()
        )
    });
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
