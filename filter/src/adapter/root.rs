//! The root context: compiles the plugin configuration in `on_configure` (refusing a bad one,
//! so Envoy refuses the filter), hands each request context the shared state, and keeps remote
//! key sets fresh on a tick.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType, LogLevel};

use super::http::{self, Http};
use super::jwks::{self, RemoteState};
use super::metrics::Metrics;
use super::{log, now_seconds};
use crate::cache::TokenCache;
use crate::config::Config;
use crate::keys::KeyStore;

/// A request paused until its provider's keys are refetched (unknown `kid`).
pub struct Waiter {
    pub context_id: u32,
    pub provider: usize,
    /// Host time (s) after which it is decided on whatever keys there are.
    pub deadline: i64,
    pub headers: Vec<(String, String)>,
}

/// What every context of this VM shares.
pub struct Shared {
    pub config: Config,
    pub cache: RefCell<TokenCache>,
    pub metrics: Metrics,
    /// Fetched keys of remote providers.
    pub keys: RefCell<KeyStore>,
    /// Per provider: remote fetch state (`None` for providers without `remote_jwks`).
    pub remote: RefCell<Vec<Option<RemoteState>>>,
    pub waiting: RefCell<Vec<Waiter>>,
    /// Identifies this VM in shared-data leases.
    pub nonce: u64,
    /// Signature verification (host-native where possible).
    pub crypto: super::crypto::HostCrypto,
}

/// How often the root context looks at remote key sets.
const TICK: Duration = Duration::from_millis(500);

#[derive(Default)]
pub struct Root {
    shared: Option<Rc<Shared>>,
    /// In-flight scheduled fetches: call token → provider.
    pending: HashMap<u32, usize>,
}

impl Context for Root {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        _headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        let (Some(shared), Some(p)) = (self.shared.clone(), self.pending.remove(&token_id)) else {
            return;
        };
        let now = now_seconds().unwrap_or(0);
        jwks::on_response(&shared, p, body_size, now);
        http::resume_waiters(&shared, Some(p), now);
    }
}

fn vm_nonce() -> u64 {
    let mut b = [0u8; 8];
    if getrandom::fill(&mut b).is_err() {
        return 0;
    }
    u64::from_le_bytes(b)
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        super::sync_log_level();
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
        let config = match Config::from_json(&bytes, &env) {
            Ok(c) => c,
            Err(e) => {
                log(
                    LogLevel::Error,
                    &format!("svcauth: invalid configuration: {e}"),
                );
                return false;
            }
        };
        let remote: Vec<Option<RemoteState>> = config
            .providers
            .iter()
            .map(|p| p.remote_jwks.as_ref().map(|r| RemoteState::new(p, r)))
            .collect();
        let any_remote = remote.iter().any(Option::is_some);
        log(
            LogLevel::Info,
            &format!(
                "svcauth: configured {} provider(s), {} rule(s)",
                config.providers.len(),
                config.rules.len()
            ),
        );
        let metrics = Metrics::define(&config);
        let shared = Rc::new(Shared {
            cache: RefCell::new(TokenCache::new(config.cache_max_entries)),
            crypto: super::crypto::HostCrypto::new(config.host_crypto, &metrics),
            metrics,
            keys: RefCell::new(KeyStore::new(config.providers.len())),
            remote: RefCell::new(remote),
            waiting: RefCell::new(Vec::new()),
            nonce: vm_nonce(),
            config,
        });
        self.shared = Some(shared);
        self.pending.clear();
        if any_remote && hostcalls::set_tick_period(TICK).is_err() {
            log(
                LogLevel::Error,
                "svcauth: invalid configuration: remote_jwks: the host refused a timer",
            );
            return false;
        }
        true
    }

    fn on_tick(&mut self) {
        super::sync_log_level();
        let Some(shared) = self.shared.clone() else {
            return;
        };
        let Some(now) = now_seconds() else {
            return;
        };
        for p in 0..shared.config.providers.len() {
            if jwks::remote(&shared, p).is_none() {
                continue;
            }
            if jwks::sync(&shared, p) {
                http::resume_waiters(&shared, Some(p), now);
            }
            if let Some(at) = shared
                .keys
                .try_borrow()
                .ok()
                .and_then(|k| k.get(p).map(|l| l.fetched_at))
            {
                shared.metrics.jwks_age(p, now.saturating_sub(at));
            }
            if jwks::due(&shared, p, now) {
                if let Some(token) = jwks::start_fetch(&shared, p, now) {
                    self.pending.insert(token, p);
                }
            }
        }
        http::expire_waiters(&shared, now);
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Http::new(self.shared.clone(), context_id)))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
