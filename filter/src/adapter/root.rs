//! The root context: compiles the plugin configuration in `on_configure` (refusing a bad one,
//! so Envoy refuses the filter) and hands each request context the shared state.

use std::cell::RefCell;
use std::rc::Rc;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType, LogLevel};

use super::http::Http;
use super::log;
use super::metrics::Metrics;
use crate::cache::TokenCache;
use crate::config::Config;

/// What every request context of this VM shares.
pub struct Shared {
    pub config: Config,
    pub cache: RefCell<TokenCache>,
    pub metrics: Metrics,
}

#[derive(Default)]
pub struct Root {
    shared: Option<Rc<Shared>>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes = match hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX) {
            Ok(Some(b)) => b,
            Ok(None) => {
                log(LogLevel::Error, "svcauth: invalid configuration: config: empty (a JSON object with providers and rules is required)");
                return false;
            }
            Err(_) => {
                log(
                    LogLevel::Error,
                    "svcauth: invalid configuration: config: the host gave no plugin configuration",
                );
                return false;
            }
        };
        let env = |name: &str| std::env::var(name).ok();
        match Config::from_json(&bytes, &env) {
            Ok(config) => {
                let cache = RefCell::new(TokenCache::new(config.cache_max_entries));
                log(
                    LogLevel::Info,
                    &format!(
                        "svcauth: configured {} provider(s), {} rule(s)",
                        config.providers.len(),
                        config.rules.len()
                    ),
                );
                self.shared = Some(Rc::new(Shared {
                    config,
                    cache,
                    metrics: Metrics::define(),
                }));
                true
            }
            Err(e) => {
                log(
                    LogLevel::Error,
                    &format!("svcauth: invalid configuration: {e}"),
                );
                false
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Http {
            shared: self.shared.clone(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
