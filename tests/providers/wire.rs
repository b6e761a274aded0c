//! The exact wire shape each provider sends: method, path and query, auth
//! headers, forwarded and dropped headers, body bytes.

use switchyard::provider::{Operation, ProviderConfigError, SecretOrigin};

use super::support::{Call, Reply, Upstream, adapter, env, try_adapter};

const CLIENT_SECRET: &str = "client-gateway-key-should-never-leave";

/// A call carrying client credentials and ordinary headers.
fn call_with_client_headers(model: &str) -> Call {
    Call::chat(model)
        .header("authorization", &format!("Bearer {CLIENT_SECRET}"))
        .header("api-key", CLIENT_SECRET)
        .header("x-api-key", CLIENT_SECRET)
        .header("proxy-authorization", CLIENT_SECRET)
        .header("cookie", "session=1")
        .header("connection", "close")
        .header("host", "evil.example")
        .header("x-amz-date", "19700101T000000Z")
        .header("user-agent", "openai-python/1.0")
        .header("openai-beta", "assistants=v2")
        .header("openai-organization", "org-client")
        .header("openai-project", "proj-client")
}

/// No client credential reached the upstream, and the hop-by-hop and adapter-owned
/// headers are the adapter's own.
fn assert_no_client_credentials(rec: &super::support::Recorded) {
    for (name, value) in &rec.headers {
        let value = value.to_str().unwrap_or("");
        assert!(
            !value.contains(CLIENT_SECRET),
            "client secret leaked in {name}"
        );
    }
    assert!(rec.headers.get("cookie").is_none());
    assert!(rec.headers.get("proxy-authorization").is_none());
    // The gateway's key decides the OpenAI account, not the client's SDK settings.
    assert!(rec.headers.get("openai-organization").is_none());
    assert!(rec.headers.get("openai-project").is_none());
    assert_ne!(rec.header("connection"), Some("close"));
    assert_ne!(rec.header("x-amz-date"), Some("19700101T000000Z"));
}

/// Headers every provider sets.
fn assert_common(rec: &super::support::Recorded, upstream: &Upstream, call: &Call) {
    assert_eq!(rec.method, "POST");
    assert_eq!(
        rec.header("host"),
        Some(upstream.addr.to_string().as_str()),
        "host is the upstream's"
    );
    assert_eq!(rec.header("content-type"), Some("application/json"));
    assert_eq!(rec.header("x-request-id"), Some("req-123"));
    let accept = if call.streaming {
        "text/event-stream"
    } else {
        "application/json"
    };
    assert_eq!(rec.header("accept"), Some(accept));
    assert_eq!(rec.body, call.body, "body sent byte for byte");
    assert_eq!(
        rec.header("user-agent"),
        Some("openai-python/1.0"),
        "ordinary headers forwarded"
    );
    assert_eq!(rec.header("openai-beta"), Some("assistants=v2"));
}

#[tokio::test]
async fn openai_path_and_bearer() {
    let upstream = Upstream::start(Reply::ok_json()).await;
    let env = env(&[("OPENAI_KEY", "sk-openai-test")]);
    let cfg = format!(
        "name = \"oa\"\nprovider = \"openai\"\nendpoint = \"{}/\"\napi_key_env = \"OPENAI_KEY\"\nmodels = {{ \"gpt-4o\" = {{}} }}",
        upstream.url()
    );
    let oa = adapter(&cfg, &env);

    let call = call_with_client_headers("gpt-4o");
    let (parts, body) = call.fetch(&oa).await;
    assert_eq!(parts.status, 200);
    assert!(body.starts_with(b"{\"id\":\"chatcmpl-1\""));
    let rec = upstream.only();
    assert_eq!(rec.uri, "/v1/chat/completions");
    assert_eq!(rec.header("authorization"), Some("Bearer sk-openai-test"));
    assert!(rec.headers.get("api-key").is_none());
    assert_common(&rec, &upstream, &call);
    assert_no_client_credentials(&rec);

    let mut call = Call::chat("text-embedding-3-small").header("user-agent", "openai-python/1.0");
    call.operation = Operation::Embeddings;
    call.streaming = false;
    call.fetch(&oa).await;
    assert_eq!(upstream.recorded()[1].uri, "/v1/embeddings");

    let mut call = Call::chat("gpt-4o");
    call.streaming = true;
    call.fetch(&oa).await;
    assert_eq!(
        upstream.recorded()[2].header("accept"),
        Some("text/event-stream")
    );
}

