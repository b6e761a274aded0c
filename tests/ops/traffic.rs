//! `/metrics` after real traffic: a success, a fallback, a policy error and a
//! reload each move exactly the series they should, by exactly the right amount.

use serde_json::{Value, json};
use sha2::Digest;

use crate::ops::scrape::{Scrape, scrape};
use crate::support::upstream::{Recorded, Reply, Upstream};
use crate::support::{TestGateway, chat, client};

/// Usage the steady upstream reports on every completion.
const PROMPT_TOKENS: u32 = 100;
const COMPLETION_TOKENS: u32 = 20;
/// The tenant's gateway key.
pub const CLIENT_KEY: &str = "sk-gw-acme-0123";
/// The upstreams' key.
pub const UPSTREAM_KEY: &str = "sk-upstream-secret-4567";

pub fn key_sha(key: &str) -> String {
    hex::encode(sha2::Sha256::digest(key.as_bytes()))
}

/// Config for the traffic tests: tenant `acme`; `flaky` (first, gpt-4o only) and
/// `steady` (gpt-4o and gpt-4o-mini, priced); route `guarded` (header
/// `x-route: guarded`) runs the hostile policy (mode `ok`, so the start-up
/// canary passes), route `chat` has no policy (config-order fallback).
pub fn config(flaky: &str, steady: &str) -> String {
    format!(
        r#"
[[client]]
name = "acme-app"
key_sha256 = "{key}"
tenant = "acme"

[[upstream]]
name = "flaky"
provider = "openai"
endpoint = "{flaky}"
api_key_env = "UPSTREAM_KEY"
models = {{ "gpt-4o" = {{ input_per_mtok = 2.5, output_per_mtok = 10.0 }} }}

[[upstream]]
name = "steady"
provider = "openai"
endpoint = "{steady}"
api_key_env = "UPSTREAM_KEY"
models = {{ "gpt-4o" = {{ input_per_mtok = 2.5, output_per_mtok = 10.0 }}, "gpt-4o-mini" = {{ input_per_mtok = 0.15, output_per_mtok = 0.6 }} }}

[[policy]]
name = "hostile"
file = "{{guests}}/hostile.wasm"
on_error = "fail-closed"
config = {{ mode = "ok" }}

[[route]]
name = "guarded"
headers = {{ "x-route" = "guarded" }}
policies = ["hostile"]

[[route]]
name = "chat"
policies = []
"#,
        key = key_sha(CLIENT_KEY)
    )
}

/// Answers with a completion for the model asked, with fixed usage.
pub fn steady_reply(rec: &Recorded) -> Reply {
    let model = rec.json()["model"].as_str().unwrap_or("?").to_string();
    Reply::completion(&model, PROMPT_TOKENS, COMPLETION_TOKENS)
}

/// Sends a chat completion as the tenant; returns status, headers and JSON.
pub async fn ask(
    url: &str,
    model: &str,
    headers: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut req = client()
        .post(format!("{url}/v1/chat/completions"))
        .bearer_auth(CLIENT_KEY)
        .json(&chat(model));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = req.send().await.unwrap();
    let (status, headers) = (res.status().as_u16(), res.headers().clone());
    (status, headers, res.json().await.unwrap_or(Value::Null))
}

