//! The HTTP server: hyper's HTTP/1 connections on a tokio runtime, with read timeouts, half-
//! closing clients, and a shutdown bounded by a grace period.
//!
//! - A request header must arrive within `header_timeout` (hyper's header read timeout; also
//!   closes keep-alive connections idle that long), a body within `body_timeout` (408).
//! - A client that sends its request and then shuts its write side gets its answer (hyper's
//!   half-close support).
//! - On SIGINT/SIGTERM (or the stop channel) the listener closes, the coordinator refuses new
//!   requests (503), and every connection is asked to finish: idle ones close at once, busy ones
//!   after their current answer. If some are still open after the grace period, requests still
//!   waiting for the coordinator are refused with 503 (counted as abandoned), and after a short
//!   flush every remaining connection is dropped — a client holding a partial header or a body
//!   it never sends cannot keep the server up. A second signal ends the grace period at once.

use super::metrics::PROTOCOL_ROUTE;
use super::routes::{router, AppState};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;

/// Time allowed, after the grace period, for refusals to be written before connections drop.
const FLUSH: Duration = Duration::from_millis(500);

/// How the server learns it must stop.
pub enum Stop {
    /// SIGINT or SIGTERM.
    Signals,
    /// A message (or the sender dropped) on this channel.
    Channel(tokio::sync::oneshot::Receiver<()>),
}

/// Serves on `listener` until told to stop, then drains within the grace period (see the
/// module doc). Tells the coordinator to drain at the stop and again when done.
/// `ready` is told once the stop is armed (signal handlers installed), before any connection
/// is accepted: a signal sent after the server says it listens always stops it gracefully.
pub fn run(
    listener: std::net::TcpListener,
    state: Arc<AppState>,
    stop: Stop,
    ready: std::sync::mpsc::Sender<()>,
) -> anyhow::Result<()> {
    let result = run_runtime(listener, state.clone(), stop, ready);
    // However it ended, the coordinator must learn that no connection is left.
    state.finish();
    result
}

fn run_runtime(
    listener: std::net::TcpListener,
    state: Arc<AppState>,
    stop: Stop,
    ready: std::sync::mpsc::Sender<()>,
) -> anyhow::Result<()> {
    listener.set_nonblocking(true)?;
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 8));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        // Tokenizing runs on the blocking pool: at most one thread per core.
        .max_blocking_threads(threads)
        .enable_all()
        .build()?;
    let armed = {
        let _in_runtime = rt.enter();
        Armed::new(stop)?
    };
    let _ = ready.send(());
    let result = rt.block_on(serve(listener, state, armed));
    // A tokenization still running on the blocking pool is not waited for past the flush.
    rt.shutdown_timeout(FLUSH);
    result
}

async fn serve(
    listener: std::net::TcpListener,
    state: Arc<AppState>,
    mut armed: Armed,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let app = router(state.clone());
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(state.options.header_timeout)
        .half_close(true)
        .keep_alive(true);
    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    let mut connections = JoinSet::new();
    {
        let stop = async {
            tokio::select! {
                () = armed.first() => {},
                () = state.stopped_now() => {},
            }
        };
        tokio::pin!(stop);
        loop {
            tokio::select! {
                () = &mut stop => break,
                accepted = listener.accept() => {
                    let stream = match accepted {
                        Ok((stream, _)) => stream,
                        // Out of descriptors, a reset before accept: keep serving the others.
                        Err(_) => {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            continue;
                        }
                    };
                    let _ = stream.set_nodelay(true);
                    let conn = builder.serve_connection(
                        TokioIo::new(stream),
                        TowerToHyperService::new(app.clone()),
                    );
                    let (mut shutdown, state) = (shutdown_rx.clone(), state.clone());
                    connections.spawn(async move {
                        tokio::pin!(conn);
                        let result = tokio::select! {
                            r = conn.as_mut() => r,
                            () = async { let _ = shutdown.wait_for(|s| *s).await; } => {
                                conn.as_mut().graceful_shutdown();
                                conn.await
                            }
                        };
                        if let Err(e) = result {
                            protocol_error(&state, &e);
                        }
                    });
                }
                // Reap finished connections so the set does not grow.
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
    }
    drop(listener);
    state.drain();
    let _ = shutdown_tx.send(true);
    let all_closed = async { while connections.join_next().await.is_some() {} };
    // A second signal cuts the grace period short.
    let second = armed.second();
    let closed = tokio::select! {
        r = tokio::time::timeout(state.options.grace, all_closed) => r.is_ok(),
        () = second => false,
    };
    if !closed {
        state.abandon();
        let flushed = async { while connections.join_next().await.is_some() {} };
        let _ = tokio::time::timeout(FLUSH, flushed).await;
        connections.abort_all();
    }
    Ok(())
}

/// Counts the answer hyper wrote itself for a request it could not parse.
fn protocol_error(state: &AppState, e: &hyper::Error) {
    if e.is_timeout() {
        state.metrics.header_timeouts.fetch_add(1, Relaxed);
    } else if e.is_parse_too_large() {
        let status = if e.to_string().contains("URI") {
            414
        } else {
            431
        };
        state.metrics.response(PROTOCOL_ROUTE, status);
    } else if e.is_parse() && !e.is_parse_version_h2() {
        state.metrics.response(PROTOCOL_ROUTE, 400);
    }
}

/// The stop, armed: signal handlers installed, or the channel.
enum Armed {
    Signals(Signals),
    Channel(Option<tokio::sync::oneshot::Receiver<()>>),
}

impl Armed {
    /// Installs the signal handlers now (inside a runtime).
    fn new(stop: Stop) -> std::io::Result<Self> {
        Ok(match stop {
            Stop::Signals => Armed::Signals(Signals::new()?),
            Stop::Channel(rx) => Armed::Channel(Some(rx)),
        })
    }

    /// Resolves at the stop.
    async fn first(&mut self) {
        match self {
            Armed::Signals(s) => s.recv().await,
            Armed::Channel(rx) => {
                if let Some(rx) = rx.take() {
                    let _ = rx.await;
                }
            }
        }
    }

    /// Resolves at a second signal (never for a channel).
    async fn second(&mut self) {
        match self {
            Armed::Signals(s) => s.recv().await,
            Armed::Channel(_) => std::future::pending().await,
        }
    }
}

/// SIGINT and SIGTERM.
struct Signals {
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Signals {
                int: signal(SignalKind::interrupt())?,
                term: signal(SignalKind::terminate())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Signals {})
    }

    async fn recv(&mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.int.recv() => {},
            _ = self.term.recv() => {},
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Read timeouts and the shutdown grace period.
#[derive(Debug, Clone, Copy)]
pub struct HttpOptions {
    /// Most time for a request's header to arrive (also the keep-alive idle timeout).
    pub header_timeout: Duration,
    /// Most time for a request's body to arrive.
    pub body_timeout: Duration,
    /// Most time, after the stop, for open connections to finish before they are dropped.
    pub grace: Duration,
}

impl Default for HttpOptions {
    /// nginx reads a client's header and its body with 60 s timeouts by default
    /// (`client_header_timeout`, `client_body_timeout`) and the CIS nginx benchmark hardens
    /// both to 10 s; Envoy leaves `request_headers_timeout` off and bounds a stream at 300 s in
    /// its edge best practices. A loopback inference server whose requests have a 3 s deadline
    /// takes the hardened 10 s for both, and a 10 s grace period: as long as the read timeouts,
    /// so a client that is slow but within them still finishes.
    fn default() -> Self {
        HttpOptions {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            grace: Duration::from_secs(10),
        }
    }
}
