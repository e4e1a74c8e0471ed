//! Envoy v3 static bootstraps for the tests: one listener with the svcauth wasm filter in front
//! of the router, one `upstream` cluster, admin on an ephemeral loopback port. Written by the
//! repo's one generator (`svcauth_bootstrap`, tools/bootstrap), as the bench's and soak's are.

use std::collections::BTreeMap;

use svcauth_bootstrap::{
    loopback_cluster, render, wasm_filter, Action, Bootstrap, Listener, Route, WasmFilter,
};

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
        let yaml = loopback_cluster(name, port, false);
        self.cluster(&yaml)
    }

    /// Adds an HTTP/2 (gRPC) STATIC cluster `name` at 127.0.0.1:`port`, e.g. an OTLP receiver.
    pub fn grpc_cluster(self, name: &str, port: u16) -> Self {
        let yaml = loopback_cluster(name, port, true);
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
    render(&bootstrap_of(plugin_config_json, opts))
}

/// The [`Bootstrap`] behind [`bootstrap`], for tests that add listeners or change one.
///
/// The listener keeps Envoy's defaults for paths and headers (`hardened: false`): the tests
/// prove what the filter does on its own (`tests/doors.rs` runs a hardened one beside it).
pub fn bootstrap_of(plugin_config_json: &str, opts: &Opts) -> Bootstrap {
    let mut listener = Listener::new(LISTENER);
    listener.stat_prefix = "ingress_http".into();
    listener.route_config = "local".into();
    listener.generate_request_id = true;
    listener.hardened = false;
    listener.hcm_extra.clone_from(&opts.hcm_extra);
    listener.tracing.clone_from(&opts.tracing);
    listener.routes.push(Route {
        prefix: "/".into(),
        action: Action::Cluster {
            name: "upstream".into(),
            timeout: "10s".into(),
        },
        extra: opts.route_extra.clone(),
    });
    listener
        .http_filters
        .push(svcauth_filter(plugin_config_json, opts));
    let mut clusters = vec![loopback_cluster(
        "upstream",
        opts.upstream_port,
        opts.upstream_http2,
    )];
    clusters.extend(opts.clusters.iter().cloned());
    Bootstrap {
        runtime: opts.runtime.clone(),
        listeners: vec![listener],
        clusters,
        ..Bootstrap::default()
    }
}

/// The svcauth wasm filter block (YAML mapping) of the test bootstraps: the default module
/// ([`crate::wasm_path`]), or the fallback build with [`Opts::vm_crypto`]
/// ([`crate::wasm_vmcrypto_path`]).
pub fn svcauth_filter(plugin_config_json: &str, opts: &Opts) -> String {
    let wasm = if opts.vm_crypto {
        crate::wasm_vmcrypto_path()
    } else {
        crate::wasm_path()
    };
    wasm_filter(&WasmFilter {
        name: "svcauth".into(),
        fail_open: opts.fail_open,
        wasm: wasm.to_string_lossy().into_owned(),
        configuration: Some(plugin_config_json.to_string()),
        env: opts.env.clone(),
    })
}
