//! The pooled upstream HTTP client: hyper-util's pooling client over a rustls
//! connector (HTTPS with the platform's roots, plain HTTP for loopback; HTTP/1.1,
//! or h2 when the server offers it over ALPN), with one timeout around the whole
//! connect (DNS, TCP and TLS).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, Uri};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_rustls::{HttpsConnector, MaybeHttpsStream};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tower_service::Service;

use super::error::{AttemptError, ConnectTimeout};
use super::tls;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How an [`UpstreamClient`] connects and pools connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientOptions {
    /// Time allowed to establish a connection: DNS, TCP and TLS together.
    pub connect_timeout: Duration,
    /// Idle pooled connections are closed after this long.
    pub pool_idle_timeout: Duration,
    /// Most idle connections kept per upstream host.
    pub pool_max_idle_per_host: usize,
    /// TCP keepalive probe interval; `None` disables it.
    pub tcp_keepalive: Option<Duration>,
    /// HTTP/2 PING interval on h2 connections; `None` disables it.
    pub http2_keep_alive_interval: Option<Duration>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            connect_timeout: Duration::from_secs(2),
            pool_idle_timeout: Duration::from_secs(90),
            pool_max_idle_per_host: 256,
            tcp_keepalive: Some(Duration::from_secs(30)),
            http2_keep_alive_interval: Some(Duration::from_secs(30)),
        }
    }
}

/// A pooled HTTP client for upstream calls. Cloning is cheap and shares the pool.
#[derive(Clone)]
pub struct UpstreamClient {
    client: Client<TimedConnector, Full<Bytes>>,
    options: ClientOptions,
}

impl fmt::Debug for UpstreamClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamClient")
            .field("options", &self.options)
            .finish()
    }
}

impl UpstreamClient {
    /// Builds a client. HTTPS upstreams are verified against the platform's root
    /// certificates (see [`tls::native_roots_available`]).
    pub fn new(options: ClientOptions) -> UpstreamClient {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_keepalive(options.tcp_keepalive);
        // Spread over the resolved addresses; the total is bounded by `TimedConnector`.
        http.set_connect_timeout(Some(options.connect_timeout));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls::client_config())
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        let connector = TimedConnector {
            inner: https,
            timeout: options.connect_timeout,
        };

        let mut builder = Client::builder(TokioExecutor::new());
        builder
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(options.pool_idle_timeout)
            .pool_max_idle_per_host(options.pool_max_idle_per_host);
        if let Some(interval) = options.http2_keep_alive_interval {
            builder
                .http2_keep_alive_interval(interval)
                .http2_keep_alive_timeout(interval.min(Duration::from_secs(20)));
        }
        UpstreamClient {
            client: builder.build(connector),
            options,
        }
    }

    /// The options the client was built with.
    pub fn options(&self) -> &ClientOptions {
        &self.options
    }

    /// Sends a request and returns as soon as the response headers arrive, whatever
    /// the status. The URI must be absolute (`http://` or `https://`).
    pub async fn send(
        &self,
        request: Request<Full<Bytes>>,
    ) -> Result<Response<Incoming>, AttemptError> {
        // Kept for the error message only: cloning shares the URI's bytes, and the
        // label is formatted only when the request fails.
        let uri = request.uri().clone();
        self.client.request(request).await.map_err(|err| {
            // Describe the cause; the wrapper only says "client error (Connect)".
            let cause = std::error::Error::source(&err).unwrap_or(&err);
            AttemptError::from_client(&host_label(&uri), err.is_connect(), cause)
        })
    }
}

/// The host (and port) of a URI, for error messages: no user info, path or query.
pub(crate) fn host_label(uri: &Uri) -> String {
    match (uri.host(), uri.port_u16()) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        (Some(host), None) => host.to_string(),
        _ => "upstream".to_string(),
    }
}

/// The HTTPS-or-HTTP connector with one deadline over DNS, TCP and TLS.
#[derive(Clone)]
struct TimedConnector {
    inner: HttpsConnector<HttpConnector>,
    timeout: Duration,
}

type Connection = MaybeHttpsStream<TokioIo<TcpStream>>;

impl Service<Uri> for TimedConnector {
    type Response = Connection;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Connection, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connecting = self.inner.call(uri);
        let timeout = self.timeout;
        Box::pin(async move {
            match tokio::time::timeout(timeout, connecting).await {
                Ok(result) => result,
                Err(_) => Err(Box::new(ConnectTimeout(timeout.as_millis())) as BoxError),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_label_has_no_path_or_query() {
        let uri: Uri = "https://user:pw@example.com:8443/a/b?api-version=1&sig=secret"
            .parse()
            .unwrap();
        assert_eq!(host_label(&uri), "example.com:8443");
        let uri: Uri = "https://example.com/x".parse().unwrap();
        assert_eq!(host_label(&uri), "example.com");
    }
}
