//! The client listener: accepts connections, speaks HTTP/1.1 and h2 (with prior
//! knowledge or ALPN-less upgrade-free h2c), applies the client-side limits, and
//! drains in-flight requests on shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::Gateway;
use crate::config::ServerConfig;

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
    let builder = connection_builder(&limits);
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
        let gateway = gateway.clone();
        let service = service_fn(move |request| {
            let gateway = gateway.clone();
            async move { Ok::<_, Infallible>(gateway.handle(request).await) }
        });
        let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
        let connection = graceful.watch(connection.into_owned());
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(%peer, error = %err, "client connection ended with an error");
            }
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

fn connection_builder(limits: &ClientLimits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_headers(limits.max_header_count)
        .max_buf_size(limits.max_header_bytes.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.h2_max_concurrent_streams)
        .max_header_list_size(limits.max_header_bytes as u32)
        .max_pending_accept_reset_streams(Some(64))
        .max_local_error_reset_streams(Some(256));
    builder
}
