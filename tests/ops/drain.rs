//! Graceful shutdown of the real binary: SIGTERM during an active stream lets it
//! finish while new connections are refused, the drain timeout cuts a stream that
//! outlasts it, and the process exits 0 either way.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::ops::traffic::{CLIENT_KEY, UPSTREAM_KEY, key_sha, steady_reply};
use crate::support::upstream::{Recorded, Reply, Upstream};
use crate::support::{BinaryGateway, client};

/// Generous bound for the process to react; never a timing claim.
const PATIENCE: Duration = Duration::from_secs(30);

/// What the binary's config holds: one upstream `steady` (gpt-4o-mini), tenant
/// `acme`, no policy.
pub struct BinaryConfig {
    /// The upstream's URL.
    pub upstream: String,
    /// `[server] admin_token_env`.
    pub admin_token_env: Option<&'static str>,
    /// `[server] drain_timeout_ms`.
    pub drain_timeout_ms: u64,
}

impl Default for BinaryConfig {
    fn default() -> Self {
        BinaryConfig {
            upstream: String::new(),
            admin_token_env: None,
            drain_timeout_ms: 30_000,
        }
    }
}

/// The real binary and the directory of its config file.
pub struct Running {
    gw: BinaryGateway,
    _dir: tempfile::TempDir,
}

impl std::ops::Deref for Running {
    type Target = BinaryGateway;
    fn deref(&self) -> &BinaryGateway {
        &self.gw
    }
}

impl std::ops::DerefMut for Running {
    fn deref_mut(&mut self) -> &mut BinaryGateway {
        &mut self.gw
    }
}

impl Running {
    /// Waits (polling, without blocking the runtime) for the process to exit.
    pub async fn exit_status(&mut self) -> std::process::ExitStatus {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.gw.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the gateway did not exit; logs:\n{}",
                self.gw.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Writes the config and spawns `switchyard serve` with `env` (plus the upstream key).
pub fn spawn(config: BinaryConfig, env: &[(&str, &str)]) -> Running {
    spawn_with_args(config, env, &[])
}

/// [`spawn`] with global arguments before the verb (e.g. `--log-format json`).
pub fn spawn_with_args(config: BinaryConfig, env: &[(&str, &str)], args: &[&str]) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let token = config
        .admin_token_env
        .map(|v| format!("admin_token_env = \"{v}\"\n"))
        .unwrap_or_default();
    let toml = format!(
        r#"[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
drain_timeout_ms = {drain}
{token}
[[client]]
name = "acme-app"
key_sha256 = "{key}"
tenant = "acme"

[[upstream]]
name = "steady"
provider = "openai"
endpoint = "{upstream}"
api_key_env = "UPSTREAM_KEY"
models = {{ "gpt-4o-mini" = {{ input_per_mtok = 0.15, output_per_mtok = 0.6 }} }}

[[route]]
name = "chat"
policies = []
"#,
        drain = config.drain_timeout_ms,
        key = key_sha(CLIENT_KEY),
        upstream = config.upstream,
    );
    let path = dir.path().join("switchyard.toml");
    std::fs::write(&path, toml).unwrap();
    let mut vars = vec![("UPSTREAM_KEY", UPSTREAM_KEY)];
    vars.extend_from_slice(env);
    let gw = BinaryGateway::spawn_with_args(args, &path, &vars);
    Running { gw, _dir: dir }
}

/// The events a streamed answer carries; the last three wait for the gate.
const FIRST: &str =
    r#"{"object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"part0 "}}]}"#;

fn rest() -> Vec<String> {
    vec![
        r#"{"object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"part1 "}}]}"#.into(),
        r#"{"object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"part2"}}]}"#.into(),
        r#"{"object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":3}}"#.into(),
        "[DONE]".into(),
    ]
}

/// Streams (held at the gate after the first event) when the request asks to,
/// else a plain completion.
fn gated(gate: Arc<Notify>) -> impl Fn(&Recorded) -> Reply + Send + Sync + 'static {
    move |rec| {
        if rec.json()["stream"] == true {
            Reply::Gated {
                first: FIRST.into(),
                rest: rest(),
                gate: gate.clone(),
            }
        } else {
            steady_reply(rec)
        }
    }
}

