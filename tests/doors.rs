//! Route confusion through a real Envoy: no spelling of a protected path gets past its rule.
//!
//! One Envoy loads the built filter with the demo's own plugin config (`envoy/demo.yaml`: the
//! `/health` prefix open, exact `POST /admin/rotate` needs `internal:admin`, the prefix `/`
//! needs `orders:read` or `orders:write`) on two listeners in front of one recording upstream:
//!
//! - `main`: Envoy's default path handling (no normalisation at all);
//! - `hardened`: `normalize_path`, `merge_slashes`, `path_with_escaped_slashes_action:
//!   REJECT_REQUEST` and `headers_with_underscores_action: REJECT_REQUEST`.
//!
//! The upstream ([`RecordingUpstream`]) records each request line byte for byte and answers
//! 200; requests go out over raw sockets, so nothing normalises them on the way in or out.
//!
//! Each spelling of `POST /admin/rotate` in [`SPELLINGS`] is sent on both listeners with no
//! token and with an `orders:read` token. A row passes when Envoy or the filter refuses it
//! (non-2xx, and the upstream never saw it), or the upstream saw it only as a target that none
//! of the backend readings in [`READINGS`] resolves to `/admin/rotate`. Rows marked
//! [`Want::Ambiguous`] must, on the default listener, be refused by the filter itself (400,
//! `x-svcauth-reason: ambiguous_path`), which shows the filter does not rely on Envoy's settings.
//! The controls: the right scope gets through, a lesser one gets 403, the open route is open.
//!
//! Every row is printed as a table (stdout, shown when the test fails); failures are collected
//! and asserted once at the end.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};
use svcauth_filter::fixtures::{signing_key, Fixture};
use svcauth_filter::jws::Alg;
use svcauth_filter::mint::sign;
use svcauth_tests::raw::{raw_exchange, RecordingUpstream};
use svcauth_tests::{bootstrap_of, now, render, repo_root, Envoy, Opts, Response};

/// The protected resource.
const ADMIN: &[u8] = b"/admin/rotate";
/// Names each request, so the upstream's record can be matched to its row.
const ROW_HEADER: &str = "x-doors-row";
/// Per-request bound (connect, write, read).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

// ------------------------------------------------------------------ the spellings ---------

/// What a row must show besides the safety property.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    /// Only the safety property: refused, or forwarded as a path no reading maps to
    /// `/admin/rotate`.
    Safe,
    /// Also: on the default listener (where Envoy passes the target through untouched) the
    /// filter itself answers 400 `ambiguous_path`, with and without a token.
    Ambiguous,
}

use Want::{Ambiguous as A, Safe as S};

