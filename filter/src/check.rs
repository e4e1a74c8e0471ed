//! The checks a request passes, in the order `decide` and `verify` run them, each with its one
//! name: the core names the check a denial failed ([`crate::verify::Failure::check`],
//! [`crate::decide::Denial::check`]) and reports every passed one to an explain observer, so
//! `svcauth verify --explain` prints what the core did instead of re-deriving it.
//!
//! A leaf: it uses nothing else of the crate.

/// One check of the request's walk, in order. `Copy`, one byte: carried on every denial at no
/// cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Check {
    /// The `:path` has one reading (`ambiguous_path`).
    Path,
    /// A rule matches the method and path (`no_matching_rule`).
    Rule,
    /// The request holds one token, not too large (`token_missing`, `multiple_tokens`,
    /// `token_too_large`).
    Token,
    /// The host clock could be read (`clock_unavailable`).
    Clock,
    /// A compact JWS with a header svcauth understands (`token_malformed`, `crit_unsupported`).
    Format,
    /// The payload is a JSON object without duplicate claims (`token_malformed`).
    Claims,
    /// `iss` selects a provider (`issuer_mismatch`).
    Issuer,
    /// The provider allows the token's `alg` (`alg_not_allowed`).
    Algorithm,
    /// The provider's `typ`, when it sets one (`wrong_token_type`).
    Type,
    /// `exp`, `nbf`, `iat` and the maximum lifetime (`exp_missing`, `token_expired`, ...).
    Lifetime,
    /// `aud` is one of the provider's audiences (`audience_mismatch`).
    Audience,
    /// The provider's `required_claims` (`claim_mismatch`).
    RequiredClaims,
    /// The subject claim is a header-safe string, and present (`token_malformed`,
    /// `claim_mismatch`).
    Subject,
    /// A key of the provider fits the token's `alg` and `kid` (`unknown_kid`,
    /// `keys_unavailable`).
    Key,
    /// A candidate key verifies the signature (`bad_signature`).
    Signature,
    /// The provider's `scope_claims` hold header-safe scopes (`token_malformed`).
    Scopes,
    /// The provider's `claim_to_headers` values fit in headers (`token_malformed`).
    ClaimHeaders,
    /// The token was in a place its provider reads (`wrong_token_location`).
    TokenLocation,
    /// The rule accepts the token's provider (`provider_not_allowed`).
    RuleProvider,
    /// Static credentials, checked once the rule named their provider: the id and secret
    /// match (`invalid_credentials`).
    Credentials,
    /// The token carries the rule's `requires.claims` (`claim_not_allowed`).
    RuleClaims,
    /// The granted scopes cover the rule's (`insufficient_scope`).
    RuleScopes,
    /// After `decide` allowed the request, the adapter's checks: the request's own signature
    /// (`signed_requests`: `bad_request_signature`, `body_too_large`, …)…
    RequestSignature,
    /// … and the caller's rate limit (`rate_limited`).
    RateLimit,
}

impl Check {
    /// Every check, in the order a request meets them (a token's walk skips `Credentials`; a
    /// static credential's goes `Token`, `RuleProvider`, `Credentials`, `RuleClaims`, ...).
    pub const ALL: [Check; 24] = [
        Check::Path,
        Check::Rule,
        Check::Token,
        Check::Clock,
        Check::Format,
        Check::Claims,
        Check::Issuer,
        Check::Algorithm,
        Check::Type,
        Check::Lifetime,
        Check::Audience,
        Check::RequiredClaims,
        Check::Subject,
        Check::Key,
        Check::Signature,
        Check::Scopes,
        Check::ClaimHeaders,
        Check::TokenLocation,
        Check::RuleProvider,
        Check::Credentials,
        Check::RuleClaims,
        Check::RuleScopes,
        Check::RequestSignature,
        Check::RateLimit,
    ];

    /// The check's name, as `svcauth verify --explain` prints it.
    pub const fn name(self) -> &'static str {
        match self {
            Check::Path => "path",
            Check::Rule => "rule",
            Check::Token => "token",
            Check::Credentials => "credentials",
            Check::Clock => "clock",
            Check::Format => "format",
            Check::Claims => "claims",
            Check::Issuer => "issuer",
            Check::Algorithm => "algorithm",
            Check::Type => "type",
            Check::Lifetime => "lifetime",
            Check::Audience => "audience",
            Check::RequiredClaims => "required claims",
            Check::Subject => "subject",
            Check::Key => "key",
            Check::Signature => "signature",
            Check::Scopes => "scopes",
            Check::ClaimHeaders => "claim headers",
            Check::TokenLocation => "token location",
            Check::RuleProvider => "rule provider",
            Check::RuleClaims => "rule claims",
            Check::RuleScopes => "rule scopes",
            Check::RequestSignature => "request signature",
            Check::RateLimit => "rate limit",
        }
    }
}

impl std::fmt::Display for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Receives each passed check of a decision or verification, in order, with a lazily built
/// detail, then the failed one if any. The silent observer `()` compiles to nothing.
pub trait Explain {
    fn pass(&mut self, check: Check, detail: impl FnOnce() -> String);

    /// The check that failed (the denial's `check`), once, after the passed ones.
    fn fail(&mut self, check: Check, detail: impl FnOnce() -> String) {
        let _ = (check, detail);
    }
}

/// The silent observer of the data path: compiles to nothing.
impl Explain for () {
    #[inline(always)]
    fn pass(&mut self, _check: Check, _detail: impl FnOnce() -> String) {}

    #[inline(always)]
    fn fail(&mut self, _check: Check, _detail: impl FnOnce() -> String) {}
}
