//! The fallback matrix: each upstream failure, with the exact status, code and
//! attempts the client sees.

use std::time::Duration;

use crate::support::upstream::{Reply, Upstream, closed_port};
use crate::support::{TestGateway, chat, client};
use serde_json::Value;

/// A gateway with upstreams `first` (OpenAI) and `second` (Azure, its own key
/// and deployment name) in that order serving gpt-4o, plain config-order
/// fallback, and a 2 s first-byte timeout (long enough
/// that a busy machine does not time out an answering upstream).
async fn gateway(first: &str, second: &str) -> TestGateway {
    let toml = format!(
        r#"
[server]
first_byte_timeout_ms = 2000
response_timeout_ms = 2000

[[upstream]]
name = "first"
provider = "openai"
endpoint = "{first}"
api_key_env = "KEY"
models = {{ "gpt-4o" = {{}} }}

[[upstream]]
name = "second"
provider = "azure-openai"
endpoint = "{second}"
api_key_env = "KEY2"
models = {{ "gpt-4o" = {{ deployment = "gpt4o-second" }} }}

[[route]]
name = "chat"
policies = []
"#
    );
    TestGateway::start(&toml, &[("KEY", "sk-test"), ("KEY2", "az-second")]).await
}

struct Answer {
    status: u16,
    upstream: Option<String>,
    policy: Option<String>,
    attempts: String,
    retry_after: Option<String>,
    json: Value,
}

async fn ask(gw: &TestGateway) -> Answer {
    let res = client()
        .post(format!("{}/v1/chat/completions", gw.url()))
        .json(&chat("gpt-4o"))
        .send()
        .await
        .unwrap();
    let header = |name: &str| {
        res.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    };
    let (status, upstream, policy, attempts, retry_after) = (
        res.status().as_u16(),
        header("x-switchyard-upstream"),
        header("x-switchyard-policy"),
        header("x-switchyard-attempts").unwrap_or_default(),
        header("retry-after"),
    );
    let json = res.json().await.unwrap_or(Value::Null);
    Answer {
        status,
        upstream,
        policy,
        attempts,
        retry_after,
        json,
    }
}

async fn falls_back_from(failing: Reply) {
    let bad = Upstream::always(failing).await;
    let good = Upstream::always(Reply::completion("gpt-4o", 10, 5)).await;
    let gw = gateway(&bad.url(), &good.url()).await;
    let answer = ask(&gw).await;
    assert_eq!(answer.status, 200, "{}", answer.json);
    assert_eq!(answer.upstream.as_deref(), Some("second"));
    // A route without policies says so: the header is there, empty.
    assert_eq!(answer.policy.as_deref(), Some(""));
    assert_eq!(answer.attempts, "2");
    assert_eq!(bad.hits(), 1);
    assert_eq!(good.hits(), 1);
    // The fallback is built for its own upstream, not resent as the first was.
    let got = &good.received()[0];
    assert_eq!(
        got.uri,
        "/openai/deployments/gpt4o-second/chat/completions?api-version=2024-10-21"
    );
    assert_eq!(got.header("api-key"), Some("az-second"));
    assert_eq!(got.header("authorization"), None);
    assert_eq!(got.json()["model"], "gpt4o-second");
    assert_eq!(got.json()["messages"], chat("gpt-4o")["messages"]);
}

#[tokio::test]
async fn connection_refused_falls_back() {
    let good = Upstream::always(Reply::completion("gpt-4o", 10, 5)).await;
    let gw = gateway(&format!("http://{}", closed_port().await), &good.url()).await;
    let answer = ask(&gw).await;
    assert_eq!(
        (
            answer.status,
            answer.upstream.as_deref(),
            answer.attempts.as_str()
        ),
        (200, Some("second"), "2")
    );
}

#[tokio::test]
async fn rate_limited_falls_back() {
    falls_back_from(Reply::error(429, vec![("retry-after", "7".into())])).await;
}

#[tokio::test]
async fn server_error_falls_back() {
    falls_back_from(Reply::error(500, vec![])).await;
}

/// A failed answer's body is read (never passed on) so its connection is
/// kept: a run of 429s costs no reconnects.
#[tokio::test]
async fn failed_answers_keep_their_connection() {
    let bad = Upstream::always(Reply::error(429, vec![])).await;
    let good = Upstream::always(Reply::completion("gpt-4o", 10, 5)).await;
    let gw = gateway(&bad.url(), &good.url()).await;
    for _ in 0..3 {
        let answer = ask(&gw).await;
        assert_eq!((answer.status, answer.attempts.as_str()), (200, "2"));
    }
    assert_eq!(bad.hits(), 3);
    assert_eq!(bad.connections(), 1, "each 429 cost a connection");
}

