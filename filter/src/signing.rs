//! Signed requests: the optional request signature of the OAuth2 client-credentials system
//! svcauth replaces (its `RequestSigner`). On top of a verified token, the caller sends
//!
//! ```text
//! X-Timestamp: <Unix seconds>
//! X-Signature: hex(HMAC-SHA256(secret, METHOD "|" PATH "|" BODY "|" TIMESTAMP))
//! ```
//!
//! where `METHOD` is `:method`, `PATH` is `:path` as the filter sees it (with its query
//! string), `BODY` the request body's bytes (empty when there is none) and `TIMESTAMP` the
//! `X-Timestamp` value as sent. The secret is the calling client's own, found by the verified
//! token's subject in an environment variable (`secrets_env`), never in the configuration.
//!
//! Host-free: this room holds the configuration of one provider's signing, the canonical
//! string and its HMAC, the time window, and the content of one replay-cache slot (the adapter
//! keeps the slots in proxy-wasm shared data, updated with compare-and-swap).

use crate::contract::names::is_header_name;
use hmac::{Hmac, KeyInit as _, Mac as _};
use serde::Deserialize;
use sha2::Sha256;
use subtle::ConstantTimeEq as _;

use crate::contract::reason::Reason;

const DEFAULT_WINDOW_SECONDS: u64 = 300;
const DEFAULT_MAX_BODY_BYTES: usize = 1 << 20;
const DEFAULT_REPLAY_PER_CALLER: usize = 16_384;
/// Shortest client secret accepted (bytes).
pub const MIN_SECRET_BYTES: usize = 16;
/// Replay-cache slots per caller: a signature lands in the slot its first byte names.
pub const REPLAY_SLOTS: usize = 64;
/// Bytes of a signature kept in the replay cache (128 bits: collisions are not a concern).
const TAG_BYTES: usize = 16;
/// One replay-cache entry: the tag and its expiry (i64 little-endian seconds).
pub const ENTRY_BYTES: usize = TAG_BYTES + 8;

/// `providers.<name>.signed_requests` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSigning {
    secrets_env: String,
    #[serde(default)]
    required: Option<bool>,
    #[serde(default)]
    window_seconds: Option<u64>,
    #[serde(default)]
    max_body_bytes: Option<usize>,
    #[serde(default)]
    timestamp_header: Option<String>,
    #[serde(default)]
    signature_header: Option<String>,
    #[serde(default)]
    replay_cache_per_caller: Option<usize>,
}

/// One provider's compiled signing settings and its callers' secrets.
#[derive(Clone, PartialEq, Eq)]
pub struct Signing {
    /// Every request this provider's token authenticates must be signed (`false`: only on
    /// rules with `requires.signed`).
    pub required: bool,
    /// Accepted distance between the timestamp and the host clock, both ways (seconds).
    pub window: i64,
    /// Larger bodies are refused (413 `body_too_large`).
    pub max_body_bytes: usize,
    /// Lower-case header names.
    pub timestamp_header: String,
    pub signature_header: String,
    /// Replay-cache entries per slot ([`REPLAY_SLOTS`] slots per caller).
    pub replay_per_slot: usize,
    /// `(caller, secret)`.
    secrets: Vec<(String, Vec<u8>)>,
}

impl std::fmt::Debug for Signing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Signing({} callers, window {} s, body ≤ {} bytes, {} / {})",
            self.secrets.len(),
            self.window,
            self.max_body_bytes,
            self.timestamp_header,
            self.signature_header
        )
    }
}

impl Signing {
    /// The secret of `caller` (a verified subject), if it has one.
    pub fn secret(&self, caller: &str) -> Option<&[u8]> {
        self.secrets
            .iter()
            .find(|(c, _)| c == caller)
            .map(|(_, s)| s.as_slice())
    }

    /// Every caller with a secret.
    pub fn callers(&self) -> impl Iterator<Item = &str> {
        self.secrets.iter().map(|(c, _)| c.as_str())
    }
}

