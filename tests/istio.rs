//! Istio: the manifests in `envoy/istio/` (WasmPlugin, EnvoyFilter, TrafficExtension, tracing)
//! are valid for Istio's own CRD schemas (1.30.3, `tests/fixtures/istio/`), their Envoy side
//! passes `envoy --mode validate` and serves real traffic with the pluginConfig as written, and
//! `scripts/oci` packs the module into a reproducible image that Istio's fetcher can read.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod istio_support;

use std::path::{Path, PathBuf};
use std::sync::Once;

use istio_support::*;
use serde_json::{json, Map, Value};
use svcauth_filter::config::{TAG_DECISION, TAG_PROVIDER, TAG_REASON, TAG_SERVICE};
use svcauth_filter::fixtures::{signing_key, Fixture};
use svcauth_filter::jws::Alg;
use svcauth_filter::mint::{sign, SigningKey};
use svcauth_tests::{http, now, wasm_path, EchoUpstream, Envoy, RunDir};

/// The manifests' HMAC secret variable, read by the plugin from the sidecar's environment
/// (`vmConfig.env` `valueFrom: HOST`), and the value the tests put there.
const HMAC_ENV: &str = "SVCAUTH_HMAC_SECRET";
const HMAC_SECRET: &str = "istio-test-hmac-secret-at-least-32-bytes-long";

/// The manifests' providers (see envoy/istio/wasmplugin.yaml).
const MESH_ISSUER: &str = "https://auth.example.internal";
const BATCH_ISSUER: &str = "https://batch.example.internal";
/// The example key in the manifests' inline JWKS: filter/fixtures/rsa-a.pem, kid "demo-rsa".
const EXAMPLE_KID: &str = "demo-rsa";

const CRD_MANIFESTS: [&str; 3] = [
    "wasmplugin.yaml",
    "envoyfilter.yaml",
    "trafficextension.yaml",
];

// ------------------------------------------------------------------ schemas -------------------

#[test]
fn crd_fixtures_are_the_recorded_istio_files() {
    let source = read(&fixture_path("SOURCE.md"));
    for file in ["istio-crds.yaml", "istio-trafficextension-crd.yaml"] {
        let hex = sha256_hex(&std::fs::read(fixture_path(file)).unwrap());
        assert!(
            source.contains(&hex),
            "tests/fixtures/istio/{file} (sha256 {hex}) is not the file SOURCE.md records"
        );
    }
    let kinds: Vec<String> = crds()
        .iter()
        .map(|c| format!("{} {}", c.api_version, c.kind))
        .collect();
    assert_eq!(
        kinds,
        [
            "extensions.istio.io/v1alpha1 WasmPlugin",
            "networking.istio.io/v1alpha3 EnvoyFilter",
            "extensions.istio.io/v1alpha1 TrafficExtension"
        ]
    );
}

#[test]
fn the_istio_manifests_validate_against_istio_crd_schemas() {
    let docs: Vec<Value> = CRD_MANIFESTS.iter().map(|m| manifest(m)).collect();
    let results = validate_all(&docs);
    for (name, errors) in CRD_MANIFESTS.iter().zip(&results) {
        assert!(errors.is_empty(), "envoy/istio/{name}: {errors:#?}");
    }
    // Every YAML file in envoy/istio/ is either one of those or a kind without a CRD fixture.
    for entry in std::fs::read_dir(manifest_path("")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        for doc in yaml_docs(&read(&path)) {
            let kind = doc["kind"].as_str().unwrap_or_default();
            match kind {
                "WasmPlugin" | "EnvoyFilter" | "TrafficExtension" => assert!(
                    CRD_MANIFESTS.contains(&name.as_str()),
                    "{name}: a {kind} that this test does not validate"
                ),
                "Telemetry" | "IstioOperator" => {}
                other => panic!("{name}: unexpected kind {other:?}"),
            }
        }
    }
}

