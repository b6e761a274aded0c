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

/// A gateway with one `openai` upstream, `oa`, at `upstream`, serving gpt-4o.
async fn openai_gateway(upstream: &Upstream) -> TestGateway {
    let toml = format!(
        r#"
[[upstream]]
name = "oa"
provider = "openai"
endpoint = "{url}"
api_key_env = "OA"
models = {{ "gpt-4o" = {{ input_per_mtok = 2.5, output_per_mtok = 10.0 }} }}
"#,
        url = upstream.url()
    );
    TestGateway::start(&toml, &[("OA", "oa-key")]).await
}

/// `/admin/upstreams`' entry for the only upstream.
async fn upstream_state(gw: &TestGateway) -> serde_json::Value {
    gw.admin_json("/admin/upstreams").await["upstreams"][0].clone()
}

/// Sends a chat request with `body` and reads the whole answer (status 200).
async fn answer_text(gw: &TestGateway, body: &serde_json::Value) -> String {
    let res = client()
        .post(format!("{}/v1/chat/completions", gw.url()))
        .json(body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.text().await.unwrap_or_default()
}

/// A client that streams without `stream_options.include_usage` gets the
/// stream it asked for, with no usage chunk, while the gateway asks the
/// upstream for usage on its behalf and counts the tokens. A client that asks
/// for usage gets the chunk and its body goes upstream unchanged.
#[tokio::test]
async fn stream_usage_is_counted_without_changing_what_the_client_sees() {
    let upstream = Upstream::always(Reply::stream(3, Duration::from_millis(5))).await;
    let gw = openai_gateway(&upstream).await;

    let plain = serde_json::json!({"model": "gpt-4o", "stream": true, "messages": []});
    let text = answer_text(&gw, &plain).await;
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    assert_eq!(text.matches("chat.completion.chunk").count(), 3, "{text}");
    assert!(
        !text.contains("\"usage\":{"),
        "the client did not ask for usage: {text}"
    );
    let sent = upstream.received()[0].json();
    assert_eq!(
        sent["stream_options"],
        serde_json::json!({"include_usage": true})
    );
    gw.wait_for_metric(
        r#"switchyard_tokens_total{upstream="oa",model="gpt-4o",direction="output"} 3"#,
    )
    .await;

    let asked = serde_json::json!({"model": "gpt-4o", "stream": true, "messages": [],
        "stream_options": {"include_usage": true}});
    let text = answer_text(&gw, &asked).await;
    assert!(
        text.contains("\"usage\":{"),
        "the client asked for usage: {text}"
    );
    // reqwest wrote the body with serde_json, so these are the client's bytes.
    assert_eq!(
        upstream.received()[1].body,
        serde_json::to_vec(&asked).unwrap(),
        "sent byte for byte as the client wrote it"
    );
}

/// An upstream counts a stream in flight until its last byte, not only until
/// its first: policies that balance on `in-flight` see the streams running.
#[tokio::test]
async fn a_stream_counts_in_flight_until_it_ends() {
    let gate = Arc::new(tokio::sync::Notify::new());
    let upstream = Upstream::always(Reply::Gated {
        first: r#"{"object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"first"}}]}"#.into(),
        rest: vec!["[DONE]".into()],
        gate: gate.clone(),
    })
    .await;
    let gw = openai_gateway(&upstream).await;
    let res = client()
        .post(format!("{}/v1/chat/completions", gw.url()))
        .json(&serde_json::json!({"model": "gpt-4o", "stream": true, "messages": []}))
        .send()
        .await
        .unwrap();
    let mut body = res.bytes_stream();
    let first = body.next().await.unwrap().unwrap();
    assert!(std::str::from_utf8(&first).unwrap().contains("first"));
    assert_eq!(
        upstream_state(&gw).await["in_flight"],
        1,
        "the stream is still running"
    );
    gate.notify_one();
    while let Some(chunk) = body.next().await {
        chunk.unwrap();
    }
    // The outcome (and the in-flight guard with it) ends with the body.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while upstream_state(&gw).await["in_flight"] != 0 {
        assert!(tokio::time::Instant::now() < deadline, "still in flight");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A stream that breaks mid-way is one broken attempt: an upstream that cuts
/// every stream fails in a row and turns unhealthy, instead of having its
/// failure streak reset by a success recorded at the first byte.
#[tokio::test]
async fn an_upstream_that_cuts_every_stream_becomes_unhealthy() {
    let mut reply = Reply::stream(4, Duration::from_millis(2));
    if let Reply::Sse { cut_after, .. } = &mut reply {
        *cut_after = Some(1);
    }
    let upstream = Upstream::always(reply).await;
    let gw = openai_gateway(&upstream).await;
    let stream = serde_json::json!({"model": "gpt-4o", "stream": true, "messages": []});
    for _ in 0..10 {
        if upstream_state(&gw).await["health"] == "unhealthy" {
            return;
        }
        // A pooled connection the last cut closed may fail before the
        // headers (502); a stream that starts is cut.
        let res = client()
            .post(format!("{}/v1/chat/completions", gw.url()))
            .json(&stream)
            .send()
            .await
            .unwrap();
        if res.status() == 200 {
            let text = res.text().await.unwrap_or_default();
            assert!(
                !text.ends_with("data: [DONE]\n\n"),
                "the stream was cut: {text}"
            );
        }
    }
    assert_eq!(upstream_state(&gw).await["health"], "unhealthy");
}
