//! Where a token is (issue 16): a configured header, a cookie of the `cookie` header(s), or a
//! query parameter of `:path`, as Envoy's `jwt_authn` reads them; and how a verified token is
//! removed from the request before it goes upstream (`forward_token: false`), keeping the
//! rest of the cookies and of the path byte for byte.
//!
//! Host-free: `decide` calls [`extract`]; the adapter applies a [`Strip`]'s [`Edit`].

use std::borrow::Cow;

use crate::config::{Config, TokenSource};
use crate::contract::reason::Reason;

/// Where a verified credential is removed from the request before it goes upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Strip {
    /// A header: every value of it.
    Header(String),
    /// A cookie of the `cookie` header(s); the other cookies are kept.
    Cookie(String),
    /// A query parameter of `:path` (every one with that name); the rest of the path is kept
    /// byte for byte.
    Param(String),
}

/// What a [`Strip`] does to the request's headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edit<'a> {
    /// Nothing to change (the credential is not there).
    Nothing,
    /// Remove this header.
    Remove(&'a str),
    /// Set this header (`cookie` or `:path`) to this value.
    Set(&'static str, String),
}

impl Strip {
    /// Where a token of `source` is removed.
    pub fn of(source: &TokenSource) -> Strip {
        match source {
            TokenSource::Header { name, .. } => Strip::Header(name.clone()),
            TokenSource::Cookie(c) => Strip::Cookie(c.clone()),
            TokenSource::Param(q) => Strip::Param(q.clone()),
        }
    }

    /// The change to `headers` (as the decision saw them) that removes the credential.
    pub fn edit<'a, K: AsRef<str>, V: AsRef<str>>(&'a self, headers: &[(K, V)]) -> Edit<'a> {
        match self {
            Strip::Header(h) => Edit::Remove(h),
            Strip::Cookie(name) => {
                let mut kept: Vec<&str> = Vec::new();
                let mut removed = false;
                for (k, v) in headers {
                    if k.as_ref() != "cookie" {
                        continue;
                    }
                    for pair in v.as_ref().split(';') {
                        let pair = pair.trim_matches([' ', '\t']);
                        if pair.is_empty() {
                            continue;
                        }
                        if cookie_name(pair) == name {
                            removed = true;
                        } else {
                            kept.push(pair);
                        }
                    }
                }
                match (removed, kept.is_empty()) {
                    (false, _) => Edit::Nothing,
                    (true, true) => Edit::Remove("cookie"),
                    (true, false) => Edit::Set("cookie", kept.join("; ")),
                }
            }
            Strip::Param(name) => {
                let path = headers
                    .iter()
                    .find(|(k, _)| k.as_ref() == ":path")
                    .map_or("", |(_, v)| v.as_ref());
                match path_without_param(path, name) {
                    Some(p) => Edit::Set(":path", p),
                    None => Edit::Nothing,
                }
            }
        }
    }
}

/// The name of a `name=value` cookie pair (the whole pair if it has no `=`).
fn cookie_name(pair: &str) -> &str {
    pair.split_once('=')
        .map_or(pair, |(n, _)| n)
        .trim_matches([' ', '\t'])
}

/// The cookies of one `cookie` header value: `(name, value)`, the value without the double
/// quotes RFC 6265 allows around it. Pairs without `=` are no cookie.
fn cookie_pairs(value: &str) -> impl Iterator<Item = (&str, &str)> {
    value.split(';').filter_map(|pair| {
        let (n, v) = pair.trim_matches([' ', '\t']).split_once('=')?;
        let v = v.trim_matches([' ', '\t']);
        let v = v
            .strip_prefix('"')
            .and_then(|x| x.strip_suffix('"'))
            .unwrap_or(v);
        Some((n.trim_matches([' ', '\t']), v))
    })
}

/// The query of a `:path` (after the first `?`, before any `#`) and where it starts and ends.
fn query_span(path: &str) -> Option<(usize, usize)> {
    let end = path.find('#').unwrap_or(path.len());
    let start = path.get(..end)?.find('?')? + 1;
    Some((start, end))
}

/// The `&`-separated parameters of a `:path`'s query, each as `(name, value)` undecoded (a
/// parameter without `=` has an empty value).
fn query_pairs(path: &str) -> impl Iterator<Item = (&str, &str)> {
    let query = query_span(path)
        .and_then(|(s, e)| path.get(s..e))
        .unwrap_or_default();
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
}

