//! A real gRPC upstream and client for the tests, without `protoc`: the one message type is a
//! `#[derive(prost::Message)]` struct and both sides use tonic's generic pieces
//! (`tonic::server::Grpc`, `tonic::client::Grpc`, `ProstCodec`).
//!
//! [`GrpcUpstream`] serves `svcauth.test.Echo` over HTTP/2 (h2c) on a loopback port from a
//! background thread with its own tokio runtime:
//! - `Unary(Note) -> Note`: answers `echo:<text>`;
//! - `Chat(stream Note) -> stream Note`: answers every message with `echo:<text>` as it arrives.
//!
//! It records every call as a [`GrpcCall`] the moment its headers arrive (path, metadata), and
//! then every message of it as it is decoded. Stopped on drop, and in any case after
//! [`UPSTREAM_LIFETIME`].
//!
//! [`GrpcClient`] calls those methods (on Envoy, usually) from the test thread; every call is
//! bounded by [`CALL_TIMEOUT`].

// tonic's own API puts `Status` (176 bytes) in its `Result`s; the closures that build one follow it.
#![allow(clippy::result_large_err)]

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::grpc_thread::ServerThread;
use tonic::codec::{ProstCodec, Streaming};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::codegen::tokio_stream::{Stream, StreamExt as _};
use tonic::codegen::{http, BoxFuture, BoxStream, Service, StdError};
use tonic::metadata::MetadataMap;
use tonic::{Code, Status};

/// The gRPC service the upstream serves.
pub const SERVICE: &str = "svcauth.test.Echo";
/// The unary method's path.
pub const UNARY: &str = "/svcauth.test.Echo/Unary";
/// The bidi-streaming method's path.
pub const CHAT: &str = "/svcauth.test.Echo/Chat";
/// The upstream stops by itself after this long, even if never dropped.
pub const UPSTREAM_LIFETIME: Duration = Duration::from_secs(300);
/// Every client operation (connect, call, each streamed message) is bounded by this.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// The one message type: `message Note { string text = 1; uint32 seq = 2; }`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Note {
    #[prost(string, tag = "1")]
    pub text: String,
    #[prost(uint32, tag = "2")]
    pub seq: u32,
}

impl Note {
    pub fn new(text: &str, seq: u32) -> Note {
        Note {
            text: text.to_string(),
            seq,
        }
    }
}

/// One call as the upstream received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrpcCall {
    /// `/svcauth.test.Echo/Unary` or `/svcauth.test.Echo/Chat` (or anything else asked for).
    pub path: String,
    /// Request headers (metadata) in received order, names lower-case, pseudo-headers left out.
    pub metadata: Vec<(String, String)>,
    /// The texts of the messages received so far, in order.
    pub messages: Vec<String>,
}

impl GrpcCall {
    /// The first value of metadata `name` (lower-case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.metadata
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of metadata `name` (lower-case), in order.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.metadata
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

type Calls = Arc<Mutex<Vec<GrpcCall>>>;

fn record_message(calls: &Calls, index: usize, text: &str) {
    if let Ok(mut calls) = calls.lock() {
        if let Some(call) = calls.get_mut(index) {
            call.messages.push(text.to_string());
        }
    }
}

fn echo(note: &Note) -> Note {
    Note {
        text: format!("echo:{}", note.text),
        seq: note.seq,
    }
}

/// The `Unary` handler for call number `.1`.
struct UnarySvc(Calls, usize);

impl tonic::server::UnaryService<Note> for UnarySvc {
    type Response = Note;
    type Future = BoxFuture<tonic::Response<Note>, Status>;

    fn call(&mut self, request: tonic::Request<Note>) -> Self::Future {
        let calls = Arc::clone(&self.0);
        let index = self.1;
        Box::pin(async move {
            let note = request.into_inner();
            record_message(&calls, index, &note.text);
            Ok(tonic::Response::new(echo(&note)))
        })
    }
}

/// The `Chat` handler for call number `.1`.
struct ChatSvc(Calls, usize);

impl tonic::server::StreamingService<Note> for ChatSvc {
    type Response = Note;
    type ResponseStream = BoxStream<Note>;
    type Future = BoxFuture<tonic::Response<BoxStream<Note>>, Status>;

