//! Hot reload through the real binary: policy files swapped under steady traffic
//! in every way files really change (and garbage that must be refused), config
//! edits taking effect without a restart, and rotated upstream credentials
//! (`credentials`).
//!
//! `measure` holds ignored tests that print reload and restart timings
//! (`bench/reload/measure.sh` runs them); no test here asserts on time.

mod support;

mod reload {
    pub mod credentials;
    pub mod fixture;
    pub mod measure;
    pub mod patterns;
}

use std::time::Duration;

use reload::fixture::{Fixture, Traffic, config, hash8, sample};
use reload::patterns::{PolicyDir, WritePattern, garbage};
use support::guest;
use support::upstream::{Reply, Upstream};

/// Generous: a reload under load on a busy 2-core machine; never a timing claim.
const PATIENCE: Duration = Duration::from_secs(20);

/// Good swaps (each alternating between two versions; `SWITCHYARD_RELOAD_SWAPS`
/// overrides, e.g. 200 in `bench/reload/measure.sh`) and a garbage file after
/// every `GARBAGE_EVERY` of them.
const SWAPS: usize = 110;
const GARBAGE_EVERY: usize = 9;

fn swaps() -> usize {
    std::env::var("SWITCHYARD_RELOAD_SWAPS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(SWAPS)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_swaps_under_traffic_drop_no_request() {
    let versions = [
        std::fs::read(guest("azure-first")).unwrap(),
        std::fs::read(guest("cost")).unwrap(),
    ];
    let served = |v: usize| format!("router@{}", hash8(&versions[v]));
    let mut policy = None;
    let fx = Fixture::start(
        |root| policy = Some(PolicyDir::create(root, &versions[0])),
        |url, root| config(url, "policy/policy.wasm", &root.join("cache")),
    )
    .await;
    let mut policy = policy.unwrap();
    fx.wait_serving(&served(0), PATIENCE).await;

    let traffic = Traffic::start(fx.gateway.url(), 8);
    let mut current = 0;
    let mut garbage_files = 0;
    let mut reload_errors = fx.reloads("error").await;
    let swaps = swaps();
    for swap in 0..swaps {
        let pattern = WritePattern::CYCLE[swap % WritePattern::CYCLE.len()];
        let next = 1 - current;
        policy.write(pattern, &versions[next]).await;
        fx.wait_serving(&served(next), PATIENCE).await;
        current = next;

        if swap % GARBAGE_EVERY == GARBAGE_EVERY - 1 {
            policy.write_garbage(&garbage(&versions[current], garbage_files));
            garbage_files += 1;
            // Refused once its grace period is over, and the good version stays.
            reload_errors = fx.wait_reload_errors_above(reload_errors, PATIENCE).await;
            let (status, policy_header) = fx.request().await;
            assert_eq!((status, policy_header.as_str()), (200, &*served(current)));
            let policies = fx.policies().await;
            assert_eq!(policies["last_reload"]["result"], "error", "{policies}");
            assert_eq!(
                policies["policies"][0]["version"],
                hash8(&versions[current])
            );
        }
    }
    let traffic = traffic.stop().await;

    let failures = traffic.failures.lock().unwrap().clone();
    let seen = traffic.served.lock().unwrap().clone();
    let sent = traffic.sent.load(std::sync::atomic::Ordering::Relaxed);
    let retried = fx.gateway.logs().matches("do not load yet").count();
    eprintln!(
        "{swaps} swaps, {garbage_files} garbage files, {sent} requests, served by {seen:?}, \
         {reload_errors} reload errors, {retried} tentative failures retried"
    );
    assert!(failures.is_empty(), "failed requests: {failures:?}");
    assert_eq!(
        seen.keys().cloned().collect::<Vec<_>>(),
        {
            let mut both = vec![served(0), served(1)];
            both.sort();
            both
        },
        "both versions served, and nothing else"
    );
    // Half-written files were retried, not reported: every reported error is a
    // garbage file (a stall longer than the grace period could add one more).
    assert!(reload_errors >= garbage_files, "{reload_errors} errors");
    assert!(
        fx.reloads("success").await >= swaps as u64,
        "a reload per swap"
    );

    assert!(
        fx.upstream.hits() as u64 >= sent,
        "every request reached the upstream"
    );
    // Counters survive reloads: every request of the run is still counted.
    let metrics = fx.metrics().await;
    let counted = sample(
        &metrics,
        r#"switchyard_requests_total{route="chat",upstream="primary",status="200"}"#,
    );
    assert!(counted as u64 >= sent, "{counted} counted, {sent} sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_edits_apply_without_restart_and_bad_ones_are_refused() {
    let second = Upstream::always(Reply::completion("gpt-4o", 7, 7)).await;
    let guests = guest("cost");
    let guests = guests.parent().unwrap().display().to_string();
    let fx = Fixture::start(
        |_| {},
        |url, root| {
            config(
                url,
                &format!("{guests}/azure-first.wasm"),
                &root.join("cache"),
            ) + &format!(
                r#"
[[policy]]
name = "cheapest"
file = "{guests}/cost.wasm"
deadline_ms = 2000
"#
            )
        },
    )
    .await;
    let azure_first = format!(
        "router@{}",
        hash8(&std::fs::read(format!("{guests}/azure-first.wasm")).unwrap())
    );
    let cost = format!(
        "cheapest@{}",
        hash8(&std::fs::read(format!("{guests}/cost.wasm")).unwrap())
    );
    fx.wait_serving(&azure_first, PATIENCE).await;
    let traffic = Traffic::start(fx.gateway.url(), 4);

    // A new upstream, cheaper and listed first, and the route's chain changed to
    // the cost policy: both take effect without a restart.
    let original = std::fs::read_to_string(fx.config_path()).unwrap();
    let edited = original
        .replacen(
            "[[upstream]]",
            &format!(
                r#"[[upstream]]
name = "added"
provider = "openai"
endpoint = "{}"
api_key_env = "RELOAD_TEST_KEY"
models = {{ "gpt-4o" = {{}} }}

[[upstream]]"#,
                second.url()
            ),
            1,
        )
        .replace(r#"policies = ["router"]"#, r#"policies = ["cheapest"]"#);
    std::fs::write(fx.config_path(), &edited).unwrap();
    fx.wait_serving(&cost, PATIENCE).await;
    let before = second.hits();
    for _ in 0..5 {
        assert_eq!(fx.request().await, (200, cost.clone()));
    }
    assert!(second.hits() >= before + 5, "the added upstream serves");

    // An invalid edit (a route naming an unknown policy) is refused, counted and
    // shown; the edited config keeps serving.
    let errors = fx.reloads("error").await;
    let invalid = edited.replace(r#"policies = ["cheapest"]"#, r#"policies = ["missing"]"#);
    let tmp = fx.dir.path().join(".switchyard.toml.tmp");
    std::fs::write(&tmp, invalid).unwrap();
    std::fs::rename(&tmp, fx.config_path()).unwrap();
    fx.wait_reload_errors_above(errors, PATIENCE).await;
    let policies = fx.policies().await;
    assert_eq!(policies["last_reload"]["result"], "error", "{policies}");
    let error = policies["last_reload"]["error"].as_str().unwrap();
    assert!(error.contains("missing"), "{error}");
    let before = second.hits();
    assert_eq!(fx.request().await, (200, cost.clone()));
    assert!(second.hits() > before, "still the edited config");

    // Fixing the file recovers without a restart.
    std::fs::write(fx.config_path(), &original).unwrap();
    fx.wait_serving(&azure_first, PATIENCE).await;

    let traffic = traffic.stop().await;
    let failures = traffic.failures.lock().unwrap().clone();
    assert!(failures.is_empty(), "failed requests: {failures:?}");
    assert!(
        fx.gateway.logs().contains("reload refused"),
        "the refusal is logged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_recompiles_only_what_changed_and_keeps_health() {
    let upstream = Upstream::always(Reply::completion("gpt-4o", 5, 5)).await;
    let toml = |cost_config: &str| {
        format!(
            r#"
[[upstream]]
name = "primary"
provider = "openai"
endpoint = "{url}"
api_key_env = "RELOAD_TEST_KEY"
models = {{ "gpt-4o" = {{}} }}

[[policy]]
name = "router"
file = "{{guests}}/azure-first.wasm"

[[policy]]
name = "cheapest"
file = "{{guests}}/cost.wasm"
config = {{ default_output_tokens = "{cost_config}" }}

[[route]]
name = "chat"
policies = ["router", "cheapest"]
"#,
            url = upstream.url()
        )
    };
    let gw = support::TestGateway::start(&toml("256"), &[("RELOAD_TEST_KEY", "sk")]).await;
    let before = gw.server.gateway().snapshot();

    // The config file is rewritten with another setting for one policy only.
    let text = std::fs::read_to_string(gw.config_path()).unwrap();
    std::fs::write(
        gw.config_path(),
        text.replace(
            "default_output_tokens = \"256\"",
            "default_output_tokens = \"512\"",
        ),
    )
    .unwrap();
    gw.server.reload().await.unwrap();
    let after = gw.server.gateway().snapshot();

    let (router, router_after) = (
        before.policy("router").unwrap(),
        after.policy("router").unwrap(),
    );
    assert!(
        std::sync::Arc::ptr_eq(&router.policy, &router_after.policy),
        "an unchanged policy is the same loaded policy, warm instances and all"
    );
    let (cost, cost_after) = (
        before.policy("cheapest").unwrap(),
        after.policy("cheapest").unwrap(),
    );
    assert!(!std::sync::Arc::ptr_eq(&cost.policy, &cost_after.policy));
    assert_eq!(cost_after.policy.config()["default_output_tokens"], "512");
    assert!(
        std::ptr::eq(cost.policy.load_info(), cost_after.policy.load_info()),
        "a config change reuses the compiled component"
    );
    assert!(
        std::sync::Arc::ptr_eq(&before.upstreams[0].health, &after.upstreams[0].health),
        "upstream health state survives the reload"
    );
    assert!(after.generation > before.generation);

    // The old version is dropped once nothing holds it (here: our snapshot).
    let old_version = std::sync::Arc::downgrade(&cost.policy);
    drop(before);
    assert!(
        old_version.upgrade().is_none(),
        "the replaced version is freed"
    );
    gw.stop().await;
}

/// Editing only a policy's `tests` file reloads it and runs the cases again:
/// a case the installed policy fails is reported, not ignored until the next
/// change of the policy itself. The policy keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_case_file_is_checked_on_reload() {
    let wasm = guest("azure-first");
    let served = format!("router@{}", hash8(&std::fs::read(&wasm).unwrap()));
    let fx = Fixture::start(
        |root| std::fs::write(root.join("cases.json"), r#"{"cases": []}"#).unwrap(),
        |url, root| {
            config(url, &wasm.display().to_string(), &root.join("cache")).replace(
                "deadline_ms = 2000\n",
                "deadline_ms = 2000\ntests = \"cases.json\"\n",
            )
        },
    )
    .await;
    fx.wait_serving(&served, PATIENCE).await;
    let errors = fx.reloads("error").await;

    // azure-first routes; this case expects a rejection, so it fails.
    let failing = r#"{"candidates": [{"upstream": "primary"}],
        "cases": [{"name": "must-reject", "request": {"model": "gpt-4o"},
                   "expect": {"reject": {"status": 403, "code": "denied"}}}]}"#;
    std::fs::write(fx.dir.path().join("cases.json"), failing).unwrap();
    fx.wait_reload_errors_above(errors, PATIENCE).await;
    let policies = fx.policies().await;
    let error = policies["last_reload"]["error"]
        .as_str()
        .unwrap_or_default();
    assert!(error.contains("must-reject"), "{policies}");
    let (status, policy) = fx.request().await;
    assert_eq!((status, policy.as_str()), (200, served.as_str()));
}

/// A policy file replaced while the first snapshot was being built (seconds
/// for a JS or Python policy compiled afresh) is reloaded once the watch
/// starts: the watch compares against the files as they were before the build,
/// not as they are when it starts. In process, so the edit lands exactly in
/// that window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_changed_during_start_up_is_reloaded() {
    use switchyard::config::Config;
    use switchyard::server::Server;
    use switchyard::snapshot::Baseline;

    let upstream = Upstream::always(Reply::completion("gpt-4o", 5, 5)).await;
    let dir = tempfile::tempdir().unwrap();
    let first = std::fs::read(guest("azure-first")).unwrap();
    let second = std::fs::read(guest("cost")).unwrap();
    let policy = PolicyDir::create(dir.path(), &first);
    let path = dir.path().join("switchyard.toml");
    let text = config(
        &upstream.url(),
        &policy.path().display().to_string(),
        &dir.path().join("cache"),
    );
    std::fs::write(&path, text).unwrap();

    let baseline = Baseline::read(&path);
    let server = Server::start(
        Config::load(&path).unwrap(),
        Some(path.clone()),
        Box::new(|_| Some("sk-upstream".to_owned())),
    )
    .await
    .unwrap();
    let loaded = |server: &Server| {
        server.gateway().snapshot().policies[0]
            .policy
            .hash8()
            .to_owned()
    };
    assert_eq!(loaded(&server), hash8(&first));
    // The edit lands after the first build and before the watch starts.
    std::fs::write(policy.path(), &second).unwrap();
    let _watch = server.watch_files(path.clone(), baseline).unwrap();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while loaded(&server) != hash8(&second) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the edit was not loaded"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A reload builds every upstream's adapter anew, but one still reaching the
/// same origin keeps its pooled connections: reloads do not reconnect.
#[tokio::test]
async fn a_reload_keeps_the_upstream_connections() {
    let upstream = Upstream::always(Reply::completion("gpt-4o", 1, 1)).await;
    let toml = format!(
        r#"
[[upstream]]
name = "openai"
provider = "openai"
endpoint = "{}"
api_key_env = "RELOAD_TEST_KEY"
models = {{ "gpt-4o" = {{}} }}
"#,
        upstream.url()
    );
    let gw = support::TestGateway::start(&toml, &[("RELOAD_TEST_KEY", "sk")]).await;
    let ask = || async {
        let res = support::client()
            .post(format!("{}/v1/chat/completions", gw.url()))
            .json(&support::chat("gpt-4o"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        res.bytes().await.unwrap();
    };
    for _ in 0..3 {
        ask().await;
    }
    assert_eq!(upstream.connections(), 1);
    for _ in 0..3 {
        gw.server.reload().await.unwrap();
        ask().await;
    }
    assert_eq!(upstream.connections(), 1, "reloads reconnected");
    assert_eq!(upstream.hits(), 6);
}

/// A config rewritten in place by a writer that stalls mid-file (an `scp` on a
/// slow link) is not read until the writer closes it: the first half here is a
/// valid config whose route has lost its policies, and installing it would
/// route around them for as long as the stall lasted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_written_in_place_is_read_once_the_writer_closes_it() {
    use std::io::Write;

    let wasm = guest("azure-first");
    let served = format!("router@{}", hash8(&std::fs::read(&wasm).unwrap()));
    let fx = Fixture::start(
        |_| {},
        |url, root| config(url, &wasm.display().to_string(), &root.join("cache")),
    )
    .await;
    fx.wait_serving(&served, PATIENCE).await;
    let text = std::fs::read_to_string(fx.config_path()).unwrap();
    let cut = text
        .find("policies = [\"router\"]")
        .expect("the route's chain");
    let (head, tail) = text.split_at(cut);
    // The finished file differs from the first, so reading it is a reload.
    let tail = format!("{tail}\n# edited in place\n");
    let reloaded = fx.reloads("success").await;

    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(fx.config_path())
        .unwrap();
    file.write_all(head.as_bytes()).unwrap();
    file.flush().unwrap();
    // Well past the 50 ms settle time: the half file would have been loaded.
    let stalled = tokio::time::Instant::now() + Duration::from_millis(800);
    while tokio::time::Instant::now() < stalled {
        let (status, policy) = fx.request().await;
        assert_eq!(
            (status, policy.as_str()),
            (200, served.as_str()),
            "half a config was installed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(fx.reloads("success").await, reloaded, "read while open");
    file.write_all(tail.as_bytes()).unwrap();
    drop(file);
    // Closed: read and installed (well before the 5 s open-for-write wait).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(4);
    while fx.reloads("success").await == reloaded {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not read once closed: {}",
            fx.gateway.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(fx.request().await, (200, served.clone()));
    assert_eq!(fx.reloads("error").await, 0, "{}", fx.gateway.logs());
}
