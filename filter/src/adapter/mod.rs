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

/// Logs through the host; a failing log call has nowhere to be reported.
fn log(level: LogLevel, message: &str) {
    let _ = proxy_wasm::hostcalls::log(level, message);
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
