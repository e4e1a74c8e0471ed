//! Helpers for tests/istio.rs: the Istio manifests in `envoy/istio/`, checked against Istio's own
//! CRD schemas (structural-schema semantics), rendered into Envoy config the way istiod and the
//! istio-agent render them, and the OCI image built by `scripts/oci`.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Deserialize as _;
use serde_json::{json, Map, Value};
use sha2::{Digest as _, Sha256};
use svcauth_tests::repo_root;

// ------------------------------------------------------------------ files ---------------------

/// `envoy/istio/<name>`.
pub fn manifest_path(name: &str) -> PathBuf {
    repo_root().join("envoy/istio").join(name)
}

/// `tests/fixtures/istio/<name>`.
pub fn fixture_path(name: &str) -> PathBuf {
    repo_root().join("tests/fixtures/istio").join(name)
}

pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Every document of a (multi-document) YAML text, as JSON values; empty documents skipped.
pub fn yaml_docs(text: &str) -> Vec<Value> {
    serde_norway::Deserializer::from_str(text)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("bad YAML: {e}")))
        .filter(|v| !v.is_null())
        .collect()
}

/// The single document of manifest `name`.
pub fn manifest(name: &str) -> Value {
    let docs = yaml_docs(&read(&manifest_path(name)));
    assert_eq!(docs.len(), 1, "{name}: expected one document");
    docs.into_iter().next().unwrap()
}

pub fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

// ------------------------------------------------------------------ CRD schemas ---------------

/// One served version of a CRD: what it validates and its schema made structural.
pub struct Crd {
    pub api_version: String,
    pub kind: String,
    /// The openAPIV3Schema with unknown fields turned into errors (see [`structural`]), plus
    /// `apiVersion`/`kind`/`metadata` as the API server checks them.
    pub schema: Value,
}

/// The CRDs in `tests/fixtures/istio/` (WasmPlugin, EnvoyFilter, TrafficExtension).
pub fn crds() -> Vec<Crd> {
    let mut out = Vec::new();
    for file in ["istio-crds.yaml", "istio-trafficextension-crd.yaml"] {
        for doc in yaml_docs(&read(&fixture_path(file))) {
            assert_eq!(doc["kind"], "CustomResourceDefinition", "{file}");
            let group = doc["spec"]["group"].as_str().unwrap();
            let kind = doc["spec"]["names"]["kind"].as_str().unwrap();
            for version in doc["spec"]["versions"].as_array().unwrap() {
                if version["served"] != true {
                    continue;
                }
                let name = version["name"].as_str().unwrap();
                let api_version = format!("{group}/{name}");
                let mut schema = version["schema"]["openAPIV3Schema"].clone();
                structural(&mut schema);
                let props = schema["properties"].as_object_mut().unwrap();
                props.insert(
                    "apiVersion".into(),
                    json!({"type": "string", "enum": [api_version]}),
                );
                props.insert("kind".into(), json!({"type": "string", "enum": [kind]}));
                props.insert("metadata".into(), object_meta_schema());
                schema["required"] = json!(["apiVersion", "kind", "metadata", "spec"]);
                out.push(Crd {
                    api_version,
                    kind: kind.to_string(),
                    schema,
                });
            }
        }
    }
    out
}

/// The parts of ObjectMeta a manifest in a repository sets.
fn object_meta_schema() -> Value {
    let dns_label = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";
    let dns_subdomain = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
    json!({
        "type": "object",
        "required": ["name"],
        "additionalProperties": false,
        "properties": {
            "name": {"type": "string", "maxLength": 253, "pattern": dns_subdomain},
            "namespace": {"type": "string", "maxLength": 63, "pattern": dns_label},
            "labels": {"type": "object", "additionalProperties": {"type": "string", "maxLength": 63}},
            "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
        }
    })
}