/// Compiles provider `name`'s `signed_requests`; `Err` is the message, naming the field.
pub(crate) fn compile(
    name: &str,
    raw: RawSigning,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Signing, String> {
    let at = |f: &str| format!("providers.{name}.signed_requests.{f}");
    let fail = |f: &str, m: String| Err(format!("{}: {m}", at(f)));
    let window = raw.window_seconds.unwrap_or(DEFAULT_WINDOW_SECONDS);
    if !(1..=3600).contains(&window) {
        return fail("window_seconds", "must be between 1 and 3600".into());
    }
    let max_body_bytes = raw.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES);
    if max_body_bytes > 64 << 20 {
        return fail("max_body_bytes", "must be at most 67108864".into());
    }
    let per_caller = raw
        .replay_cache_per_caller
        .unwrap_or(DEFAULT_REPLAY_PER_CALLER);
    if !(REPLAY_SLOTS..=1 << 20).contains(&per_caller) {
        return fail(
            "replay_cache_per_caller",
            format!("must be between {REPLAY_SLOTS} and 1048576"),
        );
    }
    let header = |f: &str, v: Option<String>, default: &str| -> Result<String, String> {
        let h = v.unwrap_or_else(|| default.into()).to_ascii_lowercase();
        if !is_header_name(&h) || h == "authorization" || h.starts_with(':') {
            return Err(format!("{}: {h:?} cannot carry it", at(f)));
        }
        Ok(h)
    };
    let timestamp_header = header("timestamp_header", raw.timestamp_header, "x-timestamp")?;
    let signature_header = header("signature_header", raw.signature_header, "x-signature")?;
    if timestamp_header == signature_header {
        return fail(
            "signature_header",
            "must differ from timestamp_header".into(),
        );
    }
    let var = raw.secrets_env;
    let Some(text) = env(&var) else {
        return fail(
            "secrets_env",
            format!("environment variable {var} is not set (pass it with vm_config.environment_variables)"),
        );
    };
    let mut secrets: Vec<(String, Vec<u8>)> = Vec::new();
    for (i, item) in text
        .split([',', ' ', '\n', '\t', '\r'])
        .filter(|s| !s.is_empty())
        .enumerate()
    {
        // The caller may hold `:` (a SPIFFE id); the secret may not.
        let Some((caller, secret)) = item.rsplit_once(':') else {
            return fail(
                "secrets_env",
                format!("entry {i} of {var} is not caller:secret"),
            );
        };
        if caller.is_empty() || secrets.iter().any(|(c, _)| c == caller) {
            return fail(
                "secrets_env",
                format!("entry {i} of {var}: empty or repeated caller"),
            );
        }
        if secret.len() < MIN_SECRET_BYTES {
            return fail(
                "secrets_env",
                format!("entry {i} of {var} ({caller}): the secret is shorter than {MIN_SECRET_BYTES} bytes"),
            );
        }
        secrets.push((caller.to_string(), secret.as_bytes().to_vec()));
    }
    if secrets.is_empty() {
        return fail("secrets_env", format!("{var} holds no caller:secret entry"));
    }
    Ok(Signing {
        required: raw.required.unwrap_or(true),
        window: i64::try_from(window).unwrap_or(300),
        max_body_bytes,
        timestamp_header,
        signature_header,
        replay_per_slot: per_caller.div_ceil(REPLAY_SLOTS),
        secrets,
    })
}

/// `X-Timestamp`: decimal Unix seconds, 1 to 12 ASCII digits (no sign, no fraction).
pub fn parse_timestamp(value: &str) -> Option<i64> {
    let v = value.trim_matches([' ', '\t']);
    if v.is_empty() || v.len() > 12 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok()
}

/// `X-Signature`: 64 hex digits (lower-case as the signer writes them; upper-case accepted).
pub fn parse_signature(value: &str) -> Option<[u8; 32]> {
    let v = value.trim_matches([' ', '\t']).as_bytes();
    if v.len() != 64 {
        return None;
    }
    let digit = |c: u8| {
        char::from(c)
            .to_digit(16)
            .and_then(|d| u8::try_from(d).ok())
    };
    let mut out = [0u8; 32];
    for (o, pair) in out.iter_mut().zip(v.chunks_exact(2)) {
        let (hi, lo) = (pair.first().copied()?, pair.get(1).copied()?);
        *o = digit(hi)? << 4 | digit(lo)?;
    }
    Some(out)
}

