//! Every error code of the design, in OpenAI's error shape.

use crate::support::upstream::{Reply, Upstream};
use crate::support::{TestGateway, chat, client};
use serde_json::Value;
use sha2::Digest;

fn key_sha(key: &str) -> String {
    hex::encode(sha2::Sha256::digest(key.as_bytes()))
}

/// A gateway with client auth, one mock upstream for gpt-4o, a compliance route for
/// header `x-route: eu` and a hostile policy route for `x-route: broken`.
async fn gateway(upstream: &Upstream) -> TestGateway {
    let toml = format!(
        r#"
[server]
max_request_body_bytes = 1024

[[client]]
name = "eu"
key_sha256 = "{eu}"
tenant = "eu-bank"

[[client]]
name = "us"
key_sha256 = "{us}"
tenant = "us-retail"

[[upstream]]
name = "us-openai"
provider = "openai"
endpoint = "{url}"
api_key_env = "OPENAI_KEY"
jurisdiction = "us"
models = {{ "gpt-4o" = {{}} }}

[[policy]]
name = "compliance"
file = "{{guests}}/compliance.wasm"
config = {{ eu_tenants = "eu-bank" }}

[[policy]]
name = "broken"
file = "{{guests}}/hostile.wasm"
on_error = "fail-closed"


[[policy]]
name = "empty"
file = "{{guests}}/hostile.wasm"
config = {{ mode = "ok" }}

[[route]]
name = "broken"
headers = {{ "x-route" = "broken" }}
policies = ["broken"]

[[route]]
name = "chat"
path_prefix = "/v1/chat/"
policies = ["compliance"]

[[route]]
name = "embeddings"
path_prefix = "/v1/embeddings"
policies = []
"#,
        eu = key_sha("sk-eu"),
        us = key_sha("sk-us"),
        url = upstream.url(),
    );
    TestGateway::start(&toml, &[("OPENAI_KEY", "sk-upstream")]).await
}

async fn post(
    gw: &TestGateway,
    key: Option<&str>,
    headers: &[(&str, &str)],
    body: impl Into<reqwest::Body>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut req = client()
        .post(format!("{}/v1/chat/completions", gw.url()))
        .header("content-type", "application/json")
        .body(body);
    if let Some(key) = key {
        req = req.bearer_auth(key);
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let json = res.json::<Value>().await.unwrap_or(Value::Null);
    (status, headers, json)
}

fn code(json: &Value) -> &str {
    json["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("not an OpenAI error: {json}"))
}

#[tokio::test]
async fn auth_and_body_errors() {
    let upstream = Upstream::always(Reply::completion("gpt-4o", 3, 4)).await;
    let gw = gateway(&upstream).await;
    let good = chat("gpt-4o").to_string();

    let (status, headers, json) = post(&gw, None, &[], good.clone()).await;
    assert_eq!((status, code(&json)), (401, "invalid_api_key"));
    assert_eq!(json["error"]["type"], "authentication_error");
    assert!(headers.contains_key("x-request-id"));
    let (status, _, json) = post(&gw, Some("sk-wrong"), &[], good.clone()).await;
    assert_eq!((status, code(&json)), (401, "invalid_api_key"));

    let (status, _, json) = post(&gw, Some("sk-us"), &[], "{not json").await;
    assert_eq!((status, code(&json)), (400, "invalid_json"));
    let (status, _, json) = post(&gw, Some("sk-us"), &[], r#"{"messages":[]}"#).await;
    assert_eq!((status, code(&json)), (400, "missing_model"));
    let (status, _, json) = post(&gw, Some("sk-us"), &[], r#"{"model":7}"#).await;
    assert_eq!((status, code(&json)), (400, "missing_model"));

    let big = serde_json::json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "x".repeat(4096)}]}).to_string();
    let (status, _, json) = post(&gw, Some("sk-us"), &[], big).await;
    assert_eq!((status, code(&json)), (413, "body_too_large"));

    // Nothing reached the upstream, and the gateway still serves.
    assert_eq!(upstream.hits(), 0);
    let (status, headers, _) = post(&gw, Some("sk-us"), &[], good).await;
    assert_eq!(status, 200);
    assert_eq!(headers["x-switchyard-upstream"], "us-openai");
    assert_eq!(upstream.hits(), 1);
}

