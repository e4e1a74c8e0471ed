//! Why a request was denied, in words, with the values involved: from the denial (its reason
//! and the check the filter named), the config, the token decoded without verification, and
//! the filter's own detail of the failed check. Uses the CLI's `config_cmd` and `time`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::Value;
use svcauth_filter::config::Config;
use svcauth_filter::contract::reason::Reason;
use svcauth_filter::decide::{Check, Denial};

use crate::config_cmd::{self, provider_sources, rule_summary};
use crate::time;

/// The token's header and claims, decoded without verification (for explanations only).
pub struct Unverified {
    header: Option<Value>,
    claims: Option<Value>,
    parts: usize,
}

pub fn peek(token: &str) -> Unverified {
    let parts: Vec<&str> = token.split('.').collect();
    let decode = |s: Option<&&str>| {
        s.and_then(|s| URL_SAFE_NO_PAD.decode(s).ok())
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .filter(Value::is_object)
    };
    Unverified {
        header: decode(parts.first()),
        claims: decode(parts.get(1)),
        parts: parts.len(),
    }
}

fn str_of(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => format!("{s:?}"),
        Some(other) => other.to_string(),
        None => "(none)".into(),
    }
}

pub fn ago(now: i64, t: i64) -> String {
    if t <= now {
        format!("{} ago", time::human(now - t))
    } else {
        format!("in {}", time::human(t - now))
    }
}