    fn call(&mut self, request: tonic::Request<Streaming<Note>>) -> Self::Future {
        let calls = Arc::clone(&self.0);
        let index = self.1;
        Box::pin(async move {
            let inbound = request.into_inner();
            let out = inbound.map(move |item| {
                item.map(|note| {
                    record_message(&calls, index, &note.text);
                    echo(&note)
                })
            });
            let out: BoxStream<Note> = Box::pin(out);
            Ok(tonic::Response::new(out))
        })
    }
}

/// The `svcauth.test.Echo` service, routed by path like tonic-build's generated servers.
#[derive(Clone)]
struct EchoServer {
    calls: Calls,
}

impl tonic::server::NamedService for EchoServer {
    const NAME: &'static str = SERVICE;
}

impl<B> Service<http::Request<B>> for EchoServer
where
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::BoxBody>;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let path = req.uri().path().to_string();
        let metadata = req
            .headers()
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let index = match self.calls.lock() {
            Ok(mut calls) => {
                calls.push(GrpcCall {
                    path: path.clone(),
                    metadata,
                    messages: Vec::new(),
                });
                calls.len() - 1
            }
            Err(_) => usize::MAX,
        };
        let calls = Arc::clone(&self.calls);
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(ProstCodec::<Note, Note>::default());
            let resp = match path.as_str() {
                UNARY => grpc.unary(UnarySvc(calls, index), req).await,
                CHAT => grpc.streaming(ChatSvc(calls, index), req).await,
                _ => Status::unimplemented(format!("no method {path}")).into_http(),
            };
            Ok(resp)
        })
    }
}

/// A running gRPC upstream. Stops on drop.
pub struct GrpcUpstream {
    server: ServerThread,
    calls: Calls,
}

impl GrpcUpstream {
    /// Starts on 127.0.0.1 with an ephemeral port. Panics if it cannot.
    pub fn start() -> GrpcUpstream {
        GrpcUpstream::try_start().unwrap_or_else(|e| panic!("start gRPC upstream: {e}"))
    }

    fn try_start() -> std::io::Result<GrpcUpstream> {
        let calls: Calls = Arc::new(Mutex::new(Vec::new()));
        let service = EchoServer {
            calls: Arc::clone(&calls),
        };
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        let server = ServerThread::start(addr, "grpc-upstream", |incoming, stopped| async move {
            tokio::spawn(
                tonic::transport::Server::builder()
                    .add_service(service)
                    .serve_with_incoming(incoming),
            );
            // Until dropped or the lifetime ends; then the runtime drops with the server task
            // and every connection it holds.
            let _ = tokio::time::timeout(UPSTREAM_LIFETIME, stopped).await;
        })?;
        Ok(GrpcUpstream { server, calls })
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.server.addr.port()
    }

    /// Every call received so far, in arrival order.
    pub fn calls(&self) -> Vec<GrpcCall> {
        self.calls.lock().map(|c| c.clone()).unwrap_or_default()
    }
}

/// What a refused or failed call returned: the status and the response metadata (for a
/// trailers-only response, its headers: e.g. `www-authenticate`).
#[derive(Debug, Clone)]
pub struct GrpcError {
    pub code: Code,
    /// `grpc-message`, percent-decoded.
    pub message: String,
    pub metadata: Vec<(String, String)>,
}

impl GrpcError {
    fn from_status(status: &Status) -> GrpcError {
        GrpcError {
            code: status.code(),
            message: status.message().to_string(),
            metadata: metadata_list(status.metadata()),
        }
    }

    fn client(what: &str) -> GrpcError {
        GrpcError {
            code: Code::Unknown,
            message: format!("client: {what}"),
            metadata: Vec::new(),
        }
    }

