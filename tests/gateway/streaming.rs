//! Streaming: chunks are forwarded as they arrive, never buffered.

use std::sync::Arc;
use std::time::Duration;

use crate::support::upstream::{Reply, Upstream};
use crate::support::{TestGateway, client};
use futures_util::StreamExt;

#[tokio::test]
async fn first_chunk_reaches_the_client_before_the_upstream_finishes() {
    let gate = Arc::new(tokio::sync::Notify::new());
    let upstream = Upstream::always(Reply::Gated {
        first: r#"{"object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"first"}}]}"#.into(),
        rest: vec![
            r#"{"object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":4,"completion_tokens":2}}"#.into(),
            "[DONE]".into(),
        ],
        gate: gate.clone(),
    })
    .await;
    let toml = format!(
        r#"
[[upstream]]
name = "azure"
provider = "azure-openai"
endpoint = "{url}"
api_key_env = "AZ"
models = {{ "gpt-4o" = {{ deployment = "gpt4o-prod" }} }}
"#,
        url = upstream.url()
    );
    let gw = TestGateway::start(&toml, &[("AZ", "az-key")]).await;
    let res = client()
        .post(format!("{}/v1/chat/completions", gw.url()))
        .json(&serde_json::json!({"model": "gpt-4o", "stream": true, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    let mut body = res.bytes_stream();
    // The upstream holds the rest of the stream until the client has the first chunk.
    let first = tokio::time::timeout(Duration::from_secs(10), body.next())
        .await
        .expect("the first chunk was held back by the gateway")
        .unwrap()
        .unwrap();
    assert!(std::str::from_utf8(&first).unwrap().contains("first"));
    gate.notify_one();
    let mut rest = Vec::new();
    while let Some(chunk) = body.next().await {
        rest.extend_from_slice(&chunk.unwrap());
    }
    let rest = String::from_utf8(rest).unwrap();
    assert!(rest.ends_with("data: [DONE]\n\n"), "{rest}");
}