/// Why, in words, from the config and the unverified token: the filter's reason code and
/// check say what failed; this says with which values. `core` is the filter's own detail of
/// the failed check (`reason_code: ...`), used as it is for the rule's checks.
pub fn why(
    config: &Config,
    d: &Denial,
    u: Option<&Unverified>,
    now: i64,
    req: (&str, &str),
    token_header: Option<&str>,
    core: Option<&str>,
) -> String {
    let core = core.map(|c| {
        c.strip_prefix(d.reason.code())
            .and_then(|c| c.strip_prefix(": "))
            .unwrap_or(c)
    });
    // The filter names the provider from the issuer check on; before it there is none.
    let provider = d.provider.and_then(|i| config.providers.get(i));
    let skew = provider.map_or(0, |p| p.clock_skew);
    let claim = |n: &str| u.and_then(|u| u.claims.as_ref()).and_then(|c| c.get(n));
    let hdr = |n: &str| u.and_then(|u| u.header.as_ref()).and_then(|h| h.get(n));
    match d.reason {
        Reason::NoMatchingRule => format!(
            "no rule matches {} {} (paths with . or .. segments, encoded dots or slashes, or \
             backslashes match no rule on purpose)",
            req.0, req.1
        ),
        // The filter's own words: where it looked, what it counted.
        Reason::AmbiguousPath
        | Reason::TokenMissing
        | Reason::MultipleTokens
        | Reason::TokenTooLarge
        | Reason::InvalidCredentials => match core {
            Some(c) => c.to_string(),
            None => d.reason.description().into(),
        },
        Reason::TokenMalformed => match (d.check, u, provider) {
            (Check::Format, Some(u), _) if u.parts != 3 => format!(
                "{} dot-separated part(s): a compact JWS has exactly 3",
                u.parts
            ),
            (Check::Format, Some(u), _) if u.header.is_none() => {
                "the header is not base64url JSON".into()
            }
            (Check::Format, _, _) => {
                "the header or the signature is not a valid JWS encoding".into()
            }
            (Check::Claims, _, _) => {
                "the claims are not a base64url JSON object, or hold a duplicate claim".into()
            }
            (Check::Issuer, _, _) => "iss is not a string".into(),
            (Check::Subject, _, Some(p)) => format!(
                "{} is not a non-empty string that can go into a header",
                p.subject_claim
            ),
            (Check::Lifetime, _, _) => "exp, nbf and iat must be integers".into(),
            (Check::Audience, _, _) => "aud must be a string or a list of strings".into(),
            (Check::Scopes, _, Some(p)) => format!(
                "the scope claim ({} of scope_claims {}) must be a space-separated string or a \
                 list of strings, with no control characters",
                p.scope_claims
                    .iter()
                    .find(|c| claim(c).is_some())
                    .map_or("none", String::as_str),
                p.scope_claims.join(", ")
            ),
            (Check::ClaimHeaders, _, Some(p)) => format!(
                "a claim_to_headers value cannot go into a header unchanged (a control \
                 character, a list element with a comma or spaces at its ends, or longer than \
                 max_claim_header_bytes {})",
                p.max_claim_header_bytes
            ),
            (check, _, _) => format!("the {check} check found a claim of the wrong type"),
        },
        Reason::AlgNotAllowed => format!(
            "alg {}; provider {:?} allows {}",
            str_of(hdr("alg")),
            provider.map_or("?", |p| p.name.as_str()),
            provider.map_or(String::new(), |p| p
                .algorithms
                .iter()
                .map(|a| a.name())
                .collect::<Vec<_>>()
                .join(", "))
        ),
        Reason::CritUnsupported => {
            "the header has \"crit\"; svcauth understands no extension".into()
        }
        Reason::UnknownKid => format!(
            "kid {}; provider {:?} has keys: {}",
            str_of(hdr("kid")),
            provider.map_or("?", |p| p.name.as_str()),
            provider.map_or(String::new(), config_cmd::provider_keys)
        ),
        Reason::BadSignature => format!(
            "the key for kid {} does not verify the signature: the token was signed by another \
             key, or altered",
            str_of(hdr("kid"))
        ),
        Reason::ExpMissing => "the token has no exp claim; the filter requires one".into(),
        Reason::TokenExpired => match int_claim_of(claim("exp")) {
            Some(exp) => format!(
                "exp {exp} was {} (now {now}; clock skew allowed {})",
                ago(now, exp),
                time::human(skew)
            ),
            None => "expired".into(),
        },
        Reason::TokenNotYetValid => match int_claim_of(claim("nbf")) {
            Some(nbf) => format!(
                "nbf {nbf} is {} (now {now}; clock skew allowed {})",
                ago(now, nbf),
                time::human(skew)
            ),
            None => "not yet valid".into(),
        },
        Reason::IssuedInFuture => match int_claim_of(claim("iat")) {
            Some(iat) => format!(
                "iat {iat} is {} (now {now}; clock skew allowed {})",
                ago(now, iat),
                time::human(skew)
            ),
            None => "issued in the future".into(),
        },
        Reason::LifetimeTooLong => format!(
            "exp - iat is {}; max_lifetime_seconds is {}",
            match (int_claim_of(claim("exp")), int_claim_of(claim("iat"))) {
                (Some(e), Some(i)) => time::human(e - i),
                (Some(e), None) => format!("{} (no iat: counted from now)", time::human(e - now)),
                _ => "?".into(),
            },
            provider
                .and_then(|p| p.max_lifetime)
                .map_or("?".into(), time::human)
        ),
        Reason::IssuerMismatch => format!(
            "iss {} is no provider's issuer (configured: {})",
            str_of(claim("iss")),
            config
                .providers
                .iter()
                .map(|p| format!("{:?}", p.issuer))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Reason::AudienceMismatch => format!(
            "aud {}; provider {:?} accepts one of: {}",
            str_of(claim("aud")),
            provider.map_or("?", |p| p.name.as_str()),
            provider
                .and_then(|p| p.audiences.as_ref())
                .map_or(String::new(), |a| a.join(", "))
        ),
        Reason::ClaimMismatch => match (d.check, provider) {
            (Check::Subject, Some(p)) => format!(
                "the token has no {} claim (provider {:?}'s subject_claim)",
                p.subject_claim, p.name
            ),
            (_, Some(p)) => {
                let need: Vec<String> = p
                    .required_claims
                    .iter()
                    .map(|(k, v)| format!("{k}={v} (token: {})", str_of(claim(k))))
                    .collect();
                format!("provider {:?} requires: {}", p.name, need.join(", "))
            }
            _ => "a required claim is missing or different".into(),
        },
        Reason::WrongTokenLocation => format!(
            "the token was in {}; provider {:?} reads only: {}",
            token_header.unwrap_or("?"),
            provider.map_or("?", |p| p.name.as_str()),
            provider.map_or(String::new(), |p| provider_sources(config, p))
        ),
        Reason::ProviderNotAllowed => format!(
            "the token is from provider {:?}; rule {}",
            provider.map_or("?", |p| p.name.as_str()),
            d.rule.map_or(String::new(), |r| rule_summary(config, r))
        ),
        // The filter's own words: the scopes it granted (from the provider's scope_claims)
        // and those the rule requires.
        Reason::InsufficientScope | Reason::ClaimNotAllowed => match core {
            Some(c) => c.to_string(),
            None => d.reason.description().into(),
        },
        Reason::KeysUnavailable => format!(
            "provider {:?} has no keys loaded (a remote JWKS is fetched by the filter at run \
             time; svcauth verify knows only the keys written in the config)",
            provider.map_or("?", |p| p.name.as_str())
        ),
        _ => d.reason.description().into(),
    }
}

fn int_claim_of(v: Option<&Value>) -> Option<i64> {
    v.and_then(Value::as_i64)
}
