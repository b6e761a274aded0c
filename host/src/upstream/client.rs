//! The pooled upstream HTTP client: HTTP/1.1 or h2 (when the server offers it
//! over ALPN) on hyper's connection API, over a rustls connector (HTTPS with the
//! platform's roots, plain HTTP for loopback), with one timeout around the whole
//! connect (DNS, TCP and TLS). Idle connections are kept in a pool (`upstream/pool.rs`).
//!
//! Each connection runs in its own task, as hyper requires; the request's task
//! checks a connection out, sends, and (through [`ResponseBody`]) checks it back
//! in when the response has been read. A request that a reused connection never
//! sent (the upstream closed it while it was idle) is sent again on another.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderValue, Request, Response, Uri, header::HOST};
use http_body_util::Full;
use hyper::client::conn::{http1, http2};
use hyper_rustls::{HttpsConnector, MaybeHttpsStream};
use hyper_util::client::legacy::connect::{Connection as _, HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tower_service::Service;

use super::error::{AttemptError, ConnectTimeout};
use super::pool::{H1Sender, H2Sender, Pool, ResponseBody, StreamSlot};
use super::tls;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How an [`UpstreamClient`] connects and pools connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientOptions {
    /// Time allowed to establish a connection: DNS, TCP and TLS together.
    pub connect_timeout: Duration,
    /// Idle HTTP/1.1 connections are closed after this long (and h2
    /// connections opened for a burst are closed once idle; see `Pool::prune`).
    pub pool_idle_timeout: Duration,
    /// Most idle HTTP/1.1 connections kept (one client serves one upstream).
    pub pool_max_idle_per_host: usize,
    /// TCP keepalive probe interval; `None` disables it.
    pub tcp_keepalive: Option<Duration>,
    /// HTTP/2 PING interval on h2 connections; `None` disables it.
    pub http2_keep_alive_interval: Option<Duration>,
    /// Most requests at once on one h2 connection; past it another connection
    /// is opened. Servers commonly allow 100 concurrent streams (RFC 9113
    /// advises no fewer), and a request over the server's limit would wait.
    pub http2_max_streams: usize,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            connect_timeout: Duration::from_secs(2),
            // Under the 60 s idle timeout of common load balancers (AWS ALB's
            // default among them), so the gateway, not the far end, closes
            // an idle connection, and a request is never written onto one
            // the far end is closing.
            pool_idle_timeout: Duration::from_secs(55),
            pool_max_idle_per_host: 256,
            tcp_keepalive: Some(Duration::from_secs(30)),
            http2_keep_alive_interval: Some(Duration::from_secs(30)),
            http2_max_streams: 100,
        }
    }
}

/// A pooled HTTP client for one upstream's calls. Cloning is cheap and shares
/// the pool.
#[derive(Clone)]
pub struct UpstreamClient {
    connector: TimedConnector,
    pool: Arc<Pool>,
    /// The `Host` header for the upstream's authority, made on first use.
    host: Arc<OnceLock<(Authority, HeaderValue)>>,
    options: ClientOptions,
}

impl fmt::Debug for UpstreamClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamClient")
            .field("options", &self.options)
            .finish()
    }
}

/// A connection checked out for one request.
enum Checkout {
    H1(H1Sender),
    H2(H2Sender, StreamSlot),
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
        UpstreamClient {
            connector,
            pool: Arc::new(Pool::new(
                options.pool_max_idle_per_host,
                options.pool_idle_timeout,
                options.http2_max_streams,
            )),
            host: Arc::new(OnceLock::new()),
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
        mut request: Request<Full<Bytes>>,
    ) -> Result<Response<ResponseBody>, AttemptError> {
        // Kept for connecting and error messages: cloning shares the URI's bytes.
        let uri = request.uri().clone();
        loop {
            let (checkout, reused) = match self.checkout().await {
                Some(checkout) => (checkout, true),
                None => (self.connect(&uri).await?, false),
            };
            let mut failed = match checkout {
                Checkout::H2(mut sender, slot) => match sender.try_send_request(request).await {
                    Ok(response) => {
                        return Ok(response.map(|body| ResponseBody::shared(body, slot)));
                    }
                    Err(failed) => {
                        // A shared connection that refused a request is not
                        // offered again: the retry below opens a new one.
                        self.pool.forget_h2(&slot);
                        failed
                    }
                },
                Checkout::H1(mut sender) => {
                    let h1_request = self.origin_form(request, &uri);
                    match sender.try_send_request(h1_request).await {
                        Ok(response) => {
                            let pool = self.pool.clone();
                            return Ok(
                                response.map(|body| ResponseBody::pooled(body, pool, sender))
                            );
                        }
                        Err(failed) => failed,
                    }
                }
            };
            match failed.take_message() {
                // Never sent on a connection that had been idle: try another.
                Some(unsent) if reused => {
                    let (mut parts, body) = unsent.into_parts();
                    parts.uri = uri.clone();
                    request = Request::from_parts(parts, body);
                }
                _ => {
                    let err = failed.into_error();
                    return Err(AttemptError::from_client(&host_label(&uri), false, &err));
                }
            }
        }
    }