/// Structural-schema semantics on a plain JSON schema: Kubernetes drops (and with strict field
/// validation, `kubectl apply`'s default since 1.27, rejects) any field a schema with
/// `properties` does not list, unless `x-kubernetes-preserve-unknown-fields` is set; so add
/// `additionalProperties: false` there. `nullable: true` becomes a `null` type.
pub fn structural(schema: &mut Value) {
    let Some(obj) = schema.as_object_mut() else {
        return;
    };
    let preserve = obj.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    if obj.contains_key("properties") && !preserve && !obj.contains_key("additionalProperties") {
        obj.insert("additionalProperties".into(), Value::Bool(false));
    }
    if obj.get("nullable") == Some(&Value::Bool(true)) {
        if let Some(Value::String(t)) = obj.get("type").cloned() {
            obj.insert("type".into(), json!([t, "null"]));
        }
    }
    for (key, child) in obj.iter_mut() {
        match key.as_str() {
            "properties" => {
                if let Some(props) = child.as_object_mut() {
                    props.values_mut().for_each(structural);
                }
            }
            "items" | "additionalProperties" | "not" => structural(child),
            "oneOf" | "anyOf" | "allOf" => {
                if let Some(list) = child.as_array_mut() {
                    list.iter_mut().for_each(structural);
                }
            }
            _ => {}
        }
    }
}

/// The Python in `.venv` with the `jsonschema` package (scripts/setup installs it).
fn python() -> PathBuf {
    let py = repo_root().join(".venv/bin/python");
    assert!(
        py.is_file(),
        "no {}: run scripts/setup (it installs the jsonschema validator)",
        py.display()
    );
    py
}

/// Validates each document against `schema` with python-jsonschema (Draft 4, the dialect the
/// OpenAPI v3 schemas of CRDs derive from); the error messages per document.
const VALIDATE_PY: &str = r#"
import json, sys
from jsonschema import Draft4Validator
req = json.load(sys.stdin)
Draft4Validator.check_schema(req["schema"])
v = Draft4Validator(req["schema"])
out = []
for doc in req["docs"]:
    errs = sorted(v.iter_errors(doc), key=lambda e: [str(p) for p in e.absolute_path])
    out.append(["/".join(str(p) for p in e.absolute_path) + ": " + e.message for e in errs])
json.dump(out, sys.stdout)
"#;

fn json_schema_errors(schema: &Value, docs: &[Value]) -> Vec<Vec<String>> {
    let mut child = Command::new(python())
        .arg("-c")
        .arg(VALIDATE_PY)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run .venv/bin/python");
    let input = json!({"schema": schema, "docs": docs}).to_string();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "jsonschema failed (run scripts/setup to install it): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Every error of a Kubernetes manifest against the CRD its apiVersion/kind names: the JSON
/// schema (structural) and the `x-kubernetes-validations` CEL rules on the fields it sets.
/// Empty when the API server would accept it.
pub fn validate(doc: &Value) -> Vec<String> {
    validate_all(std::slice::from_ref(doc))
        .into_iter()
        .next()
        .unwrap()
}

/// [`validate`] for several documents (one validator run per CRD).
pub fn validate_all(docs: &[Value]) -> Vec<Vec<String>> {
    let crds = crds();
    let mut results = vec![Vec::new(); docs.len()];
    for crd in &crds {
        let idx: Vec<usize> = (0..docs.len())
            .filter(|i| docs[*i]["apiVersion"] == crd.api_version && docs[*i]["kind"] == crd.kind)
            .collect();
        if idx.is_empty() {
            continue;
        }
        let mine: Vec<Value> = idx.iter().map(|i| docs[*i].clone()).collect();
        for (i, errs) in idx.iter().zip(json_schema_errors(&crd.schema, &mine)) {
            results[*i].extend(errs);
            cel(&crd.schema, &docs[*i], "", &mut results[*i]);
        }
    }
    for (doc, errs) in docs.iter().zip(results.iter_mut()) {
        let known = crds
            .iter()
            .any(|c| doc["apiVersion"] == c.api_version && doc["kind"] == c.kind);
        if !known {
            errs.push(format!(
                "no CRD for apiVersion {} kind {} in tests/fixtures/istio",
                doc["apiVersion"], doc["kind"]
            ));
        }
    }
    results
}

// ------------------------------------------------------------------ CEL rules -----------------

/// Walks `value` along `schema` and evaluates every `x-kubernetes-validations` rule on the
/// fields present. The rules of Istio's CRDs are a small fixed set; each is implemented here by
/// its (whitespace-normalised) text. A rule not in the set is reported as an error, so a newer
/// CRD with new rules cannot pass silently.
fn cel(schema: &Value, value: &Value, path: &str, errors: &mut Vec<String>) {
    if let Some(rules) = schema["x-kubernetes-validations"].as_array() {
        for rule in rules {
            let text = rule["rule"].as_str().unwrap_or_default();
            let message = rule["message"].as_str().unwrap_or("failed rule");
            match eval_rule(text, value) {
                Ok(true) => {}
                Ok(false) => errors.push(format!("{path}: {message} (rule {text:?})")),
                Err(e) => errors.push(format!("{path}: {e}")),
            }
        }
    }
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                let sub = format!("{path}/{key}");
                if let Some(s) = schema["properties"].get(key) {
                    cel(s, child, &sub, errors);
                } else if schema["additionalProperties"].is_object() {
                    cel(&schema["additionalProperties"], child, &sub, errors);
                }
            }
        }
        Value::Array(items) if schema["items"].is_object() => {
            for (i, item) in items.iter().enumerate() {
                cel(&schema["items"], item, &format!("{path}/{i}"), errors);
            }
        }
        _ => {}
    }
}

