//! Every Envoy bootstrap in `envoy/` passes `envoy --mode validate` with the built filter
//! (which also runs the plugin's `on_configure`, so a config the filter refuses fails here).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use svcauth_tests::{repo_root, wasm_path, Envoy};

/// The wasm path the configs in `envoy/` use, relative to the repository root.
const RELATIVE_WASM: &str = "target/wasm32-wasip1/release/svcauth_filter.wasm";

/// Envoy bootstraps among `envoy/*.yaml` (Istio manifests and docker-compose files are other
/// kinds of YAML: they are checked elsewhere).
fn envoy_bootstraps() -> Vec<std::path::PathBuf> {
    let dir = repo_root().join("envoy");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .filter(|p| {
            let text = std::fs::read_to_string(p).unwrap();
            text.lines()
                .any(|l| l.starts_with("static_resources:") || l.starts_with("admin:"))
        })
        .collect();
    files.sort();
    files
}

#[test]
fn every_envoy_config_in_the_repo_passes_envoy_validate() {
    let wasm = wasm_path();
    let files = envoy_bootstraps();
    assert!(
        files.iter().any(|f| f.ends_with("demo.yaml")),
        "envoy/demo.yaml not found among {files:?}"
    );
    let mut failures = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let yaml = text.replace(RELATIVE_WASM, &wasm.to_string_lossy());
        let (ok, output) = Envoy::validate(&yaml);
        if ok {
            println!("valid: {}", file.display());
        } else {
            let tail: Vec<&str> = output.lines().rev().take(15).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            failures.push(format!("{}:\n{}", file.display(), tail.join("\n")));
        }
    }
    assert!(
        failures.is_empty(),
        "envoy --mode validate failed:\n{}",
        failures.join("\n\n")
    );
}