/// `after - before` for one series.
fn moved(before: &Scrape, after: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    after.get(name, labels) - before.get(name, labels)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_as_expected_after_real_traffic() {
    let flaky = Upstream::always(Reply::error(500, vec![])).await;
    let steady = Upstream::start(steady_reply).await;
    let gw = TestGateway::start(
        &config(&flaky.url(), &steady.url()),
        &[("UPSTREAM_KEY", UPSTREAM_KEY)],
    )
    .await;
    let before = scrape(&gw.admin_url()).await;

    // A plain success: only `steady` serves gpt-4o-mini.
    let (status, h, _) = ask(&gw.url(), "gpt-4o-mini", &[]).await;
    assert_eq!(
        (status, &h["x-switchyard-attempts"]),
        (200, &"1".parse().unwrap())
    );

    // A fallback: `flaky` answers 500, then `steady` serves.
    let (status, h, body) = ask(&gw.url(), "gpt-4o", &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(h["x-switchyard-upstream"], "steady");
    assert_eq!(h["x-switchyard-attempts"], "2");
    assert_eq!(flaky.hits(), 1);

    // A policy that traps on this request: 503 policy_error, no upstream tried.
    let trap = [("x-route", "guarded"), ("x-hostile-mode", "trap")];
    let (status, _, body) = ask(&gw.url(), "gpt-4o-mini", &trap).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (503, &json!("policy_error"))
    );

    // The same policy behaving: 200 through the guarded route.
    let (status, h, _) = ask(&gw.url(), "gpt-4o-mini", &[("x-route", "guarded")]).await;
    assert_eq!(status, 200);
    assert!(
        h["x-switchyard-policy"]
            .to_str()
            .unwrap()
            .starts_with("hostile@")
    );

    // A reload through the admin API, then traffic on the new snapshot.
    let res = client()
        .post(format!("{}/admin/reload", gw.admin_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let (status, _, _) = ask(&gw.url(), "gpt-4o-mini", &[]).await;
    assert_eq!(status, 200);
    assert_eq!(steady.hits(), 4);

    let after = scrape(&gw.admin_url()).await;
    let d = |name: &str, labels: &[(&str, &str)]| moved(&before, &after, name, labels);

    // Requests by route, serving upstream and status.
    let requests = "switchyard_requests_total";
    let req =
        |route, upstream, status| [("route", route), ("upstream", upstream), ("status", status)];
    assert_eq!(d(requests, &req("chat", "steady", "200")), 3.0);
    assert_eq!(d(requests, &req("guarded", "steady", "200")), 1.0);
    assert_eq!(d(requests, &req("guarded", "none", "503")), 1.0);
    let total: f64 = after.family(requests).iter().map(|(_, v)| v).sum();
    assert_eq!(
        total, 5.0,
        "exactly five requests were counted:\n{}",
        after.text
    );
    let duration = "switchyard_request_duration_seconds_count";
    assert_eq!(d(duration, &[("route", "chat")]), 3.0);
    assert_eq!(d(duration, &[("route", "guarded")]), 2.0);
    assert_eq!(d("switchyard_time_to_first_token_seconds_count", &[]), 4.0);

    // Attempts and fallbacks.
    let attempts = "switchyard_upstream_attempts_total";
    assert_eq!(
        d(
            attempts,
            &[("upstream", "flaky"), ("outcome", "server-error")]
        ),
        1.0
    );
    assert_eq!(
        d(attempts, &[("upstream", "steady"), ("outcome", "success")]),
        4.0
    );
    assert_eq!(d("switchyard_fallbacks_total", &[]), 1.0);

    // Policy decisions and errors by kind.
    let hostile = [("policy", "hostile")];
    assert_eq!(d("switchyard_policy_decision_seconds_count", &hostile), 2.0);
    let errors = "switchyard_policy_errors_total";
    assert_eq!(d(errors, &[("policy", "hostile"), ("kind", "trap")]), 1.0);
    for kind in ["deadline", "memory", "invalid-decision"] {
        assert_eq!(
            d(errors, &[("policy", "hostile"), ("kind", kind)]),
            0.0,
            "{kind}"
        );
    }

    // Reloads.
    let reloads = "switchyard_policy_reloads_total";
    assert_eq!(d(reloads, &[("result", "success")]), 1.0);
    assert_eq!(d(reloads, &[("result", "error")]), 0.0);

    // Tokens and cost for the tenant, per upstream and configured model.
    let tokens = |model, direction| {
        d(
            "switchyard_tokens_total",
            &[
                ("upstream", "steady"),
                ("model", model),
                ("direction", direction),
            ],
        )
    };
    let (input, output) = (f64::from(PROMPT_TOKENS), f64::from(COMPLETION_TOKENS));
    assert_eq!(tokens("gpt-4o", "input"), input);
    assert_eq!(tokens("gpt-4o", "output"), output);
    assert_eq!(tokens("gpt-4o-mini", "input"), 3.0 * input);
    assert_eq!(tokens("gpt-4o-mini", "output"), 3.0 * output);
    let cost = |model| {
        d(
            "switchyard_cost_usd_total",
            &[("upstream", "steady"), ("model", model), ("tenant", "acme")],
        )
    };
    let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
    assert!(
        close(cost("gpt-4o"), (input * 2.5 + output * 10.0) / 1e6),
        "{}",
        cost("gpt-4o")
    );
    assert!(close(
        cost("gpt-4o-mini"),
        3.0 * (input * 0.15 + output * 0.6) / 1e6
    ));
    assert!(
        after
            .family("switchyard_cost_usd_total")
            .iter()
            .all(|(l, _)| { l.contains(&("tenant".to_string(), "acme".to_string())) })
    );

    // Health is exported per upstream.
    for upstream in ["flaky", "steady"] {
        assert!(
            after
                .find("switchyard_upstream_health", &[("upstream", upstream)])
                .is_some()
        );
    }

    // Labels stay bounded: no request id, key or raw client input in any series.
    for needle in [CLIENT_KEY, UPSTREAM_KEY, "x-hostile-mode", "Hello there"] {
        assert!(!after.text.contains(needle), "{needle} in\n{}", after.text);
    }
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_models_never_become_label_values() {
    let steady = Upstream::start(steady_reply).await;
    let gw = TestGateway::start(
        &config(&steady.url(), &steady.url()),
        &[("UPSTREAM_KEY", UPSTREAM_KEY)],
    )
    .await;
    for i in 0..20 {
        let (status, _, _) = ask(&gw.url(), &format!("made-up-model-{i}"), &[]).await;
        assert_eq!(status, 404);
    }
    let after = scrape(&gw.admin_url()).await;
    assert!(!after.text.contains("made-up-model"), "{}", after.text);
    let req = [("route", "chat"), ("upstream", "none"), ("status", "404")];
    assert_eq!(after.get("switchyard_requests_total", &req), 20.0);
    gw.stop().await;
}