/// Spellings of `POST /admin/rotate` (the request target as sent, byte for byte).
const SPELLINGS: &[(&str, Want)] = &[
    // Dot segments, plain and in every percent-encoding.
    ("/x/../admin/rotate", A),
    ("/./admin/rotate", A),
    ("/admin/./rotate", A),
    ("/admin/rotate/.", A),
    ("/admin/rotate/x/..", A),
    ("/health/../admin/rotate", A),
    ("/%2e/admin/rotate", A),
    ("/%2e%2e/admin/rotate", A),
    ("/x/%2e%2e/admin/rotate", A),
    ("/x/%2E%2e/admin/rotate", A),
    ("/x/.%2e/admin/rotate", A),
    ("/x/%2e./admin/rotate", A),
    ("/health/%2e%2e/admin/rotate", A),
    ("/health/%2E%2E/admin/rotate", A),
    // Path parameters (Tomcat and Spring strip `;...` from each segment).
    ("/health/..;/admin/rotate", A),
    ("/health/.;/admin/rotate", A),
    ("/admin/.;/rotate", A),
    ("/health;/../admin/rotate", A),
    ("/health/..;x=1/admin/rotate", A),
    ("/admin/rotate;x=1", A),
    ("/admin;x/rotate", A),
    ("/admin/rotate;", A),
    ("/admin/rotate;jsessionid=0123", A),
    ("/admin/rotate%3bx=1", A),
    ("/admin%3B/rotate", A),
    ("/health/..%3b/admin/rotate", A),
    // Repeated and trailing slashes.
    ("//admin/rotate", A),
    ("///admin/rotate", A),
    ("/admin//rotate", S),
    ("/admin/rotate/", S),
    ("/admin/rotate//", S),
    // Encoded separators.
    ("/admin%2frotate", A),
    ("/admin%2Frotate", A),
    ("/%2fadmin/rotate", A),
    ("/health%2f..%2fadmin/rotate", A),
    ("/health/..%2fadmin/rotate", A),
    ("/admin%5crotate", A),
    ("/admin%5Crotate", A),
    // Raw backslashes (a WHATWG URL parser reads `\` as `/`).
    ("/admin\\rotate", A),
    ("/health\\..\\admin\\rotate", A),
    ("/health/..\\admin/rotate", A),
    ("/\\admin/rotate", A),
    // Control characters and whitespace, encoded.
    ("/admin/rotate%00", A),
    ("/admin%00/rotate", A),
    ("/admin/rotate%00.json", A),
    ("/admin/rotate%0a", A),
    ("/admin/rotate%0d%0a", A),
    ("/admin/rotate%09", A),
    ("/admin/rotate%20", A),
    ("/admin%20/rotate", A),
    ("/%20admin/rotate", A),
    ("/admin/rotate%7f", A),
    // Percent-encoded letters (the canonical form decodes them: the exact rule applies).
    ("/%61dmin/rotate", S),
    ("/admin/%72otate", S),
    ("/%61%64%6d%69%6e/%72%6f%74%61%74%65", S),
    ("/%41dmin/rotate", A),
    // Case (Express routes case-insensitively by default).
    ("/ADMIN/rotate", A),
    ("/Admin/Rotate", A),
    ("/admin/ROTATE", A),
    ("/ADMIN/ROTATE/", A),
    // Double encoding and overlong UTF-8.
    ("/health/%252e%252e/admin/rotate", A),
    ("/admin%252frotate", A),
    ("/%2561dmin/rotate", A),
    ("/%c0%ae%c0%ae/admin/rotate", A),
    ("/health/%c0%ae%c0%ae/admin/rotate", A),
    ("/admin%c0%afrotate", A),
    ("/health/..%c0%afadmin/rotate", A),
    // Fullwidth `ａ` (U+FF41): only a backend that NFKC-normalises maps it (not modelled).
    ("/%ef%bd%81dmin/rotate", S),
    // Absolute-form request targets.
    ("http://localhost/admin/rotate", S),
    ("http://localhost//admin/rotate", A),
    ("http://localhost/health/../admin/rotate", A),
    ("http://other.example/admin/rotate", S),
    ("HTTP://LOCALHOST/admin/rotate", S),
    // Query and fragment.
    ("/admin/rotate?x=1", S),
    ("/admin/rotate?", S),
    ("/admin/rotate?/../health", S),
    ("/health?/../admin/rotate", S),
    ("/admin/rotate#f", S),
    ("/health#/../admin/rotate", S),
    // No leading slash.
    ("admin/rotate", S),
];

// ------------------------------------------------------------------ backend readings -------

/// A backend's reading of a request target: whether it routes it to `/admin/rotate`.
type Reading = fn(&[u8]) -> bool;

/// The readings a forwarded target must not resolve to `/admin/rotate` under. Each is a small
/// model of the behaviour named; where a backend's default would refuse a request (a 400) but
/// a common setting accepts it, the model accepts it (the stricter test).
const READINGS: &[(&str, Reading)] = &[
    ("tomcat/spring", tomcat_spring),
    ("express", express),
    ("go", go_net_http),
    ("whatwg", whatwg),
    ("c-string", c_string),
];

/// The readings that resolve `target` to `/admin/rotate`.
fn resolving(target: &[u8]) -> Vec<&'static str> {
    READINGS
        .iter()
        .filter(|(_, read)| read(target))
        .map(|(name, _)| *name)
        .collect()
}

