//! The core's OIDC discovery: URLs, the document path, the document checks, and the
//! `remote_jwks.discovery` settings as the configuration compiles them.

use crate::discovery::*;

fn hosts(h: &[&str]) -> Vec<String> {
    h.iter().map(|s| s.to_string()).collect()
}

fn doc(issuer: &str, jwks_uri: &str) -> Vec<u8> {
    serde_json::json!({"issuer": issuer, "jwks_uri": jwks_uri, "response_types_supported": ["code"]})
        .to_string()
        .into_bytes()
}

#[test]
fn issuer_urls_parse_into_host_port_and_path() {
    let u = HttpUrl::parse("https://Auth.Internal").unwrap();
    assert_eq!(
        (u.https, u.host.as_str(), u.port, u.path.as_str()),
        (true, "auth.internal", None, "/")
    );
    assert_eq!(u.authority(), "auth.internal");
    let u = HttpUrl::parse("http://kc:8080/realms/a/?x=1").unwrap();
    assert_eq!(
        (u.https, u.authority().as_str(), u.path.as_str()),
        (false, "kc:8080", "/realms/a/?x=1")
    );
    let u = HttpUrl::parse("https://[::1]:8443?q").unwrap();
    assert_eq!(
        (u.host.as_str(), u.port, u.path.as_str()),
        ("[::1]", Some(8443), "/?q")
    );
    for (bad, why) in [
        ("auth.internal/keys", "absolute URL"),
        ("ftp://a/keys", "scheme"),
        ("https://user@a/keys", "user info"),
        ("https://a/keys#x", "fragment"),
        ("https:///keys", "host"),
        ("https://a:/keys", "port"),
        ("https://a:0/keys", "port"),
        ("https://a:99999/keys", "port"),
        ("https://a:+80/keys", "port"),
        ("https://a b/keys", "character"),
        ("https://a/ke\nys", "character"),
        ("https://a\\b/keys", "character"),
        ("https://ä/keys", "character"),
        ("https://[::1/keys", "malformed"),
        ("https://[::1]x/keys", "malformed"),
        ("https://a!b/keys", "host name"),
    ] {
        let e = HttpUrl::parse(bad).unwrap_err();
        assert!(e.contains(why), "{bad}: {e}");
    }
}

#[test]
fn the_document_path_is_appended_to_the_issuer_path() {
    let p = |i: &str| document_path(&HttpUrl::parse(i).unwrap());
    assert_eq!(
        p("https://auth.internal").unwrap(),
        "/.well-known/openid-configuration"
    );
    assert_eq!(
        p("https://auth.internal/").unwrap(),
        "/.well-known/openid-configuration"
    );
    assert_eq!(
        p("https://kc/realms/orders").unwrap(),
        "/realms/orders/.well-known/openid-configuration"
    );
    assert!(p("https://kc/realms?x").is_err());
}

#[test]
fn a_document_is_used_only_with_the_exact_issuer_and_an_allowed_jwks_host() {
    let allowed = hosts(&["auth.internal", "keys.idp.internal"]);
    let t = check_document(
        &doc(
            "https://auth.internal",
            "https://KEYS.idp.internal:8443/v1/jwks?tenant=a",
        ),
        4096,
        "https://auth.internal",
        &allowed,
    )
    .unwrap();
    assert_eq!(t.authority, "keys.idp.internal:8443");
    assert_eq!(t.path, "/v1/jwks?tenant=a");
    assert_eq!(t.uri, "https://KEYS.idp.internal:8443/v1/jwks?tenant=a");
    // The issuer is compared byte for byte: no trailing slash, case or scheme folding.
    for lie in [
        "https://auth.internal/",
        "https://AUTH.internal",
        "http://auth.internal",
        "https://evil.example",
        "",
    ] {
        let e = check_document(
            &doc(lie, "https://auth.internal/k"),
            4096,
            "https://auth.internal",
            &allowed,
        )
        .unwrap_err();
        assert!(e.contains("is not the provider's issuer"), "{lie}: {e}");
    }
    let e = check_document(
        &doc("https://auth.internal", "https://keys.evil.example/k"),
        4096,
        "https://auth.internal",
        &allowed,
    )
    .unwrap_err();
    assert!(
        e.contains("host \"keys.evil.example\" is not allowed"),
        "{e}"
    );
    // A host that merely ends like an allowed one is another host.
    assert!(jwks_target("https://xauth.internal/k", &allowed).is_err());
    assert!(jwks_target("https://auth.internal.evil/k", &allowed).is_err());
    assert!(jwks_target("https://auth.internal@evil/k", &allowed).is_err());
}

