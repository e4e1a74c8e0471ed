//! The real-Envoy test harness for svcauth.
//!
//! Every integration test starts a real Envoy (`$ENVOY_BIN`) that loads the built filter
//! (`$SVCAUTH_WASM`), real HTTP servers on loopback, and talks to them with a raw HTTP/1.1 client.
//! Nothing here mocks Envoy. Every process and server is bounded in time and stopped on drop,
//! including when a test panics.
//!
//! ```no_run
//! use svcauth_tests::{bootstrap, http, EchoUpstream, Envoy, Opts};
//!
//! let upstream = EchoUpstream::start();
//! let plugin = r#"{"providers":{},"rules":[{"match":{"prefix":"/"},"allow":true}]}"#;
//! let envoy = Envoy::start(&bootstrap(plugin, &Opts::new(upstream.port())));
//! let resp = http(envoy.port(), "GET", "/health", &[]);
//! assert_eq!(resp.status, 200);
//! assert_eq!(upstream.last_request().unwrap().path, "/health");
//! ```
//!
//! `scripts/test` sets `ENVOY_BIN` and `SVCAUTH_WASM`; when they are unset the harness falls back
//! to the project's `.venv` Envoy and `target/wasm32-wasip1/release/svcauth_filter.wasm`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod bootstrap;
mod client;
mod envoy;
pub mod grpc;
mod grpc_thread;
mod listen;
pub mod observe;
pub mod otlp;
mod paths;
pub mod raw;
mod server;
pub mod tokens;

pub use bootstrap::{bootstrap, bootstrap_of, svcauth_filter, Opts, LISTENER};
pub use client::{http, http_body, http_raw, try_http, try_http_raw, Response};
pub use envoy::{tail, Envoy, RunDir};
pub use otlp::{OtlpReceiver, SpanRecord};
pub use paths::{envoy_bin, repo_root, wasm_path, wasm_vmcrypto_path};
pub use server::{EchoUpstream, HttpServer, Reply, Request};
pub use svcauth_bootstrap::{self as generator, indent, loopback_cluster, render, yaml_str};

/// The host clock in seconds, as Envoy reads it (for minting tokens that are valid now).
pub fn now() -> i64 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    i64::try_from(secs).unwrap_or(i64::MAX)
}

/// Polls `cond` every 20 ms until it is true or `timeout` passes; returns whether it became true.
pub fn wait_until(timeout: std::time::Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
