//! `svcauth verify`: one request through the filter's own `decide`, with this machine's clock,
//! printed as Envoy would answer it; `--explain` walks the checks in the filter's order.

use std::ffi::OsString;
use std::io::Read as _;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use lexopt::Arg::{Long, Short, Value as Pos};
use serde_json::{json, Map, Value};
use svcauth_filter::cache::TokenCache;
use svcauth_filter::config::{Action, Config, TokenSource};
use svcauth_filter::contract::reason::{self, Reason};
use svcauth_filter::decide::{self, Decision, Denial};
use svcauth_filter::verify::{self as core_verify, Explain};

use crate::args;
use crate::config_cmd::{self, provider_sources, rule_summary};
use crate::time;
use crate::{out, CliError, CmdResult, EXIT_DENIED};

pub const HELP: &str = "\
svcauth verify: decide one request carrying TOKEN exactly as the filter in Envoy would

Usage: svcauth verify --config FILE [--method M] [--path P] [options] (TOKEN | - | --no-token)

Runs the filter's own code (the same crate Envoy runs as wasm: Config::from_json, then decide)
on a request `M P` that carries TOKEN where the config first looks for one (a header with
its value_prefix, a cookie, or a query parameter added to P), with this machine's clock, and
prints what Envoy would do: allow (forward upstream, with the identity headers it would set
and what it removes) or deny (the status, the reason code, the WWW-Authenticate challenge),
the caller, its scopes and the rule that matched. TOKEN `-` reads the token from stdin (keeps
it out of shell history and ps).

Options:
      --config FILE   the plugin configuration JSON (required; `-` for stdin is not allowed
                      together with TOKEN `-`)
      --method M      the request method                                [default: GET]
      --path P        the request path (with query, as sent)             [default: /]
      --header NAME   put the token in header NAME instead of the config's first token place
                      (with that header's value_prefix, e.g. \"Bearer \", if it has one)
      --no-token      send no token at all (e.g. to check an open route)
      --env-file F    NAME=VALUE lines for hmac_secret_env (take precedence over the environment,
                      which is read too: the filter reads vm_config.environment_variables)
      --now TIME      decide at TIME (seconds since the epoch, or relative: --now=+2h) instead of
                      this machine's clock
      --explain       show each check in the filter's order, the first failing one marked
      --json          print one JSON object instead of text
  -h, --help          this help

Exit status: 0 allowed, 1 denied, 2 usage error, unreadable input or invalid configuration
(printed as the filter logs it: `svcauth: invalid configuration: ...`).
";

struct Opts {
    config: String,
    method: String,
    path: String,
    header: Option<String>,
    env_file: Option<String>,
    now: Option<String>,
    explain: bool,
    json: bool,
    token: Option<String>,
}

fn parse(argv: Vec<OsString>) -> Result<Option<Opts>, CliError> {
    let mut p = lexopt::Parser::from_args(argv);
    let mut config = None;
    let mut method = None;
    let mut path = None;
    let mut header = None;
    let mut env_file = None;
    let mut now = None;
    let (mut no_token, mut explain, mut json) = (false, false, false);
    let mut token: Option<String> = None;
    while let Some(arg) = p.next()? {
        match arg {
            Short('h') | Long("help") => {
                out(HELP);
                return Ok(None);
            }
            Long("config") => args::once(&mut config, args::value(&mut p, "config")?, "config")?,
            Long("method") => args::once(&mut method, args::value(&mut p, "method")?, "method")?,
            Long("path") => args::once(&mut path, args::value(&mut p, "path")?, "path")?,
            Long("header") => args::once(&mut header, args::value(&mut p, "header")?, "header")?,
            Long("env-file") => {
                args::once(&mut env_file, args::value(&mut p, "env-file")?, "env-file")?
            }
            Long("now") => args::once(&mut now, args::value(&mut p, "now")?, "now")?,
            Long("no-token") => no_token = true,
            Long("explain") => explain = true,
            Long("json") => json = true,
            Pos(v) if token.is_none() => token = Some(args::string(v, "TOKEN")?),
            other => return Err(args::unexpected(other, "verify takes one TOKEN")),
        }
    }
    let config = args::need(config, "config")?;
    match (&token, no_token) {
        (Some(_), true) => {
            return Err(CliError::usage("give TOKEN or --no-token, not both"));
        }
        (None, false) => {
            return Err(CliError::usage(
                "expected TOKEN (or - to read it from stdin, or --no-token to send none)",
            ));
        }
        _ => {}
    }
    if config == "-" && token.as_deref() == Some("-") {
        return Err(CliError::usage(
            "stdin can hold the config or the token, not both",
        ));
    }
    let method = method.unwrap_or_else(|| "GET".into());
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(CliError::usage(
            "--method must be an HTTP method such as GET or POST",
        ));
    }
    let path = path.unwrap_or_else(|| "/".into());
    if !path.starts_with('/') || path.chars().any(char::is_control) {
        return Err(CliError::usage(
            "--path must start with / and hold no control characters",
        ));
    }
    Ok(Some(Opts {
        config,
        method: method.to_ascii_uppercase(),
        path,
        header: header.map(|h| h.to_ascii_lowercase()),
        env_file,
        now,
        explain,
        json,
        token,
    }))
}

