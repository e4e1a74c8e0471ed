//! What `decide` returns: an [`Allowed`] request (the caller and what to strip) or a
//! [`Denial`] (the reason, the check that failed, and who), and the header lookup both sides
//! use. Uses check, contract, sources and verify's [`Verified`].

use std::rc::Rc;

use crate::check::Check;
use crate::contract::reason::Reason;
use crate::sources::Strip;
use crate::verify::Verified;

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
    /// The check that failed, as `--explain` names it.
    pub check: Check,
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
    pub(crate) fn bare(reason: Reason, check: Check, rule: Option<usize>) -> Denial {
        Denial {
            reason,
            check,
            rule,
            provider: None,
            subject: None,
            unverified_subject: None,
            token_hash: None,
            cache_hit: None,
        }
    }

    /// A denial with only a reason and the check that made it (no rule, provider or caller
    /// known yet): the adapter's checks after `decide` allowed the request
    /// ([`Check::RequestSignature`], [`Check::RateLimit`]).
    pub fn after(check: Check, reason: Reason) -> Denial {
        Denial::bare(reason, check, None)
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