fn eval_rule(rule: &str, v: &Value) -> Result<bool, String> {
    let r = rule.split_whitespace().collect::<Vec<_>>().join(" ");
    let has = |name: &str| v.get(name).is_some();
    let s = v.as_str();
    Ok(match r.as_str() {
        r#"!self.contains("*")"# => !s.unwrap_or_default().contains('*'),
        "self.size() == 0" => s.unwrap_or_default().is_empty(),
        r#"self.all(key, !key.contains("*"))"# => keys(v).all(|k| !k.contains('*')),
        "self.all(key, key.size() != 0)" => keys(v).all(|k| !k.is_empty()),
        "0 < self && self <= 65535" => v.as_u64().is_some_and(|n| (1..=65535).contains(&n)),
        r#"(has(self.valueFrom) ? self.valueFrom : "") != "HOST" || !has(self.value)"# => {
            v["valueFrom"] != "HOST" || !has("value")
        }
        "has(self.wasm) != has(self.lua)" => has("wasm") != has("lua"),
        r#"has(self.context) ? ((self.context == "WAYPOINT") ? has(self.waypoint) : !has(self.waypoint)) : !has(self.waypoint)"# => {
            (v["context"] == "WAYPOINT") == has("waypoint")
        }
        // "only one of targetRefs or selector can be set" and its siblings.
        _ if r.ends_with("<= 1") && r.contains("? 1 : 0)") => {
            has_fields(&r).iter().filter(|f| has(f)).count() <= 1
        }
        // The url rule: a scheme, if any, must be http, https, oci or file.
        _ if r.starts_with("isURL(self) ?") => {
            let url = s.unwrap_or_default();
            match url.split_once("://") {
                Some((scheme, rest)) => {
                    ["http", "https", "oci", "file"].contains(&scheme) && !rest.is_empty()
                }
                None => !url.is_empty() && !url.contains(char::is_whitespace),
            }
        }
        _ => return Err(format!("CEL rule not implemented by the test: {rule:?}")),
    })
}

fn keys(v: &Value) -> impl Iterator<Item = &String> {
    v.as_object().into_iter().flat_map(|m| m.keys())
}

/// The `X` of every `has(self.X)` in a rule.
fn has_fields(rule: &str) -> Vec<String> {
    rule.split("has(self.")
        .skip(1)
        .filter_map(|rest| rest.split(')').next())
        .map(str::to_string)
        .collect()
}

// ------------------------------------------------------------------ rendering -----------------

