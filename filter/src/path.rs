//! The canonical request path rules are matched against, and the spellings refused before any
//! rule is matched (`ambiguous_path`, 400).
//!
//! A rule protects a resource, not a spelling of it. Backends disagree on how to read a path:
//! Tomcat and Spring drop `;` path parameters (`/health/..;/admin` is `/admin` to them), some
//! decode `%2f` into a separator, WHATWG URL parsers treat `\` as `/` and `%2e` as a dot, a
//! leading `//` starts an authority for them, Python and Go merge or clean slashes. So this
//! module accepts only paths that every common reading maps to the same resource, and gives
//! that resource one spelling:
//!
//! * the query and fragment are cut (at the first `?` or `#`);
//! * every percent-encoded byte is decoded (`/%61dmin` is `/admin`), and the result must be
//!   UTF-8; only `%3F` and `%23` stay encoded (upper-case), since a decoded `?` or `#` would
//!   start a query or fragment the next time the path is read;
//! * repeated slashes are merged (`/a//b` is `/a/b`); a trailing `/` is kept.
//!
//! Refused (with the short name [`Refusal::what`] gives, for logs and the CLI):
//! a path that does not start with `/`, or starts with `//`; `;` raw or encoded; `\` raw or
//! encoded; an encoded `/` or `%` (double encoding); control characters (C0, DEL, C1) raw
//! or encoded; invalid percent-encoding; decoded bytes that are not UTF-8 (overlong forms
//! included), and U+FFFD; a segment that is only dots (`.`, `..`, `%2e%2e`, `...`); a
//! segment that begins or ends with white space (`/admin%20`).
//!
//! Uses nothing but `std`.

use std::borrow::Cow;

/// Why a path was refused. The adapter answers every refusal alike (`ambiguous_path`); the
/// name is for the log line's detail and `svcauth verify --explain`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal(&'static str);

impl Refusal {
    /// What was refused, e.g. `"path parameter (;)"`.
    pub fn what(self) -> &'static str {
        self.0
    }
}

const NOT_ABSOLUTE: Refusal = Refusal("path does not start with /");
const AUTHORITY: Refusal = Refusal("path starts with //");
const SEMICOLON: Refusal = Refusal("path parameter (;)");
const BACKSLASH: Refusal = Refusal("backslash");
const ENCODED_SLASH: Refusal = Refusal("encoded /");
const ENCODED_PERCENT: Refusal = Refusal("encoded % (double encoding)");
const CONTROL: Refusal = Refusal("control character");
const BAD_ESCAPE: Refusal = Refusal("invalid percent-encoding");
const NOT_UTF8: Refusal = Refusal("bytes that are not UTF-8");
const DOT_SEGMENT: Refusal = Refusal("dot segment");
const SPACE_EDGE: Refusal = Refusal("segment with leading or trailing white space");
/// A path that a case-sensitive rule matches only when ASCII case is ignored.
pub const CASE_VARIANT: Refusal = Refusal("case variant of a rule's path");

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The path part of a `:path` value: up to the first `?` or `#`.
pub fn without_query(path: &str) -> &str {
    match path.find(['?', '#']) {
        Some(end) => path.get(..end).unwrap_or(path),
        None => path,
    }
}

/// A byte refused wherever it appears, raw or decoded.
fn refused_byte(b: u8) -> Option<Refusal> {
    match b {
        b';' => Some(SEMICOLON),
        b'\\' => Some(BACKSLASH),
        0..=0x1f | 0x7f => Some(CONTROL),
        _ => None,
    }
}

/// Refuses the characters that are refused beyond ASCII: C1 controls, and U+FFFD, which is
/// what a path that was not UTF-8 became on its way in (the adapter reads header values
/// lossily), so the upstream may see other bytes.
fn check_chars(text: &str) -> Result<(), Refusal> {
    for c in text.chars() {
        if c == char::REPLACEMENT_CHARACTER {
            return Err(NOT_UTF8);
        }
        if c.is_control() {
            return Err(CONTROL);
        }
    }
    Ok(())
}

/// Checks one segment (already decoded): not only dots, no white space at its edges.
fn check_segment(seg: &str) -> Result<(), Refusal> {
    if !seg.is_empty() && seg.bytes().all(|b| b == b'.') {
        return Err(DOT_SEGMENT);
    }
    let edge = |c: Option<char>| c.is_some_and(char::is_whitespace);
    if edge(seg.chars().next()) || edge(seg.chars().next_back()) {
        return Err(SPACE_EDGE);
    }
    Ok(())
}

