//! The `svcauth` CLI and the filter in a real Envoy agree: tokens the CLI mints (with keys it
//! generated, in a JWK Set it built) are accepted by Envoy for every algorithm, and for a table
//! of requests `svcauth verify` predicts Envoy's answer: allow (and the identity the upstream
//! gets) or the same status, reason code and WWW-Authenticate challenge.
//!
//! The CLI binary is `$SVCAUTH_CLI` (scripts/test sets it), else `target/debug/svcauth` (build it
//! with `cargo build -p svcauth-cli`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::{json, Value};
use svcauth_tests::{http, repo_root, EchoUpstream, Envoy, Opts, RunDir};

const ISS: &str = "https://auth.parity.local";
const HMAC_VAR: &str = "SVCAUTH_PARITY_HMAC";

fn cli_bin() -> PathBuf {
    let path = match std::env::var_os("SVCAUTH_CLI").filter(|v| !v.is_empty()) {
        Some(p) => PathBuf::from(p),
        None => repo_root().join("target/debug/svcauth"),
    };
    assert!(
        path.is_file(),
        "no svcauth CLI at {}: run `cargo build -p svcauth-cli` (scripts/test does), or set SVCAUTH_CLI",
        path.display()
    );
    path
}

/// Runs the CLI; returns (exit code, stdout, stderr).
fn cli(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(cli_bin());
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let o = cmd.output().unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn cli_ok(args: &[&str], env: &[(&str, &str)]) -> String {
    let (code, out, err) = cli(args, env);
    assert_eq!(code, 0, "svcauth {args:?} failed: {err}{out}");
    out
}

#[test]
fn tokens_minted_by_the_cli_get_the_same_decision_from_svcauth_verify_and_from_envoy() {
    let dir = RunDir::new();
    let keys = dir.join("keys").to_string_lossy().into_owned();
    let set = dir.join("jwks.json").to_string_lossy().into_owned();
    let algs = ["RS256", "PS256", "ES256", "ES384", "EdDSA"];
    for alg in algs {
        let kid = format!("parity-{}", alg.to_lowercase());
        cli_ok(
            &["keygen", "--alg", alg, "--kid", &kid, "--out", &keys],
            &[],
        );
        cli_ok(&["jwks", "add", &set, &format!("{keys}/{kid}.json")], &[]);
    }
    cli_ok(
        &[
            "keygen",
            "--alg",
            "HS256",
            "--kid",
            "parity-hs256",
            "--out",
            &keys,
        ],
        &[],
    );
    let secret_file = format!("{keys}/parity-hs256.secret");
    let secret = std::fs::read_to_string(&secret_file)
        .unwrap()
        .trim_end()
        .to_string();
    // A key of the set's kid that is not the set's key: a forged signature.
    let forged = dir.join("forged").to_string_lossy().into_owned();
    cli_ok(
        &[
            "keygen",
            "--alg",
            "ES256",
            "--kid",
            "parity-es256",
            "--out",
            &forged,
        ],
        &[],
    );

    let jwks: Value = serde_json::from_str(&std::fs::read_to_string(&set).unwrap()).unwrap();
    let config = json!({
        "providers": {"parity": {
            "issuer": ISS,
            "audiences": ["orders"],
            "jwks": jwks,
            "hmac_secret_env": HMAC_VAR,
            "from_headers": [{"name": "authorization", "value_prefix": "Bearer "}, {"name": "x-service-token"}],
        }},
        "rules": [
            {"match": {"prefix": "/health"}, "allow": true},
            {"match": {"path": "/admin/rotate", "methods": ["POST"]}, "requires": {"scopes_all": ["internal:admin"]}},
            {"match": {"prefix": "/"}, "requires": {"scopes_any": ["orders:read", "orders:write"]}},
        ],
    })
    .to_string();
    let config_file = dir.join("plugin.json").to_string_lossy().into_owned();
    std::fs::write(&config_file, &config).unwrap();
    let env = [(HMAC_VAR, secret.as_str())];
    let checked = cli_ok(&["config", "check", &config_file], &env);
    assert_eq!(checked, "ok: 1 provider, 3 rules\n");

    // The CLI verifies every algorithm natively (RSA and ECDSA in-process): its twin is the
    // fallback build (vm-crypto), which has PS256 too. The default build decides like the
    // fallback's host path except for RSA-PSS (tests/host_crypto.rs).
    let upstream = EchoUpstream::start();
    let envoy = Envoy::start_plugin(
        &config,
        &Opts::new(upstream.port())
            .env(HMAC_VAR, &secret)
            .vm_crypto(),
    );

    let mint = |key: &[&str], extra: &[&str]| -> String {
        let mut a = vec!["mint"];
        a.extend_from_slice(key);
        a.extend([
            "--iss",
            ISS,
            "--sub",
            "orders-service",
            "--aud",
            "orders",
            "--ttl",
            "10m",
        ]);
        a.extend_from_slice(extra);
        cli_ok(&a, &env).trim().to_string()
    };
    let key_of = |alg: &str| format!("{keys}/parity-{}.pem", alg.to_lowercase());
    let read = ["--scope", "orders:read"];

    // Every algorithm: CLI-minted tokens are accepted.
    // (name, method, path, token, token header)
    type Row<'a> = (&'a str, &'a str, &'a str, Option<String>, &'a str);
    type NamedRow<'a> = (String, &'a str, &'a str, Option<String>, &'a str);
    let mut rows: Vec<NamedRow> = Vec::new();
    for alg in algs {
        let key = key_of(alg);
        let t = mint(
            &["--key", &key],
            &[
                "--scope",
                "orders:read orders:write",
                "--claim",
                "type=service",
            ],
        );
        rows.push((
            format!("{alg} valid"),
            "GET",
            "/orders/1",
            Some(t),
            "authorization",
        ));
    }
    let hs = mint(&["--secret-file", &secret_file], &read);
    rows.push((
        "HS256 valid".into(),
        "GET",
        "/orders/1",
        Some(hs.clone()),
        "authorization",
    ));
    let es = key_of("ES256");
    let es_key = ["--key", es.as_str()];
    let good = mint(&es_key, &read);
    let admin = mint(&es_key, &["--scope", "internal:admin"]);
    let wrong_aud = cli_ok(
        &[
            "mint",
            "--key",
            &es,
            "--iss",
            ISS,
            "--sub",
            "s",
            "--aud",
            "billing",
            "--scope",
            "orders:read",
        ],
        &env,
    )
    .trim()
    .to_string();
    #[rustfmt::skip]
    let table: Vec<Row> = vec![
        ("valid in x-service-token", "GET", "/orders/2", Some(good.clone()), "x-service-token"),
        ("open route, no token", "GET", "/health", None, "authorization"),
        ("no token", "GET", "/orders/1", None, "authorization"),
        ("expired", "GET", "/orders/1", Some(mint(&es_key, &["--scope", "orders:read", "--now=-1h"])), "authorization"),
        ("not yet valid", "GET", "/orders/1", Some(mint(&es_key, &["--scope", "orders:read", "--claim", "nbf=9999999999"])), "authorization"),
        ("wrong audience", "GET", "/orders/1", Some(wrong_aud), "authorization"),
        ("missing scope", "GET", "/orders/1", Some(mint(&es_key, &[])), "authorization"),
        ("admin route, read scope", "POST", "/admin/rotate", Some(good.clone()), "authorization"),
        ("admin route, admin scope", "POST", "/admin/rotate", Some(admin), "authorization"),
        ("forged signature", "GET", "/orders/1", Some(mint(&["--key", &format!("{forged}/parity-es256.pem")], &read)), "authorization"),
        ("malformed", "GET", "/orders/1", Some("not.a.jwt".into()), "authorization"),
        ("no rule (dot segments)", "GET", "/health/../orders", Some(good.clone()), "authorization"),
    ];
    rows.extend(
        table
            .into_iter()
            .map(|(n, m, p, t, h)| (n.to_string(), m, p, t, h)),
    );

    let mut report = Vec::new();
    for (name, method, path, token, header) in &rows {
        // What svcauth verify predicts.
        let mut a = vec![
            "verify",
            "--config",
            &config_file,
            "--method",
            method,
            "--path",
            path,
            "--json",
            "--header",
            header,
        ];
        match token {
            Some(t) => a.push(t),
            None => a.push("--no-token"),
        }
        let (code, out, err) = cli(&a, &env);
        assert!(
            code == 0 || code == 1,
            "{name}: svcauth verify exit {code}: {err}"
        );
        let predicted: Value =
            serde_json::from_str(&out).unwrap_or_else(|e| panic!("{name}: {e}: {out}"));

        // What Envoy does.
        upstream.clear();
        let value = match (token, *header) {
            (Some(t), "authorization") => Some(format!("Bearer {t}")),
            (Some(t), _) => Some(t.clone()),
            (None, _) => None,
        };
        let headers: Vec<(&str, &str)> = value.iter().map(|v| (*header, v.as_str())).collect();
        let resp = http(envoy.port(), method, path, &headers);

        let decision = predicted["decision"].as_str().unwrap();
        report.push(format!(
            "{name:<26} verify: {:<3} {:<20} envoy: {} {}",
            predicted["status"]
                .as_u64()
                .map_or("200".into(), |s| s.to_string()),
            predicted["reason"].as_str().unwrap_or("allow"),
            resp.status,
            resp.header("x-svcauth-reason").unwrap_or("allow"),
        ));
        if decision == "allow" {
            assert_eq!(code, 0, "{name}");
            assert_eq!(
                resp.status, 200,
                "{name}: verify allows, Envoy answered {}: {}",
                resp.status, resp.body
            );
            let seen = upstream.last_request().unwrap();
            let want_name = predicted["upstream_headers"]["x-service-name"].as_str();
            assert_eq!(seen.header("x-service-name"), want_name, "{name}");
            let want_scopes = predicted["upstream_headers"]["x-service-scopes"].as_str();
            assert_eq!(seen.header("x-service-scopes"), want_scopes, "{name}");
        } else {
            assert_eq!(code, 1, "{name}");
            assert_eq!(
                Some(u64::from(resp.status)),
                predicted["status"].as_u64(),
                "{name}: {predicted}"
            );
            assert_eq!(
                resp.header("x-svcauth-reason"),
                predicted["reason"].as_str(),
                "{name}"
            );
            assert_eq!(
                resp.header("www-authenticate"),
                predicted["www_authenticate"].as_str(),
                "{name}"
            );
            assert_eq!(
                upstream.request_count(),
                0,
                "{name}: a denied request never reaches the upstream"
            );
        }
    }
    println!("{}", report.join("\n"));
    // The table covers both outcomes and each kind of denial status.
    let statuses: Vec<&str> = report.iter().map(|l| l.as_str()).collect();
    assert!(statuses.iter().any(|l| l.contains("envoy: 200")));
    assert!(statuses.iter().any(|l| l.contains("envoy: 401")));
    assert!(statuses.iter().any(|l| l.contains("envoy: 403")));
    assert!(
        report
            .iter()
            .any(|l| l.starts_with("wrong audience") && l.contains("envoy: 401")),
        "{report:?}"
    );
}
