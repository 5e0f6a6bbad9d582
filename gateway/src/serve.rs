//! The accept loop: one port for HTTP/1.1 and h2c, and the limits that keep a hostile client from
//! holding it.
//!
//! A connection that has not sent a whole request head within `header_read_timeout` of being
//! accepted is closed, however it trickles and whichever protocol it is heading for; on an
//! HTTP/1.1 keep-alive connection each next request head has the same time. A client address
//! holds at most `max_connections_per_client` connections (see [`ConnectionCap`]); loopback
//! clients only when `cap_loopback` says so. On shutdown
//! the listener closes, open connections finish the calls they carry (HTTP/2 gets a GOAWAY,
//! HTTP/1.1 closes after its current answer) and whatever is still open after `shutdown_grace`
//! is cut.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tower::ServiceExt;

use crate::connection_cap::ConnectionCap;
use crate::header_limit::TRANSPORT_MAX_HEADER_BYTES;

/// How long and how much a client may hold of the gateway.
#[derive(Debug, Clone)]
pub struct EdgeLimits {
    /// Time a client has to send a request head, from accepting its connection and, on an
    /// HTTP/1.1 keep-alive connection, from the end of the previous answer.
    pub header_read_timeout: Duration,
    /// Open connections one client address may hold.
    pub max_connections_per_client: usize,
    /// Whether loopback clients are capped too. They are not by default: a reverse proxy on the
    /// same host brings every user from a loopback address, and so does `cutx dev`'s own machine.
    pub cap_loopback: bool,
    /// Concurrent calls on one HTTP/2 connection.
    pub http2_max_concurrent_streams: u32,
    /// How often an HTTP/2 connection is pinged; one unanswered for as long is closed.
    pub http2_keep_alive_interval: Duration,
    /// How long open calls may run on once shutdown has begun.
    pub shutdown_grace: Duration,
}

impl Default for EdgeLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            max_connections_per_client: 64,
            cap_loopback: false,
            http2_max_concurrent_streams: 200,
            http2_keep_alive_interval: Duration::from_secs(20),
            shutdown_grace: Duration::from_secs(20),
        }
    }
}

impl EdgeLimits {
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(!self.header_read_timeout.is_zero(), "the header read timeout must be more than zero");
        anyhow::ensure!(self.max_connections_per_client > 0, "a client must be allowed at least one connection");
        anyhow::ensure!(self.http2_max_concurrent_streams > 0, "an HTTP/2 connection must allow at least one call");
        anyhow::ensure!(
            !self.http2_keep_alive_interval.is_zero(),
            "the HTTP/2 keep-alive interval must be more than zero"
        );
        Ok(())
    }
}

/// Serves `app` on `listener` until `shutdown` completes, then drains as the module says.
pub async fn serve(listener: TcpListener, app: Router, limits: EdgeLimits, shutdown: impl Future<Output = ()>) {
    let builder = connection_builder(&limits);
    let cap = ConnectionCap::new(limits.max_connections_per_client);
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            Some(_) = connections.join_next() => continue,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    backoff_after(e).await;
                    continue;
                }
            },
        };
        let admitted = if peer.ip().to_canonical().is_loopback() && !limits.cap_loopback {
            None
        } else {
            let Some(admitted) = cap.admit(peer.ip()) else {
                tracing::debug!(%peer, "client is at its connection cap: closed");
                continue;
            };
            Some(admitted)
        };
        let connection = serve_connection(&builder, &graceful, stream, peer, app.clone(), limits.header_read_timeout);
        connections.spawn(async move {
            let _admitted = admitted;
            connection.await;
        });
    }
    drop(listener);
    let drained = tokio::time::timeout(limits.shutdown_grace, async {
        graceful.shutdown().await;
        while connections.join_next().await.is_some() {}
    });
    if drained.await.is_err() {
        tracing::warn!(open = connections.len(), "connections still open after the shutdown grace: cut");
        connections.shutdown().await;
    }
}

fn connection_builder(limits: &EdgeLimits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // The transport's own limits sit well above the gateway's (see `header_limit`), so a head
    // between the two gets the gateway's answer, not the transport's bare one.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(TRANSPORT_MAX_HEADER_BYTES);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(TRANSPORT_MAX_HEADER_BYTES as u32)
        .max_concurrent_streams(limits.http2_max_concurrent_streams)
        .keep_alive_interval(limits.http2_keep_alive_interval)
        .keep_alive_timeout(limits.http2_keep_alive_interval);
    builder
}

/// One connection, closed early if no request head arrives within `header_read_timeout`:
/// hyper's own header timeout only starts once the connection has picked HTTP/1.1, and HTTP/2
/// has none, so a client that sends nothing or trickles the HTTP/2 preface is timed here.
fn serve_connection(
    builder: &auto::Builder<TokioExecutor>,
    graceful: &GracefulShutdown,
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    header_read_timeout: Duration,
) -> impl Future<Output = ()> + Send + 'static {
    // Without TCP_NODELAY small gRPC frames wait on Nagle: 40 ms stalls, half the throughput.
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(error = %e, "could not set TCP_NODELAY");
    }
    let requested = Arc::new(AtomicBool::new(false));
    let seen = requested.clone();
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        seen.store(true, Ordering::Relaxed);
        let mut request = request.map(Body::new);
        request.extensions_mut().insert(crate::rate_limit::ClientAddr(peer));
        app.clone().oneshot(request)
    });
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned();
    let connection = graceful.watch(connection);
    async move {
        let first_head_overdue = async {
            tokio::time::sleep(header_read_timeout).await;
            if requested.load(Ordering::Relaxed) {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            served = connection => {
                if let Err(e) = served {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
            }
            () = first_head_overdue => tracing::debug!(%peer, "no request head within the header read timeout: closed"),
        }
    }
}

/// A failed accept of one connection (it was reset in the backlog) is nothing; running out of
/// file descriptors would fail every accept at once, so wait a moment instead of spinning.
async fn backoff_after(e: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(e.kind(), ConnectionAborted | ConnectionRefused | ConnectionReset) {
        return;
    }
    tracing::error!(error = %e, "accepting a connection failed");
    tokio::time::sleep(Duration::from_secs(1)).await;
}
