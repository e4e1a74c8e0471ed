//! `svcauth verify`'s output: the decision as one JSON object (`--json`, and the source of the
//! text form), and as text. Uses the CLI's `config_cmd`, `time`, and this command's `explain`
//! lines and `why`.

use serde_json::{json, Map, Value};
use svcauth_filter::config::Config;
use svcauth_filter::contract::names::{HEADER_SCOPES, HEADER_SERVICE};
use svcauth_filter::contract::reason;
use svcauth_filter::decide::{self, Decision};

use super::explain::Line;
use super::why;
use crate::config_cmd::rule_summary;
use crate::time;

/// The decision as `--json` prints it; `why` is the denial's explanation in words.
pub fn object(
    config: &Config,
    decision: &Decision,
    request: (&str, &str),
    why: &str,
    checks: Option<&[Line]>,
) -> Map<String, Value> {
    let mut j = Map::new();
    j.insert("method".into(), request.0.into());
    j.insert("path".into(), request.1.into());
    match decision {
        Decision::Allow(a) => {
            j.insert("decision".into(), "allow".into());
            j.insert("status".into(), Value::Null);
            j.insert("rule".into(), a.rule.into());
            let mut upstream = Map::new();
            match &a.identity {
                Some(id) => {
                    let p = config.providers.get(id.provider);
                    j.insert("provider".into(), p.map(|p| p.name.clone()).into());
                    j.insert("caller".into(), id.subject.clone().into());
                    j.insert("scopes".into(), id.scopes.clone().into());
                    j.insert("expires".into(), id.exp.into());
                    upstream.insert(HEADER_SERVICE.into(), id.subject.clone().into());
                    upstream.insert(HEADER_SCOPES.into(), id.scopes_joined.clone().into());
                    for (h, v) in &id.claim_headers {
                        upstream.insert(h.clone(), v.clone().into());
                    }
                }
                None => {
                    j.insert("provider".into(), Value::Null);
                    j.insert("caller".into(), Value::Null);
                    j.insert("scopes".into(), Value::Null);
                }
            }
            match &a.strip {
                Some(decide::Strip::Header(h)) => {
                    j.insert("removes_header".into(), h.clone().into());
                }
                Some(decide::Strip::Cookie(c)) => {
                    j.insert("removes_cookie".into(), c.clone().into());
                }
                Some(decide::Strip::Param(q)) => {
                    j.insert("removes_param".into(), q.clone().into());
                }
                None => {}
            }
            j.insert("upstream_headers".into(), Value::Object(upstream));
        }
        Decision::Deny(d) => {
            let challenge = reason::www_authenticate(d.reason, decide::challenge(config, d.rule));
            j.insert("decision".into(), "deny".into());
            j.insert("status".into(), d.reason.status().into());
            j.insert("reason".into(), d.reason.code().into());
            j.insert("check".into(), d.check.name().into());
            j.insert("description".into(), d.reason.description().into());
            j.insert("www_authenticate".into(), challenge.into());
            j.insert("rule".into(), d.rule.into());
            j.insert(
                "provider".into(),
                d.provider
                    .and_then(|p| config.providers.get(p))
                    .map(|p| p.name.clone())
                    .into(),
            );
            j.insert("caller".into(), d.subject.clone().into());
            j.insert("token_hash".into(), d.token_hash.clone().into());
            j.insert("why".into(), why.into());
        }
    }
    if let Some(checks) = checks {
        j.insert(
            "checks".into(),
            checks
                .iter()
                .map(|c| json!({"check": c.name, "ok": c.ok, "detail": c.detail}))
                .collect::<Vec<_>>()
                .into(),
        );
    }
    j
}

/// The text form: a headline, the rows of `j` that matter for this decision, and the checks.
pub fn text(
    config: &Config,
    decision: &Decision,
    j: &Map<String, Value>,
    checks: &[Line],
) -> String {
    let s = |k: &str| j.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let mut rows: Vec<(String, String)> = Vec::new();
    let head = match decision {
        Decision::Allow(a) => {
            rows.push((
                "status".into(),
                "forwarded to the upstream (the filter sends no reply of its own)".into(),
            ));
            rows.push((
                "rule".into(),
                a.rule.map_or("(CORS preflight, bypassed)".into(), |r| {
                    rule_summary(config, r)
                }),
            ));
            if let Some(id) = &a.identity {
                rows.push(("caller".into(), id.subject.clone()));
                rows.push(("scopes".into(), id.scopes_joined.clone()));
                rows.push(("provider".into(), s("provider")));
                if let Some(Value::Object(up)) = j.get("upstream_headers") {
                    let lines: Vec<String> = up
                        .iter()
                        .map(|(k, v)| format!("{k}: {}", v.as_str().unwrap_or("")))
                        .collect();
                    rows.push(("upstream gets".into(), lines.join("\n")));
                }
                let strip = match &a.strip {
                    Some(decide::Strip::Header(h)) => Some(format!("header {h}")),
                    Some(decide::Strip::Cookie(c)) => {
                        Some(format!("cookie {c} (the other cookies are kept)"))
                    }
                    Some(decide::Strip::Param(q)) => Some(format!(
                        "query parameter {q} (the rest of the path is kept)"
                    )),
                    None => None,
                };
                if let Some(strip) = strip {
                    rows.push(("removed".into(), strip));
                }
                if let Some(exp) = j.get("expires").and_then(Value::as_i64) {
                    let now = time::system_now().unwrap_or(exp);
                    rows.push((
                        "token expires".into(),
                        format!("{exp} ({})", why::ago(now, exp)),
                    ));
                }
            } else {
                rows.push((
                    "caller".into(),
                    "anonymous (open route: no token checked)".into(),
                ));
            }
            format!("ALLOW  {} {}", s("method"), s("path"))
        }
        Decision::Deny(d) => {
            rows.push(("status".into(), d.reason.status().to_string()));
            rows.push((
                "reason".into(),
                format!("{}: {}", d.reason.code(), d.reason.description()),
            ));
            rows.push(("check".into(), d.check.name().to_string()));
            rows.push(("why".into(), s("why")));
            rows.push(("www-authenticate".into(), s("www_authenticate")));
            rows.push((
                "rule".into(),
                d.rule
                    .map_or("(none matched)".into(), |r| rule_summary(config, r)),
            ));
            if let Some(p) = d.provider.and_then(|p| config.providers.get(p)) {
                rows.push(("provider".into(), p.name.clone()));
            }
            if let Some(sub) = &d.subject {
                rows.push(("caller".into(), sub.clone()));
            }
            if let Some(h) = &d.token_hash {
                rows.push((
                    "token".into(),
                    format!("sha256 {h}… (as in the denial log)"),
                ));
            }
            format!("DENY  {} {}", s("method"), s("path"))
        }
    };
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut text = format!("{head}\n");
    for (k, v) in rows {
        let mut lines = v.lines();
        text.push_str(&format!("  {k:<width$}  {}\n", lines.next().unwrap_or("")));
        for more in lines {
            text.push_str(&format!("  {:<width$}  {more}\n", ""));
        }
    }
    if !checks.is_empty() {
        text.push_str("checks, in the filter's order:\n");
        let w = checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
        for c in checks {
            let mark = if c.ok { "ok  " } else { "FAIL" };
            text.push_str(&format!("  {mark}  {:<w$}  {}\n", c.name, c.detail));
        }
    }
    text
}
