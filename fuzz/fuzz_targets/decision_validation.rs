//! Decision validation: a decision (as the JSON of `policy eval`) against
//! candidates (given, or the sample set). A plan accepted by the validator names
//! each candidate at most once, and the positions it returns point at them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde::Deserialize;
use switchyard::policy::json::{CandidateJson, DecisionJson};
use switchyard::policy::types::{Candidate, Decision};
use switchyard::policy::{samples, validate_decision};

#[derive(Deserialize)]
struct Input {
    decision: DecisionJson,
    candidates: Option<Vec<CandidateJson>>,
}

fuzz_target!(|data: &[u8]| {
    let Ok(input) = serde_json::from_slice::<Input>(data) else {
        return;
    };
    let candidates: Vec<Candidate> = match input.candidates {
        Some(list) => list.into_iter().map(Candidate::from).collect(),
        None => samples::candidates(),
    };
    let decision = Decision::from(input.decision);
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
            for (target, &at) in plan.targets.iter().zip(&positions) {
                assert_eq!(&candidates[at].upstream, target);
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