#[tokio::test]
async fn openai_base_with_v1_is_not_doubled() {
    let upstream = Upstream::start(Reply::ok_json()).await;
    let env = env(&[("K", "k")]);
    let cfg = format!(
        "name = \"oa\"\nprovider = \"openai\"\nendpoint = \"{}/v1\"\napi_key_env = \"K\"\nmodels = {{ \"m\" = {{}} }}",
        upstream.url()
    );
    Call::chat("m").fetch(&adapter(&cfg, &env)).await;
    assert_eq!(upstream.only().uri, "/v1/chat/completions");
}

fn azure_config(url: &str, extra: &str) -> String {
    format!(
        "name = \"az\"\nprovider = \"azure-openai\"\nendpoint = \"{url}/\"\napi_key_env = \"AZ_KEY\"\n{extra}\nmodels = {{ \"gpt-4o\" = {{ deployment = \"gpt4o-prod\" }} }}"
    )
}

#[tokio::test]
async fn azure_deployments_path_api_version_and_api_key() {
    let upstream = Upstream::start(Reply::ok_json()).await;
    let env = env(&[("AZ_KEY", "azure-key-123")]);
    let az = adapter(&azure_config(&upstream.url(), ""), &env);

    let call = call_with_client_headers("gpt4o-prod");
    call.fetch(&az).await;
    let rec = upstream.only();
    assert_eq!(
        rec.uri,
        "/openai/deployments/gpt4o-prod/chat/completions?api-version=2024-10-21"
    );
    assert_eq!(rec.header("api-key"), Some("azure-key-123"));
    assert!(
        rec.headers.get("authorization").is_none(),
        "no authorization with api-key auth"
    );
    assert_common(&rec, &upstream, &call);
    assert_no_client_credentials(&rec);

    let mut call = Call::chat("embed-prod");
    call.operation = Operation::Embeddings;
    call.fetch(&az).await;
    assert_eq!(
        upstream.recorded()[1].uri,
        "/openai/deployments/embed-prod/embeddings?api-version=2024-10-21"
    );
}

#[tokio::test]
async fn azure_custom_api_version_and_odd_deployment_names() {
    let upstream = Upstream::start(Reply::ok_json()).await;
    let env = env(&[("AZ_KEY", "k")]);
    let az = adapter(
        &azure_config(&upstream.url(), "api_version = \"2025-04-01-preview\""),
        &env,
    );
    Call::chat("gpt4o-prod").fetch(&az).await;
    // A deployment name can never change the path or the query.
    Call::chat("x/../y?api-version=evil").fetch(&az).await;
    let recorded = upstream.recorded();
    assert_eq!(
        recorded[0].uri,
        "/openai/deployments/gpt4o-prod/chat/completions?api-version=2025-04-01-preview"
    );
    assert_eq!(
        recorded[1].uri,
        "/openai/deployments/x%2F..%2Fy%3Fapi-version%3Devil/chat/completions?api-version=2025-04-01-preview"
    );
}

#[tokio::test]
async fn azure_entra_sends_a_bearer_token_only() {
    let upstream = Upstream::start(Reply::ok_json()).await;
    let env = env(&[("AZ_KEY", "entra-token-xyz")]);
    let az = adapter(&azure_config(&upstream.url(), "auth = \"entra\""), &env);
    let call = call_with_client_headers("gpt4o-prod");
    call.fetch(&az).await;
    let rec = upstream.only();
    assert_eq!(rec.header("authorization"), Some("Bearer entra-token-xyz"));
    assert!(rec.headers.get("api-key").is_none());
    assert_eq!(
        rec.uri,
        "/openai/deployments/gpt4o-prod/chat/completions?api-version=2024-10-21"
    );
    assert_no_client_credentials(&rec);
}

