//! The policy engine against real components: the hostile fixture (one test per
//! misbehaviour: its classified error, a generous time bound, and recovery),
//! the example policies, chains, pools, isolation, counters, the compile cache,
//! and load errors (with small WAT components).

#[path = "engine/chain.rs"]
mod chain;
#[path = "engine/lifecycle.rs"]
mod lifecycle;
#[path = "engine/wat.rs"]
mod wat;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use switchyard::config::{EngineConfig, Isolation, OnError};
use switchyard::policy::json::{self, CandidateJson, RequestJson};
use switchyard::policy::types::{Candidate, Decision, Outcome, Request, RetryOn};
use switchyard::policy::{
    Catalog, Chain, ChainOutcome, LoadError, Policy, PolicyEngine, PolicyErrorKind, PolicySettings,
    PolicySpec, StageObserver,
};

const HOSTILE: &str = concat!(env!("SWITCHYARD_GUESTS_DIR"), "/hostile.wasm");
const COMPLIANCE: &str = concat!(env!("SWITCHYARD_GUESTS_DIR"), "/compliance.wasm");
const COST: &str = concat!(env!("SWITCHYARD_GUESTS_DIR"), "/cost.wasm");

/// Every failure must end within its deadline plus this (a generous margin: the
/// machine is noisy).
const MARGIN: Duration = Duration::from_secs(2);

fn engine_with_cache(cache_dir: Option<std::path::PathBuf>) -> PolicyEngine {
    PolicyEngine::new(&EngineConfig {
        cache_dir,
        max_instances: 32,
        max_memory_mib: 256,
        perf_map: false,
    })
    .expect("engine")
}

fn engine() -> PolicyEngine {
    engine_with_cache(None)
}

fn settings() -> PolicySettings {
    PolicySettings {
        deadline: Duration::from_millis(50),
        memory_limit_bytes: 64 << 20,
        ..PolicySettings::default()
    }
}

fn config(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn load(
    engine: &PolicyEngine,
    name: &str,
    path: &str,
    settings: PolicySettings,
    cfg: BTreeMap<String, String>,
) -> Arc<Policy> {
    engine
        .load(PolicySpec {
            name: name.to_owned(),
            wasm: std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}")),
            settings,
            config: cfg,
        })
        .unwrap_or_else(|e| panic!("loading {path}: {e}"))
}

fn hostile(engine: &PolicyEngine, mode: &str, settings: PolicySettings) -> Arc<Policy> {
    load(
        engine,
        "hostile",
        HOSTILE,
        settings,
        config(&[("mode", mode)]),
    )
}

fn request() -> Arc<Request> {
    Arc::new(
        RequestJson {
            model: "gpt-4o".into(),
            ..RequestJson::default()
        }
        .into(),
    )
}

fn candidate(name: &str, jurisdiction: &str) -> CandidateJson {
    CandidateJson {
        upstream: name.into(),
        jurisdiction: jurisdiction.into(),
        ..CandidateJson::default()
    }
}

/// Candidates `a` (us), `b` (eu) and `c` (us), ids 0 to 2, and their catalog:
/// one shared catalog, so a policy's pool stays warm across calls.
static ABC: LazyLock<(Arc<Catalog>, Vec<Candidate>)> = LazyLock::new(|| {
    json::candidates(&[
        candidate("a", "us"),
        candidate("b", "eu"),
        candidate("c", "us"),
    ])
});

fn catalog() -> Arc<Catalog> {
    ABC.0.clone()
}

fn candidates() -> Vec<Candidate> {
    ABC.1.clone()
}

/// The upstream names of a plan's targets (ids in [`catalog`]).
fn targets(decision: &Decision) -> Vec<String> {
    targets_in(&catalog(), decision)
}

fn targets_in(catalog: &Catalog, decision: &Decision) -> Vec<String> {
    match decision {
        Decision::Route(plan) => plan
            .targets
            .iter()
            .map(|&id| catalog.upstream_name(id).into_owned())
            .collect(),
        Decision::Reject(r) => panic!("expected a route, got reject {} {}", r.status, r.code),
    }
}