#[test]
fn misspelled_fields_are_rejected_at_any_depth() {
    let cases: [(&str, &str, &str); 5] = [
        ("wasmplugin.yaml", "/spec/failStrategy", "failStratgy"),
        (
            "wasmplugin.yaml",
            "/spec/vmConfig/env/0/valueFrom",
            "value_from",
        ),
        (
            "wasmplugin.yaml",
            "/spec/selector/matchLabels",
            "matchLabel",
        ),
        (
            "envoyfilter.yaml",
            "/spec/configPatches/0/patch/operation",
            "opration",
        ),
        ("trafficextension.yaml", "/spec/wasm/pluginName", "rootId"),
    ];
    for (file, pointer, wrong) in cases {
        let mut doc = manifest(file);
        rename(&mut doc, pointer, wrong);
        let errors = validate(&doc);
        assert!(
            errors
                .iter()
                .any(|e| e.contains(&format!("'{wrong}' was unexpected"))),
            "{file}: {pointer} renamed to {wrong} must be rejected, got {errors:#?}"
        );
    }
    // The plugin's own configuration is opaque to Istio (x-kubernetes-preserve-unknown-fields):
    // its field names are checked by the filter at load, see the Envoy tests below.
    let mut doc = manifest("wasmplugin.yaml");
    doc["spec"]["pluginConfig"]["anything"] = json!(1);
    assert_eq!(validate(&doc), Vec::<String>::new());
}

#[test]
fn wrong_enum_values_are_rejected() {
    let cases: [(&str, &str, Value); 5] = [
        // Envoy spells it FAIL_CLOSED; Istio's enum is FAIL_CLOSE.
        (
            "wasmplugin.yaml",
            "/spec/failStrategy",
            json!("FAIL_CLOSED"),
        ),
        ("wasmplugin.yaml", "/spec/phase", json!("AUTHENTICATION")),
        (
            "wasmplugin.yaml",
            "/spec/vmConfig/env/0/valueFrom",
            json!("SECRET"),
        ),
        (
            "envoyfilter.yaml",
            "/spec/configPatches/0/match/context",
            json!("INBOUND"),
        ),
        (
            "trafficextension.yaml",
            "/spec/wasm/failStrategy",
            json!("fail_close"),
        ),
    ];
    for (file, pointer, value) in cases {
        let mut doc = manifest(file);
        *doc.pointer_mut(pointer).unwrap() = value.clone();
        let errors = validate(&doc);
        assert!(
            errors.iter().any(|e| e.contains("is not one of")),
            "{file}: {pointer} = {value} must be rejected, got {errors:#?}"
        );
    }
}

