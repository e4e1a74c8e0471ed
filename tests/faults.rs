//! Faults survived: a new svcauth configuration pushed while Envoy serves, through Envoy's
//! file-based dynamic listener config (LDS from a watched file, updated by writing a new file
//! and renaming it over the old one, as a config agent would).
//!
//! - An invalid plugin config is refused: Envoy rejects the listener update
//!   (`listener_manager.lds.update_rejected`), its log names the field, and the old config
//!   keeps serving exactly as before.
//! - A valid one takes effect without a failed call: client threads sending requests through
//!   the swap see no connection error and only the old or the new answers, then only the new.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::net::{Ipv4Addr, TcpListener};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use svcauth_filter::fixtures::{self, claims_with, token, Fixture};
use svcauth_tests::{bootstrap, now, try_http_raw, EchoUpstream, Envoy, Opts, Response, RunDir};

const WAIT: Duration = Duration::from_secs(30);

/// A valid ES256 token with scope `orders:read` (allowed on `/orders` by the fixture config).
fn reader_token() -> String {
    token(Fixture::Ec256, &claims_with(now(), json!({})))
}

/// A free loopback port: the listener keeps one fixed port across updates.
fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Envoy whose listener (svcauth before the router) comes from a watched LDS file.
struct Lds {
    envoy: Envoy,
    /// Kept running for the listener's route.
    _upstream: EchoUpstream,
    /// The directory Envoy watches, and the file in it.
    dir: RunDir,
    opts: Opts,
    port: u16,
    version: u32,
}

impl Lds {
    /// Starts Envoy with the listener of the harness's static bootstrap for `plugin`, moved
    /// into `<dir>/lds.json` on a fixed port.
    fn start(plugin: &Value) -> Lds {
        let upstream = EchoUpstream::start();
        let opts = Opts::new(upstream.port()).env(fixtures::HMAC_ENV, fixtures::HMAC_SECRET);
        let dir = RunDir::new();
        let port = free_port();
        let mut boot = harness_bootstrap(plugin, &opts);
        boot["static_resources"]
            .as_object_mut()
            .unwrap()
            .remove("listeners");
        boot["node"] = json!({"id": "svcauth-faults", "cluster": "svcauth-faults"});
        boot["dynamic_resources"] = json!({
            "lds_config": {
                "resource_api_version": "V3",
                "path_config_source": {
                    "path": lds_path(&dir),
                    "watched_directory": {"path": dir.path()},
                },
            },
        });
        // Written before Envoy starts: the first listener is part of its initialization.
        let mut version = 0;
        write_listener(&dir, &opts, port, &mut version, plugin);
        // Two workers: calls through a swap land on both.
        let envoy = Envoy::start_with(&boot.to_string(), 2);
        assert_eq!(envoy.port(), port, "the LDS listener is up");
        Lds {
            envoy,
            _upstream: upstream,
            dir,
            opts,
            port,
            version,
        }
    }

    /// Pushes the listener for `plugin` (see [`write_listener`]).
    fn write_listener(&mut self, plugin: &Value) {
        write_listener(&self.dir, &self.opts, self.port, &mut self.version, plugin);
    }

    fn stat(&self, name: &str) -> u64 {
        self.envoy.stat(name).unwrap_or(0)
    }

    fn get(&self, path: &str, token: Option<&str>) -> Response {
        send(self.port, path, token).unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }
}

/// Writes the listener for `plugin` to a new file and renames it over `lds.json` (Envoy
/// watches the directory for files moved in).
fn write_listener(dir: &RunDir, opts: &Opts, port: u16, version: &mut u32, plugin: &Value) {
    *version += 1;
    let boot = harness_bootstrap(plugin, opts);
    let mut listener = boot["static_resources"]["listeners"][0].clone();
    listener["@type"] = json!("type.googleapis.com/envoy.config.listener.v3.Listener");
    listener["address"]["socket_address"]["port_value"] = json!(port);
    let doc = json!({"version_info": version.to_string(), "resources": [listener]});
    let tmp = dir.join(&format!(".lds-{version}.json"));
    std::fs::write(&tmp, doc.to_string()).unwrap();
    std::fs::rename(&tmp, lds_path(dir)).unwrap();
}

