//! Decision cost of the example policies: a warm pooled instance, and a fresh
//! instance per call (`isolation = "per-request"`), for a request with 20
//! headers and 8 candidates; plus a two-stage chain.
//!
//! Criterion reports means; the design's targets are percentiles (Rust policy,
//! warm: p50 ≤ 3 µs, p99 ≤ 10 µs), so each case is also timed call by call and
//! its p50/p99/p99.9 printed.
//!
//! The same `compliance` rule built from JavaScript, Python and C
//! (`compliance-js`, `compliance-py`, `compliance-c`) is benched too when
//! `policies/build.sh DIR c js python` has put them in `$SWITCHYARD_GUESTS_EXTRA`
//! or `target/guests-all` (design target for JS and Python, warm: p99 ≤ 150 µs);
//! otherwise the bench says so and skips them. Their compiled code is cached in
//! `target/bench-policy-cache`, so a second run does not recompile them.
//!
//! `cargo bench -p switchyard --bench decision [-- FILTER]`; a FILTER (e.g.
//! `compliance-`) also selects which percentile lines are measured.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use switchyard::config::{EngineConfig, Isolation};
use switchyard::guests::EXAMPLES;
use switchyard::policy::types::{
    Candidate, Headers, Health, LiveState, Offer, ProviderKind, Request,
};
use switchyard::policy::{Catalog, Chain, Policy, PolicyEngine, PolicySettings, PolicySpec};

/// Individually timed calls per warm case (and per fresh case, fewer).
const TIMED_WARM: usize = 300_000;
const TIMED_FRESH: usize = 30_000;
/// The same for the JS and Python guests, whose calls cost tens of µs (warm)
/// and about a millisecond (fresh).
const TIMED_WARM_SLOW: usize = 20_000;
const TIMED_FRESH_SLOW: usize = 2_000;

/// The non-Rust builds of `compliance`, as `policies/build.sh` names them.
const OTHER_LANGUAGES: [&str; 3] = ["compliance-js", "compliance-py", "compliance-c"];

fn request() -> Arc<Request> {
    let mut headers = Headers::default();
    for (name, value) in [
        ("content-type", "application/json"),
        ("user-agent", "OpenAI/Python 1.54.0"),
        ("accept", "application/json"),
        ("x-data-residency", "eu"),
    ] {
        headers.append(
            http::HeaderName::from_static(name),
            value.parse().expect("a header value"),
        );
    }
    for i in 0..16 {
        let name = http::HeaderName::try_from(format!("x-stainless-header-{i}")).expect("a name");
        let value = format!("value-{i}-abcdefgh")
            .parse()
            .expect("a header value");
        headers.append(name, value);
    }
    assert_eq!(headers.len(), 20);
    Arc::new(Request {
        id: "0192f0c4-7b1e-7c4a-9a53-4f1f3e2b8a10".into(),
        method: "POST".into(),
        path: "/v1/chat/completions".into(),
        model: "gpt-4o".into(),
        streaming: false,
        tenant: Some("eu-bank".into()),
        headers,
        body_bytes: 2400,
        input_tokens_estimate: 600,
        max_output_tokens: Some(512),
        route: "chat".into(),
        labels: vec![("team".into(), "search".into())],
    })
}

/// Eight candidates (ids 0 to 7) and their catalog.
fn candidates() -> (Arc<Catalog>, Vec<Candidate>) {
    let specs = [
        (
            "azure-eastus",
            ProviderKind::AzureOpenai,
            "eastus",
            "us",
            2.5,
            10.0,
        ),
        (
            "azure-swedencentral",
            ProviderKind::AzureOpenai,
            "swedencentral",
            "eu",
            2.5,
            10.0,
        ),
        (
            "azure-westeurope",
            ProviderKind::AzureOpenai,
            "westeurope",
            "eu",
            2.75,
            11.0,
        ),
        (
            "bedrock-us-east-1",
            ProviderKind::Bedrock,
            "us-east-1",
            "us",
            2.0,
            8.0,
        ),
        (
            "bedrock-eu-central-1",
            ProviderKind::Bedrock,
            "eu-central-1",
            "eu",
            2.2,
            8.8,
        ),
        ("openai", ProviderKind::Openai, "", "us", 2.5, 10.0),
        ("openai-mini", ProviderKind::Openai, "", "us", 0.15, 0.6),
        ("mock-eu", ProviderKind::Mock, "eu-west-1", "eu", 0.0, 0.0),
    ];
    let offers = specs
        .iter()
        .map(
            |&(name, provider, region, jurisdiction, input, output)| Offer {
                upstream: name.into(),
                provider,
                region: region.into(),
                jurisdiction: jurisdiction.into(),
                tags: vec!["primary".into()],
                upstream_model: "gpt-4o".into(),
                input_per_mtok: input,
                output_per_mtok: output,
            },
        )
        .collect();
    let candidates = (0..specs.len())
        .map(|i| Candidate {
            id: i as u32,
            state: LiveState {
                health: if i == 2 {
                    Health::Degraded
                } else {
                    Health::Healthy
                },
                latency_ewma_ms: 100.0 + i as f64 * 10.0,
                in_flight: i as u32,
                error_rate: 0.01,
                cooldown_remaining_ms: 0,
                ratelimit_remaining_requests: Some(1000),
                ratelimit_remaining_tokens: None,
            },
        })
        .collect();
    (Catalog::new(offers), candidates)
}