#[tokio::test]
async fn azure_entra_token_from_a_file() {
    let upstream = Upstream::start(Reply::ok_json()).await;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("entra-token");
    std::fs::write(&token, "entra-token-from-file\n").unwrap();
    let cfg = format!(
        "name = \"az\"\nprovider = \"azure-openai\"\nendpoint = \"{}\"\nauth = \"entra\"\napi_key_file = \"{}\"\nmodels = {{ \"gpt-4o\" = {{ deployment = \"gpt4o-prod\" }} }}",
        upstream.url(),
        token.display()
    );
    // No environment at all: the token comes from the file alone.
    let az = adapter(&cfg, &env(&[]));
    call_with_client_headers("gpt4o-prod").fetch(&az).await;
    let rec = upstream.only();
    assert_eq!(
        rec.header("authorization"),
        Some("Bearer entra-token-from-file")
    );
    assert!(rec.headers.iter().all(|(name, _)| name != "api-key"));

    std::fs::remove_file(&token).unwrap();
    let err = try_adapter(&cfg, &env(&[])).unwrap_err();
    assert!(
        matches!(err, ProviderConfigError::UnreadableSecret { from: SecretOrigin::File(ref path), .. } if *path == token),
        "{err}"
    );
}

#[tokio::test]
async fn azure_v1_style_has_no_deployment_path_or_api_version() {
    let upstream = Upstream::start(Reply::ok_json()).await;
    let env = env(&[("AZ_KEY", "azure-key-123")]);
    let az = adapter(&azure_config(&upstream.url(), "api_style = \"v1\""), &env);
    let call = Call::chat("gpt4o-prod");
    call.fetch(&az).await;
    let rec = upstream.only();
    assert_eq!(rec.uri, "/openai/v1/chat/completions");
    assert_eq!(rec.header("api-key"), Some("azure-key-123"));
    let body: serde_json::Value = serde_json::from_slice(&rec.body).unwrap();
    assert_eq!(
        body["model"], "gpt4o-prod",
        "the deployment travels in the body"
    );
}

#[tokio::test]
async fn bedrock_api_key_path_bearer_and_model_ids() {
    let upstream = Upstream::start(Reply::ok_json()).await;
    let env = env(&[("BR_KEY", "bedrock-api-key-1")]);
    let cfg = format!(
        "name = \"br\"\nprovider = \"bedrock\"\nregion = \"us-west-2\"\nendpoint = \"{}/\"\napi_key_env = \"BR_KEY\"\nmodels = {{ \"gpt-oss-120b\" = {{ model_id = \"openai.gpt-oss-120b-1:0\" }} }}",
        upstream.url()
    );
    let br = adapter(&cfg, &env);
    let call = call_with_client_headers("openai.gpt-oss-120b-1:0");
    call.fetch(&br).await;
    Call::chat("us.anthropic.claude-3-5-sonnet-20241022-v2:0")
        .fetch(&br)
        .await;

    let recorded = upstream.recorded();
    let rec = &recorded[0];
    assert_eq!(rec.uri, "/openai/v1/chat/completions");
    assert_eq!(
        rec.header("authorization"),
        Some("Bearer bedrock-api-key-1")
    );
    assert_common(rec, &upstream, &call);
    assert_no_client_credentials(rec);
    let model = |r: &super::support::Recorded| {
        serde_json::from_slice::<serde_json::Value>(&r.body).unwrap()["model"].clone()
    };
    assert_eq!(model(rec), "openai.gpt-oss-120b-1:0");
    assert_eq!(recorded[1].uri, "/openai/v1/chat/completions");
    assert_eq!(
        model(&recorded[1]),
        "us.anthropic.claude-3-5-sonnet-20241022-v2:0"
    );
}