/// The canonical form of `:path` (query and fragment cut, percent-decoding done, slashes
/// merged), or why it is refused. Borrows when the path is already canonical, which is the
/// common case: no allocation then.
pub fn canonical(raw: &str) -> Result<Cow<'_, str>, Refusal> {
    let path = without_query(raw);
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(NOT_ABSOLUTE);
    }
    if bytes.get(1) == Some(&b'/') {
        return Err(AUTHORITY);
    }
    // First pass: refuse what is refused raw, and see whether anything must change.
    let mut rewrite = false;
    let mut prev_slash = false;
    for &b in bytes {
        if let Some(r) = refused_byte(b) {
            return Err(r);
        }
        if b == b'%' || (b == b'/' && prev_slash) {
            rewrite = true;
        }
        prev_slash = b == b'/';
    }
    if !rewrite {
        if !path.is_ascii() {
            check_chars(path)?;
        }
        for seg in path.split('/') {
            check_segment(seg)?;
        }
        return Ok(Cow::Borrowed(path));
    }
    let decoded = decode(bytes)?;
    let text = String::from_utf8(decoded).map_err(|_| NOT_UTF8)?;
    check_chars(&text)?;
    let mut out = String::with_capacity(text.len());
    for seg in text.split('/').filter(|s| !s.is_empty()) {
        check_segment(seg)?;
        out.push('/');
        out.push_str(seg);
    }
    if out.is_empty() || text.ends_with('/') {
        out.push('/');
    }
    Ok(Cow::Owned(out))
}

/// Percent-decodes `bytes`, refusing invalid escapes and escapes of refused bytes.
fn decode(bytes: &[u8]) -> Result<Vec<u8>, Refusal> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b != b'%' {
            out.push(b);
            i += 1;
            continue;
        }
        let hi = bytes.get(i + 1).copied().and_then(hex_value);
        let lo = bytes.get(i + 2).copied().and_then(hex_value);
        let (Some(hi), Some(lo)) = (hi, lo) else {
            return Err(BAD_ESCAPE);
        };
        let v = hi * 16 + lo;
        match v {
            b'/' => return Err(ENCODED_SLASH),
            b'%' => return Err(ENCODED_PERCENT),
            _ => {}
        }
        if let Some(r) = refused_byte(v) {
            return Err(r);
        }
        if v == b'?' || v == b'#' {
            // Kept encoded (upper-case hex): decoded, they would start a query or fragment
            // the next time the path is read, so the canonical form would not be one.
            out.extend_from_slice(if v == b'?' { b"%3F" } else { b"%23" });
        } else {
            out.push(v);
        }
        i += 3;
    }
    Ok(out)
}

/// Whether `path` (canonical) is what an exact rule `want` names: the same, or the same with
/// one trailing `/`. `fold` compares ASCII letters case-insensitively.
pub fn exact_matches(path: &str, want: &str, fold: bool) -> bool {
    let eq = |a: &str, b: &str| {
        if fold {
            a.eq_ignore_ascii_case(b)
        } else {
            a == b
        }
    };
    if eq(path, want) {
        return true;
    }
    match path.strip_suffix('/') {
        Some(p) if !want.ends_with('/') => eq(p, want),
        _ => false,
    }
}