/// The upstream names of a chain plan's candidates (ids in [`catalog`]).
fn plan_names(catalog: &Catalog, targets: &[Candidate]) -> Vec<String> {
    targets
        .iter()
        .map(|c| catalog.upstream_name(c.id).into_owned())
        .collect()
}

/// Runs `mode` once on a fresh policy: it must fail as `kind` within its
/// deadline + [`MARGIN`];
/// the instance is discarded, the same policy fails the same way again (nothing
/// wedged), and the same compiled policy with mode `ok` then serves.
async fn assert_mode_fails(mode: &str, extra: &[(&str, &str)], kind: PolicyErrorKind) {
    assert_mode_fails_with(mode, extra, kind, settings()).await;
}

async fn assert_mode_fails_with(
    mode: &str,
    extra: &[(&str, &str)],
    kind: PolicyErrorKind,
    settings: PolicySettings,
) {
    let engine = engine();
    let mut cfg = config(&[("mode", mode)]);
    cfg.extend(config(extra));
    let bound = settings.deadline + MARGIN;
    let policy = load(&engine, "hostile", HOSTILE, settings, cfg);
    for attempt in 0..2 {
        let started = Instant::now();
        let err = policy
            .decide(&request(), &catalog(), &candidates())
            .await
            .expect_err("the hostile mode must fail");
        let elapsed = started.elapsed();
        assert_eq!(err.kind, kind, "mode {mode}: {err}");
        assert_eq!(&*err.policy, "hostile");
        assert!(!err.message.is_empty());
        assert!(elapsed < bound, "mode {mode} took {elapsed:?}");
        assert_eq!(
            policy.pool_stats().discarded,
            attempt + 1,
            "the failed instance is discarded"
        );
        assert_eq!(policy.pool_stats().idle, 0);
    }
    let healthy = policy.with_config(config(&[("mode", "ok")]));
    let decision = healthy
        .decide(&request(), &catalog(), &candidates())
        .await
        .expect("mode ok after a failure");
    assert_eq!(targets(&decision), ["a", "b", "c"]);
}

#[tokio::test]
async fn an_infinite_loop_ends_at_its_deadline() {
    assert_mode_fails("loop", &[], PolicyErrorKind::Deadline).await;
}

/// A guest waiting in WASI (an hour's sleep) runs no code for the epoch
/// deadline to stop: the host's timer ends the call at its deadline instead.
#[tokio::test]
async fn a_sleep_in_wasi_ends_at_its_deadline() {
    assert_mode_fails("sleep", &[], PolicyErrorKind::Deadline).await;
}

/// The epoch ticker parks while no policy runs; the first call after a quiet
/// spell must wake it, or a loop would never be stopped.
#[tokio::test]
async fn an_infinite_loop_after_a_quiet_spell_ends_at_its_deadline() {
    let engine = engine();
    let policy = load(
        &engine,
        "hostile",
        HOSTILE,
        settings(),
        config(&[("mode", "loop")]),
    );
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let started = Instant::now();
        let err = policy
            .decide(&request(), &catalog(), &candidates())
            .await
            .expect_err("the loop must be stopped");
        assert_eq!(err.kind, PolicyErrorKind::Deadline, "{err}");
        let elapsed = started.elapsed();
        assert!(elapsed < settings().deadline + MARGIN, "took {elapsed:?}");
    }
}

#[tokio::test]
async fn a_busy_wait_past_the_deadline_is_a_deadline_error() {
    assert_mode_fails("slow", &[("ms", "500")], PolicyErrorKind::Deadline).await;
}

#[tokio::test]
async fn unbounded_allocation_is_a_memory_error() {
    // A deadline long enough that only the memory cap can stop it.
    let settings = PolicySettings {
        deadline: Duration::from_millis(1500),
        memory_limit_bytes: 32 << 20,
        ..settings()
    };
    assert_mode_fails_with("grow", &[], PolicyErrorKind::Memory, settings).await;
}