#[test]
fn bedrock_default_endpoint_is_regional() {
    let cfg = "name = \"br\"\nprovider = \"bedrock\"\nregion = \"eu-central-1\"\napi_key_env = \"BR_KEY\"\nmodels = { \"m\" = {} }";
    match try_adapter(cfg, &env(&[("BR_KEY", "k")])) {
        Ok(br) => assert_eq!(br.host(), "bedrock-runtime.eu-central-1.amazonaws.com"),
        // Without root certificates an HTTPS upstream is refused up front.
        Err(err) => {
            assert!(!switchyard::upstream::tls::native_roots_available());
            assert!(
                matches!(err, ProviderConfigError::NoTlsRoots { ref host } if host == "bedrock-runtime.eu-central-1.amazonaws.com"),
                "{err}"
            );
        }
    }
}

#[test]
fn missing_or_bad_keys_name_the_variable_never_the_value() {
    let cfg = "name = \"oa\"\nprovider = \"openai\"\nendpoint = \"http://127.0.0.1:9\"\napi_key_env = \"MY_OPENAI_KEY\"\nmodels = { \"m\" = {} }";
    let err = try_adapter(cfg, &env(&[])).unwrap_err();
    assert!(matches!(err, ProviderConfigError::MissingSecret { .. }));
    assert!(err.to_string().contains("MY_OPENAI_KEY"), "{err}");

    let err = try_adapter(cfg, &env(&[("MY_OPENAI_KEY", "sk-canary\u{1}")])).unwrap_err();
    assert!(matches!(err, ProviderConfigError::InvalidSecret { .. }));
    assert!(
        err.to_string().contains("MY_OPENAI_KEY") && !err.to_string().contains("canary"),
        "{err}"
    );

    let sigv4 = "name = \"br\"\nprovider = \"bedrock\"\nregion = \"us-east-1\"\nauth = \"sigv4\"\nendpoint = \"http://127.0.0.1:9\"\nmodels = { \"m\" = {} }";
    let err = try_adapter(sigv4, &env(&[("AWS_ACCESS_KEY_ID", "AKIDCANARY")])).unwrap_err();
    assert!(err.to_string().contains("AWS_SECRET_ACCESS_KEY"), "{err}");
    assert!(!err.to_string().contains("AKIDCANARY"), "{err}");

    let bad_token = env(&[
        ("AWS_ACCESS_KEY_ID", "AKID"),
        ("AWS_SECRET_ACCESS_KEY", "secret"),
        ("AWS_SESSION_TOKEN", "tok\u{0}en-canary"),
    ]);
    let err = try_adapter(sigv4, &bad_token).unwrap_err();
    assert!(
        matches!(err, ProviderConfigError::InvalidSecret { from: SecretOrigin::Env(ref variable) } if variable == "AWS_SESSION_TOKEN"),
        "{err}"
    );
    assert!(!err.to_string().contains("canary"), "{err}");
}

#[test]
fn adapters_debug_without_secrets() {
    let cfgs = [
        ("name = \"oa\"\nprovider = \"openai\"\nendpoint = \"http://127.0.0.1:9\"\napi_key_env = \"K\"\nmodels = { \"m\" = {} }"),
        ("name = \"az\"\nprovider = \"azure-openai\"\nendpoint = \"http://127.0.0.1:9\"\napi_key_env = \"K\"\nmodels = { \"m\" = {} }"),
        ("name = \"br\"\nprovider = \"bedrock\"\nregion = \"us-east-1\"\nendpoint = \"http://127.0.0.1:9\"\napi_key_env = \"K\"\nmodels = { \"m\" = {} }"),
        ("name = \"br\"\nprovider = \"bedrock\"\nregion = \"us-east-1\"\nauth = \"sigv4\"\nendpoint = \"http://127.0.0.1:9\"\nmodels = { \"m\" = {} }"),
    ];
    let env = env(&[
        ("K", "canary-key-0001"),
        ("AWS_ACCESS_KEY_ID", "AKIDCANARY0002"),
        ("AWS_SECRET_ACCESS_KEY", "canary-secret-0003"),
        ("AWS_SESSION_TOKEN", "canary-token-0004"),
    ]);
    for cfg in cfgs {
        let shown = format!("{:?}", adapter(cfg, &env));
        for canary in [
            "canary-key-0001",
            "AKIDCANARY0002",
            "canary-secret-0003",
            "canary-token-0004",
        ] {
            assert!(!shown.contains(canary), "{canary} in {shown}");
        }
    }
}
