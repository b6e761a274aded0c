//! A scriptable loopback upstream that records every request it receives, so tests
//! can check the wire shape the gateway sends (path, query, headers, body).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

/// A request as the upstream received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// Method.
    pub method: String,
    /// Path and query.
    pub uri: String,
    /// Headers, names lower-case.
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Bytes,
}

impl Recorded {
    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("the gateway sent JSON")
    }
}

/// How the upstream answers one request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A complete response.
    Json {
        /// Status.
        status: u16,
        /// Extra headers.
        headers: Vec<(&'static str, String)>,
        /// Body.
        body: String,
    },
    /// An SSE stream: each chunk is sent `interval` after the previous one; with
    /// `cut_after`, the connection is cut after that many chunks.
    Sse {
        /// Event payloads (sent as `data: …\n\n`).
        events: Vec<String>,
        /// Gap between events.
        interval: Duration,
        /// Cut the connection after this many events.
        cut_after: Option<usize>,
    },
    /// An SSE stream that sends `first`, then waits for `gate` before sending `rest`.
    Gated {
        /// The first event.
        first: String,
        /// The remaining events.
        rest: Vec<String>,
        /// Released by the test.
        gate: Arc<tokio::sync::Notify>,
    },
    /// Never send the response headers.
    StallBeforeHeaders,
    /// Send 200 headers, then never send a body byte.
    StallAfterHeaders,
    /// Close the connection without an answer.
    Reset,
    /// Wait, then answer with the inner reply.
    Delayed(Duration, Box<Reply>),
}

impl Reply {
    /// 200 with an OpenAI chat completion from `model` with the given usage.
    pub fn completion(model: &str, prompt_tokens: u32, completion_tokens: u32) -> Reply {
        Reply::Json {
            status: 200,
            headers: vec![],
            body: serde_json::json!({
                "id": "chatcmpl-test",
                "object": "chat.completion",
                "created": 1,
                "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello from the test upstream"}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens}
            })
            .to_string(),
        }
    }

    /// A status with an OpenAI-shaped error body and extra headers.
    pub fn error(status: u16, headers: Vec<(&'static str, String)>) -> Reply {
        Reply::Json {
            status,
            headers,
            body: serde_json::json!({"error": {"message": "test upstream error", "type": "test", "code": status.to_string()}}).to_string(),
        }
    }

    /// An SSE stream of `n` content chunks then a usage chunk and `[DONE]`.
    pub fn stream(n: usize, interval: Duration) -> Reply {
        let mut events: Vec<String> = (0..n)
            .map(|i| {
                serde_json::json!({"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": format!("part{i} ")}}]})
                    .to_string()
            })
            .collect();
        events.push(
            serde_json::json!({"object": "chat.completion.chunk", "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": n}})
                .to_string(),
        );
        events.push("[DONE]".into());
        Reply::Sse {
            events,
            interval,
            cut_after: None,
        }
    }
}

type Script = dyn Fn(&Recorded) -> Reply + Send + Sync;

/// A running loopback upstream.
pub struct Upstream {
    /// Its address.
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Recorded>>>,
    accepted: Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Upstream {
    /// Starts an upstream answering every request with `script`.
    pub async fn start(script: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let script: Arc<Script> = Arc::new(script);
        let task = tokio::spawn({
            let received = received.clone();
            let accepted = accepted.clone();
            async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    accepted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let received = received.clone();
                    let script = script.clone();
                    tokio::spawn(async move {
                        let service =
                            service_fn(move |req| answer(req, received.clone(), script.clone()));
                        let _ = auto::Builder::new(TokioExecutor::new())
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            }
        });
        Upstream {
            addr,
            received,
            accepted,
            task,
        }
    }

    /// Always answers the same way.
    pub async fn always(reply: Reply) -> Upstream {
        Upstream::start(move |_| reply.clone()).await
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests received so far.
    pub fn received(&self) -> Vec<Recorded> {
        self.received.lock().unwrap().clone()
    }

    /// How many connections it accepted.
    pub fn connections(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// How many requests were received.
    pub fn hits(&self) -> usize {
        self.received.lock().unwrap().len()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An address where nothing listens (connection refused).
pub async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

type Body = BoxBody<Bytes, std::io::Error>;

async fn answer(
    req: Request<Incoming>,
    received: Arc<Mutex<Vec<Recorded>>>,
    script: Arc<Script>,
) -> Result<Response<Body>, std::io::Error> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let recorded = Recorded {
        method: parts.method.to_string(),
        uri: parts
            .uri
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        headers: parts
            .headers
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body,
    };
    let mut reply = script(&recorded);
    received.lock().unwrap().push(recorded);
    if let Reply::Delayed(wait, inner) = reply {
        tokio::time::sleep(wait).await;
        reply = *inner;
    }
    match reply {
        Reply::Json {
            status,
            headers,
            body,
        } => {
            let mut response = Response::builder()
                .status(status)
                .header("content-type", "application/json");
            for (name, value) in headers {
                response = response.header(name, value);
            }
            Ok(response.body(full(body)).unwrap())
        }
        Reply::Sse {
            events,
            interval,
            cut_after,
        } => {
            let stream = futures_util::stream::unfold(0usize, move |i| {
                let events = events.clone();
                async move {
                    if cut_after == Some(i) {
                        return Some((Err(std::io::Error::other("cut")), usize::MAX));
                    }
                    if i >= events.len() {
                        return None;
                    }
                    if i > 0 {
                        tokio::time::sleep(interval).await;
                    }
                    let frame = Frame::data(Bytes::from(format!("data: {}\n\n", events[i])));
                    Some((Ok(frame), i + 1))
                }
            });
            Ok(Response::builder()
                .header("content-type", "text/event-stream")
                .body(BodyExt::boxed(StreamBody::new(stream)))
                .unwrap())
        }
        Reply::Gated { first, rest, gate } => {
            let first = futures_util::stream::once(async move {
                Ok(Frame::data(Bytes::from(format!("data: {first}\n\n"))))
            });
            let rest = futures_util::stream::once(async move {
                gate.notified().await;
                let text: String = rest.iter().map(|e| format!("data: {e}\n\n")).collect();
                Ok(Frame::data(Bytes::from(text)))
            });
            use futures_util::StreamExt;
            Ok(Response::builder()
                .header("content-type", "text/event-stream")
                .body(BodyExt::boxed(StreamBody::new(first.chain(rest))))
                .unwrap())
        }
        Reply::StallBeforeHeaders => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Err(std::io::Error::other("stalled"))
        }
        Reply::StallAfterHeaders => {
            let stream = futures_util::stream::once(async {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Ok::<_, std::io::Error>(Frame::data(Bytes::new()))
            });
            Ok(Response::builder()
                .header("content-type", "application/json")
                .body(BodyExt::boxed(StreamBody::new(stream)))
                .unwrap())
        }
        Reply::Reset => Err(std::io::Error::other("reset by the test upstream")),
        Reply::Delayed(..) => unreachable!("unwrapped above"),
    }
}

fn full(body: String) -> Body {
    Full::new(Bytes::from(body))
        .map_err(|never: Infallible| match never {})
        .boxed()
}
