//! The proxy-wasm side of the seam, compiled only for `wasm32`: [`WasmHost`] (the only code
//! that calls `proxy_wasm::hostcalls`) and the SDK's root and HTTP context traits, each a few
//! lines that hand over to `root` and `request`.
//!
//! Uses: `host`, `root`, `request`, and the `proxy-wasm` SDK.

use std::ptr::null_mut;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType, MetricType, Status};

use super::body;
use super::host::{Foreign, Headers, Host, Level, SharedError};
use super::request::{self, Outcome, Stream};
use super::root::{Root, TICK_MS};
use super::state::Shared;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    crate::token::jws::install_provider();
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(WasmRoot::default()) });
}}

#[link(wasm_import_module = "env")]
extern "C" {
    // The same import the SDK's `get_map_bytes` uses; called directly so that the host's one
    // serialized buffer is parsed in place instead of copied into a `String` per name and value.
    fn proxy_get_header_map_pairs(
        map_type: MapType,
        return_map_data: *mut *mut u8,
        return_map_size: *mut usize,
    ) -> Status;
}

/// The host, through proxy-wasm.
#[derive(Debug, Default, Clone, Copy)]
pub struct WasmHost;

fn level_of(l: LogLevel) -> Level {
    match l {
        LogLevel::Trace => Level::Trace,
        LogLevel::Debug => Level::Debug,
        LogLevel::Info => Level::Info,
        LogLevel::Warn => Level::Warn,
        LogLevel::Error => Level::Error,
        LogLevel::Critical => Level::Critical,
    }
}

fn log_level_of(l: Level) -> LogLevel {
    match l {
        Level::Trace => LogLevel::Trace,
        Level::Debug => LogLevel::Debug,
        Level::Info => LogLevel::Info,
        Level::Warn => LogLevel::Warn,
        Level::Error => LogLevel::Error,
        Level::Critical => LogLevel::Critical,
    }
}

impl Host for WasmHost {
    fn now_millis(&self) -> Option<i64> {
        let t = hostcalls::get_current_time().ok()?;
        let d = t.duration_since(UNIX_EPOCH).ok()?;
        i64::try_from(d.as_millis()).ok()
    }

    fn log_level(&self) -> Level {
        hostcalls::get_log_level().map_or(Level::Info, level_of)
    }

    /// Through the `log` crate and so the SDK's logger (the host's `proxy_log`). Callers check
    /// the VM's level first (`Shared::log`), so a line the host would drop is never built;
    /// release builds compile out `trace` and `debug` (`log`'s `release_max_level_info`).
    fn log(&self, level: Level, message: &str) {
        let level = match level {
            Level::Trace => log::Level::Trace,
            Level::Debug => log::Level::Debug,
            Level::Info => log::Level::Info,
            Level::Warn => log::Level::Warn,
            Level::Error | Level::Critical => log::Level::Error,
        };
        log::log!(level, "{message}");
    }

    fn random_u64(&self) -> Option<u64> {
        let mut b = [0u8; 8];
        getrandom::fill(&mut b).ok()?;
        Some(u64::from_le_bytes(b))
    }

    fn request_headers(&self) -> Headers {
        let mut data: *mut u8 = null_mut();
        let mut size: usize = 0;
        // SAFETY: the host writes a pointer to `size` bytes it allocated through this module's
        // `proxy_on_memory_allocate` (the SDK's, a `Vec<u8>` of that capacity), which this
        // function then owns, exactly as the SDK's own `get_map_bytes` takes it.
        let status = unsafe {
            proxy_get_header_map_pairs(MapType::HttpRequestHeaders, &mut data, &mut size)
        };
        if status != Status::Ok || data.is_null() {
            return Headers::default();
        }
        // SAFETY: see above; `data` is non-null and owns `size` initialised bytes.
        let buf = unsafe { Vec::from_raw_parts(data, size, size) };
        Headers::parse(buf).unwrap_or_default()
    }

