//! The Envoys of `scripts/bench`, one per KIND: the same listener (`bench`, HTTP/1.1, hardened)
//! and route (a `direct_response` 200, the same "upstream" for all) apart from the auth filters.
//! The auth settings are the same for `jwt_authn` (+ RBAC) and svcauth: issuer, audience, the
//! fixture keys (RSA `rsa-a`, EC P-256 `ec256`, the fixture HMAC secret) and the scope rule
//! "`orders:read` or `orders:write`". `wasm_empty` is the floor: the same wasm filter block as
//! svcauth (V8, fail closed) loading `bench/empty-filter` (an SDK filter that only continues).
//!
//! Uses the generator (crate root) and the filter's fixtures.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Value};
use svcauth_filter::fixtures::{self, Fixture, AUDIENCE, HMAC_ENV, HMAC_SECRET, ISSUER};

use crate::{render, wasm_filter, yaml_str, Action, Bootstrap, Listener, Route, WasmFilter};

/// Every KIND, in the order the bench reports them.
pub const KINDS: [&str; 5] = [
    "none",
    "wasm_empty",
    "jwt_authn",
    "jwt_authn_nocache",
    "svcauth",
];

/// The public JWKS both filters verify with: RSA `rsa-a` (RS256), EC `ec256` (ES256).
pub fn public_keys() -> Vec<Value> {
    vec![
        fixtures::public_jwk(Fixture::RsaA, "rsa-a"),
        fixtures::public_jwk(Fixture::Ec256, "ec256"),
    ]
}

/// The svcauth plugin configuration of the bench.
pub fn svcauth_config() -> Value {
    json!({
        "providers": {
            "internal": {
                "issuer": ISSUER,
                "audiences": [AUDIENCE],
                "jwks": {"keys": public_keys()},
                "hmac_secret_env": HMAC_ENV,
                "from_headers": [{"name": "authorization", "value_prefix": "Bearer "}],
                "clock_skew_seconds": 60
            }
        },
        "rules": [
            {"match": {"prefix": "/"}, "requires": {"scopes_any": ["orders:read", "orders:write"]}}
        ]
    })
}

/// jwt_authn (with or without its cache) and the RBAC filter that checks the scope.
fn jwt_authn_filters(cache: bool) -> Vec<String> {
    let mut keys = public_keys();
    keys.push(json!({"kty": "oct", "alg": "HS256", "k": URL_SAFE_NO_PAD.encode(HMAC_SECRET)}));
    let jwks = json!({ "keys": keys }).to_string();
    let cache = if cache {
        "      jwt_cache_config: {jwt_cache_size: 1000}\n"
    } else {
        ""
    };
    let jwt = format!(
        r#"name: envoy.filters.http.jwt_authn
typed_config:
  "@type": type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication
  providers:
    internal:
      issuer: {iss}
      audiences: [{aud}]
      local_jwks: {{inline_string: {jwks}}}
      forward: true
      clock_skew_seconds: 60
      payload_in_metadata: jwt_payload
{cache}  rules:
  - match: {{prefix: "/"}}
    requires: {{provider_name: internal}}
"#,
        iss = yaml_str(ISSUER),
        aud = yaml_str(AUDIENCE),
        jwks = yaml_str(&jwks),
    );
    let rbac = r#"name: envoy.filters.http.rbac
typed_config:
  "@type": type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC
  rules:
    action: ALLOW
    policies:
      orders-scope:
        permissions: [{any: true}]
        principals:
        - metadata:
            filter: envoy.filters.http.jwt_authn
            path: [{key: jwt_payload}, {key: scope}]
            value: {string_match: {safe_regex: {regex: "(.* )?orders:(read|write)( .*)?"}}}
"#;
    vec![jwt, rbac.to_string()]
}

/// The bench's Envoy of `kind` on 127.0.0.1:`port` (admin on `admin`); `wasm` is the module of
/// `wasm_empty` or `svcauth`.
pub fn envoy_config(kind: &str, port: u16, admin: u16, wasm: &str) -> Result<String, String> {
    let filters = match kind {
        "none" => Vec::new(),
        "jwt_authn" => jwt_authn_filters(true),
        "jwt_authn_nocache" => jwt_authn_filters(false),
        "svcauth" => vec![wasm_filter(&WasmFilter {
            name: "svcauth".into(),
            fail_open: false,
            wasm: wasm.into(),
            configuration: Some(svcauth_config().to_string()),
            env: [(HMAC_ENV.to_string(), HMAC_SECRET.to_string())].into(),
        })],
        "wasm_empty" => vec![wasm_filter(&WasmFilter {
            name: "empty".into(),
            fail_open: false,
            wasm: wasm.into(),
            ..WasmFilter::default()
        })],
        other => {
            return Err(format!(
                "unknown kind {other:?} (one of: {})",
                KINDS.join(" | ")
            ))
        }
    };
    let mut listener = Listener::new("bench");
    listener.port = port;
    listener.codec = "HTTP1".into();
    listener.virtual_host = "bench".into();
    listener.routes.push(Route {
        prefix: "/".into(),
        action: Action::Direct {
            status: 200,
            body: "ok\n".into(),
        },
        extra: None,
    });
    listener.http_filters = filters;
    Ok(render(&Bootstrap {
        comment: Some(format!(
            "scripts/bench: Envoy with auth = {kind}. Generated by `svcauth-bench envoy-config`.\nIdentical for every kind apart from the auth filters."
        )),
        admin_port: admin,
        listeners: vec![listener],
        ..Bootstrap::default()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwt_authn_gets_the_fixture_hmac_secret_as_an_oct_key() {
        let y = envoy_config("jwt_authn", 1, 2, "").unwrap_or_default();
        let k = URL_SAFE_NO_PAD.encode(HMAC_SECRET);
        assert!(y.contains(r#"\"kty\":\"oct\""#), "{y}");
        assert!(y.contains(&k), "{y}");
    }

    #[test]
    fn kinds_differ_only_in_their_filters() {
        let none = envoy_config("none", 1, 2, "/m.wasm").unwrap_or_default();
        assert!(none.contains("port_value: 1}"), "{none}");
        for kind in KINDS {
            let y = envoy_config(kind, 1, 2, "/m.wasm").unwrap_or_default();
            assert!(y.contains("direct_response: {status: 200"), "{kind}: {y}");
        }
        assert!(envoy_config("jwt_authn", 1, 2, "")
            .unwrap_or_default()
            .contains("jwt_cache_size"));
        assert!(!envoy_config("jwt_authn_nocache", 1, 2, "")
            .unwrap_or_default()
            .contains("jwt_cache_size"));
        assert!(envoy_config("other", 1, 2, "").is_err());
    }
}
