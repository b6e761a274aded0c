//! The wire shape each provider's upstream receives through the gateway.

use crate::support::upstream::{Reply, Upstream};
use crate::support::{TestGateway, chat, client};

async fn one_request(
    toml: &str,
    env: &[(&str, &str)],
    model: &str,
) -> (reqwest::StatusCode, reqwest::header::HeaderMap) {
    let gw = TestGateway::start(toml, env).await;
    let res = client()
        .post(format!("{}/v1/chat/completions", gw.url()))
        .header("authorization", "Bearer client-key-must-not-leak")
        .header("x-request-id", "req-wire-1")
        .json(&chat(model))
        .send()
        .await
        .unwrap();
    (res.status(), res.headers().clone())
}

#[tokio::test]
async fn azure_deployment_style() {
    let upstream = Upstream::always(Reply::completion("gpt-4o", 1, 1)).await;
    let toml = format!(
        r#"
[[upstream]]
name = "azure-eastus"
provider = "azure-openai"
endpoint = "{}/"
api_key_env = "AZURE_KEY"
api_version = "2024-10-21"
models = {{ "gpt-4o" = {{ deployment = "gpt4o-prod" }} }}
"#,
        upstream.url()
    );
    let (status, headers) = one_request(&toml, &[("AZURE_KEY", "az-secret")], "gpt-4o").await;
    assert_eq!(status, 200);
    assert_eq!(headers["x-switchyard-upstream"], "azure-eastus");
    assert_eq!(headers["x-request-id"], "req-wire-1");
    let got = &upstream.received()[0];
    assert_eq!(got.method, "POST");
    assert_eq!(
        got.uri,
        "/openai/deployments/gpt4o-prod/chat/completions?api-version=2024-10-21"
    );
    assert_eq!(got.header("api-key"), Some("az-secret"));
    assert_eq!(got.header("authorization"), None);
    assert_eq!(got.header("x-request-id"), Some("req-wire-1"));
    assert_eq!(got.json()["model"], "gpt4o-prod");
}

#[tokio::test]
async fn azure_v1_style() {
    let upstream = Upstream::always(Reply::completion("gpt-4o", 1, 1)).await;
    let toml = format!(
        r#"
[[upstream]]
name = "azure-v1"
provider = "azure-openai"
endpoint = "{}"
api_key_env = "AZURE_KEY"
api_style = "v1"
models = {{ "gpt-4o" = {{ deployment = "gpt4o-v1" }} }}
"#,
        upstream.url()
    );
    let (status, _) = one_request(&toml, &[("AZURE_KEY", "az-secret")], "gpt-4o").await;
    assert_eq!(status, 200);
    let got = &upstream.received()[0];
    assert_eq!(got.uri, "/openai/v1/chat/completions");
    assert_eq!(got.header("api-key"), Some("az-secret"));
    assert_eq!(got.json()["model"], "gpt4o-v1");
}

#[tokio::test]
async fn bedrock_api_key() {
    let upstream = Upstream::always(Reply::completion("gpt-oss", 1, 1)).await;
    let toml = format!(
        r#"
[[upstream]]
name = "bedrock-us"
provider = "bedrock"
region = "us-east-1"
endpoint = "{}"
auth = "api-key"
api_key_env = "BEDROCK_KEY"
models = {{ "gpt-oss-120b" = {{ model_id = "openai.gpt-oss-120b-1:0" }} }}
"#,
        upstream.url()
    );
    let (status, _) = one_request(&toml, &[("BEDROCK_KEY", "br-secret")], "gpt-oss-120b").await;
    assert_eq!(status, 200);
    let got = &upstream.received()[0];
    assert_eq!(got.uri, "/openai/v1/chat/completions");
    assert_eq!(got.header("authorization"), Some("Bearer br-secret"));
    assert_eq!(got.json()["model"], "openai.gpt-oss-120b-1:0");
    assert_eq!(got.json()["messages"][0]["content"], "Hello there");
}

#[tokio::test]
async fn bedrock_sigv4() {
    let upstream = Upstream::always(Reply::completion("gpt-oss", 1, 1)).await;
    let toml = format!(
        r#"
[[upstream]]
name = "bedrock-eu"
provider = "bedrock"
region = "eu-central-1"
endpoint = "{}"
auth = "sigv4"
models = {{ "gpt-oss-120b" = {{ model_id = "eu.openai.gpt-oss-120b-1:0" }} }}
"#,
        upstream.url()
    );
    let env = [
        ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
        (
            "AWS_SECRET_ACCESS_KEY",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        ),
        ("AWS_SESSION_TOKEN", "session-token-example"),
    ];
    let (status, _) = one_request(&toml, &env, "gpt-oss-120b").await;
    assert_eq!(status, 200);
    let got = &upstream.received()[0];
    let auth = got.header("authorization").unwrap();
    assert!(
        auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/"),
        "{auth}"
    );
    assert!(
        auth.contains("/eu-central-1/bedrock/aws4_request"),
        "{auth}"
    );
    assert!(got.header("x-amz-date").is_some());
    assert_eq!(
        got.header("x-amz-security-token"),
        Some("session-token-example")
    );
    assert_eq!(got.json()["model"], "eu.openai.gpt-oss-120b-1:0");
}

