//! A tonic server on a loopback port, served from its own thread and tokio runtime: what the
//! gRPC upstream ([`crate::grpc::GrpcUpstream`]) and the OTLP receiver
//! ([`crate::otlp::OtlpReceiver`]) share. Started only once it accepts; stopped on drop (the
//! thread is joined within 3 s, or left to end with the process). Uses tokio and tonic.

use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::oneshot;
use tonic::transport::server::TcpIncoming;

/// A running server thread.
pub(crate) struct ServerThread {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl ServerThread {
    /// Binds `addr` and runs `serve(incoming, stopped)` on a thread named `name`; `stopped`
    /// resolves when the returned value drops. Returns once the listener accepts.
    pub fn start<F, Fut>(addr: SocketAddr, name: &str, serve: F) -> std::io::Result<ServerThread>
    where
        F: FnOnce(TcpIncoming, oneshot::Receiver<()>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        let listener = TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<std::io::Result<()>>();
        let thread = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                runtime.block_on(async move {
                    let incoming = tokio::net::TcpListener::from_std(listener).and_then(|l| {
                        TcpIncoming::from_listener(l, true, None).map_err(std::io::Error::other)
                    });
                    match incoming {
                        Ok(incoming) => {
                            let _ = ready_tx.send(Ok(()));
                            serve(incoming, stopped).await;
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                        }
                    }
                });
            })?;
        match ready_rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(std::io::Error::other(format!("{name} did not start"))),
        }
        Ok(ServerThread {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for ServerThread {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        // Graceful shutdown waits for open connections; Envoy may keep one. Wait a bounded
        // time, then leave the thread to end with the process.
        if let Some(thread) = self.thread.take() {
            if crate::wait_until(Duration::from_secs(3), || thread.is_finished()) {
                let _ = thread.join();
            }
        }
    }
}
