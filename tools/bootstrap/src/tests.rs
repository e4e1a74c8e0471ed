//! Unit tests of the generator's YAML shape (Envoy itself validates the output in
//! tests/bootstraps.rs).

use super::*;

fn one_listener(hardened: bool) -> Bootstrap {
    let mut l = Listener::new("main");
    l.hardened = hardened;
    l.routes.push(Route {
        prefix: "/".into(),
        action: Action::Cluster {
            name: "upstream".into(),
            timeout: "10s".into(),
        },
        extra: Some("request_headers_to_remove: [x-a]".into()),
    });
    l.http_filters.push(wasm_filter(&WasmFilter {
        name: "svcauth".into(),
        wasm: "/m.wasm".into(),
        configuration: Some(r#"{"rules":[]}"#.into()),
        ..WasmFilter::default()
    }));
    Bootstrap {
        listeners: vec![l],
        clusters: vec![loopback_cluster("upstream", 9, false)],
        ..Bootstrap::default()
    }
}

#[test]
fn hardening_is_written_only_when_asked() {
    let on = render(&one_listener(true));
    let off = render(&one_listener(false));
    for line in HARDENING.lines() {
        assert!(
            on.contains(&format!("          {line}\n")),
            "{line} in:\n{on}"
        );
        assert!(!off.contains(line), "{line} in:\n{off}");
    }
}

#[test]
fn the_router_is_the_last_filter_and_route_extras_sit_under_the_route() {
    let y = render(&one_listener(true));
    let wasm = y.find("envoy.filters.http.wasm").unwrap_or(usize::MAX);
    let router = y.find("envoy.filters.http.router").unwrap_or(0);
    assert!(wasm < router, "{y}");
    assert!(
        y.contains(
            "              - match: {prefix: \"/\"}\n                route: {cluster: \"upstream\", timeout: 10s}\n                request_headers_to_remove: [x-a]\n"
        ),
        "{y}"
    );
    assert!(y.contains("      value: \"{\\\"rules\\\":[]}\"\n"), "{y}");
    assert!(y.contains("  clusters:\n  - name: \"upstream\"\n"), "{y}");
}
