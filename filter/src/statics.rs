//! Static service credentials (`X-Service-ID` + `X-Service-Secret`): a migration path for
//! services that still send a shared secret instead of a token.
//!
//! The secrets themselves are never configured: an environment variable holds, per service,
//! a salt and `SHA-256(salt || secret)`, as `id:salt_hex:hash_hex` entries separated by commas,
//! spaces or newlines. A secret is checked with a constant-time compare; the secret header is
//! never forwarded upstream and never logged. Only rules that name the provider accept them.

use crate::contract::names::is_header_name;
use std::collections::BTreeMap;

use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use crate::config::error::ConfigError;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawStatic {
    #[serde(default)]
    id_header: Option<String>,
    #[serde(default)]
    secret_header: Option<String>,
    credentials_env: String,
    #[serde(default)]
    scopes: BTreeMap<String, Vec<String>>,
}

#[derive(Clone, PartialEq, Eq)]
struct Entry {
    id: String,
    salt: Vec<u8>,
    hash: [u8; 32],
    scopes: Vec<String>,
}

/// A compiled set of static credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct StaticCreds {
    pub id_header: String,
    pub secret_header: String,
    entries: Vec<Entry>,
}

impl std::fmt::Debug for StaticCreds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "StaticCreds({} services, {} / {})",
            self.entries.len(),
            self.id_header,
            self.secret_header
        )
    }
}

/// `SHA-256(salt || secret)` as lower-case hex: what the environment variable holds.
pub fn hash_hex(salt: &[u8], secret: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(secret);
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect()
}

pub(crate) fn compile(
    name: &str,
    raw: RawStatic,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<StaticCreds, ConfigError> {
    let at = |f: &str| format!("providers.{name}.static_credentials.{f}");
    let id_header = raw
        .id_header
        .unwrap_or_else(|| "x-service-id".into())
        .to_ascii_lowercase();
    let secret_header = raw
        .secret_header
        .unwrap_or_else(|| "x-service-secret".into())
        .to_ascii_lowercase();
    for (field, h) in [("id_header", &id_header), ("secret_header", &secret_header)] {
        if !is_header_name(h) || h == "authorization" {
            return Err(ConfigError(format!(
                "{}: {h:?} cannot carry credentials",
                at(field)
            )));
        }
    }
    if id_header == secret_header {
        return Err(ConfigError(format!(
            "{}: must differ from id_header",
            at("secret_header")
        )));
    }
    let Some(text) = env(&raw.credentials_env) else {
        return Err(ConfigError(format!(
            "{}: environment variable {} is not set (pass it with vm_config.environment_variables)",
            at("credentials_env"),
            raw.credentials_env
        )));
    };
    let mut entries: Vec<Entry> = Vec::new();
    for (i, item) in text
        .split([',', ' ', '\n', '\t'])
        .filter(|s| !s.is_empty())
        .enumerate()
    {
        let mut parts = item.split(':');
        let (Some(id), Some(salt), Some(hash), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(ConfigError(format!(
                "{}: entry {i} of {} is not id:salt_hex:sha256_hex",
                at("credentials_env"),
                raw.credentials_env
            )));
        };
        let salt = unhex(salt).filter(|s| s.len() >= 8);
        let hash: Option<[u8; 32]> = unhex(hash).and_then(|h| h.try_into().ok());
        let (Some(salt), Some(hash)) = (salt, hash) else {
            return Err(ConfigError(format!(
                "{}: entry {i} ({id}) needs a hex salt of at least 8 bytes and a 32-byte hex SHA-256",
                at("credentials_env")
            )));
        };
        if id.is_empty() || entries.iter().any(|e| e.id == id) {
            return Err(ConfigError(format!(
                "{}: entry {i}: empty or repeated service id",
                at("credentials_env")
            )));
        }
        let scopes = raw.scopes.get(id).cloned().unwrap_or_default();
        entries.push(Entry {
            id: id.to_string(),
            salt,
            hash,
            scopes,
        });
    }
    if entries.is_empty() {
        return Err(ConfigError(format!(
            "{}: {} holds no credentials",
            at("credentials_env"),
            raw.credentials_env
        )));
    }
    Ok(StaticCreds {
        id_header,
        secret_header,
        entries,
    })
}

impl StaticCreds {
    /// The service id and its scopes if `secret` is that service's; `None` otherwise. The work
    /// done is the same whether or not the id exists.
    pub fn check(&self, id: &str, secret: &str) -> Option<(&str, &[String])> {
        let entry = self.entries.iter().find(|e| e.id == id);
        let (salt, want) = match entry {
            Some(e) => (e.salt.as_slice(), e.hash),
            None => (&b"svcauth-no-such-service"[..], [0u8; 32]),
        };
        let mut h = Sha256::new();
        h.update(salt);
        h.update(secret.as_bytes());
        let got: [u8; 32] = h.finalize().into();
        let equal: bool = got.ct_eq(&want).into();
        match entry {
            Some(e) if equal => Some((e.id.as_str(), e.scopes.as_slice())),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(env_value: &str) -> Result<StaticCreds, ConfigError> {
        let raw: RawStatic = serde_json::from_value(serde_json::json!({
            "credentials_env": "CREDS", "scopes": {"billing": ["auth:verify"]}
        }))
        .unwrap();
        let v = env_value.to_string();
        compile("legacy", raw, &move |k| (k == "CREDS").then(|| v.clone()))
    }

    #[test]
    fn a_matching_secret_is_accepted_with_its_scopes_and_others_refused() {
        let salt = b"0123456789abcdef";
        let line = format!("billing:{}:{}", hex(salt), hash_hex(salt, b"s3cret"));
        let c = creds(&line).unwrap();
        let (id, scopes) = c.check("billing", "s3cret").unwrap();
        assert_eq!((id, scopes), ("billing", &["auth:verify".to_string()][..]));
        assert!(c.check("billing", "s3cret ").is_none());
        assert!(c.check("billing", "").is_none());
        assert!(c.check("other", "s3cret").is_none());
    }

    #[test]
    fn malformed_credential_lists_are_refused_without_echoing_them() {
        for bad in [
            "",
            "billing",
            "billing:zz:00",
            "billing:00:00",
            "a:0011223344556677:00",
        ] {
            let e = creds(bad).unwrap_err();
            assert!(
                e.0.starts_with("providers.legacy.static_credentials."),
                "{e}"
            );
        }
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }
}
