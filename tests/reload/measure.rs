//! Reload and restart timings, printed and never asserted (the machine is noisy).
//! Ignored by default; `bench/reload/measure.sh` runs them:
//!
//! ```text
//! cargo test -p switchyard --test reload -- --ignored --nocapture --test-threads 1
//! ```

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::fixture::{Fixture, Traffic, config, hash8};
use super::patterns::{PolicyDir, WritePattern};
use crate::support::{BinaryGateway, client, guest};

const SWAPS: usize = 50;

/// `bytes` with a custom section appended: the same policy under a new hash, so
/// the gateway has to compile it (no cache entry can match).
fn unique_copy(bytes: &[u8], n: usize) -> Vec<u8> {
    let name = b"switchyard-bench";
    let payload = n.to_string();
    let mut section = leb128(name.len());
    section.extend_from_slice(name);
    section.extend_from_slice(payload.as_bytes());
    let mut out = bytes.to_vec();
    out.push(0); // custom section id
    out.extend(leb128(section.len()));
    out.extend(section);
    out
}

fn leb128(mut n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

fn percentiles(label: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    println!(
        "{label}: n={} p50={:.0?} p95={:.0?} max={:.0?}",
        samples.len(),
        at(0.5),
        at(0.95),
        samples[samples.len() - 1]
    );
}

/// Time from a policy file change to the first request answered by the new
/// version, for an atomic rename and an in-place write, with and without
/// concurrent traffic, and for a version the cache already holds vs a new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement; run by bench/reload/measure.sh"]
async fn measure_change_to_serving() {
    let versions = [
        std::fs::read(guest("azure-first")).unwrap(),
        std::fs::read(guest("cost")).unwrap(),
    ];
    let mut policy = None;
    let fx = Fixture::start(
        |root| policy = Some(PolicyDir::create(root, &versions[0])),
        |url, root| config(url, "policy/policy.wasm", &root.join("cache")),
    )
    .await;
    let mut policy = policy.unwrap();
    fx.wait_serving(
        &format!("router@{}", hash8(&versions[0])),
        Duration::from_secs(30),
    )
    .await;

    let runs = [
        (
            "rename, known versions, idle",
            WritePattern::AtomicRename,
            false,
            0,
        ),
        (
            "rename, known versions, 4 clients",
            WritePattern::AtomicRename,
            false,
            4,
        ),
        (
            "in-place, known versions, idle",
            WritePattern::InPlace,
            false,
            0,
        ),
        (
            "rename, new component (compile), idle",
            WritePattern::AtomicRename,
            true,
            0,
        ),
        (
            "rename, new component (compile), 4 clients",
            WritePattern::AtomicRename,
            true,
            4,
        ),
    ];
    let mut serial = 0;
    for (label, pattern, fresh, clients) in runs {
        let traffic = (clients > 0).then(|| Traffic::start(fx.gateway.url(), clients));
        let mut samples = Vec::with_capacity(SWAPS);
        for _ in 0..SWAPS {
            serial += 1;
            let bytes = if fresh {
                unique_copy(&versions[serial % 2], serial)
            } else {
                versions[serial % 2].clone()
            };
            let expected = format!("router@{}", hash8(&bytes));
            let started = Instant::now();
            policy.write(pattern, &bytes).await;
            loop {
                let (status, served) = fx.request().await;
                if status == 200 && served == expected {
                    break;
                }
                assert!(
                    started.elapsed() < Duration::from_secs(30),
                    "{label}: stuck"
                );
            }
            samples.push(started.elapsed());
        }
        if let Some(traffic) = traffic {
            let traffic = traffic.stop().await;
            assert!(traffic.failures.lock().unwrap().is_empty());
        }
        percentiles(&format!("change → serving ({label})"), samples);
    }
    // The compile share, from the gateway's "policy loaded" log lines.
    let compiles: Vec<Duration> = fx
        .gateway
        .logs()
        .lines()
        .filter(|line| line.contains("policy loaded") && line.contains("from_cache=false"))
        .filter_map(|line| {
            line.split("load_ms=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .map(Duration::from_millis)
        .collect();
    if !compiles.is_empty() {
        percentiles("  of which compiling a new component", compiles);
    }
}

/// The largest policy component around: `$SWITCHYARD_BENCH_POLICY`, else the
/// 12 MB JS compliance build from `policies/build.sh`, else the largest built
/// Rust guest.
fn large_component() -> PathBuf {
    if let Some(path) = std::env::var_os("SWITCHYARD_BENCH_POLICY") {
        return path.into();
    }
    let root = crate::support::repo_root();
    let candidates = [
        root.join("target/policies/compliance-js.wasm"),
        root.join("target/guests-try/compliance-js.wasm"),
    ];
    if let Some(found) = candidates.into_iter().find(|p| p.is_file()) {
        return found;
    }
    ["compliance", "cost", "azure-first"]
        .into_iter()
        .map(guest)
        .max_by_key(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .unwrap()
}

/// Starts the binary and returns (gateway, time until `/readyz` answered 200).
async fn start_ready(config: &Path) -> (BinaryGateway, Duration) {
    let started = Instant::now();
    let path = config.to_path_buf();
    let gateway = tokio::task::spawn_blocking(move || BinaryGateway::spawn(&path, &[]))
        .await
        .unwrap();
    let http = client();
    loop {
        let ready = http
            .get(format!("{}/readyz", gateway.admin_url()))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200);
        if ready {
            return (gateway, started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Restart time with a large component: cold (empty artifact cache) vs warm.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement; run by bench/reload/measure.sh"]
async fn measure_restart_with_cached_component() {
    let source = large_component();
    let dir = tempfile::tempdir().unwrap();
    let component = dir.path().join("policy.wasm");
    std::fs::copy(&source, &component).unwrap();
    let size = std::fs::metadata(&component).unwrap().len();
    let config_path = dir.path().join("switchyard.toml");
    std::fs::write(
        &config_path,
        format!(
            r#"[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"

[engine]
cache_dir = "{cache}"

[[upstream]]
name = "sim"
provider = "mock"
models = {{ "gpt-4o" = {{}} }}

[[policy]]
name = "large"
file = "policy.wasm"
deadline_ms = 1000
config = {{ eu_tenants = "eu-bank" }}

[[route]]
name = "chat"
policies = ["large"]
"#,
            cache = dir.path().join("cache").display()
        ),
    )
    .unwrap();
    println!(
        "restart with {} ({:.1} MB)",
        source.display(),
        size as f64 / 1e6
    );
    let (gateway, cold) = start_ready(&config_path).await;
    drop(gateway);
    println!("restart → /readyz 200, cold (empty cache): {cold:.0?}");
    let mut warm = Vec::new();
    for _ in 0..5 {
        let (gateway, took) = start_ready(&config_path).await;
        drop(gateway);
        warm.push(took);
    }
    percentiles("restart → /readyz 200, cached artifact", warm);
}
