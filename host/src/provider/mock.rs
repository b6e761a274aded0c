//! The simulated provider: answers in process, with no network, in OpenAI's
//! shapes. It waits `latency_ms` plus a uniform `0..=jitter_ms` before the
//! headers, fails a share `error_rate` of calls with `error_status` (a 429 carries
//! `retry-after: 1`), and otherwise returns a chat completion, an SSE stream of
//! `stream_chunks` chunks `chunk_interval_ms` apart ending with a `usage` chunk and
//! `data: [DONE]`, or an embedding list.
//!
//! Every answer is labelled: `"system_fingerprint": "switchyard-mock"` in the
//! body, and the gateway adds `x-switchyard-simulated: true` to the answers it
//! passes on (it drops every `x-switchyard-*` header an upstream sends, so the
//! adapter cannot set it). Prompt tokens are
//! estimated as body bytes / 4; completion tokens are `completion_tokens`.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderValue, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use tokio::time::Sleep;

use super::{Operation, UpstreamBody, UpstreamCall};
use crate::config::MockConfig;
use crate::upstream::BodyError;

/// The `system_fingerprint` of simulated answers.
pub const FINGERPRINT: &str = "switchyard-mock";
/// The assistant message of simulated completions.
pub const MESSAGE: &str = "This is a simulated response from the Switchyard mock provider.";
/// Dimensions of simulated embeddings.
pub const EMBEDDING_DIMENSIONS: usize = 8;
/// Most embeddings returned for one request.
const MAX_EMBEDDINGS: usize = 2048;

/// The simulated provider of one upstream.
#[derive(Debug, Clone)]
pub struct MockAdapter {
    config: MockConfig,
}

impl MockAdapter {
    /// A simulated upstream behaving as `config` says.
    pub fn new(config: MockConfig) -> MockAdapter {
        MockAdapter { config }
    }

    /// The simulation settings.
    pub fn config(&self) -> &MockConfig {
        &self.config
    }

    /// Answers one call (after the simulated latency). Never fails: simulated
    /// failures are HTTP statuses.
    pub async fn send(&self, call: UpstreamCall<'_>) -> Response<UpstreamBody> {
        let c = &self.config;
        let delay = c.latency_ms
            + if c.jitter_ms > 0 {
                fastrand::u64(0..=c.jitter_ms)
            } else {
                0
            };
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        if c.error_rate > 0.0 && fastrand::f64() < c.error_rate {
            return error_response(c.error_status);
        }
        let prompt_tokens = (call.body.len() as u64 / 4).max(1);
        match call.operation {
            Operation::Embeddings => {
                json_response(embeddings(call.upstream_model, &call.body, prompt_tokens))
            }
            Operation::ChatCompletions if call.streaming => {
                let stream = SimulatedStream::new(c, call.upstream_model, prompt_tokens);
                let mut response = Response::new(stream.boxed());
                with_content_type(&mut response, "text/event-stream");
                response
            }
            Operation::ChatCompletions => json_response(completion(
                call.upstream_model,
                prompt_tokens,
                u64::from(c.completion_tokens),
            )),
        }
    }
}

/// Sets the content type (the gateway adds the simulated label).
fn with_content_type(response: &mut Response<UpstreamBody>, content_type: &'static str) {
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
}

fn full(bytes: impl Into<Bytes>) -> UpstreamBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

fn json_response(body: Value) -> Response<UpstreamBody> {
    let mut response = Response::new(full(body.to_string()));
    with_content_type(&mut response, "application/json");
    response
}

/// A simulated failure in OpenAI's error shape.
fn error_response(status: u16) -> Response<UpstreamBody> {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let (kind, code) = match status.as_u16() {
        429 => ("requests", "rate_limit_exceeded"),
        400..=499 => ("invalid_request_error", "simulated_error"),
        _ => ("server_error", "simulated_error"),
    };
    let body = json!({
        "error": {
            "message": format!("Simulated failure (HTTP {}) from the Switchyard mock provider.", status.as_u16()),
            "type": kind,
            "param": null,
            "code": code,
        }
    });
    let mut response = json_response(body);
    *response.status_mut() = status;
    if status == StatusCode::TOO_MANY_REQUESTS {
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn random_id(prefix: &str) -> String {
    let mut id = String::with_capacity(prefix.len() + 24);
    id.push_str(prefix);
    for _ in 0..24 {
        id.push(fastrand::alphanumeric());
    }
    id
}

fn usage(prompt_tokens: u64, completion_tokens: u64) -> Value {
    json!({
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    })
}

/// A non-streamed `chat.completion`.
fn completion(model: &str, prompt_tokens: u64, completion_tokens: u64) -> Value {
    json!({
        "id": random_id("chatcmpl-sim-"),
        "object": "chat.completion",
        "created": unix_now(),
        "model": model,
        "system_fingerprint": FINGERPRINT,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": MESSAGE, "refusal": null},
            "logprobs": null,
            "finish_reason": "stop",
        }],
        "usage": usage(prompt_tokens, completion_tokens),
    })
}