#[test]
fn cel_rules_one_of_and_types_are_enforced() {
    let rejected = |doc: &Value, needle: &str| {
        let errors = validate(doc);
        assert!(
            errors.iter().any(|e| e.contains(needle)),
            "expected an error containing {needle:?}, got {errors:#?}"
        );
    };
    // A HOST variable with an inline value: the secret would end up in the resource.
    let mut wp = manifest("wasmplugin.yaml");
    wp["spec"]["vmConfig"]["env"][0]["value"] = json!("inline-secret");
    rejected(&wp, "value may only be set when valueFrom is INLINE");
    // selector and targetRefs together.
    let mut wp = manifest("wasmplugin.yaml");
    wp["spec"]["targetRefs"] = json!([{"kind": "Service", "name": "orders"}]);
    rejected(&wp, "only one of targetRefs or selector can be set");
    // A url scheme Istio cannot fetch.
    let mut wp = manifest("wasmplugin.yaml");
    wp["spec"]["url"] = json!("ftp://registry.example.com/svcauth.wasm");
    rejected(&wp, "url must have schema one of");
    // A label wildcard.
    let mut wp = manifest("wasmplugin.yaml");
    wp["spec"]["selector"]["matchLabels"]["app"] = json!("orders-*");
    rejected(&wp, "wildcard not allowed in label value match");
    // Wrong types and a missing required field.
    let mut wp = manifest("wasmplugin.yaml");
    wp["spec"]["priority"] = json!("high");
    rejected(&wp, "is not of type 'integer'");
    let mut wp = manifest("wasmplugin.yaml");
    wp["spec"].as_object_mut().unwrap().remove("url");
    rejected(&wp, "'url' is a required property");
    // A TrafficExtension with both wasm and lua (oneOf and a CEL rule).
    let mut te = manifest("trafficextension.yaml");
    te["spec"]["lua"] = json!({"inlineCode": "function envoy_on_request(h) end"});
    rejected(&te, "exactly one of wasm or lua must be set");
    rejected(&te, "is valid under each of");
    // An EnvoyFilter match with both listener and cluster (oneOf).
    let mut ef = manifest("envoyfilter.yaml");
    ef["spec"]["configPatches"][0]["match"]["cluster"] = json!({"name": "x"});
    rejected(&ef, "is valid under each of");
    // metadata and kind are checked too.
    let mut wp = manifest("wasmplugin.yaml");
    wp["metadata"]["name"] = json!("SvcAuth");
    rejected(&wp, "does not match");
    let mut wp = manifest("wasmplugin.yaml");
    wp["apiVersion"] = json!("extensions.istio.io/v1");
    assert!(validate(&wp)
        .iter()
        .any(|e| e.contains("no CRD for apiVersion")));
}

#[test]
fn the_three_manifests_carry_the_same_plugin_config() {
    let wp = manifest("wasmplugin.yaml")["spec"]["pluginConfig"].clone();
    let te = manifest("trafficextension.yaml")["spec"]["wasm"]["pluginConfig"].clone();
    let ef = envoyfilter_patch_value()["typed_config"]["config"]["configuration"]["value"]
        .as_str()
        .map(|s| serde_json::from_str::<Value>(s).unwrap())
        .unwrap();
    assert_eq!(wp, te, "trafficextension.yaml pluginConfig");
    assert_eq!(wp, ef, "envoyfilter.yaml configuration");
    // And the OCI urls pin the same image by digest.
    let url = |v: &Value| v.as_str().unwrap().to_string();
    let wp_url = url(&manifest("wasmplugin.yaml")["spec"]["url"]);
    let te_url = url(&manifest("trafficextension.yaml")["spec"]["wasm"]["url"]);
    assert_eq!(wp_url, te_url);
    let (repo, digest) = wp_url.split_once("@sha256:").expect("url pins a digest");
    assert!(repo.starts_with("oci://"), "{wp_url}");
    assert!(
        digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit()),
        "{wp_url}"
    );
}

/// `target` renamed to `new_name` in its parent object (JSON pointer).
fn rename(doc: &mut Value, pointer: &str, new_name: &str) {
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    let obj = doc.pointer_mut(parent).unwrap().as_object_mut().unwrap();
    let value = obj
        .remove(key)
        .unwrap_or_else(|| panic!("{pointer} not set"));
    obj.insert(new_name.to_string(), value);
}

// ------------------------------------------------------------------ Envoy ---------------------

/// Istio's `valueFrom: HOST` is `host_env_keys`: Envoy reads the variable from its own process
/// environment (the istio-proxy container's). Every Envoy these tests start inherits it.
fn host_env() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| std::env::set_var(HMAC_ENV, HMAC_SECRET));
}

fn envoyfilter_patch_value() -> Value {
    let ef = manifest("envoyfilter.yaml");
    let patch = &ef["spec"]["configPatches"][0];
    assert_eq!(patch["applyTo"], "HTTP_FILTER");
    assert_eq!(patch["match"]["context"], "SIDECAR_INBOUND");
    assert_eq!(
        patch["match"]["listener"]["filterChain"]["filter"]["subFilter"]["name"],
        "envoy.filters.http.router"
    );
    assert_eq!(patch["patch"]["operation"], "INSERT_BEFORE");
    patch["patch"]["value"].clone()
}