#[tokio::test]
async fn route_and_policy_errors() {
    let upstream = Upstream::always(Reply::completion("gpt-4o", 3, 4)).await;
    let gw = gateway(&upstream).await;

    // Unknown path: 404 no_route.
    let res = client()
        .post(format!("{}/v1/unknown", gw.url()))
        .bearer_auth("sk-us")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    let json: Value = res.json().await.unwrap();
    assert_eq!(code(&json), "no_route");

    // Unknown model: 404 model_not_found.
    let (status, _, json) = post(&gw, Some("sk-us"), &[], chat("gpt-9").to_string()).await;
    assert_eq!((status, code(&json)), (404, "model_not_found"));

    // The compliance policy rejects an EU tenant when only US upstreams exist: 403.
    let (status, headers, json) = post(&gw, Some("sk-eu"), &[], chat("gpt-4o").to_string()).await;
    assert_eq!((status, code(&json)), (403, "residency_violation"));
    let policy = headers["x-switchyard-policy"].to_str().unwrap();
    assert!(
        policy.starts_with("compliance@") && policy.len() == "compliance@".len() + 8,
        "{policy}"
    );

    // A trapping fail-closed policy: 503 policy_error.
    let (status, _, json) = post(
        &gw,
        Some("sk-us"),
        &[("x-route", "broken"), ("x-hostile-mode", "trap")],
        chat("gpt-4o").to_string(),
    )
    .await;
    assert_eq!((status, code(&json)), (503, "policy_error"));

    // The US tenant passes compliance.
    let (status, headers, _) = post(&gw, Some("sk-us"), &[], chat("gpt-4o").to_string()).await;
    assert_eq!(status, 200);
    assert_eq!(headers["x-switchyard-attempts"], "1");
    assert_eq!(upstream.hits(), 1);
}

#[tokio::test]
async fn models_list_and_embeddings() {
    let upstream = Upstream::always(Reply::Json {
        status: 200,
        headers: vec![],
        body: r#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.1,0.2]}],"model":"gpt-4o","usage":{"prompt_tokens":2,"total_tokens":2}}"#.into(),
    })
    .await;
    let gw = gateway(&upstream).await;
    let res = client()
        .get(format!("{}/v1/models", gw.url()))
        .bearer_auth("sk-us")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let json: Value = res.json().await.unwrap();
    assert_eq!(json["data"][0]["id"], "gpt-4o");

    let res = client()
        .post(format!("{}/v1/embeddings", gw.url()))
        .bearer_auth("sk-us")
        .json(&serde_json::json!({"model": "gpt-4o", "input": "hello"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(upstream.received()[0].uri, "/v1/embeddings");
}

#[tokio::test]
async fn empty_plan_is_503_no_route() {
    let upstream = Upstream::always(Reply::completion("gpt-4o", 1, 1)).await;
    let toml = format!(
        r#"
[[upstream]]
name = "only"
provider = "openai"
endpoint = "{url}"
api_key_env = "K"
models = {{ "gpt-4o" = {{}} }}

[[policy]]
name = "drop-all"
file = "{{guests}}/hostile.wasm"
config = {{ mode = "empty" }}

[[route]]
name = "chat"
policies = ["drop-all"]
"#,
        url = upstream.url()
    );
    let gw = TestGateway::start(&toml, &[("K", "k")]).await;
    let (status, _, json) = post(&gw, None, &[], chat("gpt-4o").to_string()).await;
    assert_eq!((status, code(&json)), (503, "no_route"));
    assert_eq!(upstream.hits(), 0);
}

/// A client that gives up before its response is ready is still counted (and
/// logged) once, with nginx's 499, instead of vanishing from the metrics.
#[tokio::test]
async fn a_client_that_leaves_before_the_answer_is_counted_as_499() {
    let upstream = Upstream::always(Reply::StallBeforeHeaders).await;
    let toml = format!(
        r#"
[[upstream]]
name = "slow"
provider = "openai"
endpoint = "{url}"
api_key_env = "KEY"
models = {{ "gpt-4o" = {{}} }}
"#,
        url = upstream.url()
    );
    let gw = TestGateway::start(&toml, &[("KEY", "sk-test")]).await;
    let url = format!("{}/v1/chat/completions", gw.url());
    let request =
        tokio::spawn(async move { client().post(url).json(&chat("gpt-4o")).send().await });
    // Leave only once the gateway is waiting on the upstream.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while upstream.hits() == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the request never reached the upstream"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    request.abort();
    assert!(
        request.await.unwrap_err().is_cancelled(),
        "the upstream never answers"
    );
    gw.wait_for_metric(r#"status="499"} 1"#).await;
}
