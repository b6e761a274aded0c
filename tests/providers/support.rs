//! Loopback upstreams for the provider tests: a recording HTTP server with a canned
//! answer, and raw TCP helpers for misbehaving ones.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use switchyard::config::Config;
use switchyard::provider::{AttemptError, Operation, ProviderAdapter, UpstreamBody, UpstreamCall};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A request as the upstream received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// Path and query.
    pub uri: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Recorded {
    /// The single value of a header (panics when repeated).
    pub fn header(&self, name: &str) -> Option<&str> {
        let mut values = self.headers.get_all(name).iter();
        let first = values.next()?;
        assert!(values.next().is_none(), "header {name} sent more than once");
        Some(first.to_str().expect("ASCII header"))
    }
}

/// A canned answer.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, &'static str)>,
    pub body: &'static str,
}

impl Reply {
    pub fn ok_json() -> Reply {
        Reply {
            status: 200,
            headers: vec![("content-type", "application/json")],
            body: r#"{"id":"chatcmpl-1","object":"chat.completion","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}"#,
        }
    }
}

/// A recording HTTP/1.1 upstream on 127.0.0.1.
pub struct Upstream {
    pub addr: SocketAddr,
    recorded: Arc<Mutex<Vec<Recorded>>>,
    connections: Arc<AtomicUsize>,
}

impl Upstream {
    pub async fn start(reply: Reply) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let recorded = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let (rec, conns) = (recorded.clone(), connections.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                conns.fetch_add(1, Ordering::SeqCst);
                let (rec, reply) = (rec.clone(), reply.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |req: http::Request<Incoming>| {
                        let (rec, reply) = (rec.clone(), reply.clone());
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body.collect().await?.to_bytes();
                            rec.lock().unwrap().push(Recorded {
                                method: parts.method.to_string(),
                                uri: parts
                                    .uri
                                    .path_and_query()
                                    .map(|p| p.to_string())
                                    .unwrap_or_default(),
                                headers: parts.headers,
                                body,
                            });
                            let mut response =
                                Response::new(Full::new(Bytes::from_static(reply.body.as_bytes())));
                            *response.status_mut() =
                                http::StatusCode::from_u16(reply.status).unwrap();
                            for (name, value) in &reply.headers {
                                response.headers_mut().insert(*name, value.parse().unwrap());
                            }
                            Ok::<_, hyper::Error>(response)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Upstream {
            addr,
            recorded,
            connections,
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request received so far.
    pub fn recorded(&self) -> Vec<Recorded> {
        self.recorded.lock().unwrap().clone()
    }

    /// The only request received.
    pub fn only(&self) -> Recorded {
        let all = self.recorded();
        assert_eq!(all.len(), 1, "expected one request, got {all:#?}");
        all.into_iter().next().unwrap()
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

/// An environment with exactly these variables.
pub fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |name| map.get(name).cloned()
}

/// Parses a config holding one `[[upstream]]` (its body given) and builds that
/// upstream's adapter.
pub fn adapter(upstream_toml: &str, env: &dyn Fn(&str) -> Option<String>) -> ProviderAdapter {
    try_adapter(upstream_toml, env).unwrap_or_else(|err| panic!("adapter: {err}"))
}

/// Like [`adapter`], returning the adapter error.
pub fn try_adapter(
    upstream_toml: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<ProviderAdapter, switchyard::provider::ProviderConfigError> {
    let text = format!("[[upstream]]\n{upstream_toml}\n");
    let config = Config::parse(&text, None).unwrap_or_else(|err| panic!("config: {err}\n{text}"));
    ProviderAdapter::from_config(&config.upstreams[0], &config.server, env)
}

/// One call's inputs.
pub struct Call {
    pub operation: Operation,
    pub upstream_model: String,
    pub body: Bytes,
    pub streaming: bool,
    pub headers: HeaderMap,
    pub request_id: String,
}

impl Call {
    /// A chat completion for `model` with a small body naming it.
    pub fn chat(model: &str) -> Call {
        let body = serde_json::json!({
            "model": model,
            "messages": [{"role": "user", "content": "Say hi"}],
        });
        Call {
            operation: Operation::ChatCompletions,
            upstream_model: model.to_string(),
            body: Bytes::from(body.to_string()),
            streaming: false,
            headers: HeaderMap::new(),
            request_id: "req-123".to_string(),
        }
    }

    pub fn header(mut self, name: &'static str, value: &str) -> Call {
        self.headers.append(name, value.parse().unwrap());
        self
    }

    pub async fn send(
        &self,
        adapter: &ProviderAdapter,
    ) -> Result<http::Response<UpstreamBody>, AttemptError> {
        adapter
            .send(UpstreamCall {
                operation: self.operation,
                upstream_model: &self.upstream_model,
                body: self.body.clone(),
                streaming: self.streaming,
                headers: &self.headers,
                request_id: &self.request_id,
            })
            .await
    }

    /// Sends and reads the whole answer.
    pub async fn fetch(&self, adapter: &ProviderAdapter) -> (http::response::Parts, Bytes) {
        let response = self.send(adapter).await.expect("the attempt succeeds");
        let (parts, body) = response.into_parts();
        (
            parts,
            body.collect().await.expect("the body arrives").to_bytes(),
        )
    }
}

/// Reads one HTTP/1.1 request (headers and a Content-Length body) off a raw socket.
pub async fn read_request(stream: &mut TcpStream) -> Vec<u8> {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).await.unwrap();
        if n == 0 {
            return data;
        }
        data.extend_from_slice(&buf[..n]);
        if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&data[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map(|v| v.trim().parse().unwrap())
                .unwrap_or(0);
            if data.len() >= end + 4 + length {
                return data;
            }
        }
    }
}

/// A port nothing listens on.
pub async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    addr
}

/// A raw TCP server running `handle` on each accepted connection.
pub async fn raw_server<F, Fut>(handle: F) -> SocketAddr
where
    F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(handle(stream));
        }
    });
    addr
}

/// Writes all of `bytes`.
pub async fn write(stream: &mut TcpStream, bytes: &[u8]) {
    stream.write_all(bytes).await.unwrap();
    stream.flush().await.unwrap();
}
