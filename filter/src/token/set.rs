//! Reading a key set in either form svcauth accepts: a JWK Set (`{"keys": [...]}`, [`super::jwk`])
//! or Google's service-account form (`{"kid": "-----BEGIN CERTIFICATE-----..."}`,
//! [`super::x509`]). Uses `jwk` and `x509`.

use serde_json::Value;

use super::jwk::{self, ParsedSet};
use super::x509;

/// Parses a key set. A set that is neither form, more than [`jwk::MAX_KEYS`] keys, or a
/// malformed key of a supported type is an error; keys svcauth does not use are skipped and
/// listed. An empty result is the caller's to refuse.
pub fn parse_set(json: &str) -> Result<ParsedSet, String> {
    let value: Value = serde_json::from_str(json).map_err(|e| format!("not a JWK Set: {e}"))?;
    let Value::Object(top) = value else {
        return Err("not a JWK Set: not a JSON object".into());
    };
    if !top.contains_key("keys") && x509::is_x509_set(&top) {
        return x509::parse_x509_set(&top);
    }
    jwk::parse_jwk_set(&top)
}
