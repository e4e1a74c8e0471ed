//! Every Envoy bootstrap in `envoy/` and `envoy/examples/` passes `envoy --mode validate` with
//! the built filter (which also runs the plugin's `on_configure`, so a config the filter refuses
//! fails here), and every HTTP connection manager they (and the bench's and soak's generated
//! bootstraps) define carries Envoy's own path and header hardening. The global rate limit
//! example is checked against the rate limit service's config beside it and run with that
//! service down, in both failure modes.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};
use svcauth_filter::fixtures::{signing_key, Fixture};
use svcauth_filter::jws::Alg;
use svcauth_filter::mint::sign;
use svcauth_tests::generator::{bench, hardening, soak};
use svcauth_tests::tokens::closed_port;
use svcauth_tests::{http, now, repo_root, wasm_path, EchoUpstream, Envoy};

/// The wasm path the configs in `envoy/` use, relative to the repository root.
const RELATIVE_WASM: &str = "target/wasm32-wasip1/release/svcauth_filter.wasm";

/// The directories that hold Envoy bootstraps (the Istio manifests are checked by istio.rs).
const BOOTSTRAP_DIRS: [&str; 2] = ["envoy", "envoy/examples"];

const GLOBAL_RATELIMIT: &str = "envoy/examples/global-ratelimit.yaml";
const RATELIMIT_SERVICE: &str = "envoy/examples/global-ratelimit-service.yaml";
const RATELIMIT_COMPOSE: &str = "envoy/examples/global-ratelimit-compose.yaml";

