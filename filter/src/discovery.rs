//! OIDC discovery (OpenID Connect Discovery 1.0 §4, RFC 8414 §3): where an issuer's discovery
//! document is, and the checks a fetched document must pass before its `jwks_uri` is used.
//!
//! Pure and host-free: the adapter fetches, this module decides. A document is used only if its
//! `issuer` is byte-for-byte the provider's issuer (OIDC Discovery §4.3, RFC 8414 §3.3) and its
//! `jwks_uri` is an `https` or `http` URL whose host the operator allows.
//!
//! Also the `remote_jwks.discovery` settings, raw and compiled (the rest of `remote_jwks` is
//! compiled by `config`, which calls [`compile`]).
//!
//! Uses: nothing of the crate (`serde`, `serde_json`).

use serde::Deserialize;
use serde_json::Value;

/// The discovery document's path under an issuer (appended to the issuer's path).
pub const WELL_KNOWN: &str = "/.well-known/openid-configuration";

/// Values quoted in an error are cut to this many characters (a refused document is the
/// remote party's text, and ends up in a log line).
const QUOTE_MAX: usize = 96;

/// An `https://` or `http://` URL, as far as a fetch through an Envoy cluster needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    pub https: bool,
    /// Lower-case host; an IPv6 literal keeps its brackets.
    pub host: String,
    pub port: Option<u16>,
    /// Path and query as written; `/` when the URL has neither.
    pub path: String,
}

impl HttpUrl {
    /// Parses `s`. Refused: another scheme, user info (`user@host`), a fragment, an empty or
    /// malformed host or port, non-ASCII, white space, controls and characters a URL never
    /// holds raw (`"<>\^`{|}`).
    pub fn parse(s: &str) -> Result<HttpUrl, String> {
        if let Some(c) = s.chars().find(|c| !url_char(*c)) {
            return Err(format!("holds the character {c:?}"));
        }
        let (scheme, rest) = s
            .split_once("://")
            .ok_or_else(|| "is not an absolute URL (scheme://host/path)".to_string())?;
        let https = match scheme.to_ascii_lowercase().as_str() {
            "https" => true,
            "http" => false,
            _ => return Err(format!("scheme {scheme:?} is not https or http")),
        };
        if rest.contains('#') {
            return Err("has a fragment".into());
        }
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(split);
        if authority.contains('@') {
            return Err("has user info (user@host)".into());
        }
        let (host, port) = split_host_port(authority)?;
        let path = match path.chars().next() {
            None => "/".to_string(),
            Some('?') => format!("/{path}"),
            Some(_) => path.to_string(),
        };
        Ok(HttpUrl {
            https,
            host,
            port,
            path,
        })
    }

    /// `host[:port]`, the `:authority` of a request for this URL.
    pub fn authority(&self) -> String {
        match self.port {
            Some(p) => format!("{}:{p}", self.host),
            None => self.host.clone(),
        }
    }
}

/// A character that may stand raw in a URL (RFC 3986 reserved and unreserved, and `%`).
fn url_char(c: char) -> bool {
    c.is_ascii_graphic() && !matches!(c, '"' | '<' | '>' | '\\' | '^' | '`' | '{' | '|' | '}')
}

/// A host name as an allow-list holds it: lower-case letters, digits, `-`, `.`, `_`, or an
/// IPv6 literal in brackets.
pub fn valid_host(host: &str) -> bool {
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return !inner.is_empty()
            && inner
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.');
    }
    !host.is_empty()
        && !host.starts_with('.')
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
}

fn split_host_port(authority: &str) -> Result<(String, Option<u16>), String> {
    let (host, port) = if authority.starts_with('[') {
        match authority.find(']') {
            Some(end) => {
                let (h, rest) = authority.split_at(end + 1);
                match rest.strip_prefix(':') {
                    Some(p) => (h, Some(p)),
                    None if rest.is_empty() => (h, None),
                    None => return Err(format!("host {authority:?} is malformed")),
                }
            }
            None => return Err(format!("host {authority:?} is malformed")),
        }
    } else {
        match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let host = host.to_ascii_lowercase();
    if !valid_host(&host) {
        return Err(format!("host {:?} is not a host name", quote(&host)));
    }
    let port = match port {
        None => None,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => Some(n),
            _ => return Err(format!("port {:?} is not 1-65535", quote(p))),
        },
    };
    Ok((host, port))
}

