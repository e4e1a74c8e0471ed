//! A double of the host for the adapter's native tests: it records every host call (so a test
//! can count the calls a request path makes), keeps shared data with real CAS semantics, and
//! can be told to fail: lose compare-and-swaps, refuse reads, lose its clock, refuse dispatch.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};

use super::host::{Foreign, Headers, Host, Level, SharedError};

/// A local reply: (context, status, headers, body).
pub type Reply = (u32, u32, Vec<(String, String)>, String);

#[derive(Default)]
pub struct FakeHost {
    /// Host time in ms; `None`: the host has no clock.
    pub clock: Cell<Option<i64>>,
    pub level: Cell<Option<Level>>,
    /// The current request's headers, per context (context 0 when none was selected).
    pub headers: RefCell<BTreeMap<u32, Vec<(String, String)>>>,
    pub current: Cell<u32>,
    /// Contexts that still exist (`select_context` fails for others).
    pub live: RefCell<BTreeSet<u32>>,
    pub resumed: RefCell<Vec<u32>>,
    /// Local replies: (context, status, headers, body).
    pub replies: RefCell<Vec<Reply>>,
    pub shared: RefCell<BTreeMap<String, (Vec<u8>, u32)>>,
    /// The next this-many CAS writes lose (as if another worker wrote first).
    pub lose_cas: Cell<u32>,
    pub fail_get: Cell<bool>,
    pub fail_set: Cell<bool>,
    pub queue: RefCell<Vec<Vec<u8>>>,
    pub fail_enqueue: Cell<bool>,
    /// Dispatched calls: (token, cluster, path).
    pub dispatched: RefCell<Vec<(u32, String, String)>>,
    pub fail_dispatch: Cell<bool>,
    pub next_token: Cell<u32>,
    pub call_status: RefCell<Option<String>>,
    pub call_body: RefCell<Vec<u8>>,
    pub logs: RefCell<Vec<(Level, String)>>,
    pub counters: RefCell<BTreeMap<u32, u64>>,
    /// Metrics defined (`define_metric`): name → id, the same id for the same name, as Envoy.
    pub metrics: RefCell<BTreeMap<String, u32>>,
    /// Every host call by name, in order.
    pub calls: RefCell<Vec<&'static str>>,
    /// The buffered request body, per context.
    pub bodies: RefCell<BTreeMap<u32, Vec<u8>>>,
    /// Stream properties set: (context, name) → value.
    pub properties: RefCell<BTreeMap<(u32, String), String>>,
}

impl FakeHost {
    pub fn at(now_s: i64) -> FakeHost {
        let h = FakeHost::default();
        h.clock.set(Some(now_s * 1000));
        h.live.borrow_mut().insert(0);
        h
    }

    fn note(&self, call: &'static str) {
        self.calls.borrow_mut().push(call);
    }

