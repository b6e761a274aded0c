//! The official OpenAI Python SDK, pointed at the gateway with only `base_url`
//! changed: a non-stream and a streamed chat completion, an error, the model list.
//!
//! Needs `SWITCHYARD_SDK_PYTHON` (a Python with `openai` installed; `.ci/run` sets
//! it up). Without it the test says so and fails in CI, or is skipped locally.

use crate::support::{TestGateway, repo_root};
use sha2::Digest;

#[tokio::test]
async fn official_openai_sdk_works_unchanged() {
    let Some(python) = std::env::var_os("SWITCHYARD_SDK_PYTHON") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "SWITCHYARD_SDK_PYTHON must be set in CI (see .ci/run)"
        );
        eprintln!(
            "skipped: set SWITCHYARD_SDK_PYTHON to a python with the openai package (see .ci/run)"
        );
        return;
    };
    let toml = format!(
        r#"
[[client]]
name = "sdk"
key_sha256 = "{key}"
tenant = "us-retail"

[[upstream]]
name = "sim-azure"
provider = "mock"
jurisdiction = "us"
mock = {{ stream_chunks = 5, completion_tokens = 5 }}
models = {{ "gpt-4o" = {{ model = "gpt4o-prod" }} }}

[[policy]]
name = "compliance"
file = "{{guests}}/compliance.wasm"

[[route]]
name = "chat"
policies = ["compliance"]
"#,
        key = hex::encode(sha2::Sha256::digest(b"sk-sdk-test"))
    );
    let gw = TestGateway::start(&toml, &[]).await;
    let output = tokio::process::Command::new(python)
        .arg(repo_root().join("tests/sdk/openai_client.py"))
        .env("GATEWAY_URL", gw.url())
        .env("GATEWAY_KEY", "sk-sdk-test")
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "SDK script failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let seen: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(
        seen["content"].as_str().unwrap().contains("simulated"),
        "{seen}"
    );
    assert!(seen["usage"].as_u64().unwrap() > 0);
    assert_eq!(seen["upstream"], "sim-azure");
    assert_eq!(seen["stream_chunks"], 5);
    assert_eq!(seen["stream_usage"], 5);
    assert_eq!(seen["rejected"]["status"], 403);
    assert_eq!(seen["rejected"]["code"], "residency_violation");
    assert_eq!(seen["models"], serde_json::json!(["gpt-4o"]));
}