/// The path of `issuer`'s discovery document: the issuer's path without its trailing `/`,
/// then [`WELL_KNOWN`] (OIDC Discovery §4). Refused: an issuer that is not an http(s) URL, or
/// that has a query.
pub fn document_path(issuer: &HttpUrl) -> Result<String, String> {
    if issuer.path.contains('?') {
        return Err("an issuer with a query has no discovery document".into());
    }
    Ok(format!("{}{WELL_KNOWN}", issuer.path.trim_end_matches('/')))
}

/// Where the keys are, as a discovery document named them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwksTarget {
    /// The `jwks_uri`, as written in the document.
    pub uri: String,
    /// `host[:port]` of it: the `:authority` of the key fetch.
    pub authority: String,
    /// Path and query of it: the `:path` of the key fetch.
    pub path: String,
}

/// Checks `uri` (a `jwks_uri`) against the allowed hosts (lower-case).
pub fn jwks_target(uri: &str, allowed_hosts: &[String]) -> Result<JwksTarget, String> {
    let url = HttpUrl::parse(uri).map_err(|e| format!("jwks_uri {:?} {e}", quote(uri)))?;
    if !allowed_hosts.contains(&url.host) {
        return Err(format!(
            "jwks_uri host {:?} is not allowed (allowed_jwks_hosts: {})",
            url.host,
            allowed_hosts.join(", ")
        ));
    }
    Ok(JwksTarget {
        uri: uri.to_string(),
        authority: url.authority(),
        path: url.path,
    })
}

/// Checks a fetched discovery document: at most `max_bytes`, a JSON object whose `issuer` is
/// exactly `issuer` and whose `jwks_uri` passes [`jwks_target`]. The error says why not.
pub fn check_document(
    body: &[u8],
    max_bytes: usize,
    issuer: &str,
    allowed_hosts: &[String],
) -> Result<JwksTarget, String> {
    if body.len() > max_bytes {
        return Err(format!(
            "document of {} bytes exceeds the {max_bytes}-byte limit",
            body.len()
        ));
    }
    let doc: Value =
        serde_json::from_slice(body).map_err(|_| "document is not JSON".to_string())?;
    let Some(obj) = doc.as_object() else {
        return Err("document is not a JSON object".into());
    };
    match obj.get("issuer") {
        None => return Err("document has no issuer".into()),
        Some(Value::String(got)) if got == issuer => {}
        Some(Value::String(got)) => {
            return Err(format!(
                "document issuer {:?} is not the provider's issuer {issuer:?} (refused, OIDC Discovery 4.3)",
                quote(got)
            ))
        }
        Some(_) => return Err("document issuer is not a string".into()),
    }
    match obj.get("jwks_uri") {
        None => Err("document has no jwks_uri".into()),
        Some(Value::String(uri)) => jwks_target(uri, allowed_hosts),
        Some(_) => Err("document jwks_uri is not a string".into()),
    }
}

/// `s`, cut to [`QUOTE_MAX`] characters (with `…` when cut).
fn quote(s: &str) -> String {
    match s.char_indices().nth(QUOTE_MAX) {
        Some((at, _)) => format!("{}…", s.get(..at).unwrap_or_default()),
        None => s.to_string(),
    }
}

// ---------------------------------------------------------------- settings ------------------

/// `remote_jwks.discovery` as written: `true` (every default), `false` (off) or an object.
#[derive(Debug)]
pub enum RawDiscoveryOpt {
    Off,
    On(RawDiscovery),
}

impl<'de> Deserialize<'de> for RawDiscoveryOpt {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = RawDiscoveryOpt;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("true, false or an object")
            }
            fn visit_bool<E: serde::de::Error>(self, on: bool) -> Result<Self::Value, E> {
                Ok(if on {
                    RawDiscoveryOpt::On(RawDiscovery::default())
                } else {
                    RawDiscoveryOpt::Off
                })
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                m: M,
            ) -> Result<Self::Value, M::Error> {
                // Through the map itself, so that an unknown field is refused with its path.
                RawDiscovery::deserialize(serde::de::value::MapAccessDeserializer::new(m))
                    .map(RawDiscoveryOpt::On)
            }
        }
        d.deserialize_any(Visit)
    }
}

