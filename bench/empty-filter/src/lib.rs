//! The floor of `scripts/bench` (kind `wasm_empty`): an empty filter on the same proxy-wasm Rust
//! SDK, toolchain, release profile and post-link step as svcauth. Its root context creates an
//! HTTP context whose request-headers callback returns `Continue`; nothing else is overridden.
//! Envoy with it minus Envoy with no filter is what the runtime and the SDK cost per request;
//! svcauth minus it is what svcauth itself adds.

#[cfg(target_arch = "wasm32")]
mod filter {
    use proxy_wasm::traits::{Context, HttpContext, RootContext};
    use proxy_wasm::types::{Action, ContextType, LogLevel};

    proxy_wasm::main! {{
        proxy_wasm::set_log_level(LogLevel::Info);
        proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root) });
    }}

    struct Root;

    impl Context for Root {}

    impl RootContext for Root {
        fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
            Some(Box::new(Http))
        }

        fn get_type(&self) -> Option<ContextType> {
            Some(ContextType::HttpContext)
        }
    }

    struct Http;

    impl Context for Http {}

    impl HttpContext for Http {
        fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
            Action::Continue
        }
    }
}
