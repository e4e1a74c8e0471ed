//! The `svcauth` binary as a person runs it: keygen → jwks → mint → verify round trips for every
//! algorithm, a table of requests with the decision and status Envoy would give, key file
//! modes, and clear errors (exit 2) for bad input that never print a secret or a token.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Value};

const ISS: &str = "https://auth.internal";
const HMAC_VAR: &str = "SVCAUTH_CLI_TEST_HMAC";

/// A scratch directory, removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new() -> Dir {
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "svcauth-cli-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Dir(p)
    }
    fn path(&self, name: &str) -> String {
        self.0.join(name).to_string_lossy().into_owned()
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[derive(Debug)]
struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Out {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }
}

/// Runs the CLI with `args`, extra environment `env` and `stdin`.
fn run_with(args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Out {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_svcauth"));
    cmd.args(args)
        .env_remove(HMAC_VAR)
        .env_remove("RUST_BACKTRACE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    {
        let mut input = child.stdin.take().unwrap();
        if let Some(s) = stdin {
            input.write_all(s.as_bytes()).unwrap();
        }
    }
    let o = child.wait_with_output().unwrap();
    Out {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

fn run(args: &[&str]) -> Out {
    run_with(args, &[], None)
}

/// Runs and asserts exit 0; returns stdout.
fn ok(args: &[&str], env: &[(&str, &str)]) -> String {
    let o = run_with(args, env, None);
    assert_eq!(o.code, 0, "svcauth {args:?}: {o:?}");
    o.stdout
}

fn mode(path: &str) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

fn header_of(token: &str) -> Value {
    let h = token.split('.').next().unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).unwrap()).unwrap()
}

/// The plugin config of these tests: the contract's example rules, keys from `jwks` (a file).
fn write_config(dir: &Dir, jwks_file: Option<&str>, hmac: bool) -> String {
    let mut provider = json!({
        "issuer": ISS,
        "audiences": ["orders"],
        "from_headers": [{"name": "authorization", "value_prefix": "Bearer "}, {"name": "x-service-token"}],
    });
    if let Some(f) = jwks_file {
        let set: Value = serde_json::from_str(&std::fs::read_to_string(f).unwrap()).unwrap();
        provider["jwks"] = set;
    }
    if hmac {
        provider["hmac_secret_env"] = json!(HMAC_VAR);
    }
    let config = json!({
        "providers": {"internal": provider},
        "rules": [
            {"match": {"prefix": "/health"}, "allow": true},
            {"match": {"path": "/admin/rotate", "methods": ["POST"]}, "requires": {"scopes_all": ["internal:admin"]}},
            {"match": {"prefix": "/"}, "requires": {"scopes_any": ["orders:read", "orders:write"]}}
        ]
    });
    let path = dir.path("plugin.json");
    std::fs::write(&path, serde_json::to_string_pretty(&config).unwrap()).unwrap();
    path
}

/// keygen writes a key whose tokens the filter's own decide accepts, for every algorithm.
#[test]
fn keygen_mint_verify_round_trips_for_every_algorithm() {
    let dir = Dir::new();
    let keys = dir.path("keys");
    let set = dir.path("jwks.json");
    let asym = ["RS256", "PS256", "ES256", "ES384", "ES512", "EdDSA"];
    for alg in asym {
        let kid = format!("k-{}", alg.to_lowercase());
        ok(
            &["keygen", "--alg", alg, "--kid", &kid, "--out", &keys],
            &[],
        );
        ok(&["jwks", "add", &set, &format!("{keys}/{kid}.json")], &[]);
    }
    ok(
        &[
            "keygen", "--alg", "HS256", "--kid", "k-hs256", "--out", &keys,
        ],
        &[],
    );
    let secret_file = format!("{keys}/k-hs256.secret");
    let secret = std::fs::read_to_string(&secret_file).unwrap();
    let secret = secret.trim_end();
    assert!(
        secret.len() >= 32,
        "HS256 secrets must satisfy the filter's 32-byte minimum"
    );
    assert!(
        !Path::new(&format!("{keys}/k-hs256.json")).exists(),
        "no JWK for a secret"
    );
    let config = write_config(&dir, Some(&set), true);
    let env = [(HMAC_VAR, secret)];

    let mint_common = |key_args: Vec<String>, alg: Option<&str>| {
        let mut a: Vec<String> = vec!["mint".into()];
        a.extend(key_args);
        a.extend(
            [
                "--iss",
                ISS,
                "--sub",
                "orders-service",
                "--aud",
                "orders",
                "--scope",
                "orders:read orders:write",
                "--ttl",
                "10m",
                "--claim",
                "type=service",
            ]
            .map(String::from),
        );
        if let Some(alg) = alg {
            a.extend(["--alg".to_string(), alg.to_string()]);
        }
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        ok(&refs, &env).trim().to_string()
    };
    let mut cases: Vec<(&str, String)> = Vec::new();
    for alg in asym {
        let kid = format!("k-{}", alg.to_lowercase());
        let key = format!("{keys}/{kid}.pem");
        // Without --alg, the alg comes from the JWK beside the key (PS256, not RS256).
        let t = mint_common(vec!["--key".into(), key.clone()], None);
        assert_eq!(header_of(&t)["alg"], alg, "default alg for {kid}");
        assert_eq!(header_of(&t)["kid"], kid.as_str());
        cases.push((alg, t));
        cases.push((alg, mint_common(vec!["--key".into(), key], Some(alg))));
    }
    cases.push((
        "HS256",
        mint_common(vec!["--secret-file".into(), secret_file.clone()], None),
    ));
    cases.push((
        "HS256",
        mint_common(vec!["--secret-env".into(), HMAC_VAR.into()], Some("HS256")),
    ));
    for (alg, token) in &cases {
        assert_eq!(header_of(token)["alg"], *alg);
        let o = run_with(
            &[
                "verify",
                "--config",
                &config,
                "--path",
                "/orders/1",
                "--json",
                token,
            ],
            &env,
            None,
        );
        assert_eq!(o.code, 0, "{alg}: {o:?}");
        let v = o.json();
        assert_eq!(v["decision"], "allow", "{alg}: {v}");
        assert_eq!(v["caller"], "orders-service");
        assert_eq!(v["scopes"], json!(["orders:read", "orders:write"]));
        assert_eq!(v["upstream_headers"]["x-service-name"], "orders-service");
        assert_eq!(v["rule"], 2);
        let c = claims_of(token);
        assert_eq!(c["type"], "service");
        assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 600);
    }
}