/// Envoy bootstraps among the YAML files of [`BOOTSTRAP_DIRS`] (docker-compose files and the
/// rate limit service's config are other kinds of YAML).
fn envoy_bootstraps() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in BOOTSTRAP_DIRS {
        let dir = repo_root().join(dir);
        for entry in
            std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        {
            let path = entry.unwrap().path();
            if !path.extension().is_some_and(|x| x == "yaml" || x == "yml") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            if text
                .lines()
                .any(|l| l.starts_with("static_resources:") || l.starts_with("admin:"))
            {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn yaml(text: &str) -> Value {
    serde_norway::from_str(text).unwrap_or_else(|e| panic!("bad YAML: {e}"))
}

/// `repo`-relative file as JSON.
fn yaml_file(relative: &str) -> Value {
    yaml(&read(&repo_root().join(relative)))
}

#[test]
fn every_envoy_config_in_the_repo_passes_envoy_validate() {
    let wasm = wasm_path();
    let files = envoy_bootstraps();
    for want in [
        "envoy/demo.yaml",
        "envoy/envoy-compose.yaml",
        GLOBAL_RATELIMIT,
    ] {
        assert!(
            files.contains(&repo_root().join(want)),
            "{want} not found among {files:?}"
        );
    }
    let mut failures = Vec::new();
    for file in &files {
        let text = read(file);
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

// ------------------------------------------------------------------ hardening -----------------

/// Every `HttpConnectionManager` typed config anywhere in `v`.
fn connection_managers(v: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    fn walk<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
        match v {
            Value::Object(map) => {
                let hcm = map.get("@type").and_then(Value::as_str).is_some_and(|t| {
                    t.ends_with("http_connection_manager.v3.HttpConnectionManager")
                });
                if hcm {
                    out.push(v);
                }
                map.values().for_each(|c| walk(c, out));
            }
            Value::Array(items) => items.iter().for_each(|c| walk(c, out)),
            _ => {}
        }
    }
    walk(v, &mut out);
    out
}

/// What `hcm` lacks of [`hardening`], one line per option.
fn hardening_gaps(hcm: &Value) -> Vec<String> {
    hardening()
        .into_iter()
        .filter(|(pointer, want)| hcm.pointer(pointer) != Some(want))
        .map(|(pointer, want)| {
            format!(
                "{pointer} is {}, want {want}",
                hcm.pointer(pointer).unwrap_or(&Value::Null)
            )
        })
        .collect()
}

#[test]
fn every_connection_manager_in_the_shipped_configs_is_hardened() {
    let mut failures = Vec::new();
    for file in envoy_bootstraps() {
        let doc = yaml(&read(&file));
        let hcms = connection_managers(&doc);
        assert!(
            !hcms.is_empty(),
            "{}: no connection manager",
            file.display()
        );
        for (i, hcm) in hcms.iter().enumerate() {
            for gap in hardening_gaps(hcm) {
                failures.push(format!(
                    "{} (connection manager {i}): {gap}",
                    file.display()
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // The check is not vacuous: each option taken out of demo.yaml is reported.
    let demo = yaml_file("envoy/demo.yaml");
    for (pointer, _) in hardening() {
        let mut doc = demo.clone();
        let hcm =
            doc.pointer_mut("/static_resources/listeners/0/filter_chains/0/filters/0/typed_config");
        let hcm = hcm.unwrap();
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        let removed = hcm
            .pointer_mut(if parent.is_empty() { "" } else { parent })
            .and_then(Value::as_object_mut)
            .and_then(|m| m.remove(key));
        assert!(removed.is_some(), "demo.yaml sets {pointer}");
        let gaps = hardening_gaps(connection_managers(&doc)[0]);
        assert_eq!(gaps.len(), 1, "{pointer} removed: {gaps:?}");
    }
}

/// The bench and the soak take their bootstraps from the one generator (`svcauth_bootstrap`,
/// through `svcauth-bench envoy-config KIND`): every connection manager it writes for them sets
/// each option, and neither script writes a connection manager of its own.
#[test]
fn the_bench_and_soak_bootstraps_are_hardened_too() {
    let mut generated: Vec<(String, String)> = bench::KINDS
        .iter()
        .map(|kind| {
            let y = bench::envoy_config(kind, 1, 2, "/m.wasm").unwrap();
            (format!("bench {kind}"), y)
        })
        .collect();
    generated.push(("soak".into(), soak::envoy_config("/m.wasm", "secret")));
    let mut failures = Vec::new();
    for (name, text) in &generated {
        let doc = yaml(text);
        let hcms = connection_managers(&doc);
        assert_eq!(hcms.len(), 1, "{name}: one connection manager");
        for gap in hardening_gaps(hcms[0]) {
            failures.push(format!("{name}: {gap}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    for script in ["scripts/bench", "scripts/soak", "bench/src/main.rs"] {
        let text = read(&repo_root().join(script));
        assert!(
            !text.contains("HttpConnectionManager"),
            "{script} writes a connection manager of its own"
        );
        assert!(
            text.contains("envoy-config") || text.contains("envoy_config"),
            "{script} asks the generator"
        );
    }
}

/// What the four options do, as Envoy 1.40 applies them (no svcauth in the chain: this is
/// Envoy's own part, the one docs/security.md "Defence in depth" describes). The options are
/// taken from demo.yaml; the upstream reports the request line it received.
#[test]
fn envoy_applies_the_shipped_hardening_as_documented() {
    let demo = yaml_file("envoy/demo.yaml");
    let shipped = connection_managers(&demo)[0];
    let mut hcm = json!({
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "hardened",
        "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"],
            "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "upstream"}}]}]},
        "http_filters": [{"name": "envoy.filters.http.router", "typed_config":
            {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}],
    });
    for key in [
        "normalize_path",
        "merge_slashes",
        "path_with_escaped_slashes_action",
        "common_http_protocol_options",
    ] {
        hcm[key] = shipped[key].clone();
    }
    assert_eq!(hardening_gaps(&hcm), Vec::<String>::new());
    let upstream = EchoUpstream::start();
    let loopback =
        |port: u16| json!({"socket_address": {"address": "127.0.0.1", "port_value": port}});
    let bootstrap = json!({
        "admin": {"address": loopback(0)},
        "static_resources": {
            "listeners": [{"name": "main", "address": loopback(0),
                "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager",
                    "typed_config": hcm}]}]}],
            "clusters": [{"name": "upstream", "type": "STATIC", "connect_timeout": "2s",
                "load_assignment": {"cluster_name": "upstream", "endpoints": [{"lb_endpoints":
                    [{"endpoint": {"address": loopback(upstream.port())}}]}]}}],
        }
    });
    let envoy = Envoy::start(&bootstrap.to_string());
    // (request target, what the upstream receives; None: Envoy answers 400 itself)
    let table: [(&str, Option<&str>); 22] = [
        ("/admin/rotate", Some("/admin/rotate")),
        // merge_slashes
        ("//admin//rotate", Some("/admin/rotate")),
        // normalize_path: dot segments in any spelling, `\` as a separator, percent-encoded
        // unreserved characters decoded
        ("/health/../admin/rotate", Some("/admin/rotate")),
        ("/health/./../admin/rotate", Some("/admin/rotate")),
        ("/health/%2e%2e/admin/rotate", Some("/admin/rotate")),
        ("/health/%2E%2E/admin/rotate", Some("/admin/rotate")),
        ("/health/.%2e/admin/rotate", Some("/admin/rotate")),
        ("/health\\..\\admin/rotate", Some("/admin/rotate")),
        ("/health/..;/admin/rotate", Some("/admin/rotate")),
        ("/%61dmin/rotate", Some("/admin/rotate")),
        ("/admin/%7Eu", Some("/admin/~u")),
        (
            "http://localhost/health/../admin/rotate",
            Some("/admin/rotate"),
        ),
        // path_with_escaped_slashes_action: REJECT_REQUEST
        ("/admin%2Frotate", None),
        ("/admin%2frotate", None),
        ("/health/..%2fadmin/rotate", None),
        ("/admin%5Crotate", None),
        ("/admin%5crotate", None),
        // Envoy refuses an encoded NUL
        ("/admin/rotate%00", None),
        // left as they are: path parameters, a trailing slash, an encoded space, the query
        ("/admin/rotate;x=1", Some("/admin/rotate;x=1")),
        ("/admin/rotate/", Some("/admin/rotate/")),
        ("/admin%20rotate", Some("/admin%20rotate")),
        ("/admin/rotate?next=/../x", Some("/admin/rotate?next=/../x")),
    ];
    let mut wrong = Vec::new();
    for (target, want) in table {
        upstream.clear();
        let resp = http(envoy.port(), "GET", target, &[]);
        let got = (resp.status == 200).then(|| upstream.last_request().unwrap().path);
        let ok = match want {
            Some(path) => got.as_deref() == Some(path),
            None => resp.status == 400 && upstream.request_count() == 0,
        };
        if !ok {
            wrong.push(format!(
                "{target}: {} upstream {got:?}, want {want:?}",
                resp.status
            ));
        }
    }
    // headers_with_underscores_action: REJECT_REQUEST, any header name with `_`.
    for name in ["x_service_name", "X_Service_Name", "x_tenant"] {
        upstream.clear();
        let resp = http(envoy.port(), "GET", "/orders", &[(name, "admin-service")]);
        if resp.status != 400 || upstream.request_count() != 0 {
            wrong.push(format!("header {name}: {}", resp.status));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

// ------------------------------------------------------------------ global rate limit ---------

/// The HTTP filters of the example's (single) connection manager.
fn http_filters(doc: &Value) -> &Vec<Value> {
    connection_managers(doc)[0]["http_filters"]
        .as_array()
        .unwrap()
}

#[test]
fn the_global_ratelimit_example_matches_its_rate_limit_service_config() {
    let doc = yaml_file(GLOBAL_RATELIMIT);
    let filters = http_filters(&doc);
    let names: Vec<&str> = filters
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "envoy.filters.http.wasm",
            "envoy.filters.http.ratelimit",
            "envoy.filters.http.router"
        ],
        "svcauth verifies (and sets x-service-name) before the rate limit filter reads it"
    );
    let rl = &filters[1]["typed_config"];
    assert_eq!(
        rl["@type"],
        "type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimit"
    );
    assert_eq!(rl["failure_mode_deny"], true, "the choice is explicit");
    assert_eq!(rl["rate_limit_service"]["transport_api_version"], "V3");
    let cluster_name = rl["rate_limit_service"]["grpc_service"]["envoy_grpc"]["cluster_name"]
        .as_str()
        .unwrap();
    assert_eq!(cluster_name, "ratelimit");

    // The gRPC cluster speaks HTTP/2.
    let clusters = doc["static_resources"]["clusters"].as_array().unwrap();
    let cluster = clusters
        .iter()
        .find(|c| c["name"] == cluster_name)
        .expect("the ratelimit cluster");
    assert!(cluster
        .pointer("/typed_extension_protocol_options/envoy.extensions.upstreams.http.v3.HttpProtocolOptions/explicit_http_config/http2_protocol_options")
        .is_some());

    // Every route sends exactly one descriptor, built from the verified caller's name.
    let routes = connection_managers(&doc)[0]["route_config"]["virtual_hosts"][0]["routes"]
        .as_array()
        .unwrap();
    for route in routes {
        assert_eq!(
            route["route"]["rate_limits"],
            json!([{"actions": [{"request_headers":
                {"header_name": "x-service-name", "descriptor_key": "service"}}]}]),
            "{route}"
        );
    }

    // The rate limit service's config: the same domain, every entry keyed by that descriptor
    // key, a limit in a unit the service knows, and one key-only entry for every other caller.
    let service = yaml_file(RATELIMIT_SERVICE);
    assert_eq!(
        service["domain"], rl["domain"],
        "{RATELIMIT_SERVICE} domain"
    );
    let descriptors = service["descriptors"].as_array().unwrap();
    assert!(descriptors.len() >= 2);
    for d in descriptors {
        assert_eq!(d["key"], "service", "{d}");
        assert!(d.get("descriptors").is_none(), "one level only: {d}");
        let limit = &d["rate_limit"];
        assert!(
            ["second", "minute", "hour", "day"].contains(&limit["unit"].as_str().unwrap()),
            "{d}"
        );
        assert!(limit["requests_per_unit"].as_u64().is_some(), "{d}");
        let allowed: Vec<&String> = d.as_object().unwrap().keys().collect();
        assert!(
            allowed
                .iter()
                .all(|k| ["key", "value", "rate_limit"].contains(&k.as_str())),
            "{d}"
        );
    }
    assert_eq!(
        descriptors
            .iter()
            .filter(|d| d.get("value").is_none())
            .count(),
        1,
        "one default entry for every other caller"
    );

    // The compose file mounts that config where the service reads it and publishes the port the
    // cluster dials.
    let compose = yaml_file(RATELIMIT_COMPOSE);
    let svc = &compose["services"]["ratelimit"];
    let env = svc["environment"].as_object().unwrap();
    let dir = format!(
        "{}/{}/{}",
        env["RUNTIME_ROOT"].as_str().unwrap(),
        env["RUNTIME_SUBDIRECTORY"].as_str().unwrap(),
        env["RUNTIME_APPDIRECTORY"].as_str().unwrap()
    );
    let mount = svc["volumes"][0].as_str().unwrap();
    assert!(
        mount.starts_with("./global-ratelimit-service.yaml:")
            && mount.contains(&format!(":{dir}/")),
        "{mount} (config dir {dir})"
    );
    let port = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
        ["socket_address"]["port_value"]
        .as_u64()
        .unwrap();
    assert!(
        svc["ports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p.as_str() == Some(&format!("127.0.0.1:{port}:8081"))),
        "the gRPC port (8081 in the container) on 127.0.0.1:{port}"
    );
    assert!(compose["services"]["redis"].is_object());
    assert_eq!(env["REDIS_URL"], "redis:6379");
}

/// The example's text with its loopback ports replaced (admin and listener: any free port).
fn with_ports(text: &str, upstream: u16, ratelimit: u16) -> String {
    let mut out = text.replace(RELATIVE_WASM, &wasm_path().to_string_lossy());
    for (from, to) in [(9901, 0), (10000, 0), (10001, upstream), (8081, ratelimit)] {
        let from = format!("address: 127.0.0.1, port_value: {from}}}");
        assert_eq!(out.matches(&from).count(), 1, "{from}");
        out = out.replace(&from, &format!("address: 127.0.0.1, port_value: {to}}}"));
    }
    out
}

/// A token the example's provider accepts (the demo key, kid "demo-rsa").
fn demo_token(sub: &str) -> String {
    let now = now();
    let mut header = Map::new();
    header.insert("kid".into(), "demo-rsa".into());
    let claims = json!({"iss": "https://auth.demo.local", "sub": sub, "aud": "orders",
                        "iat": now, "exp": now + 300, "scope": "orders:read"});
    sign(&signing_key(Fixture::RsaA), Alg::RS256, &header, &claims).unwrap()
}

/// The example as shipped, with the rate limit service unreachable: what each kind of request
/// gets under `failure_mode_deny: true` (as shipped) and `false`.
#[test]
fn the_global_ratelimit_example_with_the_rate_limit_service_down() {
    let text = read(&repo_root().join(GLOBAL_RATELIMIT));
    // The setting itself (the header comment names it too).
    let setting = "\n              failure_mode_deny: true\n";
    assert_eq!(text.matches(setting).count(), 1);
    let bearer = format!("Bearer {}", demo_token("checkout"));
    for deny in [true, false] {
        let upstream = EchoUpstream::start();
        let mut yaml = with_ports(&text, upstream.port(), closed_port());
        if !deny {
            yaml = yaml.replace(setting, &setting.replace("true", "false"));
        }
        let envoy = Envoy::start(&yaml);
        let port = envoy.port();

        // No caller, no descriptor, no call: the open route works whatever the service does,
        // also when the client sends its own x-service-name (svcauth removes it first).
        for headers in [vec![], vec![("x-service-name", "checkout")]] {
            let resp = http(port, "GET", "/health", &headers);
            assert_eq!(resp.status, 200, "deny={deny} {headers:?}: {}", resp.body);
        }
        // svcauth answers before the rate limit filter: no token is svcauth's 401.
        let resp = http(port, "GET", "/orders/1", &[]);
        assert_eq!(resp.status, 401, "deny={deny}: {}", resp.body);
        assert!(resp.header("www-authenticate").is_some());
        assert_eq!(
            envoy
                .stat("cluster.demo_upstream.ratelimit.error")
                .unwrap_or(0),
            0,
            "deny={deny}: no call to the rate limit service so far"
        );

        // A verified caller has a descriptor; the service cannot answer.
        upstream.clear();
        let resp = http(port, "GET", "/orders/1", &[("authorization", &bearer)]);
        if deny {
            assert_eq!(resp.status, 500, "refused, not let through: {}", resp.body);
            assert_eq!(upstream.request_count(), 0, "nothing reached the upstream");
            assert_eq!(envoy.stat("cluster.demo_upstream.ratelimit.error"), Some(1));
            assert_eq!(
                envoy
                    .stat("cluster.demo_upstream.ratelimit.failure_mode_allowed")
                    .unwrap_or(0),
                0
            );
        } else {
            assert_eq!(resp.status, 200, "let through unlimited: {}", resp.body);
            let seen = upstream.last_request().unwrap();
            assert_eq!(seen.header("x-service-name"), Some("checkout"));
            assert_eq!(envoy.stat("cluster.demo_upstream.ratelimit.error"), Some(1));
            assert_eq!(
                envoy.stat("cluster.demo_upstream.ratelimit.failure_mode_allowed"),
                Some(1)
            );
        }
    }
}
