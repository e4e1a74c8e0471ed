//! OIDC discovery through a real Envoy: a real discovery server on loopback serves
//! `/.well-known/openid-configuration` and a JWK Set, and each test makes it change its keys,
//! lie about its issuer, move its `jwks_uri`, answer garbage or too much, or answer too slowly.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use svcauth_filter::fixtures::{self, Fixture};
use svcauth_tests::tokens::{key_set, token_with};
use svcauth_tests::{http, EchoUpstream, Envoy, HttpServer, Opts, Reply};

const WELL_KNOWN: &str = "/.well-known/openid-configuration";

/// What one path of the server answers.
#[derive(Clone)]
enum Serve {
    Json(String),
    Status(u16),
}

#[derive(Default)]
struct Plan {
    /// Path (with query) → answer; any other path is a 404.
    paths: BTreeMap<String, Serve>,
    /// The next this-many requests of a path wait this long before the answer.
    slow: BTreeMap<String, (usize, Duration)>,
    /// Every request: when, path, `host` header.
    seen: Vec<(Instant, String, String)>,
}

/// An identity provider's HTTP server (discovery document and keys), changed while Envoy runs.
struct Idp {
    server: HttpServer,
    plan: Arc<Mutex<Plan>>,
}

impl Idp {
    fn start() -> Idp {
        let plan = Arc::new(Mutex::new(Plan::default()));
        let p = Arc::clone(&plan);
        let server = HttpServer::start(move |req| {
            let (answer, delay) = {
                let mut plan = p.lock().unwrap();
                let host = req.header("host").unwrap_or("").to_string();
                plan.seen.push((Instant::now(), req.path.clone(), host));
                let delay = match plan.slow.get_mut(&req.path) {
                    Some((n, d)) if *n > 0 => {
                        *n -= 1;
                        *d
                    }
                    _ => Duration::ZERO,
                };
                (plan.paths.get(&req.path).cloned(), delay)
            };
            std::thread::sleep(delay);
            match answer {
                Some(Serve::Json(body)) => Reply {
                    status: 200,
                    headers: vec![("content-type".into(), "application/json".into())],
                    body: body.into_bytes(),
                },
                Some(Serve::Status(code)) => Reply::text(code, "unavailable"),
                None => Reply::text(404, "not found"),
            }
        });
        Idp { server, plan }
    }

    fn serve(&self, path: &str, what: Serve) {
        self.plan.lock().unwrap().paths.insert(path.into(), what);
    }

    fn document(&self, issuer: &str, jwks_uri: &str) {
        let doc = json!({
            "issuer": issuer,
            "jwks_uri": jwks_uri,
            "authorization_endpoint": format!("{issuer}/authorize"),
            "id_token_signing_alg_values_supported": ["ES256", "RS256", "EdDSA"]
        });
        self.serve(WELL_KNOWN, Serve::Json(doc.to_string()));
    }

    fn slow(&self, path: &str, times: usize, each: Duration) {
        self.plan
            .lock()
            .unwrap()
            .slow
            .insert(path.into(), (times, each));
    }

    /// Requests of `path`: (when, host header).
    fn seen(&self, path: &str) -> Vec<(Instant, String)> {
        self.plan
            .lock()
            .unwrap()
            .seen
            .iter()
            .filter(|(_, p, _)| p == path)
            .map(|(t, _, h)| (*t, h.clone()))
            .collect()
    }

    fn count(&self, path: &str) -> usize {
        self.seen(path).len()
    }
}

fn set_of(keys: &[(Fixture, &str)]) -> Serve {
    Serve::Json(key_set(keys))
}

/// The fixture provider with its keys found by discovery through cluster `idp`.
fn config(remote: Value) -> String {
    let mut v = fixtures::config_json();
    let p = &mut v["providers"]["internal"];
    p.as_object_mut().unwrap().remove("jwks");
    let mut r = json!({"cluster": "idp", "refetch_interval_seconds": 1});
    for (k, val) in remote.as_object().unwrap() {
        r[k] = val.clone();
    }
    p["remote_jwks"] = r;
    v.to_string()
}

fn start(idp: &Idp, upstream: &EchoUpstream, remote: Value) -> Envoy {
    let opts = Opts::new(upstream.port())
        .env(fixtures::HMAC_ENV, fixtures::HMAC_SECRET)
        .loopback_cluster("idp", idp.server.port());
    Envoy::start_plugin(&config(remote), &opts)
}

fn call(envoy: &Envoy, token: &str) -> (u16, String) {
    let auth = format!("Bearer {token}");
    let r = http(envoy.port(), "GET", "/orders", &[("authorization", &auth)]);
    let body: Value = serde_json::from_str(&r.body).unwrap_or(Value::Null);
    (r.status, body["reason"].as_str().unwrap_or("").to_string())
}

