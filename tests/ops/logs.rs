//! Access logs from the real binary: one JSON line per request with the fields
//! the design lists, and no secret anywhere in the logs even at trace level.

use serde_json::Value;

use crate::ops::drain::{BinaryConfig, spawn_with_args};
use crate::ops::traffic::{CLIENT_KEY, UPSTREAM_KEY, steady_reply};
use crate::support::upstream::Upstream;
use crate::support::{chat, client};

/// The access lines of `logs` (JSON), by request id.
fn access_lines(logs: &str, request_id: &str) -> Vec<Value> {
    logs.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["target"] == "switchyard::access" && l["request_id"] == request_id)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_json_access_line_per_request_and_no_secrets() {
    let upstream = Upstream::start(steady_reply).await;
    let verbose = "info,switchyard=trace,hyper=trace,hyper_util=trace,aws_sigv4=trace";
    let gw = spawn_with_args(
        BinaryConfig {
            upstream: upstream.url(),
            ..BinaryConfig::default()
        },
        &[("RUST_LOG", verbose)],
        &["--log-format", "json"],
    );
    let http = client();
    // Sends a request and reads the whole answer; returns the status.
    let send = |id: &'static str, key: &'static str, model: &'static str| {
        let req = http
            .post(format!("{}/v1/chat/completions", gw.url()))
            .bearer_auth(key)
            .header("x-request-id", id)
            .header("api-key", key)
            .json(&chat(model));
        async move {
            let res = req.send().await.unwrap();
            let status = res.status().as_u16();
            res.bytes().await.unwrap();
            status
        }
    };
    assert_eq!(send("ops-ok", CLIENT_KEY, "gpt-4o-mini").await, 200);
    assert_eq!(send("ops-unknown", CLIENT_KEY, "nope").await, 404);
    let models = http
        .get(format!("{}/v1/models", gw.url()))
        .bearer_auth(CLIENT_KEY)
        .header("x-request-id", "ops-models")
        .send()
        .await
        .unwrap();
    assert_eq!(models.status(), 200);
    let bad_key = "sk-wrong-key-7777";
    assert_eq!(send("ops-badkey", bad_key, "gpt-4o-mini").await, 401);

    // Access lines are written when the response ends: poll the logs.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while access_lines(&gw.logs(), "ops-badkey").is_empty()
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let logs = gw.logs();

    let ok = access_lines(&logs, "ops-ok");
    assert_eq!(ok.len(), 1, "one access line per request:\n{logs}");
    let line = &ok[0];
    assert_eq!(line["level"], "INFO");
    assert_eq!(line["tenant"], "acme");
    assert_eq!(line["route"], "chat");
    assert_eq!(line["model"], "gpt-4o-mini");
    assert_eq!(line["upstream"], "steady");
    assert_eq!(line["attempts"], 1);
    assert_eq!(line["status"], 200);
    assert_eq!(line["tokens_in"], 100);
    assert_eq!(line["tokens_out"], 20);
    assert_eq!(line["ending"], "complete");
    assert!(line["latency_ms"].as_f64().unwrap() >= 0.0);
    assert!(
        line.get("policy").is_some(),
        "policy versions field: {line}"
    );

    let unknown = access_lines(&logs, "ops-unknown");
    assert_eq!(unknown.len(), 1, "{logs}");
    assert_eq!(
        (&unknown[0]["status"], &unknown[0]["upstream"]),
        (&404.into(), &"-".into())
    );
    let models = access_lines(&logs, "ops-models");
    assert_eq!(models.len(), 1, "{logs}");
    assert_eq!(models[0]["status"], 200);
    let bad = access_lines(&logs, "ops-badkey");
    assert_eq!(bad.len(), 1, "{logs}");
    assert_eq!(
        (&bad[0]["status"], &bad[0]["tenant"]),
        (&401.into(), &"-".into())
    );

    // Every line is JSON, and no key appears anywhere, even at trace level.
    for l in logs.lines() {
        assert!(serde_json::from_str::<Value>(l).is_ok(), "not JSON: {l}");
    }
    for secret in [CLIENT_KEY, UPSTREAM_KEY, bad_key] {
        assert!(
            !logs.contains(secret),
            "{secret} leaked into the logs:\n{logs}"
        );
    }
    let received = upstream.received();
    let sent = received[0].header("authorization").unwrap();
    assert!(!logs.contains(sent), "the upstream authorization leaked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clients_model_cannot_forge_or_flood_text_log_lines() {
    let upstream = Upstream::start(steady_reply).await;
    let gw = spawn_with_args(
        BinaryConfig {
            upstream: upstream.url(),
            ..BinaryConfig::default()
        },
        &[("RUST_LOG", "info")],
        &[],
    );
    let forged = format!(
        "x\nFORGED INFO switchyard::access: request finished status=200\r{}",
        "a".repeat(200_000)
    );
    let res = client()
        .post(format!("{}/v1/chat/completions", gw.url()))
        .bearer_auth(CLIENT_KEY)
        .header("x-request-id", "ops-forged")
        .json(&chat(&forged))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    let body = res.text().await.unwrap();
    assert!(
        body.len() < 1_000,
        "the error echoes the whole model: {} bytes",
        body.len()
    );

    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while !gw.logs().contains("ops-forged") && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let logs = gw.logs();
    let line = logs
        .lines()
        .find(|l| l.contains("ops-forged"))
        .unwrap_or_else(|| panic!("no access line:\n{logs}"));
    assert!(line.contains(r"model=x\nFORGED"), "{line}");
    assert!(line.len() < 1_000, "{} bytes in one log line", line.len());
    assert!(
        !logs.lines().any(|l| l.starts_with("FORGED")),
        "a forged line:\n{logs}"
    );
}
