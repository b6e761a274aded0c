//! Decision validation: a decision as a guest returns it (plan targets are
//! candidate ids) against the ids of the candidates a stage was given. A plan
//! accepted by the validator lists each candidate at most once, and the
//! positions it returns point at them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde::Deserialize;
use switchyard::policy::json::LiveStateJson;
use switchyard::policy::types::{Candidate, Decision, Plan, Rejection, RetryOn};
use switchyard::policy::validate_decision;

#[derive(Deserialize)]
struct Input {
    /// Ids of the candidates the stage was given, in order.
    given: Vec<u32>,
    decision: RawDecision,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum RawDecision {
    Route {
        targets: Vec<u32>,
        reason: String,
    },
    Reject {
        status: u16,
        code: String,
        message: String,
    },
}

fn candidate(id: u32) -> Candidate {
    // A healthy upstream with no history: the JSON shape's defaults.
    Candidate {
        id,
        state: LiveStateJson::default().into(),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(input) = serde_json::from_slice::<Input>(data) else {
        return;
    };
    let candidates: Vec<Candidate> = input.given.iter().copied().map(candidate).collect();
    let decision = match input.decision {
        RawDecision::Route { targets, reason } => Decision::Route(Plan {
            targets,
            retry_on: RetryOn::all(),
            reason,
        }),
        RawDecision::Reject {
            status,
            code,
            message,
        } => Decision::Reject(Rejection {
            status,
            code,
            message,
        }),
    };
    let Ok(positions) = validate_decision(&decision, &candidates) else {
        return;
    };
    match &decision {
        Decision::Route(plan) => {
            assert_eq!(positions.len(), plan.targets.len());
            let mut seen = positions.clone();
            seen.sort_unstable();
            seen.dedup();
            assert_eq!(seen.len(), positions.len(), "a target appears twice");
            for (&target, &at) in plan.targets.iter().zip(&positions) {
                assert_eq!(candidates[at].id, target);
            }
        }
        Decision::Reject(rejection) => {
            assert!(positions.is_empty());
            assert!(
                (400..=599).contains(&rejection.status),
                "{}",
                rejection.status
            );
        }
    }
});