#[test]
fn key_files_are_created_0600_and_never_overwritten_without_force() {
    let dir = Dir::new();
    let keys = dir.path("new/keys");
    let out = ok(
        &["keygen", "--alg", "EdDSA", "--kid", "a", "--out", &keys],
        &[],
    );
    assert!(out.contains("a.pem") && out.contains("0600"), "{out}");
    let pem = format!("{keys}/a.pem");
    assert_eq!(mode(&pem), 0o600);
    assert_eq!(mode(&format!("{keys}/a.json")), 0o644);
    assert_eq!(mode(&keys), 0o700, "a directory keygen creates is private");
    let before = std::fs::read(&pem).unwrap();
    let o = run(&["keygen", "--alg", "EdDSA", "--kid", "a", "--out", &keys]);
    assert_eq!(o.code, 2, "{o:?}");
    assert!(o.stderr.contains("already exists"), "{o:?}");
    assert_eq!(
        std::fs::read(&pem).unwrap(),
        before,
        "the key was not touched"
    );
    ok(
        &[
            "keygen", "--alg", "EdDSA", "--kid", "a", "--out", &keys, "--force",
        ],
        &[],
    );
    assert_ne!(std::fs::read(&pem).unwrap(), before, "--force replaced it");
    assert_eq!(mode(&pem), 0o600, "a replaced key is 0600 too");
    ok(
        &["keygen", "--alg", "HS384", "--kid", "h", "--out", &keys],
        &[],
    );
    let secret = format!("{keys}/h.secret");
    assert_eq!(mode(&secret), 0o600);
    assert_eq!(
        std::fs::read_to_string(&secret).unwrap().trim_end().len(),
        64
    );
    // No leftover temporary files.
    let names: Vec<String> = std::fs::read_dir(&keys)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.starts_with('.')), "{names:?}");
}

