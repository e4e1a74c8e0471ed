//! The built module exports only what svcauth needs (scripts/build-wasm's post-link step), and
//! every proxy-wasm callback the adapter overrides is among them.
//!
//! Envoy enters the VM for every `proxy_on_*` callback a module exports; for one it does not
//! export, the host does what the SDK's default would have done (Continue, or "done" for
//! `proxy_on_done`). So an export the adapter does not override is a VM entry for nothing, and a
//! callback the adapter overrides but the module does not export is silently never called.

use std::collections::BTreeSet;

use svcauth_tests::{repo_root, wasm_path, wasm_vmcrypto_path};

/// Exactly what the module must export (scripts/build-wasm says why each one).
const EXPECTED: &[&str] = &[
    "memory",
    "_initialize",
    "proxy_abi_version_0_2_1",
    "proxy_on_memory_allocate",
    "proxy_on_context_create",
    "proxy_on_delete",
    "proxy_on_vm_start",
    "proxy_on_configure",
    "proxy_on_tick",
    "proxy_on_queue_ready",
    "proxy_on_http_call_response",
    "proxy_on_request_headers",
    "proxy_on_request_body",
    "proxy_on_request_trailers",
    "proxy_on_log",
];

/// The SDK's trait methods (proxy-wasm 0.2.5 `traits.rs`) and the export that reaches each one.
const CALLBACKS: &[(&str, &str)] = &[
    // Context
    ("on_http_call_response", "proxy_on_http_call_response"),
    ("on_grpc_call_response", "proxy_on_grpc_receive"),
    (
        "on_grpc_stream_initial_metadata",
        "proxy_on_grpc_receive_initial_metadata",
    ),
    ("on_grpc_stream_message", "proxy_on_grpc_receive"),
    (
        "on_grpc_stream_trailing_metadata",
        "proxy_on_grpc_receive_trailing_metadata",
    ),
    ("on_grpc_stream_close", "proxy_on_grpc_close"),
    ("on_done", "proxy_on_done"),
    ("on_foreign_function", "proxy_on_foreign_function"),
    // RootContext
    ("on_vm_start", "proxy_on_vm_start"),
    ("on_configure", "proxy_on_configure"),
    ("on_tick", "proxy_on_tick"),
    ("on_queue_ready", "proxy_on_queue_ready"),
    ("on_log", "proxy_on_log"),
    ("create_http_context", "proxy_on_context_create"),
    ("create_stream_context", "proxy_on_context_create"),
    // HttpContext
    ("on_http_request_headers", "proxy_on_request_headers"),
    ("on_http_request_body", "proxy_on_request_body"),
    ("on_http_request_trailers", "proxy_on_request_trailers"),
    ("on_http_response_headers", "proxy_on_response_headers"),
    ("on_http_response_body", "proxy_on_response_body"),
    ("on_http_response_trailers", "proxy_on_response_trailers"),
    // StreamContext
    ("on_new_connection", "proxy_on_new_connection"),
    ("on_downstream_data", "proxy_on_downstream_data"),
    (
        "on_downstream_close",
        "proxy_on_downstream_connection_close",
    ),
    ("on_upstream_data", "proxy_on_upstream_data"),
    ("on_upstream_close", "proxy_on_upstream_connection_close"),
];

fn leb_u32(bytes: &[u8], at: &mut usize) -> u32 {
    let mut value = 0u32;
    let mut shift = 0;
    loop {
        let b = bytes[*at];
        *at += 1;
        value |= u32::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return value;
        }
        shift += 7;
        assert!(shift < 35, "LEB128 too long at {at}");
    }
}