/// An RS256 token from the manifests' mesh issuer, signed with the example key.
fn mesh_token(scope: &str) -> String {
    let now = now();
    let mut header = Map::new();
    header.insert("kid".into(), EXAMPLE_KID.into());
    let claims = json!({"iss": MESH_ISSUER, "sub": "checkout", "aud": "orders",
                        "iat": now, "exp": now + 300, "scope": scope});
    sign(&signing_key(Fixture::RsaA), Alg::RS256, &header, &claims).unwrap()
}

/// An HS256 token from the manifests' batch issuer, signed with the secret in the environment.
fn batch_token() -> String {
    let now = now();
    let claims = json!({"iss": BATCH_ISSUER, "sub": "nightly-reconcile", "aud": "orders",
                        "iat": now, "exp": now + 300, "scope": "orders:write"});
    let key = SigningKey::Hmac(HMAC_SECRET.as_bytes().to_vec());
    sign(&key, Alg::HS256, &Map::new(), &claims).unwrap()
}

/// Validates `bootstrap` with `envoy --mode validate`, starts it, and checks the manifests'
/// rules with real requests: open health path, 401 without a token, both providers' tokens
/// pass with the caller's identity upstream, 403 for a missing scope.
fn validate_and_serve(what: &str, bootstrap: &str, upstream: &EchoUpstream) {
    let (ok, output) = Envoy::validate(bootstrap);
    assert!(
        ok,
        "{what}: envoy --mode validate failed:\n{}",
        svcauth_tests::tail(&output, 30)
    );
    let envoy = Envoy::start(bootstrap);
    let port = envoy.port();

    let health = http(port, "GET", "/healthz", &[]);
    assert_eq!(
        health.status, 200,
        "{what}: /healthz is open: {}",
        health.body
    );

    let missing = http(port, "GET", "/orders/42", &[]);
    assert_eq!(missing.status, 401, "{what}: no token: {}", missing.body);
    assert_eq!(
        missing.header("www-authenticate"),
        Some("Bearer realm=\"svcauth\"")
    );

    upstream.clear();
    let bearer = format!("Bearer {}", mesh_token("orders:read"));
    let ok = http(port, "GET", "/orders/42", &[("authorization", &bearer)]);
    assert_eq!(ok.status, 200, "{what}: RS256 token: {}", ok.body);
    let seen = upstream.last_request().unwrap();
    assert_eq!(seen.header("x-service-name"), Some("checkout"), "{what}");

    let bearer = format!("Bearer {}", batch_token());
    let ok = http(port, "POST", "/orders", &[("authorization", &bearer)]);
    assert_eq!(
        ok.status, 200,
        "{what}: HS256 token (host env secret): {}",
        ok.body
    );
    let seen = upstream.last_request().unwrap();
    assert_eq!(
        seen.header("x-service-name"),
        Some("nightly-reconcile"),
        "{what}"
    );

    let bearer = format!("Bearer {}", mesh_token("orders:read"));
    let forbidden = http(port, "POST", "/admin/rotate", &[("authorization", &bearer)]);
    assert_eq!(
        forbidden.status, 403,
        "{what}: missing scope: {}",
        forbidden.body
    );
    assert!(forbidden
        .header("www-authenticate")
        .unwrap_or_default()
        .contains("insufficient_scope"));
}

#[test]
fn the_envoyfilter_patch_validates_and_serves_traffic_in_envoy() {
    host_env();
    let mut value = envoyfilter_patch_value();
    let code = &mut value["typed_config"]["config"]["vm_config"]["code"]["local"]["filename"];
    assert_eq!(code, "/var/local/lib/svcauth/plugin.wasm");
    // The one substitution: where the module is on this machine.
    *code = json!(wasm_path().to_string_lossy());
    let upstream = EchoUpstream::start();
    let bootstrap = sidecar_bootstrap(&[value], upstream.port(), &json!({}), &[]);
    validate_and_serve("EnvoyFilter", &bootstrap, &upstream);
}

