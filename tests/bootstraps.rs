//! Every bootstrap the repo generates passes `envoy --mode validate` (`$ENVOY_BIN`) with the
//! built `.wasm`: each bench KIND (`svcauth-bench envoy-config KIND`), the soak's
//! (`envoy-config soak`) and the tests' own variants (plain, traced with runtime keys, gRPC
//! upstream and extra clusters, connection manager and route extras, fail open, and the two
//! listeners of tests/doors.rs). Validation loads and configures each wasm module. All come from one generator, `svcauth_bootstrap`; a broken one
//! is shown to fail, so that the check is not vacuous.

use svcauth_tests::generator::{bench, soak};
use svcauth_tests::{bootstrap, bootstrap_of, render, repo_root, wasm_path, Envoy, Opts};

/// The `wasm_empty` module (`scripts/build-wasm --package svcauth-empty-filter`, a step of
/// scripts/test): validation loads and configures each module, so svcauth's would refuse the
/// empty filter's (absent) configuration.
fn empty_wasm() -> String {
    let empty = std::env::var_os("SVCAUTH_EMPTY_WASM").map_or_else(
        || repo_root().join("target/wasm32-wasip1/release/svcauth_empty_filter.wasm"),
        std::path::PathBuf::from,
    );
    assert!(
        empty.is_file(),
        "{} is missing: run scripts/build-wasm --package svcauth-empty-filter (or set SVCAUTH_EMPTY_WASM)",
        empty.display()
    );
    empty.to_string_lossy().into_owned()
}

/// Validates each `(name, yaml)`; panics with the tail of Envoy's output for each failure.
fn assert_all_valid(bootstraps: &[(String, String)]) {
    let mut failures = Vec::new();
    for (name, yaml) in bootstraps {
        let (ok, output) = Envoy::validate(yaml);
        if ok {
            println!("valid: {name}");
        } else {
            let tail: Vec<&str> = output.lines().rev().take(15).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            failures.push(format!(
                "{name}:\n{}\n--- bootstrap:\n{yaml}",
                tail.join("\n")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "envoy --mode validate failed:\n{}",
        failures.join("\n\n")
    );
}

#[test]
fn every_bench_kind_and_the_soak_bootstrap_pass_envoy_validate() {
    let wasm = wasm_path().to_string_lossy().into_owned();
    let mut all = Vec::new();
    for kind in bench::KINDS {
        let module = if kind == "wasm_empty" {
            empty_wasm()
        } else {
            wasm.clone()
        };
        let yaml = bench::envoy_config(kind, 0, 0, &module).unwrap();
        all.push((format!("bench {kind}"), yaml));
    }
    all.push((
        "soak".into(),
        soak::envoy_config(&wasm, "soak-secret-of-at-least-32-bytes-0123456789"),
    ));
    assert_eq!(all.len(), 6);
    assert_all_valid(&all);
}

#[test]
fn the_test_harness_bootstraps_pass_envoy_validate() {
    let plugin = svcauth_filter::fixtures::config_json().to_string();
    let env = |o: Opts| {
        o.env(
            svcauth_filter::fixtures::HMAC_ENV,
            svcauth_filter::fixtures::HMAC_SECRET,
        )
    };
    let tracing = r#"random_sampling: {value: 100}
provider:
  name: envoy.tracers.opentelemetry
  typed_config:
    "@type": type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig
    grpc_service: {envoy_grpc: {cluster_name: jaeger}, timeout: 2s}
    service_name: svcauth-test
custom_tags:
- {tag: auth.decision, value: "%FILTER_STATE(wasm.svcauth_decision:PLAIN)%"}
"#;
    let mut doors = bootstrap_of(&plugin, &env(Opts::new(9)));
    let mut hardened = doors.listeners[0].clone();
    hardened.name = "hardened".into();
    hardened.hardened = true;
    doors.listeners.push(hardened);
    let all = vec![
        ("plain".to_string(), bootstrap(&plugin, &env(Opts::new(9)))),
        (
            "traced, runtime keys".into(),
            bootstrap(
                &plugin,
                &env(Opts::new(9))
                    .grpc_cluster("jaeger", 10)
                    .tracing(tracing)
                    .runtime("tracing.opentelemetry.min_flush_spans", "1"),
            ),
        ),
        (
            "gRPC upstream, extra clusters".into(),
            bootstrap(
                &plugin,
                &env(Opts::new(9))
                    .upstream_http2(true)
                    .loopback_cluster("jwks", 11),
            ),
        ),
        (
            "connection manager and route extras, fail open".into(),
            bootstrap(
                &plugin,
                &env(Opts::new(9))
                    .hcm_extra("max_request_headers_kb: 96")
                    .route_extra("request_headers_to_remove: [x-forwarded-client-cert]")
                    .fail_open(true),
            ),
        ),
        ("two listeners (doors)".into(), render(&doors)),
    ];
    assert_all_valid(&all);
}

/// The check can fail: a bootstrap with a field Envoy does not know is refused.
#[test]
fn a_broken_generated_bootstrap_fails_envoy_validate() {
    let wasm = wasm_path().to_string_lossy().into_owned();
    let yaml = bench::envoy_config("svcauth", 0, 0, &wasm)
        .unwrap()
        .replace(
            "codec_type: HTTP1",
            "codec_type: HTTP1\n          no_such_field: 1",
        );
    assert!(yaml.contains("no_such_field"), "the field was inserted");
    let (ok, output) = Envoy::validate(&yaml);
    assert!(!ok, "an unknown field passed validation:\n{output}");
}