#[test]
fn garbage_and_oversized_documents_say_why_in_a_bounded_line() {
    let i = "https://auth.internal";
    let allowed = hosts(&["auth.internal"]);
    let check = |b: &[u8]| check_document(b, 256, i, &allowed).unwrap_err();
    assert!(check(b"<html>oops</html>").contains("not JSON"));
    assert!(check(b"[1,2]").contains("not a JSON object"));
    assert!(check(br#"{"jwks_uri":"https://auth.internal/k"}"#).contains("no issuer"));
    assert!(check(br#"{"issuer":5}"#).contains("issuer is not a string"));
    assert!(check(br#"{"issuer":"https://auth.internal"}"#).contains("no jwks_uri"));
    assert!(
        check(br#"{"issuer":"https://auth.internal","jwks_uri":["x"]}"#).contains("not a string")
    );
    assert!(
        check(br#"{"issuer":"https://auth.internal","jwks_uri":"file:///etc/passwd"}"#)
            .contains("scheme")
    );
    let big = doc(i, &format!("https://auth.internal/{}", "k".repeat(300)));
    assert!(check(&big).contains("exceeds the 256-byte limit"));
    // A long lie is quoted short.
    let long = doc(&"x".repeat(5000), "https://auth.internal/k");
    let e = check_document(&long, 65536, i, &allowed).unwrap_err();
    assert!(e.len() < 300, "{}", e.len());
}

fn compiled(remote: serde_json::Value, issuer: &str) -> Result<crate::config::RemoteJwks, String> {
    let mut v = crate::fixtures::config_json();
    let p = &mut v["providers"]["internal"];
    p.as_object_mut().unwrap().remove("jwks");
    p["issuer"] = issuer.into();
    p["remote_jwks"] = remote;
    crate::config::Config::from_json(v.to_string().as_bytes(), &crate::fixtures::env)
        .map(|c| c.providers[0].remote_jwks.clone().unwrap())
        .map_err(|e| e.0)
}

#[test]
fn discovery_settings_compile_with_their_defaults() {
    use crate::config::{Discovery, JwksSource};
    let r = compiled(
        serde_json::json!({"cluster": "idp", "discovery": true}),
        "https://Auth.Internal:8443/realms/orders/",
    )
    .unwrap();
    assert_eq!(
        r.source,
        JwksSource::Discovery(Discovery {
            path: "/realms/orders/.well-known/openid-configuration".into(),
            authority: "auth.internal:8443".into(),
            jwks_cluster: "idp".into(),
            allowed_jwks_hosts: vec!["auth.internal".into()],
            refresh_seconds: 3600,
            timeout_ms: 1500,
            max_bytes: 32_768,
        })
    );
    let r = compiled(
        serde_json::json!({"cluster": "idp", "authority": "idp.svc", "timeout_ms": 900, "discovery": {
            "path": "/.well-known/oauth-authorization-server", "jwks_cluster": "keys",
            "allowed_jwks_hosts": ["Keys.IdP.internal", "[::1]"], "refresh_seconds": 600,
            "timeout_ms": 700, "max_bytes": 4096
        }}),
        "https://auth.internal",
    )
    .unwrap();
    let JwksSource::Discovery(d) = r.source else {
        panic!("not discovery")
    };
    assert_eq!(
        (
            d.path.as_str(),
            d.authority.as_str(),
            d.jwks_cluster.as_str()
        ),
        ("/.well-known/oauth-authorization-server", "idp.svc", "keys")
    );
    assert_eq!(d.allowed_jwks_hosts, ["keys.idp.internal", "[::1]"]);
    assert_eq!(
        (d.refresh_seconds, d.timeout_ms, d.max_bytes, r.timeout_ms),
        (600, 700, 4096, 900)
    );
    // false: a fixed path, as without it.
    let r = compiled(
        serde_json::json!({"cluster": "idp", "discovery": false}),
        "https://a",
    )
    .unwrap();
    assert!(matches!(r.source, JwksSource::Fixed { .. }));
}

#[test]
fn bad_discovery_settings_are_refused_naming_the_field() {
    let at = "providers.internal.remote_jwks";
    for (remote, issuer, want) in [
        (
            serde_json::json!({"cluster": "idp", "discovery": {"jwks_path": "/k"}}),
            "https://a",
            format!("{at}.discovery.jwks_path: unknown field `jwks_path`"),
        ),
        (
            serde_json::json!({"cluster": "idp", "discovery": "yes"}),
            "https://a",
            format!(
                "{at}.discovery: invalid type: string \"yes\", expected true, false or an object"
            ),
        ),
        (
            serde_json::json!({"cluster": "idp", "path": "/k", "discovery": true}),
            "https://a",
            format!("{at}.path: not with discovery"),
        ),
        (
            serde_json::json!({"cluster": "idp", "discovery": true}),
            "auth-internal",
            format!("{at}.discovery: needs the provider's issuer to be an https:// or http:// URL"),
        ),
        (
            serde_json::json!({"cluster": "idp", "discovery": true}),
            "https://a/x?tenant=1",
            format!("{at}.discovery.path: an issuer with a query"),
        ),
        (
            serde_json::json!({"cluster": "idp", "discovery": {"path": "keys"}}),
            "https://a",
            format!("{at}.discovery.path: \"keys\" must be an absolute path"),
        ),
        (
            serde_json::json!({"cluster": "idp", "discovery": {"jwks_cluster": ""}}),
            "https://a",
            format!("{at}.discovery.jwks_cluster: must name"),
        ),
        (
            serde_json::json!({"cluster": "idp", "discovery": {"allowed_jwks_hosts": []}}),
            "https://a",
            format!("{at}.discovery.allowed_jwks_hosts: must list between 1 and 32"),
        ),
        (
            serde_json::json!({"cluster": "idp", "discovery": {"allowed_jwks_hosts": ["https://keys"]}}),
            "https://a",
            format!("{at}.discovery.allowed_jwks_hosts: \"https://keys\" is not a host name"),
        ),
        (
            serde_json::json!({"cluster": "idp", "discovery": {"allowed_jwks_hosts": ["keys:443"]}}),
            "https://a",
            format!("{at}.discovery.allowed_jwks_hosts: \"keys:443\""),
        ),
        (
            serde_json::json!({"cluster": "idp", "discovery": {"refresh_seconds": 0}}),
            "https://a",
            format!("{at}.discovery.refresh_seconds: must be between 1 and 86400"),
        ),
        (
            serde_json::json!({"cluster": "idp", "discovery": {"timeout_ms": 5}}),
            "https://a",
            format!("{at}.discovery.timeout_ms: must be between 10 and 60000"),
        ),
        (
            serde_json::json!({"cluster": "idp", "discovery": {"max_bytes": 2_000_000}}),
            "https://a",
            format!("{at}.discovery.max_bytes: must be between 256 and 1048576"),
        ),
        (
            serde_json::json!({"cluster": "idp", "authority": "a b", "discovery": true}),
            "https://a",
            format!("{at}.authority: \"a b\" is not a host[:port]"),
        ),
    ] {
        let e = compiled(remote.clone(), issuer).unwrap_err();
        assert!(e.starts_with(&want), "{remote}: {e}");
    }
}
