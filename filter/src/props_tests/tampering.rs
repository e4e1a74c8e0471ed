//! Tampering never passes: any single-byte change to a valid token is refused, exhaustively
//! for two tokens and by sampling for every algorithm family, also with the original cached.

use proptest::prelude::*;
use proptest::sample::Index;

use crate::cache::TokenCache;
use crate::decide::decide;
use crate::fixtures::NOW;
use crate::verify;

use super::{allowed, cases, config, request, valid_tokens};

/// The token with byte `i` replaced by `b`, decoded as the adapter decodes header values.
fn with_byte(t: &str, i: usize, b: u8) -> String {
    let mut bytes = t.as_bytes().to_vec();
    bytes[i] = b;
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Asserts that `tampered` is denied on a fresh cache and on one holding the original token,
/// and that `verify` refuses it.
fn assert_refused(original: &str, tampered: &str, what: &str) {
    let auth = format!("Bearer {tampered}");
    let req = request("/orders", &auth);
    let fresh = decide(config(), &mut TokenCache::new(0), &req, NOW);
    assert!(
        !allowed(&fresh),
        "{what}: tampered token allowed: {tampered}"
    );
    let mut warm = TokenCache::new(8);
    let ok = decide(
        config(),
        &mut warm,
        &request("/orders", &format!("Bearer {original}")),
        NOW,
    );
    assert!(allowed(&ok), "{what}: the original token is valid");
    assert!(
        !allowed(&decide(config(), &mut warm, &req, NOW)),
        "{what}: tampered token allowed next to its cached original"
    );
    assert!(verify::verify(config(), tampered, NOW).is_err(), "{what}");
}

/// Every position of an HS256 and an ES256 token, each replaced by a few bytes: the next
/// base64url character, characters that decode to other bits, separators, and non-ASCII.
#[test]
fn every_single_byte_change_of_a_valid_token_is_refused() {
    for (alg, t) in valid_tokens()
        .iter()
        .filter(|(a, _)| *a == "HS256" || *a == "ES256")
    {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        for (i, &orig) in t.as_bytes().iter().enumerate() {
            let next = ALPHABET
                .iter()
                .position(|&c| c == orig)
                .map_or(b'A', |p| ALPHABET[(p + 1) % ALPHABET.len()]);
            for b in [next, orig ^ 0x01, b'.', b'=', b' ', b',', 0x00, 0xff] {
                if b != orig {
                    assert_refused(
                        t,
                        &with_byte(t, i, b),
                        &format!("{alg} byte {i} -> {b:#04x}"),
                    );
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(cases(1500))]

    #[test]
    fn any_single_byte_change_of_any_valid_token_is_refused(which in any::<Index>(), pos in any::<Index>(), b in any::<u8>()) {
        let (alg, t) = which.get(valid_tokens());
        let i = pos.index(t.len());
        prop_assume!(t.as_bytes()[i] != b);
        let tampered = with_byte(t, i, b);
        let auth = format!("Bearer {tampered}");
        let d = decide(config(), &mut TokenCache::new(0), &request("/orders", &auth), NOW);
        prop_assert!(!allowed(&d), "{alg}: byte {i} -> {b:#04x} allowed: {tampered}");
    }
}
