//! A raw HTTP/1.1 client: one fresh connection per request, `Connection: close`, read to EOF.
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
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of header `name` (case-insensitive), in order.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The body parsed as JSON; panics with the body when it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("response body is not JSON ({e}): {:?}", self.body))
    }
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
    http_raw(port, &req)
}

/// Writes `request` bytes as they are, reads the response until EOF and parses it.
/// Panics on connection errors and malformed responses.
pub fn http_raw(port: u16, request: &[u8]) -> Response {
    try_http_raw(port, request).unwrap_or_else(|e| panic!("HTTP to 127.0.0.1:{port}: {e}"))
}

/// [`http`] that returns connection errors and malformed responses instead of panicking.
pub fn try_http(port: u16, method: &str, path: &str) -> Result<Response, String> {
    let req = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    try_http_raw(port, req.as_bytes())
}

/// [`http_raw`] that returns connection errors and malformed responses instead of panicking.
pub fn try_http_raw(port: u16, request: &[u8]) -> Result<Response, String> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream =
        TcpStream::connect_timeout(&addr, CLIENT_TIMEOUT).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(CLIENT_TIMEOUT))
        .map_err(|e| e.to_string())?;
    stream
        .set_write_timeout(Some(CLIENT_TIMEOUT))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(request)
        .map_err(|e| format!("write: {e}"))?;
    let mut raw = Vec::new();
    if let Err(e) = stream.read_to_end(&mut raw) {
        // A reset after a complete response (e.g. a local reply that closed early) is fine.
        if raw.is_empty() {
            return Err(format!("read: {e}"));
        }
    }
    parse_response(&raw).map_err(|e| {
        format!(
            "bad HTTP response ({e}): {:?}",
            String::from_utf8_lossy(&raw)
        )
    })
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
