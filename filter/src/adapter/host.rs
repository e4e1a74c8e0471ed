//! The host seam: everything the adapter asks of Envoy, as one small object-safe trait. The
//! proxy-wasm implementation (`wasm::WasmHost`) is the only code that calls
//! `proxy_wasm::hostcalls`; the native tests use `tests::FakeHost`. Also the parser of the
//! host's serialized header map, so that a request's headers are read in one host call and
//! one buffer, without a copy per name and value.
//!
//! Uses nothing of the crate: the rooms above it use this one.

use std::borrow::Cow;
use std::ops::Range;

/// A log level, as the host orders them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
    Critical,
}

/// Why a shared-data write failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SharedError {
    /// Another VM wrote the key since it was read.
    CasMismatch,
    /// Any other host error.
    Other,
}

/// What a foreign-function call returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Foreign {
    /// The function ran and answered.
    Answer(Option<Vec<u8>>),
    /// The function refused its arguments.
    BadArgument,
    /// The host has no such function (or failed otherwise).
    Unavailable,
}

/// The host, as the adapter uses it. Every method maps a host error to a meaning; none panics.
pub trait Host {
    /// The host clock in milliseconds since the epoch.
    fn now_millis(&self) -> Option<i64>;
    /// The level below which the host drops log lines.
    fn log_level(&self) -> Level;
    fn log(&self, level: Level, message: &str);
    /// 8 random bytes (a seed for the VM's own generator), if the host has randomness.
    fn random_u64(&self) -> Option<u64>;

    /// The current request's headers, in one call.
    fn request_headers(&self) -> Headers;
    fn set_request_header(&self, name: &str, value: &str);
    fn remove_request_header(&self, name: &str);
    /// Answers the current request locally.
    fn send_reply(&self, status: u32, headers: &[(&str, &str)], body: &[u8]);
    /// Makes `context_id` the current context (after a key refetch, to answer a waiting
    /// request). False if that stream is gone.
    fn select_context(&self, context_id: u32) -> bool;
    /// Resumes the current (paused) request.
    fn resume_request(&self);

    /// A shared-data value and its CAS; `Ok((None, None))` when the key is absent.
    fn get_shared(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), ()>;
    fn set_shared(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SharedError>;
    /// Puts `data` on shared queue `queue`. False if the host refused.
    fn enqueue(&self, queue: u32, data: &[u8]) -> bool;

    /// Dispatches `GET path` to `cluster` from the current context. The call's token.
    fn dispatch_get(
        &self,
        cluster: &str,
        authority: &str,
        path: &str,
        timeout_ms: u64,
    ) -> Result<u32, String>;
    /// The `:status` of the response the current callback is about (`None`: no response).
    fn call_status(&self) -> Option<String>;
    /// The first `size` bytes of that response's body.
    fn call_body(&self, size: usize) -> Option<Vec<u8>>;

    fn call_foreign(&self, name: &str, args: &[u8]) -> Foreign;
    /// Adds `delta` to counter `id`.
    fn increment(&self, id: u32, delta: u64);
    /// Sets gauge `id`.
    fn record(&self, id: u32, value: u64);
}

/// A request's headers: one buffer and the spans of each name and value in it.
#[derive(Debug, Default, Clone)]
pub struct Headers {
    buf: Vec<u8>,
    spans: Vec<(Range<usize>, Range<usize>)>,
}

/// What a value that is not UTF-8 reads as: never a valid token or path (the path check
/// refuses U+FFFD), and harmless in a log line.
const NOT_UTF8: &str = "\u{fffd}";

impl Headers {
    /// Headers from name/value pairs (the test double's requests).
    #[cfg(test)]
    pub fn from_pairs<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)]) -> Headers {
        let mut h = Headers::default();
        for (k, v) in pairs {
            h.push(k.as_ref(), v.as_ref());
        }
        h
    }

    /// Appends one header.
    #[cfg(test)]
    pub fn push(&mut self, name: &str, value: &str) {
        let k = self.buf.len()..self.buf.len() + name.len();
        self.buf.extend_from_slice(name.as_bytes());
        let v = self.buf.len()..self.buf.len() + value.len();
        self.buf.extend_from_slice(value.as_bytes());
        self.spans.push((k, v));
    }

    /// Parses the host's serialized map: a little-endian u32 count, then a (name length,
    /// value length) u32 pair per header, then each name and value followed by a NUL byte.
    /// `None` if the buffer is not of that form.
    pub fn parse(buf: Vec<u8>) -> Option<Headers> {
        if buf.is_empty() {
            return Some(Headers::default());
        }
        let word = |at: usize| -> Option<usize> {
            let b = buf.get(at..at.checked_add(4)?)?;
            let arr: [u8; 4] = b.try_into().ok()?;
            usize::try_from(u32::from_le_bytes(arr)).ok()
        };
        let count = word(0)?;
        let mut data = count.checked_mul(8)?.checked_add(4)?;
        if data > buf.len() {
            return None;
        }
        let mut spans = Vec::with_capacity(count);
        for i in 0..count {
            let at = 4 + i * 8;
            let (kl, vl) = (word(at)?, word(at + 4)?);
            let k = data..data.checked_add(kl)?;
            let v_start = k.end.checked_add(1)?;
            let v = v_start..v_start.checked_add(vl)?;
            data = v.end.checked_add(1)?;
            if data > buf.len() {
                return None;
            }
            spans.push((k, v));
        }
        Some(Headers { buf, spans })
    }

    /// The headers as text pairs, borrowed from the buffer. A value that is not UTF-8 is read
    /// lossily (its bad bytes become U+FFFD: never a valid token, and a path the path check
    /// refuses); a name that is not UTF-8 (Envoy allows none) reads as U+FFFD.
    pub fn pairs(&self) -> Vec<(&str, Cow<'_, str>)> {
        let bytes = |r: &Range<usize>| self.buf.get(r.clone()).unwrap_or_default();
        self.spans
            .iter()
            .map(|(k, v)| {
                let name = std::str::from_utf8(bytes(k)).unwrap_or(NOT_UTF8);
                (name, String::from_utf8_lossy(bytes(v)))
            })
            .collect()
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.spans.len()
    }
}

/// A small per-VM generator for trace and request ids (SplitMix64): seeded once from the host,
/// so a request never needs a host call for randomness. Ids need to be unique, not secret.
#[derive(Debug, Clone)]
pub struct Ids {
    state: std::cell::Cell<u64>,
}

impl Ids {
    pub fn new(seed: u64) -> Ids {
        Ids {
            state: std::cell::Cell::new(seed),
        }
    }

    pub fn next_u64(&self) -> u64 {
        let s = self.state.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
        self.state.set(s);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// `n` lower-case hex digits (n ≤ 64), never all zero.
    pub fn hex(&self, n: usize) -> String {
        let mut out = String::with_capacity(n);
        while out.len() < n {
            let word = self.next_u64();
            for shift in (0..16).rev() {
                if out.len() == n {
                    break;
                }
                let d = u8::try_from((word >> (shift * 4)) & 15).unwrap_or(0);
                out.push(char::from(if d < 10 { b'0' + d } else { b'a' + d - 10 }));
            }
        }
        if out.bytes().all(|b| b == b'0') {
            out.pop();
            out.push('1');
        }
        out
    }
}