fn read_token(arg: &str) -> Result<String, CliError> {
    let token = if arg == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|_| CliError::failed("cannot read the token from stdin"))?;
        s.trim().to_string()
    } else {
        arg.trim().to_string()
    };
    if token.is_empty() {
        return Err(CliError::failed("the token is empty"));
    }
    if token.chars().any(char::is_control) {
        // Not even Envoy would see such a header; and never echo the token.
        return Err(CliError::failed(
            "the token holds control characters (a line break?): it cannot be sent in a header",
        ));
    }
    Ok(token)
}

/// One line of `--explain`.
struct Check {
    name: String,
    ok: bool,
    detail: String,
}

#[derive(Default)]
struct Recorder(Vec<Check>);

impl Explain for Recorder {
    fn pass(&mut self, check: &'static str, detail: impl FnOnce() -> String) {
        self.0.push(Check {
            name: check.into(),
            ok: true,
            detail: detail(),
        });
    }
}

/// The token's header and claims, decoded without verification (for explanations only).
struct Unverified {
    header: Option<Value>,
    claims: Option<Value>,
    parts: usize,
}

fn peek(token: &str) -> Unverified {
    let parts: Vec<&str> = token.split('.').collect();
    let decode = |s: Option<&&str>| {
        s.and_then(|s| URL_SAFE_NO_PAD.decode(s).ok())
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .filter(Value::is_object)
    };
    Unverified {
        header: decode(parts.first()),
        claims: decode(parts.get(1)),
        parts: parts.len(),
    }
}

fn str_of(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => format!("{s:?}"),
        Some(other) => other.to_string(),
        None => "(none)".into(),
    }
}

fn ago(now: i64, t: i64) -> String {
    if t <= now {
        format!("{} ago", time::human(now - t))
    } else {
        format!("in {}", time::human(t - now))
    }
}

