//! The loopback accept loop the raw HTTP servers share ([`crate::HttpServer`],
//! [`crate::raw::RecordingUpstream`]): a listener on 127.0.0.1:0, one thread per connection,
//! the requests each server records, and a stop on drop that closes the listener and shuts
//! every open connection down. Uses only std.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// What the acceptor and its connections share.
pub(crate) struct Shared<R> {
    /// Set on drop; connections check it between reads.
    pub stop: AtomicBool,
    /// What the server recorded, in order.
    pub requests: Mutex<Vec<R>>,
    conns: Mutex<HashMap<u64, TcpStream>>,
    next_conn: AtomicU64,
}

impl<R> Shared<R> {
    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
}

/// A listening server: `serve` runs on its own thread for every connection.
pub(crate) struct Acceptor<R> {
    pub port: u16,
    pub shared: Arc<Shared<R>>,
    acceptor: Option<JoinHandle<()>>,
}

impl<R: Send + 'static> Acceptor<R> {
    /// Binds 127.0.0.1:0 and starts accepting; threads are named `{name}-{port}`/`{name}-conn-N`.
    pub fn start(
        name: &str,
        serve: impl Fn(TcpStream, &Shared<R>) + Send + Sync + 'static,
    ) -> Acceptor<R> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            requests: Mutex::new(Vec::new()),
            conns: Mutex::new(HashMap::new()),
            next_conn: AtomicU64::new(0),
        });
        let serve = Arc::new(serve);
        let acceptor = {
            let shared = Arc::clone(&shared);
            let name = name.to_string();
            std::thread::Builder::new()
                .name(format!("{name}-{port}"))
                .spawn(move || accept_loop(listener, &name, shared, serve))
                .expect("spawn server thread")
        };
        Acceptor {
            port,
            shared,
            acceptor: Some(acceptor),
        }
    }
}

fn accept_loop<R: Send + 'static>(
    listener: TcpListener,
    name: &str,
    shared: Arc<Shared<R>>,
    serve: Arc<impl Fn(TcpStream, &Shared<R>) + Send + Sync + 'static>,
) {
    for stream in listener.incoming() {
        if shared.stopped() {
            return;
        }
        let Ok(stream) = stream else { continue };
        let id = shared.next_conn.fetch_add(1, Ordering::SeqCst);
        if let Ok(clone) = stream.try_clone() {
            shared.conns.lock().unwrap().insert(id, clone);
        }
        let shared = Arc::clone(&shared);
        let serve = Arc::clone(&serve);
        let _ = std::thread::Builder::new()
            .name(format!("{name}-conn-{id}"))
            .spawn(move || {
                serve(stream, &shared);
                shared.conns.lock().unwrap().remove(&id);
            });
    }
}

impl<R> Drop for Acceptor<R> {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept; the acceptor sees `stop` and returns.
        let _ = TcpStream::connect_timeout(
            &SocketAddr::from((Ipv4Addr::LOCALHOST, self.port)),
            Duration::from_secs(1),
        );
        if let Some(handle) = self.acceptor.take() {
            let _ = handle.join();
        }
        for (_, conn) in self.shared.conns.lock().unwrap().drain() {
            let _ = conn.shutdown(Shutdown::Both);
        }
    }
}