    /// A pooled connection ready for a request: a shared h2 connection with
    /// room, or an idle HTTP/1.1 one.
    async fn checkout(&self) -> Option<Checkout> {
        if let Some((sender, slot)) = self.pool.take_h2() {
            return Some(Checkout::H2(sender, slot));
        }
        while let Some(mut sender) = self.pool.take_h1() {
            // Not ready yet only while its task finishes the previous response.
            if sender.ready().await.is_ok() {
                return Some(Checkout::H1(sender));
            }
        }
        None
    }

    /// Opens a connection to `uri`'s host and starts its task.
    async fn connect(&self, uri: &Uri) -> Result<Checkout, AttemptError> {
        let _connecting = self.pool.connecting();
        self.open(uri).await
    }

    async fn open(&self, uri: &Uri) -> Result<Checkout, AttemptError> {
        let connect_failed = |err: &(dyn std::error::Error + 'static)| {
            AttemptError::from_client(&host_label(uri), true, err)
        };
        let stream = self
            .connector
            .clone()
            .call(uri.clone())
            .await
            .map_err(|err| connect_failed(&*err))?;
        if stream.connected().is_negotiated_h2() {
            let mut builder = http2::Builder::new(TokioExecutor::new());
            builder.timer(TokioTimer::new());
            if let Some(interval) = self.options.http2_keep_alive_interval {
                builder
                    .keep_alive_interval(interval)
                    .keep_alive_timeout(interval.min(Duration::from_secs(20)));
            }
            let (sender, connection) = builder
                .handshake(stream)
                .await
                .map_err(|err| connect_failed(&err))?;
            run_connection(connection);
            let slot = self.pool.add_h2(sender.clone());
            self.reap_idle_later();
            Ok(Checkout::H2(sender, slot))
        } else {
            let (sender, connection) = http1::handshake(stream)
                .await
                .map_err(|err| connect_failed(&err))?;
            run_connection(connection);
            self.reap_idle_later();
            Ok(Checkout::H1(sender))
        }
    }

    /// The request as HTTP/1.1 sends it to an origin server: the path and query
    /// as the target, the authority in `Host` (without the scheme's default port).
    fn origin_form(&self, mut request: Request<Full<Bytes>>, uri: &Uri) -> Request<Full<Bytes>> {
        if !request.headers().contains_key(HOST)
            && let Some(host) = self.host_header(uri)
        {
            request.headers_mut().insert(HOST, host);
        }
        let target = uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        *request.uri_mut() = Uri::from(target);
        request
    }

    /// `Host` for `uri`, kept for the client's upstream (the authority every
    /// request of one client has).
    fn host_header(&self, uri: &Uri) -> Option<HeaderValue> {
        let authority = uri.authority()?;
        if let Some((cached, value)) = self.host.get() {
            if cached == authority {
                return Some(value.clone());
            }
            return host_value(uri);
        }
        let value = host_value(uri)?;
        let _ = self.host.set((authority.clone(), value.clone()));
        Some(value)
    }

    /// Starts the task that closes connections idle past the timeout, once per
    /// pool; it ends with the pool.
    fn reap_idle_later(&self) {
        if !self.pool.start_reaper() {
            return;
        }
        let pool: Weak<Pool> = Arc::downgrade(&self.pool);
        let every = (self.options.pool_idle_timeout / 2).max(Duration::from_secs(1));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                match pool.upgrade() {
                    Some(pool) => pool.prune(),
                    None => return,
                }
            }
        });
    }
}

/// Runs an upstream connection's state machine in its own task until it closes.
fn run_connection(connection: impl Future<Output = hyper::Result<()>> + Send + 'static) {
    tokio::spawn(async move {
        if let Err(err) = connection.await {
            tracing::debug!(error = %err, "upstream connection ended");
        }
    });
}

/// `Host` for `uri`: its host, and its port unless that is the scheme's default.
fn host_value(uri: &Uri) -> Option<HeaderValue> {
    let host = uri.host()?;
    let default_port = match uri.scheme() {
        Some(scheme) if *scheme == Scheme::HTTPS => Some(443),
        Some(scheme) if *scheme == Scheme::HTTP => Some(80),
        _ => None,
    };
    match uri.port_u16() {
        Some(port) if Some(port) != default_port => {
            HeaderValue::from_str(&format!("{host}:{port}")).ok()
        }
        _ => HeaderValue::from_str(host).ok(),
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

type Stream = MaybeHttpsStream<TokioIo<TcpStream>>;

impl Service<Uri> for TimedConnector {
    type Response = Stream;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Stream, BoxError>> + Send>>;

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