/// Tomcat in front of Spring MVC:
/// - an absolute-form target is cut to its path; the path ends at `?` (and at `#`, which
///   Tomcat refuses in a target; cutting is the stricter model);
/// - path parameters are stripped from each segment before decoding (`/a;x=1/b` -> `/a/b`,
///   `..;` -> `..`): Tomcat's `parsePathParameters`, Spring's `removeSemicolonContent`;
/// - percent-decoded, `%2f` included (Tomcat's `ALLOW_ENCODED_SLASH`/`decode`); an invalid
///   escape is a 400;
/// - `\` is not a separator (Tomcat's default `ALLOW_BACKSLASH=false`);
/// - normalised: `//` merged, `.` removed, `..` pops a segment (above the root: a 400);
/// - matched as Spring's AntPathMatcher does with `trimTokens` (the default before Spring
///   4.3): segments split on `/`, empty ones skipped, each trimmed as Java's `String.trim`
///   (every byte <= 0x20, so a trailing `%20`, `%09` or `%00` goes), which also covers Spring's
///   trailing-slash match.
fn tomcat_spring(target: &[u8]) -> bool {
    let path = origin_form(target);
    let path = cut(&path, b"?#");
    let stripped: Vec<&[u8]> = path.split(|b| *b == b'/').map(|s| cut(s, b";")).collect();
    let Some(decoded) = percent_decode(&stripped.join(&b'/')) else {
        return false;
    };
    let mut segments: Vec<&[u8]> = Vec::new();
    for segment in decoded.split(|b| *b == b'/') {
        match segment {
            b"" | b"." => {}
            b".." => {
                if segments.pop().is_none() {
                    return false;
                }
            }
            s => segments.push(s),
        }
    }
    let tokens: Vec<&[u8]> = segments
        .into_iter()
        .map(java_trim)
        .filter(|t| !t.is_empty())
        .collect();
    tokens == [&b"admin"[..], &b"rotate"[..]]
}

/// Express 4 (`app.post("/admin/rotate")`): the path is the target up to `?` or `#`
/// (`parseurl`), never percent-decoded for routing; path-to-regexp's defaults: case-insensitive,
/// an optional trailing `/` (`strict: false`); `//` is kept, so `//admin/rotate` does not match.
fn express(target: &[u8]) -> bool {
    let path = origin_form(target);
    let path = cut(&path, b"?#");
    path.eq_ignore_ascii_case(ADMIN) || path.eq_ignore_ascii_case(b"/admin/rotate/")
}

/// Go's net/http: `url.ParseRequestURI` (the path ends at `?`; a `#` is kept as part of the
/// path; a raw control character is a 400; invalid escapes are a 400), `URL.Path` is the
/// decoded path (`%2f` included: the pre-1.22 ServeMux matches on it); `ServeMux` answers a
/// path that is not clean with a redirect to `cleanPath(path)` (`path.Clean`, trailing slash
/// kept), which the client follows: the request resolves to the cleaned path.
fn go_net_http(target: &[u8]) -> bool {
    let path = origin_form(target);
    let path = cut(&path, b"?");
    if path.iter().any(|b| *b < 0x20 || *b == 0x7f) {
        return false;
    }
    let Some(decoded) = percent_decode(path) else {
        return false;
    };
    go_clean_path(&decoded) == ADMIN
}

/// A WHATWG URL parser (`new URL(target, "http://localhost")`, as Node, Deno and Bun servers
/// do): leading/trailing C0 controls and spaces stripped, tab/CR/LF removed; `\` is `/` (an
/// `http` URL); a target starting with two slashes is scheme-relative, so its next segment is
/// the host (`//admin/rotate` has the path `/rotate`); `.`, `%2e` (any case) are single-dot
/// segments and `..`, `.%2e`, `%2e.`, `%2e%2e` double-dot ones, removed; the path ends at `?`
/// or `#`; a target without a leading `/` is relative to `/`. Percent-encoding is kept in the
/// pathname; a router on top may decode it as JavaScript's `decodeURI` does (Hono does), which
/// leaves the reserved characters (`%2f`, `%3b`, `%3f`, `%23`, ...) encoded: that decoded
/// pathname counts too.
fn whatwg(target: &[u8]) -> bool {
    let pathname = whatwg_pathname(target);
    pathname == ADMIN || decode_uri(&pathname).is_some_and(|d| d == ADMIN)
}

