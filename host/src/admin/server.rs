//! The admin HTTP listener.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{ALLOW, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use super::AdminState;
use super::auth::AdminToken;

/// How long a client may take to send request headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long open admin connections may take to finish after shutdown begins.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause after a failed `accept` (e.g. out of file descriptors) before retrying.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

const JSON: &str = "application/json";
const TEXT: &str = "text/plain; charset=utf-8";

/// Serves the admin API on `listener` until `shutdown` resolves, then stops
/// accepting, lets open requests finish (up to a few seconds) and returns.
///
/// With `token`, every path except `/healthz` and `/readyz` requires
/// `Authorization: Bearer <token>`; an empty token counts as none. The token is
/// kept only as a digest and never logged or echoed.
pub async fn serve(
    listener: TcpListener,
    state: Arc<dyn AdminState>,
    token: Option<String>,
    shutdown: impl Future<Output = ()> + Send,
) {
    let handler = Arc::new(Handler {
        state,
        token: token
            .as_deref()
            .filter(|t| !t.is_empty())
            .map(AdminToken::new),
    });
    drop(token);

    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(32);

    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, auth = handler.token.is_some(), "admin listener ready");
    }

    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let handler = handler.clone();
                    let service = service_fn(move |req| {
                        let handler = handler.clone();
                        async move { Ok::<_, Infallible>(handler.handle(req).await) }
                    });
                    let conn = builder
                        .serve_connection(TokioIo::new(stream), service)
                        .into_owned();
                    let conn = graceful.watch(conn);
                    connections.spawn(async move {
                        if let Err(error) = conn.await {
                            tracing::debug!(%peer, %error, "admin connection ended with an error");
                        }
                    });
                }
                Err(error) => {
                    tracing::warn!(%error, "admin listener: accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
        }
        while connections.try_join_next().is_some() {}
    }
    drop(listener);

    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::debug!("admin connections still open after the drain timeout; closing them");
    }
    connections.shutdown().await;
}

/// The admin paths.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Endpoint {
    Metrics,
    Healthz,
    Readyz,
    Policies,
    Upstreams,
    Reload,
}

impl Endpoint {
    fn of(path: &str) -> Option<Endpoint> {
        Some(match path {
            "/metrics" => Endpoint::Metrics,
            "/healthz" => Endpoint::Healthz,
            "/readyz" => Endpoint::Readyz,
            "/admin/policies" => Endpoint::Policies,
            "/admin/upstreams" => Endpoint::Upstreams,
            "/admin/reload" => Endpoint::Reload,
            _ => return None,
        })
    }

    /// Probes stay open so orchestrators need no token.
    fn is_probe(path: &str) -> bool {
        matches!(path, "/healthz" | "/readyz")
    }

    fn allows(self, method: &Method) -> bool {
        match self {
            Endpoint::Reload => method == Method::POST,
            _ => method == Method::GET || method == Method::HEAD,
        }
    }

    fn allow_header(self) -> &'static str {
        match self {
            Endpoint::Reload => "POST",
            _ => "GET, HEAD",
        }
    }
}

struct Handler {
    state: Arc<dyn AdminState>,
    token: Option<AdminToken>,
}

impl Handler {
    async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        // Take what is needed and drop the request before awaiting anything.
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        let authorized = self.authorized(&path, req.headers().get(AUTHORIZATION));
        drop(req);
        let response = self.respond(&method, &path, authorized).await;
        tracing::debug!(
            target: "switchyard::admin",
            %method,
            path,
            status = response.status().as_u16(),
            "admin request"
        );
        response
    }

    /// Probes are always open; everything else needs the token when one is set.
    fn authorized(&self, path: &str, authorization: Option<&HeaderValue>) -> bool {
        match &self.token {
            None => true,
            Some(_) if Endpoint::is_probe(path) => true,
            Some(token) => token.accepts(authorization.map(HeaderValue::as_bytes)),
        }
    }

    async fn respond(
        &self,
        method: &Method,
        path: &str,
        authorized: bool,
    ) -> Response<Full<Bytes>> {
        if !authorized {
            let mut response = error(
                StatusCode::UNAUTHORIZED,
                "missing or invalid admin token",
                "authentication_error",
                "invalid_admin_token",
            );
            response
                .headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return response;
        }
        let Some(endpoint) = Endpoint::of(path) else {
            return error(
                StatusCode::NOT_FOUND,
                "no such admin endpoint",
                "invalid_request_error",
                "not_found",
            );
        };
        if !endpoint.allows(method) {
            let mut response = error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed on this endpoint",
                "invalid_request_error",
                "method_not_allowed",
            );
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static(endpoint.allow_header()));
            return response;
        }
        match endpoint {
            Endpoint::Metrics => body(
                StatusCode::OK,
                super::CONTENT_TYPE,
                self.state.metrics().encode(),
            ),
            Endpoint::Healthz => body(StatusCode::OK, TEXT, "ok\n"),
            Endpoint::Readyz => {
                if self.state.ready() {
                    body(StatusCode::OK, TEXT, "ready\n")
                } else {
                    body(StatusCode::SERVICE_UNAVAILABLE, TEXT, "not ready\n")
                }
            }
            Endpoint::Policies => body(StatusCode::OK, JSON, self.state.policies().to_string()),
            Endpoint::Upstreams => body(StatusCode::OK, JSON, self.state.upstreams().to_string()),
            Endpoint::Reload => {
                tracing::info!("reload requested through the admin API");
                match self.state.reload().await {
                    Ok(result) => body(StatusCode::OK, JSON, result.to_string()),
                    Err(message) => error(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        &message,
                        "reload_error",
                        "reload_failed",
                    ),
                }
            }
        }
    }
}

fn body(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// An error in the gateway's (OpenAI-shaped) JSON error format.
fn error(status: StatusCode, message: &str, kind: &str, code: &str) -> Response<Full<Bytes>> {
    let payload = json!({"error": {"message": message, "type": kind, "code": code}});
    body(status, JSON, payload.to_string())
}

#[cfg(test)]
#[path = "server_tests.rs"]
mod tests;
