//! Istio: the manifests in `envoy/istio/` (WasmPlugin, EnvoyFilter, TrafficExtension, tracing
//! and its span tags, path and header hardening, the global rate limit) are valid for Istio's
//! own CRD schemas (1.30.3, `tests/fixtures/istio/`), their Envoy side passes `envoy --mode
//! validate` and serves real traffic with the pluginConfig as written, and `scripts/oci` packs
//! the module into a reproducible image that Istio's fetcher can read.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod istio_support;

use std::path::{Path, PathBuf};
use std::sync::Once;
use std::time::Duration;

use istio_support::*;
use serde_json::{json, Map, Value};
use svcauth_filter::contract::names::{
    PROP_DECISION, PROP_PROVIDER, PROP_REASON, PROP_SERVICE, TAG_DECISION, TAG_PROVIDER,
    TAG_REASON, TAG_SERVICE,
};
use svcauth_filter::fixtures::{signing_key, Fixture};
use svcauth_filter::jws::Alg;
use svcauth_filter::mint::{sign, SigningKey};
use svcauth_tests::generator::hardening;
use svcauth_tests::tokens::closed_port;
use svcauth_tests::{http, now, repo_root, wasm_path, EchoUpstream, Envoy, OtlpReceiver, RunDir};

/// The manifests' HMAC secret variable, read by the plugin from the sidecar's environment
/// (`vmConfig.env` `valueFrom: HOST`), and the value the tests put there.
const HMAC_ENV: &str = "SVCAUTH_HMAC_SECRET";
const HMAC_SECRET: &str = "istio-test-hmac-secret-at-least-32-bytes-long";

/// The manifests' providers (see envoy/istio/wasmplugin.yaml).
const MESH_ISSUER: &str = "https://auth.example.internal";
const BATCH_ISSUER: &str = "https://batch.example.internal";
/// The example key in the manifests' inline JWKS: filter/fixtures/rsa-a.pem, kid "demo-rsa".
const EXAMPLE_KID: &str = "demo-rsa";

