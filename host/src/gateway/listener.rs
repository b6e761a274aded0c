//! The client listener: accepts connections, speaks HTTP/1.1 and h2 (prior
//! knowledge), applies the client-side limits, and drains in-flight requests on
//! shutdown.
//!
//! Limits and where each one is enforced:
//!
//! | limit | HTTP/1.1 | h2 |
//! |---|---|---|
//! | `max_connections` | accept waits for a permit | same |
//! | `header_read_timeout_ms` | first bytes (sniff) and each head, idle keep-alive included (hyper) | first bytes (sniff); then pings every 30 s drop dead peers |
//! | `max_header_count` | hyper (431), then the service (431) | the service (431) |
//! | `max_header_bytes` | hyper read buffer (431) | `SETTINGS_MAX_HEADER_LIST_SIZE` (h2 answers 431) |
//! | `h2_max_concurrent_streams` | – | `SETTINGS_MAX_CONCURRENT_STREAMS` |
//! | `h2_max_pending_accept_reset_streams` / `h2_max_local_error_reset_streams` | – | GOAWAY `ENHANCE_YOUR_CALM` |
//! | `h2_idle_timeout_ms` | – (`header_read_timeout_ms` bounds keep-alive waits) | GOAWAY once no request has started or been answered for it (`listener/connection.rs`) |
//! | `send_timeout_ms` | a write the client takes no byte of for this long fails, closing the connection (`listener/send_watch.rs`) | same |
//! | ambiguous framing (smuggling) | `head_guard` → 400 `invalid_request` | – (h2 frames carry lengths) |
//! | `max_request_body_bytes` | the body read (413) | same |
//! | `body_read_timeout_ms` | the body read (408) | same |

mod connection;
mod head_guard;
mod send_watch;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc, watch};

use super::Gateway;
use super::response::GatewayError;
use crate::config::ServerConfig;

pub use head_guard::{Scan, Scanner};

/// The HTTP/2 connection preface a prior-knowledge client starts with.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// How often an h2 client is pinged, and how long its answer may take.
const H2_PING_INTERVAL: Duration = Duration::from_secs(30);

/// Client-side limits applied to every connection.
#[derive(Debug, Clone)]
pub struct ClientLimits {
    /// Most request headers.
    pub max_header_count: usize,
    /// Largest header block in bytes.
    pub max_header_bytes: usize,
    /// Time allowed to send the request headers.
    pub header_read_timeout: Duration,
    /// Concurrent connections.
    pub max_connections: usize,
    /// h2 streams per connection.
    pub h2_max_concurrent_streams: u32,
    /// h2 streams reset by the client before they were accepted.
    pub h2_max_pending_accept_reset_streams: usize,
    /// h2 streams reset by the gateway for protocol errors, per connection.
    pub h2_max_local_error_reset_streams: usize,
    /// Quiet time after which an h2 connection gets a GOAWAY.
    pub h2_idle_timeout: Duration,
    /// Time a client may take no byte of a response before its connection closes.
    pub send_timeout: Duration,
    /// How long shutdown waits for in-flight requests.
    pub drain_timeout: Duration,
}

impl From<&ServerConfig> for ClientLimits {
    fn from(server: &ServerConfig) -> Self {
        ClientLimits {
            max_header_count: server.max_header_count,
            max_header_bytes: server.max_header_bytes,
            header_read_timeout: Duration::from_millis(server.header_read_timeout_ms),
            max_connections: server.max_connections,
            h2_max_concurrent_streams: server.h2_max_concurrent_streams,
            h2_max_pending_accept_reset_streams: server.h2_max_pending_accept_reset_streams,
            h2_max_local_error_reset_streams: server.h2_max_local_error_reset_streams,
            h2_idle_timeout: Duration::from_millis(server.h2_idle_timeout_ms),
            send_timeout: Duration::from_millis(server.send_timeout_ms),
            drain_timeout: Duration::from_millis(server.drain_timeout_ms),
        }
    }
}

/// Serves clients until `shutdown` resolves, then stops accepting and waits up to
/// the drain timeout for open connections to finish their requests.
pub async fn serve(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    limits: ClientLimits,
    shutdown: impl Future<Output = ()>,
) {
    let builder = Arc::new(connection_builder(&limits));
    let limits = Arc::new(limits);
    // Shutdown turns `draining` true; each connection holds a `live` sender
    // until it closes, so the receiver ends when the last one has.
    let (draining, draining_rx) = watch::channel(false);
    let (live, mut all_closed) = mpsc::channel::<()>(1);
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let (gateway, builder, limits, draining, live) = (
            gateway.clone(),
            builder.clone(),
            limits.clone(),
            draining_rx.clone(),
            live.clone(),
        );
        tokio::spawn(async move {
            connection::serve_connection(stream, gateway, &builder, &limits, draining).await;
            tracing::trace!(%peer, "client connection closed");
            drop((permit, live));
        });
    }
    drop(listener);
    tracing::info!("draining client connections");
    let _ = draining.send(true);
    drop(live);
    tokio::select! {
        _ = all_closed.recv() => tracing::info!("all client connections closed"),
        () = tokio::time::sleep(limits.drain_timeout) => {
            tracing::warn!(timeout_ms = limits.drain_timeout.as_millis() as u64, "drain timeout passed with requests still open");
        }
    }
}

/// Why the listener refuses a request before the data path sees it, if it
/// does: the error to answer, and whether the connection must close after it
/// (an ambiguous body length leaves the rest of the stream unreadable).
fn refusal(
    request: &Request<Incoming>,
    limits: &ClientLimits,
    ambiguous: bool,
) -> Option<(GatewayError, bool)> {
    if ambiguous {
        let err = GatewayError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the request carries an ambiguous body length (Content-Length with \
             Transfer-Encoding, or more than one Content-Length)",
        );
        return Some((err, true));
    }
    // hyper counts HTTP/1.1 header lines itself; h2 has only a byte limit.
    if request.headers().len() > limits.max_header_count {
        let err = GatewayError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers_too_large",
            format!(
                "the request has {} headers; the limit is {}",
                request.headers().len(),
                limits.max_header_count
            ),
        );
        return Some((err, false));
    }
    None
}

fn connection_builder(limits: &ClientLimits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_headers(limits.max_header_count)
        // hyper refuses a head that does not fit its read buffer with 431.
        .max_buf_size(limits.max_header_bytes.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.h2_max_concurrent_streams)
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .max_pending_accept_reset_streams(Some(limits.h2_max_pending_accept_reset_streams))
        .max_local_error_reset_streams(Some(limits.h2_max_local_error_reset_streams))
        // h2 has no header read timeout: pings find peers that went away silently,
        // so a dead connection does not hold its slot forever.
        .keep_alive_interval(Some(H2_PING_INTERVAL))
        .keep_alive_timeout(H2_PING_INTERVAL);
    builder
}