    /// The first value of metadata `name` (lower-case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.metadata
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A successful call: the response metadata (headers) and the messages.
#[derive(Debug, Clone)]
pub struct GrpcReply {
    pub metadata: Vec<(String, String)>,
    pub notes: Vec<Note>,
}

fn metadata_list(m: &MetadataMap) -> Vec<(String, String)> {
    m.clone()
        .into_headers()
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

fn with_metadata<T>(message: T, metadata: &[(&str, &str)]) -> Result<tonic::Request<T>, GrpcError> {
    let mut req = tonic::Request::new(message);
    for (name, value) in metadata {
        let key = tonic::metadata::MetadataKey::from_bytes(name.as_bytes())
            .map_err(|_| GrpcError::client(&format!("bad metadata name {name:?}")))?;
        let value = tonic::metadata::MetadataValue::try_from(*value)
            .map_err(|_| GrpcError::client(&format!("bad metadata value for {name}")))?;
        req.metadata_mut().append(key, value);
    }
    Ok(req)
}

/// Client-side request messages as a stream fed from a channel.
struct Outbound(mpsc::UnboundedReceiver<Note>);

impl Stream for Outbound {
    type Item = Note;

    fn poll_next(mut self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Note>> {
        self.0.poll_recv(cx)
    }
}

/// A gRPC client over HTTP/2 (h2c) to 127.0.0.1:`port`, driven from the calling thread.
pub struct GrpcClient {
    runtime: tokio::runtime::Runtime,
    grpc: tonic::client::Grpc<tonic::transport::Channel>,
}

impl GrpcClient {
    /// Connects (bounded by [`CALL_TIMEOUT`]). Panics if it cannot.
    pub fn connect(port: u16) -> GrpcClient {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("gRPC client runtime: {e}"));
        let endpoint = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
            .unwrap_or_else(|e| panic!("endpoint: {e}"))
            .connect_timeout(CALL_TIMEOUT);
        let channel = runtime
            .block_on(async { tokio::time::timeout(CALL_TIMEOUT, endpoint.connect()).await })
            .unwrap_or_else(|_| panic!("gRPC connect to {port}: timed out"))
            .unwrap_or_else(|e| panic!("gRPC connect to {port}: {e}"));
        GrpcClient {
            runtime,
            grpc: tonic::client::Grpc::new(channel),
        }
    }

    /// Calls `path` (usually [`UNARY`]) with `note` and `metadata`.
    pub fn unary_at(
        &mut self,
        path: &'static str,
        note: Note,
        metadata: &[(&str, &str)],
    ) -> Result<GrpcReply, GrpcError> {
        let req = with_metadata(note, metadata)?;
        let grpc = &mut self.grpc;
        self.runtime.block_on(async move {
            let call = async {
                grpc.ready()
                    .await
                    .map_err(|e| GrpcError::client(&format!("not ready: {e}")))?;
                let codec = ProstCodec::<Note, Note>::default();
                let resp = grpc
                    .unary(req, PathAndQuery::from_static(path), codec)
                    .await
                    .map_err(|s| GrpcError::from_status(&s))?;
                let metadata = metadata_list(resp.metadata());
                Ok(GrpcReply {
                    metadata,
                    notes: vec![resp.into_inner()],
                })
            };
            tokio::time::timeout(CALL_TIMEOUT, call)
                .await
                .unwrap_or_else(|_| Err(GrpcError::client("unary call timed out")))
        })
    }

    /// Calls [`UNARY`].
    pub fn unary(&mut self, note: Note, metadata: &[(&str, &str)]) -> Result<GrpcReply, GrpcError> {
        self.unary_at(UNARY, note, metadata)
    }

    /// Calls [`CHAT`] in lock step: sends each of `texts`, waits for its echo before sending the
    /// next, then half-closes and reads to the end. Each step is bounded by [`CALL_TIMEOUT`].
    /// `after_each(i)` runs (outside the runtime) after the echo of message `i` arrived.
    pub fn chat(
        &mut self,
        texts: &[&str],
        metadata: &[(&str, &str)],
        mut after_each: impl FnMut(usize),
    ) -> Result<GrpcReply, GrpcError> {
        let (tx, rx) = mpsc::unbounded_channel::<Note>();
        let req = with_metadata(Outbound(rx), metadata)?;
        let grpc = &mut self.grpc;
        let runtime = &self.runtime;
        let step = |what: &str| GrpcError::client(&format!("chat: {what} timed out"));
        // The first message goes out with the headers, before the response is awaited: a
        // refusal at the headers must happen while a message is already on its way.
        if let Some(first) = texts.first() {
            tx.send(Note::new(first, 0))
                .map_err(|_| GrpcError::client("chat: send"))?;
        }
        let resp = runtime.block_on(async {
            let call = async {
                grpc.ready()
                    .await
                    .map_err(|e| GrpcError::client(&format!("not ready: {e}")))?;
                let codec = ProstCodec::<Note, Note>::default();
                grpc.streaming(req, PathAndQuery::from_static(CHAT), codec)
                    .await
                    .map_err(|s| GrpcError::from_status(&s))
            };
            tokio::time::timeout(CALL_TIMEOUT, call)
                .await
                .unwrap_or_else(|_| Err(step("response headers")))
        })?;
        let metadata = metadata_list(resp.metadata());
        let mut inbound = resp.into_inner();
        let mut notes = Vec::new();
        for (i, text) in texts.iter().enumerate() {
            if i > 0 {
                let seq = u32::try_from(i).unwrap_or(u32::MAX);
                tx.send(Note::new(text, seq))
                    .map_err(|_| GrpcError::client("chat: send"))?;
            }
            let next = runtime.block_on(async {
                tokio::time::timeout(CALL_TIMEOUT, inbound.message())
                    .await
                    .unwrap_or_else(|_| Err(Status::deadline_exceeded("chat: message timed out")))
            });
            match next {
                Ok(Some(note)) => notes.push(note),
                Ok(None) => return Err(GrpcError::client("chat: stream ended early")),
                Err(s) => return Err(GrpcError::from_status(&s)),
            }
            after_each(i);
        }
        drop(tx);
        let end = runtime.block_on(async {
            tokio::time::timeout(CALL_TIMEOUT, inbound.message())
                .await
                .unwrap_or_else(|_| Err(Status::deadline_exceeded("chat: end timed out")))
        });
        match end {
            Ok(None) => Ok(GrpcReply { metadata, notes }),
            Ok(Some(note)) => Err(GrpcError::client(&format!("chat: unexpected {note:?}"))),
            Err(s) => Err(GrpcError::from_status(&s)),
        }
    }
}