fn load(engine: &PolicyEngine, name: &str, wasm: &[u8], isolation: Isolation) -> Arc<Policy> {
    let config: BTreeMap<String, String> =
        [("eu_tenants".to_owned(), "eu-bank,eu-insurer".to_owned())].into();
    engine
        .load(PolicySpec {
            name: name.into(),
            wasm: wasm.to_vec(),
            settings: PolicySettings {
                isolation,
                // Long enough that a descheduled benchmark thread is not a failure.
                deadline: Duration::from_secs(1),
                ..PolicySettings::default()
            },
            config,
        })
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Times `calls` decisions one by one and prints the percentiles.
fn percentiles(rt: &tokio::runtime::Runtime, label: &str, policy: &Policy, calls: usize) {
    let (req, (catalog, cands)) = (request(), candidates());
    let mut samples = Vec::with_capacity(calls);
    rt.block_on(async {
        for _ in 0..calls {
            let started = Instant::now();
            let decision = policy.decide(&req, &catalog, &cands).await;
            samples.push(started.elapsed());
            std::hint::black_box(decision.expect("decision"));
        }
    });
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    println!(
        "{label:<40} n={calls:<7} p50={:>8.2?} p99={:>8.2?} p99.9={:>8.2?} max={:>8.2?}",
        at(0.50),
        at(0.99),
        at(0.999),
        samples[samples.len() - 1]
    );
}

/// The target dir (`CARGO_TARGET_DIR`, default `target/` at the repository root).
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

/// The JS, Python and C builds that are present, as (name, component bytes).
fn other_languages() -> Vec<(&'static str, Vec<u8>)> {
    let dir = std::env::var_os("SWITCHYARD_GUESTS_EXTRA")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("guests-all"));
    OTHER_LANGUAGES
        .iter()
        .filter_map(|name| {
            let file = dir.join(format!("{name}.wasm"));
            match std::fs::read(&file) {
                Ok(wasm) => Some((*name, wasm)),
                Err(_) => {
                    println!(
                        "skipping {name}: {} not found (build it with `policies/build.sh {} c js python`)",
                        file.display(),
                        dir.display()
                    );
                    None
                }
            }
        })
        .collect()
}

/// The benchmark name filter given on the command line, if any (criterion's
/// positional argument), so that percentile runs can honour it too.
fn name_filter() -> Option<String> {
    const TAKES_VALUE: &[&str] = &[
        "--measurement-time",
        "--warm-up-time",
        "--sample-size",
        "--save-baseline",
        "-s",
        "--baseline",
        "-b",
        "--load-baseline",
        "--output-format",
        "--color",
        "-c",
        "--nresamples",
        "--noise-threshold",
        "--confidence-level",
        "--significance-level",
        "--profile-time",
        "--plotting-backend",
    ];
    let args: Vec<String> = std::env::args().skip(1).collect();
    args.iter().enumerate().find_map(|(i, arg)| {
        let after_flag = i > 0 && TAKES_VALUE.contains(&args[i - 1].as_str());
        (!arg.starts_with('-') && !after_flag).then(|| arg.clone())
    })
}

/// Whether percentile lines for `name` are wanted under the command-line filter.
fn wanted(name: &str) -> bool {
    name_filter().is_none_or(|filter| name.contains(&filter) || filter.contains(name))
}

