//! `svcauth verify`: one request through the filter's own `decide_explained`, with this
//! machine's clock, printed as Envoy would answer it; `--explain` prints the checks the filter
//! reported, in its order, the failed one marked. The request is decided once; nothing here
//! re-derives a check. Rooms: `args` (command line), `explain` (the recorded checks), `why`
//! (a denial in words), `render` (JSON and text); this file builds the request and runs it.

mod args;
mod explain;
mod render;
mod why;

use std::ffi::OsString;

use serde_json::Value;
use svcauth_filter::config::{HeaderFate, TokenSource};
use svcauth_filter::decide::{self, Decision};

use self::explain::Recorder;
use crate::config_cmd;
use crate::outcome::{out, CmdResult, EXIT_DENIED};
use crate::time;

pub fn run(argv: Vec<OsString>) -> CmdResult {
    let Some(o) = args::parse(argv)? else {
        return Ok(0);
    };
    let config = config_cmd::load(&o.config, o.env_file.as_deref())?;
    let token = match &o.token {
        Some(t) => Some(args::read_token(t)?),
        None => None,
    };
    let now = match &o.now {
        Some(n) => time::parse_now(n)?,
        None => time::system_now()?,
    };

    // Where the token goes: the config's first token place, or --header (with its prefix).
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
        if config.header_fate(h) == HeaderFate::Strip {
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
    // As the adapter does before deciding: the headers the filter sets are its alone.
    headers.retain(|(k, _)| config.header_fate(k) != HeaderFate::Strip);

    // One decision, and the filter's own account of its checks.
    let mut recorder = Recorder::default();
    let decision = decide::decide_explained(&config, &headers, now, &mut recorder);

    let why = match &decision {
        Decision::Deny(d) => {
            let unverified = token.as_deref().map(why::peek);
            let place = source.as_ref().map(TokenSource::describe);
            why::why(
                &config,
                d,
                unverified.as_ref(),
                now,
                (&o.method, &o.path),
                place.as_deref(),
                recorder.failure(),
            )
        }
        Decision::Allow(_) => String::new(),
    };
    let checks = o.explain.then_some(recorder.lines.as_slice());
    let j = render::object(&config, &decision, (&o.method, &o.path), &why, checks);
    for w in &warnings {
        crate::outcome::note(&format!("svcauth verify: note: {w}"));
    }
    let code = match &decision {
        Decision::Allow(_) => 0,
        Decision::Deny(_) => EXIT_DENIED,
    };
    if o.json {
        out(&format!("{}\n", Value::Object(j)));
        return Ok(code);
    }
    out(&render::text(
        &config,
        &decision,
        &j,
        checks.unwrap_or_default(),
    ));
    Ok(code)
}