/// `s` with its `%XX` escapes decoded (an invalid escape is kept as written; bytes that are
/// not UTF-8 become U+FFFD, which no token or configured name holds). `+` is kept.
pub fn percent_decode(s: &str) -> Cow<'_, str> {
    if !s.contains('%') {
        return Cow::Borrowed(s);
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        let hex = |at: usize| b.get(at).and_then(|h| char::from(*h).to_digit(16));
        match (c, hex(i + 1), hex(i + 2)) {
            (b'%', Some(hi), Some(lo)) => {
                out.push(u8::try_from(hi * 16 + lo).unwrap_or(0));
                i += 3;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

/// `path` without its query parameters named `name` (compared percent-decoded), the rest kept
/// byte for byte (a query left empty loses its `?`). `None` when no such parameter is there.
pub fn path_without_param(path: &str, name: &str) -> Option<String> {
    let (start, end) = query_span(path)?;
    let query = path.get(start..end)?;
    let is_it = |p: &str| percent_decode(p.split_once('=').map_or(p, |(n, _)| n)) == name;
    if !query.split('&').any(is_it) {
        return None;
    }
    let kept: Vec<&str> = query.split('&').filter(|p| !is_it(p)).collect();
    let kept = kept.join("&");
    let head = path.get(..start.saturating_sub(1)).unwrap_or_default();
    let tail = path.get(end..).unwrap_or_default();
    if kept.is_empty() {
        Some(format!("{head}{tail}"))
    } else {
        Some(format!("{head}?{kept}{tail}"))
    }
}

/// A found token and the index of the [`crate::config::TokenSource`] it came from.
pub(crate) struct Found<'h> {
    pub(crate) token: Cow<'h, str>,
    pub(crate) source: usize,
}

/// Records a token; a second one (of any place) is `MultipleTokens`. An empty one is no token.
fn put<'h>(
    found: &mut Option<Found<'h>>,
    token: Cow<'h, str>,
    source: usize,
) -> Result<(), Reason> {
    if token.is_empty() {
        return Ok(());
    }
    if found.is_some() {
        return Err(Reason::MultipleTokens);
    }
    *found = Some(Found { token, source });
    Ok(())
}

/// Finds the token: in a configured header, a configured cookie of the `cookie` header(s), or
/// a configured query parameter of `:path`. `Err(MultipleTokens)` when more than one
/// configured place holds one (a cookie or parameter sent twice included).
pub(crate) fn extract<'h, K: AsRef<str>, V: AsRef<str>>(
    config: &Config,
    headers: &'h [(K, V)],
) -> Result<Option<Found<'h>>, Reason> {
    let mut found: Option<Found<'h>> = None;
    let cookies = config
        .sources
        .iter()
        .any(|s| matches!(s, TokenSource::Cookie(_)));
    let params = config
        .sources
        .iter()
        .any(|s| matches!(s, TokenSource::Param(_)));
    for (k, v) in headers {
        let name = k.as_ref();
        if cookies && name == "cookie" {
            for (cookie, value) in cookie_pairs(v.as_ref()) {
                let at = config
                    .sources
                    .iter()
                    .position(|s| matches!(s, TokenSource::Cookie(c) if c == cookie));
                if let Some(si) = at {
                    put(&mut found, Cow::Borrowed(value), si)?;
                }
            }
            continue;
        }
        if params && name == ":path" {
            for (param, value) in query_pairs(v.as_ref()) {
                let param = percent_decode(param);
                let at = config
                    .sources
                    .iter()
                    .position(|s| matches!(s, TokenSource::Param(q) if *q == param));
                if let Some(si) = at {
                    put(&mut found, percent_decode(value), si)?;
                }
            }
            continue;
        }
        let Some((si, prefix)) = config
            .sources
            .iter()
            .enumerate()
            .find_map(|(i, s)| match s {
                TokenSource::Header { name: h, prefix } if h == name => {
                    Some((i, prefix.as_deref()))
                }
                _ => None,
            })
        else {
            continue;
        };
        // Envoy joins repeated headers of some names (`authorization` among them) into one
        // value with commas. A token never holds a comma, so each element is read on its own:
        // `Bearer a,Bearer b` is two tokens, as two separate headers are.
        let joined = !prefix.is_some_and(|p| p.contains(','));
        for element in v.as_ref().split(|c| joined && c == ',') {
            let value = element.trim_start_matches([' ', '\t']);
            let rest = match prefix {
                None => value,
                Some(prefix) => match value.get(..prefix.len()) {
                    // The scheme is case-insensitive (RFC 7235 §2.1): `bearer x` is accepted.
                    Some(head) if head.eq_ignore_ascii_case(prefix) => {
                        value.get(prefix.len()..).unwrap_or_default()
                    }
                    // Another scheme (e.g. Basic) in this header is not ours to judge.
                    _ => continue,
                },
            };
            let token = rest.trim_matches(|c| c == ' ' || c == '\t');
            put(&mut found, Cow::Borrowed(token), si)?;
        }
    }
    Ok(found)
}