/// The table: each request, what Envoy would answer (decision, status, reason code).
#[test]
fn a_table_of_tokens_gets_the_decisions_and_statuses_envoy_would_give() {
    let dir = Dir::new();
    let keys = dir.path("keys");
    let set = dir.path("jwks.json");
    ok(
        &["keygen", "--alg", "ES256", "--kid", "good", "--out", &keys],
        &[],
    );
    ok(&["jwks", "add", &set, &format!("{keys}/good.json")], &[]);
    // A key that is not in the set, and one with the set's kid but other material.
    ok(
        &[
            "keygen", "--alg", "ES256", "--kid", "stranger", "--out", &keys,
        ],
        &[],
    );
    let other = dir.path("other");
    ok(
        &["keygen", "--alg", "ES256", "--kid", "good", "--out", &other],
        &[],
    );
    let config = write_config(&dir, Some(&set), false);

    let mint = |key: &str, extra: &[&str]| {
        let mut a = vec![
            "mint",
            "--key",
            key,
            "--iss",
            ISS,
            "--sub",
            "orders-service",
            "--aud",
            "orders",
            "--ttl",
            "5m",
        ];
        a.extend_from_slice(extra);
        ok(&a, &[]).trim().to_string()
    };
    let good = format!("{keys}/good.pem");
    let read = mint(&good, &["--scope", "orders:read"]);
    let admin = mint(&good, &["--scope", "internal:admin"]);
    let expired = mint(&good, &["--scope", "orders:read", "--now=-2h"]);
    let future = mint(
        &good,
        &["--scope", "orders:read", "--claim", "nbf=9999999999"],
    );
    let wrong_aud = {
        let a = [
            "mint",
            "--key",
            &good,
            "--iss",
            ISS,
            "--sub",
            "s",
            "--aud",
            "billing",
            "--scope",
            "orders:read",
        ];
        ok(&a, &[]).trim().to_string()
    };
    let wrong_iss = {
        let a = [
            "mint",
            "--key",
            &good,
            "--iss",
            "https://evil",
            "--sub",
            "s",
            "--aud",
            "orders",
            "--scope",
            "orders:read",
        ];
        ok(&a, &[]).trim().to_string()
    };
    let no_scope = mint(&good, &[]);
    let unknown_kid = mint(&format!("{keys}/stranger.pem"), &["--scope", "orders:read"]);
    let bad_sig = mint(&format!("{other}/good.pem"), &["--scope", "orders:read"]);
    let tampered = {
        let mut parts: Vec<String> = read.split('.').map(String::from).collect();
        let mut c = claims_of(&read);
        c["scope"] = json!("orders:read orders:write internal:admin");
        parts[1] = URL_SAFE_NO_PAD.encode(c.to_string());
        parts.join(".")
    };

    // (name, method, path, token, header, decision, status, reason)
    // (name, "METHOD PATH [token header]", token, "allow" | "deny STATUS REASON")
    #[rustfmt::skip]
    let table: [(&str, &str, Option<&str>, &str); 18] = [
        ("valid", "GET /orders/1", Some(&read), "allow"),
        ("valid, other header", "GET /orders/1 x-service-token", Some(&read), "allow"),
        ("open route, no token", "GET /health", None, "allow"),
        ("open route, bad token", "GET /health", Some("garbage"), "allow"),
        ("no token", "GET /orders/1", None, "deny 401 token_missing"),
        ("expired", "GET /orders/1", Some(&expired), "deny 401 token_expired"),
        ("not yet valid", "GET /orders/1", Some(&future), "deny 401 token_not_yet_valid"),
        ("wrong audience", "GET /orders/1", Some(&wrong_aud), "deny 401 audience_mismatch"),
        ("wrong issuer", "GET /orders/1", Some(&wrong_iss), "deny 401 issuer_mismatch"),
        ("missing scope", "GET /orders/1", Some(&no_scope), "deny 403 insufficient_scope"),
        ("admin scope only", "GET /orders/1", Some(&admin), "deny 403 insufficient_scope"),
        ("admin, read scope", "POST /admin/rotate", Some(&read), "deny 403 insufficient_scope"),
        ("admin, admin scope", "POST /admin/rotate", Some(&admin), "allow"),
        ("unknown kid", "GET /orders/1", Some(&unknown_kid), "deny 401 unknown_kid"),
        ("bad signature", "GET /orders/1", Some(&bad_sig), "deny 401 bad_signature"),
        ("tampered claims", "GET /orders/1", Some(&tampered), "deny 401 bad_signature"),
        ("malformed", "GET /orders/1", Some("not.a.jwt"), "deny 401 token_malformed"),
        ("dot segments", "GET /health/../x", Some(&read), "deny 400 ambiguous_path"),
    ];
    for (name, request, token, expect) in table {
        let req: Vec<&str> = request.split(' ').collect();
        let mut a = vec!["verify", "--config", &config, "--json"];
        a.extend(["--method", req[0], "--path", req[1]]);
        if let Some(h) = req.get(2) {
            a.extend(["--header", h]);
        }
        a.push(token.unwrap_or("--no-token"));
        let o = run(&a);
        let v = o.json();
        let got = match v["decision"].as_str() {
            Some("allow") => "allow".to_string(),
            _ => format!(
                "deny {} {}",
                v["status"],
                v["reason"].as_str().unwrap_or("?")
            ),
        };
        assert_eq!(got, expect, "{name}: {v}");
        let want_code = if expect == "allow" { 0 } else { 1 };
        assert_eq!(o.code, want_code, "{name}: exit code");
        if let Some(t) = token.filter(|t| t.len() > 12) {
            assert!(!o.stdout.contains(t), "{name}: the token is never printed");
        }
        if let Some(challenge) = v["www_authenticate"].as_str() {
            assert!(
                challenge.starts_with("Bearer realm=\"svcauth\""),
                "{name}: {challenge}"
            );
            if expect.ends_with("insufficient_scope") {
                assert!(challenge.contains("scope=\""), "{name}: {challenge}");
            }
        }
    }
}

