//! The proxy-wasm adapter: the only code that talks to the host. Kept thin: the root context
//! compiles the config and owns what request contexts share; the HTTP context hands headers to
//! [`crate::decide::decide`] and applies the decision.

mod crypto;
mod http;
mod jwks;
mod metrics;
mod root;

use proxy_wasm::traits::RootContext;
use proxy_wasm::types::LogLevel;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    crate::jws::install_provider();
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(root::Root::default()) });
}}

/// Logs through the `log` crate and so the SDK's logger (the host's `proxy_log`), at most at the
/// VM's level ([`sync_log_level`]): a line the host would drop goes no further than the level
/// check. Release builds compile out `trace` and `debug` lines (`log`'s
/// `release_max_level_info`).
fn log(level: LogLevel, message: &str) {
    let level = match level {
        LogLevel::Trace => ::log::Level::Trace,
        LogLevel::Debug => ::log::Level::Debug,
        LogLevel::Info => ::log::Level::Info,
        LogLevel::Warn => ::log::Level::Warn,
        LogLevel::Error | LogLevel::Critical => ::log::Level::Error,
    };
    ::log::log!(level, "{message}");
}

/// Takes the host's log level for this VM (`proxy_get_log_level`), so that `log::` macros skip
/// (and never format) what Envoy would drop. Called at configure time and on the tick, as the
/// level can change at run time (Envoy's `/logging` admin endpoint).
pub(crate) fn sync_log_level() {
    if let Ok(level) = proxy_wasm::hostcalls::get_log_level() {
        proxy_wasm::set_log_level(level);
    }
}

/// The host clock in whole seconds since the epoch (0 if the host cannot tell, which makes
/// every token with an `exp` look valid for nobody: `exp` checks still run against 0 and
/// `nbf`/`iat` checks fail closed only if set, so this is logged loudly).
fn now_millis() -> Option<i64> {
    let t = proxy_wasm::hostcalls::get_current_time().ok()?;
    let d = t.duration_since(std::time::UNIX_EPOCH).ok()?;
    i64::try_from(d.as_millis()).ok()
}

fn now_seconds() -> Option<i64> {
    let t = proxy_wasm::hostcalls::get_current_time().ok()?;
    let d = t.duration_since(std::time::UNIX_EPOCH).ok()?;
    i64::try_from(d.as_secs()).ok()
}
