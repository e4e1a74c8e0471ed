//! Token verification: from a raw token string to a [`Verified`] identity, in Envoy's order —
//! parse, issuer, algorithm, time (with skew), audience, required claims, key, signature; each
//! failure names its [`Check`]. Uses config, contract, token and check.

use serde_json::{Map, Value};

pub use crate::check::{Check, Explain};
use crate::claims::{claim_header_value, primitive, Claims};
use crate::config::{Config, Provider};
use crate::contract::reason::Reason;
use crate::token::jwk::{self, Key};
use crate::token::jws;
use crate::token::keys::KeyStore;

/// What a verified token says about its caller. Cached per token; rule checks run per request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Index into [`Config::providers`].
    pub provider: usize,
    /// The subject claim (the caller's service name).
    pub subject: String,
    /// Granted scopes, in token order.
    pub scopes: Vec<String>,
    /// `scopes` space-separated (the `x-service-scopes` value).
    pub scopes_joined: String,
    /// `(header, value)` from the provider's `claim_to_headers`, for the claims that render.
    pub claim_headers: Vec<(String, String)>,
    /// `(claim, value)` of the config's `log.claims`, for audit lines.
    pub log_claims: Vec<(String, String)>,
    /// `(claim, value)` of the claims rules require (`Config::rule_claims`) that are present.
    pub rule_claims: Vec<(String, Value)>,
    /// The `exp` claim.
    pub exp: i64,
}

/// A failed verification: the check that failed and its reason, and the provider and subject
/// when they were known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub reason: Reason,
    /// The check that failed, as `--explain` names it.
    pub check: Check,
    pub provider: Option<usize>,
    /// The subject, only when the signature verified (a check after it failed).
    pub subject: Option<String>,
    /// The subject the token claims, when the failure came before the signature verified:
    /// for the log line only, never as the caller.
    pub unverified_subject: Option<String>,
}

impl Failure {
    /// A failure before any provider was chosen.
    fn at(check: Check, reason: Reason) -> Failure {
        Failure {
            reason,
            check,
            provider: None,
            subject: None,
            unverified_subject: None,
        }
    }
}

/// Verifies `token` against `config` at time `now` (seconds since the epoch, host clock),
/// with the configured keys only (no fetched ones).
pub fn verify(config: &Config, token: &str, now: i64) -> Result<Verified, Failure> {
    verify_explained(config, token, now, &mut ())
}

/// [`verify`], reporting each passed check, then the failed one, to `ex` (the CLI's
/// `--explain`).
pub fn verify_explained<E: Explain>(
    config: &Config,
    token: &str,
    now: i64,
    ex: &mut E,
) -> Result<Verified, Failure> {
    verify_with_keys(
        config,
        &KeyStore::default(),
        &jws::RustCrypto,
        token,
        now,
        ex,
    )
}

/// The full verification: configured keys plus the fetched keys in `store`. Each passed check
/// is reported to `ex`, then the failed one (the returned [`Failure::check`]).
pub fn verify_with_keys<E: Explain>(
    config: &Config,
    store: &KeyStore,
    crypto: &dyn jws::Verifier,
    token: &str,
    now: i64,
    ex: &mut E,
) -> Result<Verified, Failure> {
    let result = walk(config, store, crypto, token, now, ex);
    if let Err(f) = &result {
        ex.fail(f.check, || {
            format!("{}: {}", f.reason.code(), f.reason.description())
        });
    }
    result
}

