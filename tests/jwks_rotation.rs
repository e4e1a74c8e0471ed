//! Keys that rotate without a failed call: a real Envoy fetching a JWK Set from a real HTTP
//! server on loopback that each test controls (late keys, rotation, outages, bad bodies, two
//! workers), and HMAC secret rotation.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use svcauth_filter::fixtures::{self, Fixture};
use svcauth_filter::jws::Alg;
use svcauth_filter::mint::{sign, SigningKey};
use svcauth_tests::tokens::{key_set, token_with};
use svcauth_tests::{http, now, EchoUpstream, Envoy, HttpServer, Opts, Reply};

/// What the JWKS server answers; tests change it while Envoy runs.
#[derive(Clone)]
enum Serve {
    Status(u16),
    Body(String),
}

struct Jwks {
    server: HttpServer,
    serve: Arc<Mutex<Serve>>,
}

impl Jwks {
    fn start(initial: Serve) -> Jwks {
        let serve = Arc::new(Mutex::new(initial));
        let s = Arc::clone(&serve);
        let server = HttpServer::start(move |_req| match s.lock().unwrap().clone() {
            Serve::Status(code) => Reply::text(code, "unavailable"),
            Serve::Body(b) => Reply {
                status: 200,
                headers: vec![("content-type".into(), "application/json".into())],
                body: b.into_bytes(),
            },
        });
        Jwks { server, serve }
    }

    fn set(&self, s: Serve) {
        *self.serve.lock().unwrap() = s;
    }

    fn fetches(&self) -> usize {
        self.server.request_count()
    }
}

/// The fixture provider with its keys fetched from cluster `jwks` instead of inline.
fn remote_config(refresh: u64) -> String {
    let mut v = fixtures::config_json();
    let p = &mut v["providers"]["internal"];
    p.as_object_mut().unwrap().remove("jwks");
    p["remote_jwks"] = json!({
        "cluster": "jwks", "path": "/.well-known/jwks.json", "authority": "auth.internal",
        "refresh_seconds": refresh, "timeout_ms": 1000, "refetch_interval_seconds": 1
    });
    v.to_string()
}

fn start(jwks: &Jwks, upstream: &EchoUpstream, refresh: u64, concurrency: u32) -> Envoy {
    let opts = Opts::new(upstream.port())
        .env(fixtures::HMAC_ENV, fixtures::HMAC_SECRET)
        .loopback_cluster("jwks", jwks.server.port())
        .concurrency(concurrency);
    Envoy::start_plugin(&remote_config(refresh), &opts)
}

fn call(envoy: &Envoy, token: &str) -> (u16, Value) {
    let auth = format!("Bearer {token}");
    let r = http(envoy.port(), "GET", "/orders", &[("authorization", &auth)]);
    let body = serde_json::from_str(&r.body).unwrap_or(Value::Null);
    (r.status, body)
}

/// Waits until the filter has a key set (a call with `token` is allowed).
fn wait_allowed(envoy: &Envoy, token: &str, within: Duration) -> bool {
    svcauth_tests::wait_until(within, || call(envoy, token).0 == 200)
}

