//! The fetch lease in shared data: one worker VM fetches a remote key set while the others
//! read what it published. The value is `"<until> <nonce>"`; a lease whose `until` has passed
//! is free, so a worker that died holding one blocks the others only until then.
//!
//! Uses: `host` (the seam).

use super::host::Host;

/// Until when the lease at `key` is held (0: never taken, or unreadable).
fn held_until(value: Option<&[u8]>) -> i64 {
    value
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.split(' ').next())
        .and_then(|v| v.parse::<i64>().ok())
        .unwrap_or(0)
}

/// Takes the lease `key` until `until` if it is free at `now`. At most one VM wins: the write
/// is a compare-and-swap, and the value, which carries this VM's nonce, is read back.
pub fn take(host: &dyn Host, key: &str, now: i64, until: i64, nonce: u64) -> bool {
    let Ok((current, cas)) = host.get_shared(key) else {
        return false;
    };
    if held_until(current.as_deref()) > now {
        return false;
    }
    let mine = format!("{until} {nonce}");
    if host.set_shared(key, mine.as_bytes(), cas).is_err() {
        return false;
    }
    matches!(host.get_shared(key), Ok((Some(v), _)) if v == mine.as_bytes())
}

/// Sets the lease `key` to expire at `until` (0 frees it; after a failure: the backoff).
pub fn hold(host: &dyn Host, key: &str, until: i64, nonce: u64) {
    let _ = host.set_shared(key, format!("{until} {nonce}").as_bytes(), None);
}

/// The backoff after `failures` consecutive failed fetches: 2, 4, 8 … 64 s, never longer than
/// the refresh interval (and at least 1 s).
pub fn backoff(failures: u32, refresh_seconds: i64) -> i64 {
    (1i64 << failures.clamp(1, 6)).min(refresh_seconds.max(1))
}