fn wait_allowed(envoy: &Envoy, token: &str, within: Duration) -> bool {
    svcauth_tests::wait_until(within, || call(envoy, token).0 == 200)
}

fn stat(envoy: &Envoy, name: &str) -> u64 {
    envoy
        .stat(&format!("wasmcustom.svcauth.{name}"))
        .unwrap_or(0)
}

/// Waits until counter `name` is above `than` (counters reach Envoy on the 500 ms tick).
fn wait_stat_above(envoy: &Envoy, name: &str, than: u64, within: Duration) -> u64 {
    let mut v = 0;
    assert!(
        svcauth_tests::wait_until(within, || {
            v = stat(envoy, name);
            v > than
        }),
        "{name} stayed at {v}"
    );
    v
}

#[test]
fn keys_found_through_discovery_verify_tokens_and_a_new_kid_is_fetched_on_demand() {
    // The keys live on another host, behind a second cluster.
    let idp = Idp::start();
    let keys = Idp::start();
    let upstream = EchoUpstream::start();
    idp.document(
        fixtures::ISSUER,
        "https://keys.idp.internal/oauth2/v1/keys?tenant=orders",
    );
    keys.serve(
        "/oauth2/v1/keys?tenant=orders",
        set_of(&[(Fixture::Ec256, "k1")]),
    );
    let opts = Opts::new(upstream.port())
        .env(fixtures::HMAC_ENV, fixtures::HMAC_SECRET)
        .loopback_cluster("idp", idp.server.port())
        .loopback_cluster("idp-keys", keys.server.port())
        .concurrency(2);
    let envoy = Envoy::start_plugin(
        &config(json!({"discovery": {
            "jwks_cluster": "idp-keys", "allowed_jwks_hosts": ["keys.idp.internal"]
        }})),
        &opts,
    );
    let k1 = token_with(Fixture::Ec256, "k1");
    assert!(wait_allowed(&envoy, &k1, Duration::from_secs(10)));
    // One discovery and one key fetch for the whole Envoy (its worker VMs share both).
    let docs = idp.seen(WELL_KNOWN);
    assert_eq!(docs.len(), 1, "one discovery");
    assert_eq!(docs[0].1, "auth.internal", "authority from the issuer URL");
    let fetched = keys.seen("/oauth2/v1/keys?tenant=orders");
    assert_eq!(fetched.len(), 1, "one key fetch");
    assert_eq!(
        fetched[0].1, "keys.idp.internal",
        "authority from the jwks_uri"
    );
    assert!(docs[0].0 <= fetched[0].0);
    for _ in 0..20 {
        assert_eq!(call(&envoy, &k1).0, 200);
    }
    envoy.wait_log_contains(
        "OIDC discovery: jwks_uri https://keys.idp.internal/oauth2/v1/keys?tenant=orders",
        Duration::from_secs(2),
    );
    // The provider publishes a new key and signs with it at once: the first call with the new
    // kid waits for the refetch from the discovered jwks_uri and passes.
    keys.serve(
        "/oauth2/v1/keys?tenant=orders",
        set_of(&[(Fixture::Ec256, "k1"), (Fixture::RsaA, "k2")]),
    );
    let k2 = token_with(Fixture::RsaA, "k2");
    assert_eq!(call(&envoy, &k2), (200, String::new()));
    assert_eq!(call(&envoy, &k1).0, 200);
    assert_eq!(keys.count("/oauth2/v1/keys?tenant=orders"), 2);
    assert_eq!(idp.count(WELL_KNOWN), 1, "a refetch does not rediscover");
    envoy.settle_counters();
    assert_eq!(stat(&envoy, "discovery_success"), 1);
    assert_eq!(stat(&envoy, "discovery_failed"), 0);
    assert_eq!(stat(&envoy, "jwks_fetch_success"), 2);
}

