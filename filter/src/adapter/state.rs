//! What every context of one VM shares: the compiled configuration, the token cache, the
//! counters, the fetched keys and their fetch state, the waiting requests, and the host.
//! Built once per `on_configure` and shared read-only (interior cells for what changes).
//!
//! Uses: `host`, `counters`, `replies`, `waiters`, `crypto`, `remote`
//! and the core's `config`, `cache`, `keys`.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use super::counters::Counters;
use super::crypto::HostCrypto;
use super::host::{Host, Ids, Level};
use super::remote::RemoteState;
use super::replies::Replies;
use super::waiters::Waiters;
use crate::cache::TokenCache;
use crate::config::Config;
use crate::token::keys::KeyStore;

pub struct Shared {
    pub host: Rc<dyn Host>,
    pub config: Config,
    pub cache: RefCell<TokenCache>,
    pub counters: Rc<Counters>,
    pub replies: Replies,
    /// Fetched keys of remote providers.
    pub keys: RefCell<KeyStore>,
    /// Per provider: remote fetch state (`None` for providers without `remote_jwks`).
    pub remote: RefCell<Vec<Option<RemoteState>>>,
    pub waiting: RefCell<Waiters>,
    /// Requests held until their body's signature is checked.
    pub held: RefCell<super::signed::Held>,
    /// Identifies this VM in shared-data leases and names its refetch queue.
    pub nonce: u64,
    /// This VM's shared queue to its root context: a request context enqueues a provider
    /// index there to have the root context dispatch the unknown-`kid` refetch, so that the
    /// fetch belongs to the root and a client that resets cannot cancel it for the others.
    pub refetch_queue: Option<u32>,
    /// Signature verification (host-native where possible).
    pub crypto: HostCrypto,
    /// Trace and request ids, without a host call per request.
    pub ids: Ids,
    /// The host's log level, read at configure time and on every tick: a line the host would
    /// drop is never built.
    pub log_level: Cell<Level>,
}

impl Shared {
    /// Compiles the state for `config` on `host`. `define` defines a counter or gauge.
    pub fn new(
        host: Rc<dyn Host>,
        config: Config,
        define: &super::counters::Define<'_>,
        nonce: u64,
        refetch_queue: Option<u32>,
    ) -> Shared {
        let counters = Rc::new(Counters::define(&config, define));
        let remote = config
            .providers
            .iter()
            .map(|p| p.remote_jwks.as_ref().map(|r| RemoteState::new(p, r)))
            .collect();
        let seed = host.random_u64().unwrap_or(nonce ^ 0x5bd1_e995);
        Shared {
            cache: RefCell::new(TokenCache::new(config.cache_max_entries)),
            crypto: HostCrypto::new(config.host_crypto, Rc::clone(&host), Rc::clone(&counters)),
            counters,
            replies: Replies::new(&config),
            keys: RefCell::new(KeyStore::new(config.providers.len())),
            remote: RefCell::new(remote),
            waiting: RefCell::new(Waiters::default()),
            held: RefCell::new(super::signed::Held::default()),
            nonce,
            refetch_queue,
            ids: Ids::new(seed),
            log_level: Cell::new(host.log_level()),
            host,
            config,
        }
    }

    /// Logs `message()` if the host keeps lines of `level`; the message is built only then.
    pub fn log(&self, level: Level, message: impl FnOnce() -> String) {
        if level >= self.log_level.get() {
            self.host.log(level, &message());
        }
    }
}
