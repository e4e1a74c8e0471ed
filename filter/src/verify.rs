//! Token verification: from a raw token string to a [`Verified`] identity, in Envoy's order —
//! parse, issuer, algorithm, time (with skew), audience, required claims, key, signature.

use serde::de::{Deserializer, Error as _, MapAccess, Visitor};
use serde_json::{Map, Value};

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

/// A failed verification: the reason, and the provider and subject when they were known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub reason: Reason,
    pub provider: Option<usize>,
    /// The subject, only when the signature verified (a check after it failed).
    pub subject: Option<String>,
    /// The subject the token claims, when the failure came before the signature verified:
    /// for the log line only, never as the caller.
    pub unverified_subject: Option<String>,
}

impl From<Reason> for Failure {
    fn from(reason: Reason) -> Self {
        Failure {
            reason,
            provider: None,
            subject: None,
            unverified_subject: None,
        }
    }
}

/// The claims object, refusing duplicate member names (RFC 7519 §4: a JWT with duplicate claim
/// names must be rejected; parsers disagree on which copy wins).
struct Claims(Map<String, Value>);

impl<'de> serde::Deserialize<'de> for Claims {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Claims;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Claims, A::Error> {
                let mut m = Map::new();
                while let Some(k) = a.next_key::<String>()? {
                    let v: Value = a.next_value()?;
                    if m.insert(k, v).is_some() {
                        return Err(A::Error::custom("duplicate claim"));
                    }
                }
                Ok(Claims(m))
            }
        }
        d.deserialize_map(V)
    }
}