#[tokio::test]
async fn unbounded_recursion_is_a_trap() {
    assert_mode_fails("recurse", &[], PolicyErrorKind::Trap).await;
}

#[tokio::test]
async fn an_explicit_trap_is_a_trap() {
    assert_mode_fails("trap", &[], PolicyErrorKind::Trap).await;
}

#[tokio::test]
async fn a_plan_with_100k_targets_is_invalid() {
    assert_mode_fails_with("huge-plan", &[], PolicyErrorKind::InvalidDecision, roomy()).await;
}

#[tokio::test]
async fn a_10_mb_reason_is_invalid() {
    assert_mode_fails_with(
        "huge-string",
        &[],
        PolicyErrorKind::InvalidDecision,
        roomy(),
    )
    .await;
}

/// Building 100k strings or 10 MB takes a while on a busy machine: a deadline
/// that only an invalid decision can fail.
fn roomy() -> PolicySettings {
    PolicySettings {
        deadline: Duration::from_millis(1500),
        ..settings()
    }
}

#[tokio::test]
async fn a_plan_naming_an_unknown_upstream_is_invalid() {
    assert_mode_fails("unknown", &[], PolicyErrorKind::InvalidDecision).await;
}

#[tokio::test]
async fn a_reject_with_status_200_is_invalid() {
    assert_mode_fails("bad-status", &[], PolicyErrorKind::InvalidDecision).await;
}

