//! A real Envoy process per test: started from a bootstrap in a fresh run directory, waited on
//! until ready, killed and reaped on drop (also when the test panics).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::bootstrap::{bootstrap, Opts, LISTENER};
use crate::client::{http, try_http, Response};

/// How long Envoy may take to become ready.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `--mode validate` may take.
pub const VALIDATE_TIMEOUT: Duration = Duration::from_secs(60);
/// Lines of log shown when something fails.
const TAIL_LINES: usize = 60;

/// A fresh directory for one Envoy run (bootstrap, logs, admin address). Removed on drop,
/// except when the thread is panicking: then it is kept for inspection and its path printed.
pub struct RunDir {
    path: PathBuf,
}

impl RunDir {
    /// Creates `$TMPDIR/svcauth-tests/<pid>-<n>-<nanos>`.
    pub fn new() -> RunDir {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let path = std::env::temp_dir()
            .join("svcauth-tests")
            .join(format!("{}-{n}-{nanos}", std::process::id()));
        fs::create_dir_all(&path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        RunDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    fn read(&self, name: &str) -> String {
        fs::read(self.join(name))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }
}

impl Default for RunDir {
    fn default() -> Self {
        RunDir::new()
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("svcauth-tests: kept run dir {}", self.path.display());
        } else {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// A running Envoy.
pub struct Envoy {
    child: Child,
    dir: RunDir,
    admin_port: u16,
    port: u16,
}

impl Envoy {
    /// Starts Envoy (`--concurrency 1`) with `bootstrap_yaml`; returns once `/ready` answers 200.
    /// Panics with the log tail if it exits or is not ready within [`READY_TIMEOUT`].
    pub fn start(bootstrap_yaml: &str) -> Envoy {
        Envoy::start_with(bootstrap_yaml, 1)
    }

    /// [`Envoy::start`] with `concurrency` worker threads.
    pub fn start_with(bootstrap_yaml: &str, concurrency: u32) -> Envoy {
        let dir = RunDir::new();
        let child = spawn(&dir, bootstrap_yaml, concurrency);
        let mut envoy = Envoy {
            child,
            dir,
            admin_port: 0,
            port: 0,
        };
        envoy.wait_ready(READY_TIMEOUT);
        envoy.port = envoy
            .listener_port(LISTENER)
            .or_else(|| envoy.listener_ports().into_iter().next().map(|(_, p)| p))
            .unwrap_or_else(|| envoy.fail("Envoy is ready but has no listener"));
        envoy
    }

    /// Starts Envoy with svcauth configured by `plugin_config_json` ([`bootstrap`]) and
    /// `opts.concurrency` workers.
    pub fn start_plugin(plugin_config_json: &str, opts: &Opts) -> Envoy {
        Envoy::start_with(&bootstrap(plugin_config_json, opts), opts.concurrency)
    }

    /// Starts Envoy with a bootstrap that must not come up serving (e.g. a plugin config that
    /// `on_configure` refuses), and returns its combined log and output.
    ///
    /// Returns as soon as Envoy has exited (what Envoy 1.40 does for a static listener whose
    /// wasm plugin fails to configure with `fail_open: false`), or its log shows that the wasm
    /// plugin failed to load while it keeps running (then it is killed). Panics if neither
    /// happens within `timeout`.
    pub fn start_expect_failure(bootstrap_yaml: &str, timeout: Duration) -> String {
        const MARKERS: [&str; 4] = [
            "Unable to create Wasm",
            "failed to load",
            "Failed to configure base Wasm plugin",
            "Wasm VM failed",
        ];
        let dir = RunDir::new();
        let child = spawn(&dir, bootstrap_yaml, 1);
        let mut envoy = Envoy {
            child,
            dir,
            admin_port: 0,
            port: 0,
        };
        let deadline = Instant::now() + timeout;
        loop {
            if envoy.exited() {
                return envoy.combined_log();
            }
            let log = envoy.log();
            if MARKERS.iter().any(|m| log.contains(m)) {
                // Give Envoy a moment to exit by itself, so the output is complete.
                let _ = crate::wait_until(Duration::from_secs(2), || envoy.exited());
                return envoy.combined_log();
            }
            if Instant::now() >= deadline {
                envoy.fail(&format!("expected Envoy to fail, but after {timeout:?} it runs and logged no wasm failure"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs `envoy --mode validate` on `bootstrap_yaml`; returns (success, stdout + stderr).
    pub fn validate(bootstrap_yaml: &str) -> (bool, String) {
        let dir = RunDir::new();
        let config = dir.join("bootstrap.yaml");
        fs::write(&config, bootstrap_yaml).unwrap();
        let out = fs::File::create(dir.join("output.txt")).unwrap();
        let err = out.try_clone().unwrap();
        let mut child = Command::new(crate::envoy_bin())
            .arg("--mode")
            .arg("validate")
            .arg("-c")
            .arg(&config)
            .args(["-l", "info", "--component-log-level", "wasm:debug"])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", crate::envoy_bin().display()));
        let deadline = Instant::now() + VALIDATE_TIMEOUT;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut output = dir.read("output.txt");
        if status.is_none() {
            output.push_str(&format!(
                "\nsvcauth-tests: envoy --mode validate timed out after {VALIDATE_TIMEOUT:?}\n"
            ));
        }
        (status.is_some_and(|s| s.success()), output)
    }

    /// The port of the test listener (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The admin port (127.0.0.1).
    pub fn admin_port(&self) -> u16 {
        self.admin_port
    }

    /// The OS process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The run directory (bootstrap.yaml, envoy.log, stdout.txt, stderr.txt, admin).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The Envoy log file (`--log-path`) so far.
    pub fn log(&self) -> String {
        self.dir.read("envoy.log")
    }

    /// The log file followed by Envoy's stdout and stderr (where fatal startup errors go).
    pub fn combined_log(&self) -> String {
        format!(
            "{}\n--- envoy stdout ---\n{}\n--- envoy stderr ---\n{}",
            self.log(),
            self.dir.read("stdout.txt"),
            self.dir.read("stderr.txt")
        )
    }

    /// Waits until the log contains `needle`; returns the log. Panics with the log tail on timeout.
    pub fn wait_log_contains(&self, needle: &str, timeout: Duration) -> String {
        let mut log = String::new();
        if crate::wait_until(timeout, || {
            log = self.log();
            log.contains(needle)
        }) {
            return log;
        }
        self.fail(&format!(
            "log did not contain {needle:?} within {timeout:?}"
        ))
    }

    /// `GET` an admin path (e.g. `/stats?filter=svcauth`).
    pub fn admin(&self, path: &str) -> Response {
        http(self.admin_port, "GET", path, &[])
    }

    /// The admin `/stats` text.
    pub fn stats(&self) -> String {
        let resp = self.admin("/stats");
        assert_eq!(resp.status, 200, "admin /stats: {}", resp.body);
        resp.body
    }

    /// Waits until svcauth's counters have reached Envoy: the filter keeps them in its VM and
    /// flushes them on its 500 ms tick, so a count is at `/stats` at most that much later.
    pub fn settle_counters(&self) {
        std::thread::sleep(Duration::from_millis(1100));
    }

    /// The value of counter or gauge `name` in `/stats`, if present.
    pub fn stat(&self, name: &str) -> Option<u64> {
        let resp = self.admin(&format!("/stats?filter=^{}$", regex_escape(name)));
        resp.body.lines().find_map(|line| {
            let (n, v) = line.split_once(": ")?;
            if n == name {
                v.trim().parse().ok()
            } else {
                None
            }
        })
    }

    /// Ports of all active listeners, by name (admin `/listeners?format=json`).
    pub fn listener_ports(&self) -> Vec<(String, u16)> {
        let resp = self.admin("/listeners?format=json");
        if resp.status != 200 {
            return Vec::new();
        }
        let json = resp.json();
        let Some(list) = json["listener_statuses"].as_array() else {
            return Vec::new();
        };
        list.iter()
            .filter_map(|l| {
                let name = l["name"].as_str()?.to_string();
                let port = l["local_address"]["socket_address"]["port_value"].as_u64()?;
                Some((name, u16::try_from(port).ok()?))
            })
            .collect()
    }

    /// The port of listener `name`, if it is active.
    pub fn listener_port(&self, name: &str) -> Option<u16> {
        self.listener_ports()
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, p)| p)
    }

    fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Waits until the admin address file names a port whose `/ready` answers 200. The file is
    /// re-read on every try, so a half-written file cannot leave us on a wrong port.
    fn wait_ready(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let text = self.dir.read("admin");
            let port = text
                .trim()
                .rsplit(':')
                .next()
                .and_then(|p| p.parse::<u16>().ok());
            if let Some(port) = port {
                if try_http(port, "GET", "/ready").is_ok_and(|r| r.status == 200) {
                    self.admin_port = port;
                    return;
                }
            }
            self.check_alive(deadline, "become ready");
        }
    }

    fn check_alive(&mut self, deadline: Instant, what: &str) {
        if let Ok(Some(status)) = self.child.try_wait() {
            self.fail(&format!("Envoy exited ({status}) before it could {what}"));
        }
        if Instant::now() >= deadline {
            self.fail(&format!("Envoy did not {what} within {READY_TIMEOUT:?}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }

    /// Panics with `msg` and the run directory; the log tail is printed when `self` drops.
    fn fail(&self, msg: &str) -> ! {
        panic!(
            "{msg} (run dir {}; Envoy's log tail follows)",
            self.dir.path().display()
        )
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "--- Envoy (pid {}) log tail, run dir {} ---\n{}",
                self.child.id(),
                self.dir.path().display(),
                tail(&self.combined_log(), TAIL_LINES)
            );
        }
    }
}

fn spawn(dir: &RunDir, bootstrap_yaml: &str, concurrency: u32) -> Child {
    let bin = crate::envoy_bin();
    let config = dir.join("bootstrap.yaml");
    fs::write(&config, bootstrap_yaml).unwrap();
    let stdout = fs::File::create(dir.join("stdout.txt")).unwrap();
    let stderr = fs::File::create(dir.join("stderr.txt")).unwrap();
    Command::new(&bin)
        .arg("-c")
        .arg(&config)
        // A unique base id per process; no hot restart, so no shared memory left in /dev/shm.
        .args(["--use-dynamic-base-id", "--disable-hot-restart"])
        .arg("--concurrency")
        .arg(concurrency.to_string())
        .args(["-l", "info", "--component-log-level", "wasm:debug"])
        // Flush the log file promptly so tests can wait on log lines.
        .args(["--file-flush-interval-msec", "50"])
        .arg("--log-path")
        .arg(dir.join("envoy.log"))
        .arg("--admin-address-path")
        .arg(dir.join("admin"))
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()))
}

/// The last `n` lines of `text`, leaving out the long lists Envoy prints at startup
/// (extensions, header maps: the lines indented after their source location).
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.contains("]   ")).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}