/// Whether `path` (canonical) falls under prefix rule `prefix`: it starts with it, or the
/// prefix ends in `/` and the path is the prefix without it (`/admin` under `/admin/`).
pub fn prefix_matches(path: &str, prefix: &str, fold: bool) -> bool {
    let starts = match path.get(..prefix.len()) {
        Some(head) if fold => head.eq_ignore_ascii_case(prefix),
        Some(head) => head == prefix,
        None => false,
    };
    if starts {
        return true;
    }
    match prefix.strip_suffix('/') {
        Some(dir) if !dir.is_empty() => {
            if fold {
                path.eq_ignore_ascii_case(dir)
            } else {
                path == dir
            }
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(raw: &str) -> String {
        match canonical(raw) {
            Ok(c) => c.into_owned(),
            Err(r) => panic!("{raw:?} refused: {}", r.what()),
        }
    }

    fn refused(raw: &str) -> &'static str {
        match canonical(raw) {
            Ok(c) => panic!("{raw:?} accepted as {c:?}"),
            Err(r) => r.what(),
        }
    }

    #[test]
    fn canonical_paths_are_borrowed_unchanged() {
        assert!(matches!(canonical("/caf\u{e9}"), Ok(Cow::Borrowed(_))));
        assert_eq!(ok("/caf%C3%A9"), "/caf\u{e9}");
        for p in [
            "/",
            "/admin/rotate",
            "/admin/rotate/",
            "/a.b/c-d_e~f",
            "/v1/x:y@z!$&'()*+,=",
        ] {
            assert!(
                matches!(canonical(p), Ok(Cow::Borrowed(x)) if x == p),
                "{p}"
            );
        }
    }

    #[test]
    fn query_and_fragment_are_cut() {
        assert_eq!(ok("/admin/rotate?x=1"), "/admin/rotate");
        assert_eq!(ok("/admin/rotate#frag"), "/admin/rotate");
        assert_eq!(ok("/admin/rotate?/../health"), "/admin/rotate");
        assert_eq!(ok("/health?a=%2f;"), "/health");
    }

    #[test]
    fn percent_encoded_characters_are_decoded() {
        assert_eq!(ok("/%61dmin/rotate"), "/admin/rotate");
        assert_eq!(ok("/admin/%72%6F%74%61%74%65"), "/admin/rotate");
        assert_eq!(ok("/a%2eb"), "/a.b");
        assert_eq!(ok("/caf%C3%A9"), "/café");
        assert_eq!(ok("/a%20b"), "/a b");
        assert_eq!(ok("/a%3fb"), "/a%3Fb");
        assert_eq!(ok("/a%23b"), "/a%23b");
    }

    #[test]
    fn repeated_slashes_are_merged_and_a_trailing_slash_kept() {
        assert_eq!(ok("/admin//rotate"), "/admin/rotate");
        assert_eq!(ok("/admin///rotate//"), "/admin/rotate/");
        assert_eq!(ok("/admin/rotate/"), "/admin/rotate/");
    }

    #[test]
    fn every_ambiguous_spelling_is_refused() {
        let table = [
            ("", "path does not start with /"),
            ("admin", "path does not start with /"),
            ("*", "path does not start with /"),
            ("http://x/admin", "path does not start with /"),
            ("//admin/rotate", "path starts with //"),
            ("///admin/rotate", "path starts with //"),
            ("/admin/rotate;x=1", "path parameter (;)"),
            ("/health/..;/admin/rotate", "path parameter (;)"),
            ("/health/.;/admin/rotate", "path parameter (;)"),
            ("/admin;jsessionid=1/rotate", "path parameter (;)"),
            ("/admin%3brotate", "path parameter (;)"),
            ("/admin%3Brotate", "path parameter (;)"),
            ("/admin\\rotate", "backslash"),
            ("/admin%5crotate", "backslash"),
            ("/admin%5Crotate", "backslash"),
            ("/admin%2frotate", "encoded /"),
            ("/admin%2Frotate", "encoded /"),
            ("/admin%252frotate", "encoded % (double encoding)"),
            ("/admin%252e%252e", "encoded % (double encoding)"),
            ("/admin/rotate%00", "control character"),
            ("/admin/rotate%0a", "control character"),
            ("/admin/rotate%0D", "control character"),
            ("/admin/rotate%09", "control character"),
            ("/admin/rotate%7f", "control character"),
            ("/admin/rotate\u{1}", "control character"),
            ("/admin/rotate\t", "control character"),
            ("/admin/\u{fffd}", "bytes that are not UTF-8"),
            ("/admin/%ef%bf%bd", "bytes that are not UTF-8"),
            ("/admin/\u{85}", "control character"),
            ("/admin/%c2%85", "control character"),
            ("/admin/rotate%", "invalid percent-encoding"),
            ("/admin/rotate%4", "invalid percent-encoding"),
            ("/admin/rotate%zz", "invalid percent-encoding"),
            ("/admin/rotate%g0", "invalid percent-encoding"),
            ("/admin/%c0%afrotate", "bytes that are not UTF-8"),
            ("/admin/%c0%ae%c0%ae", "bytes that are not UTF-8"),
            ("/admin/%e0%80%af", "bytes that are not UTF-8"),
            ("/admin/%ff", "bytes that are not UTF-8"),
            ("/x/../admin/rotate", "dot segment"),
            ("/./admin/rotate", "dot segment"),
            ("/admin/rotate/.", "dot segment"),
            ("/admin/rotate/..", "dot segment"),
            ("/health/%2e%2e/admin/rotate", "dot segment"),
            ("/health/%2E%2e/admin/rotate", "dot segment"),
            ("/health/.%2e/admin/rotate", "dot segment"),
            ("/health/%2e./admin/rotate", "dot segment"),
            ("/%2e/admin/rotate", "dot segment"),
            ("/health/.../admin", "dot segment"),
            (
                "/admin/rotate%20",
                "segment with leading or trailing white space",
            ),
            (
                "/admin/%20rotate",
                "segment with leading or trailing white space",
            ),
            (
                "/admin%20/rotate",
                "segment with leading or trailing white space",
            ),
            (
                "/admin/rotate%C2%A0",
                "segment with leading or trailing white space",
            ),
        ];
        for (raw, why) in table {
            assert_eq!(refused(raw), why, "{raw:?}");
        }
    }

    #[test]
    fn exact_rules_cover_one_trailing_slash() {
        assert!(exact_matches("/admin/rotate", "/admin/rotate", false));
        assert!(exact_matches("/admin/rotate/", "/admin/rotate", false));
        assert!(!exact_matches("/admin/rotatex", "/admin/rotate", false));
        assert!(!exact_matches("/ADMIN/rotate", "/admin/rotate", false));
        assert!(exact_matches("/ADMIN/Rotate/", "/admin/rotate", true));
        assert!(exact_matches("/", "/", false));
        assert!(!exact_matches("/a/", "/a/b", false));
    }

    #[test]
    fn prefix_rules_cover_their_directory() {
        assert!(prefix_matches("/health", "/health", false));
        assert!(prefix_matches("/healthz", "/health", false));
        assert!(prefix_matches("/admin", "/admin/", false));
        assert!(prefix_matches("/admin/x", "/admin/", false));
        assert!(!prefix_matches("/adminx", "/admin/", false));
        assert!(prefix_matches("/anything", "/", false));
        assert!(!prefix_matches("/HEALTH", "/health", false));
        assert!(prefix_matches("/HEALTH/x", "/health", true));
        assert!(prefix_matches("/ADMIN", "/admin/", true));
    }
}