#[test]
fn verify_prints_a_readable_decision_and_explains_each_check_in_order() {
    let dir = Dir::new();
    let keys = dir.path("keys");
    let set = dir.path("jwks.json");
    ok(
        &["keygen", "--alg", "ES384", "--kid", "k", "--out", &keys],
        &[],
    );
    ok(&["jwks", "add", &set, &format!("{keys}/k.json")], &[]);
    let config = write_config(&dir, Some(&set), false);
    let key = format!("{keys}/k.pem");
    let token = ok(
        &[
            "mint",
            "--key",
            &key,
            "--iss",
            ISS,
            "--sub",
            "billing",
            "--aud",
            "orders",
            "--scope",
            "orders:read",
        ],
        &[],
    );
    // The token from stdin, as a person should pass it.
    let o = run_with(
        &[
            "verify",
            "--config",
            &config,
            "--path",
            "/orders/7",
            "--explain",
            "-",
        ],
        &[],
        Some(&token),
    );
    assert_eq!(o.code, 0, "{o:?}");
    assert!(o.stdout.starts_with("ALLOW  GET /orders/7"), "{}", o.stdout);
    assert!(o.stdout.contains("x-service-name: billing"), "{}", o.stdout);
    let order = [
        "rule",
        "token",
        "format",
        "claims",
        "issuer",
        "algorithm",
        "lifetime",
        "audience",
        "required claims",
        "subject",
        "signature",
        "scopes",
        "token location",
        "rule provider",
        "rule scopes",
    ];
    let mut at = 0;
    for check in order {
        let needle = format!("ok    {check} ");
        let pos = o.stdout[at..]
            .find(&needle)
            .unwrap_or_else(|| panic!("check {check:?} missing or out of order:\n{}", o.stdout));
        at += pos;
    }

    let expired = ok(
        &[
            "mint",
            "--key",
            &key,
            "--iss",
            ISS,
            "--sub",
            "billing",
            "--aud",
            "orders",
            "--scope",
            "orders:read",
            "--ttl",
            "1h",
            "--now=-3h",
        ],
        &[],
    );
    let o = run(&[
        "verify",
        "--config",
        &config,
        "--path",
        "/orders/7",
        "--explain",
        expired.trim(),
    ]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stdout.starts_with("DENY  GET /orders/7"), "{}", o.stdout);
    assert!(o.stdout.contains("token_expired"), "{}", o.stdout);
    assert!(o.stdout.contains("was 2h ago"), "{}", o.stdout);
    assert!(o.stdout.contains("FAIL  lifetime"), "{}", o.stdout);
    assert!(
        !o.stdout.contains("ok    audience"),
        "checks stop at the first failure"
    );
}