/// The gateway chose the upstream's model name: a 404 is its config's fault.
/// It falls back, but leaves the upstream's health (shared by its other
/// models) as it was.
#[tokio::test]
async fn an_upstream_without_the_configured_model_falls_back() {
    falls_back_from(Reply::error(404, vec![])).await;

    let bad = Upstream::always(Reply::error(404, vec![])).await;
    let good = Upstream::always(Reply::completion("gpt-4o", 10, 5)).await;
    let gw = gateway(&bad.url(), &good.url()).await;
    for _ in 0..5 {
        let answer = ask(&gw).await;
        assert_eq!((answer.status, answer.attempts.as_str()), (200, "2"));
    }
    let upstreams = gw.admin_json("/admin/upstreams").await;
    let first = upstreams["upstreams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == "first")
        .unwrap();
    assert_eq!(first["health"], "healthy", "{first}");
}

#[tokio::test]
async fn timeout_before_headers_falls_back() {
    falls_back_from(Reply::StallBeforeHeaders).await;
}

#[tokio::test]
async fn stall_before_first_byte_falls_back() {
    falls_back_from(Reply::StallAfterHeaders).await;
}

#[tokio::test]
async fn reset_before_headers_falls_back() {
    falls_back_from(Reply::Reset).await;
}

#[tokio::test]
async fn all_rate_limited_is_429_with_retry_after() {
    let a = Upstream::always(Reply::error(429, vec![("retry-after", "7".into())])).await;
    let b = Upstream::always(Reply::error(429, vec![("retry-after-ms", "2500".into())])).await;
    let gw = gateway(&a.url(), &b.url()).await;
    let answer = ask(&gw).await;
    assert_eq!(answer.status, 429);
    assert_eq!(answer.json["error"]["code"], "rate_limited");
    assert_eq!(answer.attempts, "2");
    // The shortest wait among the upstreams, rounded up to whole seconds.
    assert_eq!(answer.retry_after.as_deref(), Some("3"));
}

#[tokio::test]
async fn a_clients_retry_after_is_capped_where_the_gateways_cooldown_is() {
    let day = || Reply::error(429, vec![("retry-after", "86400".into())]);
    let (a, b) = (Upstream::always(day()).await, Upstream::always(day()).await);
    let gw = gateway(&a.url(), &b.url()).await;
    let answer = ask(&gw).await;
    assert_eq!(answer.status, 429);
    // The gateway tries them again after 300 s (the cooldown's cap) anyway.
    assert_eq!(answer.retry_after.as_deref(), Some("300"));
}

#[tokio::test]
async fn all_server_errors_is_502() {
    let a = Upstream::always(Reply::error(500, vec![])).await;
    let b = Upstream::always(Reply::error(503, vec![])).await;
    let gw = gateway(&a.url(), &b.url()).await;
    let answer = ask(&gw).await;
    assert_eq!((answer.status, answer.attempts.as_str()), (502, "2"));
    assert_eq!(answer.json["error"]["code"], "upstream_error");
    assert_eq!(answer.upstream, None);
}

#[tokio::test]
async fn all_timeouts_is_504() {
    let a = Upstream::always(Reply::StallBeforeHeaders).await;
    let b = Upstream::always(Reply::StallAfterHeaders).await;
    let gw = gateway(&a.url(), &b.url()).await;
    let answer = ask(&gw).await;
    assert_eq!((answer.status, answer.attempts.as_str()), (504, "2"));
    assert_eq!(answer.json["error"]["code"], "upstream_timeout");
}

/// A non-streamed completion arrives whole, so its first byte may come long
/// after `first_byte_timeout_ms`: `response_timeout_ms` bounds it instead. A
/// stream's first byte is still held to `first_byte_timeout_ms`.
#[tokio::test]
async fn a_slow_whole_answer_is_not_a_first_byte_timeout() {
    let slow = Duration::from_millis(1500);
    let upstream = Upstream::start(move |request| {
        let reply = if request.json()["stream"] == true {
            Reply::stream(1, Duration::ZERO)
        } else {
            Reply::completion("gpt-4o", 3, 2)
        };
        Reply::Delayed(slow, Box::new(reply))
    })
    .await;
    let toml = format!(
        r#"
[server]
first_byte_timeout_ms = 500

[[upstream]]
name = "slow"
provider = "openai"
endpoint = "{}"
api_key_env = "KEY"
models = {{ "gpt-4o" = {{}} }}
"#,
        upstream.url()
    );
    let gw = TestGateway::start(&toml, &[("KEY", "sk-test")]).await;
    let answer = ask(&gw).await;
    assert_eq!(answer.status, 200, "{}", answer.json);
    assert_eq!(answer.json["usage"]["completion_tokens"], 2);

    let mut streamed = chat("gpt-4o");
    streamed["stream"] = true.into();
    let res = client()
        .post(format!("{}/v1/chat/completions", gw.url()))
        .json(&streamed)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 504);
    let json: Value = res.json().await.unwrap();
    assert_eq!(json["error"]["code"], "upstream_timeout");
}

