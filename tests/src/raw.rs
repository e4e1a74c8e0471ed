//! Raw-socket tools for the route-confusion tests (`tests/doors.rs`), where nothing between the
//! test and Envoy, or between Envoy and the upstream, may normalise a request target:
//!
//! - [`RecordingUpstream`]: a TCP server that records every request head byte for byte (the
//!   request line exactly as Envoy forwarded it) and answers `200`. It parses only what it needs
//!   to find where a request ends (the blank line, `Content-Length`); it never decodes or
//!   rewrites the target.
//! - [`raw_exchange`]: a client that writes the given bytes as they are and reads one response.
//!
//! Both are bounded in time: the upstream closes idle connections and stops on drop (listener
//! closed, open connections shut down); the client has a read/write/connect timeout.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::client::{dechunk, exchange_within, find, parse_headers, Response};
use crate::listen::{Acceptor, Shared};

/// Idle connections of the upstream are closed after this long without a request.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// A request head larger than this is answered `431` and the connection closed.
const MAX_HEAD: usize = 256 * 1024;
/// What the upstream answers to every request.
const REPLY: &[u8] =
    b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 8\r\n\r\nupstream";

/// A request head as the upstream received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRequest {
    /// The bytes up to (not including) the blank line: request line and header lines.
    pub head: Vec<u8>,
}

impl RawRequest {
    /// The request line, without its CRLF.
    pub fn request_line(&self) -> &[u8] {
        let end = find(&self.head, b"\r\n").unwrap_or(self.head.len());
        self.head.get(..end).unwrap_or(&[])
    }

    /// The method: the request line up to its first space.
    pub fn method(&self) -> &[u8] {
        let line = self.request_line();
        let end = line.iter().position(|b| *b == b' ').unwrap_or(line.len());
        line.get(..end).unwrap_or(&[])
    }

    /// The request target: between the first and the last space of the request line.
    pub fn target(&self) -> &[u8] {
        let line = self.request_line();
        let first = line.iter().position(|b| *b == b' ');
        let last = line.iter().rposition(|b| *b == b' ');
        match (first, last) {
            (Some(f), Some(l)) if l > f => line.get(f + 1..l).unwrap_or(&[]),
            _ => &[],
        }
    }

    /// The first value of header `name` (case-insensitive, value trimmed), lossily as UTF-8.
    pub fn header(&self, name: &str) -> Option<String> {
        let text = String::from_utf8_lossy(&self.head);
        let headers = parse_headers(text.split("\r\n").skip(1)).ok()?;
        let name = name.to_ascii_lowercase();
        headers
            .into_iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v)
    }
}

/// A raw HTTP/1.1 upstream on 127.0.0.1:0 that records request heads verbatim and answers
/// `200` with the body `upstream` (keep-alive). Request bodies are read by `Content-Length` or
/// chunked encoding and dropped.
pub struct RecordingUpstream {
    inner: Acceptor<RawRequest>,
}

impl RecordingUpstream {
    /// Starts it.
    pub fn start() -> RecordingUpstream {
        RecordingUpstream {
            inner: Acceptor::start("recording-upstream", serve),
        }
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.inner.port
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<RawRequest> {
        self.inner.shared.requests.lock().unwrap().clone()
    }

    /// The requests whose header `name` has the value `value`.
    pub fn requests_with(&self, name: &str, value: &str) -> Vec<RawRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.header(name).as_deref() == Some(value))
            .collect()
    }
}

/// What the front of a connection's buffer holds.
enum Next {
    /// A whole request: its head, and how many bytes (head, blank line and body) it used.
    Request(RawRequest, usize),
    /// Not a whole request yet.
    Incomplete,
    /// A head too large to accept.
    TooLarge,
}

fn next_request(buf: &[u8]) -> Next {
    let Some(end) = find(buf, b"\r\n\r\n") else {
        return if buf.len() > MAX_HEAD {
            Next::TooLarge
        } else {
            Next::Incomplete
        };
    };
    let req = RawRequest {
        head: buf[..end].to_vec(),
    };
    let rest = &buf[end + 4..];
    let chunked = req
        .header("transfer-encoding")
        .is_some_and(|te| te.to_ascii_lowercase().contains("chunked"));
    let body_len = if chunked {
        match dechunk(rest) {
            Ok((_, used)) => used,
            Err(_) => return Next::Incomplete,
        }
    } else {
        let len = req
            .header("content-length")
            .and_then(|l| l.trim().parse::<usize>().ok())
            .unwrap_or(0);
        if rest.len() < len {
            return Next::Incomplete;
        }
        len
    };
    Next::Request(req, end + 4 + body_len)
}

fn serve(mut stream: TcpStream, shared: &Shared<RawRequest>) {
    let _ = stream.set_read_timeout(Some(IDLE_TIMEOUT));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(10)));
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        loop {
            match next_request(&buf) {
                Next::Request(req, used) => {
                    buf.drain(..used);
                    shared.requests.lock().unwrap().push(req);
                    if stream.write_all(REPLY).is_err() || stream.flush().is_err() {
                        return;
                    }
                }
                Next::Incomplete => break,
                Next::TooLarge => {
                    let _ = stream.write_all(
                        b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                    );
                    return;
                }
            }
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        if shared.stopped() {
            return;
        }
    }
}

/// Connects to 127.0.0.1:`port`, writes `request` as it is and reads one response, stopping as
/// soon as it is complete (by `Content-Length` or chunked encoding; else at EOF). Every connect,
/// read and write is bounded by `timeout`. An error when the peer closes without answering.
pub fn raw_exchange(port: u16, request: &[u8], timeout: Duration) -> Result<Response, String> {
    exchange_within(port, request, true, timeout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_the_request_line_byte_for_byte_on_a_keep_alive_connection() {
        let up = RecordingUpstream::start();
        let odd = b"POST /a/../b;x=1/%2e%2E//c\\d?q=/../e HTTP/1.1\r\nHost: x\r\nX-Row: 1\r\nContent-Length: 3\r\n\r\nabc";
        let mut two = odd.to_vec();
        two.extend_from_slice(b"GET //f HTTP/1.1\r\nHost: x\r\nX-Row: 2\r\n\r\n");
        let resp = raw_exchange(up.port(), &two, Duration::from_secs(5)).unwrap();
        assert_eq!((resp.status, resp.body.as_str()), (200, "upstream"));
        assert!(crate::wait_until(Duration::from_secs(5), || up
            .requests()
            .len()
            == 2));
        let reqs = up.requests();
        assert_eq!(reqs[0].method(), b"POST");
        assert_eq!(reqs[0].target(), &b"/a/../b;x=1/%2e%2E//c\\d?q=/../e"[..]);
        assert_eq!(reqs[0].header("x-row").as_deref(), Some("1"));
        assert_eq!(reqs[1].target(), b"//f");
        assert_eq!(up.requests_with("X-Row", "2").len(), 1);
    }
}
