//! The signing core's tests: settings and their refusals, the canonical string and its MAC as
//! the seed system's `RequestSigner` computes it, parsing, the window, and replay slots.

use hmac::{Hmac, KeyInit as _, Mac as _};
use sha2::Sha256;

use crate::contract::reason::Reason;
use crate::signing::*;

fn env_of(v: &str) -> impl Fn(&str) -> Option<String> + '_ {
    move |k| (k == "SIGNING").then(|| v.to_string())
}

fn compile_with(raw: serde_json::Value, env: &str) -> Result<Signing, String> {
    let raw: RawSigning = serde_json::from_value(raw).unwrap();
    compile("oauth", raw, &env_of(env))
}

const SECRET: &str = "reporting-client-secret-0123456789";

#[test]
fn the_defaults_are_the_documented_ones() {
    let s = compile_with(
        serde_json::json!({"secrets_env": "SIGNING"}),
        &format!("reporting-client:{SECRET}\nspiffe://x/y:{SECRET}x"),
    )
    .unwrap();
    assert!(s.required);
    assert_eq!(s.window, 300);
    assert_eq!(s.max_body_bytes, 1_048_576);
    assert_eq!(
        (s.timestamp_header.as_str(), s.signature_header.as_str()),
        ("x-timestamp", "x-signature")
    );
    assert_eq!(s.replay_per_slot, 16_384 / REPLAY_SLOTS);
    assert_eq!(s.secret("reporting-client"), Some(SECRET.as_bytes()));
    // The caller is everything before the last `:`.
    assert_eq!(
        s.secret("spiffe://x/y"),
        Some(format!("{SECRET}x").as_bytes())
    );
    assert_eq!(s.secret("other"), None);
    assert!(
        !format!("{s:?}").contains(SECRET),
        "Debug hides the secrets"
    );
}

#[test]
fn bad_signing_settings_are_refused_without_echoing_a_secret() {
    let ok = format!("c:{SECRET}");
    let cases: [(serde_json::Value, &str, &str); 9] = [
        (
            serde_json::json!({"secrets_env": "NOPE"}),
            ok.as_str(),
            "secrets_env: environment variable NOPE is not set",
        ),
        (
            serde_json::json!({"secrets_env": "SIGNING"}),
            "",
            "secrets_env: SIGNING holds no",
        ),
        (
            serde_json::json!({"secrets_env": "SIGNING"}),
            "c-short",
            "secrets_env: entry 0 of SIGNING is not caller:secret",
        ),
        (
            serde_json::json!({"secrets_env": "SIGNING"}),
            "c:short",
            "secrets_env: entry 0 of SIGNING (c): the secret is shorter",
        ),
        (
            serde_json::json!({"secrets_env": "SIGNING"}),
            &format!("{ok},{ok}"),
            "secrets_env: entry 1 of SIGNING: empty or repeated",
        ),
        (
            serde_json::json!({"secrets_env": "SIGNING", "window_seconds": 0}),
            ok.as_str(),
            "window_seconds:",
        ),
        (
            serde_json::json!({"secrets_env": "SIGNING", "max_body_bytes": 1usize << 30}),
            ok.as_str(),
            "max_body_bytes:",
        ),
        (
            serde_json::json!({"secrets_env": "SIGNING", "replay_cache_per_caller": 1}),
            ok.as_str(),
            "replay_cache_per_caller:",
        ),
        (
            serde_json::json!({"secrets_env": "SIGNING", "signature_header": "x-timestamp"}),
            ok.as_str(),
            "signature_header: must differ",
        ),
    ];
    for (raw, env, want) in cases {
        let e = compile_with(raw, env).unwrap_err();
        let want = format!("providers.oauth.signed_requests.{want}");
        assert!(e.starts_with(&want), "got {e:?}, want {want:?}");
        assert!(!e.contains(SECRET) && !e.contains("short\""), "{e}");
    }
}

