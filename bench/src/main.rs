//! `svcauth-bench`: the helpers behind `scripts/bench`.
//!
//! ```text
//! svcauth-bench tokens DIR [--distinct N]      token sets (one token a line) for wrk
//! svcauth-bench envoy-config KIND --port P --admin-port A [--wasm PATH]
//!                                              an Envoy bootstrap on stdout; KIND is one of
//!                                              none | wasm_empty | jwt_authn | jwt_authn_nocache
//!                                              | svcauth (--wasm: the module of wasm_empty or
//!                                              svcauth)
//! svcauth-bench envoy-config soak [--wasm PATH]  the bootstrap of `scripts/soak` (ephemeral
//!                                              ports; the HMAC secret from $SOAK_HMAC)
//! svcauth-bench decide-loop MODE [--iters N]   a native loop over `decide` for perf/callgrind;
//!                                              MODE is hit | miss-rs256 | miss-es256 | miss-hs256
//! ```
//!
//! The Envoy configs come from the repo's one bootstrap generator (`svcauth_bootstrap::bench`
//! and `::soak`, tools/bootstrap): every bench KIND is the same apart from the auth filters.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};
use svcauth_bootstrap::bench::{self, svcauth_config};
use svcauth_bootstrap::soak;
use svcauth_filter::cache::TokenCache;
use svcauth_filter::config::Config;
use svcauth_filter::decide::{decide, Decision};
use svcauth_filter::fixtures::{self, Fixture, AUDIENCE, HMAC_ENV, HMAC_SECRET, ISSUER};
use svcauth_filter::jws::Alg;
use svcauth_filter::mint;

/// Tokens live this long, so that a long benchmark never measures expired ones.
const TOKEN_LIFETIME: i64 = 24 * 3600;
/// The path every benchmark request goes to (matched by the catch-all rule).
pub const PATH: &str = "/orders/42";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Err(e) = run(&args) {
        eprintln!("svcauth-bench: {e}");
        std::process::exit(2);
    }
}

fn run(args: &[String]) -> Result<(), String> {
    let (cmd, rest) = args.split_first().ok_or_else(usage)?;
    match cmd.as_str() {
        "tokens" => {
            let dir = rest.first().ok_or_else(usage)?;
            let n: usize = flag(rest, "--distinct")?.unwrap_or(20_000);
            tokens(Path::new(dir), n)
        }
        "envoy-config" => {
            let kind = rest.first().ok_or_else(usage)?;
            let wasm: PathBuf = flag(rest, "--wasm")?.unwrap_or_else(|| {
                PathBuf::from(if kind == "wasm_empty" {
                    "target/wasm32-wasip1/release/svcauth_empty_filter.wasm"
                } else {
                    "target/wasm32-wasip1/release/svcauth_filter.wasm"
                })
            });
            let wasm = wasm.display().to_string();
            let yaml = if kind == "soak" {
                let secret = std::env::var(soak::HMAC_ENV)
                    .map_err(|_| format!("soak: set {} to the HMAC secret", soak::HMAC_ENV))?;
                soak::envoy_config(&wasm, &secret)
            } else {
                let port: u16 = flag(rest, "--port")?.ok_or("--port is required")?;
                let admin: u16 = flag(rest, "--admin-port")?.ok_or("--admin-port is required")?;
                bench::envoy_config(kind, port, admin, &wasm)?
            };
            std::io::stdout()
                .write_all(yaml.as_bytes())
                .map_err(|e| e.to_string())
        }
        "decide-loop" => {
            let mode = rest.first().ok_or_else(usage)?;
            let iters: u64 = flag(rest, "--iters")?.unwrap_or(20_000);
            decide_loop(mode, iters)
        }
        _ => Err(usage()),
    }
}

fn usage() -> String {
    "usage: svcauth-bench tokens DIR [--distinct N] | envoy-config KIND --port P --admin-port A [--wasm PATH] | envoy-config soak [--wasm PATH] | decide-loop MODE [--iters N]".into()
}

/// The value after `name`, parsed.
fn flag<T: std::str::FromStr>(args: &[String], name: &str) -> Result<Option<T>, String> {
    let Some(i) = args.iter().position(|a| a == name) else {
        return Ok(None);
    };
    let v = args
        .get(i + 1)
        .ok_or_else(|| format!("{name} needs a value"))?;
    v.parse()
        .map(Some)
        .map_err(|_| format!("{name}: bad value {v:?}"))
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0))
}

/// Valid claims for the bench: the fixture issuer and audience, `orders:read`, a day to live.
fn claims(now: i64, scope: &str, jti: Option<usize>) -> Value {
    let mut c = json!({
        "iss": ISSUER,
        "sub": "orders-service",
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + TOKEN_LIFETIME,
        "scope": scope,
    });
    if let (Some(obj), Some(j)) = (c.as_object_mut(), jti) {
        obj.insert("jti".into(), json!(format!("bench-{j:08}")));
    }
    c
}

fn write_lines(path: &Path, lines: &[String]) -> Result<(), String> {
    let mut text = String::new();
    for l in lines {
        text.push_str(l);
        text.push('\n');
    }
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

/// `n` distinct tokens signed by `f`, minted on every core.
fn distinct(f: Fixture, now: i64, n: usize) -> Vec<String> {
    let threads = std::thread::available_parallelism().map_or(1, |p| p.get());
    let chunk = n.div_ceil(threads.max(1)).max(1);
    let mut out = Vec::with_capacity(n);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .step_by(chunk)
            .map(|start| {
                s.spawn(move || {
                    // Parse the key once: fixtures::token re-reads the PEM per token.
                    let key = fixtures::signing_key(f);
                    let mut h = Map::new();
                    h.insert("kid".into(), f.kid().into());
                    (start..(start + chunk).min(n))
                        .map(|i| {
                            let c = claims(now, "orders:read", Some(i));
                            mint::sign(&key, f.default_alg(), &h, &c).unwrap_or_default()
                        })
                        .collect::<Vec<String>>()
                })
            })
            .collect();
        for h in handles {
            if let Ok(v) = h.join() {
                out.extend(v);
            }
        }
    });
    out
}