#[test]
fn keys_served_late_deny_with_keys_unavailable_then_allow_without_a_restart() {
    let jwks = Jwks::start(Serve::Status(503));
    let upstream = EchoUpstream::start();
    let envoy = start(&jwks, &upstream, 300, 1);
    let t = token_with(Fixture::Ec256, "k1");
    assert!(
        jwks.server.wait_requests(1, Duration::from_secs(5)),
        "a fetch at start"
    );
    let (status, body) = call(&envoy, &t);
    assert_eq!(status, 401);
    assert_eq!(body["reason"], "keys_unavailable");
    envoy.wait_log_contains(r#""reason":"keys_unavailable""#, Duration::from_secs(5));
    envoy.wait_log_contains("JWKS fetch failed: HTTP status 503", Duration::from_secs(5));
    jwks.set(Serve::Body(key_set(&[(Fixture::Ec256, "k1")])));
    assert!(
        wait_allowed(&envoy, &t, Duration::from_secs(20)),
        "keys arrive with the retries"
    );
    envoy.settle_counters();
    assert!(
        envoy
            .stat("wasmcustom.svcauth.jwks_fetch_failed")
            .unwrap_or(0)
            >= 1
    );
    assert!(
        envoy
            .stat("wasmcustom.svcauth.jwks_fetch_success")
            .unwrap_or(0)
            >= 1
    );
    assert!(upstream.request_count() >= 1);
}

#[test]
fn an_issuer_rotating_to_a_new_key_mid_traffic_fails_no_request() {
    let jwks = Jwks::start(Serve::Body(key_set(&[(Fixture::Ec256, "k1")])));
    let upstream = EchoUpstream::start();
    let envoy = start(&jwks, &upstream, 300, 1);
    let old = token_with(Fixture::Ec256, "k1");
    assert!(wait_allowed(&envoy, &old, Duration::from_secs(10)));
    let before = jwks.fetches();
    let mut statuses = Vec::new();
    for _ in 0..20 {
        statuses.push(call(&envoy, &old).0);
    }
    // The issuer publishes the new key beside the old one and starts signing with it at once.
    jwks.set(Serve::Body(key_set(&[
        (Fixture::Ec256, "k1"),
        (Fixture::RsaA, "k2"),
    ])));
    let new = token_with(Fixture::RsaA, "k2");
    for _ in 0..40 {
        statuses.push(call(&envoy, &new).0);
        statuses.push(call(&envoy, &old).0);
    }
    let failed = statuses.iter().filter(|s| **s != 200).count();
    let refetches = jwks.fetches() - before;
    eprintln!(
        "rotation: {} requests, {failed} failed, {refetches} refetch(es)",
        statuses.len()
    );
    assert_eq!(failed, 0, "statuses: {statuses:?}");
    assert_eq!(refetches, 1, "one refetch for the unknown kid");
}

#[test]
fn concurrent_calls_with_a_new_kid_wait_for_one_refetch_and_all_pass() {
    // A slow JWKS server keeps the refetch in flight while the other calls arrive.
    let serve = Arc::new(Mutex::new(key_set(&[(Fixture::Ec256, "k1")])));
    let s = Arc::clone(&serve);
    let server = HttpServer::start(move |_req| {
        let body = s.lock().unwrap().clone();
        if body.contains("\"k2\"") {
            std::thread::sleep(Duration::from_millis(300));
        }
        Reply {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.into_bytes(),
        }
    });
    let upstream = EchoUpstream::start();
    let opts = Opts::new(upstream.port())
        .env(fixtures::HMAC_ENV, fixtures::HMAC_SECRET)
        .loopback_cluster("jwks", server.port());
    let envoy = Envoy::start_plugin(&remote_config(300), &opts);
    assert!(wait_allowed(
        &envoy,
        &token_with(Fixture::Ec256, "k1"),
        Duration::from_secs(10)
    ));
    let before = server.request_count();
    *serve.lock().unwrap() = key_set(&[(Fixture::Ec256, "k1"), (Fixture::RsaA, "k2")]);
    let new = token_with(Fixture::RsaA, "k2");
    let port = envoy.port();
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let t = new.clone();
            std::thread::spawn(move || {
                let auth = format!("Bearer {t}");
                http(port, "GET", "/orders", &[("authorization", &auth)]).status
            })
        })
        .collect();
    let statuses: Vec<u16> = threads.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(statuses, vec![200; 8]);
    assert_eq!(
        server.request_count() - before,
        1,
        "the waiting calls shared one refetch"
    );
}

#[test]
fn a_kid_unknown_even_after_the_refetch_is_denied_and_refetches_are_rate_limited() {
    let jwks = Jwks::start(Serve::Body(key_set(&[(Fixture::Ec256, "k1")])));
    let upstream = EchoUpstream::start();
    let envoy = start(&jwks, &upstream, 300, 1);
    assert!(wait_allowed(
        &envoy,
        &token_with(Fixture::Ec256, "k1"),
        Duration::from_secs(10)
    ));
    let before = jwks.fetches();
    let stranger = token_with(Fixture::Ec384, "nobody");
    for _ in 0..30 {
        let (status, body) = call(&envoy, &stranger);
        assert_eq!(
            (status, body["reason"].as_str()),
            (401, Some("unknown_kid"))
        );
    }
    // refetch_interval_seconds is 1: thirty quick calls cause at most a few fetches.
    let refetches = jwks.fetches() - before;
    assert!((1..=4).contains(&refetches), "{refetches} refetches");
}