fn lds_path(dir: &RunDir) -> PathBuf {
    dir.join("lds.json")
}

/// The harness's static bootstrap for `plugin`, as JSON.
fn harness_bootstrap(plugin: &Value, opts: &Opts) -> Value {
    serde_norway::from_str(&bootstrap(&plugin.to_string(), opts)).unwrap()
}

/// One request on a fresh connection; connection errors are returned, not raised.
fn send(port: u16, path: &str, token: Option<&str>) -> Result<Response, String> {
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n{auth}Connection: close\r\n\r\n");
    try_http_raw(port, req.as_bytes())
}

fn reason(r: &Response) -> Option<String> {
    serde_json::from_str::<Value>(&r.body)
        .ok()
        .and_then(|b| b["reason"].as_str().map(str::to_string))
}

/// When a call through the swap was answered, and its outcome or connection error.
type Answer = (Instant, Result<String, String>);

/// The status and reason code of a request, as one comparable string.
fn outcome(r: &Response) -> String {
    match reason(r) {
        Some(code) => format!("{} {code}", r.status),
        None => r.status.to_string(),
    }
}

#[test]
fn an_invalid_plugin_config_pushed_over_lds_is_refused_and_the_old_one_keeps_serving() {
    let good = fixtures::config_json();
    let mut lds = Lds::start(&good);
    let t = reader_token();
    let before = (
        outcome(&lds.get("/orders", Some(&t))),
        outcome(&lds.get("/orders", None)),
        outcome(&lds.get("/health", None)),
    );
    assert_eq!(
        before,
        ("200".into(), "401 token_missing".into(), "200".into())
    );
    let success = lds.stat("listener_manager.lds.update_success");

    let mut unknown_field = good.clone();
    unknown_field["providers"]["internal"]["isuer"] = json!("x");
    let mut bad_jwks = good.clone();
    bad_jwks["providers"]["internal"]["jwks"] = json!({"keys": [{"kty": "oct", "k": "AAAA"}]});
    let mut no_secret = good.clone();
    no_secret["providers"]["internal"]["hmac_secret_env"] = json!("SVCAUTH_FAULTS_UNSET");
    let mut open_everything = good.clone();
    // Valid JSON, and it would open every route, but one rule is malformed: nothing applies.
    open_everything["rules"] = json!([
        {"match": {"prefix": "/"}, "allow": true},
        {"match": {"prefix": "/admin"}, "requires": {"scopes_all": ["bad scope"]}}
    ]);
    let cases = [
        (unknown_field, "providers.internal.isuer: unknown field `isuer`"),
        (bad_jwks, "providers.internal.jwks: unusable key"),
        (no_secret, "providers.internal.hmac_secret_env: environment variable SVCAUTH_FAULTS_UNSET is not set"),
        (open_everything, "rules[1].requires.scopes_all"),
    ];
    for (i, (config, message)) in cases.iter().enumerate() {
        let rejected = lds.stat("listener_manager.lds.update_rejected");
        lds.write_listener(config);
        assert!(
            svcauth_tests::wait_until(WAIT, || lds.stat("listener_manager.lds.update_rejected")
                > rejected),
            "case {i}: the update was not rejected"
        );
        lds.envoy
            .wait_log_contains(&format!("svcauth: invalid configuration: {message}"), WAIT);
        let after = (
            outcome(&lds.get("/orders", Some(&t))),
            outcome(&lds.get("/orders", None)),
            outcome(&lds.get("/health", None)),
        );
        assert_eq!(
            after, before,
            "case {i}: the old config still serves, unchanged"
        );
    }
    assert_eq!(
        lds.stat("listener_manager.lds.update_success"),
        success,
        "no rejected update was applied"
    );
    // Envoy's own account: each update refused because the plugin could not be created.
    let refusals = lds
        .envoy
        .log()
        .matches("lds: listener 'main' config rejected: Unable to create Wasm plugin svcauth")
        .count();
    assert_eq!(
        refusals,
        cases.len(),
        "Envoy logs one refusal per bad update"
    );
    assert_eq!(lds.envoy.admin("/ready").status, 200);
}