#[test]
fn an_issuer_that_lies_is_refused_logged_counted_and_none_of_its_keys_is_used() {
    let idp = Idp::start();
    let upstream = EchoUpstream::start();
    // From the start: the document names another issuer; its jwks_uri would serve a good key.
    idp.document(
        "https://login.evil.example",
        "https://auth.internal/keys/v1",
    );
    idp.serve("/keys/v1", set_of(&[(Fixture::Ec256, "k1")]));
    let envoy = start(
        &idp,
        &upstream,
        json!({"discovery": {"refresh_seconds": 1}, "timeout_ms": 1000}),
    );
    let k1 = token_with(Fixture::Ec256, "k1");
    envoy.wait_log_contains(
        "OIDC discovery failed: document issuer \"https://login.evil.example\" is not the provider's issuer \"https://auth.internal\" (refused, OIDC Discovery 4.3); no jwks_uri yet",
        Duration::from_secs(5),
    );
    assert_eq!(call(&envoy, &k1), (401, "keys_unavailable".into()));
    // Retried after the backoff (here 1 s: never longer than the rediscovery interval),
    // refused again; its jwks_uri is never fetched.
    assert!(idp.server.wait_requests(2, Duration::from_secs(5)));
    assert_eq!(idp.count("/keys/v1"), 0);
    assert!(wait_stat_above(&envoy, "discovery_failed", 1, Duration::from_secs(3)) >= 2);
    assert!(
        envoy
            .log()
            .lines()
            .any(|l| l.contains("[warning]") && l.contains("OIDC discovery failed")),
        "logged at warn"
    );
    // It tells the truth: the keys arrive.
    idp.document(fixtures::ISSUER, "https://auth.internal/keys/v1");
    assert!(wait_allowed(&envoy, &k1, Duration::from_secs(10)));
    // It lies again later, pointing at keys of its own: the last good jwks_uri and keys stay.
    idp.serve("/keys/evil", set_of(&[(Fixture::Ed25519, "evil")]));
    idp.document("https://auth.internal/", "https://auth.internal/keys/evil");
    let failed = stat(&envoy, "discovery_failed");
    wait_stat_above(&envoy, "discovery_failed", failed, Duration::from_secs(6));
    envoy.wait_log_contains(
        "is not the provider's issuer \"https://auth.internal\" (refused, OIDC Discovery 4.3); keeping jwks_uri https://auth.internal/keys/v1",
        Duration::from_secs(2),
    );
    assert_eq!(call(&envoy, &k1).0, 200);
    let evil = token_with(Fixture::Ed25519, "evil");
    assert_eq!(call(&envoy, &evil), (401, "unknown_kid".into()));
    assert_eq!(idp.count("/keys/evil"), 0, "no key of the liar was fetched");
    // Honest again, with a moved jwks_uri: followed at the next rediscovery.
    idp.serve("/keys/v2", set_of(&[(Fixture::RsaB, "k3")]));
    idp.document(fixtures::ISSUER, "https://auth.internal/keys/v2");
    let k3 = token_with(Fixture::RsaB, "k3");
    assert!(wait_allowed(&envoy, &k3, Duration::from_secs(10)));
    envoy.wait_log_contains(
        "jwks_uri moved from https://auth.internal/keys/v1 to https://auth.internal/keys/v2",
        Duration::from_secs(2),
    );
    assert_eq!(idp.count("/keys/evil"), 0);
}

#[test]
fn garbage_and_oversized_documents_are_refused_and_the_last_good_keys_kept() {
    let idp = Idp::start();
    let upstream = EchoUpstream::start();
    idp.document(fixtures::ISSUER, "https://auth.internal/keys");
    idp.serve("/keys", set_of(&[(Fixture::Ec256, "k1")]));
    let envoy = start(
        &idp,
        &upstream,
        json!({"discovery": {"refresh_seconds": 1, "max_bytes": 1024}, "max_bytes": 2048}),
    );
    let k1 = token_with(Fixture::Ec256, "k1");
    assert!(wait_allowed(&envoy, &k1, Duration::from_secs(10)));
    let padding = "x".repeat(4000);
    let big = json!({"issuer": fixtures::ISSUER, "jwks_uri": "https://auth.internal/keys", "padding": padding});
    for (doc, why) in [
        (Serve::Json("<html><body>Service Unavailable</body></html>".into()), "OIDC discovery failed: document is not JSON; keeping jwks_uri https://auth.internal/keys"),
        (Serve::Json(big.to_string()), "OIDC discovery failed: body of 4"),
        (Serve::Status(503), "OIDC discovery failed: HTTP status 503"),
    ] {
        idp.serve(WELL_KNOWN, doc);
        envoy.wait_log_contains(why, Duration::from_secs(6));
        assert_eq!(call(&envoy, &k1).0, 200, "{why}");
    }
    assert!(envoy.log().contains("bytes exceeds the 1024-byte limit"));
    // The key set too: garbage and an oversized set are refused, the last good keys kept.
    idp.document(fixtures::ISSUER, "https://auth.internal/keys");
    let padded = json!({"keys": [fixtures::public_jwk(Fixture::Ec256, "k1")], "padding": padding});
    for (set, why) in [
        (
            Serve::Json("{\"keys\": 5}".into()),
            "JWKS fetch failed: unusable JWKS",
        ),
        (
            Serve::Json(padded.to_string()),
            "bytes exceeds the 2048-byte limit; keeping the last good keys",
        ),
    ] {
        idp.serve("/keys", set);
        // A token with an unknown kid makes the filter refetch the set.
        let stranger = token_with(Fixture::RsaA, "stranger");
        assert!(
            svcauth_tests::wait_until(Duration::from_secs(5), || {
                assert_eq!(call(&envoy, &stranger), (401, "unknown_kid".into()));
                envoy.log().contains(why)
            }),
            "{why}"
        );
        assert_eq!(call(&envoy, &k1).0, 200, "{why}");
    }
    envoy.settle_counters();
    assert!(stat(&envoy, "discovery_failed") >= 3);
    assert!(stat(&envoy, "jwks_fetch_failed") >= 2);
}

