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
//! | ambiguous framing (smuggling) | [`head_guard`] → 400 `invalid_request` | – (h2 frames carry lengths) |
//! | `max_request_body_bytes` | the body read (413) | same |
//! | `body_read_timeout_ms` | the body read (408) | same |

mod head_guard;

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use super::Gateway;
use super::response::{GatewayBody, GatewayError};
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
    let graceful = GracefulShutdown::new();
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
        let (gateway, builder, limits, watcher) = (
            gateway.clone(),
            builder.clone(),
            limits.clone(),
            graceful.watcher(),
        );
        tokio::spawn(async move {
            serve_connection(stream, gateway, &builder, &limits, watcher).await;
            tracing::trace!(%peer, "client connection closed");
            drop(permit);
        });
    }
    drop(listener);
    tracing::info!("draining client connections");
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all client connections closed"),
        () = tokio::time::sleep(limits.drain_timeout) => {
            tracing::warn!(timeout_ms = limits.drain_timeout.as_millis() as u64, "drain timeout passed with requests still open");
        }
    }
}

async fn serve_connection(
    stream: TcpStream,
    gateway: Arc<Gateway>,
    builder: &auto::Builder<TokioExecutor>,
    limits: &Arc<ClientLimits>,
    watcher: Watcher,
) {
    // hyper's version detection waits for bytes without a deadline, and its
    // header timer only starts after it: bound the silence before the first bytes.
    let h2 = match sniff_h2(&stream, limits.header_read_timeout).await {
        Some(h2) => h2,
        None => return,
    };
    let head_bytes = limits.max_header_bytes.saturating_add(8192);
    let (io, verdicts) =
        head_guard::GuardedIo::new(stream, !h2, head_bytes, limits.max_header_count);
    let limits = limits.clone();
    let service = service_fn(move |request: Request<Incoming>| {
        let gateway = gateway.clone();
        let refusal = refuse(&request, &limits, verdicts.next_request_is_ambiguous());
        async move {
            Ok::<_, Infallible>(match refusal {
                Some(response) => response,
                None => gateway.handle(request).await,
            })
        }
    });
    let connection = builder.serve_connection(TokioIo::new(io), service);
    let connection = watcher.watch(connection.into_owned());
    if let Err(err) = connection.await {
        tracing::debug!(error = %err, "client connection ended with an error");
    }
}

/// Waits (up to `timeout`) until the client has sent enough to tell HTTP/1.1 from
/// an h2 preface. None: the client went away or stayed silent.
async fn sniff_h2(stream: &TcpStream, timeout: Duration) -> Option<bool> {
    let sniff = async {
        let mut buf = [0u8; H2_PREFACE.len()];
        loop {
            let n = stream.peek(&mut buf).await.ok()?;
            if n == 0 {
                return None;
            }
            if buf[..n] != H2_PREFACE[..n] {
                return Some(false);
            }
            if n == H2_PREFACE.len() {
                return Some(true);
            }
            // A partial preface: peek returns at once until more arrives.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    match tokio::time::timeout(timeout, sniff).await {
        Ok(found) => found,
        Err(_) => {
            tracing::debug!("client sent nothing within the header read timeout");
            None
        }
    }
}

/// Answers requests the listener refuses before the data path sees them.
fn refuse(
    request: &Request<Incoming>,
    limits: &ClientLimits,
    ambiguous: bool,
) -> Option<Response<GatewayBody>> {
    if ambiguous {
        let mut response = GatewayError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the request carries an ambiguous body length (Content-Length with \
             Transfer-Encoding, or more than one Content-Length)",
        )
        .into_response();
        response
            .headers_mut()
            .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
        return Some(response);
    }
    // hyper counts HTTP/1.1 header lines itself; h2 has only a byte limit.
    if request.headers().len() > limits.max_header_count {
        return Some(
            GatewayError::new(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "headers_too_large",
                format!(
                    "the request has {} headers; the limit is {}",
                    request.headers().len(),
                    limits.max_header_count
                ),
            )
            .into_response(),
        );
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