#[tokio::test]
async fn openai_bearer_and_model_rewrite() {
    let upstream = Upstream::always(Reply::completion("gpt-4o", 1, 1)).await;
    let toml = format!(
        r#"
[[upstream]]
name = "openai"
provider = "openai"
endpoint = "{}"
api_key_env = "OPENAI_KEY"
models = {{ "fast" = {{ model = "gpt-4o-mini" }} }}
"#,
        upstream.url()
    );
    let (status, _) = one_request(&toml, &[("OPENAI_KEY", "sk-openai")], "fast").await;
    assert_eq!(status, 200);
    let got = &upstream.received()[0];
    assert_eq!(got.uri, "/v1/chat/completions");
    assert_eq!(got.header("authorization"), Some("Bearer sk-openai"));
    assert_eq!(got.json()["model"], "gpt-4o-mini");
}

/// Answers from a simulated upstream are labelled `x-switchyard-simulated`
/// through the gateway, streamed or not; a real upstream can neither set that
/// label nor any other `x-switchyard-*` stamp, nor hand the client its cookies.
#[tokio::test]
async fn simulated_answers_are_labelled_and_upstream_stamps_are_not_trusted() {
    let Reply::Json { status, body, .. } = Reply::completion("gpt-4o", 1, 1) else {
        unreachable!("completion is JSON")
    };
    let forged = vec![
        ("x-switchyard-simulated", "true".to_string()),
        ("x-switchyard-upstream", "forged".to_string()),
        ("set-cookie", "edge=1".to_string()),
        ("connection", "x-edge-hop".to_string()),
        ("x-edge-hop", "1".to_string()),
    ];
    let upstream = Upstream::always(Reply::Json {
        status,
        headers: forged,
        body,
    })
    .await;
    let toml = format!(
        r#"
[[upstream]]
name = "real"
provider = "openai"
endpoint = "{}"
api_key_env = "OPENAI_KEY"
models = {{ "real" = {{ model = "gpt-4o" }} }}

[[upstream]]
name = "sim"
provider = "mock"
mock = {{ stream_chunks = 2 }}
models = {{ "sim" = {{}} }}
"#,
        upstream.url()
    );
    let gw = TestGateway::start(&toml, &[("OPENAI_KEY", "sk-openai")]).await;
    let send = |model: &str, stream: bool| {
        let mut body = chat(model);
        body["stream"] = stream.into();
        client()
            .post(format!("{}/v1/chat/completions", gw.url()))
            .json(&body)
            .send()
    };
    for stream in [false, true] {
        let res = send("sim", stream).await.unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(
            res.headers()["x-switchyard-simulated"],
            "true",
            "stream={stream}"
        );
        assert_eq!(res.headers()["x-switchyard-upstream"], "sim");
        let text = res.text().await.unwrap();
        let end = if stream { "data: [DONE]" } else { "simulated" };
        assert!(text.contains(end), "{text}");
    }
    let res = send("real", false).await.unwrap();
    assert_eq!(res.status(), 200);
    let headers = res.headers();
    assert_eq!(headers["x-switchyard-upstream"], "real");
    for dropped in ["x-switchyard-simulated", "set-cookie", "x-edge-hop"] {
        assert!(
            headers.get(dropped).is_none(),
            "{dropped} reached the client"
        );
    }
    assert_eq!(
        upstream.received()[0].header("authorization"),
        Some("Bearer sk-openai")
    );
}

/// Bedrock's OpenAI-compatible API has chat completions only: a Bedrock
/// upstream is never tried for embeddings, and a model only Bedrock serves
/// has no embeddings at all.
#[tokio::test]
async fn bedrock_upstreams_are_not_candidates_for_embeddings() {
    let embedding = Reply::Json {
        status: 200,
        headers: vec![],
        body: r#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.1]}],"model":"m","usage":{"prompt_tokens":1,"total_tokens":1}}"#.into(),
    };
    let bedrock = Upstream::always(embedding.clone()).await;
    let openai = Upstream::always(embedding).await;
    let toml = format!(
        r#"
[[upstream]]
name = "bedrock-us"
provider = "bedrock"
region = "us-east-1"
endpoint = "{}"
auth = "api-key"
api_key_env = "BEDROCK_KEY"
models = {{ "shared" = {{ model_id = "m" }}, "bedrock-only" = {{ model_id = "m" }} }}

[[upstream]]
name = "openai"
provider = "openai"
endpoint = "{}"
api_key_env = "OPENAI_KEY"
models = {{ "shared" = {{ model = "m" }} }}
"#,
        bedrock.url(),
        openai.url()
    );
    let env = [("BEDROCK_KEY", "br"), ("OPENAI_KEY", "sk")];
    let gw = TestGateway::start(&toml, &env).await;
    let embed = |model: &str| {
        client()
            .post(format!("{}/v1/embeddings", gw.url()))
            .json(&serde_json::json!({"model": model, "input": "hello"}))
            .send()
    };
    let res = embed("shared").await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-switchyard-upstream"], "openai");
    assert_eq!(res.headers()["x-switchyard-attempts"], "1");
    assert_eq!(openai.received()[0].uri, "/v1/embeddings");

    let res = embed("bedrock-only").await.unwrap();
    assert_eq!(res.status(), 404);
    let json: serde_json::Value = res.json().await.unwrap();
    assert_eq!(json["error"]["code"], "model_not_found", "{json}");
    assert_eq!(bedrock.hits(), 0, "Bedrock was sent an embeddings request");
}