    fn set_request_header(&self, name: &str, value: &str) {
        let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, name, Some(value));
    }

    fn remove_request_header(&self, name: &str) {
        let _ = hostcalls::remove_map_value(MapType::HttpRequestHeaders, name);
    }

    fn request_body(&self, start: usize, size: usize) -> Option<Vec<u8>> {
        match hostcalls::get_buffer(BufferType::HttpRequestBody, start, size) {
            Ok(Some(b)) => Some(b),
            Ok(None) => Some(Vec::new()),
            Err(_) => None,
        }
    }

    fn set_property(&self, name: &str, value: &str) {
        let _ = hostcalls::set_property(vec![name], Some(value.as_bytes()));
    }

    fn send_reply(&self, status: u32, headers: &[(&str, &str)], body: &[u8]) {
        let _ = hostcalls::send_http_response(status, headers.to_vec(), Some(body));
    }

    fn select_context(&self, context_id: u32) -> bool {
        hostcalls::set_effective_context(context_id).is_ok()
    }

    fn resume_request(&self) {
        let _ = hostcalls::resume_http_request();
    }

    fn get_shared(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), ()> {
        hostcalls::get_shared_data(key).map_err(|_| ())
    }

    fn set_shared(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SharedError> {
        hostcalls::set_shared_data(key, Some(value), cas).map_err(|e| match e {
            Status::CasMismatch => SharedError::CasMismatch,
            _ => SharedError::Other,
        })
    }

    fn enqueue(&self, queue: u32, data: &[u8]) -> bool {
        hostcalls::enqueue_shared_queue(queue, Some(data)).is_ok()
    }

    fn dispatch_get(
        &self,
        cluster: &str,
        authority: &str,
        path: &str,
        timeout_ms: u64,
    ) -> Result<u32, String> {
        hostcalls::dispatch_http_call(
            cluster,
            vec![
                (":method", "GET"),
                (":path", path),
                (":authority", authority),
                ("accept", "application/json"),
            ],
            None,
            vec![],
            Duration::from_millis(timeout_ms),
        )
        .map_err(|e| format!("{e:?}"))
    }

    fn call_status(&self) -> Option<String> {
        hostcalls::get_map_value(MapType::HttpCallResponseHeaders, ":status")
            .ok()
            .flatten()
    }

    fn call_body(&self, size: usize) -> Option<Vec<u8>> {
        match hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, size) {
            Ok(Some(b)) => Some(b),
            Ok(None) => Some(Vec::new()),
            Err(_) => None,
        }
    }

    fn call_foreign(&self, name: &str, args: &[u8]) -> Foreign {
        match hostcalls::call_foreign_function(name, Some(args)) {
            Ok(answer) => Foreign::Answer(answer),
            Err(Status::BadArgument) => Foreign::BadArgument,
            Err(_) => Foreign::Unavailable,
        }
    }

    fn increment(&self, id: u32, delta: u64) {
        let _ = hostcalls::increment_metric(id, i64::try_from(delta).unwrap_or(i64::MAX));
    }

    fn record(&self, id: u32, value: u64) {
        let _ = hostcalls::record_metric(id, value);
    }
}

#[derive(Default)]
struct WasmRoot(Root);

impl Context for WasmRoot {
    fn on_http_call_response(&mut self, token: u32, _headers: usize, body: usize, _t: usize) {
        self.0.call_response(token, body);
    }
}

/// The root context is dropped in `proxy_on_delete` when its VM stops: the last counts reach
/// the host then. (Not in `proxy_on_done`: the host calls that once per request too, and the
/// module does not export it.)
impl Drop for WasmRoot {
    fn drop(&mut self) {
        self.0.done();
    }
}