/// A WasmPlugin spec (or a TrafficExtension's `wasm`) as the HTTP filter Envoy ends up running:
/// what istiod builds (pilot/pkg/model/extensions.go: name `<namespace>.<name>`, root_id from
/// `pluginName`, `pluginConfig` as JSON in a StringValue, V8, `vmConfig.env` INLINE entries as
/// `key_values` and HOST entries as `host_env_keys`, `failStrategy` as `failure_policy`) after
/// the istio-agent has fetched the module and pointed `code` at its local copy (`module`).
pub fn render_wasm_filter(namespace: &str, name: &str, wasm: &Value, module: &Path) -> Value {
    let resource = format!("{namespace}.{name}");
    let mut config = Map::new();
    config.insert("name".into(), json!(resource));
    if let Some(root) = wasm["pluginName"].as_str() {
        config.insert("root_id".into(), json!(root));
    }
    if let Some(pc) = wasm["pluginConfig"].as_object().filter(|m| !m.is_empty()) {
        config.insert(
            "configuration".into(),
            json!({
                "@type": "type.googleapis.com/google.protobuf.StringValue",
                "value": Value::Object(pc.clone()).to_string(),
            }),
        );
    }
    let mut key_values = Map::new();
    let mut host_env_keys = Vec::new();
    for env in wasm["vmConfig"]["env"].as_array().into_iter().flatten() {
        let var = env["name"].as_str().unwrap().to_string();
        if env["valueFrom"] == "HOST" {
            host_env_keys.push(json!(var));
        } else {
            key_values.insert(var, env["value"].clone());
        }
    }
    let mut env = Map::new();
    env.insert("key_values".into(), Value::Object(key_values));
    if !host_env_keys.is_empty() {
        env.insert("host_env_keys".into(), Value::Array(host_env_keys));
    }
    config.insert(
        "vm_config".into(),
        json!({
            "runtime": "envoy.wasm.runtime.v8",
            "code": {"local": {"filename": module.to_string_lossy()}},
            "environment_variables": Value::Object(env),
        }),
    );
    let policy = match wasm["failStrategy"].as_str() {
        Some("FAIL_OPEN") => "FAIL_OPEN",
        Some("FAIL_RELOAD") => "FAIL_RELOAD",
        _ => "FAIL_CLOSED",
    };
    config.insert("failure_policy".into(), json!(policy));
    json!({
        "name": resource,
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": Value::Object(config),
        }
    })
}

/// The connection manager fields istiod sets from the mesh config's
/// `pathNormalization.normalization` (pilot/pkg/networking/core/listener_builder.go,
/// `buildHTTPConnectionManager`): `path_with_escaped_slashes_action` is
/// `KEEP_UNCHANGED` unless `DECODE_AND_MERGE_SLASHES` asks to decode.
pub fn istiod_path_normalization(normalization: &str) -> Value {
    let (normalize, merge, escaped) = match normalization {
        "NONE" => (false, false, "KEEP_UNCHANGED"),
        "BASE" | "DEFAULT" | "" => (true, false, "KEEP_UNCHANGED"),
        "MERGE_SLASHES" => (true, true, "KEEP_UNCHANGED"),
        "DECODE_AND_MERGE_SLASHES" => (true, true, "UNESCAPE_AND_FORWARD"),
        other => panic!("not an Istio path normalization: {other:?}"),
    };
    json!({
        "normalize_path": normalize,
        "merge_slashes": merge,
        "path_with_escaped_slashes_action": escaped,
    })
}

/// An EnvoyFilter `MERGE` patch as istiod applies it (protobuf merge semantics on the JSON
/// form): messages merge field by field, repeated fields append, scalars and enums set in the
/// patch replace the target's.
pub fn proto_merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (key, value) in p {
                match t.get_mut(key) {
                    Some(existing) => proto_merge(existing, value),
                    None => {
                        t.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        (Value::Array(t), Value::Array(p)) => t.extend(p.iter().cloned()),
        (t, p) => *t = p.clone(),
    }
}

/// An Envoy bootstrap (JSON, which Envoy reads as YAML) shaped like a sidecar's inbound
/// listener: one HTTP connection manager whose filters are `filters` then the router, routing
/// everything to the `upstream` cluster at 127.0.0.1:`upstream_port`. `hcm_extra` fields are
/// merged into the connection manager; `clusters` are added.
pub fn sidecar_bootstrap(
    filters: &[Value],
    upstream_port: u16,
    hcm_extra: &Value,
    clusters: &[Value],
) -> String {
    let mut http_filters = filters.to_vec();
    http_filters.push(json!({
        "name": "envoy.filters.http.router",
        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}
    }));
    let mut hcm = json!({
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "inbound_0.0.0.0_8080",
        "codec_type": "AUTO",
        "generate_request_id": true,
        "route_config": {
            "name": "inbound|8080||",
            "virtual_hosts": [{
                "name": "inbound|http|8080",
                "domains": ["*"],
                "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "upstream", "timeout": "10s"}}]
            }]
        },
        "http_filters": http_filters,
    });
    if let (Some(h), Some(extra)) = (hcm.as_object_mut(), hcm_extra.as_object()) {
        h.extend(extra.clone());
    }
    let mut all_clusters = vec![loopback_cluster("upstream", upstream_port, false)];
    all_clusters.extend(clusters.iter().cloned());
    let loopback =
        |port: u16| json!({"socket_address": {"address": "127.0.0.1", "port_value": port}});
    json!({
        "admin": {"address": loopback(0)},
        "static_resources": {
            "listeners": [{
                "name": "main",
                "address": loopback(0),
                "filter_chains": [{"filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": hcm,
                }]}]
            }],
            "clusters": all_clusters,
        }
    })
    .to_string()
}