#[test]
fn mint_claims_lifetimes_and_headers() {
    let dir = Dir::new();
    let keys = dir.path("keys");
    ok(
        &["keygen", "--alg", "ES256", "--kid", "k", "--out", &keys],
        &[],
    );
    let key = format!("{keys}/k.pem");
    let base = ["mint", "--key", &key, "--iss", ISS, "--sub", "svc"];
    let with = |extra: &[&str]| {
        let mut a = base.to_vec();
        a.extend_from_slice(extra);
        run(&a)
    };
    let o = with(&[
        "--aud",
        "a",
        "--aud",
        "b",
        "--scope",
        "x:1 x:2",
        "--scope",
        "x:3",
        "--claim",
        "type=service",
        "--claim",
        "n=42",
        "--claim",
        "flag=true",
        "--claim",
        "list=[\"p\",\"q\"]",
        "--claim",
        "text=hello world",
        "--typ",
        "at+jwt",
        "--days",
        "1",
    ]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(o.stdout.lines().count(), 1, "only the token is printed");
    assert!(o.stderr.is_empty(), "{o:?}");
    let t = o.stdout.trim();
    let c = claims_of(t);
    assert_eq!(c["aud"], json!(["a", "b"]));
    assert_eq!(c["scope"], "x:1 x:2 x:3");
    assert_eq!(c["type"], "service");
    assert_eq!(c["n"], 42);
    assert_eq!(c["flag"], true);
    assert_eq!(c["list"], json!(["p", "q"]));
    assert_eq!(c["text"], "hello world");
    assert_eq!(
        c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(),
        86_400
    );
    assert_eq!(header_of(t)["typ"], "at+jwt");
    assert_eq!(header_of(t)["kid"], "k");

    // Above the default maximum (24h): refused unless --allow-long-lived.
    let o = with(&["--ttl", "25h"]);
    assert_eq!(o.code, 2, "{o:?}");
    assert!(
        o.stderr.contains("above the maximum of 1d") && o.stderr.contains("--allow-long-lived"),
        "{o:?}"
    );
    assert!(o.stdout.is_empty());
    let o = with(&["--days", "2", "--max-ttl", "7d"]);
    assert_eq!(o.code, 0, "{o:?}");
    let o = with(&["--days", "90", "--allow-long-lived"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(
        o.stderr.contains("warning") && o.stderr.contains("more than 30 days"),
        "{o:?}"
    );
    assert_eq!(
        claims_of(o.stdout.trim())["exp"].as_i64().unwrap()
            - claims_of(o.stdout.trim())["iat"].as_i64().unwrap(),
        90 * 86_400
    );
    // Claims with their own option cannot be set with --claim.
    let o = with(&["--claim", "exp=1"]);
    assert_eq!(o.code, 2);
    assert!(o.stderr.contains("--ttl"), "{o:?}");
}

#[test]
fn bad_inputs_exit_2_with_clear_messages_and_never_print_secrets_or_tokens() {
    let dir = Dir::new();
    let keys = dir.path("keys");
    ok(
        &["keygen", "--alg", "ES256", "--kid", "ec", "--out", &keys],
        &[],
    );
    ok(
        &["keygen", "--alg", "HS256", "--kid", "hs", "--out", &keys],
        &[],
    );
    let set = dir.path("jwks.json");
    ok(&["jwks", "add", &set, &format!("{keys}/ec.json")], &[]);
    let config = write_config(&dir, Some(&set), false);
    let ec = format!("{keys}/ec.pem");
    let ec_jwk = format!("{keys}/ec.json");
    let secret_file = format!("{keys}/hs.secret");
    let secret = std::fs::read_to_string(&secret_file)
        .unwrap()
        .trim_end()
        .to_string();
    let token = ok(&["mint", "--key", &ec, "--iss", ISS, "--sub", "s"], &[])
        .trim()
        .to_string();
    let pem_text = std::fs::read_to_string(&ec).unwrap();

    let short_secret = dir.path("short.secret");
    std::fs::write(&short_secret, "tooshort\n").unwrap();
    let bad_config = dir.path("bad.json");
    std::fs::write(
        &bad_config,
        r#"{"providers": {"p": {"issuer": "i", "jwks": {"keys": []}, "bogus": 1}}, "rules": []}"#,
    )
    .unwrap();
    let not_json = dir.path("notjson.json");
    std::fs::write(&not_json, "providers: yaml?").unwrap();
    let token_with_newline = format!("{token}\nsecond line");

    fn mint<'a>(extra: &[&'a str]) -> Vec<&'a str> {
        let mut a = vec!["mint", "--iss", ISS, "--sub", "s"];
        a.extend_from_slice(extra);
        a
    }
    // (arguments, stdin, what stderr must say); every one exits 2.
    type Case<'a> = (Vec<&'a str>, Option<&'a str>, &'a str);
    let nl = Some(token_with_newline.as_str());
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        (vec![], None, "no command given"),
        (vec!["frobnicate"], None, "unknown command \"frobnicate\""),
        (vec!["mint", "--bogus"], None, "unknown option --bogus"),
        (vec!["verify", "--config"], None, "--config needs a value"),
        (mint(&["--secret", "abc"]), None, "secrets are never taken as arguments"),
        (mint(&["--key", "/nonexistent/k.pem"]), None, "cannot read key file /nonexistent/k.pem: No such file or directory"),
        (mint(&["--key", &ec_jwk]), None, "this looks like a JWK"),
        (mint(&["--key", &secret_file]), None, "for an HMAC secret use --secret-file"),
        (mint(&["--key", &ec, "--alg", "RS256"]), None, "wrong key type for RS256: it needs an RSA key, and this is an EC P-256 key"),
        (mint(&["--key", &ec, "--alg", "none"]), None, "unsupported --alg \"none\""),
        (mint(&["--key", &ec, "--secret-file", &secret_file]), None, "exactly one signing key"),
        (mint(&["--secret-file", &secret_file, "--alg", "ES256"]), None, "wrong key type for ES256: it needs an EC P-256 key, and this is an HMAC secret"),
        (mint(&["--secret-env", "SVCAUTH_CLI_TEST_UNSET"]), None, "environment variable SVCAUTH_CLI_TEST_UNSET is not set"),
        (mint(&["--secret-file", &short_secret]), None, "shorter than 32 bytes"),
        (mint(&["--key", &ec, "--ttl", "soon"]), None, "--ttl takes a duration"),
        (mint(&["--key", &ec, "stray-positional"]), None, "unexpected argument"),
        (vec!["mint", "--key", &ec, "--sub", "s"], None, "--iss is required"),
        (vec!["verify", "--config", &config], None, "expected TOKEN"),
        (vec!["verify", "--config", "/nonexistent.json", &token], None, "cannot read plugin config /nonexistent.json"),
        (vec!["verify", "--config", &bad_config, &token], None, "svcauth: invalid configuration: providers.p.bogus: unknown field `bogus`"),
        (vec!["verify", "--config", &not_json, &token], None, "svcauth: invalid configuration: config:"),
        (vec!["verify", "--config", &config, "-"], nl, "control characters"),
        (vec!["verify", "--config", &config, "--path", "orders", &token], None, "--path must start with /"),
        (vec!["config", "check", &bad_config], None, "svcauth: invalid configuration: providers.p.bogus: unknown field `bogus`"),
        (vec!["config", "check"], None, "expected FILE"),
        (vec!["config", "frob"], None, "expected a subcommand"),
        (vec!["jwks", "add", &set, &ec], None, "is a PEM file"),
        (vec!["jwks", "add", &set], None, "at least one JWK_FILE"),
        (vec!["keygen", "--kid", "../escape"], None, "--kid must be"),
        (vec!["keygen", "--kid", "x", "--alg", "RS1"], None, "unsupported --alg"),
    ];
    for (args, stdin, needle) in cases {
        let o = run_with(&args, &[], stdin);
        assert_eq!(o.code, 2, "svcauth {args:?}: {o:?}");
        assert!(
            o.stderr.contains(needle),
            "svcauth {args:?}: stderr lacks {needle:?}: {o:?}"
        );
        for leak in [
            token.as_str(),
            secret.as_str(),
            "second line",
            pem_text.lines().nth(1).unwrap(),
        ] {
            assert!(
                !o.stderr.contains(leak) && !o.stdout.contains(leak),
                "svcauth {args:?} printed a secret or token: {o:?}"
            );
        }
        assert!(
            !o.stderr.contains("panicked") && !o.stderr.contains("RUST_BACKTRACE"),
            "{o:?}"
        );
    }

    // A config whose HMAC variable is missing: the filter's own message.
    let hmac_config = write_config(&dir, None, true);
    let o = run(&["config", "check", &hmac_config]);
    assert_eq!(o.code, 2);
    assert!(o.stderr.contains(&format!("svcauth: invalid configuration: providers.internal.hmac_secret_env: environment variable {HMAC_VAR} is not set")), "{o:?}");
    // ... found in --env-file, or in the environment.
    let env_file = dir.path("env");
    std::fs::write(
        &env_file,
        format!("# secrets\nexport {HMAC_VAR}=\"{secret}\"\n"),
    )
    .unwrap();
    assert_eq!(
        ok(
            &["config", "check", &hmac_config, "--env-file", &env_file],
            &[]
        ),
        "ok: 1 provider, 3 rules\n"
    );
    assert_eq!(
        ok(&["config", "check", &hmac_config], &[(HMAC_VAR, &secret)]),
        "ok: 1 provider, 3 rules\n"
    );
}

