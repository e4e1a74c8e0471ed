//! `svcauth jwks add|remove|show`: a JWK Set file kept for key rotation. Every write is atomic
//! (a temporary file renamed over the set), and every key added is checked with the filter's
//! own JWK parser, so a set this command writes is one the filter accepts.

use std::ffi::OsString;
use std::path::Path;

use lexopt::Arg::{Long, Short, Value as Pos};
use serde_json::{Map, Value};

use crate::args;
use crate::files;
use crate::keygen::valid_kid;
use crate::outcome::{out, CliError, CmdResult};

pub const HELP: &str = "\
svcauth jwks: keep a JWK Set file (the public keys a provider's `jwks` holds) for key rotation

Usage:
  svcauth jwks add SET JWK_FILE...     add public keys (a JWK, or every key of a JWK Set file)
  svcauth jwks remove SET KID...       remove keys by kid
  svcauth jwks show SET [--compact]    list the keys, or print the set on one line

A rotation: add the new key beside the old one and deploy the set; mint with the new key; when
no token signed by the old key can still be valid, remove it and deploy again.

Run `svcauth jwks <add|remove|show> --help` for details.
";

const ADD_HELP: &str = "\
svcauth jwks add: add public keys to a JWK Set file (created if missing)

Usage: svcauth jwks add SET JWK_FILE...

  SET        the JWK Set file ({\"keys\": [...]}); created with mode 0644 if missing
  JWK_FILE   a public JWK (as `svcauth keygen` writes KID.json), or a JWK Set whose keys are
             all added; `-` reads stdin

Each key must have a kid that is not in SET yet (a duplicate kid is refused: tokens name their
key by kid), must be public (a JWK with private members such as \"d\" is refused), and must be
usable by the filter (RSA 2048-8192 bits, EC P-256/P-384/P-521, Ed25519; no symmetric \"oct\" keys,
which belong in hmac_secret_env). The set is replaced atomically; nothing is written on error.

Options:
  -h, --help   this help
";

const REMOVE_HELP: &str = "\
svcauth jwks remove: remove keys from a JWK Set file by kid

Usage: svcauth jwks remove SET KID...

Every KID must be in SET. Removing the last key is refused (the filter refuses an empty set).
Remove a key only once no token it signed can still be valid (its longest lifetime after the
last token minted with it). The set is replaced atomically; nothing is written on error.

Options:
  -h, --help   this help
";

const SHOW_HELP: &str = "\
svcauth jwks show: list the keys of a JWK Set file as the filter sees them

Usage: svcauth jwks show SET [--compact]

Prints one line per key: kid, key type, the algorithms the filter will verify with it, and
whether the filter can use it (an unusable key is listed with the reason).

Options:
      --compact   print the set as one line of JSON instead (to paste into a plugin config's
                  \"jwks\", which takes a JSON object or a JSON string)
  -h, --help      this help
";

/// Private JWK members: a set holding any of them would publish a private key.
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// Reads a JWK Set file; a missing file is an empty set when `missing_ok`.
fn read_set(path: &str, missing_ok: bool) -> Result<Vec<Value>, CliError> {
    if missing_ok && !Path::new(path).exists() {
        return Ok(Vec::new());
    }
    let text = files::read_text(path, "JWK Set")?;
    let v: Value = serde_json::from_str(&text)
        .map_err(|e| CliError::failed(format!("{path} is not JSON: {e}")))?;
    match v.get("keys") {
        Some(Value::Array(keys)) => Ok(keys.clone()),
        _ => Err(CliError::failed(format!(
            "{path} is not a JWK Set (a JSON object with a \"keys\" array)"
        ))),
    }
}

fn write_set(path: &str, keys: Vec<Value>) -> Result<(), CliError> {
    let mut obj = Map::new();
    obj.insert("keys".into(), Value::Array(keys));
    let text = serde_json::to_string_pretty(&Value::Object(obj))
        .map_err(|e| CliError::failed(format!("cannot encode the set: {e}")))?;
    let p = Path::new(path);
    if let Some(parent) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
        files::ensure_dir(parent)?;
    }
    let mode = files::mode_or(p, 0o644);
    files::write_file(p, format!("{text}\n").as_bytes(), mode, true)
}

fn kid_of(key: &Value) -> Option<&str> {
    key.get("kid").and_then(Value::as_str)
}

/// Checks one key to be added: public, with a valid kid, usable by the filter.
fn check_new_key(key: &Value, from: &str) -> Result<String, CliError> {
    let Some(obj) = key.as_object() else {
        return Err(CliError::failed(format!(
            "{from}: a key is not a JSON object"
        )));
    };
    let kid = kid_of(key).map(str::to_string).ok_or_else(|| {
        CliError::failed(format!(
            "{from}: a key has no \"kid\"; tokens select keys by kid, so every key of a rotated \
             set needs one"
        ))
    })?;
    if !valid_kid(&kid) {
        return Err(CliError::failed(format!(
            "{from}: kid must be 1-128 letters, digits, '.', '_' or '-'"
        )));
    }
    if let Some(m) = PRIVATE_MEMBERS.iter().find(|m| obj.contains_key(**m)) {
        let what = if *m == "k" {
            "a symmetric (oct) key: HMAC secrets go in hmac_secret_env, never in a JWK Set"
        } else {
            "a private key: publish only the public JWK (`svcauth keygen` writes it as KID.json)"
        };
        return Err(CliError::failed(format!(
            "{from}: key {kid:?} has the private member {m:?}; it is {what}"
        )));
    }
    let one = serde_json::json!({"keys": [key]}).to_string();
    let parsed = svcauth_filter::token::set::parse_set(&one)
        .map_err(|e| CliError::failed(format!("{from}: {e}")))?;
    if let Some(why) = parsed.skipped.first() {
        return Err(CliError::failed(format!(
            "{from}: the filter cannot use this key: {why}"
        )));
    }
    Ok(kid)
}

/// The keys in a JWK file: one JWK, or every key of a JWK Set.
fn keys_in(path: &str) -> Result<Vec<Value>, CliError> {
    let text = files::read_text(path, "JWK file")?;
    if text.trim_start().starts_with("-----BEGIN") {
        return Err(CliError::failed(format!(
            "{path} is a PEM file; add the public JWK instead (`svcauth keygen` writes it as \
             KID.json beside KID.pem)"
        )));
    }
    let v: Value = serde_json::from_str(&text)
        .map_err(|e| CliError::failed(format!("{path} is not JSON: {e}")))?;
    match v.get("keys") {
        Some(Value::Array(keys)) => Ok(keys.clone()),
        Some(_) => Err(CliError::failed(format!(
            "{path}: \"keys\" is not an array"
        ))),
        None if v.get("kty").is_some() => Ok(vec![v]),
        None => Err(CliError::failed(format!(
            "{path} is neither a JWK (no \"kty\") nor a JWK Set (no \"keys\")"
        ))),
    }
}

fn positional(argv: Vec<OsString>, help: &str) -> Result<Option<Vec<String>>, CliError> {
    let mut p = lexopt::Parser::from_args(argv);
    let mut pos = Vec::new();
    while let Some(arg) = p.next()? {
        match arg {
            Short('h') | Long("help") => {
                out(help);
                return Ok(None);
            }
            Pos(v) => pos.push(args::string(v, "argument")?),
            other => return Err(args::unexpected(other, "")),
        }
    }
    Ok(Some(pos))
}

pub fn add(argv: Vec<OsString>) -> CmdResult {
    let Some(pos) = positional(argv, ADD_HELP)? else {
        return Ok(0);
    };
    let Some((set_path, jwk_files)) = pos.split_first() else {
        return Err(CliError::usage("expected SET and at least one JWK_FILE"));
    };
    if jwk_files.is_empty() {
        return Err(CliError::usage("expected at least one JWK_FILE after SET"));
    }
    let mut keys = read_set(set_path, true)?;
    let mut added = Vec::new();
    for file in jwk_files {
        for key in keys_in(file)? {
            let kid = check_new_key(&key, file)?;
            if keys.iter().any(|k| kid_of(k) == Some(kid.as_str())) {
                return Err(CliError::failed(format!(
                    "kid {kid:?} is already in {set_path}; a kid names one key forever (make a \
                     new key with a new kid, or remove the old one first)"
                )));
            }
            keys.push(key);
            added.push(kid);
        }
    }
    let total = keys.len();
    write_set(set_path, keys)?;
    out(&format!(
        "added {} to {set_path} ({total} key{} now)\n",
        added
            .iter()
            .map(|k| format!("kid {k:?}"))
            .collect::<Vec<_>>()
            .join(", "),
        if total == 1 { "" } else { "s" }
    ));
    Ok(0)
}

pub fn remove(argv: Vec<OsString>) -> CmdResult {
    let Some(pos) = positional(argv, REMOVE_HELP)? else {
        return Ok(0);
    };
    let Some((set_path, kids)) = pos.split_first() else {
        return Err(CliError::usage("expected SET and at least one KID"));
    };
    if kids.is_empty() {
        return Err(CliError::usage("expected at least one KID after SET"));
    }
    let mut keys = read_set(set_path, false)?;
    for kid in kids {
        let before = keys.len();
        keys.retain(|k| kid_of(k) != Some(kid.as_str()));
        if keys.len() == before {
            let shown = if args::printable(kid) {
                kid.as_str()
            } else {
                "?"
            };
            return Err(CliError::failed(format!(
                "no key with kid {shown:?} in {set_path} (nothing removed)"
            )));
        }
    }
    if keys.is_empty() {
        return Err(CliError::failed(format!(
            "removing that would leave {set_path} with no key, which the filter refuses \
             (nothing removed); add the new key first"
        )));
    }
    let total = keys.len();
    write_set(set_path, keys)?;
    out(&format!(
        "removed {} from {set_path} ({total} key{} left)\n",
        kids.iter()
            .map(|k| format!("kid {k:?}"))
            .collect::<Vec<_>>()
            .join(", "),
        if total == 1 { "" } else { "s" }
    ));
    Ok(0)
}

pub fn show(argv: Vec<OsString>) -> CmdResult {
    let mut p = lexopt::Parser::from_args(argv);
    let mut set: Option<String> = None;
    let mut compact = false;
    while let Some(arg) = p.next()? {
        match arg {
            Short('h') | Long("help") => {
                out(SHOW_HELP);
                return Ok(0);
            }
            Long("compact") => compact = true,
            Pos(v) if set.is_none() => set = Some(args::string(v, "SET")?),
            other => return Err(args::unexpected(other, "show takes one SET")),
        }
    }
    let set = set.ok_or_else(|| CliError::usage("expected SET (a JWK Set file)"))?;
    let keys = read_set(&set, false)?;
    if compact {
        out(&format!("{}\n", serde_json::json!({ "keys": keys })));
        return Ok(0);
    }
    let mut rows = vec![[
        "KID".to_string(),
        "TYPE".to_string(),
        "VERIFIES".to_string(),
        "STATUS".to_string(),
    ]];
    for key in &keys {
        let kid = kid_of(key).unwrap_or("(none)").to_string();
        let kty = key.get("kty").and_then(Value::as_str).unwrap_or("?");
        let ty = match key.get("crv").and_then(Value::as_str) {
            Some(crv) => format!("{kty} {crv}"),
            None => kty.to_string(),
        };
        let one = serde_json::json!({"keys": [key]}).to_string();
        let (algs, status) = match svcauth_filter::token::set::parse_set(&one) {
            Ok(parsed) => match (parsed.keys.first(), parsed.skipped.first()) {
                (Some(k), _) => {
                    let names: Vec<&str> = k.algs().iter().map(|a| a.name()).collect();
                    (names.join(" "), "usable".to_string())
                }
                (None, Some(why)) => ("-".into(), format!("UNUSABLE: {why}")),
                (None, None) => ("-".into(), "UNUSABLE".into()),
            },
            Err(e) => ("-".into(), format!("UNUSABLE: {e}")),
        };
        let private = key
            .as_object()
            .is_some_and(|o| PRIVATE_MEMBERS.iter().any(|m| o.contains_key(*m)));
        let status = if private {
            format!("{status}; WARNING: holds private key material")
        } else {
            status
        };
        rows.push([kid, ty, algs, status]);
    }
    out(&format!(
        "{set}: {} key{}\n{}",
        keys.len(),
        if keys.len() == 1 { "" } else { "s" },
        table(&rows)
    ));
    Ok(0)
}

/// Left-aligned columns separated by two spaces.
pub fn table<const N: usize>(rows: &[[String; N]]) -> String {
    let mut widths = [0usize; N];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row.iter()) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut s = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, (w, cell)) in widths.iter().zip(row.iter()).enumerate() {
            if i + 1 == N {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}  "));
            }
        }
        s.push_str(line.trim_end());
        s.push('\n');
    }
    s
}