#[test]
fn the_jwks_server_going_down_keeps_existing_tokens_working() {
    let jwks = Jwks::start(Serve::Body(key_set(&[(Fixture::Ec256, "k1")])));
    let upstream = EchoUpstream::start();
    let envoy = start(&jwks, &upstream, 1, 1);
    let t = token_with(Fixture::Ec256, "k1");
    assert!(wait_allowed(&envoy, &t, Duration::from_secs(10)));
    jwks.set(Serve::Status(500));
    let until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < until {
        assert_eq!(call(&envoy, &t).0, 200);
        std::thread::sleep(Duration::from_millis(100));
    }
    envoy.wait_log_contains(
        "JWKS fetch failed: HTTP status 500; keeping the last good keys",
        Duration::from_secs(5),
    );
    envoy.settle_counters();
    assert!(
        envoy
            .stat("wasmcustom.svcauth.jwks_fetch_failed")
            .unwrap_or(0)
            >= 1
    );
}

#[test]
fn garbage_and_oversized_jwks_bodies_keep_the_last_good_keys() {
    let jwks = Jwks::start(Serve::Body(key_set(&[(Fixture::Ec256, "k1")])));
    let upstream = EchoUpstream::start();
    let envoy = start(&jwks, &upstream, 1, 1);
    let t = token_with(Fixture::Ec256, "k1");
    assert!(wait_allowed(&envoy, &t, Duration::from_secs(10)));
    jwks.set(Serve::Body("<html>not json</html>".into()));
    envoy.wait_log_contains("unusable JWKS: not a JWK Set", Duration::from_secs(8));
    assert_eq!(call(&envoy, &t).0, 200);
    let huge =
        json!({"keys": [fixtures::public_jwk(Fixture::Ec256, "k1")], "pad": "x".repeat(70_000)});
    jwks.set(Serve::Body(huge.to_string()));
    envoy.wait_log_contains("exceeds the 65536-byte limit", Duration::from_secs(8));
    assert_eq!(call(&envoy, &t).0, 200);
    // A set with one unusable key keeps the usable one and says which was skipped.
    let mixed = json!({"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "sym"}, fixtures::public_jwk(Fixture::Ec256, "k1")]});
    jwks.set(Serve::Body(mixed.to_string()));
    envoy.wait_log_contains(
        "JWKS key skipped: key 0 (kid \"sym\")",
        Duration::from_secs(8),
    );
    assert_eq!(call(&envoy, &t).0, 200);
}

#[test]
fn two_workers_share_one_fetch_per_refresh() {
    let jwks = Jwks::start(Serve::Body(key_set(&[(Fixture::Ec256, "k1")])));
    let upstream = EchoUpstream::start();
    let refresh = 2;
    let started = Instant::now();
    let envoy = start(&jwks, &upstream, refresh, 2);
    let t = token_with(Fixture::Ec256, "k1");
    assert!(wait_allowed(&envoy, &t, Duration::from_secs(10)));
    // Many connections, spread over both workers: every one is allowed.
    for _ in 0..60 {
        assert_eq!(call(&envoy, &t).0, 200);
    }
    std::thread::sleep(Duration::from_secs(5));
    let elapsed = started.elapsed().as_secs();
    let fetches = jwks.fetches() as u64;
    let per_refresh_max = elapsed / refresh + 2;
    eprintln!("two workers: {fetches} fetches in {elapsed}s (refresh {refresh}s)");
    assert!(fetches >= 2, "refreshes happen: {fetches}");
    assert!(
        fetches <= per_refresh_max,
        "{fetches} fetches in {elapsed}s: one per refresh, not one per worker"
    );
}

#[test]
fn hmac_tokens_signed_with_the_previous_secret_are_accepted_and_unknown_secrets_refused() {
    let current = "current-secret-current-secret-current-secret";
    let previous = "previous-secret-previous-secret-previous-secret";
    let plugin = json!({
        "providers": {"svc": {"issuer": fixtures::ISSUER, "hmac_secret_env": ["SECRET_CURRENT", "SECRET_PREVIOUS"]}},
        "rules": [{"match": {"prefix": "/"}, "requires": {}}]
    });
    let upstream = EchoUpstream::start();
    let opts = Opts::new(upstream.port())
        .env("SECRET_CURRENT", current)
        .env("SECRET_PREVIOUS", previous);
    let envoy = Envoy::start_plugin(&plugin.to_string(), &opts);
    let hs = |secret: &str| {
        sign(
            &SigningKey::Hmac(secret.as_bytes().to_vec()),
            Alg::HS256,
            &serde_json::Map::new(),
            &fixtures::claims(now()),
        )
        .unwrap()
    };
    assert_eq!(call(&envoy, &hs(current)).0, 200);
    assert_eq!(call(&envoy, &hs(previous)).0, 200);
    let (status, body) = call(&envoy, &hs("some-other-secret-some-other-secret-xx"));
    assert_eq!(
        (status, body["reason"].as_str()),
        (401, Some("bad_signature"))
    );
}
