//! Chains of real policies: fail-open and fail-closed stages, the "never add a
//! candidate" rule, rejects, the empty chain.

use super::*;

/// Records what a chain reports.
#[derive(Default)]
struct Recorder(Mutex<Vec<(String, Option<PolicyErrorKind>)>>);

impl StageObserver for Recorder {
    fn stage_finished(&self, policy: &Policy, _elapsed: Duration, error: Option<PolicyErrorKind>) {
        self.0
            .lock()
            .unwrap()
            .push((policy.name().to_owned(), error));
    }
}

impl Recorder {
    fn seen(&self) -> Vec<(String, Option<PolicyErrorKind>)> {
        self.0.lock().unwrap().clone()
    }
}

#[tokio::test]
async fn fail_open_skips_the_stage_and_fail_closed_stops_the_chain() {
    let engine = engine();
    let open = PolicySettings {
        on_error: OnError::FailOpen,
        ..settings()
    };
    let trap_open = load(
        &engine,
        "trap-open",
        HOSTILE,
        open,
        config(&[("mode", "trap")]),
    );
    let trap_closed = load(
        &engine,
        "trap-closed",
        HOSTILE,
        settings(),
        config(&[("mode", "trap")]),
    );
    let ok = load(
        &engine,
        "ok",
        HOSTILE,
        settings(),
        config(&[("mode", "ok")]),
    );

    let recorder = Recorder::default();
    let chain = Chain::new(vec![trap_open.clone(), ok.clone()]);
    let ChainOutcome::Route(plan) = chain
        .run(&request(), &catalog(), candidates(), &recorder)
        .await
    else {
        panic!("fail-open must route")
    };
    assert_eq!(plan_names(&catalog(), &plan.targets), ["a", "b", "c"]);
    assert!(
        plan.reason().contains("trap-open: skipped (trap)"),
        "{}",
        plan.reason()
    );
    assert!(plan.reason().contains("ok: ok"), "{}", plan.reason());
    assert_eq!(
        recorder.seen(),
        [
            ("trap-open".into(), Some(PolicyErrorKind::Trap)),
            ("ok".into(), None)
        ]
    );

    let recorder = Recorder::default();
    let chain = Chain::new(vec![trap_closed, ok]);
    match chain
        .run(&request(), &catalog(), candidates(), &recorder)
        .await
    {
        ChainOutcome::Failed(err) => {
            assert_eq!(err.kind, PolicyErrorKind::Trap);
            assert_eq!(&*err.policy, "trap-closed");
        }
        other => panic!("fail-closed must fail the chain, got {other:?}"),
    }
    assert_eq!(recorder.seen().len(), 1, "later stages do not run");

    // A chain of only fail-open failures passes the candidates through.
    let ChainOutcome::Route(plan) = Chain::new(vec![trap_open])
        .run(&request(), &catalog(), candidates(), &())
        .await
    else {
        panic!("fail-open must route")
    };
    assert_eq!(plan.targets.len(), 3);
    assert_eq!(plan.retry_on, RetryOn::all());
}

#[tokio::test]
async fn a_later_stage_cannot_route_to_a_candidate_an_earlier_stage_dropped() {
    let engine = engine();
    // Compliance keeps only EU candidates when the request demands EU residency;
    // the hostile "id" stage then names the dropped "us-1" by its id.
    let compliance = load(
        &engine,
        "compliance",
        COMPLIANCE,
        settings(),
        BTreeMap::new(),
    );
    let names_dropped = load(
        &engine,
        "hostile",
        HOSTILE,
        settings(),
        config(&[("mode", "id"), ("id", "1")]),
    );
    let mut req: RequestJson = RequestJson::default();
    req.headers.insert("x-data-residency".into(), "eu".into());
    let req: Arc<Request> = Arc::new(req.into());
    let (catalog, cands) = json::candidates(&[candidate("eu-1", "eu"), candidate("us-1", "us")]);

    // On its own, the second stage's plan is valid for these candidates.
    assert_eq!(
        targets_in(
            &catalog,
            &names_dropped.decide(&req, &catalog, &cands).await.unwrap()
        ),
        ["us-1"]
    );

    let chain = Chain::new(vec![compliance.clone(), names_dropped]);
    assert_eq!(
        chain.header_value(),
        format!(
            "compliance@{},hostile@{}",
            compliance.hash8(),
            hostile_hash8(&engine)
        )
    );
    match chain.run(&req, &catalog, cands, &()).await {
        ChainOutcome::Failed(err) => {
            assert_eq!(err.kind, PolicyErrorKind::InvalidDecision);
            assert!(err.message.contains("target 1 is not"), "{err}");
        }
        other => panic!("expected an invalid decision, got {other:?}"),
    }
}

fn hostile_hash8(engine: &PolicyEngine) -> String {
    hostile(engine, "ok", settings()).hash8().to_owned()
}

#[tokio::test]
async fn a_reject_ends_the_chain() {
    let engine = engine();
    let compliance = load(
        &engine,
        "compliance",
        COMPLIANCE,
        settings(),
        BTreeMap::new(),
    );
    let never = hostile(&engine, "trap", settings());
    let mut req = RequestJson::default();
    req.headers.insert("x-data-residency".into(), "eu".into());
    let recorder = Recorder::default();
    let (catalog, cands) = json::candidates(&[candidate("us-1", "us")]);
    let outcome = Chain::new(vec![compliance, never])
        .run(&Arc::new(req.into()), &catalog, cands, &recorder)
        .await;
    match outcome {
        ChainOutcome::Reject { policy, rejection } => {
            assert_eq!(&*policy, "compliance");
            assert_eq!(rejection.status, 403);
            assert_eq!(rejection.code, "residency_violation");
        }
        other => panic!("expected a reject, got {other:?}"),
    }
    assert_eq!(recorder.seen(), [("compliance".into(), None)]);
}

#[tokio::test]
async fn an_empty_chain_routes_in_config_order() {
    let chain = Chain::new(Vec::new());
    assert_eq!(chain.header_value(), "");
    let ChainOutcome::Route(plan) = chain.run(&request(), &catalog(), candidates(), &()).await
    else {
        panic!("an empty chain routes")
    };
    assert_eq!(plan_names(&catalog(), &plan.targets), ["a", "b", "c"]);
    assert_eq!(plan.retry_on, RetryOn::all());
    assert_eq!(plan.reason(), "config order");
}
