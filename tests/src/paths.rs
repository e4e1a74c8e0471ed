//! Where the Envoy binary and the built filter are.

use std::path::{Path, PathBuf};

/// The repository root (the workspace directory).
pub fn repo_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// The Envoy binary: `$ENVOY_BIN`, else the real binary inside the project's `.venv`
/// (installed by `scripts/setup`). Panics with a hint when there is none.
pub fn envoy_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("ENVOY_BIN").filter(|v| !v.is_empty()) {
        let bin = PathBuf::from(bin);
        assert!(bin.is_file(), "ENVOY_BIN={} is not a file", bin.display());
        return bin;
    }
    let lib = repo_root().join(".venv").join("lib");
    if let Ok(entries) = std::fs::read_dir(&lib) {
        for entry in entries.flatten() {
            let candidate = entry.path().join("site-packages/envoy/_bin/envoy");
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!("no Envoy: set ENVOY_BIN, or run scripts/setup (or simply scripts/test)");
}

/// The built filter: `$SVCAUTH_WASM`, else `target/wasm32-wasip1/release/svcauth_filter.wasm`.
/// Panics with a hint when it does not exist.
pub fn wasm_path() -> PathBuf {
    let path = match std::env::var_os("SVCAUTH_WASM").filter(|v| !v.is_empty()) {
        Some(p) => PathBuf::from(p),
        None => repo_root().join("target/wasm32-wasip1/release/svcauth_filter.wasm"),
    };
    assert!(
        path.is_file(),
        "no filter wasm at {}: run scripts/build-wasm (or simply scripts/test), or set SVCAUTH_WASM",
        path.display()
    );
    std::fs::canonicalize(&path).unwrap_or(path)
}

/// The fallback build (the filter with the `vm-crypto` feature: RSA and ECDSA inside the VM):
/// `$SVCAUTH_WASM_VMCRYPTO`, else `target/wasm32-wasip1/release/svcauth_filter_vmcrypto.wasm`
/// (scripts/build-wasm builds both). Panics with a hint when it does not exist.
pub fn wasm_vmcrypto_path() -> PathBuf {
    let path = match std::env::var_os("SVCAUTH_WASM_VMCRYPTO").filter(|v| !v.is_empty()) {
        Some(p) => PathBuf::from(p),
        None => repo_root().join("target/wasm32-wasip1/release/svcauth_filter_vmcrypto.wasm"),
    };
    assert!(
        path.is_file(),
        "no fallback filter wasm at {}: run scripts/build-wasm (or simply scripts/test), or set SVCAUTH_WASM_VMCRYPTO",
        path.display()
    );
    std::fs::canonicalize(&path).unwrap_or(path)
}
