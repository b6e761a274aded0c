//! Every admin endpoint answers in its documented shape, only on the admin
//! listener, and behind the bearer token when `[server] admin_token_env` is set.

use serde_json::Value;

use crate::ops::drain::{BinaryConfig, spawn};
use crate::ops::traffic::{UPSTREAM_KEY, config, steady_reply};
use crate::support::upstream::Upstream;
use crate::support::{TestGateway, client};

const ADMIN_PATHS: [(&str, &str); 6] = [
    ("GET", "/metrics"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/admin/policies"),
    ("GET", "/admin/upstreams"),
    ("POST", "/admin/reload"),
];

async fn call(base: &str, method: &str, path: &str, token: Option<&str>) -> reqwest::Response {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = client().request(method, format!("{base}{path}"));
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    req.send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_admin_endpoint_answers_in_shape() {
    let steady = Upstream::start(steady_reply).await;
    let gw = TestGateway::start(
        &config(&steady.url(), &steady.url()),
        &[("UPSTREAM_KEY", UPSTREAM_KEY)],
    )
    .await;
    let admin = gw.admin_url();

    let res = call(&admin, "GET", "/metrics", None).await;
    assert_eq!(res.status(), 200);
    let content_type = res.headers()["content-type"].to_str().unwrap().to_string();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let text = res.text().await.unwrap();
    assert!(text.ends_with("# EOF\n"));
    for family in [
        "switchyard_requests counter",
        "switchyard_upstream_attempts counter",
        "switchyard_fallbacks counter",
        "switchyard_policy_decision_seconds histogram",
        "switchyard_policy_errors counter",
        "switchyard_policy_reloads counter",
        "switchyard_request_duration_seconds histogram",
        "switchyard_time_to_first_token_seconds histogram",
        "switchyard_tokens counter",
        "switchyard_cost_usd counter",
        "switchyard_upstream_health gauge",
        "switchyard_observe_dropped counter",
    ] {
        assert!(
            text.contains(&format!("# TYPE {family}\n")),
            "{family} in\n{text}"
        );
    }

    let res = call(&admin, "GET", "/healthz", None).await;
    assert_eq!(
        (res.status().as_u16(), res.text().await.unwrap()),
        (200, "ok\n".into())
    );
    // Server::start returns only once the first snapshot is installed.
    assert!(gw.server.is_ready());
    let res = call(&admin, "GET", "/readyz", None).await;
    assert_eq!(
        (res.status().as_u16(), res.text().await.unwrap()),
        (200, "ready\n".into())
    );

    let res = call(&admin, "GET", "/admin/policies", None).await;
    assert_eq!(res.status(), 200);
    let policies: Value = res.json().await.unwrap();
    assert!(policies["generation"].is_u64(), "{policies}");
    let policy = &policies["policies"][0];
    assert_eq!(policy["name"], "hostile", "{policies}");
    let version = policy["version"].as_str().unwrap();
    assert!(version.len() == 8 && version.bytes().all(|b| b.is_ascii_hexdigit()));
    assert!(policy["source"].as_str().unwrap().ends_with("hostile.wasm"));
    assert!(policy["loaded_at"].is_string(), "{policies}");

    let res = call(&admin, "GET", "/admin/upstreams", None).await;
    assert_eq!(res.status(), 200);
    let upstreams: Value = res.json().await.unwrap();
    let names: Vec<_> = upstreams["upstreams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| (u["name"].as_str().unwrap(), u["health"].as_str().unwrap()))
        .collect();
    assert_eq!(
        names,
        [("flaky", "healthy"), ("steady", "healthy")],
        "{upstreams}"
    );

    let res = call(&admin, "POST", "/admin/reload", None).await;
    assert_eq!(res.status(), 200);
    let reload: Value = res.json().await.unwrap();
    assert_eq!(reload["result"], "success", "{reload}");
    let res = call(&admin, "GET", "/admin/policies", None).await;
    let policies: Value = res.json().await.unwrap();
    assert_eq!(policies["generation"], reload["generation"], "{policies}");
    assert_eq!(policies["last_reload"]["result"], "success", "{policies}");

    // Wrong methods and unknown admin paths.
    assert_eq!(
        call(&admin, "GET", "/admin/reload", None).await.status(),
        405
    );
    assert_eq!(call(&admin, "POST", "/metrics", None).await.status(), 405);
    assert_eq!(
        call(&admin, "GET", "/admin/nothing", None).await.status(),
        404
    );

    // Nothing admin answers on the client listener, whatever the method.
    for (_, path) in ADMIN_PATHS {
        for method in ["GET", "POST"] {
            let res = call(&gw.url(), method, path, None).await;
            assert_eq!(res.status(), 404, "{method} {path} on the client listener");
            let body: Value = res.json().await.unwrap();
            assert_eq!(body["error"]["code"], "no_route", "{method} {path}: {body}");
        }
    }

    // No secret in any admin answer.
    for (method, path) in ADMIN_PATHS {
        let body = call(&admin, method, path, None).await.text().await.unwrap();
        assert!(!body.contains(UPSTREAM_KEY), "{path}: {body}");
    }
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_token_guards_the_api_but_not_the_probes() {
    let steady = Upstream::start(steady_reply).await;
    let token = "admin-token-9f8e7d";
    let gw = spawn(
        BinaryConfig {
            upstream: steady.url(),
            admin_token_env: Some("OPS_ADMIN_TOKEN"),
            ..BinaryConfig::default()
        },
        &[("OPS_ADMIN_TOKEN", token)],
    );
    let admin = gw.admin_url();
    for (method, path) in ADMIN_PATHS {
        let probe = matches!(path, "/healthz" | "/readyz");
        for wrong in [None, Some("admin-token-9f8e7"), Some("nope")] {
            let res = call(&admin, method, path, wrong).await;
            let expected = if probe { 200 } else { 401 };
            assert_eq!(res.status(), expected, "{method} {path} with {wrong:?}");
            if !probe {
                assert_eq!(res.headers()["www-authenticate"], "Bearer");
                let body = res.text().await.unwrap();
                assert!(!body.contains(token), "{body}");
            }
        }
        let res = call(&admin, method, path, Some(token)).await;
        assert_eq!(res.status(), 200, "{method} {path} with the token");
    }
    // The client listener still has no admin paths, token or not.
    for (method, path) in ADMIN_PATHS {
        assert_eq!(
            call(&gw.url(), method, path, Some(token)).await.status(),
            404
        );
    }
    let logs = gw.logs();
    assert!(
        !logs.contains(token),
        "the token leaked into the logs:\n{logs}"
    );
}

/// A token variable that is named but unset (a missing secret, a typo) stops
/// the start with an error that names it, instead of serving an open admin API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unset_admin_token_variable_stops_the_start() {
    let steady = Upstream::start(steady_reply).await;
    let toml = format!(
        "[server]\nadmin_token_env = \"OPS_ADMIN_TOKEN_UNSET\"\n{}",
        config(&steady.url(), &steady.url())
    );
    for env in [vec![], vec![("OPS_ADMIN_TOKEN_UNSET", "")]] {
        let mut all = vec![("UPSTREAM_KEY", UPSTREAM_KEY)];
        all.extend(env);
        let err = match TestGateway::try_start(&toml, &all).await {
            Ok(_) => panic!("the gateway started with no admin token"),
            Err(err) => err,
        };
        assert!(err.contains("OPS_ADMIN_TOKEN_UNSET"), "{err}");
    }
}

/// A reload installs what it can and names the settings that only a restart
/// applies (the listeners, their limits, the engine) instead of calling them
/// reloaded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_names_the_settings_that_need_a_restart() {
    let steady = Upstream::start(steady_reply).await;
    let gw = TestGateway::start(
        &config(&steady.url(), &steady.url()),
        &[("UPSTREAM_KEY", UPSTREAM_KEY)],
    )
    .await;
    let path = gw.dir.path().join("switchyard.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let edited = text.replacen(
        "[server]\n",
        "[server]\nmax_connections = 7\nmax_request_body_bytes = 4096\n",
        1,
    );
    assert_ne!(edited, text, "the test config has a [server] table");
    std::fs::write(&path, edited).unwrap();

    let res = call(&gw.admin_url(), "POST", "/admin/reload", None).await;
    assert_eq!(res.status(), 200);
    let report: Value = res.json().await.unwrap();
    assert_eq!(report["result"], "success", "{report}");
    // The body limit is read per request, so it applied; the connection limit
    // belongs to the listener started with the process.
    assert_eq!(
        report["restart_required"],
        serde_json::json!(["server.max_connections"]),
        "{report}"
    );
    let policies: Value = call(&gw.admin_url(), "GET", "/admin/policies", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        policies["last_reload"]["restart_required"],
        serde_json::json!(["server.max_connections"])
    );
    gw.stop().await;
}
