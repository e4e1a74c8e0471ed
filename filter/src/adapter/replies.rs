//! Every local reply's fixed parts, built once per configuration: the `WWW-Authenticate`
//! challenge of each reason (and of each rule's `insufficient_scope`), and each reason's JSON
//! body up to its `request_id`. A denial then only appends the request id.
//!
//! Uses: `reason` (the one place that maps a reason to status, challenge and body), `config`.

use crate::config::{Action, Config};
use crate::contract::reason::{self, Reason};

#[derive(Debug, Default)]
pub struct Replies {
    /// Index-aligned with [`Reason::ALL`]: the challenge without a scope.
    challenge: Vec<String>,
    /// Index-aligned with the rules: the `insufficient_scope` challenge with the rule's scopes.
    scope_challenge: Vec<String>,
    /// Index-aligned with [`Reason::ALL`]: the JSON body without its request id and `}`.
    body_head: Vec<String>,
    /// Index-aligned with [`Reason::ALL`]: `<code>: <description>`, the body of a gRPC reply
    /// (Envoy sends it as `grpc-message`).
    grpc_body: Vec<String>,
}

fn index(reason: Reason) -> usize {
    Reason::ALL.iter().position(|r| *r == reason).unwrap_or(0)
}

impl Replies {
    pub fn new(config: &Config) -> Replies {
        let body_head = Reason::ALL
            .iter()
            .map(|r| {
                let full = reason::body(*r, "");
                // `…"request_id":""}` without its last two characters: the id goes there.
                full.strip_suffix("\"}")
                    .map(|h| h.strip_suffix('"').unwrap_or(h).to_string())
                    .unwrap_or(full)
            })
            .collect();
        Replies {
            challenge: Reason::ALL
                .iter()
                .map(|r| reason::www_authenticate(*r, ""))
                .collect(),
            scope_challenge: config
                .rules
                .iter()
                .map(|rule| match &rule.action {
                    Action::Require { challenge, .. } => {
                        reason::www_authenticate(Reason::InsufficientScope, challenge)
                    }
                    Action::Allow => reason::www_authenticate(Reason::InsufficientScope, ""),
                })
                .collect(),
            body_head,
            grpc_body: Reason::ALL
                .iter()
                .map(|r| format!("{}: {}", r.code(), r.description()))
                .collect(),
        }
    }

    /// The `WWW-Authenticate` value of a denial for `reason` on rule `rule`.
    pub fn challenge(&self, reason: Reason, rule: Option<usize>) -> &str {
        let scoped = (reason == Reason::InsufficientScope)
            .then(|| rule.and_then(|r| self.scope_challenge.get(r)))
            .flatten();
        scoped
            .or_else(|| self.challenge.get(index(reason)))
            .map_or("Bearer realm=\"svcauth\"", String::as_str)
    }

    /// The JSON body of a denial for `reason` with `request_id`.
    pub fn body(&self, reason: Reason, request_id: &str) -> String {
        let head = self
            .body_head
            .get(index(reason))
            .map_or("{", String::as_str);
        let id = serde_json::to_string(request_id).unwrap_or_else(|_| "\"\"".into());
        let mut out = String::with_capacity(head.len() + id.len() + 1);
        out.push_str(head);
        out.push_str(&id);
        out.push('}');
        out
    }

    /// The body of a denial on a gRPC request.
    pub fn grpc_body(&self, reason: Reason) -> &str {
        self.grpc_body
            .get(index(reason))
            .map_or("denied", String::as_str)
    }
}