fn decision(c: &mut Criterion) {
    let engine = PolicyEngine::new(&EngineConfig {
        cache_dir: Some(target_dir().join("bench-policy-cache")),
        max_instances: 64,
        max_memory_mib: 1024,
        perf_map: false,
    })
    .expect("engine");
    let rt = runtime();
    let (req, (catalog, cands)) = (request(), candidates());

    // Every policy under test, warm and with a fresh instance per call; the JS,
    // Python and C builds are compiled once (or loaded from the cache).
    let mut policies: Vec<(String, Arc<Policy>, Arc<Policy>)> = EXAMPLES
        .iter()
        .map(|(name, wasm)| {
            (
                name.to_string(),
                load(&engine, name, wasm, Isolation::Pooled),
                load(&engine, name, wasm, Isolation::PerRequest),
            )
        })
        .collect();
    for (name, wasm) in other_languages() {
        if !wanted(name) {
            continue;
        }
        let started = Instant::now();
        let warm = load(&engine, name, &wasm, Isolation::Pooled);
        let info = warm.load_info();
        println!(
            "{name}: {:.1} MB, {} in {:.2?}",
            wasm.len() as f64 / 1e6,
            if info.from_cache {
                "loaded from the cache"
            } else {
                "compiled"
            },
            started.elapsed()
        );
        let fresh = warm.with_settings(
            PolicySettings {
                isolation: Isolation::PerRequest,
                ..warm.settings().clone()
            },
            warm.config().clone(),
        );
        policies.push((name.to_owned(), warm, fresh));
    }

    let mut group = c.benchmark_group("decide");
    for (name, warm, fresh) in &policies {
        for (mode, policy) in [("warm", warm), ("fresh", fresh)] {
            group.bench_function(format!("{name}/{mode}"), |b| {
                b.iter_custom(|iters| {
                    rt.block_on(async {
                        let started = Instant::now();
                        for _ in 0..iters {
                            std::hint::black_box(
                                policy
                                    .decide(&req, &catalog, &cands)
                                    .await
                                    .expect("decision"),
                            );
                        }
                        started.elapsed()
                    })
                })
            });
        }
    }
    group.finish();

    let compliance = load(
        &engine,
        "compliance",
        example("compliance"),
        Isolation::Pooled,
    );
    let cost = load(&engine, "cost", example("cost"), Isolation::Pooled);
    let chain = Chain::new(vec![compliance, cost]);
    c.bench_function("chain/compliance+cost/warm", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let started = Instant::now();
                for _ in 0..iters {
                    std::hint::black_box(chain.run(&req, &catalog, cands.clone(), &()).await);
                }
                started.elapsed()
            })
        })
    });

    println!("\nper-call percentiles (20 headers, 8 candidates):");
    for (name, warm, fresh) in &policies {
        if !wanted(name) {
            continue;
        }
        let slow = name.ends_with("-js") || name.ends_with("-py");
        let (n_warm, n_fresh) = if slow {
            (TIMED_WARM_SLOW, TIMED_FRESH_SLOW)
        } else {
            (TIMED_WARM, TIMED_FRESH)
        };
        percentiles(&rt, &format!("decide {name} warm"), warm, n_warm);
        percentiles(
            &rt,
            &format!("decide {name} fresh instance"),
            fresh,
            n_fresh,
        );
    }
}

/// The engine's fixed cost per call: the `cost` policy with no headers, no
/// labels and one candidate (the rest of a full call is the guest's own work
/// and what it reads from the host).
fn diagnostics(c: &mut Criterion) {
    let engine = PolicyEngine::new(&EngineConfig {
        cache_dir: None,
        max_instances: 16,
        max_memory_mib: 1024,
        perf_map: false,
    })
    .expect("engine");
    let rt = runtime();
    let policy = load(&engine, "cost", example("cost"), Isolation::Pooled);
    let small_req = Arc::new(Request {
        headers: Headers::default(),
        labels: Vec::new(),
        ..(*request()).clone()
    });
    let (catalog, mut cands) = candidates();
    cands.truncate(1);
    c.bench_function("diagnostic/cost/minimal-input", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let started = Instant::now();
                for _ in 0..iters {
                    std::hint::black_box(
                        policy
                            .decide(&small_req, &catalog, &cands)
                            .await
                            .expect("decision"),
                    );
                }
                started.elapsed()
            })
        })
    });
}

fn example(name: &str) -> &'static [u8] {
    EXAMPLES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, wasm)| *wasm)
        .expect("example")
}

criterion_group!(benches, decision, diagnostics);
criterion_main!(benches);