#[test]
fn jwks_rotation_adds_beside_refuses_duplicates_and_private_keys_and_removes_atomically() {
    let dir = Dir::new();
    let keys = dir.path("keys");
    let set = dir.path("sets/jwks.json");
    for (alg, kid) in [("ES256", "old"), ("EdDSA", "new")] {
        ok(&["keygen", "--alg", alg, "--kid", kid, "--out", &keys], &[]);
    }
    let out = ok(&["jwks", "add", &set, &format!("{keys}/old.json")], &[]);
    assert_eq!(out, format!("added kid \"old\" to {set} (1 key now)\n"));
    assert_eq!(mode(&set), 0o644);
    let out = ok(&["jwks", "add", &set, &format!("{keys}/new.json")], &[]);
    assert!(out.contains("(2 keys now)"), "{out}");
    let o = run(&["jwks", "add", &set, &format!("{keys}/new.json")]);
    assert_eq!(o.code, 2);
    assert!(o.stderr.contains("kid \"new\" is already in"), "{o:?}");

    // A private JWK (with "d") or a symmetric one is never published.
    let private = dir.path("private.json");
    let mut jwk: Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{keys}/new.json")).unwrap())
            .unwrap();
    jwk["kid"] = json!("leaky");
    jwk["d"] = json!("c2VjcmV0");
    std::fs::write(&private, jwk.to_string()).unwrap();
    let o = run(&["jwks", "add", &set, &private]);
    assert_eq!(o.code, 2);
    assert!(o.stderr.contains("private member \"d\""), "{o:?}");
    assert!(!o.stderr.contains("c2VjcmV0"));
    let oct = dir.path("oct.json");
    std::fs::write(
        &oct,
        r#"{"kty":"oct","kid":"sym","k":"c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"}"#,
    )
    .unwrap();
    let o = run(&["jwks", "add", &set, &oct]);
    assert_eq!(o.code, 2);
    assert!(o.stderr.contains("hmac_secret_env"), "{o:?}");
    let nokid = dir.path("nokid.json");
    let mut jwk: Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{keys}/new.json")).unwrap())
            .unwrap();
    jwk.as_object_mut().unwrap().remove("kid");
    std::fs::write(&nokid, jwk.to_string()).unwrap();
    let o = run(&["jwks", "add", &set, &nokid]);
    assert_eq!(o.code, 2);
    assert!(o.stderr.contains("no \"kid\""), "{o:?}");

    let shown = ok(&["jwks", "show", &set], &[]);
    assert!(
        shown.contains("old")
            && shown.contains("EC P-256")
            && shown.contains("ES256")
            && shown.contains("usable"),
        "{shown}"
    );
    assert!(
        shown.contains("new") && shown.contains("OKP Ed25519") && shown.contains("EdDSA"),
        "{shown}"
    );
    let compact = ok(&["jwks", "show", &set, "--compact"], &[]);
    assert_eq!(compact.lines().count(), 1);
    let parsed: Value = serde_json::from_str(&compact).unwrap();
    assert_eq!(parsed["keys"].as_array().unwrap().len(), 2);

    let o = run(&["jwks", "remove", &set, "ghost"]);
    assert_eq!(o.code, 2);
    assert!(o.stderr.contains("no key with kid \"ghost\""), "{o:?}");
    let out = ok(&["jwks", "remove", &set, "old"], &[]);
    assert!(
        out.contains("removed kid \"old\"") && out.contains("(1 key left)"),
        "{out}"
    );
    let o = run(&["jwks", "remove", &set, "new"]);
    assert_eq!(o.code, 2);
    assert!(o.stderr.contains("no key"), "{o:?}");
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&set).unwrap()).unwrap();
    assert_eq!(
        v["keys"][0]["kid"], "new",
        "the refused removal wrote nothing"
    );
    // A set of several keys added at once, from a JWK Set file.
    let set2 = dir.path("jwks2.json");
    ok(
        &["jwks", "add", &set2, &format!("{keys}/old.json"), &set],
        &[],
    );
    assert_eq!(
        ok(&["jwks", "show", &set2], &[]).lines().next().unwrap(),
        format!("{set2}: 2 keys")
    );
}