/// Why, in words, from the config and the unverified token: the filter's reason code says what
/// failed; this says with which values.
fn why(
    config: &Config,
    d: &Denial,
    u: Option<&Unverified>,
    now: i64,
    req: (&str, &str),
    token_header: Option<&str>,
) -> String {
    let provider = d
        .provider
        .and_then(|i| config.providers.get(i))
        .or_else(|| {
            let iss = u?.claims.as_ref()?.get("iss")?.as_str()?;
            config.providers.iter().find(|p| p.issuer == iss)
        });
    let skew = provider.map_or(60, |p| p.clock_skew);
    let claim = |n: &str| u.and_then(|u| u.claims.as_ref()).and_then(|c| c.get(n));
    let hdr = |n: &str| u.and_then(|u| u.header.as_ref()).and_then(|h| h.get(n));
    match d.reason {
        Reason::NoMatchingRule => format!(
            "no rule matches {} {} (paths with . or .. segments, encoded dots or slashes, or \
             backslashes match no rule on purpose)",
            req.0, req.1
        ),
        Reason::TokenMissing => {
            let all: Vec<String> = config.sources.iter().map(TokenSource::describe).collect();
            format!("no token in any configured place: {}", all.join(", "))
        }
        Reason::MultipleTokens => {
            "more than one configured place (header, cookie, query parameter) holds a token".into()
        }
        Reason::TokenTooLarge => format!(
            "the token is longer than max_token_bytes ({})",
            config.max_token_bytes
        ),
        Reason::TokenMalformed => match u {
            Some(u) if u.parts != 3 => format!(
                "{} dot-separated part(s): a compact JWS has exactly 3",
                u.parts
            ),
            Some(u) if u.header.is_none() => "the header is not base64url JSON".into(),
            Some(u) if u.claims.is_none() => "the claims are not base64url JSON".into(),
            _ => "a claim has the wrong type (iss/sub strings; exp/nbf/iat integers; aud a \
                  string or a list of strings; scope a string or list), a duplicate claim, or \
                  a bad signature encoding"
                .into(),
        },
        Reason::AlgNotAllowed => format!(
            "alg {}; provider {:?} allows {}",
            str_of(hdr("alg")),
            provider.map_or("?", |p| p.name.as_str()),
            provider.map_or(String::new(), |p| p
                .algorithms
                .iter()
                .map(|a| a.name())
                .collect::<Vec<_>>()
                .join(", "))
        ),
        Reason::CritUnsupported => {
            "the header has \"crit\"; svcauth understands no extension".into()
        }
        Reason::UnknownKid => format!(
            "kid {}; provider {:?} has keys: {}",
            str_of(hdr("kid")),
            provider.map_or("?", |p| p.name.as_str()),
            provider.map_or(String::new(), config_cmd::provider_keys)
        ),
        Reason::BadSignature => format!(
            "the key for kid {} does not verify the signature: the token was signed by another \
             key, or altered",
            str_of(hdr("kid"))
        ),
        Reason::ExpMissing => "the token has no exp claim; the filter requires one".into(),
        Reason::TokenExpired => match int_claim_of(claim("exp")) {
            Some(exp) => format!(
                "exp {exp} was {} (now {now}; clock skew allowed {})",
                ago(now, exp),
                time::human(skew)
            ),
            None => "expired".into(),
        },
        Reason::TokenNotYetValid => match int_claim_of(claim("nbf")) {
            Some(nbf) => format!(
                "nbf {nbf} is {} (now {now}; clock skew allowed {})",
                ago(now, nbf),
                time::human(skew)
            ),
            None => "not yet valid".into(),
        },
        Reason::IssuedInFuture => match int_claim_of(claim("iat")) {
            Some(iat) => format!(
                "iat {iat} is {} (now {now}; clock skew allowed {})",
                ago(now, iat),
                time::human(skew)
            ),
            None => "issued in the future".into(),
        },
        Reason::LifetimeTooLong => format!(
            "exp - iat is {}; max_lifetime_seconds is {}",
            match (int_claim_of(claim("exp")), int_claim_of(claim("iat"))) {
                (Some(e), Some(i)) => time::human(e - i),
                (Some(e), None) => format!("{} (no iat: counted from now)", time::human(e - now)),
                _ => "?".into(),
            },
            provider
                .and_then(|p| p.max_lifetime)
                .map_or("?".into(), time::human)
        ),
        Reason::IssuerMismatch => format!(
            "iss {} is no provider's issuer (configured: {})",
            str_of(claim("iss")),
            config
                .providers
                .iter()
                .map(|p| format!("{:?}", p.issuer))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Reason::AudienceMismatch => format!(
            "aud {}; provider {:?} accepts one of: {}",
            str_of(claim("aud")),
            provider.map_or("?", |p| p.name.as_str()),
            provider
                .and_then(|p| p.audiences.as_ref())
                .map_or(String::new(), |a| a.join(", "))
        ),
        Reason::ClaimMismatch => match provider {
            Some(p) => {
                let mut need: Vec<String> = p
                    .required_claims
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                need.push(format!("{} present", p.subject_claim));
                format!("provider {:?} requires: {}", p.name, need.join(", "))
            }
            None => "a required claim is missing or different".into(),
        },
        Reason::WrongTokenLocation => format!(
            "the token was in {}; provider {:?} reads only: {}",
            token_header.unwrap_or("?"),
            provider.map_or("?", |p| p.name.as_str()),
            provider.map_or(String::new(), |p| provider_sources(config, p))
        ),
        Reason::ProviderNotAllowed => format!(
            "the token is from provider {:?}; rule {}",
            provider.map_or("?", |p| p.name.as_str()),
            d.rule.map_or(String::new(), |r| rule_summary(config, r))
        ),
        Reason::InsufficientScope => format!(
            "granted {}; the rule requires {}",
            match claim("scope")
                .or_else(|| claim("scp"))
                .or_else(|| claim("scopes"))
            {
                Some(v) => str_of(Some(v)),
                None => "no scope".into(),
            },
            d.rule
                .and_then(|r| config.rules.get(r))
                .map_or(String::new(), config_cmd::rule_requires)
        ),
        Reason::KeysUnavailable => format!(
            "provider {:?} has no keys loaded (a remote JWKS is fetched by the filter at run \
             time; svcauth verify knows only the keys written in the config)",
            provider.map_or("?", |p| p.name.as_str())
        ),
        _ => d.reason.description().into(),
    }
}

fn int_claim_of(v: Option<&Value>) -> Option<i64> {
    v.and_then(Value::as_i64)
}

/// The name of the verification check a failure belongs to (the one after the last passed).
fn failed_check(reason: Reason, passed: &[Check]) -> String {
    const ORDER: [&str; 10] = [
        "format",
        "claims",
        "issuer",
        "algorithm",
        "lifetime",
        "audience",
        "required claims",
        "subject",
        "signature",
        "scopes",
    ];
    let last = passed.last().map(|c| c.name.as_str());
    if reason == Reason::WrongTokenType {
        return "type".into();
    }
    if reason == Reason::TokenMalformed && last == Some("issuer") {
        return "subject".into();
    }
    if reason == Reason::TokenMalformed && last == Some("scopes") {
        return "claim headers".into();
    }
    // The `type` check runs only for providers with `typ`, right after `algorithm`.
    let last = if last == Some("type") {
        Some("algorithm")
    } else {
        last
    };
    let next = match last {
        None => 0,
        Some(l) => ORDER.iter().position(|c| *c == l).map_or(0, |i| i + 1),
    };
    ORDER.get(next).copied().unwrap_or("claims").into()
}

pub fn run(argv: Vec<OsString>) -> CmdResult {
    let Some(o) = parse(argv)? else {
        return Ok(0);
    };
    let config = config_cmd::load(&o.config, o.env_file.as_deref())?;
    let token = match &o.token {
        Some(t) => Some(read_token(t)?),
        None => None,
    };
    let now = match &o.now {
        Some(n) => time::parse_now(n)?,
        None => time::system_now()?,
    };

    // Where the token goes: the config's first token header, or --header (with its prefix).
    let source: Option<TokenSource> = match &o.header {
        None => config.sources.first().cloned(),
        Some(h) => Some(
            config
                .sources
                .iter()
                .find(|s| s.header() == Some(h.as_str()))
                .cloned()
                .unwrap_or(TokenSource::Header {
                    name: h.clone(),
                    prefix: None,
                }),
        ),
    };
    let mut warnings = Vec::new();
    if let Some(h) = &o.header {
        if !config
            .sources
            .iter()
            .any(|s| s.header() == Some(h.as_str()))
        {
            warnings.push(format!(
                "{h} is not a token header of this config: the filter does not look there"
            ));
        }
        if config.strip_headers.iter().any(|s| s == h) {
            warnings.push(format!(
                "{h} is an identity header: the filter removes it from every request first"
            ));
        }
    }
    let mut path = o.path.clone();
    let mut headers: Vec<(String, String)> = vec![(":method".into(), o.method.clone())];
    match (&token, &source) {
        (Some(t), Some(TokenSource::Header { name, prefix })) => {
            let value = format!("{}{t}", prefix.as_deref().unwrap_or(""));
            headers.push((name.clone(), value));
        }
        (Some(t), Some(TokenSource::Cookie(c))) => {
            headers.push(("cookie".into(), format!("{c}={t}")))
        }
        (Some(t), Some(TokenSource::Param(q))) => {
            let sep = if path.contains('?') { '&' } else { '?' };
            path = format!("{path}{sep}{q}={t}");
        }
        _ => {}
    }
    headers.push((":path".into(), path));
    // As the adapter does before deciding: identity headers are the filter's alone.
    headers.retain(|(k, _)| !config.strip_headers.iter().any(|s| s == k));

    let decision = decide::decide(&config, &mut TokenCache::new(0), &headers, now);

    let unverified = token.as_deref().map(peek);
    let token_place = source.as_ref().map(TokenSource::describe);
    let token_header = token_place.as_deref();
    let checks = if o.explain {
        explain(&config, &decision, token.as_deref(), now, &o, token_header)
    } else {
        Vec::new()
    };

    let code = match &decision {
        Decision::Allow(_) => 0,
        Decision::Deny(_) => EXIT_DENIED,
    };
    let mut j = Map::new();
    j.insert("method".into(), o.method.clone().into());
    j.insert("path".into(), o.path.clone().into());
    match &decision {
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
                    upstream.insert("x-service-name".into(), id.subject.clone().into());
                    upstream.insert("x-service-scopes".into(), id.scopes_joined.clone().into());
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
            let challenge = reason::www_authenticate(d.reason, decide::challenge(&config, d.rule));
            j.insert("decision".into(), "deny".into());
            j.insert("status".into(), d.reason.status().into());
            j.insert("reason".into(), d.reason.code().into());
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
            j.insert(
                "why".into(),
                why(
                    &config,
                    d,
                    unverified.as_ref(),
                    now,
                    (&o.method, &o.path),
                    token_header,
                )
                .into(),
            );
        }
    }
    if o.explain {
        j.insert(
            "checks".into(),
            checks
                .iter()
                .map(|c| json!({"check": c.name, "ok": c.ok, "detail": c.detail}))
                .collect::<Vec<_>>()
                .into(),
        );
    }
    for w in &warnings {
        crate::note(&format!("svcauth verify: note: {w}"));
    }
    if o.json {
        out(&format!("{}\n", Value::Object(j)));
        return Ok(code);
    }
    out(&render(&config, &decision, &j, &checks));
    Ok(code)
}

