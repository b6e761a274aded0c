//! Admin server tests: a fake [`AdminState`] behind a real loopback listener.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::serve;
use crate::admin::{AdminState, CONTENT_TYPE, Metrics};

const TOKEN: &str = "adm-canary-7f3e9b";

#[derive(Default)]
struct FakeState {
    metrics: Metrics,
    not_ready: AtomicBool,
    fail_reload: AtomicBool,
    reloads: AtomicUsize,
}

impl AdminState for FakeState {
    fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    fn ready(&self) -> bool {
        !self.not_ready.load(Ordering::SeqCst)
    }

    fn policies(&self) -> Value {
        json!([{"name": "cost", "version": "1a2b3c4d", "source": "policies/cost.wasm"}])
    }

    fn upstreams(&self) -> Value {
        json!([{"name": "azure-eastus", "health": "healthy"}])
    }

    fn reload(&self) -> Pin<Box<dyn Future<Output = Result<Value, String>> + Send + '_>> {
        Box::pin(async move {
            let n = self.reloads.fetch_add(1, Ordering::SeqCst) + 1;
            tokio::task::yield_now().await;
            if self.fail_reload.load(Ordering::SeqCst) {
                Err("policy cost: canary decide trapped".to_owned())
            } else {
                Ok(json!({"result": "success", "generation": n}))
            }
        })
    }
}

struct Harness {
    addr: SocketAddr,
    state: Arc<FakeState>,
    client: Client<HttpConnector, Full<Bytes>>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

struct Reply {
    status: StatusCode,
    headers: http::HeaderMap,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }

    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap())
            .unwrap_or("")
    }
}

impl Harness {
    async fn start(token: Option<&str>) -> Harness {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(FakeState::default());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(
            listener,
            state.clone(),
            token.map(str::to_owned),
            async move {
                let _ = stopped.await;
            },
        ));
        Harness {
            addr,
            state,
            client: Client::builder(TokioExecutor::new()).build_http(),
            stop: Some(stop),
            task,
        }
    }

    async fn send(&self, method: Method, path: &str, authorization: Option<&str>) -> Reply {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.addr));
        if let Some(value) = authorization {
            req = req.header(http::header::AUTHORIZATION, value);
        }
        let response = self
            .client
            .request(req.body(Full::new(Bytes::new())).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        Reply {
            status,
            headers,
            body: String::from_utf8(body.to_vec()).unwrap(),
        }
    }

    async fn get(&self, path: &str) -> Reply {
        self.send(Method::GET, path, None).await
    }

    async fn shutdown(mut self) {
        drop(self.client);
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("admin server stops after shutdown")
            .unwrap();
    }
}

/// The value of the exposition line for exactly `series`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.parse().unwrap())
}

