//! A raw HTTP/1.1 client: one fresh connection per request, `Connection: close`, read until the
//! response is complete (`http_raw`: until EOF, as the bytes may hold pipelined requests).
//! Raw on purpose, so tests can send duplicate headers, odd casing and odd bytes.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

/// Read, write and connect timeout of the client.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

/// A response as received.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// Headers in received order, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The body (de-chunked), lossily decoded as UTF-8.
    pub body: String,
}

impl Response {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        first_value(&self.headers, name)
    }

    /// Every value of header `name` (case-insensitive), in order.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        all_values(&self.headers, name)
    }

    /// The body parsed as JSON; panics with the body when it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("response body is not JSON ({e}): {:?}", self.body))
    }
}

/// The first value of header `name` (case-insensitive) in `headers` (names lower-cased):
/// what [`Response::header`] and [`crate::Request::header`] answer.
pub(crate) fn first_value<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    let name = name.to_ascii_lowercase();
    headers
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.as_str())
}

/// Every value of header `name` (case-insensitive) in `headers`, in order.
pub(crate) fn all_values<'a>(headers: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    let name = name.to_ascii_lowercase();
    headers
        .iter()
        .filter(|(n, _)| *n == name)
        .map(|(_, v)| v.as_str())
        .collect()
}

/// Sends `method path` with `headers` (verbatim, in order, duplicates kept) and no body.
/// Adds `Host: localhost` unless given, and always `Connection: close`.
pub fn http(port: u16, method: &str, path: &str, headers: &[(&str, &str)]) -> Response {
    http_body(port, method, path, headers, b"")
}

/// Like [`http`] with a body; adds `Content-Length` unless a length or transfer-encoding is given.
pub fn http_body(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let mut req = format!("{method} {path} HTTP/1.1\r\n").into_bytes();
    let has = |name: &str| headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
    if !has("host") {
        req.extend_from_slice(b"Host: localhost\r\n");
    }
    for (name, value) in headers {
        req.extend_from_slice(name.as_bytes());
        req.extend_from_slice(b": ");
        req.extend_from_slice(value.as_bytes());
        req.extend_from_slice(b"\r\n");
    }
    if !body.is_empty() && !has("content-length") && !has("transfer-encoding") {
        req.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    req.extend_from_slice(b"Connection: close\r\n\r\n");
    req.extend_from_slice(body);
    exchange(port, &req, true).unwrap_or_else(|e| panic!("HTTP to 127.0.0.1:{port}: {e}"))
}

/// Writes `request` bytes as they are, reads the response until EOF and parses it.
/// Panics on connection errors and malformed responses.
pub fn http_raw(port: u16, request: &[u8]) -> Response {
    try_http_raw(port, request).unwrap_or_else(|e| panic!("HTTP to 127.0.0.1:{port}: {e}"))
}

/// [`http`] that returns connection errors and malformed responses instead of panicking.
pub fn try_http(port: u16, method: &str, path: &str) -> Result<Response, String> {
    let req = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    exchange(port, req.as_bytes(), true)
}

/// [`http_raw`] that returns connection errors and malformed responses instead of panicking.
pub fn try_http_raw(port: u16, request: &[u8]) -> Result<Response, String> {
    exchange(port, request, false)
}

/// Writes `request`, reads and parses the (first) response. `until_complete`: stop reading as
/// soon as the response is complete (one request of ours); otherwise read until EOF (raw bytes
/// may hold pipelined requests whose handling the caller wants finished).
fn exchange(port: u16, request: &[u8], until_complete: bool) -> Result<Response, String> {
    exchange_within(port, request, until_complete, CLIENT_TIMEOUT)
}

/// [`exchange`] with its own connect, read and write timeout (also [`crate::raw::raw_exchange`]).
pub(crate) fn exchange_within(
    port: u16,
    request: &[u8],
    until_complete: bool,
    timeout: Duration,
) -> Result<Response, String> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream =
        TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    stream
        .set_write_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(request)
        .map_err(|e| format!("write: {e}"))?;
    // Not waiting for EOF matters: after a local reply Envoy keeps the connection open for its
    // `delayed_close_timeout` (1 s), waiting for the client to close first.
    let head_only = request.starts_with(b"HEAD ");
    let mut raw = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                raw.extend_from_slice(&chunk[..n]);
                if until_complete && response_complete(&raw, head_only) {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                // A reset after a complete response (e.g. a local reply that closed early) is fine.
                if raw.is_empty() {
                    return Err(format!("read: {e}"));
                }
                break;
            }
        }
    }
    if raw.is_empty() {
        return Err("connection closed without a response".into());
    }
    parse_response(&raw).map_err(|e| {
        format!(
            "bad HTTP response ({e}): {:?}",
            String::from_utf8_lossy(&raw)
        )
    })
}

