//! Claims forwarded as request headers (`claim_to_headers`, `max_claim_header_bytes`): where a
//! claim is in the claims object, the header it sets, and the headers a claim may never set.
//! May use: `config::raw`, `config::error`, `contract::names`.

use serde_json::Value;

use crate::contract::names::{is_header_name, HEADER_SCOPES, HEADER_SERVICE};

use super::error::{err, ConfigError};
use super::raw::RawClaimHeader;

/// `max_claim_header_bytes` when not set.
pub(super) const DEFAULT_MAX_CLAIM_HEADER_BYTES: usize = 4096;

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

/// A provider's `max_claim_header_bytes` (default [`DEFAULT_MAX_CLAIM_HEADER_BYTES`]) and its
/// `claim_to_headers`, each header a valid name, not reserved, set by one claim only.
pub(super) fn compile_claim_headers(
    name: &str,
    max_bytes: Option<usize>,
    raw: Vec<RawClaimHeader>,
) -> Result<(usize, Vec<ClaimHeader>), ConfigError> {
    let max_claim_header_bytes = max_bytes.unwrap_or(DEFAULT_MAX_CLAIM_HEADER_BYTES);
    if !(1..=65_536).contains(&max_claim_header_bytes) {
        return err(
            format!("providers.{name}.max_claim_header_bytes"),
            "must be between 1 and 65536",
        );
    }
    let mut claim_to_headers: Vec<ClaimHeader> = Vec::new();
    for (i, ch) in raw.into_iter().enumerate() {
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
    Ok((max_claim_header_bytes, claim_to_headers))
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