const CRD_MANIFESTS: [&str; 6] = [
    "wasmplugin.yaml",
    "envoyfilter.yaml",
    "trafficextension.yaml",
    "hardening.yaml",
    "global-ratelimit.yaml",
    "tracing-tags.yaml",
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
    let cases: [(&str, &str, &str); 7] = [
        ("wasmplugin.yaml", "/spec/failStrategy", "failStratgy"),
        (
            "hardening.yaml",
            "/spec/configPatches/0/match/listener/filterChain",
            "filterChains",
        ),
        (
            "global-ratelimit.yaml",
            "/spec/configPatches/1/match/routeConfiguration/vhost",
            "virtualHost",
        ),
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

/// tracing-tags.yaml's single patch, checked for where it applies; the connection manager
/// fields it merges.
fn tracing_tags_patch() -> Value {
    let ef = manifest("tracing-tags.yaml");
    let wp = manifest("wasmplugin.yaml");
    assert_eq!(
        ef["spec"]["workloadSelector"]["labels"], wp["spec"]["selector"]["matchLabels"],
        "the workloads that run svcauth"
    );
    let patches = ef["spec"]["configPatches"].as_array().unwrap();
    assert_eq!(patches.len(), 1);
    let p = &patches[0];
    assert_eq!(p["applyTo"], "NETWORK_FILTER");
    assert_eq!(p["match"]["context"], "SIDECAR_INBOUND");
    assert_eq!(
        p["match"]["listener"]["filterChain"]["filter"]["name"],
        "envoy.filters.network.http_connection_manager"
    );
    assert_eq!(p["patch"]["operation"], "MERGE");
    let mut fields = p["patch"]["value"]["typed_config"].clone();
    assert_eq!(fields["@type"], HCM_TYPE);
    fields.as_object_mut().unwrap().remove("@type");
    fields
}

/// mesh-config.yaml + telemetry.yaml as istiod renders them into the inbound connection
/// manager (the OpenTelemetry tracer, OTLP/gRPC to the collector's cluster, with one of the
/// tags istiod adds itself), tracing-tags.yaml merged into it, and the WasmPlugin with its
/// pluginConfig as written: the spans a real Envoy exports carry svcauth's decision, read from
/// its filter state, for allowed and denied requests; the app gets none of the tag headers.
#[test]
fn the_tracing_manifests_tag_spans_with_the_decision_in_envoy() {
    host_env();
    let mesh = yaml_docs(&read(&manifest_path("mesh-config.yaml")));
    let provider = &mesh[0]["spec"]["meshConfig"]["extensionProviders"][0];
    let telemetry = manifest("telemetry.yaml");
    assert_eq!(
        telemetry["spec"]["selector"]["matchLabels"],
        manifest("wasmplugin.yaml")["spec"]["selector"]["matchLabels"]
    );
    let tracing = &telemetry["spec"]["tracing"][0];
    assert_eq!(tracing["providers"][0]["name"], provider["name"]);
    // Header tags would only ever show their defaults: svcauth writes no decision header by
    // default.
    assert_eq!(tracing.get("customTags"), None, "telemetry.yaml customTags");
    let otel = &provider["opentelemetry"];
    assert_eq!(otel["port"], 4317, "OTLP/gRPC");

    // The tags read the four filter states svcauth sets (wasm.<property name>).
    let patch = tracing_tags_patch();
    let tags = patch["tracing"]["custom_tags"].as_array().unwrap();
    let mut states: Vec<String> = tags
        .iter()
        .map(|t| {
            let value = t["value"].as_str().unwrap();
            let inner = value
                .strip_prefix("%FILTER_STATE(wasm.")
                .and_then(|v| v.strip_suffix(":PLAIN)%"))
                .unwrap_or_else(|| panic!("not a filter state formatter: {t}"));
            assert_eq!(
                t["tag"].as_str().unwrap(),
                inner.replace("svcauth_", "svcauth."),
                "{t}"
            );
            inner.to_string()
        })
        .collect();
    states.sort_unstable();
    let mut want = [PROP_DECISION, PROP_PROVIDER, PROP_REASON, PROP_SERVICE];
    want.sort_unstable();
    assert_eq!(
        states, want,
        "tracing-tags.yaml tags every filter state svcauth sets"
    );

    let otlp = OtlpReceiver::start();
    let cluster = format!(
        "outbound|{}||{}",
        otel["port"],
        otel["service"].as_str().unwrap()
    );
    let mut hcm = json!({"tracing": {
        "random_sampling": {"value": tracing["randomSamplingPercentage"]},
        "custom_tags": [{"tag": "istio.namespace", "literal": {"value": "orders"}}],
        "provider": {
            "name": "envoy.tracers.opentelemetry",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig",
                // istiod names the collector's host as the authority (a cluster name with
                // `|` is no valid :authority, and a gRPC server refuses it).
                "grpc_service": {
                    "envoy_grpc": {"cluster_name": cluster, "authority": otel["service"]},
                    "timeout": "1s"
                },
                "service_name": "orders.orders"
            }
        }
    }});
    proto_merge(&mut hcm, &patch);
    let rendered = hcm["tracing"]["custom_tags"].as_array().unwrap();
    assert_eq!(rendered.len(), 5, "appended to istiod's tags: {rendered:?}");
    assert_eq!(
        hcm["tracing"]["provider"]["name"],
        "envoy.tracers.opentelemetry"
    );

    let dir = RunDir::new();
    let module = module_from_oci_image(&dir);
    let doc = manifest("wasmplugin.yaml");
    let filter = render_wasm_filter("orders", "svcauth", &doc["spec"], &module);
    let upstream = EchoUpstream::start();
    let collector = loopback_cluster(&cluster, otlp.port(), true);
    let text = sidecar_bootstrap(&[filter], upstream.port(), &hcm, &[collector]);
    // Export each span as it ends (the tracer's default batches 5 spans or waits 5 s).
    let mut bootstrap: Value = serde_json::from_str(&text).unwrap();
    bootstrap["layered_runtime"] = json!({"layers": [{"name": "static", "static_layer": {
        "tracing.opentelemetry.min_flush_spans": 1,
        "tracing.opentelemetry.flush_interval_ms": 200}}]});
    let bootstrap = bootstrap.to_string();
    let (ok, output) = Envoy::validate(&bootstrap);
    assert!(ok, "{}", svcauth_tests::tail(&output, 30));
    let envoy = Envoy::start(&bootstrap);

    let reader = format!("Bearer {}", mesh_token("orders:read"));
    let batch = format!("Bearer {}", batch_token());
    // (method, path, authorization, status, svcauth.decision/service/reason/provider)
    type Case<'a> = (&'a str, &'a str, Option<&'a str>, u16, [Option<&'a str>; 4]);
    let cases: [Case; 5] = [
        (
            "GET",
            "/orders/1",
            Some(&reader),
            200,
            [Some("allow"), Some("checkout"), None, Some("mesh-auth")],
        ),
        (
            "POST",
            "/orders",
            Some(&batch),
            200,
            [
                Some("allow"),
                Some("nightly-reconcile"),
                None,
                Some("batch-jobs"),
            ],
        ),
        (
            "GET",
            "/healthz",
            None,
            200,
            [Some("allow"), Some("anonymous"), None, None],
        ),
        (
            "GET",
            "/orders/1",
            None,
            401,
            [Some("deny"), None, Some("token_missing"), None],
        ),
        (
            "POST",
            "/admin/rotate",
            Some(&reader),
            403,
            [
                Some("deny"),
                Some("checkout"),
                Some("insufficient_scope"),
                Some("mesh-auth"),
            ],
        ),
    ];
    for (method, path, auth, status, want) in cases {
        upstream.clear();
        let mut headers = vec![
            ("x-svcauth-decision", "allow"),
            ("x-svcauth-service", "forged"),
        ];
        if let Some(a) = auth {
            headers.push(("authorization", a));
        }
        let resp = http(envoy.port(), method, path, &headers);
        assert_eq!(resp.status, status, "{method} {path}: {}", resp.body);
        let rid = if status == 200 {
            let seen = upstream.last_request().unwrap();
            for h in [TAG_DECISION, TAG_SERVICE, TAG_REASON, TAG_PROVIDER] {
                assert_eq!(seen.header(h), None, "{method} {path}: {h} reached the app");
            }
            seen.header("x-request-id").unwrap().to_string()
        } else {
            resp.json()["request_id"].as_str().unwrap().to_string()
        };
        let span = otlp
            .wait_for(Duration::from_secs(15), |s| {
                s.attr("guid:x-request-id") == Some(rid.as_str())
            })
            .unwrap_or_else(|| {
                panic!(
                    "{method} {path}: no span; got {:#?}; stats:\n{}",
                    otlp.spans(),
                    envoy.admin("/stats?filter=tracing|outbound").body
                )
            });
        assert_eq!(span.http_status(), Some(status), "{span:#?}");
        let got = [
            "svcauth.decision",
            "svcauth.service",
            "svcauth.reason",
            "svcauth.provider",
        ]
        .map(|t| span.attr(t));
        assert_eq!(got, want, "{method} {path}: {span:#?}");
        assert_eq!(span.attr("istio.namespace"), Some("orders"), "{span:#?}");
    }
}

// ------------------------------------------------------------------ hardening -----------------

const HCM_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";

/// The pointers of [`hardening`] that `hcm` does not set to the hardened value.
fn hardening_gaps(hcm: &Value) -> Vec<&'static str> {
    hardening()
        .into_iter()
        .filter(|(pointer, want)| hcm.pointer(pointer) != Some(want))
        .map(|(pointer, _)| pointer)
        .collect()
}

/// mesh-config.yaml's path normalization, as istiod writes it into every connection manager.
fn mesh_path_normalization() -> Value {
    let mesh = yaml_docs(&read(&manifest_path("mesh-config.yaml")));
    let normalization = mesh[0]["spec"]["meshConfig"]["pathNormalization"]["normalization"]
        .as_str()
        .expect("mesh-config.yaml sets meshConfig.pathNormalization.normalization");
    assert_eq!(
        normalization, "DECODE_AND_MERGE_SLASHES",
        "the one normalization that covers escaped slashes"
    );
    istiod_path_normalization(normalization)
}

/// hardening.yaml's single patch, checked for where it applies; the connection manager fields
/// it merges.
fn hardening_patch() -> Value {
    let ef = manifest("hardening.yaml");
    let wp = manifest("wasmplugin.yaml");
    assert_eq!(
        ef["spec"]["workloadSelector"]["labels"], wp["spec"]["selector"]["matchLabels"],
        "the workloads that run svcauth"
    );
    let patches = ef["spec"]["configPatches"].as_array().unwrap();
    assert_eq!(patches.len(), 1);
    let p = &patches[0];
    assert_eq!(p["applyTo"], "NETWORK_FILTER");
    assert_eq!(p["match"]["context"], "SIDECAR_INBOUND");
    assert_eq!(
        p["match"]["listener"]["filterChain"]["filter"]["name"],
        "envoy.filters.network.http_connection_manager"
    );
    assert_eq!(p["patch"]["operation"], "MERGE");
    let mut fields = p["patch"]["value"]["typed_config"].clone();
    assert_eq!(fields["@type"], HCM_TYPE);
    fields.as_object_mut().unwrap().remove("@type");
    fields
}

/// The inbound connection manager's fields on a pod that runs svcauth: what istiod renders
/// from the mesh config (plus an idle timeout, which istiod sets in the same
/// common_http_protocol_options when the proxy has one), then hardening.yaml merged in if
/// `with_envoyfilter`.
fn sidecar_hcm_fields(with_envoyfilter: bool) -> Value {
    let mut hcm = mesh_path_normalization();
    hcm["common_http_protocol_options"] = json!({"idle_timeout": "3600s"});
    if with_envoyfilter {
        proto_merge(&mut hcm, &hardening_patch());
    }
    hcm
}

#[test]
fn the_mesh_config_covers_paths_and_hardening_yaml_adds_rejection_and_underscores() {
    // The mesh config alone: normalisation and merged slashes, escaped slashes decoded (not
    // rejected), header names with underscores untouched. Istio has no mesh option for those.
    let mesh_only = sidecar_hcm_fields(false);
    assert_eq!(
        hardening_gaps(&mesh_only),
        [
            "/path_with_escaped_slashes_action",
            "/common_http_protocol_options/headers_with_underscores_action"
        ]
    );
    assert_eq!(
        mesh_only["path_with_escaped_slashes_action"],
        "UNESCAPE_AND_FORWARD"
    );
    // With hardening.yaml: all four, and the merge keeps what istiod set beside them.
    let hardened = sidecar_hcm_fields(true);
    assert_eq!(hardening_gaps(&hardened), Vec::<&str>::new());
    assert_eq!(
        hardened["common_http_protocol_options"]["idle_timeout"],
        "3600s"
    );
    // The patch alone sets all four, so the workloads are hardened whatever the mesh config.
    let mut alone = hardening_patch();
    assert_eq!(hardening_gaps(&alone), Vec::<&str>::new());
    alone.as_object_mut().unwrap().clear();
    assert_eq!(hardening_gaps(&alone).len(), 4, "the check is not vacuous");
}

/// Real requests through a sidecar-shaped Envoy with the WasmPlugin as istiod renders it: first
/// with the mesh config's normalization only, then with hardening.yaml merged in.
#[test]
fn a_sidecar_with_the_mesh_config_and_hardening_yaml_in_envoy() {
    host_env();
    let wp = manifest("wasmplugin.yaml");
    let filter = render_wasm_filter("orders", "svcauth", &wp["spec"], &wasm_path());
    let bearer = format!("Bearer {}", mesh_token("orders:read"));
    let auth: &[(&str, &str)] = &[("authorization", &bearer)];
    for hardened in [false, true] {
        let what = if hardened {
            "mesh config + hardening.yaml"
        } else {
            "mesh config only"
        };
        let upstream = EchoUpstream::start();
        let bootstrap = sidecar_bootstrap(
            std::slice::from_ref(&filter),
            upstream.port(),
            &sidecar_hcm_fields(hardened),
            &[],
        );
        validate_and_serve(what, &bootstrap, &upstream);
        let envoy = Envoy::start(&bootstrap);
        let port = envoy.port();

        // Both: Envoy canonicalises before svcauth matches, and the upstream gets that path.
        for path in ["//orders//42", "/orders/./42", "/orders/x/../42"] {
            upstream.clear();
            let resp = http(port, "GET", path, auth);
            assert_eq!(resp.status, 200, "{what}: {path}: {}", resp.body);
            assert_eq!(
                upstream.last_request().unwrap().path,
                "/orders/42",
                "{what}: {path}"
            );
        }
        // An open prefix cannot carry a protected path: Envoy resolves it first, svcauth asks
        // for the admin scope.
        let resp = http(port, "POST", "/healthz/../admin/rotate", &[]);
        assert_eq!(resp.status, 401, "{what}: {}", resp.body);

        upstream.clear();
        let escaped = http(port, "GET", "/orders%2F42", auth);
        let underscore = http(port, "GET", "/orders/42", &[auth[0], ("x_tenant_id", "7")]);
        if hardened {
            // Envoy refuses both before any filter runs.
            assert_eq!(escaped.status, 400, "{what}: %2F: {}", escaped.body);
            assert_eq!(
                underscore.status, 400,
                "{what}: x_tenant_id: {}",
                underscore.body
            );
            assert_eq!(
                upstream.request_count(),
                0,
                "{what}: nothing reached the app"
            );
        } else {
            // The mesh config decodes %2F and forwards the decoded path (the path svcauth
            // matched); header names with underscores reach the app.
            assert_eq!(escaped.status, 200, "{what}: %2F: {}", escaped.body);
            assert_eq!(upstream.requests()[0].path, "/orders/42", "{what}");
            assert_eq!(underscore.status, 200, "{what}: {}", underscore.body);
            assert_eq!(
                upstream.last_request().unwrap().header("x_tenant_id"),
                Some("7"),
                "{what}"
            );
        }
    }
}

// ------------------------------------------------------------------ global rate limit ---------

/// A YAML file of the repository, as JSON.
fn repo_yaml(relative: &str) -> Value {
    let docs = yaml_docs(&read(&repo_root().join(relative)));
    assert_eq!(docs.len(), 1, "{relative}: one document");
    docs.into_iter().next().unwrap()
}

#[test]
fn the_global_ratelimit_envoyfilter_runs_after_svcauth_and_fails_closed_in_envoy() {
    host_env();
    let ef = manifest("global-ratelimit.yaml");
    let wp = manifest("wasmplugin.yaml");
    assert_eq!(
        ef["spec"]["workloadSelector"]["labels"],
        wp["spec"]["selector"]["matchLabels"]
    );
    let patches = ef["spec"]["configPatches"].as_array().unwrap();
    assert_eq!(patches.len(), 2);

    // 1. The filter, just before the router: after every filter istiod puts before it,
    //    svcauth's WasmPlugin (phase AUTHN) included.
    let filter_patch = &patches[0];
    assert_eq!(filter_patch["applyTo"], "HTTP_FILTER");
    assert_eq!(filter_patch["match"]["context"], "SIDECAR_INBOUND");
    assert_eq!(
        filter_patch["match"]["listener"]["filterChain"]["filter"]["subFilter"]["name"],
        "envoy.filters.http.router"
    );
    assert_eq!(filter_patch["patch"]["operation"], "INSERT_BEFORE");
    let ratelimit = filter_patch["patch"]["value"].clone();
    assert_eq!(ratelimit["name"], "envoy.filters.http.ratelimit");
    let rl = ratelimit["typed_config"].clone();
    assert_eq!(rl["failure_mode_deny"], true);
    // The same domain and descriptors as the plain Envoy example and its service config.
    let example = repo_yaml("envoy/examples/global-ratelimit.yaml");
    let service = repo_yaml("envoy/examples/global-ratelimit-service.yaml");
    assert_eq!(rl["domain"], service["domain"]);
    let example_route = &example["static_resources"]["listeners"][0]["filter_chains"][0]["filters"]
        [0]["typed_config"]["route_config"]["virtual_hosts"][0]["routes"][0];

    // 2. The descriptor on every inbound route of the service's port.
    let route_patch = &patches[1];
    assert_eq!(route_patch["applyTo"], "HTTP_ROUTE");
    assert_eq!(route_patch["match"]["context"], "SIDECAR_INBOUND");
    let vhost = &route_patch["match"]["routeConfiguration"]["vhost"];
    assert_eq!(vhost["route"]["action"], "ANY");
    assert_eq!(route_patch["patch"]["operation"], "MERGE");
    assert_eq!(
        route_patch["patch"]["value"]["route"]["rate_limits"],
        example_route["route"]["rate_limits"]
    );

    // Rendered: the sidecar's inbound listener with the WasmPlugin as istiod renders it, the
    // rate limit filter, the hardened connection manager, the route patch merged into the
    // routes of the matching virtual host, and the outbound cluster of the rate limit service
    // pointing at a port nothing listens on.
    let cluster = rl["rate_limit_service"]["grpc_service"]["envoy_grpc"]["cluster_name"]
        .as_str()
        .unwrap();
    assert!(cluster.starts_with("outbound|8081||"), "{cluster}");
    let svcauth = render_wasm_filter("orders", "svcauth", &wp["spec"], &wasm_path());
    let upstream = EchoUpstream::start();
    let text = sidecar_bootstrap(
        &[svcauth, ratelimit],
        upstream.port(),
        &sidecar_hcm_fields(true),
        &[loopback_cluster(cluster, closed_port(), true)],
    );
    let mut bootstrap: Value = serde_json::from_str(&text).unwrap();
    let mut patched = 0;
    let hcm = &mut bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
        ["typed_config"];
    for vh in hcm["route_config"]["virtual_hosts"].as_array_mut().unwrap() {
        if vh["name"] != vhost["name"] {
            continue;
        }
        for route in vh["routes"].as_array_mut().unwrap() {
            proto_merge(route, &route_patch["patch"]["value"]);
            patched += 1;
        }
    }
    assert_eq!(
        patched, 1,
        "the patch matches the sidecar's inbound virtual host"
    );
    let bootstrap = bootstrap.to_string();
    let (ok, output) = Envoy::validate(&bootstrap);
    assert!(ok, "{}", svcauth_tests::tail(&output, 30));

    let envoy = Envoy::start(&bootstrap);
    let port = envoy.port();
    let health = http(port, "GET", "/healthz", &[("x-service-name", "checkout")]);
    assert_eq!(
        health.status, 200,
        "no verified caller, no call: {}",
        health.body
    );
    let missing = http(port, "GET", "/orders/42", &[]);
    assert_eq!(
        missing.status, 401,
        "svcauth answers first: {}",
        missing.body
    );
    let bearer = format!("Bearer {}", mesh_token("orders:read"));
    upstream.clear();
    let limited = http(port, "GET", "/orders/42", &[("authorization", &bearer)]);
    assert_eq!(
        limited.status, 500,
        "the rate limit service is down: refused, not passed unlimited: {}",
        limited.body
    );
    assert_eq!(upstream.request_count(), 0);
    assert_eq!(envoy.stat("cluster.upstream.ratelimit.error"), Some(1));
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