#[test]
fn config_check_and_services_describe_the_config() {
    let dir = Dir::new();
    let keys = dir.path("keys");
    let set = dir.path("jwks.json");
    ok(
        &["keygen", "--alg", "RS256", "--kid", "r", "--out", &keys],
        &[],
    );
    ok(&["jwks", "add", &set, &format!("{keys}/r.json")], &[]);
    let config = write_config(&dir, Some(&set), false);
    assert_eq!(
        ok(&["config", "check", &config], &[]),
        "ok: 1 provider, 3 rules\n"
    );
    let text = std::fs::read_to_string(&config).unwrap();
    let o = run_with(&["config", "check", "-"], &[], Some(&text));
    assert_eq!(
        (o.code, o.stdout.as_str()),
        (0, "ok: 1 provider, 3 rules\n")
    );
    let s = ok(&["config", "services", &config], &[]);
    let rules: Vec<&str> = s.lines().skip_while(|l| !l.starts_with("rules")).collect();
    assert!(
        rules[2].contains("prefix /health") && rules[2].contains("open"),
        "{s}"
    );
    assert!(
        rules[3].contains("path /admin/rotate")
            && rules[3].contains("POST")
            && rules[3].contains("all of: internal:admin"),
        "{s}"
    );
    assert!(
        rules[4].contains("prefix /") && rules[4].contains("any of: orders:read orders:write"),
        "{s}"
    );
    assert!(
        s.contains("internal") && s.contains(ISS) && s.contains("r (RSA)"),
        "{s}"
    );
}

#[test]
fn every_command_has_help() {
    for args in [
        vec!["--help"],
        vec!["help"],
        vec!["keygen", "--help"],
        vec!["mint", "--help"],
        vec!["verify", "--help"],
        vec!["jwks", "--help"],
        vec!["jwks", "add", "--help"],
        vec!["jwks", "remove", "--help"],
        vec!["jwks", "show", "--help"],
        vec!["config", "--help"],
        vec!["config", "check", "--help"],
        vec!["config", "services", "-h"],
        vec!["help", "mint"],
    ] {
        let o = run(&args);
        assert_eq!(o.code, 0, "{args:?}: {o:?}");
        assert!(o.stdout.contains("Usage:"), "{args:?}: {}", o.stdout);
        for line in o.stdout.lines() {
            assert!(
                line.chars().count() <= 100,
                "{args:?}: long help line {line:?}"
            );
        }
    }
    assert!(ok(&["help", "verify"], &[]).contains("--explain"));
}

