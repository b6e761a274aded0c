//! Instance lifecycle and loading: pools, recycling, isolation, counters across
//! reloads, the compile cache, load errors, concurrency.

use super::*;

#[tokio::test]
async fn warm_instances_are_reused_and_bounded() {
    let engine = engine();
    let pooled = PolicySettings {
        pool_size: 2,
        ..settings()
    };
    let policy = hostile(&engine, "ok", pooled);
    for _ in 0..50 {
        policy
            .decide(&request(), &catalog(), &candidates())
            .await
            .unwrap();
    }
    let stats = policy.pool_stats();
    assert_eq!((stats.created, stats.idle), (1, 1), "{stats:?}");

    // Concurrent calls need more instances; only `pool_size` stay warm.
    let calls = (0..8).map(|_| {
        let policy = policy.clone();
        tokio::spawn(async move { policy.decide(&request(), &catalog(), &candidates()).await })
    });
    for call in futures_util::future::join_all(calls).await {
        call.unwrap().unwrap();
    }
    let stats = policy.pool_stats();
    assert!(stats.created <= 9, "{stats:?}");
    assert!(stats.idle <= 2, "{stats:?}");
}

/// An instance serves one catalog for its life, because guests keep offers by
/// id: a call with another catalog retires the warm instance, and the new one
/// reads the new offers (the Rust SDK's cache would otherwise answer with the
/// old ones).
#[tokio::test]
async fn a_new_catalog_retires_instances_that_kept_the_old_offers() {
    let engine = engine();
    let cost = load(&engine, "cost", COST, settings(), BTreeMap::new());
    let priced = |name: &str, price: f64| CandidateJson {
        upstream: name.into(),
        input_per_mtok: price,
        output_per_mtok: price,
        ..CandidateJson::default()
    };
    let (old, cands) = json::candidates(&[priced("a", 1.0), priced("b", 2.0)]);
    let decision = cost.decide(&request(), &old, &cands).await.unwrap();
    assert_eq!(targets_in(&old, &decision), ["a", "b"]);
    assert_eq!(
        cost.decide(&request(), &old, &cands).await.unwrap(),
        decision
    );
    assert_eq!(
        (cost.pool_stats().created, cost.pool_stats().discarded),
        (1, 0)
    );

    // Same ids, other facts: `a` is now the dearer one.
    let (new, cands) = json::candidates(&[priced("a", 3.0), priced("b", 2.0)]);
    let decision = cost.decide(&request(), &new, &cands).await.unwrap();
    assert_eq!(targets_in(&new, &decision), ["b", "a"]);
    let stats = cost.pool_stats();
    assert_eq!((stats.created, stats.discarded), (2, 1), "{stats:?}");
}

#[tokio::test]
async fn instances_are_recycled_after_max_uses() {
    let engine = engine();
    let recycle = PolicySettings {
        max_uses: 3,
        ..settings()
    };
    let policy = hostile(&engine, "ok", recycle);
    for _ in 0..10 {
        policy
            .decide(&request(), &catalog(), &candidates())
            .await
            .unwrap();
    }
    let stats = policy.pool_stats();
    assert_eq!((stats.created, stats.recycled), (4, 3), "{stats:?}");
}

#[tokio::test]
async fn per_request_isolation_uses_a_fresh_instance_every_call() {
    let engine = engine();
    let isolated = PolicySettings {
        isolation: Isolation::PerRequest,
        ..settings()
    };
    let policy = hostile(&engine, "ok", isolated);
    for _ in 0..5 {
        policy
            .decide(&request(), &catalog(), &candidates())
            .await
            .unwrap();
    }
    let stats = policy.pool_stats();
    assert_eq!((stats.created, stats.idle), (5, 0), "{stats:?}");
}

fn counting(engine: &PolicyEngine, name: &str) -> Arc<Policy> {
    engine
        .load(PolicySpec {
            name: name.into(),
            wasm: wat::counting_policy(true, "0.1.0").into_bytes(),
            settings: settings(),
            config: BTreeMap::new(),
        })
        .expect("the WAT policy loads")
}

#[tokio::test]
async fn counters_belong_to_the_policy_and_survive_reloads() {
    let engine = engine();
    let first = counting(&engine, "budget");
    first
        .decide(&request(), &catalog(), &candidates())
        .await
        .unwrap();
    first
        .decide(&request(), &catalog(), &candidates())
        .await
        .unwrap();
    assert_eq!(engine.counters().get("budget", "hits"), 2);

    // A reload: the same policy loaded again, the old version dropped.
    drop(first);
    let second = counting(&engine, "budget");
    let decision = second
        .decide(&request(), &catalog(), &candidates())
        .await
        .unwrap();
    assert_eq!(targets(&decision), Vec::<String>::new());
    assert_eq!(engine.counters().get("budget", "hits"), 3);

    // Another policy has counters of its own.
    counting(&engine, "other")
        .decide(&request(), &catalog(), &candidates())
        .await
        .unwrap();
    assert_eq!(engine.counters().get("other", "hits"), 1);
    assert_eq!(engine.counters().get("budget", "hits"), 3);
}

