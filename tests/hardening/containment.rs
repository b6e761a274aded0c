//! Policy containment: a route whose policy spins to its deadline on every call,
//! hammered concurrently, while another route keeps answering. Policy calls
//! yield to the runtime every epoch tick, so they cannot starve it. The
//! throughput ratio is printed, not asserted (the machine is noisy).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::common::Gateway;
use crate::support::upstream::{Reply, Upstream};

const FAST_REQUESTS: usize = 200;
const HAMMERS: usize = 8;

fn config(url: &str) -> String {
    format!(
        r#"
[[upstream]]
name = "up"
provider = "openai"
endpoint = "{url}"
api_key_env = "UP_KEY"
models = {{ "gpt-4o" = {{}} }}

[[policy]]
name = "hostile"
file = "{{guests}}/hostile.wasm"
deadline_ms = 50
config = {{ mode = "ok" }}

[[policy]]
name = "cost"
file = "{{guests}}/cost.wasm"

[[route]]
name = "hostile"
headers = {{ "x-route" = "hostile" }}
policies = ["hostile"]

[[route]]
name = "fast"
policies = ["cost"]
"#
    )
}

/// Sends `n` requests one after another on the fast route; all must succeed.
async fn fast_run(client: &reqwest::Client, url: &str, n: usize) -> Duration {
    let started = Instant::now();
    for i in 0..n {
        let response = client
            .post(url)
            .json(&crate::support::chat("gpt-4o"))
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body = response.text().await.unwrap();
        assert_eq!(status, 200, "fast request {i}: {body}");
    }
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_looping_policy_does_not_starve_other_routes() {
    let upstream = Upstream::always(Reply::completion("gpt-4o", 3, 4)).await;
    let gw = Gateway::spawn(&config(&upstream.url()), &[("UP_KEY", "k")]);
    let url = format!("{}/v1/chat/completions", gw.url());
    let client = crate::support::client();
    fast_run(&client, &url, 20).await; // warm
    let alone = fast_run(&client, &url, FAST_REQUESTS).await;

    let stop = Arc::new(AtomicBool::new(false));
    let looped = Arc::new(AtomicUsize::new(0));
    let hammers: Vec<_> = (0..HAMMERS)
        .map(|_| {
            let (client, url, stop, looped) =
                (client.clone(), url.clone(), stop.clone(), looped.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let response = client
                        .post(&url)
                        .header("x-route", "hostile")
                        .header("x-hostile-mode", "loop")
                        .json(&crate::support::chat("gpt-4o"))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(response.status(), 503);
                    let body: serde_json::Value = response.json().await.unwrap();
                    assert_eq!(body["error"]["code"], "policy_error", "{body}");
                    looped.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    // Let the loopers fill the engine before measuring.
    while looped.load(Ordering::Relaxed) < HAMMERS {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let hammered = fast_run(&client, &url, FAST_REQUESTS).await;
    stop.store(true, Ordering::Relaxed);
    for hammer in hammers {
        hammer.await.unwrap();
    }
    let loops = looped.load(Ordering::Relaxed);
    let ratio = hammered.as_secs_f64() / alone.as_secs_f64();
    eprintln!(
        "containment: {FAST_REQUESTS} fast requests took {:.0} ms alone and {:.0} ms beside {HAMMERS} \
         clients looping a 50 ms policy ({loops} deadline hits): {ratio:.2}x slower",
        alone.as_secs_f64() * 1e3,
        hammered.as_secs_f64() * 1e3,
    );
    let metrics = gw.admin("/metrics").await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("switchyard_policy_errors_total") && l.contains("deadline")),
        "deadline failures are counted"
    );
    gw.assert_serves("gpt-4o").await;
}