/// The export names of a core wasm module, read straight from its export section (id 7).
fn exports(wasm: &[u8]) -> Vec<String> {
    assert_eq!(
        &wasm[..8],
        b"\0asm\x01\0\0\0",
        "not a wasm module (version 1)"
    );
    let mut at = 8;
    while at < wasm.len() {
        let id = wasm[at];
        at += 1;
        let size = leb_u32(wasm, &mut at) as usize;
        let end = at + size;
        if id == 7 {
            let mut names = Vec::new();
            let count = leb_u32(wasm, &mut at);
            for _ in 0..count {
                let len = leb_u32(wasm, &mut at) as usize;
                names.push(String::from_utf8(wasm[at..at + len].to_vec()).unwrap());
                at += len;
                at += 1; // kind
                leb_u32(wasm, &mut at); // index
            }
            assert_eq!(at, end, "export section size");
            return names;
        }
        at = end;
    }
    Vec::new()
}

#[test]
fn the_module_exports_exactly_what_svcauth_needs() {
    exports_exactly_what_svcauth_needs(wasm_path());
}

/// The fallback build (vm-crypto) takes the same post-link step.
#[test]
fn the_fallback_module_exports_exactly_what_svcauth_needs() {
    exports_exactly_what_svcauth_needs(wasm_vmcrypto_path());
}

fn exports_exactly_what_svcauth_needs(path: std::path::PathBuf) {
    let wasm = std::fs::read(&path).unwrap();
    let names = exports(&wasm);
    let got: BTreeSet<&str> = names.iter().map(String::as_str).collect();
    assert_eq!(got.len(), names.len(), "duplicate export names: {names:?}");
    let want: BTreeSet<&str> = EXPECTED.iter().copied().collect();
    let extra: Vec<&&str> = got.difference(&want).collect();
    let missing: Vec<&&str> = want.difference(&got).collect();
    assert!(
        extra.is_empty() && missing.is_empty(),
        "{}: exports not allowed: {extra:?}; missing: {missing:?} \
         (built without scripts/build-wasm's post-link step, or WASM_PRUNE=0?)",
        path.display()
    );
}

/// The adapter's `fn on_…` / `fn create_…_context` items that are SDK callbacks.
fn overridden_callbacks() -> BTreeSet<&'static str> {
    let dir = repo_root().join("filter/src/adapter");
    let mut found = BTreeSet::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("rs") {
            continue;
        }
        let src = std::fs::read_to_string(&path).unwrap();
        for (method, _) in CALLBACKS {
            // A trait method: `fn name(&mut self` or `fn name(&self`, maybe across lines (a
            // free function such as `jwks::on_response(shared: …` is not one).
            let pattern = format!("fn {method}(");
            let is_method = src
                .match_indices(&pattern)
                .any(|(at, _)| src[at + pattern.len()..].trim_start().starts_with('&'));
            if is_method {
                found.insert(*method);
            }
        }
    }
    found
}

#[test]
fn every_callback_the_adapter_overrides_is_exported() {
    let overridden = overridden_callbacks();
    // The adapter must be found at all: these three are the filter.
    for core in [
        "on_configure",
        "create_http_context",
        "on_http_request_headers",
    ] {
        assert!(
            overridden.contains(core),
            "did not find `fn {core}(` in filter/src/adapter: {overridden:?}"
        );
    }
    let wasm = std::fs::read(wasm_path()).unwrap();
    let names = exports(&wasm);
    for method in &overridden {
        let export = CALLBACKS
            .iter()
            .find(|(m, _)| m == method)
            .map(|(_, e)| *e)
            .unwrap();
        assert!(
            names.iter().any(|n| n == export),
            "filter/src/adapter overrides `{method}`, but the module does not export `{export}`: \
             the host would never call it. Add {export} to KEEP_EXPORTS in scripts/build-wasm \
             and to EXPECTED in tests/exports.rs"
        );
    }
}

#[test]
fn the_export_reader_reads_a_hand_made_module() {
    // (module (memory (export "mem") 1) (func (export "f")))
    let wasm = b"\0asm\x01\0\0\0\
        \x01\x04\x01\x60\x00\x00\
        \x03\x02\x01\x00\
        \x05\x03\x01\x00\x01\
        \x07\x0b\x02\x03mem\x02\x00\x01f\x00\x00\
        \x0a\x04\x01\x02\x00\x0b";
    assert_eq!(exports(wasm), ["mem", "f"]);
}
