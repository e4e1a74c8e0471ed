//! The names svcauth puts on the wire: the identity headers it sets for the upstream, the tag
//! headers and filter-state properties it publishes for Envoy's tracer and access log, and the
//! rules for what counts as a header name and as a spelling of one of ours.
//! A leaf: it uses nothing of the crate.

/// Identity headers svcauth sets on allowed requests (and always strips from clients).
pub const HEADER_SERVICE: &str = "x-service-name";
pub const HEADER_SCOPES: &str = "x-service-scopes";
/// Request headers the filter sets for Envoy's tracer `custom_tags` (also always stripped).
pub const TAG_DECISION: &str = "x-svcauth-decision";
pub const TAG_SERVICE: &str = "x-svcauth-service";
pub const TAG_REASON: &str = "x-svcauth-reason";
pub const TAG_PROVIDER: &str = "x-svcauth-provider";

/// The decision, published once per request as stream properties: Envoy keeps each as filter
/// state `wasm.<name>`, which tracing `custom_tags` and access logs read
/// (`%FILTER_STATE(wasm.svcauth_decision:PLAIN)%`). Unlike request headers, they never reach
/// the upstream and do not clear Envoy's route cache.
pub const PROP_DECISION: &str = "svcauth_decision";
pub const PROP_SERVICE: &str = "svcauth_service";
pub const PROP_REASON: &str = "svcauth_reason";
pub const PROP_PROVIDER: &str = "svcauth_provider";

/// Whether header name `name`, as a client sent it, is `ours` in a spelling a backend may fold
/// into the same name: ASCII case ignored, `_` read as `-` (CGI/WSGI-style servers and some
/// proxies do both).
pub fn folds_to(name: &str, ours: &str) -> bool {
    let fold = |c: u8| {
        if c == b'_' {
            b'-'
        } else {
            c.to_ascii_lowercase()
        }
    };
    name.len() == ours.len()
        && name
            .bytes()
            .zip(ours.bytes())
            .all(|(a, b)| fold(a) == fold(b))
}

/// RFC 7230 token characters, lower-case only (Envoy lower-cases header names).
pub fn is_header_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b"!#$%&'*+-.^_`|~".contains(&b)
        })
}