fn walk<E: Explain>(
    config: &Config,
    store: &KeyStore,
    crypto: &dyn jws::Verifier,
    token: &str,
    now: i64,
    ex: &mut E,
) -> Result<Verified, Failure> {
    let parsed = jws::parse(token).map_err(|r| Failure::at(Check::Format, r))?;
    ex.pass(Check::Format, || {
        format!(
            "compact JWS, alg {}, kid {}, typ {}",
            parsed.alg.name(),
            parsed.kid.as_deref().unwrap_or("(none)"),
            parsed.typ.as_deref().unwrap_or("(none)")
        )
    });
    let Claims(claims) = serde_json::from_slice(&parsed.payload)
        .map_err(|_| Failure::at(Check::Claims, Reason::TokenMalformed))?;
    ex.pass(Check::Claims, || {
        format!("{} claims, no duplicates", claims.len())
    });
    let iss = match claims.get("iss") {
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Err(Failure::at(Check::Issuer, Reason::TokenMalformed)),
        None => return Err(Failure::at(Check::Issuer, Reason::IssuerMismatch)),
    };
    let Some((pi, provider)) = config
        .providers
        .iter()
        .enumerate()
        .find(|(_, p)| p.statics.is_none() && p.issuer == iss)
    else {
        return Err(Failure::at(Check::Issuer, Reason::IssuerMismatch));
    };
    ex.pass(Check::Issuer, || {
        format!("{iss:?} selects provider {:?}", provider.name)
    });
    // Read early so that denials before the signature can log what the token claims, as
    // `unverified_subject`: until the signature verified, nothing in it names the caller.
    let subject = match claims.get(&provider.subject_claim) {
        Some(Value::String(s)) if is_header_safe(s) && !s.is_empty() => Some(s.clone()),
        Some(_) => {
            return Err(Failure {
                provider: Some(pi),
                ..Failure::at(Check::Subject, Reason::TokenMalformed)
            })
        }
        None => None,
    };
    let fail = |check: Check, reason: Reason| Failure {
        reason,
        check,
        provider: Some(pi),
        subject: None,
        unverified_subject: subject.clone(),
    };
    if !provider.algorithms.contains(&parsed.alg) {
        return Err(fail(Check::Algorithm, Reason::AlgNotAllowed));
    }
    ex.pass(Check::Algorithm, || {
        format!("{} is allowed", parsed.alg.name())
    });
    if let Some(want) = &provider.typ {
        if !typ_matches(parsed.typ.as_deref(), want) {
            return Err(fail(Check::Type, Reason::WrongTokenType));
        }
        ex.pass(Check::Type, || format!("typ is {want}"));
    }
    let exp = check_time(provider, &claims, now).map_err(|r| fail(Check::Lifetime, r))?;
    ex.pass(Check::Lifetime, || {
        if exp == i64::MAX {
            return "no exp (the provider sets require_expiration: false)".into();
        }
        format!(
            "exp {exp} is {}s from now {now} (skew {}s)",
            exp.saturating_sub(now),
            provider.clock_skew
        )
    });
    check_audience(provider, &claims).map_err(|r| fail(Check::Audience, r))?;
    ex.pass(Check::Audience, || match &provider.audiences {
        Some(a) => format!("one of {a:?}"),
        None => "not checked (no audiences configured)".into(),
    });
    for (name, want) in &provider.required_claims {
        if claims.get(name) != Some(want) {
            return Err(fail(Check::RequiredClaims, Reason::ClaimMismatch));
        }
    }
    ex.pass(Check::RequiredClaims, || {
        if provider.required_claims.is_empty() {
            return "none required".into();
        }
        let each: Vec<String> = provider
            .required_claims
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        format!("{} match", each.join(", "))
    });
    let Some(subject) = subject.clone() else {
        return Err(fail(Check::Subject, Reason::ClaimMismatch));
    };
    ex.pass(Check::Subject, || {
        format!("{} = {subject:?}", provider.subject_claim)
    });
    let fetched: &[Key] = store.get(pi).map_or(&[], |l| l.keys.as_slice());
    if provider.remote_jwks.is_some()
        && store.get(pi).is_none()
        && !provider.keys.iter().any(|k| k.fits(parsed.alg))
    {
        // Fail closed until the first good key set arrives.
        return Err(fail(Check::Key, Reason::KeysUnavailable));
    }
    let candidates = jwk::candidates(
        &[provider.keys.as_slice(), fetched],
        parsed.alg,
        parsed.kid.as_deref(),
    );
    if candidates.is_empty() {
        return Err(fail(Check::Key, Reason::UnknownKid));
    }
    ex.pass(Check::Key, || {
        format!(
            "{} candidate key(s) for alg {}, kid {}",
            candidates.len(),
            parsed.alg.name(),
            parsed.kid.as_deref().unwrap_or("(none)")
        )
    });
    let Some(key) = candidates.iter().find(|k| crypto.verify(&parsed, k)) else {
        return Err(fail(Check::Signature, Reason::BadSignature));
    };
    ex.pass(Check::Signature, || {
        format!(
            "verified with key {}",
            key.kid.as_deref().unwrap_or("(no kid)")
        )
    });
    // From here on the claims are the issuer's: a denial may name the caller.
    let fail = |check: Check, reason: Reason| Failure {
        reason,
        check,
        provider: Some(pi),
        subject: Some(subject.clone()),
        unverified_subject: None,
    };
    let scopes = scopes_of(provider, &claims).map_err(|r| fail(Check::Scopes, r))?;
    ex.pass(Check::Scopes, || {
        match provider
            .scope_claims
            .iter()
            .find(|c| claims.contains_key(*c))
        {
            Some(c) => format!("granted {:?} (claim {c})", scopes.join(" ")),
            None => format!(
                "none granted (no claim of scope_claims {:?})",
                provider.scope_claims
            ),
        }
    });
    let mut claim_headers = Vec::with_capacity(provider.claim_to_headers.len());
    for ch in &provider.claim_to_headers {
        match claim_header_value(&claims, &ch.path, provider.max_claim_header_bytes) {
            Ok(Some(v)) => claim_headers.push((ch.header.clone(), v)),
            Ok(None) => {}
            Err(()) => return Err(fail(Check::ClaimHeaders, Reason::TokenMalformed)),
        }
    }
    if !provider.claim_to_headers.is_empty() {
        ex.pass(Check::ClaimHeaders, || {
            let names: Vec<&str> = claim_headers.iter().map(|(h, _)| h.as_str()).collect();
            match names.len() {
                0 => "none set (their claims are absent)".into(),
                n => format!(
                    "{n} of {} set: {}",
                    provider.claim_to_headers.len(),
                    names.join(", ")
                ),
            }
        });
    }
    let log_claims = config
        .log_claims
        .iter()
        .filter_map(|c| claims.get(c).and_then(primitive).map(|v| (c.clone(), v)))
        .collect();
    let rule_claims = config
        .rule_claims
        .iter()
        .filter_map(|c| claims.get(c).map(|v| (c.clone(), v.clone())))
        .collect();
    Ok(Verified {
        rule_claims,
        provider: pi,
        subject,
        scopes_joined: scopes.join(" "),
        scopes,
        claim_headers,
        log_claims,
        exp,
    })
}