/// The module as the istio-agent hands it to Envoy: `plugin.wasm` from the layer of the OCI
/// image that `scripts/oci` builds from the current module.
fn module_from_oci_image(dir: &RunDir) -> PathBuf {
    let out = dir.join("oci");
    build_oci(&wasm_path(), &out);
    let layout = out.join("layout");
    let index: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let manifest: Value = serde_json::from_slice(&blob(&layout, &index["manifests"][0])).unwrap();
    let layer = gunzip(&blob(&layout, &manifest["layers"][0]));
    let entry = untar(&layer)
        .into_iter()
        .find(|e| e.name == "plugin.wasm")
        .expect("plugin.wasm in the layer");
    let path = dir.join("plugin.wasm");
    std::fs::write(&path, entry.data).unwrap();
    path
}

fn run_rendered(what: &str, doc: &Value, wasm: &Value) {
    host_env();
    let dir = RunDir::new();
    let module = module_from_oci_image(&dir);
    let ns = doc["metadata"]["namespace"].as_str().unwrap();
    let name = doc["metadata"]["name"].as_str().unwrap();
    let filter = render_wasm_filter(ns, name, wasm, &module);
    assert_eq!(
        filter["typed_config"]["config"]["failure_policy"], "FAIL_CLOSED",
        "{what}: FAIL_CLOSE renders as Envoy's FAIL_CLOSED"
    );
    assert_eq!(
        filter["typed_config"]["config"]["vm_config"]["environment_variables"]["host_env_keys"],
        json!([HMAC_ENV]),
        "{what}: the secret comes from the sidecar's environment"
    );
    let upstream = EchoUpstream::start();
    let bootstrap = sidecar_bootstrap(&[filter], upstream.port(), &json!({}), &[]);
    validate_and_serve(what, &bootstrap, &upstream);
}

#[test]
fn the_wasmplugin_as_istiod_renders_it_serves_traffic_from_the_oci_module() {
    let doc = manifest("wasmplugin.yaml");
    assert_eq!(doc["spec"]["phase"], "AUTHN");
    assert_eq!(doc["spec"]["failStrategy"], "FAIL_CLOSE");
    let spec = doc["spec"].clone();
    run_rendered("WasmPlugin", &doc, &spec);
}

#[test]
fn the_trafficextension_as_istiod_renders_it_serves_traffic_from_the_oci_module() {
    let doc = manifest("trafficextension.yaml");
    assert_eq!(doc["spec"]["phase"], "AUTHN");
    let wasm = doc["spec"]["wasm"].clone();
    run_rendered("TrafficExtension", &doc, &wasm);
}

#[test]
fn a_module_envoy_cannot_load_is_refused_not_skipped() {
    host_env();
    let dir = RunDir::new();
    let bogus = dir.join("plugin.wasm");
    std::fs::write(&bogus, b"not a wasm module").unwrap();
    let doc = manifest("wasmplugin.yaml");
    let filter = render_wasm_filter("orders", "svcauth", &doc["spec"], &bogus);
    let bootstrap = sidecar_bootstrap(&[filter], 9, &json!({}), &[]);
    let (ok, output) = Envoy::validate(&bootstrap);
    assert!(
        !ok,
        "Envoy must refuse a fail-closed plugin it cannot load:\n{output}"
    );
    assert!(
        output.contains("Plugin configured to fail closed failed to load"),
        "{}",
        svcauth_tests::tail(&output, 10)
    );
}

