//! Where a provider's token may be found: `TokenSource` (a header with an optional prefix, a
//! cookie, a query parameter) and the compile step of `from_headers`, `from_cookies` and
//! `from_params`, which shares one list of locations between every provider.
//! May use: `config::raw`, `config::error`, `contract::names`.

use crate::contract::names::{is_header_name, HEADER_SCOPES, HEADER_SERVICE};

use super::error::{err, ConfigError};
use super::raw::RawHeaderSource;

/// Where a token may be found (`from_headers`, `from_cookies`, `from_params`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// A request header and an optional value prefix (e.g. `Bearer `).
    Header {
        /// Lower-case header name.
        name: String,
        /// Prefix before the token; the scheme part is compared case-insensitively.
        prefix: Option<String>,
    },
    /// A cookie of the `cookie` header(s), by its exact (case-sensitive) name.
    Cookie(String),
    /// A query parameter of `:path`, by its name (compared after percent-decoding).
    Param(String),
}

impl TokenSource {
    /// `authorization "Bearer "`, `x-service-token`, `cookie session`, `param access_token`.
    pub fn describe(&self) -> String {
        match self {
            TokenSource::Header { name, prefix: None } => name.clone(),
            TokenSource::Header {
                name,
                prefix: Some(p),
            } => format!("{name} {p:?}"),
            TokenSource::Cookie(c) => format!("cookie {c}"),
            TokenSource::Param(q) => format!("param {q}"),
        }
    }

    /// The header name, for a header source.
    pub fn header(&self) -> Option<&str> {
        match self {
            TokenSource::Header { name, .. } => Some(name),
            _ => None,
        }
    }
}

/// A provider's token locations, as indices into `sources` (shared by every provider, one
/// entry per distinct location). With none of `from_headers`, `from_cookies` and
/// `from_params` given, the default: `authorization: Bearer …`.
pub(super) fn compile_sources(
    name: &str,
    from_headers: Option<Vec<RawHeaderSource>>,
    from_cookies: Option<Vec<String>>,
    from_params: Option<Vec<String>>,
    sources: &mut Vec<TokenSource>,
) -> Result<Vec<usize>, ConfigError> {
    let at = |field: &str| format!("providers.{name}.{field}");
    let from_headers = match (from_headers, &from_cookies, &from_params) {
        (None, None, None) => Some(vec![RawHeaderSource {
            name: "authorization".into(),
            value_prefix: Some("Bearer ".into()),
        }]),
        (h, _, _) => h,
    };
    for (field, empty) in [
        (
            "from_headers",
            from_headers.as_ref().is_some_and(Vec::is_empty),
        ),
        (
            "from_cookies",
            from_cookies.as_ref().is_some_and(Vec::is_empty),
        ),
        (
            "from_params",
            from_params.as_ref().is_some_and(Vec::is_empty),
        ),
    ] {
        if empty {
            return err(at(field), "must list at least one name (or be omitted)");
        }
    }
    let mut wanted: Vec<(String, TokenSource)> = Vec::new();
    for (i, s) in from_headers.unwrap_or_default().into_iter().enumerate() {
        let header = s.name.to_ascii_lowercase();
        let field = format!("providers.{name}.from_headers[{i}]");
        if !is_header_name(&header) {
            return err(
                format!("{field}.name"),
                format!("{:?} is not a valid header name", s.name),
            );
        }
        if header == "cookie" {
            return err(
                format!("{field}.name"),
                "a token in a cookie is read with from_cookies",
            );
        }
        if header == HEADER_SERVICE || header == HEADER_SCOPES || header.starts_with("x-svcauth-") {
            return err(
                format!("{field}.name"),
                format!("{header:?} is a header svcauth sets (and strips from every request)"),
            );
        }
        if s.value_prefix
            .as_deref()
            .is_some_and(|p| p.is_empty() || p.chars().any(|c| c.is_control()))
        {
            return err(
                format!("{field}.value_prefix"),
                "must be non-empty printable text",
            );
        }
        let src = TokenSource::Header {
            name: header,
            prefix: s.value_prefix,
        };
        let clash = sources
            .iter()
            .chain(wanted.iter().map(|(_, w)| w))
            .any(|x| x != &src && x.header().is_some() && x.header() == src.header());
        if clash {
            return err(
                field,
                format!(
                    "header {:?} is configured with two different prefixes",
                    src.header().unwrap_or_default()
                ),
            );
        }
        wanted.push((format!("from_headers[{i}]"), src));
    }
    for (i, c) in from_cookies.unwrap_or_default().into_iter().enumerate() {
        // RFC 6265 §4.1.1: a cookie name is an RFC 7230 token; its case is kept.
        let ok = !c.is_empty()
            && c.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !ok {
            return err(
                format!("providers.{name}.from_cookies[{i}]"),
                format!("{c:?} is not a cookie name (RFC 6265 token)"),
            );
        }
        wanted.push((format!("from_cookies[{i}]"), TokenSource::Cookie(c)));
    }
    for (i, q) in from_params.unwrap_or_default().into_iter().enumerate() {
        // Unreserved characters only (RFC 3986 §2.3), so that the name reads the same whether
        // a parser decodes it or not.
        let ok = !q.is_empty()
            && q.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
        if !ok {
            return err(
                format!("providers.{name}.from_params[{i}]"),
                format!("{q:?} is not a query parameter name (letters, digits, - . _ ~)"),
            );
        }
        wanted.push((format!("from_params[{i}]"), TokenSource::Param(q)));
    }
    let mut mine = Vec::with_capacity(wanted.len());
    for (field, src) in wanted {
        let idx = match sources.iter().position(|x| *x == src) {
            Some(i) => i,
            None => {
                sources.push(src);
                sources.len() - 1
            }
        };
        if mine.contains(&idx) {
            return err(at(&field), "is listed twice");
        }
        mine.push(idx);
    }
    Ok(mine)
}