    /// Starts a request on context `id` with these headers.
    pub fn request(&self, id: u32, headers: &[(&str, &str)]) {
        self.live.borrow_mut().insert(id);
        self.current.set(id);
        self.headers.borrow_mut().insert(
            id,
            headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        self.calls.borrow_mut().clear();
    }

    /// The value of header `name` of context `id` now.
    pub fn header(&self, id: u32, name: &str) -> Option<String> {
        self.headers
            .borrow()
            .get(&id)?
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }

    pub fn names(&self, id: u32) -> Vec<String> {
        self.headers
            .borrow()
            .get(&id)
            .map(|h| h.iter().map(|(k, _)| k.clone()).collect())
            .unwrap_or_default()
    }

    pub fn count(&self, call: &str) -> usize {
        self.calls.borrow().iter().filter(|c| **c == call).count()
    }

    pub fn total_calls(&self) -> usize {
        self.calls.borrow().len()
    }

    /// Defines metric `name` (the `define` a root is configured with): its id, stable by name.
    pub fn define_metric(&self, name: &str, _gauge: bool) -> Option<u32> {
        let mut m = self.metrics.borrow_mut();
        let next = u32::try_from(m.len()).ok()? + 1;
        Some(*m.entry(name.to_string()).or_insert(next))
    }

    /// The ids of the metrics defined so far, by name.
    pub fn metric_ids(&self) -> BTreeMap<String, u32> {
        self.metrics.borrow().clone()
    }

    pub fn counter(&self, id: u32) -> u64 {
        self.counters.borrow().get(&id).copied().unwrap_or(0)
    }
}

impl Host for FakeHost {
    fn now_millis(&self) -> Option<i64> {
        self.note("clock");
        self.clock.get()
    }
    fn log_level(&self) -> Level {
        self.level.get().unwrap_or(Level::Info)
    }
    fn log(&self, level: Level, message: &str) {
        self.note("log");
        self.logs.borrow_mut().push((level, message.to_string()));
    }
    fn random_u64(&self) -> Option<u64> {
        Some(0x1234_5678_9abc_def0)
    }
    fn request_headers(&self) -> Headers {
        self.note("get_headers");
        let id = self.current.get();
        Headers::from_pairs(&self.headers.borrow().get(&id).cloned().unwrap_or_default())
    }
    fn set_request_header(&self, name: &str, value: &str) {
        self.note("set_header");
        let id = self.current.get();
        let mut all = self.headers.borrow_mut();
        let h = all.entry(id).or_default();
        h.retain(|(k, _)| k != name);
        h.push((name.to_string(), value.to_string()));
    }
    fn remove_request_header(&self, name: &str) {
        self.note("remove_header");
        let id = self.current.get();
        if let Some(h) = self.headers.borrow_mut().get_mut(&id) {
            h.retain(|(k, _)| k != name);
        }
    }
    fn set_property(&self, name: &str, value: &str) {
        self.note("set_property");
        self.properties
            .borrow_mut()
            .insert((self.current.get(), name.to_string()), value.to_string());
    }
    fn request_body(&self, start: usize, size: usize) -> Option<Vec<u8>> {
        self.note("get_body");
        let all = self.bodies.borrow();
        let b = all.get(&self.current.get())?;
        let end = start.saturating_add(size).min(b.len());
        Some(b.get(start.min(end)..end).unwrap_or_default().to_vec())
    }
    fn send_reply(&self, status: u32, headers: &[(&str, &str)], body: &[u8]) {
        self.note("send_reply");
        self.replies.borrow_mut().push((
            self.current.get(),
            status,
            headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            String::from_utf8_lossy(body).into_owned(),
        ));
    }
    fn select_context(&self, id: u32) -> bool {
        self.note("select_context");
        if self.live.borrow().contains(&id) {
            self.current.set(id);
            true
        } else {
            false
        }
    }
    fn resume_request(&self) {
        self.note("resume");
        self.resumed.borrow_mut().push(self.current.get());
    }
    fn get_shared(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), ()> {
        self.note("get_shared");
        if self.fail_get.get() {
            return Err(());
        }
        Ok(match self.shared.borrow().get(key) {
            Some((v, cas)) => (Some(v.clone()), Some(*cas)),
            None => (None, None),
        })
    }
    fn set_shared(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SharedError> {
        self.note("set_shared");
        if self.fail_set.get() {
            return Err(SharedError::Other);
        }
        let mut all = self.shared.borrow_mut();
        let current = all.get(key).map(|(_, c)| *c);
        if cas.is_some() && self.lose_cas.get() > 0 {
            self.lose_cas.set(self.lose_cas.get() - 1);
            // Another worker wrote first: the CAS moves on.
            let next = current.unwrap_or(0) + 1;
            let v = all.get(key).map(|(v, _)| v.clone()).unwrap_or_default();
            all.insert(key.to_string(), (v, next));
            return Err(SharedError::CasMismatch);
        }
        if let (Some(want), Some(have)) = (cas, current) {
            if want != have {
                return Err(SharedError::CasMismatch);
            }
        }
        all.insert(key.to_string(), (value.to_vec(), current.unwrap_or(0) + 1));
        Ok(())
    }
    fn enqueue(&self, _queue: u32, data: &[u8]) -> bool {
        self.note("enqueue");
        if self.fail_enqueue.get() {
            return false;
        }
        self.queue.borrow_mut().push(data.to_vec());
        true
    }
    fn dispatch_get(&self, cluster: &str, _a: &str, path: &str, _t: u64) -> Result<u32, String> {
        self.note("dispatch");
        if self.fail_dispatch.get() {
            return Err("BadArgument".into());
        }
        let t = self.next_token.get() + 1;
        self.next_token.set(t);
        self.dispatched
            .borrow_mut()
            .push((t, cluster.to_string(), path.to_string()));
        Ok(t)
    }
    fn call_status(&self) -> Option<String> {
        self.call_status.borrow().clone()
    }
    fn call_body(&self, size: usize) -> Option<Vec<u8>> {
        let b = self.call_body.borrow();
        Some(b.get(..size.min(b.len())).unwrap_or_default().to_vec())
    }
    fn call_foreign(&self, _name: &str, _args: &[u8]) -> Foreign {
        self.note("foreign");
        Foreign::Unavailable
    }
    fn increment(&self, id: u32, delta: u64) {
        self.note("increment");
        *self.counters.borrow_mut().entry(id).or_default() += delta;
    }
    fn record(&self, id: u32, value: u64) {
        self.note("record");
        self.counters.borrow_mut().insert(id, value);
    }
}