/// telemetry.yaml + mesh-config.yaml as istiod renders them into the inbound connection
/// manager: the OpenTelemetry tracer (OTLP/gRPC to the collector's cluster) with the svcauth
/// custom tags read from the request headers the filter sets.
#[test]
fn the_tracing_manifests_render_into_a_valid_envoy_tracing_config() {
    host_env();
    let mesh = yaml_docs(&read(&manifest_path("mesh-config.yaml")));
    let provider = &mesh[0]["spec"]["meshConfig"]["extensionProviders"][0];
    let telemetry = yaml_docs(&read(&manifest_path("telemetry.yaml")));
    let tracing = &telemetry[0]["spec"]["tracing"][0];
    assert_eq!(tracing["providers"][0]["name"], provider["name"]);
    let otel = &provider["opentelemetry"];
    assert_eq!(otel["port"], 4317, "OTLP/gRPC");

    let mut headers: Vec<&str> = Vec::new();
    let mut custom_tags = Vec::new();
    for (tag, spec) in tracing["customTags"].as_object().unwrap() {
        let header = spec["header"]["name"].as_str().unwrap();
        headers.push(header);
        custom_tags.push(json!({"tag": tag, "request_header": {
            "name": header, "default_value": spec["header"]["defaultValue"]}}));
    }
    headers.sort_unstable();
    let mut want = [TAG_DECISION, TAG_PROVIDER, TAG_REASON, TAG_SERVICE];
    want.sort_unstable();
    assert_eq!(
        headers, want,
        "telemetry.yaml tags every header svcauth sets"
    );

    let cluster = format!(
        "outbound|{}||{}",
        otel["port"],
        otel["service"].as_str().unwrap()
    );
    let hcm_tracing = json!({"tracing": {
        "random_sampling": {"value": tracing["randomSamplingPercentage"]},
        "custom_tags": custom_tags,
        "provider": {
            "name": "envoy.tracers.opentelemetry",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig",
                "grpc_service": {"envoy_grpc": {"cluster_name": cluster}, "timeout": "1s"},
                "service_name": "orders.orders"
            }
        }
    }});
    let dir = RunDir::new();
    let module = module_from_oci_image(&dir);
    let doc = manifest("wasmplugin.yaml");
    let filter = render_wasm_filter("orders", "svcauth", &doc["spec"], &module);
    let upstream = EchoUpstream::start();
    // Nothing listens on the collector's port: spans are dropped, requests are unaffected.
    let collector = loopback_cluster(&cluster, 9, true);
    let bootstrap = sidecar_bootstrap(&[filter], upstream.port(), &hcm_tracing, &[collector]);
    let (ok, output) = Envoy::validate(&bootstrap);
    assert!(ok, "{}", svcauth_tests::tail(&output, 30));
    let envoy = Envoy::start(&bootstrap);
    assert_eq!(http(envoy.port(), "GET", "/orders/1", &[]).status, 401);
    let bearer = format!("Bearer {}", mesh_token("orders:read"));
    let resp = http(
        envoy.port(),
        "GET",
        "/orders/1",
        &[("authorization", &bearer)],
    );
    assert_eq!(resp.status, 200, "{}", resp.body);
}

// ------------------------------------------------------------------ OCI image -----------------