#[test]
fn a_valid_plugin_config_pushed_over_lds_takes_effect_without_a_failed_call() {
    let old = fixtures::config_json();
    let mut lds = Lds::start(&old);
    let t = Arc::new(reader_token());
    assert_eq!(outcome(&lds.get("/orders", Some(&t))), "200");
    assert_eq!(outcome(&lds.get("/open/x", None)), "401 token_missing");

    // Clients sending through the swap: every answer recorded, with the time it came.
    let stop = Arc::new(AtomicBool::new(false));
    let seen: Arc<Mutex<Vec<Answer>>> = Arc::default();
    let clients: Vec<_> = (0..3)
        .map(|_| {
            let (stop, seen, t, port) = (
                Arc::clone(&stop),
                Arc::clone(&seen),
                Arc::clone(&t),
                lds.port,
            );
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let r = send(port, "/orders", Some(&t)).map(|r| outcome(&r));
                    seen.lock().unwrap().push((Instant::now(), r));
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));

    // The new rules: /orders needs orders:write (the token has orders:read), /open is open.
    let mut new = fixtures::config_json();
    let rules = new["rules"].as_array_mut().unwrap();
    rules.insert(0, json!({"match": {"prefix": "/open"}, "allow": true}));
    rules.insert(
        1,
        json!({"match": {"prefix": "/orders"}, "requires": {"scopes_all": ["orders:write"]}}),
    );
    let success = lds.stat("listener_manager.lds.update_success");
    let swapped_at = Instant::now();
    lds.write_listener(&new);
    assert!(
        svcauth_tests::wait_until(WAIT, || lds.stat("listener_manager.lds.update_success")
            > success),
        "the valid update was not applied"
    );
    let new_seen = svcauth_tests::wait_until(WAIT, || {
        seen.lock()
            .unwrap()
            .iter()
            .any(|(_, r)| r.as_deref() == Ok("403 insufficient_scope"))
    });
    // Keep the clients going on the new rules for a while.
    std::thread::sleep(Duration::from_millis(700));
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.join().unwrap();
    }
    assert!(new_seen, "the new rules never applied");
    let seen = seen.lock().unwrap();
    let errors: Vec<&String> = seen.iter().filter_map(|(_, r)| r.as_ref().err()).collect();
    assert!(
        errors.is_empty(),
        "{} of {} calls failed: {:?}",
        errors.len(),
        seen.len(),
        errors
    );
    let unexpected: Vec<&String> = seen
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok())
        .filter(|o| *o != "200" && *o != "403 insufficient_scope")
        .collect();
    assert!(
        unexpected.is_empty(),
        "answers other than old or new: {unexpected:?}"
    );
    let first_new = seen
        .iter()
        .find(|(_, r)| r.as_deref() == Ok("403 insufficient_scope"))
        .map(|(at, _)| *at)
        .unwrap();
    let last_old = seen
        .iter()
        .filter(|(_, r)| r.as_deref() == Ok("200"))
        .map(|(at, _)| *at)
        .max()
        .unwrap();
    eprintln!(
        "faults: {} calls through the swap, none failed; new rules first answered {:?} after the \
         write, last old answer {:?} after the first new one",
        seen.len(),
        first_new.duration_since(swapped_at),
        last_old.saturating_duration_since(first_new)
    );
    assert!(
        last_old <= first_new + Duration::from_secs(3),
        "old answers went on for {:?} after the new rules applied",
        last_old.saturating_duration_since(first_new)
    );
    // And afterwards: new rules only.
    assert_eq!(
        outcome(&lds.get("/orders", Some(&t))),
        "403 insufficient_scope"
    );
    assert_eq!(outcome(&lds.get("/open/x", None)), "200");
    assert_eq!(outcome(&lds.get("/health", None)), "200");
    assert_eq!(lds.stat("listener_manager.lds.update_rejected"), 0);
    assert_eq!(lds.envoy.admin("/ready").status, 200);
}
