//! Shared helpers for the end-to-end tests: a gateway on a real loopback listener
//! (in-process or as the real binary), loopback upstreams, and the built policies.
#![allow(dead_code)]

pub mod upstream;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use switchyard::config::Config;
use switchyard::server::Server;

/// Path of a guest component built by the host build script (`azure-first`,
/// `cost`, `compliance`, `hostile`).
pub fn guest(name: &str) -> PathBuf {
    Path::new(switchyard::guests::BUILT_GUESTS_DIR).join(format!("{name}.wasm"))
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A gateway running in this test process on loopback listeners.
pub struct TestGateway {
    /// Client listener address.
    pub addr: SocketAddr,
    /// Admin listener address.
    pub admin: SocketAddr,
    /// The server.
    pub server: Arc<Server>,
    /// Keeps the config dir alive.
    pub dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestGateway {
    /// Starts a gateway from TOML (listeners are forced to 127.0.0.1:0). `{guests}`
    /// in the text is replaced by the built guests' directory. `env` supplies
    /// upstream keys.
    pub async fn start(toml: &str, env: &[(&str, &str)]) -> TestGateway {
        Self::try_start(toml, env)
            .await
            .unwrap_or_else(|err| panic!("gateway did not start: {err}"))
    }

    /// Like [`TestGateway::start`], returning the error.
    pub async fn try_start(toml: &str, env: &[(&str, &str)]) -> Result<TestGateway, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("switchyard.toml");
        std::fs::write(&path, with_loopback_listeners(toml)).unwrap();
        let config = Config::load(&path).map_err(|e| e.to_string())?;
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let server = Server::start(
            config,
            Some(path),
            Box::new(move |name| env.get(name).cloned()),
        )
        .await
        .map_err(|e| e.to_string())?;
        let (client, admin) = server.bind().await.map_err(|e| e.to_string())?;
        let (addr, admin_addr) = (client.local_addr().unwrap(), admin.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(server.clone().run(client, admin, async move {
            let _ = stopped.await;
        }));
        Ok(TestGateway {
            addr,
            admin: admin_addr,
            server,
            dir,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://ADMIN`.
    pub fn admin_url(&self) -> String {
        format!("http://{}", self.admin)
    }

    /// The admin API's answer at `path` (no token), as JSON.
    pub async fn admin_json(&self, path: &str) -> serde_json::Value {
        client()
            .get(format!("{}{path}", self.admin_url()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Polls `/metrics` until it contains `needle` (outcomes are recorded off
    /// the response path); panics with the metrics after 10 s.
    pub async fn wait_for_metric(&self, needle: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let metrics = client()
                .get(format!("{}/metrics", self.admin_url()))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            if metrics.contains(needle) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{needle} not in:\n{metrics}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Path of the config file (edit it and reload to change the config).
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("switchyard.toml")
    }

    /// Stops the gateway and waits for it to drain.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// Replaces `{guests}` and points both listeners at ephemeral loopback ports.
fn with_loopback_listeners(toml: &str) -> String {
    let toml = toml.replace("{guests}", switchyard::guests::BUILT_GUESTS_DIR);
    let server = "listen = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n";
    if toml.contains("[server]") {
        toml.replacen("[server]\n", &format!("[server]\n{server}"), 1)
    } else {
        format!("[server]\n{server}\n{toml}")
    }
}

/// The real `switchyard` binary, serving a config file.
pub struct BinaryGateway {
    /// Client listener address.
    pub addr: SocketAddr,
    /// Admin listener address.
    pub admin: SocketAddr,
    /// The process.
    pub child: Child,
    /// What the process wrote to stderr (its logs), collected in the background.
    pub logs: Arc<std::sync::Mutex<String>>,
}

impl BinaryGateway {
    /// Spawns `switchyard serve --config PATH` with extra environment variables and
    /// waits for its "listening" line.
    pub fn spawn(config: &Path, env: &[(&str, &str)]) -> BinaryGateway {
        Self::spawn_with_args(&[], config, env)
    }

    /// Like [`BinaryGateway::spawn`], with global arguments (e.g. `--log-format
    /// json`) before `serve`.
    pub fn spawn_with_args(args: &[&str], config: &Path, env: &[(&str, &str)]) -> BinaryGateway {
        let mut command = Command::new(env!("CARGO_BIN_EXE_switchyard"));
        command
            .args(args)
            .args(["serve", "--config"])
            .arg(config)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("spawning switchyard");
        let logs = Arc::new(std::sync::Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn({
            let logs = logs.clone();
            move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    let mut logs = logs.lock().unwrap();
                    logs.push_str(&line);
                    logs.push('\n');
                }
            }
        });
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let (addr, admin) = parse_listening(&line).unwrap_or_else(|| {
            panic!(
                "unexpected first line {line:?}; logs:\n{}",
                logs.lock().unwrap()
            )
        });
        std::thread::spawn(move || for _ in stdout.lines() {});
        BinaryGateway {
            addr,
            admin,
            child,
            logs,
        }
    }

    /// `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://ADMIN`.
    pub fn admin_url(&self) -> String {
        format!("http://{}", self.admin)
    }

    /// Sends a signal to the process.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit, up to `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// The logs so far.
    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().clone()
    }
}

impl Drop for BinaryGateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn parse_listening(line: &str) -> Option<(SocketAddr, SocketAddr)> {
    let rest = line
        .trim()
        .strip_prefix("switchyard listening on http://")?;
    let (client, rest) = rest.split_once(" (admin http://")?;
    Some((
        client.parse().ok()?,
        rest.trim_end_matches(')').parse().ok()?,
    ))
}

/// A reqwest client for tests.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// A chat completion body.
pub fn chat(model: &str) -> serde_json::Value {
    serde_json::json!({"model": model, "messages": [{"role": "user", "content": "Hello there"}]})
}