/// A reload's checks (the canary and the recorded cases) run on counters of
/// their own: they neither move a live budget nor depend on how far it went.
/// Within one run of a case file, counters carry from case to case.
#[tokio::test]
async fn reload_checks_leave_the_live_counters_alone() {
    let engine = engine();
    let policy = counting(&engine, "budget");
    policy
        .decide(&request(), &catalog(), &candidates())
        .await
        .unwrap();
    assert_eq!(engine.counters().get("budget", "hits"), 1);

    switchyard::policy::cases::canary(&policy)
        .await
        .expect("the canary decides");
    let file: switchyard::policy::cases::CaseFile = serde_json::from_value(serde_json::json!({
        "candidates": [{"upstream": "a"}],
        "cases": [
            {"name": "first", "request": {"model": "gpt-4o"}, "expect": {"route": {"targets": []}}},
            {"name": "second", "request": {"model": "gpt-4o"}, "expect": {"route": {"targets": []}}},
        ],
    }))
    .expect("a case file");
    let results = switchyard::policy::cases::run_cases(&policy, &file).await;
    assert!(results.iter().all(|r| r.passed), "{results:?}");
    assert_eq!(
        engine.counters().get("budget", "hits"),
        1,
        "the checks moved the live counter"
    );
}

#[tokio::test]
async fn the_second_load_comes_from_the_disk_cache_and_a_corrupt_entry_is_rewritten() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = std::fs::read(HOSTILE).unwrap();
    let spec = || PolicySpec {
        name: "hostile".into(),
        wasm: wasm.clone(),
        settings: settings(),
        config: config(&[("mode", "ok")]),
    };
    let engine = engine_with_cache(Some(dir.path().to_owned()));
    let cold = engine.load(spec()).unwrap();
    assert!(!cold.load_info().from_cache);
    let entry = engine.cache().unwrap().entry_path(cold.hash());
    assert!(entry.is_file(), "{} was not written", entry.display());

    // A new engine (a restart) with the same settings finds it.
    let restarted = engine_with_cache(Some(dir.path().to_owned()));
    let warm = restarted.load(spec()).unwrap();
    assert!(warm.load_info().from_cache);
    assert_eq!(
        targets(
            &warm
                .decide(&request(), &catalog(), &candidates())
                .await
                .unwrap()
        ),
        ["a", "b", "c"]
    );

    // A torn entry is ignored, the policy compiled again and the entry rewritten.
    let bytes = std::fs::read(&entry).unwrap();
    std::fs::write(&entry, &bytes[..bytes.len() / 2]).unwrap();
    let recompiled = restarted.load(spec()).unwrap();
    assert!(!recompiled.load_info().from_cache);
    assert_eq!(std::fs::read(&entry).unwrap().len(), bytes.len());
    assert!(restarted.load(spec()).unwrap().load_info().from_cache);
}

fn load_error(wasm: Vec<u8>) -> LoadError {
    engine()
        .load(PolicySpec {
            name: "bad".into(),
            wasm,
            settings: settings(),
            config: BTreeMap::new(),
        })
        .expect_err("must not load")
}

#[test]
fn load_errors_name_what_is_wrong() {
    let err = load_error(b"definitely not wasm".to_vec());
    assert!(matches!(err, LoadError::NotAComponent(_)), "{err}");

    let err = load_error(b"\0asm\x01\0\0\0".to_vec());
    assert!(err.to_string().contains("core WebAssembly module"), "{err}");

    let err = load_error(wat::counting_policy(false, "0.1.0").into_bytes());
    assert!(matches!(err, LoadError::Exports(_)), "{err}");
    assert!(err.to_string().contains("observe"), "{err}");

    let err = load_error(wat::counting_policy(true, "0.2.0").into_bytes());
    assert!(matches!(err, LoadError::Imports(_)), "{err}");
    assert!(
        err.to_string().contains("switchyard:policy/host@0.2.0"),
        "{err}"
    );

    let err = load_error(b"(component (core module (func (export \"f\") i32.add)))".to_vec());
    assert!(matches!(err, LoadError::Compile(_)), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_on_one_policy_all_succeed() {
    let engine = engine();
    let policy = hostile(&engine, "ok", settings());
    let calls = (0..64).map(|_| {
        let policy = policy.clone();
        tokio::spawn(async move { policy.decide(&request(), &catalog(), &candidates()).await })
    });
    for call in futures_util::future::join_all(calls).await {
        assert_eq!(targets(&call.unwrap().unwrap()), ["a", "b", "c"]);
    }
}
