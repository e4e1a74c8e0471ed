//! `otlp-receiver`: a tiny OTLP/gRPC trace receiver that prints one line per span it receives
//! (trace id, HTTP status, span name, the `auth.*` tags and `guid:x-request-id`). The demo runs
//! it in place of Jaeger when nothing listens on 127.0.0.1:4317.
//!
//! ```text
//! otlp-receiver [--listen 127.0.0.1:4317] [--seconds N]
//! ```
//! Runs until killed, or for N seconds. Loopback by default.

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use svcauth_tests::OtlpReceiver;

fn usage() -> ! {
    eprintln!("usage: otlp-receiver [--listen 127.0.0.1:4317] [--seconds N]");
    std::process::exit(2)
}

fn main() {
    let mut listen: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 4317));
    let mut seconds: Option<u64> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => match args.next().and_then(|a| a.parse().ok()) {
                Some(a) => listen = a,
                None => usage(),
            },
            "--seconds" => match args.next().and_then(|a| a.parse().ok()) {
                Some(s) => seconds = Some(s),
                None => usage(),
            },
            _ => usage(),
        }
    }
    let printer = Box::new(|span: &svcauth_tests::SpanRecord| {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{}", span.summary());
        let _ = out.flush();
    });
    let receiver = match OtlpReceiver::start_on(listen, Some(printer)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("otlp-receiver: cannot listen on {listen}: {e}");
            std::process::exit(1)
        }
    };
    eprintln!(
        "otlp-receiver: listening on {} (OTLP/gRPC traces)",
        receiver.addr()
    );
    match seconds {
        Some(s) => std::thread::sleep(Duration::from_secs(s)),
        None => loop {
            std::thread::sleep(Duration::from_secs(3600));
        },
    }
}