/// `--explain` prints the check the filter names as failed, reads scopes from the provider's
/// `scope_claims` (not a fixed `scope`/`scp`/`scopes`), and explains the provider's
/// `required_claims`, the rule's `requires.claims` and a provider's `typ`.
#[test]
fn verify_explain_names_the_failing_check_and_honours_scope_claims_and_required_claims() {
    let dir = Dir::new();
    let keys = dir.path("keys");
    let set = dir.path("jwks.json");
    ok(
        &["keygen", "--alg", "ES256", "--kid", "k", "--out", &keys],
        &[],
    );
    ok(&["jwks", "add", &set, &format!("{keys}/k.json")], &[]);
    let jwks: Value = serde_json::from_str(&std::fs::read_to_string(&set).unwrap()).unwrap();
    let config = json!({
        "providers": {
            "internal": {
                "issuer": ISS, "audiences": ["orders"], "jwks": jwks,
                "scope_claims": ["roles"], "required_claims": {"tier": "gold"}
            },
            "typed": {
                "issuer": "https://typed.internal", "jwks": jwks, "typ": "at+jwt",
                "from_headers": [{"name": "x-typed-token"}]
            }
        },
        "rules": [
            {"match": {"prefix": "/team"}, "requires": {"claims": {"team": "payments"}}},
            {"match": {"prefix": "/"}, "requires": {"scopes_any": ["orders:read"]}}
        ]
    });
    let config_path = dir.path("plugin.json");
    std::fs::write(&config_path, config.to_string()).unwrap();
    let key = format!("{keys}/k.pem");
    let mint = |extra: &[&str]| {
        let mut a = vec!["mint", "--key", &key, "--sub", "billing", "--aud", "orders"];
        a.extend_from_slice(extra);
        ok(&a, &[]).trim().to_string()
    };
    let verify = |path: &str, token: &str, extra: &[&str]| {
        let mut a = vec![
            "verify",
            "--config",
            &config_path,
            "--path",
            path,
            "--explain",
        ];
        a.extend_from_slice(extra);
        a.push(token);
        let text = run(&a);
        a.insert(1, "--json");
        (text, run(&a).json())
    };
    let gold = ["--iss", ISS, "--claim", "tier=gold"];
    let roles = ["--claim", "roles=[\"orders:read\"]"];

    // Scopes come from `roles`: a `scope` claim grants nothing here.
    let t = mint(&[&gold[..], &["--scope", "orders:read"]].concat());
    let (o, j) = verify("/orders", &t, &[]);
    assert_eq!(o.code, 1, "{o:?}");
    assert_eq!(j["reason"], "insufficient_scope", "{j}");
    assert_eq!(j["check"], "rule scopes", "{j}");
    assert!(o.stdout.contains("FAIL  rule scopes"), "{}", o.stdout);
    assert!(
        o.stdout.contains("check             rule scopes"),
        "{}",
        o.stdout
    );
    assert!(
        j["why"].as_str().unwrap().starts_with("granted \"\""),
        "{j}"
    );
    assert!(
        o.stdout.contains("no claim of scope_claims [\"roles\"]"),
        "{}",
        o.stdout
    );

    let t = mint(&[&gold[..], &roles[..]].concat());
    let (o, j) = verify("/orders", &t, &[]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(j["scopes"], json!(["orders:read"]), "{j}");
    assert!(
        o.stdout.contains("granted \"orders:read\" (claim roles)"),
        "{}",
        o.stdout
    );
    let last = j["checks"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["check"], "rule scopes", "{j}");
    assert_eq!(last["ok"], true, "{j}");

    // The provider's required claim, with the token's value.
    let t = mint(&["--iss", ISS, "--claim", "tier=silver", roles[0], roles[1]]);
    let (o, j) = verify("/orders", &t, &[]);
    assert_eq!(
        (j["reason"].as_str(), j["check"].as_str()),
        (Some("claim_mismatch"), Some("required claims")),
        "{j}"
    );
    assert!(o.stdout.contains("FAIL  required claims"), "{}", o.stdout);
    let why = j["why"].as_str().unwrap();
    assert!(
        why.contains("tier=\"gold\"") && why.contains("\"silver\""),
        "{why}"
    );

    // The rule's required claim.
    let t = mint(&[&gold[..], &roles[..], &["--claim", "team=ops"]].concat());
    let (o, j) = verify("/team/x", &t, &[]);
    assert_eq!(
        (j["reason"].as_str(), j["check"].as_str()),
        (Some("claim_not_allowed"), Some("rule claims")),
        "{j}"
    );
    assert!(o.stdout.contains("FAIL  rule claims"), "{}", o.stdout);
    let why = j["why"].as_str().unwrap();
    assert!(
        why.contains("team=\"payments\"") && why.contains("\"ops\""),
        "{why}"
    );
    let t = mint(&[&gold[..], &roles[..], &["--claim", "team=payments"]].concat());
    let (o, _) = verify("/team/x", &t, &[]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(
        o.stdout
            .contains("ok    rule claims      team=\"payments\" match"),
        "{}",
        o.stdout
    );

    // A provider with `typ`: the type check runs after the algorithm and fails by name.
    let t = mint(&["--iss", "https://typed.internal"]);
    let (o, j) = verify("/orders", &t, &["--header", "x-typed-token"]);
    assert_eq!(
        (j["reason"].as_str(), j["check"].as_str()),
        (Some("wrong_token_type"), Some("type")),
        "{j}"
    );
    assert!(o.stdout.contains("ok    algorithm"), "{}", o.stdout);
    assert!(o.stdout.contains("FAIL  type"), "{}", o.stdout);
    let t = mint(&["--iss", "https://typed.internal", "--typ", "at+jwt"]);
    let (o, j) = verify("/orders", &t, &["--header", "x-typed-token"]);
    assert_eq!(j["check"], "rule scopes", "{j}");
    assert!(o.stdout.contains("ok    type "), "{}", o.stdout);
    // The token in a place its provider does not read.
    let (o, j) = verify("/orders", &t, &[]);
    assert_eq!(
        (j["reason"].as_str(), j["check"].as_str()),
        (Some("wrong_token_location"), Some("token location")),
        "{j}"
    );
    assert!(o.stdout.contains("FAIL  token location"), "{}", o.stdout);
}