#[test]
fn a_slow_discovery_server_times_out_and_is_retried_with_backoff() {
    let idp = Idp::start();
    let upstream = EchoUpstream::start();
    idp.document(fixtures::ISSUER, "https://auth.internal/keys");
    idp.serve("/keys", set_of(&[(Fixture::Ec256, "k1")]));
    // The first two documents and the first key set come after the timeouts.
    idp.slow(WELL_KNOWN, 2, Duration::from_millis(1500));
    idp.slow("/keys", 1, Duration::from_millis(1500));
    let envoy = start(
        &idp,
        &upstream,
        json!({"discovery": {"timeout_ms": 300}, "timeout_ms": 300}),
    );
    let k1 = token_with(Fixture::Ec256, "k1");
    envoy.wait_log_contains(
        // Envoy answers a dispatched call that times out with its own 504.
        "OIDC discovery failed: HTTP status 504; no jwks_uri yet",
        Duration::from_secs(5),
    );
    assert_eq!(call(&envoy, &k1), (401, "keys_unavailable".into()));
    assert!(wait_allowed(&envoy, &k1, Duration::from_secs(20)));
    envoy.wait_log_contains(
        "JWKS fetch failed: HTTP status 504; no keys yet",
        Duration::from_secs(1),
    );
    let docs: Vec<Instant> = idp.seen(WELL_KNOWN).iter().map(|(t, _)| *t).collect();
    assert_eq!(docs.len(), 3, "two timed out, the third was answered");
    let gaps: Vec<Duration> = docs.windows(2).map(|w| w[1] - w[0]).collect();
    eprintln!("discovery retries after {gaps:?}");
    // Backoff 2 s then 4 s (whole seconds of the host clock: at least 1 s and 3 s later).
    assert!(gaps[0] >= Duration::from_millis(1000), "{gaps:?}");
    assert!(gaps[1] >= Duration::from_millis(3000), "{gaps:?}");
    assert!(gaps[1] > gaps[0], "{gaps:?}");
    let sets = idp.seen("/keys");
    assert_eq!(sets.len(), 2, "the slow key fetch was retried once");
    assert!(sets[1].0 - sets[0].0 >= Duration::from_millis(1000));
    envoy.settle_counters();
    assert_eq!(stat(&envoy, "discovery_failed"), 2);
    assert_eq!(stat(&envoy, "discovery_success"), 1);
    assert_eq!(stat(&envoy, "jwks_fetch_failed"), 1);
}

#[test]
fn a_jwks_uri_on_a_host_that_is_not_allowed_is_refused() {
    let idp = Idp::start();
    let upstream = EchoUpstream::start();
    // Same server, same cluster: only the host name in the jwks_uri is wrong.
    idp.document(fixtures::ISSUER, "https://keys.elsewhere.example/keys");
    idp.serve("/keys", set_of(&[(Fixture::Ec256, "k1")]));
    let envoy = start(&idp, &upstream, json!({"discovery": true}));
    envoy.wait_log_contains(
        "OIDC discovery failed: jwks_uri host \"keys.elsewhere.example\" is not allowed (allowed_jwks_hosts: auth.internal); no jwks_uri yet",
        Duration::from_secs(5),
    );
    let k1 = token_with(Fixture::Ec256, "k1");
    assert_eq!(call(&envoy, &k1), (401, "keys_unavailable".into()));
    assert!(
        idp.server.wait_requests(2, Duration::from_secs(5)),
        "retried"
    );
    assert_eq!(call(&envoy, &k1), (401, "keys_unavailable".into()));
    assert_eq!(idp.count("/keys"), 0, "never fetched");
    assert!(wait_stat_above(&envoy, "discovery_failed", 1, Duration::from_secs(3)) >= 2);
}
