//! Why a request is denied: one enum, its stable codes, and the one place that maps a reason to
//! an HTTP status, an RFC 6750 `WWW-Authenticate` challenge and a JSON body.

/// A denial reason. The `code()` strings are a public contract: they appear in replies' bodies,
/// log lines, span tags and stat names. Add new ones; never rename.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reason {
    /// No token in any configured header.
    TokenMissing,
    /// More than one token (two headers, or two configured places): RFC 6750 §2 says 400.
    MultipleTokens,
    /// Token longer than `max_token_bytes`.
    TokenTooLarge,
    /// Not a compact JWS, bad base64url, bad JSON, JWE, nested JWT, wrong claim types.
    TokenMalformed,
    /// `alg` unknown, `none`, or not in the provider's `algorithms`.
    AlgNotAllowed,
    /// A `crit` header parameter: svcauth understands no extensions, so it must refuse.
    CritUnsupported,
    /// No key with the token's `kid` (or, without a `kid`, not exactly one fitting key).
    UnknownKid,
    /// The signature does not verify.
    BadSignature,
    /// `exp` missing.
    ExpMissing,
    /// `exp` is in the past (beyond the clock skew).
    TokenExpired,
    /// `nbf` is in the future (beyond the clock skew).
    TokenNotYetValid,
    /// `iat` is in the future (beyond the clock skew).
    IssuedInFuture,
    /// `exp - iat` is longer than `max_lifetime_seconds`.
    LifetimeTooLong,
    /// `iss` matches no provider.
    IssuerMismatch,
    /// No `aud` value is one of the provider's `audiences`.
    AudienceMismatch,
    /// A `required_claims` value is missing or different, or the subject claim is missing.
    ClaimMismatch,
    /// The token was found in a header its provider does not read.
    WrongTokenLocation,
    /// The token's provider is not one the matched rule accepts.
    ProviderNotAllowed,
    /// The caller lacks the scopes the rule requires.
    InsufficientScope,
    /// No rule matches the request.
    NoMatchingRule,
    /// The provider has no usable keys (yet).
    KeysUnavailable,
    /// The token's `typ` is not the provider's `typ` (e.g. RFC 9068 `at+jwt`).
    WrongTokenType,
    /// A claim the matched rule requires (`requires.claims`) is missing or different.
    ClaimNotAllowed,
    /// Static service credentials (`X-Service-ID` / `X-Service-Secret`) that do not match.
    InvalidCredentials,
    /// The caller exceeded its rate limit (or the limiter could not count the request).
    RateLimited,
    /// The request path is one that common backends read differently from its canonical form
    /// (`;` parameters, encoded `/` or `\\`, dot segments, control characters, …): refused
    /// before any rule is matched.
    AmbiguousPath,
    /// The host clock is unavailable, so no token lifetime can be checked.
    ClockUnavailable,
    /// The route or the provider requires a signed request and the timestamp or signature
    /// header is missing.
    SignatureMissing,
    /// The request signature is malformed, sent twice, does not match, or the caller has no
    /// signing secret.
    SignatureInvalid,
    /// The signed timestamp is outside the provider's window (either way).
    SignatureExpired,
    /// The same signature was seen within its window: a replay.
    SignatureReplayed,
    /// The body of a request that must be signed is larger than the provider's bound.
    BodyTooLarge,
    /// The replay check could not be made (the caller's replay slot is full of live
    /// signatures, or shared data failed): refused, never let through unchecked.
    ReplayCheckUnavailable,
    /// The body of a request held for its signature never reached the filter (the wasm
    /// filter lacks `allow_on_headers_stop_iteration`, or the body cannot be read).
    BodyUnavailable,
}

/// The RFC 6750 error class of a reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// 401 with no `error=` attribute.
    NoToken,
    /// 400 `invalid_request`.
    InvalidRequest,
    /// 401 `invalid_token`.
    InvalidToken,
    /// 403 `insufficient_scope`.
    InsufficientScope,
    /// 429, no challenge.
    RateLimited,
    /// 503, no challenge: the filter cannot decide now.
    Unavailable,
    /// 413, no challenge: the body is larger than the filter will hold.
    TooLarge,
}