/// RFC 8725 §3.11 / RFC 9068 §4: `typ` compared case-insensitively, `application/` optional.
fn typ_matches(got: Option<&str>, want: &str) -> bool {
    let norm = |t: &str| {
        let t = t.trim();
        let lower = t.to_ascii_lowercase();
        lower
            .strip_prefix("application/")
            .map(str::to_string)
            .unwrap_or(lower)
    };
    got.is_some_and(|g| norm(g) == norm(want))
}

/// `exp` (required unless the provider sets `require_expiration: false`), `nbf`, `iat` and the
/// maximum lifetime. Returns `exp`, `i64::MAX` for a token without one.
fn check_time(p: &Provider, claims: &Map<String, Value>, now: i64) -> Result<i64, Reason> {
    let exp = match numeric_date(claims, "exp")? {
        Some(e) => Some(e),
        None if p.require_expiration => return Err(Reason::ExpMissing),
        None => None,
    };
    let skew = p.clock_skew;
    if exp.is_some_and(|exp| now > exp.saturating_add(skew)) {
        return Err(Reason::TokenExpired);
    }
    if let Some(nbf) = numeric_date(claims, "nbf")? {
        if now.saturating_add(skew) < nbf {
            return Err(Reason::TokenNotYetValid);
        }
    }
    let iat = numeric_date(claims, "iat")?;
    if let Some(iat) = iat {
        if iat > now.saturating_add(skew) {
            return Err(Reason::IssuedInFuture);
        }
    }
    if let Some(max) = p.max_lifetime {
        // Without iat, the lifetime still ahead is what is bounded; without exp it is unbounded.
        let Some(exp) = exp else {
            return Err(Reason::LifetimeTooLong);
        };
        let start = iat.unwrap_or(now);
        if exp.saturating_sub(start) > max {
            return Err(Reason::LifetimeTooLong);
        }
    }
    Ok(exp.unwrap_or(i64::MAX))
}

/// A NumericDate claim: an integer number of seconds. Strings, floats and out-of-range numbers
/// are malformed.
fn numeric_date(claims: &Map<String, Value>, name: &str) -> Result<Option<i64>, Reason> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => n.as_i64().map(Some).ok_or(Reason::TokenMalformed),
        Some(_) => Err(Reason::TokenMalformed),
    }
}

fn check_audience(p: &Provider, claims: &Map<String, Value>) -> Result<(), Reason> {
    let Some(allowed) = &p.audiences else {
        return Ok(());
    };
    let ok = match claims.get("aud") {
        Some(Value::String(a)) => allowed.contains(a),
        Some(Value::Array(list)) => {
            let mut any = false;
            for v in list {
                match v {
                    Value::String(a) => any |= allowed.contains(a),
                    _ => return Err(Reason::TokenMalformed),
                }
            }
            any
        }
        Some(_) => return Err(Reason::TokenMalformed),
        None => false,
    };
    if ok {
        Ok(())
    } else {
        Err(Reason::AudienceMismatch)
    }
}

/// Scopes from the first configured scope claim present: a space-delimited string or a list of
/// strings. Scopes with characters that cannot go into a header make the token malformed.
fn scopes_of(p: &Provider, claims: &Map<String, Value>) -> Result<Vec<String>, Reason> {
    let Some(v) = p.scope_claims.iter().find_map(|c| claims.get(c)) else {
        return Ok(Vec::new());
    };
    let scopes: Vec<String> = match v {
        Value::String(s) => s.split_ascii_whitespace().map(str::to_string).collect(),
        Value::Array(list) => {
            let mut out = Vec::with_capacity(list.len());
            for item in list {
                match item {
                    Value::String(s) if !s.is_empty() && !s.contains(char::is_whitespace) => {
                        out.push(s.clone())
                    }
                    _ => return Err(Reason::TokenMalformed),
                }
            }
            out
        }
        _ => return Err(Reason::TokenMalformed),
    };
    if scopes.iter().any(|s| !is_header_safe(s)) {
        return Err(Reason::TokenMalformed);
    }
    Ok(scopes)
}

/// A value Envoy accepts in a header: no control characters (tab excepted), bounded length.
fn is_header_safe(s: &str) -> bool {
    s.len() <= 4096 && !s.chars().any(|c| c.is_control() && c != '\t')
}