fn render(
    config: &Config,
    decision: &Decision,
    j: &Map<String, Value>,
    checks: &[Check],
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
                    rows.push(("token expires".into(), format!("{exp} ({})", ago(now, exp))));
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

/// The checks of one decision, in the filter's order; the first failing one is last.
fn explain(
    config: &Config,
    decision: &Decision,
    token: Option<&str>,
    now: i64,
    o: &Opts,
    token_header: Option<&str>,
) -> Vec<Check> {
    let mut checks = Vec::new();
    let mut push = |name: &str, ok: bool, detail: String| {
        checks.push(Check {
            name: name.into(),
            ok,
            detail,
        })
    };
    let denial = match decision {
        Decision::Deny(d) => Some(d),
        Decision::Allow(_) => None,
    };
    let reason = denial.map(|d| d.reason);
    let rule = match decision {
        Decision::Allow(a) => a.rule,
        Decision::Deny(d) => d.rule,
    };
    if let Err(refusal) = svcauth_filter::decide::match_rule(config, &o.method, &o.path) {
        push(
            "path",
            false,
            format!("ambiguous_path: {} in {}", refusal.what(), o.path),
        );
        return checks;
    }
    let Some(ri) = rule else {
        push(
            "rule",
            false,
            format!("no_matching_rule: no rule matches {} {}", o.method, o.path),
        );
        return checks;
    };
    push("rule", true, rule_summary(config, ri));
    let Some(rule_def) = config.rules.get(ri) else {
        return checks;
    };
    if matches!(rule_def.action, Action::Allow) {
        push("token", true, "not needed: the rule is open".into());
        return checks;
    }
    match (reason, token) {
        (Some(Reason::TokenMissing), _) | (_, None) => {
            push(
                "token",
                false,
                "token_missing: no token in any configured place".into(),
            );
            return checks;
        }
        (Some(Reason::TokenTooLarge), Some(t)) => {
            push(
                "token",
                false,
                format!(
                    "token_too_large: {} bytes > max_token_bytes {}",
                    t.len(),
                    config.max_token_bytes
                ),
            );
            return checks;
        }
        (_, Some(t)) => push(
            "token",
            true,
            format!(
                "found in {} ({} bytes)",
                token_header.unwrap_or("?"),
                t.len()
            ),
        ),
    }
    let Some(token) = token else {
        return checks;
    };
    let mut rec = Recorder::default();
    let verified = core_verify::verify_explained(config, token, now, &mut rec);
    let mut passed = rec.0;
    match verified {
        Err(f) => {
            let name = failed_check(f.reason, &passed);
            passed.push(Check {
                name,
                ok: false,
                detail: format!("{}: {}", f.reason.code(), f.reason.description()),
            });
            checks.extend(passed);
        }
        Ok(v) => {
            checks.extend(passed);
            let mut push = |name: &str, ok: bool, detail: String| {
                checks.push(Check {
                    name: name.into(),
                    ok,
                    detail,
                })
            };
            let pname = config
                .providers
                .get(v.provider)
                .map_or("?".to_string(), |p| p.name.clone());
            match reason {
                Some(Reason::WrongTokenLocation) => {
                    push(
                        "token location",
                        false,
                        format!(
                            "wrong_token_location: provider {pname:?} does not read {}",
                            token_header.unwrap_or("?")
                        ),
                    );
                    return checks;
                }
                _ => push(
                    "token location",
                    true,
                    format!("provider {pname:?} reads {}", token_header.unwrap_or("?")),
                ),
            }
            match reason {
                Some(Reason::ProviderNotAllowed) => {
                    push(
                        "rule provider",
                        false,
                        format!("provider_not_allowed: the rule does not accept {pname:?}"),
                    );
                    return checks;
                }
                _ => push(
                    "rule provider",
                    true,
                    format!(
                        "the rule accepts {}",
                        config_cmd::rule_providers(config, rule_def)
                    ),
                ),
            }
            let needs = config_cmd::rule_requires(rule_def);
            match reason {
                Some(Reason::InsufficientScope) => push(
                    "rule scopes",
                    false,
                    format!(
                        "insufficient_scope: granted {:?}; the rule requires {needs}",
                        v.scopes_joined
                    ),
                ),
                Some(other) => push(
                    "decision",
                    false,
                    format!("{}: {}", other.code(), other.description()),
                ),
                None => push(
                    "rule scopes",
                    true,
                    format!("granted {:?} satisfies: {needs}", v.scopes_joined),
                ),
            }
        }
    }
    checks
}
