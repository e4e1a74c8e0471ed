//! Keys fetched at run time (remote JWKS), per provider, as the data path sees them.
//!
//! The adapter fills the store from fetches and from other worker VMs (shared data); the core
//! only reads it. A provider with `remote_jwks` and nothing loaded yet fails closed
//! (`keys_unavailable`).

use crate::token::jwk::{Key, ParsedSet};

/// One provider's fetched keys.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub keys: Vec<Key>,
    /// Host time of the fetch, in seconds.
    pub fetched_at: i64,
}

/// Fetched keys for every provider (index-aligned with `Config::providers`).
#[derive(Debug, Clone, Default)]
pub struct KeyStore {
    sets: Vec<Option<Loaded>>,
}

impl KeyStore {
    /// An empty store for `providers` providers.
    pub fn new(providers: usize) -> KeyStore {
        KeyStore {
            sets: vec![None; providers],
        }
    }

    /// The fetched keys of provider `p`, `None` until the first good set.
    pub fn get(&self, p: usize) -> Option<&Loaded> {
        self.sets.get(p).and_then(Option::as_ref)
    }

    /// Replaces provider `p`'s keys.
    pub fn set(&mut self, p: usize, loaded: Loaded) {
        if let Some(slot) = self.sets.get_mut(p) {
            *slot = Some(loaded);
        }
    }
}

/// The form in which one VM publishes a fetched set to the others: `<fetched_at>\n<body>`.
pub fn encode_shared(fetched_at: i64, body: &[u8]) -> Vec<u8> {
    let mut v = format!("{fetched_at}\n").into_bytes();
    v.extend_from_slice(body);
    v
}

/// The inverse of [`encode_shared`].
pub fn decode_shared(data: &[u8]) -> Option<(i64, &[u8])> {
    let nl = data.iter().position(|b| *b == b'\n')?;
    let (head, rest) = data.split_at(nl);
    let at = std::str::from_utf8(head).ok()?.parse().ok()?;
    Some((at, rest.get(1..).unwrap_or_default()))
}

/// Parses a fetched JWK Set body: at most `max_bytes`, at least one usable key. Unusable keys
/// are skipped and listed in the result so the caller can log them.
pub fn parse_fetched(body: &[u8], max_bytes: usize) -> Result<ParsedSet, String> {
    if body.len() > max_bytes {
        return Err(format!(
            "body of {} bytes exceeds the {max_bytes}-byte limit",
            body.len()
        ));
    }
    let text = std::str::from_utf8(body).map_err(|_| "body is not UTF-8".to_string())?;
    let set = crate::token::set::parse_set(text)?;
    if set.keys.is_empty() {
        return Err(format!(
            "no usable key ({} skipped: {})",
            set.skipped.len(),
            set.skipped.join("; ")
        ));
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    #[test]
    fn a_good_fetched_set_parses_and_a_bad_one_says_why() {
        let good = fixtures::jwks_json();
        assert_eq!(parse_fetched(good.as_bytes(), 65536).unwrap().keys.len(), 5);
        assert!(parse_fetched(good.as_bytes(), 100)
            .unwrap_err()
            .contains("exceeds"));
        assert!(parse_fetched(b"<html>", 65536)
            .unwrap_err()
            .contains("not a JWK Set"));
        assert!(parse_fetched(br#"{"keys":[]}"#, 65536)
            .unwrap_err()
            .contains("no usable key"));
        assert!(parse_fetched(&[0xff, 0xfe], 65536).is_err());
    }

    #[test]
    fn published_sets_round_trip() {
        let d = encode_shared(42, b"{\"keys\":[]}");
        assert_eq!(decode_shared(&d), Some((42, &b"{\"keys\":[]}"[..])));
        assert_eq!(decode_shared(b"nonsense"), None);
        assert_eq!(decode_shared(b"x\n{}"), None);
    }

    #[test]
    fn the_store_is_empty_until_set() {
        let mut s = KeyStore::new(2);
        assert!(s.get(0).is_none());
        s.set(
            1,
            Loaded {
                keys: vec![],
                fetched_at: 5,
            },
        );
        assert_eq!(s.get(1).map(|l| l.fetched_at), Some(5));
        s.set(
            7,
            Loaded {
                keys: vec![],
                fetched_at: 5,
            },
        );
        assert!(s.get(0).is_none());
    }
}