impl Reason {
    /// Every reason, for stats declared once at start.
    pub const ALL: [Reason; 34] = [
        Reason::TokenMissing,
        Reason::MultipleTokens,
        Reason::TokenTooLarge,
        Reason::TokenMalformed,
        Reason::AlgNotAllowed,
        Reason::CritUnsupported,
        Reason::UnknownKid,
        Reason::BadSignature,
        Reason::ExpMissing,
        Reason::TokenExpired,
        Reason::TokenNotYetValid,
        Reason::IssuedInFuture,
        Reason::LifetimeTooLong,
        Reason::IssuerMismatch,
        Reason::AudienceMismatch,
        Reason::ClaimMismatch,
        Reason::WrongTokenLocation,
        Reason::ProviderNotAllowed,
        Reason::InsufficientScope,
        Reason::NoMatchingRule,
        Reason::KeysUnavailable,
        Reason::WrongTokenType,
        Reason::ClaimNotAllowed,
        Reason::InvalidCredentials,
        Reason::RateLimited,
        Reason::AmbiguousPath,
        Reason::ClockUnavailable,
        Reason::SignatureMissing,
        Reason::SignatureInvalid,
        Reason::SignatureExpired,
        Reason::SignatureReplayed,
        Reason::BodyTooLarge,
        Reason::ReplayCheckUnavailable,
        Reason::BodyUnavailable,
    ];