/// Writes the token sets `scripts/bench` sends (`<scenario>.txt`, one token a line).
fn tokens(dir: &Path, n: usize) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let now = unix_now();
    let rs = fixtures::token(Fixture::RsaA, &claims(now, "orders:read", None));
    let es = fixtures::token(Fixture::Ec256, &claims(now, "orders:read", None));
    let hs = fixtures::hmac_token(Alg::HS256, &claims(now, "orders:read", None));
    // A well-formed RS256 token whose signature belongs to another token.
    let other = fixtures::token(Fixture::RsaA, &claims(now, "orders:write", None));
    let (Some((rs_input, _)), Some((_, other_sig))) = (rs.rsplit_once('.'), other.rsplit_once('.'))
    else {
        return Err("minting failed (a fixture key did not load)".into());
    };
    let bad = format!("{rs_input}.{other_sig}");
    let wrong_scope = fixtures::token(Fixture::RsaA, &claims(now, "billing:read", None));
    for t in [&rs, &es, &hs, &wrong_scope] {
        if t.is_empty() {
            return Err("minting failed (a fixture key did not load)".into());
        }
    }
    write_lines(&dir.join("rs256.txt"), &[rs])?;
    write_lines(&dir.join("es256.txt"), &[es])?;
    write_lines(&dir.join("hs256.txt"), &[hs])?;
    write_lines(&dir.join("bad-signature.txt"), &[bad])?;
    write_lines(&dir.join("wrong-scope.txt"), &[wrong_scope])?;
    write_lines(&dir.join("none.txt"), &[])?;
    let t0 = Instant::now();
    let rsd = distinct(Fixture::RsaA, now, n);
    let t1 = Instant::now();
    let esd = distinct(Fixture::Ec256, now, n);
    eprintln!(
        "svcauth-bench: minted {n} RS256 tokens in {:.1?}, {n} ES256 in {:.1?}",
        t1 - t0,
        t1.elapsed()
    );
    if rsd.len() != n || esd.len() != n || rsd.iter().chain(&esd).any(|t| t.is_empty()) {
        return Err("minting distinct tokens failed".into());
    }
    write_lines(&dir.join("rs256-distinct.txt"), &rsd)?;
    write_lines(&dir.join("es256-distinct.txt"), &esd)?;
    std::fs::write(
        dir.join("minted"),
        format!(
            "minted_at={now} expires_at={} distinct={n}\n",
            now + TOKEN_LIFETIME
        ),
    )
    .map_err(|e| e.to_string())?;
    Ok(())
}

/// Request headers as Envoy hands them to the filter.
fn headers(token: Option<&str>) -> Vec<(String, String)> {
    let mut h: Vec<(String, String)> = vec![
        (":authority".into(), "127.0.0.1:10000".into()),
        (":path".into(), PATH.into()),
        (":method".into(), "GET".into()),
        (":scheme".into(), "http".into()),
        ("user-agent".into(), "wrk".into()),
        ("x-forwarded-proto".into(), "http".into()),
        (
            "x-request-id".into(),
            "0f1c2d3e-4b5a-6978-8796-a5b4c3d2e1f0".into(),
        ),
    ];
    if let Some(t) = token {
        h.push(("authorization".into(), format!("Bearer {t}")));
    }
    h
}

/// Calls `decide` `iters` times and prints ns per call. `hit`: one token, cached after the
/// first call. `miss-*`: the cache is off, so every call parses and verifies the token.
fn decide_loop(mode: &str, iters: u64) -> Result<(), String> {
    let now = unix_now();
    let config = Config::from_json(svcauth_config().to_string().as_bytes(), &|n: &str| {
        (n == HMAC_ENV).then(|| HMAC_SECRET.to_string())
    })
    .map_err(|e| e.to_string())?;
    let c = claims(now, "orders:read", None);
    let (token, cache_size) = match mode {
        "hit" => (fixtures::token(Fixture::RsaA, &c), 1024),
        "miss-rs256" => (fixtures::token(Fixture::RsaA, &c), 0),
        "miss-es256" => (fixtures::token(Fixture::Ec256, &c), 0),
        "miss-hs256" => (fixtures::hmac_token(Alg::HS256, &c), 0),
        other => return Err(format!("unknown mode {other:?}")),
    };
    let h = headers(Some(&token));
    let mut cache = TokenCache::new(cache_size);
    if !matches!(decide(&config, &mut cache, &h, now), Decision::Allow(_)) {
        return Err(format!("{mode}: the bench token is not allowed"));
    }
    let start = Instant::now();
    let mut allowed = 0u64;
    for _ in 0..iters {
        if matches!(
            decide(&config, &mut cache, std::hint::black_box(&h), now),
            Decision::Allow(_)
        ) {
            allowed += 1;
        }
    }
    let el = start.elapsed();
    let per = el.as_nanos() / u128::from(iters.max(1));
    println!("decide-loop {mode}: {iters} calls, {allowed} allowed, {per} ns/call");
    Ok(())
}