/// Any backend that percent-decodes the path into a NUL-terminated string (C code, CGI-style
/// handlers): the path ends at the first NUL.
fn c_string(target: &[u8]) -> bool {
    let path = origin_form(target);
    let path = cut(&path, b"?#");
    let Some(decoded) = percent_decode(path) else {
        return false;
    };
    cut(&decoded, b"\0") == ADMIN
}

/// The path of an absolute-form target (`http://host/p` -> `/p`); other targets as they are.
fn origin_form(target: &[u8]) -> Vec<u8> {
    let lower = target.to_ascii_lowercase();
    for scheme in [&b"http://"[..], b"https://"] {
        if lower.starts_with(scheme) {
            let rest = &target[scheme.len()..];
            let end = rest
                .iter()
                .position(|b| matches!(b, b'/' | b'?' | b'#'))
                .unwrap_or(rest.len());
            let path = &rest[end..];
            return if path.starts_with(b"/") {
                path.to_vec()
            } else {
                [&b"/"[..], path].concat()
            };
        }
    }
    target.to_vec()
}

/// `bytes` up to the first of `stops`.
fn cut<'a>(bytes: &'a [u8], stops: &[u8]) -> &'a [u8] {
    let end = bytes
        .iter()
        .position(|b| stops.contains(b))
        .unwrap_or(bytes.len());
    &bytes[..end]
}

/// Percent-decodes `bytes`; `None` for an invalid escape (`%`, `%4`, `%zz`).
fn percent_decode(bytes: &[u8]) -> Option<Vec<u8>> {
    let hex = |b: u8| char::from(b).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hi = hex(*bytes.get(i + 1)?)?;
            let lo = hex(*bytes.get(i + 2)?)?;
            out.push(hi * 16 + lo);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(out)
}

/// JavaScript's `decodeURI`: percent-decodes all but the reserved characters
/// `; / ? : @ & = + $ , #`; `None` for an invalid escape or bytes that are not UTF-8.
fn decode_uri(bytes: &[u8]) -> Option<Vec<u8>> {
    let hex = |b: u8| char::from(b).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let decoded = hex(*bytes.get(i + 1)?)? * 16 + hex(*bytes.get(i + 2)?)?;
            if b";/?:@&=+$,#".contains(&decoded) {
                out.extend_from_slice(&bytes[i..i + 3]);
            } else {
                out.push(decoded);
            }
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok().map(String::into_bytes)
}

/// Java's `String.trim`: strips every byte <= 0x20 from both ends.
fn java_trim(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|b| *b > 0x20).unwrap_or(s.len());
    let end = s.iter().rposition(|b| *b > 0x20).map_or(start, |e| e + 1);
    &s[start..end]
}

