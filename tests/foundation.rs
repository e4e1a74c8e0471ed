//! Foundation: a real Envoy loads the built svcauth filter, forwards what the rules allow to a
//! real upstream, answers what they deny itself, and refuses a bad plugin config at load.
//! Also checks the harness itself against a plain Envoy (no filter).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::Duration;

use svcauth_tests::{bootstrap, http, EchoUpstream, Envoy, Opts};

/// Public half of `filter/fixtures/rsa-a.pem` (kid "demo-rsa"), as in `envoy/demo.yaml`.
/// To be replaced by `svcauth_filter::fixtures::jwks_json()`.
const JWKS: &str = r#"{"keys":[{"kty":"RSA","kid":"demo-rsa","alg":"RS256","use":"sig","e":"AQAB","n":"uwZVk9R1FJbaqK9SqBzK-1YKQFEvOlX3F85MXgYVl_7vj3hc6iHcp-2SbAF_AHRG8fgEDpk6FGDGKQHgzU8Rf1wAg3J96PlJwum-pLt6pwKabHIStqZ7osATbpjHcA9_Qu5iiQBZRFk5SyxW0uTvWEkAhQGiFUO6E8YENRGmru2_BNSVsbI4pBH_PIUn563cwPamHqc7nJdQqLfWFwCsI9ZVvycOCJ7_T3x5uqP0ATV4et7UUsLM53z4_08uVIS_jCOz0XfnAILv8knOhnrpqCHhhVuiutmgOkqXSWnk4uLreu1nOxHyCbm2zFQiOd2aa8BfcCY_SokxwPTJk_vQoQ"}]}"#;

/// The demo's plugin configuration: `/health` open, `POST /admin/rotate` needs
/// `internal:admin`, everything else one of `orders:read` / `orders:write`.
fn plugin_config() -> String {
    serde_json::json!({
        "providers": {"demo": {
            "issuer": "https://auth.demo.local",
            "audiences": ["orders"],
            "jwks": JWKS,
        }},
        "rules": [
            {"match": {"prefix": "/health"}, "allow": true},
            {"match": {"path": "/admin/rotate", "methods": ["POST"]}, "requires": {"scopes_all": ["internal:admin"]}},
            {"match": {"prefix": "/"}, "requires": {"scopes_any": ["orders:read", "orders:write"]}},
        ],
    })
    .to_string()
}

const WAIT: Duration = Duration::from_secs(10);

#[test]
fn harness_drives_a_plain_envoy_without_the_filter() {
    let upstream = EchoUpstream::start();
    let yaml = format!(
        r#"admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
static_resources:
  listeners:
  - name: main
    address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: plain
          generate_request_id: true
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{prefix: "/direct"}}
                direct_response: {{status: 418, body: {{inline_string: "teapot"}}}}
              - match: {{prefix: "/"}}
                route: {{cluster: upstream}}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: upstream
    type: STATIC
    connect_timeout: 2s
    load_assignment:
      cluster_name: upstream
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {}}}}}}}
"#,
        upstream.port()
    );
    assert!(Envoy::validate(&yaml).0, "plain bootstrap must validate");
    let envoy = Envoy::start(&yaml);
    assert_ne!(envoy.port(), envoy.admin_port());

    let direct = http(envoy.port(), "GET", "/direct", &[]);
    assert_eq!((direct.status, direct.body.as_str()), (418, "teapot"));

    let resp = http(
        envoy.port(),
        "POST",
        "/echo?q=1",
        &[("x-dup", "a"), ("X-Dup", "b")],
    );
    assert_eq!(resp.status, 200);
    let echoed = resp.json();
    assert_eq!(
        (echoed["method"].as_str(), echoed["path"].as_str()),
        (Some("POST"), Some("/echo?q=1"))
    );
    let seen = upstream.last_request().unwrap();
    assert_eq!(seen.header_all("x-dup"), ["a", "b"]);
    assert!(
        seen.header("x-request-id").is_some(),
        "Envoy generates a request id"
    );

    assert!(envoy.stats().contains("server.live: 1"));
    assert_eq!(envoy.stat("http.plain.downstream_rq_completed"), Some(2));
    envoy.wait_log_contains("starting main dispatch loop", WAIT);
}

#[test]
fn open_route_passes_through_svcauth_to_the_upstream() {
    let upstream = EchoUpstream::start();
    let envoy = Envoy::start_plugin(&plugin_config(), &Opts::new(upstream.port()));

    let resp = http(envoy.port(), "GET", "/health", &[]);

    assert_eq!(resp.status, 200, "body: {}", resp.body);
    assert_eq!(resp.json()["path"], "/health");
    assert_eq!(upstream.request_count(), 1);
}

#[test]
fn spoofed_identity_headers_never_reach_the_upstream() {
    let upstream = EchoUpstream::start();
    let envoy = Envoy::start_plugin(&plugin_config(), &Opts::new(upstream.port()));

    let resp = http(
        envoy.port(),
        "GET",
        "/health",
        &[
            ("x-service-name", "admin-console"),
            ("X-Service-Name", "again"),
            ("x-service-scopes", "internal:admin"),
        ],
    );

    assert_eq!(resp.status, 200, "body: {}", resp.body);
    let seen = upstream.last_request().unwrap();
    assert_eq!(
        seen.header("x-service-name"),
        None,
        "headers seen upstream: {:?}",
        seen.headers
    );
    assert_eq!(
        seen.header("x-service-scopes"),
        None,
        "headers seen upstream: {:?}",
        seen.headers
    );
}

#[test]
fn protected_route_without_token_is_denied_with_401_and_never_reaches_the_upstream() {
    let upstream = EchoUpstream::start();
    let envoy = Envoy::start_plugin(&plugin_config(), &Opts::new(upstream.port()));

    let resp = http(envoy.port(), "GET", "/orders/42", &[]);

    assert_eq!(resp.status, 401, "body: {}", resp.body);
    let challenge = resp.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.starts_with("Bearer realm=\"svcauth\""),
        "WWW-Authenticate: {challenge:?}"
    );
    assert_eq!(upstream.request_count(), 0);
    envoy.wait_log_contains("token_missing", WAIT);
}

#[test]
fn plugin_config_with_an_unknown_field_is_refused_at_load_naming_the_field() {
    let upstream = EchoUpstream::start();
    let mut config: serde_json::Value = serde_json::from_str(&plugin_config()).unwrap();
    config["providers"]["demo"]["bogus_field"] = serde_json::json!(true);
    let yaml = bootstrap(&config.to_string(), &Opts::new(upstream.port()));

    let (valid, output) = Envoy::validate(&yaml);
    assert!(
        !valid,
        "envoy --mode validate accepted a bad plugin config:\n{output}"
    );

    let log = Envoy::start_expect_failure(&yaml, Duration::from_secs(30));
    assert!(
        log.contains("bogus_field"),
        "the refusal should name the field; log:\n{log}"
    );
}
