//! Envoy v3 static bootstraps for the tests: one listener with the svcauth wasm filter in front
//! of the router, one `upstream` cluster, admin on an ephemeral loopback port.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// What varies between test bootstraps. Build with [`Opts::new`] and the chained setters.
#[derive(Debug, Clone)]
pub struct Opts {
    /// Port of the `upstream` cluster (127.0.0.1), usually an [`crate::EchoUpstream`].
    pub upstream_port: u16,
    /// Whether the `upstream` cluster speaks HTTP/2 (a gRPC upstream). Default false (HTTP/1.1).
    pub upstream_http2: bool,
    /// `vm_config.environment_variables.key_values` (e.g. HMAC secrets).
    pub env: BTreeMap<String, String>,
    /// Envoy worker threads (`--concurrency`); used by [`crate::Envoy::start_with`]. Default 1.
    pub concurrency: u32,
    /// Extra clusters, each a YAML mapping (`name: jwks\ntype: STATIC\n...`), without `- `.
    pub clusters: Vec<String>,
    /// The body of the connection manager's `tracing:` section, as a YAML mapping.
    pub tracing: Option<String>,
    /// Extra http_connection_manager fields, as a YAML mapping (e.g. `request_headers_to_add`).
    pub hcm_extra: Option<String>,
    /// Extra fields of the single route (`match` prefix `/`), as a YAML mapping
    /// (e.g. `request_headers_to_remove`, `typed_per_filter_config`).
    pub route_extra: Option<String>,
    /// The wasm filter's `fail_open`. Default false (fail closed).
    pub fail_open: bool,
    /// Runtime keys, as a static `layered_runtime` layer (e.g. the OpenTelemetry tracer's
    /// `tracing.opentelemetry.min_flush_spans`).
    pub runtime: BTreeMap<String, String>,
    /// Run the fallback build ([`crate::wasm_vmcrypto_path`]) instead of the default one.
    /// Default false.
    pub vm_crypto: bool,
}

impl Opts {
    /// Defaults: no env, concurrency 1, no extra clusters, no tracing, fail closed.
    pub fn new(upstream_port: u16) -> Self {
        Opts {
            upstream_port,
            upstream_http2: false,
            env: BTreeMap::new(),
            concurrency: 1,
            clusters: Vec::new(),
            tracing: None,
            hcm_extra: None,
            route_extra: None,
            fail_open: false,
            runtime: BTreeMap::new(),
            vm_crypto: false,
        }
    }

    /// Makes the `upstream` cluster HTTP/2 (e.g. a [`crate::grpc::GrpcUpstream`]).
    pub fn upstream_http2(mut self, yes: bool) -> Self {
        self.upstream_http2 = yes;
        self
    }

    /// Adds a plugin VM environment variable.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.insert(key.to_string(), value.to_string());
        self
    }

    /// Sets the number of Envoy worker threads.
    pub fn concurrency(mut self, n: u32) -> Self {
        self.concurrency = n;
        self
    }

    /// Adds a cluster (a YAML mapping, see [`Opts::clusters`]).
    pub fn cluster(mut self, yaml: &str) -> Self {
        self.clusters.push(yaml.to_string());
        self
    }

    /// Adds a plain HTTP/1.1 STATIC cluster `name` at 127.0.0.1:`port`.
    pub fn loopback_cluster(self, name: &str, port: u16) -> Self {
        let yaml = loopback_cluster_yaml(name, port, false);
        self.cluster(&yaml)
    }

    /// Adds an HTTP/2 (gRPC) STATIC cluster `name` at 127.0.0.1:`port`, e.g. an OTLP receiver.
    pub fn grpc_cluster(self, name: &str, port: u16) -> Self {
        let yaml = loopback_cluster_yaml(name, port, true);
        self.cluster(&yaml)
    }

    /// Sets the connection manager's `tracing:` section (a YAML mapping).
    pub fn tracing(mut self, yaml: &str) -> Self {
        self.tracing = Some(yaml.to_string());
        self
    }

    /// Sets extra http_connection_manager fields (a YAML mapping).
    pub fn hcm_extra(mut self, yaml: &str) -> Self {
        self.hcm_extra = Some(yaml.to_string());
        self
    }

    /// Sets extra fields of the route (a YAML mapping).
    pub fn route_extra(mut self, yaml: &str) -> Self {
        self.route_extra = Some(yaml.to_string());
        self
    }

    /// Sets a runtime key (`value` is a YAML scalar, e.g. `1`).
    pub fn runtime(mut self, key: &str, value: &str) -> Self {
        self.runtime.insert(key.to_string(), value.to_string());
        self
    }

    /// Runs the fallback build (`vm-crypto`: RSA and ECDSA inside the VM) instead of the default.
    pub fn vm_crypto(mut self) -> Self {
        self.vm_crypto = true;
        self
    }

    /// Sets the wasm filter's `fail_open`.
    pub fn fail_open(mut self, yes: bool) -> Self {
        self.fail_open = yes;
        self
    }
}

