//! `observe` runs off the response path: a policy whose `observe` traps never
//! fails or holds a response, and every outcome is either observed (here: a
//! counted trap) or dropped and counted.

use crate::ops::scrape::scrape_until;
use crate::ops::traffic::{CLIENT_KEY, UPSTREAM_KEY, key_sha, steady_reply};
use crate::support::upstream::Upstream;
use crate::support::{TestGateway, chat, client};

const REQUESTS: usize = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trapping_observe_never_touches_responses_and_every_outcome_is_accounted() {
    let upstream = Upstream::start(steady_reply).await;
    let toml = format!(
        r#"
[[client]]
name = "acme-app"
key_sha256 = "{key}"
tenant = "acme"

[[upstream]]
name = "steady"
provider = "openai"
endpoint = "{url}"
api_key_env = "UPSTREAM_KEY"
models = {{ "gpt-4o-mini" = {{}} }}

[[policy]]
name = "watcher"
file = "{{guests}}/hostile.wasm"
config = {{ mode = "observe-trap" }}

[[route]]
name = "chat"
policies = ["watcher"]
"#,
        key = key_sha(CLIENT_KEY),
        url = upstream.url()
    );
    let gw = TestGateway::start(&toml, &[("UPSTREAM_KEY", UPSTREAM_KEY)]).await;

    // Concurrent traffic: every response is a clean 200 from the upstream.
    let http = client();
    let sends = (0..REQUESTS).map(|_| {
        http.post(format!("{}/v1/chat/completions", gw.url()))
            .bearer_auth(CLIENT_KEY)
            .json(&chat("gpt-4o-mini"))
            .send()
    });
    for res in futures_util::future::join_all(sends).await {
        let res = res.unwrap();
        assert_eq!(res.status(), 200);
        assert!(
            res.headers()["x-switchyard-policy"]
                .to_str()
                .unwrap()
                .starts_with("watcher@")
        );
        let body: serde_json::Value = res.json().await.unwrap();
        assert_eq!(body["object"], "chat.completion");
    }

    // Each outcome went to `observe` (which trapped, counted by kind) or was
    // dropped by the full queue (counted). Nothing is lost silently.
    let traps = |s: &crate::ops::scrape::Scrape| {
        s.get(
            "switchyard_policy_errors_total",
            &[("policy", "watcher"), ("kind", "trap")],
        )
    };
    let dropped = |s: &crate::ops::scrape::Scrape| s.get("switchyard_observe_dropped_total", &[]);
    let total = REQUESTS as f64;
    let s = scrape_until(&gw.admin_url(), |s| traps(s) + dropped(s) >= total).await;
    assert_eq!(traps(&s) + dropped(&s), total, "{}", s.text);
    assert!(s.find("switchyard_observe_dropped_total", &[]).is_some());
    // `decide` never failed: only observe trapped.
    assert_eq!(
        s.get(
            "switchyard_policy_decision_seconds_count",
            &[("policy", "watcher")]
        ),
        total
    );
    let req = [("route", "chat"), ("upstream", "steady"), ("status", "200")];
    assert_eq!(s.get("switchyard_requests_total", &req), total);
    gw.stop().await;
}