    /// The stable reason code.
    pub fn code(self) -> &'static str {
        match self {
            Reason::TokenMissing => "token_missing",
            Reason::MultipleTokens => "multiple_tokens",
            Reason::TokenTooLarge => "token_too_large",
            Reason::TokenMalformed => "token_malformed",
            Reason::AlgNotAllowed => "alg_not_allowed",
            Reason::CritUnsupported => "crit_unsupported",
            Reason::UnknownKid => "unknown_kid",
            Reason::BadSignature => "bad_signature",
            Reason::ExpMissing => "exp_missing",
            Reason::TokenExpired => "token_expired",
            Reason::TokenNotYetValid => "token_not_yet_valid",
            Reason::IssuedInFuture => "issued_in_future",
            Reason::LifetimeTooLong => "lifetime_too_long",
            Reason::IssuerMismatch => "issuer_mismatch",
            Reason::AudienceMismatch => "audience_mismatch",
            Reason::ClaimMismatch => "claim_mismatch",
            Reason::WrongTokenLocation => "wrong_token_location",
            Reason::ProviderNotAllowed => "provider_not_allowed",
            Reason::InsufficientScope => "insufficient_scope",
            Reason::NoMatchingRule => "no_matching_rule",
            Reason::KeysUnavailable => "keys_unavailable",
            Reason::WrongTokenType => "wrong_token_type",
            Reason::ClaimNotAllowed => "claim_not_allowed",
            Reason::InvalidCredentials => "invalid_credentials",
            Reason::RateLimited => "rate_limited",
            Reason::AmbiguousPath => "ambiguous_path",
            Reason::ClockUnavailable => "clock_unavailable",
            Reason::SignatureMissing => "signature_missing",
            Reason::SignatureInvalid => "signature_invalid",
            Reason::SignatureExpired => "signature_expired",
            Reason::SignatureReplayed => "signature_replayed",
            Reason::BodyTooLarge => "body_too_large",
            Reason::ReplayCheckUnavailable => "replay_check_unavailable",
            Reason::BodyUnavailable => "body_unavailable",
        }
    }

    /// A short, fixed description for `error_description` (never includes request data).
    pub fn description(self) -> &'static str {
        match self {
            Reason::TokenMissing => "no token",
            Reason::MultipleTokens => "more than one token in the request",
            Reason::TokenTooLarge => "token too large",
            Reason::TokenMalformed => "malformed token",
            Reason::AlgNotAllowed => "token algorithm not allowed",
            Reason::CritUnsupported => "token has unsupported critical header parameters",
            Reason::UnknownKid => "no key matches the token's key id",
            Reason::BadSignature => "token signature is invalid",
            Reason::ExpMissing => "token has no expiry",
            Reason::TokenExpired => "token expired",
            Reason::TokenNotYetValid => "token not yet valid",
            Reason::IssuedInFuture => "token issued in the future",
            Reason::LifetimeTooLong => "token lifetime too long",
            Reason::IssuerMismatch => "token issuer not accepted",
            Reason::AudienceMismatch => "token audience not accepted",
            Reason::ClaimMismatch => "token claims do not match the required values",
            Reason::WrongTokenLocation => "token sent in a header its issuer does not use",
            Reason::ProviderNotAllowed => "token issuer not accepted for this route",
            Reason::InsufficientScope => "insufficient scope",
            Reason::NoMatchingRule => "no rule allows this route",
            Reason::KeysUnavailable => "signing keys unavailable",
            Reason::WrongTokenType => "wrong token type",
            Reason::ClaimNotAllowed => "caller not allowed on this route",
            Reason::InvalidCredentials => "invalid service credentials",
            Reason::RateLimited => "rate limit exceeded",
            Reason::AmbiguousPath => "ambiguous path",
            Reason::ClockUnavailable => "host clock unavailable",
            Reason::SignatureMissing => "request signature missing",
            Reason::SignatureInvalid => "request signature is invalid",
            Reason::SignatureExpired => "request signature timestamp outside the allowed window",
            Reason::SignatureReplayed => "request signature already used",
            Reason::BodyTooLarge => "request body too large",
            Reason::ReplayCheckUnavailable => "request signature replay check unavailable",
            Reason::BodyUnavailable => "request body unavailable",
        }
    }

    pub fn class(self) -> ErrorClass {
        match self {
            Reason::TokenMissing => ErrorClass::NoToken,
            Reason::MultipleTokens | Reason::AmbiguousPath => ErrorClass::InvalidRequest,
            Reason::InsufficientScope
            | Reason::NoMatchingRule
            | Reason::ProviderNotAllowed
            | Reason::ClaimNotAllowed => ErrorClass::InsufficientScope,
            Reason::RateLimited => ErrorClass::RateLimited,
            Reason::ClockUnavailable | Reason::ReplayCheckUnavailable | Reason::BodyUnavailable => {
                ErrorClass::Unavailable
            }
            Reason::BodyTooLarge => ErrorClass::TooLarge,
            _ => ErrorClass::InvalidToken,
        }
    }

    pub fn status(self) -> u32 {
        match self.class() {
            ErrorClass::NoToken | ErrorClass::InvalidToken => 401,
            ErrorClass::InvalidRequest => 400,
            ErrorClass::InsufficientScope => 403,
            ErrorClass::RateLimited => 429,
            ErrorClass::Unavailable => 503,
            ErrorClass::TooLarge => 413,
        }
    }

    /// The RFC 6750 `error` value, if any.
    pub fn error(self) -> Option<&'static str> {
        match self.class() {
            ErrorClass::NoToken => None,
            ErrorClass::InvalidRequest => Some("invalid_request"),
            ErrorClass::InvalidToken => Some("invalid_token"),
            ErrorClass::InsufficientScope => Some("insufficient_scope"),
            ErrorClass::RateLimited | ErrorClass::Unavailable | ErrorClass::TooLarge => None,
        }
    }
}