/// An embedding list: one small deterministic unit vector per input.
fn embeddings(model: &str, body: &[u8], prompt_tokens: u64) -> Value {
    let inputs: Vec<String> = match serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|mut v| v.get_mut("input").map(Value::take))
    {
        // A list of strings (or of token arrays) is one input per item; a token
        // array is one input.
        Some(Value::Array(items)) if !items.first().is_some_and(Value::is_number) => items
            .iter()
            .take(MAX_EMBEDDINGS)
            .map(Value::to_string)
            .collect(),
        Some(other) => vec![other.to_string()],
        None => vec![String::new()],
    };
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(index, input)| {
            json!({"object": "embedding", "index": index, "embedding": embedding_vector(input)})
        })
        .collect();
    json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    })
}

/// A unit vector derived from the input's FNV-1a hash (xorshift per component).
fn embedding_vector(input: &str) -> Vec<f64> {
    let mut state = input.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let mut values: Vec<f64> = (0..EMBEDDING_DIMENSIONS)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
        })
        .collect();
    let norm = values
        .iter()
        .map(|v| v * v)
        .sum::<f64>()
        .sqrt()
        .max(f64::EPSILON);
    for v in &mut values {
        *v = (*v / norm * 1e6).round() / 1e6;
    }
    values
}

/// A simulated SSE stream: content chunks `chunk_interval_ms` apart, then the
/// finishing chunk, the `usage` chunk and `data: [DONE]`.
struct SimulatedStream {
    /// Each frame with the wait before it.
    frames: VecDeque<(Duration, Bytes)>,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl SimulatedStream {
    fn new(config: &MockConfig, model: &str, prompt_tokens: u64) -> SimulatedStream {
        let id = random_id("chatcmpl-sim-");
        let created = unix_now();
        let chunk = |choices: Value, usage: Option<Value>| {
            let mut event = json!({
                "id": id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "system_fingerprint": FINGERPRINT,
                "choices": choices,
            });
            if let Some(usage) = usage {
                event["usage"] = usage;
            }
            format!("data: {event}\n\n")
        };
        let interval = Duration::from_millis(config.chunk_interval_ms);
        let words: Vec<&str> = MESSAGE.split_inclusive(' ').collect();
        let mut frames = VecDeque::with_capacity(config.stream_chunks as usize + 1);
        for i in 0..config.stream_chunks as usize {
            let mut delta = json!({"content": words[i % words.len()]});
            if i == 0 {
                delta["role"] = json!("assistant");
            }
            let choices =
                json!([{"index": 0, "delta": delta, "logprobs": null, "finish_reason": null}]);
            let wait = if i == 0 { Duration::ZERO } else { interval };
            frames.push_back((wait, Bytes::from(chunk(choices, None))));
        }
        let mut tail = chunk(
            json!([{"index": 0, "delta": {}, "logprobs": null, "finish_reason": "stop"}]),
            None,
        );
        let completion_tokens = u64::from(config.completion_tokens);
        tail.push_str(&chunk(
            json!([]),
            Some(usage(prompt_tokens, completion_tokens)),
        ));
        tail.push_str("data: [DONE]\n\n");
        frames.push_back((Duration::ZERO, Bytes::from(tail)));
        SimulatedStream {
            frames,
            sleep: None,
        }
    }
}

impl Body for SimulatedStream {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        let Some(&(wait, _)) = this.frames.front() else {
            return Poll::Ready(None);
        };
        if !wait.is_zero() {
            let sleep = this
                .sleep
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(wait)));
            ready!(sleep.as_mut().poll(cx));
            this.sleep = None;
        }
        let (_, data) = this.frames.pop_front().expect("checked above");
        Poll::Ready(Some(Ok(Frame::data(data))))
    }

    fn is_end_stream(&self) -> bool {
        self.frames.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedding_vectors_are_deterministic_unit_vectors() {
        let a = embedding_vector("\"hello\"");
        assert_eq!(a, embedding_vector("\"hello\""));
        assert_ne!(a, embedding_vector("\"world\""));
        let norm: f64 = a.iter().map(|v| v * v).sum::<f64>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "{norm}");
    }

    #[test]
    fn embeddings_count_inputs() {
        let one = embeddings("m", br#"{"input":"hi"}"#, 1);
        assert_eq!(one["data"].as_array().unwrap().len(), 1);
        let three = embeddings("m", br#"{"input":["a","b","c"]}"#, 1);
        assert_eq!(three["data"].as_array().unwrap().len(), 3);
        let tokens = embeddings("m", br#"{"input":[1,2,3]}"#, 1);
        assert_eq!(tokens["data"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn error_shapes() {
        let r = error_response(429);
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()[RETRY_AFTER], "1");
        let r = error_response(503);
        assert_eq!(r.status(), 503);
        assert!(r.headers().get(RETRY_AFTER).is_none());
    }
}
