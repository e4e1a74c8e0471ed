//! `svcauth keygen`: a new signing key, written as `<kid>.pem` (0600) + `<kid>.json` (public
//! JWK), or `<kid>.secret` (0600) for HMAC.

use std::ffi::OsString;
use std::path::PathBuf;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use lexopt::Arg::{Long, Short};
use svcauth_filter::jws::Alg;
use svcauth_filter::mint::SigningKey;

use crate::args;
use crate::files;
use crate::outcome::{out, CliError, CmdResult};

pub const HELP: &str = "\
svcauth keygen: generate a signing key for service tokens

Usage: svcauth keygen --kid KID [--alg ALG] [--out DIR] [--force]

Writes, for an asymmetric ALG:
  DIR/KID.pem    the private key (PKCS#8 PEM), created with mode 0600. Keep it secret; it is
                 what `svcauth mint --key` signs with.
  DIR/KID.json   the public JWK (kid, alg, use: sig). Add it to the JWK Set that the plugin
                 config's `jwks` holds: `svcauth jwks add SET DIR/KID.json`.
and for HS256/HS384/HS512:
  DIR/KID.secret the HMAC secret, created with mode 0600: one line of random base64url text
                 (43, 64 or 86 characters for HS256/384/512). The secret is that text, byte for
                 byte, exactly as the filter reads it from the environment variable named by
                 `hmac_secret_env` (e.g. SVCAUTH_HMAC=\"$(cat DIR/KID.secret)\"). No JWK is written:
                 a symmetric key never goes into a JWK Set.

Options:
      --kid KID    the key id (letters, digits, '.', '_', '-'); also the file names
      --alg ALG    ES256 (EC P-256), ES384 (EC P-384), ES512 (EC P-521), EdDSA (Ed25519),
                   RS256, RS384, RS512, PS256, PS384, PS512 (RSA 2048 bits),
                   HS256, HS384, HS512 (HMAC secret)                  [default: ES256]
      --out DIR    where to write (created with mode 0700 if missing)   [default: .]
      --force      replace existing files of this kid (default: refuse to overwrite a key)
  -h, --help       this help

Example, a rotation:
  svcauth keygen --alg ES256 --kid orders-2025-06 --out keys
  svcauth jwks add jwks.json keys/orders-2025-06.json     # publish the new key beside the old
  ... deploy jwks.json, then mint with the new key ...
  svcauth jwks remove jwks.json orders-2025-01            # once old tokens have expired
";

/// Whether a kid is safe as a file name and in messages.
pub fn valid_kid(kid: &str) -> bool {
    !kid.is_empty()
        && kid.len() <= 128
        && !kid.starts_with('.')
        && kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// Parses `--alg`.
pub fn parse_alg(name: &str) -> Result<Alg, CliError> {
    Alg::from_name(name).ok_or_else(|| {
        let shown = if args::printable(name) { name } else { "?" };
        CliError::usage(format!(
            "unsupported --alg {shown:?} (supported: RS256, RS384, RS512, PS256, PS384, PS512, \
             ES256, ES384, ES512, EdDSA, HS256, HS384, HS512; names are case-sensitive)"
        ))
    })
}

pub fn run(argv: Vec<OsString>) -> CmdResult {
    let mut p = lexopt::Parser::from_args(argv);
    let mut kid: Option<String> = None;
    let mut alg: Option<String> = None;
    let mut dir: Option<String> = None;
    let mut force = false;
    while let Some(arg) = p.next()? {
        match arg {
            Short('h') | Long("help") => {
                out(HELP);
                return Ok(0);
            }
            Long("kid") => args::once(&mut kid, args::value(&mut p, "kid")?, "kid")?,
            Long("alg") => args::once(&mut alg, args::value(&mut p, "alg")?, "alg")?,
            Long("out") => args::once(&mut dir, args::value(&mut p, "out")?, "out")?,
            Long("force") => force = true,
            other => return Err(args::unexpected(other, "keygen takes only options")),
        }
    }
    let kid = args::need(kid, "kid")?;
    if !valid_kid(&kid) {
        return Err(CliError::usage(
            "--kid must be 1-128 letters, digits, '.', '_' or '-' (it names the files), not \
             starting with '.'",
        ));
    }
    let alg = parse_alg(alg.as_deref().unwrap_or("ES256"))?;
    let dir = PathBuf::from(dir.unwrap_or_else(|| ".".into()));
    files::ensure_dir(&dir)?;
    let key = SigningKey::generate(alg)
        .map_err(|e| CliError::failed(format!("key generation failed: {e}")))?;

    if let SigningKey::Hmac(bytes) = &key {
        let path = dir.join(format!("{kid}.secret"));
        let text = URL_SAFE_NO_PAD.encode(bytes);
        files::write_file(&path, format!("{text}\n").as_bytes(), 0o600, force)?;
        out(&format!(
            "wrote {}  HMAC secret for {} ({} characters), mode 0600\n\
             The secret is the file's text as-is. Give it to Envoy in the environment variable \
             that the provider's hmac_secret_env names (vm_config.environment_variables), e.g.\n  \
             SVCAUTH_HMAC=\"$(cat {})\"\n\
             and mint with: svcauth mint --secret-file {} --kid {kid} ...\n",
            path.display(),
            alg.name(),
            text.len(),
            path.display(),
            path.display(),
        ));
        return Ok(0);
    }

    let pem = key
        .to_pem()
        .map_err(|e| CliError::failed(format!("cannot encode the private key: {e}")))?;
    let jwk = key
        .public_jwk(&kid, Some(alg))
        .ok_or_else(|| CliError::failed("this key type has no public JWK"))?;
    let jwk_text = serde_json::to_string_pretty(&jwk)
        .map_err(|e| CliError::failed(format!("cannot encode the JWK: {e}")))?;
    let pem_path = dir.join(format!("{kid}.pem"));
    let jwk_path = dir.join(format!("{kid}.json"));
    // Refuse before writing anything, so a half-made pair never exists.
    if !force {
        for p in [&pem_path, &jwk_path] {
            if std::fs::symlink_metadata(p).is_ok() {
                return Err(CliError::failed(format!(
                    "{} already exists (not overwritten; pass --force to replace this kid's files)",
                    p.display()
                )));
            }
        }
    }
    files::write_file(&pem_path, pem.as_bytes(), 0o600, force)?;
    files::write_file(&jwk_path, format!("{jwk_text}\n").as_bytes(), 0o644, force)?;
    out(&format!(
        "wrote {}  private key ({}, {}), mode 0600: keep it secret\n\
         wrote {}  public JWK (kid {kid}, alg {})\n\
         next: svcauth jwks add JWKS.json {}\n",
        pem_path.display(),
        key.kind(),
        alg.name(),
        jwk_path.display(),
        alg.name(),
        jwk_path.display(),
    ));
    Ok(0)
}