/// The name of the test listener (see [`crate::Envoy::listener_port`]).
pub const LISTENER: &str = "main";

/// An Envoy bootstrap (YAML) whose listener runs svcauth (from [`crate::wasm_path`], or
/// [`crate::wasm_vmcrypto_path`] with [`Opts::vm_crypto`]) with the
/// given plugin configuration (JSON text, passed through verbatim as a StringValue).
pub fn bootstrap(plugin_config_json: &str, opts: &Opts) -> String {
    let wasm = if opts.vm_crypto {
        crate::wasm_vmcrypto_path()
    } else {
        crate::wasm_path()
    };
    let mut y = String::new();
    let w = &mut y;
    let _ = writeln!(w, "admin:");
    let _ = writeln!(
        w,
        "  address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}"
    );
    if !opts.runtime.is_empty() {
        let _ = writeln!(w, "layered_runtime:");
        let _ = writeln!(w, "  layers:");
        let _ = writeln!(w, "  - name: static");
        let _ = writeln!(w, "    static_layer:");
        for (k, v) in &opts.runtime {
            let _ = writeln!(w, "      {}: {v}", yaml_str(k));
        }
    }
    let _ = writeln!(w, "static_resources:");
    let _ = writeln!(w, "  listeners:");
    let _ = writeln!(w, "  - name: {LISTENER}");
    let _ = writeln!(
        w,
        "    address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}"
    );
    let _ = writeln!(w, "    filter_chains:");
    let _ = writeln!(w, "    - filters:");
    let _ = writeln!(
        w,
        "      - name: envoy.filters.network.http_connection_manager"
    );
    let _ = writeln!(w, "        typed_config:");
    let _ = writeln!(w, "          \"@type\": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager");
    let _ = writeln!(w, "          stat_prefix: ingress_http");
    let _ = writeln!(w, "          codec_type: AUTO");
    let _ = writeln!(w, "          generate_request_id: true");
    if let Some(extra) = &opts.hcm_extra {
        w.push_str(&indent(extra, 10));
    }
    if let Some(tracing) = &opts.tracing {
        let _ = writeln!(w, "          tracing:");
        w.push_str(&indent(tracing, 12));
    }
    let _ = writeln!(w, "          route_config:");
    let _ = writeln!(w, "            name: local");
    let _ = writeln!(w, "            virtual_hosts:");
    let _ = writeln!(w, "            - name: all");
    let _ = writeln!(w, "              domains: [\"*\"]");
    let _ = writeln!(w, "              routes:");
    let _ = writeln!(w, "              - match: {{prefix: \"/\"}}");
    let _ = writeln!(
        w,
        "                route: {{cluster: upstream, timeout: 10s}}"
    );
    if let Some(extra) = &opts.route_extra {
        w.push_str(&indent(extra, 16));
    }
    let _ = writeln!(w, "          http_filters:");
    let _ = writeln!(w, "          - name: envoy.filters.http.wasm");
    let _ = writeln!(w, "            typed_config:");
    let _ = writeln!(
        w,
        "              \"@type\": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"
    );
    let _ = writeln!(w, "              config:");
    let _ = writeln!(w, "                name: svcauth");
    let _ = writeln!(w, "                root_id: svcauth");
    let _ = writeln!(w, "                fail_open: {}", opts.fail_open);
    let _ = writeln!(w, "                configuration:");
    let _ = writeln!(
        w,
        "                  \"@type\": type.googleapis.com/google.protobuf.StringValue"
    );
    let _ = writeln!(
        w,
        "                  value: {}",
        yaml_str(plugin_config_json)
    );
    let _ = writeln!(w, "                vm_config:");
    let _ = writeln!(w, "                  vm_id: svcauth");
    let _ = writeln!(w, "                  runtime: envoy.wasm.runtime.v8");
    let _ = writeln!(
        w,
        "                  code: {{local: {{filename: {}}}}}",
        yaml_str(&wasm.to_string_lossy())
    );
    if !opts.env.is_empty() {
        let _ = writeln!(w, "                  environment_variables:");
        let _ = writeln!(w, "                    key_values:");
        for (k, v) in &opts.env {
            let _ = writeln!(w, "                      {}: {}", yaml_str(k), yaml_str(v));
        }
    }
    let _ = writeln!(w, "          - name: envoy.filters.http.router");
    let _ = writeln!(w, "            typed_config:");
    let _ = writeln!(w, "              \"@type\": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router");
    let _ = writeln!(w, "  clusters:");
    w.push_str(&list_item(
        &loopback_cluster_yaml("upstream", opts.upstream_port, opts.upstream_http2),
        2,
    ));
    for cluster in &opts.clusters {
        w.push_str(&list_item(cluster, 2));
    }
    y
}

