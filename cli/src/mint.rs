//! `svcauth mint`: sign a service token and print it (only it) on stdout.

use std::ffi::OsString;
use std::path::Path;

use lexopt::Arg::{Long, Short};
use serde_json::{Map, Value};
use svcauth_filter::jws::Alg;
use svcauth_filter::mint::{self, SigningKey};

use crate::args;
use crate::files;
use crate::keygen::parse_alg;
use crate::outcome::{note, out, CliError, CmdResult};
use crate::time;

pub const HELP: &str = "\
svcauth mint: sign a service token and print it (nothing else) on stdout

Usage: svcauth mint (--key PEM | --secret-env NAME | --secret-file FILE) --iss ISSUER --sub NAME
                    [--aud AUD]... [--scope \"a b\"]... [--ttl 1h | --days N] [options]

Signing key (exactly one):
      --key FILE           a PKCS#8 (or PKCS#1 RSA) PEM private key, e.g. KID.pem from keygen
      --secret-env NAME    HMAC: the secret is the value of environment variable NAME
      --secret-file FILE   HMAC: the secret is the file's text (one trailing newline dropped),
                           e.g. KID.secret from keygen. Secrets are never taken as arguments.
      --kid KID            the header's kid            [default: the key file's name without
                           .pem/.secret; none with --secret-env]
      --alg ALG            the signing algorithm       [default: the alg of the public JWK beside
                           the key (KID.json), else RS256 for RSA, ES256 for P-256, ES384 for
                           P-384, ES512 for P-521, EdDSA for Ed25519, HS256 for a secret]
