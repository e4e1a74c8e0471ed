//! The root context's logic: compile the plugin configuration (refusing a bad one, so Envoy
//! refuses the filter), and on every tick flush the counters, refresh remote key sets, and
//! answer requests whose wait for keys has run out; dispatch the refetches request contexts
//! ask for through the VM's queue.
//!
//! Uses: `state`, `host`, `crypto` (the signature backends' check), `jwks`, `request` (to
//! answer waiting requests), the core's `config`.

use std::collections::HashMap;
use std::rc::Rc;

use super::counters::Define;
use super::host::{Host, Level};
use super::jwks;
use super::request;
use super::state::Shared;
use crate::config::Config;

/// How often the root context ticks: counters are flushed at least this often.
pub const TICK_MS: u64 = 500;

/// The root context's own state.
#[derive(Default)]
pub struct Root {
    pub shared: Option<Rc<Shared>>,
    /// In-flight fetches of this root context: call token → provider.
    pub pending: HashMap<u32, usize>,
}

impl Root {
    /// Compiles `bytes` (the plugin configuration) into this VM's state. `Err` names the field;
    /// the caller logs it and refuses the configuration.
    pub fn configure(
        &mut self,
        host: Rc<dyn Host>,
        bytes: &[u8],
        env: &dyn Fn(&str) -> Option<String>,
        define: &Define<'_>,
        register_queue: &dyn Fn(&str) -> Option<u32>,
    ) -> Result<(), String> {
        let config = Config::from_json(bytes, env).map_err(|e| e.to_string())?;
        // A reconfigured VM keeps its nonce (its leases and queue stay its own).
        let nonce = match &self.shared {
            Some(s) => s.nonce,
            None => host.random_u64().unwrap_or(0),
        };
        let any_remote = config.providers.iter().any(|p| p.remote_jwks.is_some());
        // One queue per VM: a name shared by several VMs delivers to the last to register it.
        let queue = if any_remote {
            register_queue(&format!("svcauth.refetch.{nonce:016x}"))
        } else {
            None
        };
        let shared = Shared::new(host, config, define, nonce, queue);
        super::crypto::check_backends(
            &shared.config,
            &shared.crypto,
            &*shared.host,
            crate::token::alg::RSA_EC_IN_VM,
        )?;
        super::signed::prepare(&*shared.host, &shared.config);
        shared.log(Level::Info, || {
            format!(
                "svcauth: configured {} provider(s), {} rule(s)",
                shared.config.providers.len(),
                shared.config.rules.len()
            )
        });
        if let Some(old) = self.shared.replace(Rc::new(shared)) {
            // Counts of the previous configuration still reach the host.
            old.counters.flush(&*old.host);
        }
        self.pending.clear();
        Ok(())
    }

    /// Every tick: counters, remote keys, expired waiters.
    pub fn tick(&mut self, log_level: Level) {
        let Some(shared) = self.shared.clone() else {
            return;
        };
        shared.log_level.set(log_level);
        shared.counters.flush(&*shared.host);
        let Some(now) = shared.host.now_millis().map(|ms| ms / 1000) else {
            return;
        };
        for p in 0..shared.config.providers.len() {
            if jwks::remote(&shared, p).is_none() {
                continue;
            }
            if jwks::sync(&shared, p) {
                request::resume_waiters(&shared, Some(p), now);
            }
            let fetched_at = shared
                .keys
                .try_borrow()
                .ok()
                .and_then(|k| k.get(p).map(|l| l.fetched_at));
            if let Some(at) = fetched_at {
                shared
                    .counters
                    .jwks_age(&*shared.host, p, now.saturating_sub(at));
            }
            let fetching = self.pending.values().any(|&q| q == p);
            if !fetching && jwks::due(&shared, p, now) {
                if let Some(token) = jwks::start_fetch(&shared, p, now) {
                    self.pending.insert(token, p);
                }
            }
        }
        request::expire_waiters(&shared, now);
        super::body::expire_held(&shared, now);
    }

    /// A request context asked for refetches (provider indices on the VM's queue).
    pub fn queue_ready(&mut self, queue_id: u32, dequeue: &mut dyn FnMut() -> Option<Vec<u8>>) {
        let Some(shared) = self.shared.clone() else {
            return;
        };
        if shared.refetch_queue != Some(queue_id) {
            return;
        }
        let now = shared.host.now_millis().map_or(0, |ms| ms / 1000);
        // Bounded: one entry per provider is useful, a few more are drained and ignored.
        let most = shared.config.providers.len().saturating_mul(4).max(4);
        for _ in 0..most {
            let Some(item) = dequeue() else {
                break;
            };
            let Some(p) = std::str::from_utf8(&item)
                .ok()
                .and_then(|t| t.parse::<usize>().ok())
            else {
                continue;
            };
            if jwks::remote(&shared, p).is_none() || self.pending.values().any(|&q| q == p) {
                continue;
            }
            match jwks::start_fetch(&shared, p, now) {
                Some(token) => {
                    self.pending.insert(token, p);
                }
                // Refused at once (logged and counted): answer the waiters on the keys there are.
                None => request::resume_waiters(&shared, Some(p), now),
            }
        }
    }

    /// The response to a fetch of this root context.
    pub fn call_response(&mut self, token: u32, body_size: usize) {
        let (Some(shared), Some(p)) = (self.shared.clone(), self.pending.remove(&token)) else {
            return;
        };
        let now = shared.host.now_millis().map_or(0, |ms| ms / 1000);
        jwks::on_response(&shared, p, body_size, now);
        request::resume_waiters(&shared, Some(p), now);
    }

    /// The VM is stopping: the last counts reach the host.
    pub fn done(&self) {
        if let Some(shared) = &self.shared {
            shared.counters.flush(&*shared.host);
        }
    }
}