/// A STATIC loopback cluster as a YAML mapping; `http2` for gRPC peers.
fn loopback_cluster_yaml(name: &str, port: u16, http2: bool) -> String {
    let mut y = format!(
        "name: {}\ntype: STATIC\nconnect_timeout: 2s\nload_assignment:\n  cluster_name: {}\n  endpoints:\n  - lb_endpoints:\n    - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}}}\n",
        yaml_str(name),
        yaml_str(name)
    );
    if http2 {
        y.push_str("typed_extension_protocol_options:\n  envoy.extensions.upstreams.http.v3.HttpProtocolOptions:\n    \"@type\": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions\n    explicit_http_config: {http2_protocol_options: {}}\n");
    }
    y
}

/// A YAML double-quoted scalar for any text. JSON strings are valid YAML double-quoted scalars,
/// so serde_json's escaping is used: no hand-written escaping bugs.
pub fn yaml_str(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

/// Indents every non-empty line of `yaml` by `n` spaces; ends with a newline.
pub fn indent(yaml: &str, n: usize) -> String {
    let pad = " ".repeat(n);
    let mut out = String::new();
    for line in yaml.lines() {
        if !line.trim().is_empty() {
            out.push_str(&pad);
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

/// `yaml` (a mapping) as one item of a YAML list indented by `n`.
fn list_item(yaml: &str, n: usize) -> String {
    let body = indent(yaml.trim_start_matches('\n'), n + 2);
    let pad = " ".repeat(n);
    let prefix = format!("{pad}  ");
    match body.strip_prefix(&prefix) {
        Some(rest) => format!("{pad}- {rest}"),
        None => body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_str_escapes_like_json() {
        assert_eq!(yaml_str(r#"{"a":"b\c"}"#), r#""{\"a\":\"b\\c\"}""#);
        assert_eq!(yaml_str("x\ny"), r#""x\ny""#);
    }

    #[test]
    fn list_item_prefixes_first_line_only() {
        assert_eq!(
            list_item("name: a\ntype: STATIC\n", 2),
            "  - name: a\n    type: STATIC\n"
        );
    }
}