#[test]
fn the_oci_image_is_reproducible_and_in_istio_compat_format() {
    let wasm = wasm_path();
    let module = std::fs::read(&wasm).unwrap();
    let dir = RunDir::new();
    let (a, b) = (dir.join("a"), dir.join("b"));
    let digest_a = build_oci(&wasm, &a);
    let digest_b = build_oci(&wasm, &b);
    assert_eq!(digest_a, digest_b, "same module, same manifest digest");
    let (tree_a, tree_b) = (tree(&a), tree(&b));
    assert_eq!(
        tree_a.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>(),
        tree_b.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>()
    );
    for ((path, x), (_, y)) in tree_a.iter().zip(&tree_b) {
        assert!(x == y, "{path} differs between two builds");
    }
    check_layout(&a.join("layout"), &digest_a, &module);

    // The tarball holds exactly the layout, with fixed metadata.
    let archive = std::fs::read(a.join("svcauth.oci.tar")).unwrap();
    let entries = untar(&archive);
    let layout_files: Vec<(String, Vec<u8>)> = tree(&a.join("layout"));
    let archived: Vec<(String, Vec<u8>)> = entries
        .iter()
        .filter(|e| e.typeflag == b'0')
        .map(|e| (e.name.clone(), e.data.clone()))
        .collect();
    let mut sorted = archived.clone();
    sorted.sort();
    assert_eq!(sorted, layout_files, "svcauth.oci.tar = layout/");
    for e in &entries {
        assert_eq!(
            (e.uid, e.gid, e.mtime, e.uname.as_str(), e.gname.as_str()),
            (0, 0, 0, "", ""),
            "{}",
            e.name
        );
    }

    // A different module gives a different digest.
    let other = dir.join("other.wasm");
    let mut changed = module.clone();
    changed.extend_from_slice(&[0, 0]);
    std::fs::write(&other, &changed).unwrap();
    assert_ne!(build_oci(&other, &dir.join("c")), digest_a);
}

/// index.json -> manifest -> config + one layer -> plugin.wasm == the module; media types,
/// digests and sizes; the compat-variant annotation; tar and gzip headers fixed.
fn check_layout(layout: &Path, digest: &str, module: &[u8]) {
    let oci_layout: Value =
        serde_json::from_slice(&std::fs::read(layout.join("oci-layout")).unwrap()).unwrap();
    assert_eq!(oci_layout, json!({"imageLayoutVersion": "1.0.0"}));
    let index: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["schemaVersion"], 2);
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    let manifests = index["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 1);
    let desc = &manifests[0];
    assert_eq!(
        desc["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(
        desc["digest"], digest,
        "the printed digest is the manifest's"
    );
    assert!(desc["annotations"]["org.opencontainers.image.ref.name"].is_string());

    let manifest: Value = serde_json::from_slice(&blob(layout, desc)).unwrap();
    assert_eq!(manifest["schemaVersion"], 2);
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(
        manifest["annotations"]["module.wasm.image/variant"], "compat",
        "Istio's compat variant annotation"
    );
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.oci.image.config.v1+json"
    );
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1, "a single layer");
    assert_eq!(
        layers[0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );

    let gz = blob(layout, &layers[0]);
    // gzip header: magic, deflate, no flags (so no file name), mtime 0.
    assert_eq!(&gz[..4], &[0x1f, 0x8b, 8, 0], "gzip magic, deflate, FLG=0");
    assert_eq!(&gz[4..8], &[0, 0, 0, 0], "gzip MTIME=0");
    let tar = gunzip(&gz);
    let entries = untar(&tar);
    assert_eq!(entries.len(), 1, "the layer holds plugin.wasm only");
    let e = &entries[0];
    assert_eq!(
        (e.name.as_str(), e.typeflag, e.mode, e.uid, e.gid, e.mtime),
        ("plugin.wasm", b'0', 0o644, 0, 0, 0)
    );
    assert!(e.data == module, "plugin.wasm is the built module");

    let config: Value = serde_json::from_slice(&blob(layout, &manifest["config"])).unwrap();
    assert_eq!(
        config["rootfs"],
        json!({"type": "layers", "diff_ids": [format!("sha256:{}", sha256_hex(&tar))]}),
        "config diff_ids name the uncompressed layer"
    );
    assert!(config["os"].is_string() && config["architecture"].is_string());

    // Nothing else in blobs/.
    let mut blobs: Vec<String> = std::fs::read_dir(layout.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    blobs.sort();
    let mut want: Vec<String> = [desc, &manifest["config"], &layers[0]]
        .iter()
        .map(|d| d["digest"].as_str().unwrap()["sha256:".len()..].to_string())
        .collect();
    want.sort();
    assert_eq!(blobs, want);
}
