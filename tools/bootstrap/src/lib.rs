//! The one Envoy v3 static bootstrap generator of the repo: the integration tests
//! (`svcauth_tests::bootstrap`), the bench (`svcauth-bench envoy-config KIND`) and the soak
//! (`scripts/soak`, through the same command) all write their Envoy configs with it, and
//! `tests/bootstraps.rs` runs `envoy --mode validate` on each.
//!
//! A [`Bootstrap`] is admin, optional runtime keys, listeners (each one HTTP connection manager
//! with routes and HTTP filters; the router is always last) and clusters. Pieces that vary a lot
//! (extra connection manager fields, tracing, clusters, filters) are YAML mappings as text.
//! [`wasm_filter`] writes the `envoy.filters.http.wasm` block of svcauth (or any module).
//! [`bench`] and [`soak`] hold the bench's and the soak's Envoys.
//!
//! Uses serde_json (quoting) and, in `bench`/`soak`, the filter's fixtures. No I/O.

use std::collections::BTreeMap;
use std::fmt::Write as _;

pub mod bench;
pub mod soak;
mod yaml;

pub use yaml::{indent, list_item, yaml_str};

/// Envoy's own path and header hardening, as every shipped config sets it (docs/security.md,
/// "Defence in depth"), at the indentation of the connection manager's fields.
pub const HARDENING: &str = "normalize_path: true
merge_slashes: true
path_with_escaped_slashes_action: REJECT_REQUEST
common_http_protocol_options: {headers_with_underscores_action: REJECT_REQUEST}
";