/// A STATIC cluster at 127.0.0.1:`port` (HTTP/2 for gRPC peers).
pub fn loopback_cluster(name: &str, port: u16, http2: bool) -> Value {
    let mut c = json!({
        "name": name,
        "type": "STATIC",
        "connect_timeout": "2s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}]
        }
    });
    if http2 {
        c["typed_extension_protocol_options"] = json!({
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}}
            }
        });
    }
    c
}

// ------------------------------------------------------------------ OCI image -----------------

/// Runs `scripts/oci --wasm <wasm> --out <out>`; returns the digest it prints.
pub fn build_oci(wasm: &Path, out: &Path) -> String {
    let output = Command::new(repo_root().join("scripts/oci"))
        .arg("--wasm")
        .arg(wasm)
        .arg("--out")
        .arg(out)
        .stdin(Stdio::null())
        .output()
        .expect("run scripts/oci (needs python3)");
    assert!(
        output.status.success(),
        "scripts/oci failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_string()
}

/// Every regular file under `dir`, as (relative path, bytes), sorted.
pub fn tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(base, &path, out);
            } else {
                let rel = path
                    .strip_prefix(base)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                out.push((rel, std::fs::read(&path).unwrap()));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// A blob of an OCI layout, checked against its descriptor (digest and size).
pub fn blob(layout: &Path, descriptor: &Value) -> Vec<u8> {
    let digest = descriptor["digest"].as_str().expect("descriptor digest");
    let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
    let data = std::fs::read(layout.join("blobs/sha256").join(hex))
        .unwrap_or_else(|e| panic!("blob {digest}: {e}"));
    assert_eq!(sha256_hex(&data), hex, "blob content matches its digest");
    assert_eq!(
        descriptor["size"].as_u64(),
        Some(data.len() as u64),
        "descriptor size of {digest}"
    );
    data
}

/// One entry of a tar archive.
#[derive(Debug)]
pub struct TarEntry {
    pub name: String,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
    pub typeflag: u8,
    pub uname: String,
    pub gname: String,
    pub data: Vec<u8>,
}

/// Parses a ustar archive (what scripts/oci writes): 512-byte headers, octal fields, two zero
/// blocks at the end.
pub fn untar(data: &[u8]) -> Vec<TarEntry> {
    let field = |h: &[u8], at: usize, len: usize| -> String {
        let raw = &h[at..at + len];
        let end = raw.iter().position(|b| *b == 0).unwrap_or(len);
        String::from_utf8_lossy(&raw[..end]).trim().to_string()
    };
    let octal = |s: String| u64::from_str_radix(&s, 8).unwrap_or_else(|_| panic!("octal {s:?}"));
    let mut entries = Vec::new();
    let mut at = 0;
    while at + 512 <= data.len() {
        let h = &data[at..at + 512];
        if h.iter().all(|b| *b == 0) {
            break;
        }
        let stored: u64 = octal(field(h, 148, 8));
        let sum: u64 = h
            .iter()
            .enumerate()
            .map(|(i, b)| {
                if (148..156).contains(&i) {
                    32
                } else {
                    u64::from(*b)
                }
            })
            .sum();
        assert_eq!(stored, sum, "tar header checksum");
        assert_eq!(&h[257..263], b"ustar\0", "ustar magic");
        let prefix = field(h, 345, 155);
        let name = field(h, 0, 100);
        let size = octal(field(h, 124, 12)) as usize;
        let start = at + 512;
        entries.push(TarEntry {
            name: if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            },
            mode: octal(field(h, 100, 8)) as u32,
            uid: octal(field(h, 108, 8)),
            gid: octal(field(h, 116, 8)),
            mtime: octal(field(h, 136, 12)),
            typeflag: h[156],
            uname: field(h, 265, 32),
            gname: field(h, 297, 32),
            data: data[start..start + size].to_vec(),
        });
        at = start + size.div_ceil(512) * 512;
    }
    entries
}

/// Decompresses a gzip stream.
pub fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data)
        .read_to_end(&mut out)
        .expect("valid gzip");
    out
}
