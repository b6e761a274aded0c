//! Secrets canary: the real binary at `RUST_LOG=trace` with a unique canary as
//! every credential, traffic through every provider kind and error path, and the
//! canaries nowhere in its stdout, stderr, metrics, admin output or answers.

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::Digest;

use crate::support::upstream::{Reply, Upstream, closed_port};

/// Reads a child's pipe to the end in the background.
fn collect(mut pipe: impl Read + Send + 'static, into: Pipe) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        while let Ok(n) = pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
            into.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    });
}

fn canary(kind: &str) -> String {
    format!("canary{kind}{}", uuid::Uuid::new_v4().simple())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_secrets_never_leave_the_gateway() {
    let openai_key = canary("openai");
    let azure_key = canary("azure");
    let bedrock_key = canary("bedrock");
    let aws_secret = canary("awssecret");
    let aws_token = canary("awstoken");
    let client_key = canary("client");
    let wrong_key = canary("wrongclient");
    let canaries = [
        &openai_key,
        &azure_key,
        &bedrock_key,
        &aws_secret,
        &aws_token,
        &client_key,
        &wrong_key,
    ];

    let ok = Upstream::always(Reply::completion("m", 3, 4)).await;
    let streaming = Upstream::always(Reply::stream(3, Duration::from_millis(1))).await;
    let failing = Upstream::always(Reply::error(500, vec![])).await;
    let refused = format!("http://{}", closed_port().await);
    let key_sha = hex::encode(sha2::Sha256::digest(client_key.as_bytes()));
    let toml = format!(
        r#"
[[client]]
name = "canary-client"
key_sha256 = "{key_sha}"
tenant = "t1"

[[upstream]]
name = "openai"
provider = "openai"
endpoint = "{ok}"
api_key_env = "CANARY_OPENAI_KEY"
models = {{ "m-openai" = {{}} }}

[[upstream]]
name = "openai-500"
provider = "openai"
endpoint = "{failing}"
api_key_env = "CANARY_OPENAI_KEY"
models = {{ "m-500" = {{}} }}

[[upstream]]
name = "openai-refused"
provider = "openai"
endpoint = "{refused}"
api_key_env = "CANARY_OPENAI_KEY"
models = {{ "m-refused" = {{}} }}

[[upstream]]
name = "azure"
provider = "azure-openai"
endpoint = "{ok}"
api_key_env = "CANARY_AZURE_KEY"
models = {{ "m-azure" = {{ deployment = "dep" }} }}

[[upstream]]
name = "azure-500"
provider = "azure-openai"
endpoint = "{failing}"
api_key_env = "CANARY_AZURE_KEY"
models = {{ "m-azure-500" = {{ deployment = "dep" }} }}

[[upstream]]
name = "bedrock-key"
provider = "bedrock"
region = "us-east-1"
endpoint = "{ok}"
auth = "api-key"
api_key_env = "CANARY_BEDROCK_KEY"
models = {{ "m-bedrock" = {{ model_id = "openai.gpt-oss-120b-1:0" }} }}

[[upstream]]
name = "bedrock-sigv4"
provider = "bedrock"
region = "eu-central-1"
endpoint = "{ok}"
auth = "sigv4"
models = {{ "m-sigv4" = {{ model_id = "openai.gpt-oss-120b-1:0" }} }}

[[upstream]]
name = "bedrock-sigv4-500"
provider = "bedrock"
region = "eu-central-1"
endpoint = "{failing}"
auth = "sigv4"
models = {{ "m-sigv4-500" = {{ model_id = "x" }} }}

[[policy]]
name = "hostile"
file = "{{guests}}/hostile.wasm"
config = {{ mode = "ok" }}

[[route]]
name = "policed"
headers = {{ "x-route" = "policed" }}
policies = ["hostile"]

[[route]]
name = "plain"
policies = []
"#,
        ok = ok.url(),
        failing = failing.url(),
    );
    // The stream upstream is its own entry so the SSE path runs too.
    let toml = toml.replace(
        "[[policy]]",
        &format!(
            "[[upstream]]\nname = \"openai-stream\"\nprovider = \"openai\"\nendpoint = \"{}\"\napi_key_env = \"CANARY_OPENAI_KEY\"\nmodels = {{ \"m-stream\" = {{}} }}\n\n[[policy]]",
            streaming.url()
        ),
    );

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("switchyard.toml");
    let text = toml.replace("{guests}", switchyard::guests::BUILT_GUESTS_DIR);
    std::fs::write(
        &config,
        format!("[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n{text}"),
    )
    .unwrap();
    let secrets_env: Vec<(&str, &str)> = vec![
        ("CANARY_OPENAI_KEY", &openai_key),
        ("CANARY_AZURE_KEY", &azure_key),
        ("CANARY_BEDROCK_KEY", &bedrock_key),
        ("AWS_ACCESS_KEY_ID", "AKIDCANARYTEST"),
        ("AWS_SECRET_ACCESS_KEY", &aws_secret),
        ("AWS_SESSION_TOKEN", &aws_token),
    ];
    // A first start fills the compiled-policy cache: Cranelift at trace level
    // would log every instruction it lowers, for minutes.
    let (mut warm, warm_out, warm_err) = spawn(&config, dir.path(), "warn", &secrets_env);
    wait_listening(&warm_out, &warm_err).await;
    let _ = warm.kill();
    let _ = warm.wait();

    let (mut child, stdout, stderr) = spawn(&config, dir.path(), "trace", &secrets_env);
    let (addr, admin) = wait_listening(&stdout, &stderr).await;
    let url = format!("http://{addr}/v1/chat/completions");

    let client = crate::support::client();
    let mut seen = String::new();
    let mut send = async |key: &str, model: &str, stream: bool, route: &str| {
        let response = client
            .post(&url)
            .bearer_auth(key)
            .header("x-route", route)
            .header("api-key", key)
            .header("cookie", format!("session={key}"))
            .json(&serde_json::json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        seen.push_str(&format!("{:?}\n", response.headers()));
        seen.push_str(&response.text().await.unwrap_or_default());
        status
    };
    let expectations = [
        ("m-openai", false, "plain", 200),
        ("m-openai", false, "policed", 200),
        ("m-stream", true, "plain", 200),
        ("m-azure", false, "plain", 200),
        ("m-bedrock", false, "plain", 200),
        ("m-sigv4", false, "plain", 200),
        ("m-sigv4", true, "policed", 200),
        ("m-500", false, "plain", 502),
        ("m-azure-500", false, "plain", 502),
        ("m-sigv4-500", false, "plain", 502),
        ("m-refused", false, "plain", 502),
        ("m-unknown", false, "plain", 404),
    ];
    for (model, stream, route, status) in expectations {
        assert_eq!(
            send(&client_key, model, stream, route).await,
            status,
            "{model} via {route}"
        );
    }
    assert_eq!(send(&wrong_key, "m-openai", false, "plain").await, 401);
    assert_eq!(send(&wrong_key, "m-openai", true, "policed").await, 401);

    // The canaries were really used (so not finding them below means something).
    let sent = ok.received();
    let header_has = |name: &str, value: &str| {
        sent.iter()
            .any(|r| r.header(name).is_some_and(|v| v.contains(value)))
    };
    assert!(header_has("authorization", &openai_key));
    assert!(header_has("api-key", &azure_key));
    assert!(header_has("authorization", &bedrock_key));
    assert!(header_has("x-amz-security-token", &aws_token));
    assert!(
        !header_has("authorization", &client_key),
        "the client key is not forwarded"
    );
    assert!(
        !header_has("cookie", &client_key),
        "cookies are not forwarded"
    );

    for path in [
        "/metrics",
        "/admin/policies",
        "/admin/upstreams",
        "/healthz",
        "/readyz",
    ] {
        let response = client
            .get(format!("http://{admin}{path}"))
            .send()
            .await
            .unwrap();
        seen.push_str(&response.text().await.unwrap());
    }
    let reload = client
        .post(format!("http://{admin}/admin/reload"))
        .send()
        .await
        .unwrap();
    seen.push_str(&reload.text().await.unwrap());

    // Let the outcome task and `observe` calls log, then stop the process.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = tokio::task::spawn_blocking(move || child.wait()).await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    let stdout = String::from_utf8_lossy(&stdout.lock().unwrap()).into_owned();
    let stderr = String::from_utf8_lossy(&stderr.lock().unwrap()).into_owned();
    assert!(
        stderr.lines().count() > 50,
        "trace logging is on: {} lines",
        stderr.lines().count()
    );
    assert!(stderr.contains("TRACE"), "trace events were written");
    for canary in canaries {
        for (place, text) in [
            ("stdout", &stdout),
            ("stderr logs", &stderr),
            ("answers and admin output", &seen),
        ] {
            if let Some(at) = text.find(canary.as_str()) {
                let from = text[..at].rfind('\n').map_or(0, |n| n + 1);
                let to = text[at..].find('\n').map_or(text.len(), |n| at + n);
                panic!("canary {canary} leaked into {place}: {}", &text[from..to]);
            }
        }
    }
    eprintln!(
        "secrets canary: {} log lines, {} bytes of answers and admin output checked",
        stderr.lines().count(),
        seen.len()
    );
}

type Pipe = Arc<Mutex<Vec<u8>>>;

/// Spawns `switchyard serve` with `RUST_LOG=level`, collecting stdout and stderr.
fn spawn(
    config: &std::path::Path,
    dir: &std::path::Path,
    level: &str,
    env: &[(&str, &str)],
) -> (std::process::Child, Pipe, Pipe) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_switchyard"));
    command
        .args(["serve", "--config"])
        .arg(config)
        .env("RUST_LOG", level)
        .env("XDG_CACHE_HOME", dir.join("cache"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = command.spawn().unwrap();
    let (stdout, stderr) = (Pipe::default(), Pipe::default());
    collect(child.stdout.take().unwrap(), stdout.clone());
    collect(child.stderr.take().unwrap(), stderr.clone());
    (child, stdout, stderr)
}

/// Waits for "switchyard listening on http://A (admin http://B)" on stdout.
async fn wait_listening(stdout: &Pipe, stderr: &Pipe) -> (String, String) {
    for _ in 0..1200 {
        let text = String::from_utf8_lossy(&stdout.lock().unwrap()).into_owned();
        if let Some(line) = text
            .lines()
            .find(|l| l.starts_with("switchyard listening on http://"))
        {
            let rest = &line["switchyard listening on http://".len()..];
            let (client, admin) = rest.split_once(" (admin http://").unwrap();
            return (client.to_string(), admin.trim_end_matches(')').to_string());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let logs = String::from_utf8_lossy(&stderr.lock().unwrap()).into_owned();
    let tail: String = logs.lines().rev().take(20).collect::<Vec<_>>().join("\n");
    panic!("the gateway did not start; last log lines (newest first):\n{tail}");
}