/// Whether `raw` holds a whole response: its head, and a body complete by chunked encoding or
/// Content-Length (none for `HEAD`, 1xx, 204 and 304). A body delimited by EOF is never complete.
fn response_complete(raw: &[u8], head_only: bool) -> bool {
    let Some(end) = find(raw, b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&raw[..end]);
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse::<u16>().ok());
    let Some(status) = status else {
        return false;
    };
    if status < 200 {
        // An interim response (100 Continue): the real one follows.
        return false;
    }
    if head_only || status == 204 || status == 304 {
        return true;
    }
    let Ok(headers) = parse_headers(lines) else {
        return false;
    };
    let get = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    let rest = &raw[end + 4..];
    if get("transfer-encoding").is_some_and(|te| te.to_ascii_lowercase().contains("chunked")) {
        dechunk(rest).is_ok()
    } else if let Some(len) = get("content-length") {
        len.trim()
            .parse::<usize>()
            .is_ok_and(|len| rest.len() >= len)
    } else {
        false
    }
}

/// Parses one HTTP/1.x response (status line, headers, body by chunked/Content-Length/EOF).
pub(crate) fn parse_response(raw: &[u8]) -> Result<Response, String> {
    let end = find(raw, b"\r\n\r\n").ok_or("no end of headers")?;
    let head = String::from_utf8_lossy(&raw[..end]);
    let rest = &raw[end + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().ok_or("empty response")?;
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let headers = parse_headers(lines)?;
    let get = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    let body =
        if get("transfer-encoding").is_some_and(|te| te.to_ascii_lowercase().contains("chunked")) {
            dechunk(rest).map(|(body, _)| body)?
        } else if let Some(len) = get("content-length") {
            let len: usize = len
                .trim()
                .parse()
                .map_err(|_| format!("bad content-length {len:?}"))?;
            rest.get(..len)
                .ok_or("body shorter than content-length")?
                .to_vec()
        } else {
            rest.to_vec()
        };
    Ok(Response {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// Header lines into lower-cased (name, trimmed value) pairs.
pub(crate) fn parse_headers<'a>(
    lines: impl Iterator<Item = &'a str>,
) -> Result<Vec<(String, String)>, String> {
    let mut headers = Vec::new();
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("bad header line {line:?}"))?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    Ok(headers)
}

/// Decodes a chunked body; returns the body and how many bytes it used (incl. trailers), or an
/// error when incomplete.
pub(crate) fn dechunk(mut data: &[u8]) -> Result<(Vec<u8>, usize), String> {
    let total = data.len();
    let mut body = Vec::new();
    loop {
        let line_end = find(data, b"\r\n").ok_or("incomplete chunk size")?;
        let size_text = String::from_utf8_lossy(&data[..line_end]);
        let size_hex = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_hex, 16)
            .map_err(|_| format!("bad chunk size {size_hex:?}"))?;
        data = &data[line_end + 2..];
        if size == 0 {
            // Trailers (ignored) up to the empty line.
            loop {
                let end = find(data, b"\r\n").ok_or("incomplete trailers")?;
                data = &data[end + 2..];
                if end == 0 {
                    return Ok((body, total - data.len()));
                }
            }
        }
        if data.len() < size + 2 {
            return Err("incomplete chunk".into());
        }
        body.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

pub(crate) fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_chunked_and_content_length_bodies() {
        let r = parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\nx-a: 2\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n").unwrap();
        assert_eq!((r.status, r.body.as_str()), (200, "abcde"));
        assert_eq!(r.header_all("X-A"), ["1", "2"]);
        let r = parse_response(b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 2\r\n\r\n{}junk")
            .unwrap();
        assert_eq!((r.status, r.body.as_str()), (401, "{}"));
    }
}