/// Whether timestamp `ts` is within `window` seconds of `now`, either way.
pub fn check_time(ts: i64, now: i64, window: i64) -> Result<(), Reason> {
    if now.abs_diff(ts) <= window.unsigned_abs() {
        Ok(())
    } else {
        Err(Reason::SignatureExpired)
    }
}

/// The canonical string `METHOD|PATH|BODY|TIMESTAMP`, as the client signs it.
pub fn canonical(method: &str, path: &str, body: &[u8], timestamp: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(method.len() + path.len() + body.len() + timestamp.len() + 3);
    for (i, part) in [
        method.as_bytes(),
        path.as_bytes(),
        body,
        timestamp.as_bytes(),
    ]
    .iter()
    .enumerate()
    {
        if i > 0 {
            out.push(b'|');
        }
        out.extend_from_slice(part);
    }
    out
}

/// HMAC-SHA256 of the canonical string, fed in pieces (the body is not copied again).
pub fn mac(secret: &[u8], method: &str, path: &str, body: &[u8], timestamp: &str) -> [u8; 32] {
    let Ok(mut m) = Hmac::<Sha256>::new_from_slice(secret) else {
        // HMAC takes a key of any length; unreachable, and a zero MAC never matches a
        // signature by chance.
        return [0u8; 32];
    };
    for (i, part) in [
        method.as_bytes(),
        path.as_bytes(),
        body,
        timestamp.as_bytes(),
    ]
    .iter()
    .enumerate()
    {
        if i > 0 {
            m.update(b"|");
        }
        m.update(part);
    }
    m.finalize().into_bytes().into()
}

/// Whether `signature` is the MAC of this request under `secret`, compared in constant time.
pub fn verify(
    secret: &[u8],
    signature: &[u8; 32],
    method: &str,
    path: &str,
    body: &[u8],
    timestamp: &str,
) -> bool {
    let want = mac(secret, method, path, body, timestamp);
    want.ct_eq(signature).into()
}

/// Lower-case hex of a MAC (what the client sends).
pub fn hex(mac: &[u8; 32]) -> String {
    let mut s = String::with_capacity(64);
    for b in mac {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// The replay slot (`0..REPLAY_SLOTS`) that holds `signature`.
pub fn slot_of(signature: &[u8; 32]) -> usize {
    usize::from(signature[0]) % REPLAY_SLOTS
}

/// The shared-data key of replay slot `slot` of `caller` (a subject of `provider`).
/// Collision-free: the provider's length comes first.
pub fn replay_key(provider: &str, caller: &str, slot: usize) -> String {
    format!(
        "svcauth.replay.{}.{provider}.{slot}.{caller}",
        provider.len()
    )
}

/// Why a signature is not admitted to its replay slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Seen already, and not expired: a replay.
    Replayed,
    /// The slot holds `capacity` live signatures: nothing can be proven about this one.
    Full,
}

/// Admits `signature` (live until `expires`) to a replay slot whose stored content is `slot`
/// at `now`: the new content (expired entries dropped), or why not. A slot that does not parse
/// is read as empty: its entries were written by this function, so that is a host fault, and
/// one replay window's worth of signatures is the most it can forget.
pub fn admit(
    slot: Option<&[u8]>,
    signature: &[u8; 32],
    expires: i64,
    now: i64,
    capacity: usize,
) -> Result<Vec<u8>, Refusal> {
    let tag = signature.get(..TAG_BYTES).unwrap_or_default();
    let data = slot
        .filter(|d| d.len().is_multiple_of(ENTRY_BYTES))
        .unwrap_or_default();
    let mut out = Vec::with_capacity(data.len() + ENTRY_BYTES);
    let mut live = 0usize;
    for entry in data.chunks_exact(ENTRY_BYTES) {
        let (t, e) = entry.split_at(TAG_BYTES);
        let exp = <[u8; 8]>::try_from(e).map_or(0, i64::from_le_bytes);
        if exp < now {
            continue;
        }
        if bool::from(t.ct_eq(tag)) {
            return Err(Refusal::Replayed);
        }
        live += 1;
        out.extend_from_slice(entry);
    }
    if live >= capacity {
        return Err(Refusal::Full);
    }
    out.extend_from_slice(tag);
    out.extend_from_slice(&expires.to_le_bytes());
    Ok(out)
}
