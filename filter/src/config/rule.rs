//! The rules: `Rule` (what a request's path and method must match, in canonical form),
//! `PathMatch`, `Action` (allow, or require a token from some providers with scopes and
//! claims), and the compile step of one `rules[i]` entry.
//! May use: `config::raw`, `config::error`, `config::provider`, `path`.

use serde_json::Value;

use super::error::{err, ConfigError};
use super::provider::Provider;
use super::raw::{RawMatch, RawRequires, RawRule};

/// What a rule matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatch {
    Exact(String),
    Prefix(String),
}

/// What a matched rule demands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Let through without a token.
    Allow,
    /// A valid token from one of `providers` (indices; `None` = any) with these scopes.
    Require {
        providers: Option<Vec<usize>>,
        scopes_all: Vec<String>,
        scopes_any: Vec<String>,
        /// Claims the caller's token must carry with exactly these values (403 otherwise).
        claims: Vec<(String, Value)>,
        /// The `scope="…"` value of a 403: the required scopes, space-separated.
        challenge: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// The rule's path in canonical form ([`crate::path::canonical`]).
    pub path: PathMatch,
    /// Compare the path ignoring ASCII case (`match.ignore_case`).
    pub ignore_case: bool,
    /// Upper-case methods; empty = any. A list with `GET` also matches `HEAD`.
    pub methods: Vec<String>,
    pub action: Action,
    /// Write an audit line for every allowed call on this rule.
    pub audit: bool,
    /// The request must be signed (`requires.signed`), whatever its provider's `required`.
    pub signed: bool,
}

/// `rules[i]`: its match, its action, and the checks between them (`audit` needs a caller;
/// `requires.signed` needs providers that know their callers' signing secrets).
pub(super) fn compile_rule(
    i: usize,
    rr: RawRule,
    providers: &[Provider],
) -> Result<Rule, ConfigError> {
    let at = |field: &str| format!("rules[{i}].{field}");
    let RawRule {
        match_,
        allow,
        requires,
        audit,
    } = rr;
    let ignore_case = match_.ignore_case;
    let (path, methods) = compile_match(i, match_)?;
    let signed = requires.as_ref().is_some_and(|r| r.signed);
    let action = match (allow, requires) {
        (Some(true), None) => Action::Allow,
        (Some(true), Some(_)) => {
            return err(
                at("allow"),
                "a rule with allow: true cannot also have requires",
            )
        }
        (Some(false), _) => {
            return err(
                at("allow"),
                "only allow: true is meaningful; to require a token use requires",
            )
        }
        (None, None) => return err(format!("rules[{i}]"), "needs allow: true or requires"),
        (None, Some(req)) => compile_requires(i, req, providers)?,
    };
    if audit && action == Action::Allow {
        return err(
            at("audit"),
            "audits callers, so it needs requires (an allow rule has no caller)",
        );
    }
    if let (
        true,
        Action::Require {
            providers: only, ..
        },
    ) = (signed, &action)
    {
        // Every provider the rule accepts must know its callers' signing secrets.
        let unsigned = providers
            .iter()
            .enumerate()
            .find(|(x, p)| only.as_ref().is_none_or(|o| o.contains(x)) && p.signing.is_none());
        if let Some((_, p)) = unsigned {
            return err(
                at("requires.signed"),
                format!("provider {:?} has no signed_requests (or name the providers that do in requires.providers)", p.name),
            );
        }
    }
    Ok(Rule {
        path,
        ignore_case,
        methods,
        action,
        audit,
        signed,
    })
}

/// `rules[i].match`: exactly one of `prefix` and `path`, written in canonical form (requests
/// are matched in it), and the methods, upper-cased.
fn compile_match(i: usize, m: RawMatch) -> Result<(PathMatch, Vec<String>), ConfigError> {
    let at = |field: &str| format!("rules[{i}].{field}");
    let path = match (m.prefix, m.path) {
        (Some(p), None) => PathMatch::Prefix(p),
        (None, Some(p)) => PathMatch::Exact(p),
        _ => return err(at("match"), "needs exactly one of prefix or path"),
    };
    let path = {
        let (PathMatch::Prefix(p) | PathMatch::Exact(p)) = &path;
        if !p.starts_with('/') || p.contains(['?', '#']) {
            return err(
                at("match"),
                format!("{p:?} must start with / and hold no query or fragment"),
            );
        }
        // Requests are matched in canonical form, so the rule's path is written in it too.
        let canon = match crate::path::canonical(p) {
            Ok(c) => c.into_owned(),
            Err(r) => {
                return err(
                    at("match"),
                    format!("{p:?} is not a canonical path ({})", r.what()),
                )
            }
        };
        match path {
            PathMatch::Prefix(_) => PathMatch::Prefix(canon),
            PathMatch::Exact(_) => PathMatch::Exact(canon),
        }
    };
    let mut methods = Vec::new();
    for m in m.methods.unwrap_or_default() {
        if m.is_empty() || !m.bytes().all(|b| b.is_ascii_alphabetic()) {
            return err(at("match.methods"), format!("{m:?} is not an HTTP method"));
        }
        methods.push(m.to_ascii_uppercase());
    }
    Ok((path, methods))
}

/// `rules[i].requires`: the providers by name, the scopes (each an RFC 6749 scope-token) and
/// the challenge they make, the required claims.
fn compile_requires(
    i: usize,
    req: RawRequires,
    providers: &[Provider],
) -> Result<Action, ConfigError> {
    let at = |field: &str| format!("rules[{i}].{field}");
    let only = match req.providers {
        None => None,
        Some(names) => {
            if names.is_empty() {
                return err(
                    at("requires.providers"),
                    "must name at least one provider (omit it to accept any)",
                );
            }
            let mut idx = Vec::new();
            for n in names {
                match providers.iter().position(|p| p.name == n) {
                    Some(x) => idx.push(x),
                    None => {
                        return err(at("requires.providers"), format!("unknown provider {n:?}"))
                    }
                }
            }
            Some(idx)
        }
    };
    for (field, list) in [
        ("requires.scopes_all", &req.scopes_all),
        ("requires.scopes_any", &req.scopes_any),
    ] {
        if let Some(bad) = list.iter().find(|s| !is_scope_token(s)) {
            return err(
                at(field),
                format!("{bad:?} is not a valid scope (RFC 6749 scope-token)"),
            );
        }
    }
    let challenge = req
        .scopes_all
        .iter()
        .chain(req.scopes_any.iter())
        .cloned()
        .collect::<Vec<_>>()
        .join(" ");
    if req.claims.keys().any(|c| c.is_empty()) {
        return err(at("requires.claims"), "claim names must not be empty");
    }
    Ok(Action::Require {
        providers: only,
        scopes_all: req.scopes_all,
        scopes_any: req.scopes_any,
        claims: req.claims.into_iter().collect(),
        challenge,
    })
}

/// RFC 6749 scope-token: %x21 / %x23-5B / %x5D-7E.
fn is_scope_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
}
