//! Google's X.509 key-set format, which `jwt_authn` accepts for GCP service accounts
//! (`https://www.googleapis.com/service_accounts/v1/metadata/x509/...`): a JSON object of
//! `kid` → PEM certificate. As in `jwt_verify_lib`, an object is read this way only when every
//! member is a non-empty `kid` whose value is one PEM certificate, each certificate must carry
//! an RSA key, and one bad certificate refuses the set. The certificate is only a wrapper of
//! the key: its validity dates, issuer and signature are not checked (as in `jwt_verify_lib`).

use der::{DecodePem as _, Encode as _};
use serde_json::{Map, Value};
use x509_cert::Certificate;

use crate::token::jwk::{Key, KeyMaterial, ParsedSet, RsaKey, MAX_KEYS};

const PREFIX: &str = "-----BEGIN CERTIFICATE-----\n";
const SUFFIX: &str = "\n-----END CERTIFICATE-----\n";

/// Whether `top` (a JSON object without `keys`) is an X.509 key set.
pub fn is_x509_set(top: &Map<String, Value>) -> bool {
    !top.is_empty()
        && top.iter().all(|(kid, v)| {
            !kid.is_empty()
                && v.as_str()
                    .is_some_and(|pem| pem.starts_with(PREFIX) && pem.ends_with(SUFFIX))
        })
}

/// The RSA keys of an X.509 key set, with their `kid`s.
pub fn parse_x509_set(top: &Map<String, Value>) -> Result<ParsedSet, String> {
    if top.len() > MAX_KEYS {
        return Err(format!(
            "not a usable X.509 key set: {} certificates (at most {MAX_KEYS})",
            top.len()
        ));
    }
    let mut out = ParsedSet::default();
    for (kid, pem) in top {
        let pem = pem.as_str().unwrap_or_default();
        let key = rsa_key(pem).map_err(|e| format!("unusable key: certificate {kid:?}: {e}"))?;
        out.keys
            .push(Key::new(Some(kid.clone()), None, KeyMaterial::Rsa(key)));
    }
    Ok(out)
}

fn rsa_key(pem: &str) -> Result<RsaKey, String> {
    let cert = Certificate::from_pem(pem).map_err(|e| format!("not an X.509 certificate: {e}"))?;
    let spki = cert
        .tbs_certificate()
        .subject_public_key_info()
        .to_der()
        .map_err(|e| format!("bad public key: {e}"))?;
    let key =
        RsaKey::from_spki_der(&spki).map_err(|_| "its public key is not an RSA key".to_string())?;
    let bits = key.n_len() * 8;
    if !(2048..=8192).contains(&bits) {
        return Err(format!("RSA modulus of {bits} bits (allowed 2048-8192)"));
    }
    Ok(key)
}