/// The `remote_jwks.discovery` object as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDiscovery {
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    jwks_cluster: Option<String>,
    #[serde(default)]
    allowed_jwks_hosts: Option<Vec<String>>,
    #[serde(default)]
    refresh_seconds: Option<u64>,
    #[serde(default)]
    timeout_ms: Option<u64>,
    #[serde(default)]
    max_bytes: Option<usize>,
}

/// OIDC discovery settings: the document is fetched from the `remote_jwks` cluster, checked
/// (exact issuer, allowed `jwks_uri` host), and its `jwks_uri` then fetched like a fixed path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovery {
    /// The document's path (default `<issuer path>/.well-known/openid-configuration`).
    pub path: String,
    /// The document request's `:authority` (default: the issuer's `host[:port]`).
    pub authority: String,
    /// The cluster of the JWKS fetch (default: the `remote_jwks` cluster).
    pub jwks_cluster: String,
    /// Lower-case hosts `jwks_uri` may name (default: the issuer's host).
    pub allowed_jwks_hosts: Vec<String>,
    /// Rediscovery interval.
    pub refresh_seconds: u64,
    /// Timeout of the document fetch.
    pub timeout_ms: u64,
    /// Larger documents are refused before their body is read.
    pub max_bytes: usize,
}

/// Compiles `remote_jwks.discovery` of a provider with `issuer`, whose `remote_jwks` (at
/// `prefix`, e.g. `providers.internal.remote_jwks`) names `cluster`, maybe an `authority`
/// (already checked), and `timeout_ms`. The error names the field.
pub fn compile(
    prefix: &str,
    raw: RawDiscovery,
    issuer: &str,
    cluster: &str,
    authority: Option<String>,
    timeout_ms: u64,
) -> Result<Discovery, String> {
    let at = |field: &str| format!("{prefix}.discovery{field}");
    let url = HttpUrl::parse(issuer).map_err(|e| {
        format!(
            "{}: needs the provider's issuer to be an https:// or http:// URL: the issuer {e}",
            at("")
        )
    })?;
    let path = match raw.path {
        Some(p) if p.starts_with('/') && p.chars().all(url_char) => p,
        Some(p) => return Err(format!("{}: {p:?} must be an absolute path", at(".path"))),
        None => {
            document_path(&url).map_err(|e| format!("{}: {e} (set discovery.path)", at(".path")))?
        }
    };
    let jwks_cluster = raw.jwks_cluster.unwrap_or_else(|| cluster.to_string());
    if jwks_cluster.is_empty() {
        return Err(format!(
            "{}: must name an Envoy cluster",
            at(".jwks_cluster")
        ));
    }
    let allowed_jwks_hosts = match raw.allowed_jwks_hosts {
        None => vec![url.host.clone()],
        Some(list) if !(1..=32).contains(&list.len()) => {
            return Err(format!(
                "{}: must list between 1 and 32 hosts",
                at(".allowed_jwks_hosts")
            ))
        }
        Some(list) => {
            let mut hosts = Vec::with_capacity(list.len());
            for h in list {
                let lower = h.to_ascii_lowercase();
                if !valid_host(&lower) {
                    return Err(format!(
                        "{}: {h:?} is not a host name (no scheme, port or path)",
                        at(".allowed_jwks_hosts")
                    ));
                }
                hosts.push(lower);
            }
            hosts
        }
    };
    let within = |v: u64, lo: u64, hi: u64, field: &str| {
        if (lo..=hi).contains(&v) {
            Ok(v)
        } else {
            Err(format!("{}: must be between {lo} and {hi}", at(field)))
        }
    };
    let refresh_seconds = within(
        raw.refresh_seconds.unwrap_or(3600),
        1,
        86_400,
        ".refresh_seconds",
    )?;
    let timeout_ms = within(
        raw.timeout_ms.unwrap_or(timeout_ms),
        10,
        60_000,
        ".timeout_ms",
    )?;
    let max_bytes = raw.max_bytes.unwrap_or(32_768);
    if !(256..=1_048_576).contains(&max_bytes) {
        return Err(format!(
            "{}: must be between 256 and 1048576",
            at(".max_bytes")
        ));
    }
    Ok(Discovery {
        path,
        authority: authority.unwrap_or_else(|| url.authority()),
        jwks_cluster,
        allowed_jwks_hosts,
        refresh_seconds,
        timeout_ms,
        max_bytes,
    })
}
