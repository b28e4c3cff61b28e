//! The accept loop and the connections: HTTP/1 through hyper with a
//! header-read timeout, a cap on open connections, and a shutdown that stops
//! accepting, lets requests in flight finish until a deadline and then closes
//! whatever is left.
//!
//! `axum::serve` does none of this: it gives hyper no timer, so hyper's
//! header-read timeout is off and a connection that sends nothing stays open
//! for good; it accepts until the process runs out of file descriptors; and
//! its graceful shutdown waits for every connection with no end. hyper's
//! header-read timeout starts whenever the connection waits for a request
//! head — on a new connection and after every response — so it is also the
//! keep-alive idle timeout. Only HTTP/1 is served (as before): it needs no
//! protocol sniffing, which would run before, and outside, that timeout.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Largest request head (request line and headers) hyper buffers; hyper
/// answers a longer one with a bare 431 and closes the connection. It bounds
/// what a slow client can make the server hold per connection.
const MAX_HEAD_BYTES: usize = 64 << 10;

/// File descriptors kept for everything but client connections: the
/// database, models, datasets and checkpoints being read or written.
const RESERVED_FDS: usize = 128;

/// How the server treats connections.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Time a connection has to send a complete request head, counted from
    /// when it opens or from its previous response.
    pub header_timeout: Duration,
    /// Connections served at once; further ones wait in the listen backlog.
    pub max_connections: usize,
}

/// Accepts and serves connections until `shutdown` is cancelled; then stops
/// accepting (the listener is closed), asks every connection to close after
/// its request in flight, and hands back those still open.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: CancellationToken,
) -> JoinSet<()> {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(MAX_HEAD_BYTES);
    let mut connections = JoinSet::new();
    let mut saturated_since: Option<Instant> = None;
    loop {
        let (stream, peer, permit) = tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = accept(&listener, &permits, limits, &mut saturated_since) => match accepted {
                Some(accepted) => accepted,
                None => continue,
            },
        };
        let conn = http.serve_connection(
            TokioIo::new(stream),
            TowerToHyperService::new(router.clone()),
        );
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            let _open = Open::new(permit);
            tokio::pin!(conn);
            let result = tokio::select! {
                result = conn.as_mut() => result,
                _ = shutdown.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            match result {
                Err(e) if e.is_timeout() => {
                    tracing::debug!(%peer, "connection closed: no request head in time")
                }
                Err(e) => tracing::debug!(%peer, "connection closed: {e}"),
                Ok(()) => {}
            }
        });
    }
    connections
}

/// Waits for `connections` to close until `deadline`, then closes the rest;
/// how many were closed that way.
pub(crate) async fn drain(mut connections: JoinSet<()>, deadline: Instant) -> usize {
    let all_closed = tokio::time::timeout_at(deadline, async {
        while connections.join_next().await.is_some() {}
    })
    .await
    .is_ok();
    if all_closed {
        return 0;
    }
    let left = connections.len();
    connections.shutdown().await;
    left
}

/// The next connection, once one may be opened; `None` after a failed accept.
async fn accept(
    listener: &TcpListener,
    permits: &Arc<Semaphore>,
    limits: Limits,
    saturated_since: &mut Option<Instant>,
) -> Option<(TcpStream, SocketAddr, OwnedSemaphorePermit)> {
    if permits.available_permits() == 0 {
        // Once a minute at most: an attacker's sockets must not flood the log.
        if saturated_since.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
            tracing::warn!(
                "{} connections open (--max-connections): new ones wait until one closes",
                limits.max_connections
            );
            *saturated_since = Some(Instant::now());
        }
    }
    let permit = permits.clone().acquire_owned().await.ok()?;
    match listener.accept().await {
        Ok((stream, peer)) => Some((stream, peer, permit)),
        Err(e) if is_per_connection(&e) => None,
        Err(e) => {
            // Out of file descriptors or memory: give the process a moment.
            tracing::warn!("accepting a connection failed: {e}");
            tokio::time::sleep(Duration::from_millis(100)).await;
            None
        }
    }
}

/// Errors that concern only the connection being accepted.
fn is_per_connection(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}

/// An open connection: holds its place under the cap and counts in
/// `tuneserve_http_connections` until dropped (closed or cut off).
struct Open {
    _permit: OwnedSemaphorePermit,
}

impl Open {
    fn new(permit: OwnedSemaphorePermit) -> Self {
        metrics::gauge!(crate::metric_names::HTTP_CONNECTIONS).increment(1.0);
        Self { _permit: permit }
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        metrics::gauge!(crate::metric_names::HTTP_CONNECTIONS).decrement(1.0);
    }
}

/// The connection cap to use: `requested`, or less where the limit on open
/// files would be reached first (after raising that limit's soft value to
/// its hard one, as far as the system allows).
pub(crate) fn fit_connection_cap(requested: usize) -> usize {
    let Some(files) = raise_open_files_limit() else {
        return requested;
    };
    let room = files.saturating_sub(RESERVED_FDS).max(1);
    if requested > room {
        tracing::warn!(
            "--max-connections {requested} lowered to {room}: the process may open {files} files"
        );
        return room;
    }
    requested
}

/// Raises the soft limit on open files to the hard one; the limit then in
/// force (`None` where unknown or unlimited).
#[cfg(unix)]
fn raise_open_files_limit() -> Option<usize> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct it is given, which lives on this stack.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return None;
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            ..limit
        };
        // SAFETY: setrlimit only reads the struct; failing leaves the limit as it was.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit = raised;
        }
    }
    match limit.rlim_cur {
        libc::RLIM_INFINITY => None,
        n => usize::try_from(n).ok(),
    }
}

#[cfg(not(unix))]
fn raise_open_files_limit() -> Option<usize> {
    None
}
