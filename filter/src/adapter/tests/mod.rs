//! The adapter's logic against the host double (`fake::FakeHost`), one file per concern:
//! `state_machines` (rate-limit CAS loop, fetch lease and backoff, waiter queue), `host_seam`
//! (header buffer, ids, prebuilt replies), `request_path` (the host calls each request path
//! makes, header application, counters), `token_sources` (tokens in cookies and parameters,
//! stripped upstream), `refetch` (unknown kids, timeouts, reconfiguration), `oidc_discovery`,
//! `signatures` and `held_bodies` (signed requests). This file holds the fixtures they share;
//! the tests may use anything in the crate, and nothing uses them.

mod held_bodies;
mod host_seam;
mod oidc_discovery;
mod refetch;
mod request_path;
mod signatures;
mod state_machines;
mod token_sources;

use std::collections::BTreeMap;
use std::rc::Rc;

use serde_json::json;

use super::fake::FakeHost;
use super::host::Host;
use super::request::{self, Outcome, Stream};
use super::root::Root;
use crate::fixtures::{self, claims, token, Fixture, NOW};

/// Configures `root` with `config` on `host` (which may wrap `fake`), the metrics defined on
/// `fake`, the environment `env`.
pub(super) fn configure(
    root: &mut Root,
    fake: &FakeHost,
    host: Rc<dyn Host>,
    config: &serde_json::Value,
    env: &dyn Fn(&str) -> Option<String>,
) {
    root.configure(
        host,
        config.to_string().as_bytes(),
        env,
        &|name, gauge| fake.define_metric(name, gauge),
        &|_| Some(7),
    )
    .unwrap();
}

/// A root configured with `config` on `host`; the counter ids by name.
fn configured(host: &Rc<FakeHost>, config: &serde_json::Value) -> (Root, BTreeMap<String, u32>) {
    let mut root = Root::default();
    configure(&mut root, host, host.clone(), config, &fixtures::env);
    (root, host.metric_ids())
}

fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

/// Runs one request on context `id`; its outcome and stream.
fn run_request(
    host: &FakeHost,
    shared: &super::state::Shared,
    id: u32,
    req: &[(&str, &str)],
) -> (Outcome, Stream) {
    host.request(id, req);
    let mut s = Stream {
        id,
        ..Stream::default()
    };
    let o = request::on_request_headers(shared, &mut s);
    (o, s)
}

/// The fixture config with its provider's keys fetched from cluster `jwks` instead.
fn remote_config() -> serde_json::Value {
    let mut v = fixtures::config_json();
    let p = &mut v["providers"]["internal"];
    p.as_object_mut().unwrap().remove("jwks");
    p["remote_jwks"] = json!({"cluster": "jwks", "refetch_interval_seconds": 1, "max_waiting": 2});
    v
}

fn answer_fetch(host: &FakeHost, root: &mut Root, body: &str) {
    let token = host.dispatched.borrow().last().unwrap().0;
    *host.call_status.borrow_mut() = Some("200".into());
    *host.call_body.borrow_mut() = body.as_bytes().to_vec();
    root.call_response(token, body.len());
}

fn reply_of(host: &FakeHost, id: u32) -> Option<(u32, String)> {
    host.replies
        .borrow()
        .iter()
        .rev()
        .find(|r| r.0 == id)
        .map(|r| (r.1, r.3.clone()))
}

const SIGNING_ENV: &str = "SVCAUTH_TEST_SIGNING";
const CLIENT_SECRET: &str = "orders-service-signing-secret-0001";

/// The fixture config with signing secrets for `orders-service` on provider `internal`
/// (`required` as given) and a `/signed/` rule that requires a signature.
fn signing_config(required: bool) -> serde_json::Value {
    let mut v = fixtures::config_json();
    v["providers"]["internal"]["signed_requests"] = json!({
        "secrets_env": SIGNING_ENV, "required": required, "max_body_bytes": 64,
        "replay_cache_per_caller": 64
    });
    let rules = v["rules"].as_array_mut().unwrap();
    rules.insert(
        0,
        json!({"match": {"prefix": "/signed/"}, "requires": {"signed": true}}),
    );
    v
}

fn signing_env(name: &str) -> Option<String> {
    if name == SIGNING_ENV {
        return Some(format!("orders-service:{CLIENT_SECRET}"));
    }
    fixtures::env(name)
}

/// A root on `host` configured with `config` (with the signing secrets in its environment).
fn signing_root(host: &Rc<FakeHost>, config: &serde_json::Value) -> Root {
    let mut root = Root::default();
    configure(&mut root, host, host.clone(), config, &signing_env);
    root
}

/// `X-Signature` for a request, as the client signs it.
fn sign_req(method: &str, path: &str, body: &[u8], ts: &str) -> String {
    let mac = crate::signing::mac(CLIENT_SECRET.as_bytes(), method, path, body, ts);
    crate::signing::hex(&mac)
}

struct Signed {
    auth: String,
    ts: String,
    sig: String,
}

fn signed(method: &str, path: &str, body: &[u8], ts: i64) -> Signed {
    let ts = ts.to_string();
    Signed {
        auth: bearer(&token(Fixture::Ec256, &claims(NOW))),
        sig: sign_req(method, path, body, &ts),
        ts,
    }
}

/// Starts request `id` (`POST path` with these signature parts) and runs its headers callback.
fn sig_post(
    shared: &super::state::Shared,
    host: &FakeHost,
    id: u32,
    path: &str,
    s: &Signed,
    body: &[u8],
) -> (Stream, Outcome) {
    let len = body.len().to_string();
    host.request(
        id,
        &[
            (":method", "POST"),
            (":path", path),
            ("authorization", s.auth.as_str()),
            ("x-timestamp", s.ts.as_str()),
            ("x-signature", s.sig.as_str()),
            ("content-length", len.as_str()),
            ("x-request-id", "rid"),
        ],
    );
    host.bodies.borrow_mut().insert(id, body.to_vec());
    let mut st = Stream {
        id,
        headers_only: body.is_empty(),
        ..Stream::default()
    };
    let o = request::on_request_headers(shared, &mut st);
    (st, o)
}

fn sig_reason(host: &FakeHost, id: u32) -> Option<(u32, String)> {
    reply_of(host, id).map(|(status, body)| {
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        (status, v["reason"].as_str().unwrap_or_default().to_string())
    })
}
