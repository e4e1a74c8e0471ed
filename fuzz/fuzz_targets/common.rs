//! Shared by the fuzz targets: the fixture config, compiled once, and valid tokens that inputs
//! can splice in (`$0`..`$3`) so the fuzzer reaches signature checks, claims and scopes.

use std::sync::OnceLock;

use svcauth_filter::config::Config;
use svcauth_filter::fixtures::{self, claims, hmac_token, token, Fixture, NOW};
use svcauth_filter::jws::Alg;

/// The fixture config, compiled once (`svcauth_filter::fixtures::compiled`).
pub fn config() -> &'static Config {
    fixtures::compiled().expect("the fixture config compiles")
}

pub fn tokens() -> &'static [String; 4] {
    static T: OnceLock<[String; 4]> = OnceLock::new();
    T.get_or_init(|| {
        let c = claims(NOW);
        [
            hmac_token(Alg::HS256, &c),
            token(Fixture::Ec256, &c),
            token(Fixture::Ed25519, &c),
            hmac_token(
                Alg::HS256,
                &fixtures::claims_with(
                    NOW,
                    serde_json::json!({"scope": "orders:* ai-services:read", "tenant_id": 7}),
                ),
            ),
        ]
    })
}

/// `text` with `$0`..`$3` replaced by the valid tokens.
pub fn splice(text: &str) -> String {
    let t = tokens();
    text.replace("$0", &t[0])
        .replace("$1", &t[1])
        .replace("$2", &t[2])
        .replace("$3", &t[3])
}