impl RootContext for WasmRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let host = WasmHost;
        proxy_wasm::set_log_level(log_level_of(host.log_level()));
        let bytes = match hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX) {
            Ok(Some(b)) => b,
            Ok(None) => {
                host.log(Level::Error, "svcauth: invalid configuration: config: empty (a JSON object with providers and rules is required)");
                return false;
            }
            Err(_) => {
                host.log(
                    Level::Error,
                    "svcauth: invalid configuration: config: the host gave no plugin configuration",
                );
                return false;
            }
        };
        let env = |name: &str| std::env::var(name).ok();
        let define = |name: &str, gauge: bool| {
            let kind = if gauge {
                MetricType::Gauge
            } else {
                MetricType::Counter
            };
            hostcalls::define_metric(kind, name).ok()
        };
        let queue = |name: &str| hostcalls::register_shared_queue(name).ok();
        if let Err(e) = self
            .0
            .configure(Rc::new(host), &bytes, &env, &define, &queue)
        {
            host.log(
                Level::Error,
                &format!("svcauth: invalid configuration: {e}"),
            );
            return false;
        }
        // The tick flushes the counters (and looks after remote key sets).
        if hostcalls::set_tick_period(Duration::from_millis(TICK_MS)).is_err() {
            host.log(
                Level::Error,
                "svcauth: invalid configuration: the host refused a timer",
            );
            return false;
        }
        true
    }

    fn on_tick(&mut self) {
        // The level can change at run time (Envoy's /logging admin endpoint).
        let level = WasmHost.log_level();
        proxy_wasm::set_log_level(log_level_of(level));
        self.0.tick(level);
    }

    fn on_queue_ready(&mut self, queue_id: u32) {
        let mut dequeue = || hostcalls::dequeue_shared_queue(queue_id).ok().flatten();
        self.0.queue_ready(queue_id, &mut dequeue);
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(WasmHttp {
            shared: self.0.shared.clone(),
            stream: Stream {
                id: context_id,
                ..Stream::default()
            },
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct WasmHttp {
    shared: Option<Rc<Shared>>,
    stream: Stream,
}

/// The SDK drops a stream's context when the host deletes it (`proxy_on_delete`).
impl Drop for WasmHttp {
    fn drop(&mut self) {
        if let Some(shared) = &self.shared {
            body::forget(shared, &self.stream);
        }
    }
}

/// The host's action for an outcome: `Pause` is StopIteration for headers (held with
/// `allow_on_headers_stop_iteration`, else Envoy stops all iteration) and trailers, and
/// StopIterationAndBuffer for a body part.
fn action(o: Outcome) -> Action {
    match o {
        Outcome::Continue => Action::Continue,
        Outcome::Pause => Action::Pause,
    }
}

impl Context for WasmHttp {
    fn on_http_call_response(&mut self, token: u32, _headers: usize, body: usize, _t: usize) {
        if let Some(shared) = &self.shared {
            request::on_stream_call_response(shared, &mut self.stream, token, body);
        }
    }
}

impl HttpContext for WasmHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let Some(shared) = &self.shared else {
            // No valid configuration: fail closed.
            WasmHost.send_reply(
                503,
                &[("content-type", "application/json")],
                br#"{"error":"svcauth_not_configured"}"#,
            );
            return Action::Pause;
        };
        self.stream.headers_only = end_of_stream;
        action(request::on_request_headers(shared, &mut self.stream))
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        match &self.shared {
            Some(shared) => action(body::on_request_body(
                shared,
                &mut self.stream,
                body_size,
                end_of_stream,
            )),
            // Answered at its headers.
            None => Action::Pause,
        }
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        match &self.shared {
            Some(shared) => action(body::on_request_trailers(shared, &mut self.stream)),
            None => Action::Pause,
        }
    }

    fn on_log(&mut self) {
        let Some(shared) = &self.shared else {
            return;
        };
        if self.stream.audit.is_none() {
            return;
        }
        let tp = hostcalls::get_map_value(MapType::HttpRequestHeaders, "traceparent")
            .ok()
            .flatten();
        request::on_log(shared, &mut self.stream, tp);
    }
}