/// net/http's `cleanPath`: `path.Clean` of the path made rooted, with a trailing `/` kept.
fn go_clean_path(p: &[u8]) -> Vec<u8> {
    if p.is_empty() {
        return b"/".to_vec();
    }
    let mut segments: Vec<&[u8]> = Vec::new();
    for segment in p.split(|b| *b == b'/') {
        match segment {
            b"" | b"." => {}
            b".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut cleaned = b"/".to_vec();
    cleaned.extend_from_slice(&segments.join(&b'/'));
    if p.ends_with(b"/") && cleaned != b"/" {
        cleaned.push(b'/');
    }
    cleaned
}

/// The pathname a WHATWG URL parser gives `target` against the base `http://localhost/`.
fn whatwg_pathname(target: &[u8]) -> Vec<u8> {
    let is_sep = |b: u8| b == b'/' || b == b'\\';
    // Leading and trailing C0 controls and spaces: the bytes <= 0x20, as Java's trim.
    let input: Vec<u8> = java_trim(target)
        .iter()
        .copied()
        .filter(|b| !matches!(b, b'\t' | b'\n' | b'\r'))
        .collect();
    let lower = input.to_ascii_lowercase();
    // Where the authority starts, for an absolute or scheme-relative URL.
    let authority = if lower.starts_with(b"http:") {
        Some(5)
    } else if lower.starts_with(b"https:") {
        Some(6)
    } else if input.len() >= 2 && is_sep(input[0]) && is_sep(input[1]) {
        Some(0)
    } else {
        None
    };
    let rest: &[u8] = match authority {
        Some(at) => {
            // Special authority: any run of `/` and `\`, then the host up to a separator.
            let s = &input[at..];
            let skip = s.iter().position(|b| !is_sep(*b)).unwrap_or(s.len());
            let s = &s[skip..];
            let host_end = s
                .iter()
                .position(|b| is_sep(*b) || *b == b'?' || *b == b'#')
                .unwrap_or(s.len());
            &s[host_end..]
        }
        None => &input,
    };
    let path = cut(rest, b"?#");
    let body = match path.first() {
        Some(b) if is_sep(*b) => &path[1..],
        _ => path,
    };
    let is_single = |s: &[u8]| s == b"." || s.eq_ignore_ascii_case(b"%2e");
    let is_double = |s: &[u8]| {
        s == b".."
            || s.eq_ignore_ascii_case(b".%2e")
            || s.eq_ignore_ascii_case(b"%2e.")
            || s.eq_ignore_ascii_case(b"%2e%2e")
    };
    let pieces: Vec<&[u8]> = body.split(|b| is_sep(*b)).collect();
    let mut segments: Vec<&[u8]> = Vec::new();
    for (i, piece) in pieces.iter().enumerate() {
        let last = i + 1 == pieces.len();
        if is_double(piece) {
            segments.pop();
            if last {
                segments.push(b"");
            }
        } else if is_single(piece) {
            if last {
                segments.push(b"");
            }
        } else {
            segments.push(piece);
        }
    }
    let mut pathname = b"/".to_vec();
    pathname.extend_from_slice(&segments.join(&b'/'));
    pathname
}

/// The readings model what they say (no Envoy needed).
#[test]
fn readings_model_their_backends() {
    let yes = |read: Reading, t: &str| assert!(read(t.as_bytes()), "{t:?} should resolve");
    let no = |read: Reading, t: &str| assert!(!read(t.as_bytes()), "{t:?} should not resolve");
    for read in READINGS.iter().map(|(_, r)| *r) {
        yes(read, "/admin/rotate");
        yes(read, "/admin/rotate?x=1");
        yes(read, "http://h/admin/rotate");
        no(read, "/health");
        no(read, "/orders");
        no(read, "/admin/rotate.json");
        no(read, "/admin/rotatex");
    }
    for t in [
        "/health/..;/admin/rotate",
        "/admin/rotate;x=1",
        "/admin;x/rotate",
        "/x/%2e%2e/admin/rotate",
        "/admin%2frotate",
        "//admin/rotate",
        "/admin/rotate/",
        "/admin/rotate/x/..",
        "/admin/rotate%20",
        "/admin%00/rotate",
        "/%61dmin/rotate",
        "/admin/rotate#f",
    ] {
        yes(tomcat_spring, t);
    }
    for t in [
        "/admin\\rotate",
        "/%2e%2e/../admin/rotate",
        "/admin/rotate%zz",
        "/ADMIN/rotate",
        "/admin/rotate%3bx",
    ] {
        no(tomcat_spring, t);
    }
    for t in ["/ADMIN/Rotate", "/admin/rotate/", "/Admin/Rotate#x"] {
        yes(express, t);
    }
    for t in [
        "//admin/rotate",
        "/%61dmin/rotate",
        "/admin//rotate",
        "/x/../admin/rotate",
    ] {
        no(express, t);
    }
    for t in [
        "//admin/rotate",
        "/x/../admin/rotate",
        "/%61dmin/rotate",
        "/admin%2frotate",
        "/health#/../admin/rotate",
        "/../admin/rotate",
    ] {
        yes(go_net_http, t);
    }
    for t in [
        "/admin/rotate/",
        "/admin/rotate#f",
        "/admin\\rotate",
        "/admin/rotate;x=1",
        "/admin/rotate%zz",
    ] {
        no(go_net_http, t);
    }
    for t in [
        "/health/..\\admin/rotate",
        "/admin\\rotate",
        "/%2e%2e/admin/rotate",
        "/x/.%2E/admin/rotate",
        "/./admin/rotate",
        "admin/rotate",
        "/%61dmin/rotate",
        "/admin/rotate#f",
        "/admin/rot\tate",
        "http:\\\\h\\admin\\rotate",
    ] {
        yes(whatwg, t);
    }
    for t in [
        "//admin/rotate",
        "/\\admin/rotate",
        "/admin/rotate/",
        "/health/..;/admin/rotate",
        "/admin%2frotate",
        "/admin%3b/rotate",
    ] {
        no(whatwg, t);
    }
    assert_eq!(whatwg_pathname(b"//admin/rotate"), b"/rotate");
    assert_eq!(whatwg_pathname(b"/admin/rotate/."), b"/admin/rotate/");
    assert_eq!(whatwg_pathname(b"/a/b/.."), b"/a/");
    yes(c_string, "/admin/rotate%00.json");
    no(c_string, "/admin%00/rotate");
}

// ------------------------------------------------------------------ the stack --------------

/// The plugin config of `envoy/demo.yaml` (the wasm filter's `configuration.value`).
fn demo_plugin_config() -> Value {
    let path = repo_root().join("envoy/demo.yaml");
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let yaml: Value = serde_norway::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not YAML: {e}", path.display()));
    fn find(v: &Value) -> Option<&str> {
        if v["name"] == "envoy.filters.http.wasm" {
            return v["typed_config"]["config"]["configuration"]["value"].as_str();
        }
        match v {
            Value::Array(items) => items.iter().find_map(find),
            Value::Object(members) => members.values().find_map(find),
            _ => None,
        }
    }
    let config = find(&yaml)
        .unwrap_or_else(|| panic!("{} has no wasm filter configuration value", path.display()));
    let config: Value = serde_json::from_str(config)
        .unwrap_or_else(|e| panic!("the demo's plugin config is not JSON: {e}"));
    // The rows below are spellings of the demo's protected route: make sure it is still the one.
    assert_eq!(
        config["rules"],
        json!([
            {"match": {"prefix": "/health"}, "allow": true},
            {"match": {"path": "/admin/rotate", "methods": ["POST"]}, "requires": {"scopes_all": ["internal:admin"]}},
            {"match": {"prefix": "/"}, "requires": {"scopes_any": ["orders:read", "orders:write"]}}
        ]),
        "envoy/demo.yaml's rules changed; tests/doors.rs spells its protected route"
    );
    config
}

/// The bootstrap: listeners `main` (Envoy's defaults) and `hardened` (the generator's
/// hardening, as every shipped config), one `upstream` cluster.
fn bootstrap(plugin: &str, upstream_port: u16) -> String {
    let mut b = bootstrap_of(plugin, &Opts::new(upstream_port));
    let mut hardened = b.listeners[0].clone();
    hardened.name = "hardened".into();
    hardened.stat_prefix = "hardened".into();
    hardened.route_config = "hardened".into();
    hardened.hardened = true;
    b.listeners.push(hardened);
    render(&b)
}

/// A token of the demo provider (signed by the fixture key `rsa-a`, whose public half is the
/// demo's inline JWKS) for `sub` with `scope`.
fn demo_token(config: &Value, sub: &str, scope: &str) -> String {
    let provider = &config["providers"]["demo"];
    let kid = provider["jwks"]["keys"][0]["kid"]
        .as_str()
        .expect("demo JWKS kid");
    let mut header = Map::new();
    header.insert("kid".into(), kid.into());
    let now = now();
    let claims = json!({
        "iss": provider["issuer"],
        "aud": provider["audiences"][0],
        "sub": sub,
        "iat": now,
        "exp": now + 600,
        "scope": scope,
    });
    sign(&signing_key(Fixture::RsaA), Alg::RS256, &header, &claims).expect("sign")
}

struct Stack {
    upstream: RecordingUpstream,
    envoy: Envoy,
    listeners: [(&'static str, u16); 2],
    next_row: std::cell::Cell<u64>,
}

/// What one request got.
struct Sent {
    id: String,
    response: Result<Response, String>,
    /// Targets the upstream received for this request (normally none or one).
    received: Vec<Vec<u8>>,
}

impl Sent {
    fn status(&self) -> Option<u16> {
        self.response.as_ref().ok().map(|r| r.status)
    }

    fn reason(&self) -> Option<&str> {
        self.response
            .as_ref()
            .ok()
            .and_then(|r| r.header("x-svcauth-reason"))
    }

    fn status_text(&self) -> String {
        match &self.response {
            Ok(r) => r.status.to_string(),
            Err(e) => format!("({e})"),
        }
    }

    fn received_text(&self) -> String {
        if self.received.is_empty() {
            "-".into()
        } else {
            self.received
                .iter()
                .map(|t| show(t))
                .collect::<Vec<_>>()
                .join(" + ")
        }
    }
}

/// Bytes as text, non-printable ones escaped.
fn show(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}

impl Stack {
    fn start() -> Stack {
        let upstream = RecordingUpstream::start();
        let plugin = demo_plugin_config().to_string();
        let envoy = Envoy::start(&bootstrap(&plugin, upstream.port()));
        let hardened = envoy
            .listener_port("hardened")
            .expect("the hardened listener is active");
        let listeners = [("default", envoy.port()), ("hardened", hardened)];
        Stack {
            upstream,
            envoy,
            listeners,
            next_row: std::cell::Cell::new(0),
        }
    }

    /// Sends `method target` (bytes as they are) to `port` with `token`, tagged with a fresh
    /// row id; returns the response and what the upstream received for it.
    fn send(&self, port: u16, method: &str, target: &str, token: Option<&str>) -> Sent {
        let n = self.next_row.get();
        self.next_row.set(n + 1);
        let id = format!("r{n}");
        let mut req = format!("{method} {target} HTTP/1.1\r\nHost: localhost\r\n");
        if let Some(token) = token {
            let _ = write!(req, "Authorization: Bearer {token}\r\n");
        }
        let _ = write!(
            req,
            "{ROW_HEADER}: {id}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        let response = raw_exchange(port, req.as_bytes(), REQUEST_TIMEOUT);
        // A response from the upstream means it recorded the request first; a refusal means it
        // never will. Either way the record is complete now.
        let received = self
            .upstream
            .requests_with(ROW_HEADER, &id)
            .iter()
            .map(|r| r.target().to_vec())
            .collect();
        Sent {
            id,
            response,
            received,
        }
    }
}

// ------------------------------------------------------------------ the test ---------------

#[test]
fn no_spelling_of_a_protected_path_gets_past_its_rule() {
    let started = Instant::now();
    let s = Stack::start();
    let config = demo_plugin_config();
    let admin = demo_token(&config, "admin-service", "internal:admin");
    let reader = demo_token(&config, "orders-service", "orders:read");
    let mut failures: Vec<String> = Vec::new();
    let mut table = String::new();
    let _ = writeln!(
        table,
        "{:<40} {:<9} {:<6} {:<7} {:<20} {:<36} sent resolves under",
        "spelling", "listener", "token", "status", "reason", "upstream got"
    );

    // The controls, on both listeners.
    for (listener, port) in s.listeners {
        let mut check = |what: &str,
                         sent: &Sent,
                         status: u16,
                         reason: Option<&str>,
                         got: Option<&str>| {
            let received: Vec<String> = sent.received.iter().map(|t| show(t)).collect();
            let want_received: Vec<String> = got.iter().map(|g| g.to_string()).collect();
            let reason_ok = reason.is_none() || sent.reason() == reason;
            if sent.status() != Some(status) || !reason_ok || received != want_received {
                failures.push(format!(
                    "control {what} on {listener} ({}): got {} reason {:?} upstream {:?}; want {status} reason {:?} upstream {:?}",
                    sent.id,
                    sent.status_text(),
                    sent.reason(),
                    received,
                    reason,
                    want_received
                ));
            }
        };
        let sent = s.send(port, "POST", "/admin/rotate", Some(&admin));
        check(
            "POST /admin/rotate internal:admin",
            &sent,
            200,
            None,
            Some("/admin/rotate"),
        );
        let sent = s.send(port, "POST", "/admin/rotate", Some(&reader));
        check(
            "POST /admin/rotate orders:read",
            &sent,
            403,
            Some("insufficient_scope"),
            None,
        );
        let sent = s.send(port, "POST", "/admin/rotate", None);
        check(
            "POST /admin/rotate no token",
            &sent,
            401,
            Some("token_missing"),
            None,
        );
        let sent = s.send(port, "GET", "/health", None);
        check("GET /health no token", &sent, 200, None, Some("/health"));
        let sent = s.send(port, "GET", "/orders", Some(&reader));
        check("GET /orders orders:read", &sent, 200, None, Some("/orders"));
    }

    // The spellings.
    let mut rows = 0;
    for (spelling, want) in SPELLINGS {
        let as_sent = resolving(spelling.as_bytes()).join(",");
        for (listener, port) in s.listeners {
            for (token_name, token) in [("none", None), ("read", Some(reader.as_str()))] {
                rows += 1;
                let sent = s.send(port, "POST", spelling, token);
                let _ = writeln!(
                    table,
                    "{:<40} {:<9} {:<6} {:<7} {:<20} {:<36} {}",
                    show(spelling.as_bytes()),
                    listener,
                    token_name,
                    sent.status_text(),
                    sent.reason().unwrap_or("-"),
                    sent.received_text(),
                    if as_sent.is_empty() { "-" } else { &as_sent }
                );
                let row = format!(
                    "{spelling:?} on {listener}, token {token_name} ({})",
                    sent.id
                );
                let ok_status = sent.status().is_some_and(|s| (200..300).contains(&s));
                if sent.received.is_empty() {
                    if ok_status {
                        failures.push(format!(
                            "{row}: {} but the upstream did not receive it",
                            sent.status_text()
                        ));
                    }
                } else {
                    if !ok_status {
                        failures.push(format!(
                            "{row}: refused with {} yet the upstream received {}",
                            sent.status_text(),
                            sent.received_text()
                        ));
                    }
                    for target in &sent.received {
                        let readings = resolving(target);
                        if !readings.is_empty() {
                            failures.push(format!(
                                "{row}: {} reached the upstream as {:?}, which {} resolve(s) to /admin/rotate",
                                sent.status_text(),
                                show(target),
                                readings.join(", ")
                            ));
                        }
                    }
                }
                if *want == Want::Ambiguous
                    && listener == "default"
                    && (sent.status() != Some(400) || sent.reason() != Some("ambiguous_path"))
                {
                    failures.push(format!(
                        "{row}: want the filter's 400 ambiguous_path, got {} reason {:?}",
                        sent.status_text(),
                        sent.reason()
                    ));
                }
            }
        }
    }

    // Envoy is still healthy after all of it.
    if s.envoy.admin("/ready").status != 200 {
        failures.push("Envoy's /ready is not 200 after the table".into());
    }
    if s.envoy.log().contains("panicked") {
        failures.push("Envoy's log shows a panic in the filter".into());
    }
    println!("{table}");
    println!(
        "{} spellings, {rows} rows, {} upstream requests, {:.1} s",
        SPELLINGS.len(),
        s.upstream.requests().len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        SPELLINGS.len() >= 40,
        "the table must hold at least 40 spellings"
    );
    assert!(
        failures.is_empty(),
        "{} failure(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
}