Claims:
      --iss ISSUER         iss: must equal a provider's issuer (it selects the provider)
      --sub NAME           sub: the calling service (sent upstream as x-service-name)
      --aud AUD            aud (repeat for several: then a JSON array)
      --scope SCOPES       scope, space-separated (repeat to add more): \"orders:read orders:write\"
      --claim NAME=VALUE   any other claim (repeatable). VALUE is JSON when it parses as JSON
                           (42, true, [\"a\"], {\"k\":1}, \"quoted\"), else a string: type=service
      --typ TYP            the header's typ, e.g. at+jwt   [default: JWT]
Lifetime (iat = now, exp = now + lifetime):
      --ttl DURATION       e.g. 90s, 15m, 1h, 1h30m, 7d    [default: 1h]
      --days N             the same as --ttl Nd
      --max-ttl DURATION   refuse a longer lifetime        [default: 24h]
      --allow-long-lived   allow a lifetime above --max-ttl (a warning is still printed on
                           stderr past 30 days: a long-lived token is a standing credential)
      --now TIME           pretend the clock reads TIME: seconds since the epoch, or relative
                           to now, e.g. --now=-2h (with --ttl 1h: a token that expired an hour
                           ago, for tests)
  -h, --help               this help

Example:
  svcauth mint --key keys/orders-2025-06.pem --iss https://auth.internal --sub orders-service \\
      --aud orders --scope \"orders:read orders:write\" --ttl 15m --claim type=service
";

const THIRTY_DAYS: i64 = 30 * 86_400;
const DEFAULT_MAX_TTL: i64 = 86_400;
/// The filter refuses shorter HMAC secrets (`hmac_secret_env`); minting with one is pointless.
const MIN_SECRET_BYTES: usize = 32;

/// Claims that have their own option.
const OWN_OPTION: [(&str, &str); 6] = [
    ("iss", "--iss"),
    ("sub", "--sub"),
    ("aud", "--aud"),
    ("scope", "--scope"),
    ("exp", "--ttl/--days"),
    ("iat", "--now"),
];

struct Opts {
    key: Option<String>,
    secret_env: Option<String>,
    secret_file: Option<String>,
    kid: Option<String>,
    alg: Option<String>,
    iss: Option<String>,
    sub: Option<String>,
    aud: Vec<String>,
    scope: Vec<String>,
    claims: Vec<String>,
    typ: Option<String>,
    ttl: Option<String>,
    days: Option<String>,
    max_ttl: Option<String>,
    allow_long: bool,
    now: Option<String>,
}

fn parse(argv: Vec<OsString>) -> Result<Option<Opts>, CliError> {
    let mut o = Opts {
        key: None,
        secret_env: None,
        secret_file: None,
        kid: None,
        alg: None,
        iss: None,
        sub: None,
        aud: Vec::new(),
        scope: Vec::new(),
        claims: Vec::new(),
        typ: None,
        ttl: None,
        days: None,
        max_ttl: None,
        allow_long: false,
        now: None,
    };
    let mut p = lexopt::Parser::from_args(argv);
    while let Some(arg) = p.next()? {
        match arg {
            Short('h') | Long("help") => {
                out(HELP);
                return Ok(None);
            }
            Long("key") => args::once(&mut o.key, args::value(&mut p, "key")?, "key")?,
            Long("secret-env") => args::once(
                &mut o.secret_env,
                args::value(&mut p, "secret-env")?,
                "secret-env",
            )?,
            Long("secret-file") => args::once(
                &mut o.secret_file,
                args::value(&mut p, "secret-file")?,
                "secret-file",
            )?,
            Long("kid") => args::once(&mut o.kid, args::value(&mut p, "kid")?, "kid")?,
            Long("alg") => args::once(&mut o.alg, args::value(&mut p, "alg")?, "alg")?,
            Long("iss") => args::once(&mut o.iss, args::value(&mut p, "iss")?, "iss")?,
            Long("sub") => args::once(&mut o.sub, args::value(&mut p, "sub")?, "sub")?,
            Long("aud") => o.aud.push(args::value(&mut p, "aud")?),
            Long("scope") => o.scope.push(args::value(&mut p, "scope")?),
            Long("claim") => o.claims.push(args::value(&mut p, "claim")?),
            Long("typ") => args::once(&mut o.typ, args::value(&mut p, "typ")?, "typ")?,
            Long("ttl") => args::once(&mut o.ttl, args::value(&mut p, "ttl")?, "ttl")?,
            Long("days") => args::once(&mut o.days, args::value(&mut p, "days")?, "days")?,
            Long("max-ttl") => {
                args::once(&mut o.max_ttl, args::value(&mut p, "max-ttl")?, "max-ttl")?
            }
            Long("allow-long-lived") => o.allow_long = true,
            Long("now") => args::once(&mut o.now, args::value(&mut p, "now")?, "now")?,
            other => return Err(args::unexpected(other, "mint takes only options")),
        }
    }
    Ok(Some(o))
}

/// The signing key and the file it came from (for the default kid and alg).
fn load_key(o: &Opts) -> Result<(SigningKey, Option<String>), CliError> {
    let given = [&o.key, &o.secret_env, &o.secret_file]
        .iter()
        .filter(|x| x.is_some())
        .count();
    if given != 1 {
        return Err(CliError::usage(
            "give exactly one signing key: --key PEM, --secret-env NAME or --secret-file FILE",
        ));
    }
    if let Some(path) = &o.key {
        let text = files::read_text(path, "key file")?;
        if files::too_open(path) {
            note(&format!(
                "svcauth mint: warning: {path} is readable by others than its owner (chmod 600 {path})"
            ));
        }
        let key = SigningKey::from_pem(&text).map_err(|e| {
            let hint = if text.trim_start().starts_with("-----BEGIN") {
                ""
            } else if text.trim().starts_with('{') {
                " (this looks like a JWK: pass the private PEM, KID.pem, not KID.json)"
            } else {
                " (for an HMAC secret use --secret-file)"
            };
            CliError::failed(format!("{path}: {e}{hint}"))
        })?;
        return Ok((key, Some(path.clone())));
    }
    let (secret, from) = if let Some(name) = &o.secret_env {
        let v = std::env::var(name).map_err(|_| {
            CliError::failed(format!(
                "environment variable {name} is not set (or not UTF-8)"
            ))
        })?;
        (v, None)
    } else if let Some(path) = &o.secret_file {
        let text = files::read_text(path, "secret file")?;
        if files::too_open(path) {
            note(&format!(
                "svcauth mint: warning: {path} is readable by others than its owner (chmod 600 {path})"
            ));
        }
        let text = text
            .strip_suffix("\r\n")
            .or_else(|| text.strip_suffix('\n'))
            .unwrap_or(&text)
            .to_string();
        (text, Some(path.clone()))
    } else {
        return Err(CliError::usage("no signing key given"));
    };
    if secret.len() < MIN_SECRET_BYTES {
        return Err(CliError::failed(format!(
            "the HMAC secret is {} bytes; the filter refuses secrets shorter than \
             {MIN_SECRET_BYTES} bytes (make one with: svcauth keygen --alg HS256 --kid KID)",
            secret.len()
        )));
    }
    if secret.starts_with("-----BEGIN") {
        return Err(CliError::failed(
            "the HMAC secret is a PEM private key; for an asymmetric key use --key",
        ));
    }
    Ok((SigningKey::Hmac(secret.into_bytes()), from))
}

/// The default kid: the key file's name without `.pem` / `.secret` / `.key`.
fn kid_from_path(path: &str) -> Option<String> {
    let p = Path::new(path);
    let name = p.file_name()?.to_str()?;
    let stem = [".pem", ".secret", ".key"]
        .iter()
        .find_map(|ext| name.strip_suffix(ext))
        .unwrap_or(name);
    crate::keygen::valid_kid(stem).then(|| stem.to_string())
}

/// The `alg` of the public JWK beside a key file (`KID.json` next to `KID.pem`), if any.
fn sibling_jwk_alg(path: &str) -> Option<Alg> {
    let p = Path::new(path);
    let jwk_path = p.with_extension("json");
    if jwk_path == p {
        return None;
    }
    let text = std::fs::read_to_string(jwk_path).ok()?;
    let v: Value = serde_json::from_str(&text).ok()?;
    Alg::from_name(v.get("alg")?.as_str()?)
}

fn default_alg(key: &SigningKey, path: Option<&str>) -> Alg {
    if let Some(a) = path.and_then(sibling_jwk_alg).filter(|a| key.fits(*a)) {
        return a;
    }
    match key {
        SigningKey::Hmac(_) => Alg::HS256,
        SigningKey::Rsa(_) => Alg::RS256,
        SigningKey::P256(_) => Alg::ES256,
        SigningKey::P384(_) => Alg::ES384,
        SigningKey::P521(_) => Alg::ES512,
        SigningKey::Ed25519(_) => Alg::EdDSA,
    }
}

fn lifetime(o: &Opts) -> Result<i64, CliError> {
    let ttl = match (&o.ttl, &o.days) {
        (Some(_), Some(_)) => return Err(CliError::usage("give --ttl or --days, not both")),
        (Some(t), None) => time::parse_duration(t).ok_or_else(|| {
            CliError::usage("--ttl takes a duration such as 90s, 15m, 1h, 1h30m or 7d")
        })?,
        (None, Some(d)) => d
            .parse::<i64>()
            .ok()
            .and_then(|d| d.checked_mul(86_400))
            .ok_or_else(|| CliError::usage("--days takes a whole number of days"))?,
        (None, None) => 3600,
    };
    if ttl <= 0 {
        return Err(CliError::usage("the lifetime must be positive"));
    }
    let max = match &o.max_ttl {
        Some(m) => time::parse_duration(m)
            .ok_or_else(|| CliError::usage("--max-ttl takes a duration such as 24h or 7d"))?,
        None => DEFAULT_MAX_TTL,
    };
    if ttl > max && !o.allow_long {
        return Err(CliError::failed(format!(
            "a lifetime of {} is above the maximum of {} (--max-ttl); short-lived tokens \
             limit what a leaked token can do. Pass --allow-long-lived to mint it anyway",
            time::human(ttl),
            time::human(max)
        )));
    }
    if ttl > THIRTY_DAYS {
        note(&format!(
            "svcauth mint: warning: this token is valid for {} (more than 30 days): treat it as \
             a standing credential, store it as a secret, and plan its rotation",
            time::human(ttl)
        ));
    }
    Ok(ttl)
}

/// `NAME=VALUE` → the claim, VALUE as JSON when it parses, else a string.
fn parse_claim(spec: &str) -> Result<(String, Value), CliError> {
    let Some((name, raw)) = spec.split_once('=') else {
        return Err(CliError::usage(
            "--claim takes NAME=VALUE, e.g. --claim type=service",
        ));
    };
    let name = name.trim();
    if name.is_empty() {
        return Err(CliError::usage("--claim: the claim name is empty"));
    }
    if let Some((_, opt)) = OWN_OPTION.iter().find(|(c, _)| *c == name) {
        return Err(CliError::usage(format!(
            "--claim {name}=…: set {name} with {opt}"
        )));
    }
    let value = serde_json::from_str::<Value>(raw).unwrap_or_else(|_| Value::String(raw.into()));
    Ok((name.to_string(), value))
}

pub fn run(argv: Vec<OsString>) -> CmdResult {
    let Some(o) = parse(argv)? else {
        return Ok(0);
    };
    let iss = args::need(o.iss.clone(), "iss")?;
    let sub = args::need(o.sub.clone(), "sub")?;
    if iss.is_empty() || sub.is_empty() {
        return Err(CliError::usage("--iss and --sub must not be empty"));
    }
    let mut extra = Map::new();
    for spec in &o.claims {
        let (k, v) = parse_claim(spec)?;
        if extra.insert(k.clone(), v).is_some() {
            return Err(CliError::usage(format!("--claim {k} given twice")));
        }
    }
    let ttl = lifetime(&o)?;
    let now = match &o.now {
        Some(n) => time::parse_now(n)?,
        None => time::system_now()?,
    };
    let (key, from) = load_key(&o)?;
    let alg = match &o.alg {
        Some(a) => parse_alg(a)?,
        None => default_alg(&key, from.as_deref()),
    };
    if !key.fits(alg) {
        let needs = match alg {
            Alg::ES256 => "an EC P-256 key",
            Alg::ES384 => "an EC P-384 key",
            Alg::ES512 => "an EC P-521 key",
            Alg::EdDSA => "an Ed25519 key",
            a if a.is_hmac() => "an HMAC secret (--secret-env or --secret-file)",
            _ => "an RSA key",
        };
        let has = match &key {
            SigningKey::Hmac(_) => "an HMAC secret".to_string(),
            other => format!("an {} key", other.kind()),
        };
        return Err(CliError::failed(format!(
            "wrong key type for {}: it needs {needs}, and this is {has}",
            alg.name()
        )));
    }
    let kid = match (&o.kid, &from) {
        (Some(k), _) => Some(k.clone()),
        (None, Some(path)) => kid_from_path(path),
        (None, None) => None,
    };
    let mut claims = Map::new();
    claims.insert("iss".into(), iss.into());
    claims.insert("sub".into(), sub.into());
    match o.aud.len() {
        0 => {}
        1 => {
            claims.insert(
                "aud".into(),
                o.aud.first().cloned().unwrap_or_default().into(),
            );
        }
        _ => {
            claims.insert("aud".into(), o.aud.clone().into());
        }
    }
    let scopes: Vec<&str> = o
        .scope
        .iter()
        .flat_map(|s| s.split_ascii_whitespace())
        .collect();
    if !scopes.is_empty() {
        claims.insert("scope".into(), scopes.join(" ").into());
    }
    claims.insert("iat".into(), now.into());
    let exp = now
        .checked_add(ttl)
        .ok_or_else(|| CliError::usage("the lifetime is too long"))?;
    claims.insert("exp".into(), exp.into());
    for (k, v) in extra {
        claims.insert(k, v);
    }
    let mut header = Map::new();
    if let Some(k) = kid {
        header.insert("kid".into(), k.into());
    }
    if let Some(t) = &o.typ {
        header.insert("typ".into(), t.clone().into());
    }
    let token = mint::sign(&key, alg, &header, &Value::Object(claims))
        .map_err(|e| CliError::failed(format!("signing failed: {e}")))?;
    out(&format!("{token}\n"));
    Ok(0)
}
