//! Shared pieces of the hardening tests: the real binary on loopback with a config
//! written to a temp dir, raw-socket exchanges, memory readings from /proc.

use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::BinaryGateway;

/// The real `switchyard` binary and the temp dir holding its config.
pub struct Gateway {
    pub bin: BinaryGateway,
    _dir: tempfile::TempDir,
}

impl Gateway {
    /// Writes `toml` (with `{guests}` replaced and loopback listeners forced) and
    /// spawns `switchyard serve` with `env`.
    pub fn spawn(toml: &str, env: &[(&str, &str)]) -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("switchyard.toml");
        std::fs::write(&path, loopback(toml)).unwrap();
        let mut env = env.to_vec();
        if !env.iter().any(|(k, _)| *k == "RUST_LOG") {
            env.push(("RUST_LOG", "warn"));
        }
        let cache = dir.path().join("cache");
        let cache = cache.to_str().unwrap().to_string();
        env.push(("XDG_CACHE_HOME", Box::leak(cache.into_boxed_str())));
        let bin = BinaryGateway::spawn(&path, &env);
        Gateway { bin, _dir: dir }
    }

    pub fn url(&self) -> String {
        self.bin.url()
    }

    pub fn admin_url(&self) -> String {
        self.bin.admin_url()
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        self.bin.addr
    }

    pub fn pid(&self) -> u32 {
        self.bin.child.id()
    }

    /// A normal chat request for `model` answers 200: the gateway still serves.
    pub async fn assert_serves(&self, model: &str) {
        let response = crate::support::client()
            .post(format!("{}/v1/chat/completions", self.url()))
            .json(&crate::support::chat(model))
            .send()
            .await
            .expect("the gateway still accepts requests");
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        assert_eq!(status, 200, "the gateway keeps serving: {body}");
    }

    /// The gateway process's `(VmRSS, VmHWM)` in KiB.
    pub fn memory_kib(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .unwrap_or_else(|| panic!("{name} in /proc/PID/status"))
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    /// Open file descriptors of the gateway process.
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// `GET` on the admin listener, as text.
    pub async fn admin(&self, path: &str) -> String {
        crate::support::client()
            .get(format!("{}{path}", self.admin_url()))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// One upstream's entry in `GET /admin/upstreams`.
    pub async fn upstream_state(&self, name: &str) -> Value {
        let all: Value = serde_json::from_str(&self.admin("/admin/upstreams").await).unwrap();
        all["upstreams"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("upstream {name} in {all}"))
    }
}

/// Replaces `{guests}` and points both listeners at ephemeral loopback ports.
fn loopback(toml: &str) -> String {
    let toml = toml.replace("{guests}", switchyard::guests::BUILT_GUESTS_DIR);
    let server = "listen = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n";
    if toml.contains("[server]\n") {
        toml.replacen("[server]\n", &format!("[server]\n{server}"), 1)
    } else {
        format!("[server]\n{server}\n{toml}")
    }
}

/// One OpenAI upstream (`up`, key from `UP_KEY`) serving `gpt-4o`, a plain route,
/// and `server` lines added to `[server]`.
pub fn one_upstream(url: &str, server: &str) -> String {
    format!(
        r#"
[server]
{server}

[[upstream]]
name = "up"
provider = "openai"
endpoint = "{url}"
api_key_env = "UP_KEY"
models = {{ "gpt-4o" = {{}} }}

[[route]]
name = "chat"
policies = []
"#
    )
}

/// Writes `request` on a fresh connection and reads until the gateway closes it
/// or `wait` passes; returns what was read.
pub async fn raw_exchange(addr: std::net::SocketAddr, request: &[u8], wait: Duration) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    read_until_close(&mut stream, wait).await
}

/// Reads until EOF, an error, or `wait`.
pub async fn read_until_close(stream: &mut TcpStream, wait: Duration) -> String {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(wait, async {
        let mut buf = [0u8; 8192];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    String::from_utf8_lossy(&out).into_owned()
}

/// The status code of the first HTTP/1.1 response in `text` (0 when none).
pub fn status_of(text: &str) -> u16 {
    text.strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

/// Number of HTTP/1.1 responses in `text`.
pub fn responses_in(text: &str) -> usize {
    text.matches("HTTP/1.1 ").count()
}

/// The `error.code` of a JSON error body inside a raw response.
pub fn error_code_in(text: &str) -> String {
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    let start = body.find('{').unwrap_or(0);
    let end = body.rfind('}').map_or(body.len(), |e| e + 1);
    serde_json::from_str::<Value>(&body[start..end])
        .ok()
        .and_then(|v| v["error"]["code"].as_str().map(str::to_string))
        .unwrap_or_default()
}

/// A client that speaks only HTTP/2 with prior knowledge.
pub fn h2_client() -> reqwest::Client {
    reqwest::Client::builder()
        .http2_prior_knowledge()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}
