//! The simulated provider: OpenAI shapes, SSE framing, simulated failures and
//! latency. (The gateway labels its answers as simulated: `tests/gateway/wire.rs`.)

use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use serde_json::Value;
use switchyard::provider::{Operation, ProviderAdapter};
use switchyard::upstream::health::retry_after;

use super::support::{Call, adapter, env};

fn mock(settings: &str) -> ProviderAdapter {
    let cfg = format!(
        "name = \"sim\"\nprovider = \"mock\"\nmodels = {{ \"m\" = {{}} }}\nmock = {{ {settings} }}"
    );
    adapter(&cfg, &env(&[]))
}

#[tokio::test]
async fn chat_completion_shape() {
    let sim = mock("completion_tokens = 7");
    let call = Call::chat("sim-model-1");
    let (parts, body) = call.fetch(&sim).await;
    assert_eq!(parts.status, 200);
    assert_eq!(parts.headers["content-type"], "application/json");
    let json: Value = serde_json::from_slice(&body).expect("valid JSON");
    assert_eq!(json["object"], "chat.completion");
    assert!(json["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert!(json["created"].as_u64().unwrap() > 1_700_000_000);
    assert_eq!(json["model"], "sim-model-1");
    assert_eq!(json["system_fingerprint"], "switchyard-mock");
    let choice = &json["choices"][0];
    assert_eq!(choice["message"]["role"], "assistant");
    assert!(
        choice["message"]["content"]
            .as_str()
            .unwrap()
            .contains("simulated")
    );
    assert_eq!(choice["finish_reason"], "stop");
    let prompt = (call.body.len() / 4) as u64;
    assert_eq!(json["usage"]["prompt_tokens"], prompt);
    assert_eq!(json["usage"]["completion_tokens"], 7);
    assert_eq!(json["usage"]["total_tokens"], prompt + 7);
}

#[tokio::test]
async fn sse_stream_shape() {
    let sim = mock("stream_chunks = 5, chunk_interval_ms = 5, completion_tokens = 9");
    let mut call = Call::chat("sim-model-1");
    call.streaming = true;
    let response = call.send(&sim).await.unwrap();
    let (parts, mut body) = response.into_parts();
    assert_eq!(parts.headers["content-type"], "text/event-stream");

    // Content arrives frame by frame, not as one buffer.
    let mut frames = 0;
    let mut text = Vec::new();
    while let Some(frame) = body.frame().await {
        text.extend_from_slice(&frame.unwrap().into_data().unwrap());
        frames += 1;
    }
    assert!(frames >= 6, "{frames} frames");

    let text = String::from_utf8(text).unwrap();
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    let events: Vec<&str> = text.split("\n\n").filter(|e| !e.is_empty()).collect();
    for event in &events {
        assert!(
            event.starts_with("data: ") && !event.contains('\n'),
            "one data line per event: {event:?}"
        );
    }
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(&e["data: ".len()..]).unwrap())
        .collect();
    for chunk in &chunks {
        assert_eq!(chunk["object"], "chat.completion.chunk");
        assert_eq!(chunk["model"], "sim-model-1");
        assert_eq!(chunk["system_fingerprint"], "switchyard-mock");
    }
    let content: Vec<&Value> = chunks
        .iter()
        .filter(|c| c["choices"][0]["delta"]["content"].is_string())
        .collect();
    assert_eq!(content.len(), 5, "stream_chunks content chunks");
    assert_eq!(content[0]["choices"][0]["delta"]["role"], "assistant");
    assert!(
        chunks
            .iter()
            .any(|c| c["choices"][0]["finish_reason"] == "stop")
    );
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"], Value::Array(vec![]));
    assert_eq!(last["usage"]["completion_tokens"], 9);
    assert_eq!(last["usage"]["prompt_tokens"], (call.body.len() / 4) as u64);
}

#[tokio::test]
async fn embeddings_shape() {
    let sim = mock("");
    let mut call = Call::chat("embed-sim");
    call.operation = Operation::Embeddings;
    call.body = bytes::Bytes::from_static(br#"{"model":"embed-sim","input":["alpha","beta"]}"#);
    let (parts, body) = call.fetch(&sim).await;
    assert_eq!(parts.headers["content-type"], "application/json");
    let json: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["object"], "list");
    assert_eq!(json["model"], "embed-sim");
    let data = json["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    assert_eq!(data[1]["index"], 1);
    assert_eq!(data[0]["object"], "embedding");
    assert!(!data[0]["embedding"].as_array().unwrap().is_empty());
    assert!(json["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
    // Deterministic.
    let (_, again) = call.fetch(&sim).await;
    let again: Value = serde_json::from_slice(&again).unwrap();
    assert_eq!(again["data"], json["data"]);
}

#[tokio::test]
async fn simulated_failures() {
    let sim = mock("error_rate = 1.0, error_status = 429");
    let response = Call::chat("m").send(&sim).await.unwrap();
    assert_eq!(response.status(), 429);
    assert_eq!(
        retry_after(response.headers()),
        Some(Duration::from_secs(1))
    );
    let body = response.into_body();
    let json: Value = serde_json::from_slice(&body.collect().await.unwrap().to_bytes()).unwrap();
    assert!(
        json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Simulated")
    );
    assert_eq!(json["error"]["code"], "rate_limit_exceeded");

    let sim = mock("error_rate = 1.0, error_status = 503");
    let (parts, body) = Call::chat("m").fetch(&sim).await;
    assert_eq!(parts.status, 503);
    assert!(parts.headers.get("retry-after").is_none());
    let json: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["error"]["type"], "server_error");

    let sim = mock("error_rate = 0.0, error_status = 503");
    for _ in 0..20 {
        assert_eq!(Call::chat("m").fetch(&sim).await.0.status, 200);
    }
}

#[tokio::test]
async fn latency_comes_before_the_headers() {
    let sim = mock("latency_ms = 60, jitter_ms = 20");
    let started = Instant::now();
    Call::chat("m").send(&sim).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(60));
}

#[tokio::test]
async fn mock_is_the_default_for_mock_upstreams_without_settings() {
    let cfg = "name = \"sim\"\nprovider = \"mock\"\nmodels = { \"m\" = {} }";
    let sim = adapter(cfg, &env(&[]));
    assert_eq!(sim.host(), "mock");
    let mut call = Call::chat("m");
    call.streaming = true;
    let (_, body) = call.fetch(&sim).await;
    let text = String::from_utf8(body.to_vec()).unwrap();
    assert_eq!(
        text.matches("\"content\"").count(),
        8,
        "default stream_chunks"
    );
}