/// The `WWW-Authenticate` value for a denial. `required_scope` is the space-separated scope
/// list for `insufficient_scope` (already restricted to scope-token characters at config time).
pub fn www_authenticate(reason: Reason, required_scope: &str) -> String {
    let mut v = String::from("Bearer realm=\"svcauth\"");
    if let Some(err) = reason.error() {
        v.push_str(", error=\"");
        v.push_str(err);
        v.push_str("\", error_description=\"");
        v.push_str(reason.description());
        v.push('"');
        if reason == Reason::InsufficientScope && !required_scope.is_empty() {
            v.push_str(", scope=\"");
            v.push_str(required_scope);
            v.push('"');
        }
    }
    v
}

/// The small JSON body of a local reply. Never contains the token.
pub fn body(reason: Reason, request_id: &str) -> String {
    let err = match reason.class() {
        ErrorClass::RateLimited => "rate_limited",
        ErrorClass::Unavailable => "temporarily_unavailable",
        ErrorClass::TooLarge => "request_too_large",
        _ => reason.error().unwrap_or("unauthorized"),
    };
    serde_json::json!({
        "error": err,
        "error_description": reason.description(),
        "reason": reason.code(),
        "request_id": request_id,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_token_gets_a_bare_bearer_challenge() {
        assert_eq!(Reason::TokenMissing.status(), 401);
        assert_eq!(
            www_authenticate(Reason::TokenMissing, ""),
            r#"Bearer realm="svcauth""#
        );
    }

    #[test]
    fn invalid_tokens_get_invalid_token_with_a_description() {
        assert_eq!(Reason::TokenExpired.status(), 401);
        assert_eq!(
            www_authenticate(Reason::TokenExpired, ""),
            r#"Bearer realm="svcauth", error="invalid_token", error_description="token expired""#
        );
    }

    #[test]
    fn missing_scope_names_the_required_scope() {
        assert_eq!(Reason::InsufficientScope.status(), 403);
        assert_eq!(
            www_authenticate(Reason::InsufficientScope, "orders:read orders:write"),
            r#"Bearer realm="svcauth", error="insufficient_scope", error_description="insufficient scope", scope="orders:read orders:write""#
        );
    }

    #[test]
    fn a_rate_limited_caller_gets_429_without_a_challenge_error() {
        assert_eq!(Reason::RateLimited.status(), 429);
        assert_eq!(Reason::RateLimited.error(), None);
        assert!(body(Reason::RateLimited, "r").contains("\"error\":\"rate_limited\""));
    }

    #[test]
    fn two_tokens_are_a_bad_request() {
        assert_eq!(Reason::MultipleTokens.status(), 400);
        assert!(www_authenticate(Reason::MultipleTokens, "").contains("invalid_request"));
    }

    #[test]
    fn codes_are_unique_and_descriptions_need_no_escaping() {
        let mut codes: Vec<_> = Reason::ALL.iter().map(|r| r.code()).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), Reason::ALL.len());
        for r in Reason::ALL {
            assert!(!r.description().contains(['"', '\\']), "{r:?}");
        }
    }

    #[test]
    fn signature_failures_are_invalid_token_and_a_large_body_is_413() {
        for r in [
            Reason::SignatureMissing,
            Reason::SignatureInvalid,
            Reason::SignatureExpired,
            Reason::SignatureReplayed,
        ] {
            assert_eq!(
                (r.status(), r.error()),
                (401, Some("invalid_token")),
                "{r:?}"
            );
        }
        assert_eq!(Reason::BodyTooLarge.status(), 413);
        assert_eq!(Reason::BodyTooLarge.error(), None);
        assert!(body(Reason::BodyTooLarge, "r").contains("\"error\":\"request_too_large\""));
        assert_eq!(Reason::ReplayCheckUnavailable.status(), 503);
        assert_eq!(Reason::BodyUnavailable.status(), 503);
    }

    #[test]
    fn body_is_json_with_the_request_id() {
        let v: serde_json::Value =
            serde_json::from_str(&body(Reason::BadSignature, "rid-1")).unwrap();
        assert_eq!(v["error"], "invalid_token");
        assert_eq!(v["reason"], "bad_signature");
        assert_eq!(v["request_id"], "rid-1");
    }
}