#[tokio::test]
async fn a_slow_policy_within_its_deadline_succeeds() {
    let engine = engine();
    let settings = PolicySettings {
        deadline: Duration::from_millis(2000),
        ..settings()
    };
    let policy = load(
        &engine,
        "hostile",
        HOSTILE,
        settings,
        config(&[("mode", "slow"), ("ms", "20")]),
    );
    let started = Instant::now();
    let decision = policy
        .decide(&request(), &catalog(), &candidates())
        .await
        .expect("slow but in time");
    // now-ms has millisecond granularity: a 20 ms wait lasts at least 19 ms.
    assert!(
        started.elapsed() >= Duration::from_millis(19),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(targets(&decision), ["a", "b", "c"]);
}

#[tokio::test]
async fn invalid_decisions_say_what_is_wrong() {
    let engine = engine();
    let unknown = hostile(&engine, "unknown", settings());
    let err = unknown
        .decide(&request(), &catalog(), &candidates())
        .await
        .unwrap_err();
    assert_eq!(err.kind, PolicyErrorKind::InvalidDecision);
    assert!(
        err.message
            .contains("target 4294967295 is not the id of a candidate"),
        "{err}"
    );
    // A plan naming a candidate of the catalog that this stage was not given.
    let by_id = load(
        &engine,
        "hostile",
        HOSTILE,
        settings(),
        config(&[("mode", "id"), ("id", "2")]),
    );
    let err = by_id
        .decide(&request(), &catalog(), &candidates()[..2])
        .await
        .unwrap_err();
    assert!(err.message.contains("target 2 is not"), "{err}");
    assert_eq!(
        targets(
            &by_id
                .decide(&request(), &catalog(), &candidates())
                .await
                .unwrap()
        ),
        ["c"]
    );

    let bad = hostile(&engine, "bad-status", settings());
    let err = bad
        .decide(&request(), &catalog(), &candidates())
        .await
        .unwrap_err();
    assert!(err.message.contains("200"), "{err}");
}

#[tokio::test]
async fn asking_for_an_offer_never_given_is_a_trap() {
    let policy = hostile(&engine(), "bad-offer", settings());
    let err = policy
        .decide(&request(), &catalog(), &candidates())
        .await
        .unwrap_err();
    assert_eq!(err.kind, PolicyErrorKind::Trap, "{err}");
    assert!(err.message.contains("offer-of(4294967295)"), "{err}");
}

#[tokio::test]
async fn a_policy_reads_each_candidates_live_state_on_request() {
    let policy = hostile(&engine(), "live-state", settings());
    let mut candidates = candidates();
    for (candidate, (in_flight, latency)) in
        candidates.iter_mut().zip([(5, 100.0), (1, 40.5), (3, 0.0)])
    {
        candidate.state.in_flight = in_flight;
        candidate.state.latency_ewma_ms = latency;
    }
    let decision = policy
        .decide(&request(), &catalog(), &candidates)
        .await
        .expect("decision");
    assert_eq!(targets(&decision), ["b", "c", "a"]);
    let Decision::Route(plan) = decision else {
        unreachable!()
    };
    // Each id's own state, and none for an id the call was not given.
    assert_eq!(plan.reason, "1:1:40.5 2:3:0 0:5:100 unknown:none");
}

/// A finished request, as the gateway reports it to `observe`.
fn outcome() -> Outcome {
    Outcome {
        request_id: "req-1".into(),
        route: "chat".into(),
        tenant: None,
        model: "gpt-4o".into(),
        upstream: Some("a".into()),
        status: 200,
        attempts: 1,
        latency_ms: 12,
        time_to_first_token_ms: Some(5),
        tokens_in: 10,
        tokens_out: 20,
        cost_usd: 0.001,
    }
}

#[tokio::test]
async fn a_trapping_observe_is_a_trap_and_a_quiet_one_succeeds() {
    let engine = engine();
    let outcome = outcome();
    let policy = hostile(&engine, "observe-trap", settings());
    assert!(policy.observes());
    let err = policy.observe(&outcome).await.unwrap_err();
    assert_eq!(err.kind, PolicyErrorKind::Trap);
    hostile(&engine, "ok", settings())
        .observe(&outcome)
        .await
        .expect("observe");

    // A policy on the SDK's default `observe` says it ignores outcomes on its
    // first call (`host.ignore-outcomes`); after that no instance is touched.
    let cost = load(&engine, "cost", COST, settings(), BTreeMap::new());
    assert!(cost.observes());
    cost.observe(&outcome).await.expect("observe");
    assert!(!cost.observes());
    let used = cost.pool_stats();
    for _ in 0..3 {
        cost.observe(&outcome).await.expect("observe");
    }
    assert_eq!(cost.pool_stats(), used, "no instance was checked out");
    // The same code with another config is another policy, which asks again.
    assert!(cost.with_config(BTreeMap::new()).observes());
}

/// `observe` runs under the same deadline as `decide`, also when the guest
/// waits in WASI: a sleeping `observe` must not hold the observe worker.
#[tokio::test]
async fn a_sleeping_observe_ends_at_its_deadline() {
    let policy = hostile(&engine(), "observe-sleep", settings());
    let started = Instant::now();
    let err = policy.observe(&outcome()).await.unwrap_err();
    assert_eq!(err.kind, PolicyErrorKind::Deadline, "{err}");
    assert!(started.elapsed() < settings().deadline + MARGIN);
    assert_eq!(policy.pool_stats().discarded, 1);
}

/// A looping policy yields to the runtime every epoch tick: on a
/// single-threaded runtime another task keeps running while it spins.
#[tokio::test(flavor = "current_thread")]
async fn a_looping_policy_does_not_stall_other_tasks() {
    let engine = engine();
    let settings = PolicySettings {
        deadline: Duration::from_millis(300),
        ..settings()
    };
    let policy = hostile(&engine, "loop", settings);
    let ticks = Arc::new(AtomicU64::new(0));
    let counter = ticks.clone();
    let ticker = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(1)).await;
            counter.fetch_add(1, Ordering::Relaxed);
        }
    });
    let started = Instant::now();
    let err = policy
        .decide(&request(), &catalog(), &candidates())
        .await
        .unwrap_err();
    let elapsed = started.elapsed();
    ticker.abort();
    assert_eq!(err.kind, PolicyErrorKind::Deadline);
    assert!(
        elapsed >= Duration::from_millis(300) && elapsed < Duration::from_millis(300) + MARGIN,
        "{elapsed:?}"
    );
    let ticks = ticks.load(Ordering::Relaxed);
    assert!(
        ticks >= 20,
        "the other task ran only {ticks} times during a 300 ms loop"
    );
}