#[tokio::test]
async fn health_probes_follow_the_state() {
    let h = Harness::start(None).await;
    let healthz = h.get("/healthz").await;
    assert_eq!(healthz.status, StatusCode::OK);
    assert_eq!(healthz.body, "ok\n");

    assert_eq!(h.get("/readyz").await.status, StatusCode::OK);
    h.state.not_ready.store(true, Ordering::SeqCst);
    assert_eq!(
        h.get("/readyz").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(h.get("/healthz").await.status, StatusCode::OK);
    h.shutdown().await;
}

#[tokio::test]
async fn metrics_endpoint_shows_recorded_values() {
    let h = Harness::start(None).await;
    let m = h.state.metrics();
    m.request_finished("chat", Some("azure-eastus"), 200, Duration::from_millis(30));
    m.request_finished("chat", None, 503, Duration::from_millis(2));
    m.attempt("azure-eastus", "server-error");
    m.fallback();
    m.fallback();
    m.policy_decision("cost", Duration::from_micros(4));
    m.policy_error("cost", "trap");
    m.reload(false);
    m.time_to_first_token(Duration::from_millis(12));
    m.tokens("azure-eastus", "gpt-4o", 50, 7);
    m.cost("azure-eastus", "gpt-4o", Some("eu-bank"), 0.125);
    m.upstream_health("azure-eastus", Metrics::HEALTH_DEGRADED);
    m.observe_dropped();

    let reply = h.get("/metrics").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header("content-type"), CONTENT_TYPE);
    let text = &reply.body;
    let expect = [
        ("switchyard_fallbacks_total", 2.0),
        (
            r#"switchyard_requests_total{route="chat",upstream="azure-eastus",status="200"}"#,
            1.0,
        ),
        (
            r#"switchyard_requests_total{route="chat",upstream="none",status="503"}"#,
            1.0,
        ),
        (
            r#"switchyard_upstream_attempts_total{upstream="azure-eastus",outcome="server-error"}"#,
            1.0,
        ),
        (
            r#"switchyard_policy_decision_seconds_count{policy="cost"}"#,
            1.0,
        ),
        (
            r#"switchyard_policy_errors_total{policy="cost",kind="trap"}"#,
            1.0,
        ),
        (r#"switchyard_policy_reloads_total{result="error"}"#, 1.0),
        (r#"switchyard_policy_reloads_total{result="success"}"#, 0.0),
        (
            r#"switchyard_request_duration_seconds_count{route="chat"}"#,
            2.0,
        ),
        ("switchyard_time_to_first_token_seconds_count", 1.0),
        (
            r#"switchyard_tokens_total{upstream="azure-eastus",model="gpt-4o",direction="input"}"#,
            50.0,
        ),
        (
            r#"switchyard_tokens_total{upstream="azure-eastus",model="gpt-4o",direction="output"}"#,
            7.0,
        ),
        (
            r#"switchyard_cost_usd_total{upstream="azure-eastus",model="gpt-4o",tenant="eu-bank"}"#,
            0.125,
        ),
        (
            r#"switchyard_upstream_health{upstream="azure-eastus"}"#,
            1.0,
        ),
        ("switchyard_observe_dropped_total", 1.0),
    ];
    for (series, value) in expect {
        assert_eq!(sample(text, series), Some(value), "{series} in\n{text}");
    }
    assert!(text.contains("switchyard_build_info{version="), "{text}");
    assert!(text.ends_with("# EOF\n"));

    // Values keep moving between scrapes.
    h.state.metrics().fallback();
    let again = h.get("/metrics").await;
    assert_eq!(sample(&again.body, "switchyard_fallbacks_total"), Some(3.0));
    h.shutdown().await;
}

#[tokio::test]
async fn policies_and_upstreams_are_json() {
    let h = Harness::start(None).await;
    let policies = h.get("/admin/policies").await;
    assert_eq!(policies.status, StatusCode::OK);
    assert_eq!(policies.header("content-type"), "application/json");
    assert_eq!(policies.json(), h.state.policies());

    let upstreams = h.get("/admin/upstreams").await;
    assert_eq!(upstreams.status, StatusCode::OK);
    assert_eq!(upstreams.json()[0]["health"], "healthy");
    h.shutdown().await;
}

#[tokio::test]
async fn reload_reports_success_and_failure() {
    let h = Harness::start(None).await;
    let ok = h.send(Method::POST, "/admin/reload", None).await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(ok.json(), json!({"result": "success", "generation": 1}));

    h.state.fail_reload.store(true, Ordering::SeqCst);
    let failed = h.send(Method::POST, "/admin/reload", None).await;
    assert_eq!(failed.status, StatusCode::UNPROCESSABLE_ENTITY);
    let error = &failed.json()["error"];
    assert_eq!(error["code"], "reload_failed");
    assert_eq!(error["message"], "policy cost: canary decide trapped");
    assert_eq!(h.state.reloads.load(Ordering::SeqCst), 2);
    h.shutdown().await;
}

#[tokio::test]
async fn unknown_paths_and_wrong_methods() {
    let h = Harness::start(None).await;
    for path in [
        "/",
        "/v1/chat/completions",
        "/admin",
        "/metrics/",
        "/admin/reload/x",
    ] {
        let reply = h.get(path).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(reply.json()["error"]["code"], "not_found", "{path}");
    }

    let reload_get = h.get("/admin/reload").await;
    assert_eq!(reload_get.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(reload_get.header("allow"), "POST");
    assert_eq!(reload_get.json()["error"]["code"], "method_not_allowed");
    for path in [
        "/metrics",
        "/healthz",
        "/readyz",
        "/admin/policies",
        "/admin/upstreams",
    ] {
        let reply = h.send(Method::POST, path, None).await;
        assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED, "{path}");
        assert_eq!(reply.header("allow"), "GET, HEAD", "{path}");
    }
    assert_eq!(h.state.reloads.load(Ordering::SeqCst), 0);

    let head = h.send(Method::HEAD, "/metrics", None).await;
    assert_eq!(head.status, StatusCode::OK);
    assert!(head.body.is_empty());
    h.shutdown().await;
}

#[tokio::test]
async fn token_guards_everything_but_the_probes() {
    let h = Harness::start(Some(TOKEN)).await;
    let good = format!("Bearer {TOKEN}");
    let guarded = [
        (Method::GET, "/metrics"),
        (Method::GET, "/admin/policies"),
        (Method::GET, "/admin/upstreams"),
        (Method::POST, "/admin/reload"),
        (Method::GET, "/no-such-path"),
    ];
    let mut seen = String::new();
    for (method, path) in &guarded {
        for bad in [
            None,
            Some("Bearer wrong"),
            Some(TOKEN),
            Some("Basic YWRtaW4="),
        ] {
            let reply = h.send(method.clone(), path, bad).await;
            assert_eq!(
                reply.status,
                StatusCode::UNAUTHORIZED,
                "{method} {path} {bad:?}"
            );
            assert_eq!(reply.header("www-authenticate"), "Bearer");
            assert_eq!(reply.json()["error"]["code"], "invalid_admin_token");
            seen.push_str(&format!("{:?}{}", reply.headers, reply.body));
        }
    }
    // A refused reload never reached the state.
    assert_eq!(h.state.reloads.load(Ordering::SeqCst), 0);

    for path in ["/healthz", "/readyz"] {
        assert_eq!(h.get(path).await.status, StatusCode::OK, "{path}");
    }
    let expected = [
        StatusCode::OK,
        StatusCode::OK,
        StatusCode::OK,
        StatusCode::OK,
        StatusCode::NOT_FOUND,
    ];
    for ((method, path), status) in guarded.iter().zip(expected) {
        let reply = h.send(method.clone(), path, Some(&good)).await;
        assert_eq!(reply.status, status, "{method} {path}");
        seen.push_str(&format!("{:?}{}", reply.headers, reply.body));
    }
    assert_eq!(h.state.reloads.load(Ordering::SeqCst), 1);
    assert!(!seen.contains(TOKEN), "the token leaked into a response");
    h.shutdown().await;
}

#[tokio::test]
async fn empty_token_means_no_auth() {
    let h = Harness::start(Some("")).await;
    assert_eq!(h.get("/admin/policies").await.status, StatusCode::OK);
    assert_eq!(h.get("/metrics").await.status, StatusCode::OK);
    h.shutdown().await;
}

#[tokio::test]
async fn shutdown_stops_accepting() {
    let h = Harness::start(None).await;
    // Leave a keep-alive connection open in the client pool.
    assert_eq!(h.get("/healthz").await.status, StatusCode::OK);
    let addr = h.addr;
    let client = h.client.clone();
    h.shutdown().await;
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "listener closed"
    );
    let req = Request::get(format!("http://{addr}/healthz"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert!(
        client.request(req).await.is_err(),
        "pooled connection closed"
    );
}
