//! `hyper-floor`: the cheapest HTTP/1.1 reverse proxy that can be built on the
//! stack Switchyard is built on (hyper 1 server and client, tokio's
//! multi-threaded runtime, Switchyard's mimalloc allocator). The benchmark runs
//! it beside Switchyard to split Switchyard's cost into what the stack itself
//! takes and what Switchyard adds on top (routing, policies, auth, metrics,
//! fallback).
//!
//! It does only what any proxy must: forward each request to one upstream over
//! a pooled keep-alive connection, with the upstream's `Host`, and send the
//! answer back. No auth, no routing, no limits, no metrics, no logging. The
//! upstream's response body is read whole before it is returned (one small
//! frame in the benchmark), which lets the connection go back to the pool at
//! once without a body wrapper. Not for production use.
//!
//! Usage: `hyper-floor LISTEN_ADDR=UPSTREAM_ADDR...`: one listener per pair,
//! each forwarding to its upstream (the benchmark has a fast and a 20 ms one).
//! Prints `hyper-floor listening on http://ADDR` for each once it accepts.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HOST, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

/// Switchyard's own allocator, from its source, so the floor pays what
/// Switchyard pays per allocation.
#[path = "../../../host/src/allocator.rs"]
mod allocator;

#[global_allocator]
static ALLOCATOR: allocator::MiMalloc = allocator::MiMalloc;

/// The one upstream and its idle keep-alive connections (most recent last).
struct Upstream {
    addr: SocketAddr,
    host: HeaderValue,
    idle: Mutex<Vec<SendRequest<Incoming>>>,
}

impl Upstream {
    /// An idle pooled connection, or a new one.
    async fn connection(&self) -> std::io::Result<SendRequest<Incoming>> {
        loop {
            let pooled = self.idle.lock().expect("pool lock").pop();
            let Some(mut sender) = pooled else { break };
            // Ready once its connection task has seen the last response end.
            if sender.ready().await.is_ok() {
                return Ok(sender);
            }
        }
        let stream = TcpStream::connect(self.addr).await?;
        stream.set_nodelay(true)?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(std::io::Error::other)?;
        tokio::spawn(connection);
        Ok(sender)
    }

    /// Forwards one request and returns the upstream's answer.
    async fn forward(&self, mut request: Request<Incoming>) -> Response<Full<Bytes>> {
        request.headers_mut().insert(HOST, self.host.clone());
        let answer = async {
            let mut sender = self.connection().await.map_err(|e| e.to_string())?;
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| e.to_string())?;
            let (head, body) = response.into_parts();
            let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
            self.idle.lock().expect("pool lock").push(sender);
            Ok::<_, String>(Response::from_parts(head, Full::new(body)))
        };
        answer.await.unwrap_or_else(|error| {
            let mut response = Response::new(Full::new(Bytes::from(error)));
            *response.status_mut() = StatusCode::BAD_GATEWAY;
            response
        })
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let pairs: Vec<String> = std::env::args().skip(1).collect();
    if pairs.is_empty() {
        return Err("usage: hyper-floor LISTEN_ADDR=UPSTREAM_ADDR...".into());
    }
    let mut listeners = tokio::task::JoinSet::new();
    for pair in pairs {
        let (listen, upstream) = pair
            .split_once('=')
            .ok_or_else(|| format!("expected LISTEN_ADDR=UPSTREAM_ADDR, got {pair}"))?;
        let upstream = Arc::new(Upstream {
            addr: upstream.parse()?,
            host: HeaderValue::from_str(upstream)?,
            idle: Mutex::new(Vec::new()),
        });
        let listener = TcpListener::bind(listen).await?;
        println!("hyper-floor listening on http://{}", listener.local_addr()?);
        listeners.spawn(serve(listener, upstream));
    }
    while let Some(served) = listeners.join_next().await {
        served??;
    }
    Ok(())
}

/// Accepts connections on `listener` and proxies their requests to `upstream`.
async fn serve(listener: TcpListener, upstream: Arc<Upstream>) -> std::io::Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        let upstream = upstream.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let upstream = upstream.clone();
                async move { Ok::<_, Infallible>(upstream.forward(request).await) }
            });
            // A client that goes away mid-request is not an error worth reporting here.
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
