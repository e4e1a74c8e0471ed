//! A provider's keys known at configure time and the algorithms it accepts: the inline `jwks`
//! (read by the token room), the HMAC secrets of `hmac_secret_env`, and `algorithms` (each one
//! some configured key can verify; by default every such algorithm).
//! May use: `config::raw`, `config::error`, `token`.

use serde_json::Value;

use crate::token::jwk::{Key, KeyMaterial};
use crate::token::jws::{Alg, ALL_ALGS};

use super::error::{err, ConfigError};
use super::raw::OneOrMany;

/// The shortest HMAC secret accepted (an HS256 hash's size, RFC 7518 §3.2).
const MIN_HMAC_SECRET_BYTES: usize = 32;

/// The keys of an inline `jwks`: a JWK Set as a JSON object or as a string; skipped keys are
/// logged, a set with no usable key is refused.
pub(super) fn inline_keys(name: &str, jwks: Option<Value>) -> Result<Vec<Key>, ConfigError> {
    let at = format!("providers.{name}.jwks");
    let Some(jwks) = jwks else {
        return Ok(Vec::new());
    };
    let text = match jwks {
        Value::String(s) => s,
        other @ Value::Object(_) => other.to_string(),
        _ => return err(at, "must be a JWK Set, as a JSON object or a JSON string"),
    };
    let set = crate::token::set::parse_set(&text).map_err(|e| ConfigError(format!("{at}: {e}")))?;
    if set.keys.is_empty() {
        return err(
            at,
            set.skipped.first().map_or("has no keys".into(), |s| {
                format!("unusable key: {s} (the set has no usable key)")
            }),
        );
    }
    for s in &set.skipped {
        log::warn!("svcauth: provider {name}: JWKS key skipped: {s}");
    }
    Ok(set.keys)
}

/// The HMAC secrets of `hmac_secret_env` (one variable or a list), read from `env`; the secret
/// itself never appears in a message.
pub(super) fn hmac_keys(
    name: &str,
    vars: Option<OneOrMany>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<Key>, ConfigError> {
    let at = format!("providers.{name}.hmac_secret_env");
    let vars = match vars {
        None => return Ok(Vec::new()),
        Some(OneOrMany::One(v)) => vec![v],
        Some(OneOrMany::Many(v)) => v,
    };
    if vars.is_empty() {
        return err(at, "must name at least one environment variable");
    }
    let mut keys = Vec::with_capacity(vars.len());
    for var in vars {
        let Some(secret) = env(&var) else {
            return err(
                at,
                format!("environment variable {var} is not set (pass it with vm_config.environment_variables)"),
            );
        };
        if secret.len() < MIN_HMAC_SECRET_BYTES {
            return err(
                at,
                format!("the secret in {var} is shorter than {MIN_HMAC_SECRET_BYTES} bytes"),
            );
        }
        keys.push(Key {
            kid: None,
            alg: None,
            spki_der: Vec::new(),
            material: KeyMaterial::Hmac(secret.into_bytes()),
        });
    }
    Ok(keys)
}

/// The provider's `algorithms`: each must be one some key can verify. Remote keys are not
/// known yet, so with `remote` every asymmetric algorithm may be served by them. Not set:
/// every usable algorithm.
pub(super) fn algorithms(
    name: &str,
    names: Option<Vec<String>>,
    keys: &[Key],
    remote: bool,
) -> Result<Vec<Alg>, ConfigError> {
    let at = format!("providers.{name}.algorithms");
    let usable: Vec<Alg> = ALL_ALGS
        .iter()
        .copied()
        .filter(|a| keys.iter().any(|k| k.fits(*a)) || (remote && !a.is_hmac()))
        .collect();
    let Some(names) = names else {
        return Ok(usable);
    };
    if names.is_empty() {
        return err(at, "must list at least one algorithm");
    }
    let mut algs = Vec::new();
    for n in names {
        let Some(a) = Alg::from_name(&n) else {
            return err(at, crate::token::alg::unsupported(&n));
        };
        if !usable.contains(&a) {
            return err(
                at,
                format!("{n} is allowed but no configured key can verify it"),
            );
        }
        algs.push(a);
    }
    Ok(algs)
}