/// [`HARDENING`] as JSON pointers into an `HttpConnectionManager` and the value each must have:
/// what the tests check every shipped, generated and Istio-rendered connection manager for.
pub fn hardening() -> [(&'static str, serde_json::Value); 4] {
    use serde_json::json;
    [
        ("/normalize_path", json!(true)),
        ("/merge_slashes", json!(true)),
        ("/path_with_escaped_slashes_action", json!("REJECT_REQUEST")),
        (
            "/common_http_protocol_options/headers_with_underscores_action",
            json!("REJECT_REQUEST"),
        ),
    ]
}

/// A whole bootstrap.
#[derive(Debug, Clone, Default)]
pub struct Bootstrap {
    /// A comment written at the top (each line gets `# `).
    pub comment: Option<String>,
    /// The admin port on 127.0.0.1 (0: ephemeral).
    pub admin_port: u16,
    /// Runtime keys, as a static `layered_runtime` layer (values are YAML scalars).
    pub runtime: BTreeMap<String, String>,
    pub listeners: Vec<Listener>,
    /// Clusters, each a YAML mapping without `- ` (see [`loopback_cluster`]).
    pub clusters: Vec<String>,
}

/// What a route does.
#[derive(Debug, Clone)]
pub enum Action {
    /// To a cluster, with a route timeout (e.g. `10s`).
    Cluster { name: String, timeout: String },
    /// A `direct_response` with this status and body (the bench's and soak's "upstream").
    Direct { status: u16, body: String },
}

/// One route of a listener's single virtual host.
#[derive(Debug, Clone)]
pub struct Route {
    /// The `match.prefix`.
    pub prefix: String,
    pub action: Action,
    /// Extra fields of the route, as a YAML mapping (e.g. `typed_per_filter_config`).
    pub extra: Option<String>,
}

/// One listener on 127.0.0.1 with one HTTP connection manager.
#[derive(Debug, Clone)]
pub struct Listener {
    pub name: String,
    /// 0: ephemeral.
    pub port: u16,
    pub stat_prefix: String,
    /// `codec_type`: `AUTO`, `HTTP1`, ...
    pub codec: String,
    pub generate_request_id: bool,
    /// Whether the connection manager sets [`HARDENING`].
    pub hardened: bool,
    /// Extra connection manager fields, as a YAML mapping.
    pub hcm_extra: Option<String>,
    /// The body of the connection manager's `tracing:` section, as a YAML mapping.
    pub tracing: Option<String>,
    /// The `route_config.name`, and the name of its one virtual host (domains `*`).
    pub route_config: String,
    pub virtual_host: String,
    pub routes: Vec<Route>,
    /// HTTP filters before the router, each a YAML mapping (`name: ...\ntyped_config: ...`).
    pub http_filters: Vec<String>,
}

impl Listener {
    /// A listener `name` (also its stat prefix) on an ephemeral port, codec AUTO, hardened,
    /// no routes and no filters yet.
    pub fn new(name: &str) -> Self {
        Listener {
            name: name.to_string(),
            port: 0,
            stat_prefix: name.to_string(),
            codec: "AUTO".into(),
            generate_request_id: false,
            hardened: true,
            hcm_extra: None,
            tracing: None,
            route_config: name.to_string(),
            virtual_host: "all".into(),
            routes: Vec::new(),
            http_filters: Vec::new(),
        }
    }
}

/// The `envoy.filters.http.wasm` filter of one module (V8), as a YAML mapping for
/// [`Listener::http_filters`].
#[derive(Debug, Clone, Default)]
pub struct WasmFilter {
    /// The plugin name, its `root_id` and the `vm_id`.
    pub name: String,
    pub fail_open: bool,
    /// The module's path.
    pub wasm: String,
    /// The plugin configuration (passed verbatim as a `StringValue`), if any.
    pub configuration: Option<String>,
    /// `vm_config.environment_variables.key_values`.
    pub env: BTreeMap<String, String>,
}

/// The YAML mapping of `f`.
pub fn wasm_filter(f: &WasmFilter) -> String {
    let mut y = String::new();
    let w = &mut y;
    let name = yaml_str(&f.name);
    let _ = writeln!(w, "name: envoy.filters.http.wasm");
    let _ = writeln!(w, "typed_config:");
    let _ = writeln!(
        w,
        "  \"@type\": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"
    );
    let _ = writeln!(w, "  config:");
    let _ = writeln!(w, "    name: {name}");
    let _ = writeln!(w, "    root_id: {name}");
    let _ = writeln!(w, "    fail_open: {}", f.fail_open);
    if let Some(config) = &f.configuration {
        let _ = writeln!(w, "    configuration:");
        let _ = writeln!(
            w,
            "      \"@type\": type.googleapis.com/google.protobuf.StringValue"
        );
        let _ = writeln!(w, "      value: {}", yaml_str(config));
    }
    let _ = writeln!(w, "    vm_config:");
    let _ = writeln!(w, "      vm_id: {name}");
    let _ = writeln!(w, "      runtime: envoy.wasm.runtime.v8");
    let _ = writeln!(
        w,
        "      code: {{local: {{filename: {}}}}}",
        yaml_str(&f.wasm)
    );
    if !f.env.is_empty() {
        let _ = writeln!(w, "      environment_variables:");
        let _ = writeln!(w, "        key_values:");
        for (k, v) in &f.env {
            let _ = writeln!(w, "          {}: {}", yaml_str(k), yaml_str(v));
        }
    }
    y
}

/// A STATIC cluster `name` at 127.0.0.1:`port` as a YAML mapping; `http2` for gRPC peers.
pub fn loopback_cluster(name: &str, port: u16, http2: bool) -> String {
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

/// The bootstrap as YAML text.
pub fn render(b: &Bootstrap) -> String {
    let mut y = String::new();
    let w = &mut y;
    if let Some(comment) = &b.comment {
        for line in comment.lines() {
            let _ = writeln!(w, "# {line}");
        }
    }
    let _ = writeln!(w, "admin:");
    let _ = writeln!(
        w,
        "  address: {{socket_address: {{address: 127.0.0.1, port_value: {}}}}}",
        b.admin_port
    );
    if !b.runtime.is_empty() {
        let _ = writeln!(w, "layered_runtime:");
        let _ = writeln!(w, "  layers:");
        let _ = writeln!(w, "  - name: static");
        let _ = writeln!(w, "    static_layer:");
        for (k, v) in &b.runtime {
            let _ = writeln!(w, "      {}: {v}", yaml_str(k));
        }
    }
    let _ = writeln!(w, "static_resources:");
    let _ = writeln!(w, "  listeners:");
    for l in &b.listeners {
        w.push_str(&list_item(&listener(l), 2));
    }
    if !b.clusters.is_empty() {
        let _ = writeln!(w, "  clusters:");
        for c in &b.clusters {
            w.push_str(&list_item(c, 2));
        }
    }
    y
}

/// One listener as a YAML mapping.
fn listener(l: &Listener) -> String {
    let mut y = String::new();
    let w = &mut y;
    let _ = writeln!(w, "name: {}", yaml_str(&l.name));
    let _ = writeln!(
        w,
        "address: {{socket_address: {{address: 127.0.0.1, port_value: {}}}}}",
        l.port
    );
    let _ = writeln!(w, "filter_chains:");
    let _ = writeln!(w, "- filters:");
    let _ = writeln!(w, "  - name: envoy.filters.network.http_connection_manager");
    let _ = writeln!(w, "    typed_config:");
    w.push_str(&indent(&connection_manager(l), 6));
    y
}

/// The connection manager's typed config of `l`, as a YAML mapping.
fn connection_manager(l: &Listener) -> String {
    let mut y = String::new();
    let w = &mut y;
    let _ = writeln!(w, "\"@type\": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager");
    let _ = writeln!(w, "stat_prefix: {}", yaml_str(&l.stat_prefix));
    let _ = writeln!(w, "codec_type: {}", l.codec);
    if l.generate_request_id {
        let _ = writeln!(w, "generate_request_id: true");
    }
    if l.hardened {
        w.push_str(HARDENING);
    }
    if let Some(extra) = &l.hcm_extra {
        w.push_str(&indent(extra, 0));
    }
    if let Some(tracing) = &l.tracing {
        let _ = writeln!(w, "tracing:");
        w.push_str(&indent(tracing, 2));
    }
    let _ = writeln!(w, "route_config:");
    let _ = writeln!(w, "  name: {}", yaml_str(&l.route_config));
    let _ = writeln!(w, "  virtual_hosts:");
    let _ = writeln!(w, "  - name: {}", yaml_str(&l.virtual_host));
    let _ = writeln!(w, "    domains: [\"*\"]");
    let _ = writeln!(w, "    routes:");
    for r in &l.routes {
        let _ = writeln!(w, "    - match: {{prefix: {}}}", yaml_str(&r.prefix));
        match &r.action {
            Action::Cluster { name, timeout } => {
                let _ = writeln!(
                    w,
                    "      route: {{cluster: {}, timeout: {timeout}}}",
                    yaml_str(name)
                );
            }
            Action::Direct { status, body } => {
                let _ = writeln!(
                    w,
                    "      direct_response: {{status: {status}, body: {{inline_string: {}}}}}",
                    yaml_str(body)
                );
            }
        }
        if let Some(extra) = &r.extra {
            w.push_str(&indent(extra, 6));
        }
    }
    let _ = writeln!(w, "http_filters:");
    for f in &l.http_filters {
        w.push_str(&list_item(f, 0));
    }
    let _ = writeln!(w, "- name: envoy.filters.http.router");
    let _ = writeln!(w, "  typed_config:");
    let _ = writeln!(
        w,
        "    \"@type\": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
    );
    y
}

#[cfg(test)]
mod tests;
