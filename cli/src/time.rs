//! Durations (`90s`, `15m`, `1h30m`, `2d`, `1w`) and the clock (`--now`).

use crate::outcome::CliError;

/// Parses a duration: a plain number of seconds, or number+unit pairs (`s`, `m`, `h`, `d`, `w`),
/// e.g. `3600`, `1h`, `1h30m`, `90d`.
pub fn parse_duration(s: &str) -> Option<i64> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().ok();
    }
    let mut total: i64 = 0;
    let mut num = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let unit: i64 = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 7 * 86_400,
            _ => return None,
        };
        let n: i64 = num.parse().ok()?;
        num.clear();
        total = total.checked_add(n.checked_mul(unit)?)?;
    }
    if !num.is_empty() {
        return None;
    }
    Some(total)
}

/// A duration for people: `1h`, `90d`, `1h30m`, `45s`.
pub fn human(secs: i64) -> String {
    if secs == 0 {
        return "0s".into();
    }
    let sign = if secs < 0 { "-" } else { "" };
    let mut left = secs.unsigned_abs();
    let mut out = String::from(sign);
    for (unit, size) in [("d", 86_400u64), ("h", 3600), ("m", 60), ("s", 1)] {
        let n = left / size;
        if n > 0 {
            out.push_str(&format!("{n}{unit}"));
            left -= n * size;
        }
    }
    out
}

/// This machine's clock, in seconds since the epoch.
pub fn system_now() -> Result<i64, CliError> {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .and_then(|d| i64::try_from(d.as_secs()).ok())
        .ok_or_else(|| CliError::failed("the system clock is before 1970"))
}

/// `--now`: `now`, seconds since the epoch, or a duration relative to the clock (`-2h`, `+10m`).
pub fn parse_now(s: &str) -> Result<i64, CliError> {
    let bad = || {
        CliError::usage(
            "--now takes seconds since the epoch, or a time relative to now such as -2h or +10m",
        )
    };
    let now = system_now()?;
    if s == "now" {
        return Ok(now);
    }
    if let Some(rest) = s.strip_prefix('-') {
        return parse_duration(rest)
            .and_then(|d| now.checked_sub(d))
            .ok_or_else(bad);
    }
    if let Some(rest) = s.strip_prefix('+') {
        return parse_duration(rest)
            .and_then(|d| now.checked_add(d))
            .ok_or_else(bad);
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().map_err(|_| bad());
    }
    Err(bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_print() {
        assert_eq!(parse_duration("3600"), Some(3600));
        assert_eq!(parse_duration("1h"), Some(3600));
        assert_eq!(parse_duration("1h30m"), Some(5400));
        assert_eq!(parse_duration("90d"), Some(90 * 86_400));
        assert_eq!(parse_duration("2w"), Some(14 * 86_400));
        for bad in ["", "h", "1x", "1h3", "-1h", "1.5h"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
        assert_eq!(human(5400), "1h30m");
        assert_eq!(human(90 * 86_400), "90d");
        assert_eq!(human(-61), "-1m1s");
    }
}