/// Starts a streamed chat completion and reads its first event.
async fn open_stream(url: &str) -> reqwest::Response {
    let body = serde_json::json!({
        "model": "gpt-4o-mini",
        "stream": true,
        "messages": [{"role": "user", "content": "Hello there"}],
    });
    let mut res = client()
        .post(format!("{url}/v1/chat/completions"))
        .bearer_auth(CLIENT_KEY)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let first = res.chunk().await.unwrap().expect("a first event");
    assert!(String::from_utf8_lossy(&first).contains("part0"));
    res
}

/// Everything left in the body, and whether it ended cleanly.
async fn read_rest(mut res: reqwest::Response) -> (String, bool) {
    let mut text = String::new();
    loop {
        match res.chunk().await {
            Ok(Some(chunk)) => text.push_str(&String::from_utf8_lossy(&chunk)),
            Ok(None) => return (text, true),
            Err(_) => return (text, false),
        }
    }
}

/// Waits until a new TCP connection to `addr` is refused.
async fn until_refused(addr: SocketAddr) -> bool {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while tokio::time::Instant::now() < deadline {
        match tokio::net::TcpStream::connect(addr).await {
            Err(err) if err.kind() == std::io::ErrorKind::ConnectionRefused => return true,
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_an_active_stream_finish_and_refuses_new_connections() {
    let gate = Arc::new(Notify::new());
    let upstream = Upstream::start(gated(gate.clone())).await;
    let mut gw = spawn(
        BinaryConfig {
            upstream: upstream.url(),
            ..BinaryConfig::default()
        },
        &[],
    );
    let stream = open_stream(&gw.url()).await;

    gw.signal("TERM");
    assert!(
        until_refused(gw.addr).await,
        "new connections are still accepted"
    );
    assert!(
        gw.child.try_wait().unwrap().is_none(),
        "the gateway exited with a stream open; logs:\n{}",
        gw.logs()
    );
    // During the drain the admin listener still answers, and says not ready.
    let ready = reqwest::get(format!("{}/readyz", gw.admin_url()))
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    let health = reqwest::get(format!("{}/healthz", gw.admin_url()))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);

    gate.notify_one();
    let (rest, clean) = read_rest(stream).await;
    assert!(clean, "the stream broke: {rest}");
    for part in ["part1", "part2", "data: [DONE]"] {
        assert!(rest.contains(part), "{part} missing from {rest}");
    }
    // The client did not ask for usage: the gateway asked for it and kept it.
    assert!(!rest.contains("\"usage\":{"), "{rest}");

    let status = gw.exit_status().await;
    assert_eq!(status.code(), Some(0), "logs:\n{}", gw.logs());
    let logs = gw.logs();
    assert!(logs.contains("SIGTERM"), "{logs}");
    assert!(logs.contains("all client connections closed"), "{logs}");
    assert_eq!(upstream.hits(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drain_timeout_cuts_a_stream_that_outlasts_it() {
    let gate = Arc::new(Notify::new()); // never released
    let upstream = Upstream::start(gated(gate)).await;
    let mut gw = spawn(
        BinaryConfig {
            upstream: upstream.url(),
            drain_timeout_ms: 300,
            ..BinaryConfig::default()
        },
        &[],
    );
    let stream = open_stream(&gw.url()).await;
    gw.signal("TERM");

    let (rest, _) = read_rest(stream).await;
    assert!(!rest.contains("[DONE]"), "{rest}");
    let status = gw.exit_status().await;
    assert_eq!(status.code(), Some(0), "logs:\n{}", gw.logs());
    assert!(gw.logs().contains("drain timeout passed"), "{}", gw.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_on_an_idle_gateway_exits_zero() {
    let upstream = Upstream::start(steady_reply).await;
    let mut gw = spawn(
        BinaryConfig {
            upstream: upstream.url(),
            ..BinaryConfig::default()
        },
        &[],
    );
    // One request first, so a kept-alive idle connection exists during the drain.
    let http = client();
    let res = http
        .post(format!("{}/v1/chat/completions", gw.url()))
        .bearer_auth(CLIENT_KEY)
        .json(&crate::support::chat("gpt-4o-mini"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    gw.signal("INT");
    let status = gw.exit_status().await;
    assert_eq!(status.code(), Some(0), "logs:\n{}", gw.logs());
    assert!(gw.logs().contains("SIGINT"));
    drop(http);
}
