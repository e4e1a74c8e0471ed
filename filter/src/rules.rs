//! Which rule a request meets: method and path matching (first match wins, case variants of
//! a case-sensitive rule refused), scope coverage (`ns:*`), and a rule's `scope="…"`
//! challenge. Uses config and path.

use crate::config::{Action, Config, PathMatch, Rule};

/// Whether `rule` covers a request with this method: the method is listed (ASCII case
/// ignored, as some frameworks upper-case it), `HEAD` under a `GET` (frameworks serve `HEAD`
/// with the `GET` handler), or the rule lists none.
fn method_matches(rule: &Rule, method: &str) -> bool {
    rule.methods.is_empty()
        || rule.methods.iter().any(|m| {
            m.eq_ignore_ascii_case(method) || (m == "GET" && method.eq_ignore_ascii_case("HEAD"))
        })
}

fn path_matches(rule: &Rule, path: &str, fold: bool) -> bool {
    match &rule.path {
        PathMatch::Exact(p) => crate::path::exact_matches(path, p, fold),
        PathMatch::Prefix(p) => crate::path::prefix_matches(path, p, fold),
    }
}

/// Whether `granted` covers `required`: equal, or a granted `ns:*` covers `ns:anything`.
pub fn covers(granted: &[String], required: &str) -> bool {
    granted.iter().any(|g| {
        g == required
            || g.strip_suffix('*')
                .is_some_and(|ns| ns.ends_with(':') && required.starts_with(ns))
    })
}

/// The index of the first rule that matches the request (`path` is the raw `:path`), `None`
/// if none does, or why the path is refused. A path that a case-sensitive rule matches only
/// when ASCII case is ignored is refused too: some backends (Express by default) route
/// case-insensitively, so it could reach that rule's resource through a laxer rule.
pub fn match_rule(
    config: &Config,
    method: &str,
    path: &str,
) -> Result<Option<usize>, crate::path::Refusal> {
    let canon = crate::path::canonical(path)?;
    for (i, rule) in config.rules.iter().enumerate() {
        if !method_matches(rule, method) {
            continue;
        }
        if path_matches(rule, &canon, rule.ignore_case) {
            return Ok(Some(i));
        }
        if !rule.ignore_case && path_matches(rule, &canon, true) {
            return Err(crate::path::CASE_VARIANT);
        }
    }
    Ok(None)
}

/// The `scope="…"` challenge for a denial (empty unless the rule requires scopes).
pub fn challenge(config: &Config, rule: Option<usize>) -> &str {
    match rule.and_then(|r| config.rules.get(r)).map(|r| &r.action) {
        Some(Action::Require { challenge, .. }) => challenge,
        _ => "",
    }
}