/// The value a client written as the seed system's RequestSigner computes (Python:
/// `hmac.new(secret, f"{method}|{path}|".encode() + body + f"|{ts}".encode(), sha256)`).
#[test]
fn the_mac_is_hmac_sha256_over_the_canonical_string() {
    let body = br#"{"report":"q3"}"#;
    let c = canonical("POST", "/reports/run?fmt=csv", body, "1767225600");
    assert_eq!(
        c,
        br#"POST|/reports/run?fmt=csv|{"report":"q3"}|1767225600"#.to_vec()
    );
    let mut m = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    m.update(&c);
    let want: [u8; 32] = m.finalize().into_bytes().into();
    let got = mac(
        SECRET.as_bytes(),
        "POST",
        "/reports/run?fmt=csv",
        body,
        "1767225600",
    );
    assert_eq!(got, want);
    let sig = parse_signature(&hex(&got)).unwrap();
    assert!(verify(
        SECRET.as_bytes(),
        &sig,
        "POST",
        "/reports/run?fmt=csv",
        body,
        "1767225600"
    ));
    assert_eq!(
        parse_signature(&hex(&got).to_ascii_uppercase()),
        Some(got),
        "upper-case hex is the same signature"
    );
    // Every part is covered.
    for (m, p, b, t) in [
        ("PUT", "/reports/run?fmt=csv", &body[..], "1767225600"),
        ("POST", "/reports/run?fmt=json", &body[..], "1767225600"),
        ("POST", "/reports/run?fmt=csv", &b"{}"[..], "1767225600"),
        ("POST", "/reports/run?fmt=csv", &body[..], "1767225601"),
    ] {
        assert!(!verify(SECRET.as_bytes(), &sig, m, p, b, t), "{m} {p} {t}");
    }
    assert!(!verify(
        b"another-client-secret-000",
        &sig,
        "POST",
        "/reports/run?fmt=csv",
        body,
        "1767225600"
    ));
}

#[test]
fn malformed_timestamps_and_signatures_do_not_parse() {
    assert_eq!(parse_timestamp("1767225600"), Some(1_767_225_600));
    assert_eq!(parse_timestamp(" 17 "), Some(17));
    for bad in [
        "",
        "-5",
        "+5",
        "1.5",
        "1e9",
        "0x10",
        "1234567890123",
        "１２",
    ] {
        assert_eq!(parse_timestamp(bad), None, "{bad:?}");
    }
    let good = "ab".repeat(32);
    assert_eq!(parse_signature(&good), Some([0xab; 32]));
    for bad in [
        "ab".repeat(31),
        "ab".repeat(33),
        format!("{}zz", "ab".repeat(31)),
        format!("{}+1", "ab".repeat(31)),
        format!("{}é", "a".repeat(62)),
    ] {
        assert_eq!(parse_signature(&bad), None, "{bad:?}");
    }
}

#[test]
fn the_window_holds_both_ways_and_its_edge_is_inside() {
    assert_eq!(check_time(1000, 1300, 300), Ok(()));
    assert_eq!(check_time(1600, 1300, 300), Ok(()), "client clock ahead");
    assert_eq!(check_time(999, 1300, 300), Err(Reason::SignatureExpired));
    assert_eq!(check_time(1601, 1300, 300), Err(Reason::SignatureExpired));
    assert_eq!(
        check_time(i64::MAX, i64::MIN, 300),
        Err(Reason::SignatureExpired)
    );
}

#[test]
fn a_replay_slot_refuses_a_signature_it_holds_until_it_expires() {
    let a = [1u8; 32];
    let b = [2u8; 32];
    let s1 = admit(None, &a, 1300, 1000, 2).unwrap();
    assert_eq!(admit(Some(&s1), &a, 1300, 1100, 2), Err(Refusal::Replayed));
    let s2 = admit(Some(&s1), &b, 1400, 1100, 2).unwrap();
    // Full of live signatures: nothing more is admitted (fail closed).
    assert_eq!(
        admit(Some(&s2), &[3u8; 32], 1400, 1100, 2),
        Err(Refusal::Full)
    );
    // Once `a` expired it is forgotten (a stale request is refused by its timestamp).
    let s3 = admit(Some(&s2), &a, 1500, 1301, 2).unwrap();
    assert_eq!(s3.len(), 2 * ENTRY_BYTES);
    assert_eq!(admit(Some(&s3), &b, 1500, 1350, 2), Err(Refusal::Replayed));
    // A slot that does not parse is read as empty.
    assert!(admit(Some(&[7u8; 5]), &a, 1300, 1000, 2).is_ok());
}

#[test]
fn replay_keys_separate_providers_callers_and_slots() {
    let mut s = [0u8; 32];
    assert_eq!(slot_of(&s), 0);
    s[0] = 65;
    assert_eq!(slot_of(&s), 1);
    let k0 = replay_key("oauth", "client", 0);
    assert_ne!(k0, replay_key("oauth", "client", 1));
    assert_ne!(k0, replay_key("oaut", "hclient", 0));
    assert_eq!(k0, "svcauth.replay.5.oauth.0.client");
}