/// Receives each passed check of [`verify_explained`], in order, with a lazily built detail.
/// The first failed check is the returned [`Failure`].
pub trait Explain {
    fn pass(&mut self, check: &'static str, detail: impl FnOnce() -> String);
}

/// The silent observer of the data path: compiles to nothing.
impl Explain for () {
    #[inline(always)]
    fn pass(&mut self, _check: &'static str, _detail: impl FnOnce() -> String) {}
}

/// Verifies `token` against `config` at time `now` (seconds since the epoch, host clock),
/// with the configured keys only (no fetched ones).
pub fn verify(config: &Config, token: &str, now: i64) -> Result<Verified, Failure> {
    verify_explained(config, token, now, &mut ())
}

/// [`verify`], reporting each passed check to `ex` (the CLI's `--explain`).
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

/// The full verification: configured keys plus the fetched keys in `store`.
pub fn verify_with_keys<E: Explain>(
    config: &Config,
    store: &KeyStore,
    crypto: &dyn jws::Verifier,
    token: &str,
    now: i64,
    ex: &mut E,
) -> Result<Verified, Failure> {
    let parsed = jws::parse(token)?;
    ex.pass("format", || {
        format!(
            "compact JWS, alg {}, kid {}, typ {}",
            parsed.alg.name(),
            parsed.kid.as_deref().unwrap_or("(none)"),
            parsed.typ.as_deref().unwrap_or("(none)")
        )
    });
    let Claims(claims) =
        serde_json::from_slice(&parsed.payload).map_err(|_| Reason::TokenMalformed)?;
    ex.pass("claims", || {
        format!("{} claims, no duplicates", claims.len())
    });
    let iss = match claims.get("iss") {
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Err(Reason::TokenMalformed.into()),
        None => return Err(Reason::IssuerMismatch.into()),
    };
    let Some((pi, provider)) = config
        .providers
        .iter()
        .enumerate()
        .find(|(_, p)| p.statics.is_none() && p.issuer == iss)
    else {
        return Err(Reason::IssuerMismatch.into());
    };
    ex.pass("issuer", || {
        format!("{iss:?} selects provider {:?}", provider.name)
    });
    let fail = |reason: Reason| Failure {
        reason,
        provider: Some(pi),
        subject: None,
        unverified_subject: None,
    };
    // Read early so that denials before the signature can log what the token claims, as
    // `unverified_subject`: until the signature verified, nothing in it names the caller.
    let subject = match claims.get(&provider.subject_claim) {
        Some(Value::String(s)) if is_header_safe(s) && !s.is_empty() => Some(s.clone()),
        Some(_) => return Err(fail(Reason::TokenMalformed)),
        None => None,
    };
    let fail = |reason: Reason| Failure {
        reason,
        provider: Some(pi),
        subject: None,
        unverified_subject: subject.clone(),
    };
    if !provider.algorithms.contains(&parsed.alg) {
        return Err(fail(Reason::AlgNotAllowed));
    }
    ex.pass("algorithm", || format!("{} is allowed", parsed.alg.name()));
    if let Some(want) = &provider.typ {
        if !typ_matches(parsed.typ.as_deref(), want) {
            return Err(fail(Reason::WrongTokenType));
        }
        ex.pass("type", || format!("typ is {want}"));
    }
    let exp = check_time(provider, &claims, now).map_err(fail)?;
    ex.pass("lifetime", || {
        if exp == i64::MAX {
            return "no exp (the provider sets require_expiration: false)".into();
        }
        format!(
            "exp {exp} is {}s from now {now} (skew {}s)",
            exp.saturating_sub(now),
            provider.clock_skew
        )
    });
    check_audience(provider, &claims).map_err(fail)?;
    ex.pass("audience", || match &provider.audiences {
        Some(a) => format!("one of {a:?}"),
        None => "not checked (no audiences configured)".into(),
    });
    for (name, want) in &provider.required_claims {
        if claims.get(name) != Some(want) {
            return Err(fail(Reason::ClaimMismatch));
        }
    }
    ex.pass("required claims", || {
        format!("{} required claim(s) match", provider.required_claims.len())
    });
    let Some(subject) = subject.clone() else {
        return Err(fail(Reason::ClaimMismatch));
    };
    ex.pass("subject", || {
        format!("{} = {subject:?}", provider.subject_claim)
    });
    let fetched: &[Key] = store.get(pi).map_or(&[], |l| l.keys.as_slice());
    if provider.remote_jwks.is_some()
        && store.get(pi).is_none()
        && !provider.keys.iter().any(|k| k.fits(parsed.alg))
    {
        // Fail closed until the first good key set arrives.
        return Err(fail(Reason::KeysUnavailable));
    }
    let candidates = jwk::candidates(
        &[provider.keys.as_slice(), fetched],
        parsed.alg,
        parsed.kid.as_deref(),
    );
    if candidates.is_empty() {
        return Err(fail(Reason::UnknownKid));
    }
    let Some(key) = candidates.iter().find(|k| crypto.verify(&parsed, k)) else {
        return Err(fail(Reason::BadSignature));
    };
    ex.pass("signature", || {
        format!(
            "verified with key {}",
            key.kid.as_deref().unwrap_or("(no kid)")
        )
    });
    // From here on the claims are the issuer's: a denial may name the caller.
    let fail = |reason: Reason| Failure {
        reason,
        provider: Some(pi),
        subject: Some(subject.clone()),
        unverified_subject: None,
    };
    let scopes = scopes_of(provider, &claims).map_err(fail)?;
    ex.pass("scopes", || format!("granted {:?}", scopes.join(" ")));
    let mut claim_headers = Vec::with_capacity(provider.claim_to_headers.len());
    for ch in &provider.claim_to_headers {
        match claim_header_value(&claims, &ch.path, provider.max_claim_header_bytes) {
            Ok(Some(v)) => claim_headers.push((ch.header.clone(), v)),
            Ok(None) => {}
            Err(()) => return Err(fail(Reason::TokenMalformed)),
        }
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

/// The header value of a primitive claim (string, number, bool); `None` for others.
fn primitive(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The `claim_to_headers` value of the claim at `path` (member names through objects):
/// a string, number or boolean as it is (numbers and booleans as their JSON text), a list of
/// strings joined with `,`. `Ok(None)`, no header: the claim is absent, `null`, an object, an
/// empty list or a list holding anything but strings. `Err`, the token is malformed: the value
/// cannot go into a header unchanged (a control character such as CR or LF, tab excepted), a
/// list element that would not read back as itself (empty, holding a `,`, or with spaces or
/// tabs at its ends), or a value longer than `max` bytes.
fn claim_header_value(
    claims: &Map<String, Value>,
    path: &[String],
    max: usize,
) -> Result<Option<String>, ()> {
    let mut names = path.iter();
    let mut v = names.next().and_then(|n| claims.get(n));
    for n in names {
        v = v.and_then(Value::as_object).and_then(|o| o.get(n));
    }
    let text = match v {
        Some(Value::Array(list)) => {
            if list.is_empty() || !list.iter().all(Value::is_string) {
                return Ok(None);
            }
            let mut out = String::new();
            for (i, item) in list.iter().filter_map(Value::as_str).enumerate() {
                let bare = item.trim_matches([' ', '\t']);
                if bare.is_empty() || bare.len() != item.len() || item.contains(',') {
                    return Err(());
                }
                if i > 0 {
                    out.push(',');
                }
                out.push_str(item);
                if out.len() > max {
                    return Err(());
                }
            }
            out
        }
        Some(other) => match primitive(other) {
            Some(text) => text,
            None => return Ok(None),
        },
        None => return Ok(None),
    };
    if text.len() > max || text.chars().any(|c| c.is_control() && c != '\t') {
        return Err(());
    }
    Ok(Some(text))
}

/// A value Envoy accepts in a header: no control characters (tab excepted), bounded length.
fn is_header_safe(s: &str) -> bool {
    s.len() <= 4096 && !s.chars().any(|c| c.is_control() && c != '\t')
}