#[tokio::test]
async fn client_errors_pass_through_without_fallback() {
    let a = Upstream::always(Reply::error(400, vec![])).await;
    let b = Upstream::always(Reply::completion("gpt-4o", 1, 1)).await;
    let gw = gateway(&a.url(), &b.url()).await;
    let answer = ask(&gw).await;
    assert_eq!(
        (
            answer.status,
            answer.upstream.as_deref(),
            answer.attempts.as_str()
        ),
        (400, Some("first"), "1")
    );
    assert_eq!(answer.json["error"]["message"], "test upstream error");
    assert_eq!(b.hits(), 0);
}

/// A 401 or 403 from an upstream means it refused the gateway's own key (expired,
/// rotated): not the client's fault, so the client never gets it as its own
/// `invalid_api_key`. The plan falls back; with nowhere left to go the answer
/// is 502 without the upstream's body (which may quote the key).
#[tokio::test]
async fn an_upstream_refusing_the_gateways_key_is_an_upstream_failure() {
    for status in [401, 403] {
        let refusing = Upstream::always(Reply::error(status, vec![])).await;
        let b = Upstream::always(Reply::completion("gpt-4o", 1, 1)).await;
        let gw = gateway(&refusing.url(), &b.url()).await;
        let answer = ask(&gw).await;
        assert_eq!(
            (
                answer.status,
                answer.upstream.as_deref(),
                answer.attempts.as_str()
            ),
            (200, Some("second"), "2"),
            "{status}"
        );

        let gw = gateway(&refusing.url(), &refusing.url()).await;
        let answer = ask(&gw).await;
        assert_eq!(answer.status, 502, "{status}");
        assert_eq!(answer.json["error"]["code"], "upstream_error");
        let message = answer.json["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("refused the gateway's credentials"),
            "{message}"
        );
        assert!(!message.contains("test upstream error"), "{message}");
    }
}

#[tokio::test]
async fn mid_stream_cut_ends_with_an_sse_error_event() {
    let mut reply = Reply::stream(6, Duration::from_millis(10));
    if let Reply::Sse { cut_after, .. } = &mut reply {
        *cut_after = Some(3);
    }
    let a = Upstream::always(reply).await;
    let b = Upstream::always(Reply::completion("gpt-4o", 1, 1)).await;
    let gw = gateway(&a.url(), &b.url()).await;
    let res = client()
        .post(format!("{}/v1/chat/completions", gw.url()))
        .json(&serde_json::json!({"model": "gpt-4o", "stream": true, "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-switchyard-attempts"], "1");
    let text = res.text().await.unwrap();
    let events: Vec<&str> = text.split("\n\n").filter(|e| !e.is_empty()).collect();
    // Some chunks (the test server may lose the one it wrote just before cutting),
    // then the error event instead of `[DONE]`.
    let (last, chunks) = events.split_last().unwrap();
    assert!((1..=3).contains(&chunks.len()), "{text}");
    assert!(
        chunks.iter().all(|e| e.contains("chat.completion.chunk")),
        "{text}"
    );
    let last: Value = serde_json::from_str(last.strip_prefix("data: ").unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "upstream_error");
    // No fallback once bytes reached the client.
    assert_eq!(b.hits(), 0);
}

/// An upstream that dies halfway through an event: the client gets the whole
/// events before it and then the error event, each parsing on its own. The
/// half event is never sent (appended to it, the error event would not parse).
#[tokio::test]
async fn a_cut_in_the_middle_of_an_event_still_ends_with_a_clean_error_event() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        // Read the request head and its small body, then answer and die mid-event.
        let mut request = Vec::new();
        let mut buf = [0u8; 4096];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = socket.read(&mut buf).await.unwrap();
            request.extend_from_slice(&buf[..n]);
        }
        let whole = r#"data: {"object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"whole"}}]}"#;
        let half = r#"data: {"object":"chat.completion.chunk","choi"#;
        let body = format!("{whole}\n\n{half}");
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n",
            body.len()
        );
        socket.write_all(response.as_bytes()).await.unwrap();
        socket.flush().await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        // Dropped without the last chunk: the body breaks off.
    });
    let b = Upstream::always(Reply::completion("gpt-4o", 1, 1)).await;
    let gw = gateway(&format!("http://{addr}"), &b.url()).await;
    let res = client()
        .post(format!("{}/v1/chat/completions", gw.url()))
        .json(&serde_json::json!({"model": "gpt-4o", "stream": true, "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let text = res.text().await.unwrap();
    assert!(
        !text.contains("\"choi\""),
        "half an event reached the client: {text}"
    );
    let events: Vec<&str> = text.split("\n\n").filter(|e| !e.is_empty()).collect();
    assert_eq!(events.len(), 2, "{text}");
    for event in &events {
        let json: Value = serde_json::from_str(event.strip_prefix("data: ").unwrap())
            .unwrap_or_else(|e| panic!("{e}: {event}"));
        assert!(json.is_object());
    }
    assert!(events[0].contains("whole"));
    assert!(events[1].contains("upstream_error"), "{text}");
}
