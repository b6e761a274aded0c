//! A real `switchyard serve` process over a config in a temporary directory, a
//! loopback upstream, steady client traffic, and readers for the admin surface.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::Digest;

use crate::support::upstream::{Reply, Upstream};
use crate::support::{BinaryGateway, chat, client};

/// The first 8 hex characters of a component's SHA-256, as `x-switchyard-policy` shows it.
pub fn hash8(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))[..8].to_owned()
}

/// A config with one loopback upstream (`url`), a policy named `router` read
/// from `policy_file`, and a `chat` route through it. The compiled-artifact
/// cache lives in `cache_dir`.
pub fn config(url: &str, policy_file: &str, cache_dir: &Path) -> String {
    format!(
        r#"[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"

[engine]
cache_dir = "{cache}"

[[upstream]]
name = "primary"
provider = "openai"
endpoint = "{url}"
api_key_env = "RELOAD_TEST_KEY"
models = {{ "gpt-4o" = {{}} }}

# Generous: the test machine is shared and busy, and a policy thread starved
# of CPU past a wall-clock deadline is not what these tests are about.
[[policy]]
name = "router"
file = "{policy_file}"
deadline_ms = 2000

[[route]]
name = "chat"
policies = ["router"]
"#,
        cache = cache_dir.display(),
    )
}

/// A gateway process, its upstream and its files.
pub struct Fixture {
    /// The temporary directory holding config, policies and cache.
    pub dir: tempfile::TempDir,
    /// The upstream every request goes to.
    pub upstream: Upstream,
    /// The gateway process.
    pub gateway: BinaryGateway,
    /// The HTTP client.
    pub http: reqwest::Client,
}

impl Fixture {
    /// Writes `switchyard.toml` (from `make_config(upstream url, dir)`) after
    /// `prepare(dir)` has laid out the policy files, and starts the binary.
    pub async fn start(
        prepare: impl FnOnce(&Path),
        make_config: impl FnOnce(&str, &Path) -> String,
    ) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let upstream = Upstream::always(Reply::completion("gpt-4o", 5, 5)).await;
        prepare(dir.path());
        let text = make_config(&upstream.url(), dir.path());
        let path = dir.path().join("switchyard.toml");
        std::fs::write(&path, text).unwrap();
        let gateway = tokio::task::spawn_blocking(move || {
            BinaryGateway::spawn(&path, &[("RELOAD_TEST_KEY", "sk-upstream")])
        })
        .await
        .unwrap();
        Fixture {
            dir,
            upstream,
            gateway,
            http: client(),
        }
    }

    /// The config file.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("switchyard.toml")
    }

    /// One chat request: the status and the `x-switchyard-policy` header.
    pub async fn request(&self) -> (u16, String) {
        request(&self.http, &self.gateway.url()).await
    }

    /// Polls until a request is answered by `policy` (`name@hash8`); panics with
    /// the logs after `limit`.
    pub async fn wait_serving(&self, policy: &str, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let (status, served) = self.request().await;
            if status == 200 && served == policy {
                return;
            }
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "{policy} not serving after {limit:?} (last: {status} {served}); logs:\n{}",
                    self.gateway.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics(&self) -> String {
        self.admin_get("/metrics").await
    }

    /// `switchyard_policy_reloads_total{result=…}`.
    pub async fn reloads(&self, result: &str) -> u64 {
        let name = format!("switchyard_policy_reloads_total{{result=\"{result}\"}}");
        sample(&self.metrics().await, &name) as u64
    }

    /// Polls until `switchyard_policy_reloads_total{result="error"}` exceeds
    /// `than`; returns the new value.
    pub async fn wait_reload_errors_above(&self, than: u64, limit: Duration) -> u64 {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let errors = self.reloads("error").await;
            if errors > than {
                return errors;
            }
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "no reload error reported after {limit:?}; logs:\n{}",
                    self.gateway.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `GET /admin/policies`.
    pub async fn policies(&self) -> serde_json::Value {
        serde_json::from_str(&self.admin_get("/admin/policies").await).unwrap()
    }

    async fn admin_get(&self, path: &str) -> String {
        let response = self
            .http
            .get(format!("{}{path}", self.gateway.admin_url()))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "GET {path}");
        response.text().await.unwrap()
    }
}

/// One chat request: the status and the `x-switchyard-policy` header (or the
/// transport error).
pub async fn request(http: &reqwest::Client, url: &str) -> (u16, String) {
    let sent = http
        .post(format!("{url}/v1/chat/completions"))
        .json(&chat("gpt-4o"))
        .send()
        .await;
    match sent {
        Ok(response) => {
            let status = response.status().as_u16();
            let policy = response
                .headers()
                .get("x-switchyard-policy")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            // Read the body: a request only succeeded once its answer arrived.
            match response.bytes().await {
                Ok(_) if status == 200 => (status, policy),
                Ok(body) => (
                    status,
                    format!("{policy} {}", String::from_utf8_lossy(&body)),
                ),
                Err(err) => (0, format!("body: {err}")),
            }
        }
        Err(err) => (0, format!("send: {err}")),
    }
}

/// The value of one exact series in Prometheus text (0 when absent).
pub fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Clients sending requests in a loop until stopped, recording what answered.
pub struct Traffic {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Requests answered, per `x-switchyard-policy` value.
    pub served: Arc<Mutex<BTreeMap<String, u64>>>,
    /// Failed requests: status and detail.
    pub failures: Arc<Mutex<Vec<(u16, String)>>>,
    /// Requests sent.
    pub sent: Arc<AtomicU64>,
}

impl Traffic {
    /// Starts `clients` looping clients against `url`.
    pub fn start(url: String, clients: usize) -> Traffic {
        let traffic = Traffic {
            stop: Arc::new(AtomicBool::new(false)),
            tasks: Vec::new(),
            served: Arc::default(),
            failures: Arc::default(),
            sent: Arc::default(),
        };
        let tasks = (0..clients)
            .map(|_| {
                let (stop, served, failures, sent) = (
                    traffic.stop.clone(),
                    traffic.served.clone(),
                    traffic.failures.clone(),
                    traffic.sent.clone(),
                );
                let (http, url) = (client(), url.clone());
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        let (status, policy) = request(&http, &url).await;
                        sent.fetch_add(1, Ordering::Relaxed);
                        if status == 200 {
                            *served.lock().unwrap().entry(policy).or_default() += 1;
                        } else {
                            failures.lock().unwrap().push((status, policy));
                        }
                    }
                })
            })
            .collect();
        Traffic { tasks, ..traffic }
    }

    /// Stops the clients and waits for their last requests.
    pub async fn stop(mut self) -> Traffic {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks.drain(..) {
            task.await.unwrap();
        }
        self
    }
}
