//! Checks a policy's decision before the host acts on it: a plan may only list
//! the ids of candidates the stage was given, each at most once; a rejection needs a real
//! error status and a code; no string may be huge.

use std::collections::HashMap;

use super::types::{Candidate, Decision};

/// Longest `reason`, `code` or `message` a decision may carry, in bytes.
pub const MAX_TEXT_BYTES: usize = 4096;

/// Candidate lists longer than this are indexed with a hash map.
const LINEAR_SCAN_MAX: usize = 32;

/// Checks `decision` against the `candidates` the policy was given. For a route,
/// returns the position in `candidates` of each target, in plan order; for a
/// reject, an empty list. The error says what is wrong.
pub fn validate_decision(
    decision: &Decision,
    candidates: &[Candidate],
) -> Result<Vec<usize>, String> {
    match decision {
        Decision::Route(plan) => {
            check_text("reason", &plan.reason)?;
            if plan.targets.len() > candidates.len() {
                return Err(format!(
                    "the plan names {} targets but the policy was given {} candidates",
                    plan.targets.len(),
                    candidates.len()
                ));
            }
            let index: Option<HashMap<u32, usize>> =
                (candidates.len() > LINEAR_SCAN_MAX).then(|| {
                    candidates
                        .iter()
                        .enumerate()
                        .rev()
                        .map(|(i, c)| (c.id, i))
                        .collect()
                });
            let mut used = vec![false; candidates.len()];
            let mut positions = Vec::with_capacity(plan.targets.len());
            for &target in &plan.targets {
                let found = match &index {
                    Some(index) => index.get(&target).copied(),
                    None => candidates.iter().position(|c| c.id == target),
                };
                let Some(i) = found else {
                    return Err(format!(
                        "target {target} is not the id of a candidate the policy was given"
                    ));
                };
                if std::mem::replace(&mut used[i], true) {
                    return Err(format!("target {target} appears more than once"));
                }
                positions.push(i);
            }
            Ok(positions)
        }
        Decision::Reject(rejection) => {
            if !(400..=599).contains(&rejection.status) {
                return Err(format!(
                    "reject status {} is outside 400..=599",
                    rejection.status
                ));
            }
            if rejection.code.is_empty() {
                return Err("reject code is empty".to_owned());
            }
            check_text("code", &rejection.code)?;
            check_text("message", &rejection.message)?;
            Ok(Vec::new())
        }
    }
}

fn check_text(field: &str, text: &str) -> Result<(), String> {
    if text.len() > MAX_TEXT_BYTES {
        return Err(format!(
            "{field} is {} bytes long; the limit is {MAX_TEXT_BYTES}",
            text.len()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::json::LiveStateJson;
    use crate::policy::types::{Plan, Rejection, RetryOn};

    fn candidate(id: u32) -> Candidate {
        Candidate {
            id,
            state: LiveStateJson::default().into(),
        }
    }

    fn route(targets: &[u32]) -> Decision {
        Decision::Route(Plan {
            targets: targets.to_vec(),
            retry_on: RetryOn::all(),
            reason: "r".to_owned(),
        })
    }

    fn reject(status: u16, code: &str) -> Decision {
        Decision::Reject(Rejection {
            status,
            code: code.to_owned(),
            message: String::new(),
        })
    }

    #[test]
    fn plans_map_to_candidate_positions() {
        let cands: Vec<_> = [7, 3, 5].into_iter().map(candidate).collect();
        assert_eq!(
            validate_decision(&route(&[5, 7]), &cands).unwrap(),
            vec![2, 0]
        );
        assert_eq!(
            validate_decision(&route(&[]), &cands).unwrap(),
            Vec::<usize>::new()
        );
    }

    #[test]
    fn bad_plans_say_what_is_wrong() {
        let cands: Vec<_> = [0, 1].into_iter().map(candidate).collect();
        let err = |d: Decision| validate_decision(&d, &cands).unwrap_err();
        assert!(err(route(&[9])).contains("target 9 is not the id of a candidate"));
        assert!(err(route(&[0, 0])).contains("more than once"));
        assert!(err(route(&[0, 1, 0])).contains("3 targets"));
        let long = Decision::Route(Plan {
            targets: vec![],
            retry_on: RetryOn::empty(),
            reason: "x".repeat(MAX_TEXT_BYTES + 1),
        });
        assert!(err(long).contains("reason is 4097 bytes"));
    }

    #[test]
    fn large_candidate_lists_use_the_index() {
        let cands: Vec<_> = (0..100).map(|i| candidate(1000 + i)).collect();
        assert_eq!(
            validate_decision(&route(&[1099, 1000]), &cands).unwrap(),
            vec![99, 0]
        );
        assert!(validate_decision(&route(&[1001, 1001]), &cands).is_err());
        assert!(validate_decision(&route(&[5]), &cands).is_err());
    }

    #[test]
    fn rejections_need_an_error_status_and_a_code() {
        assert!(validate_decision(&reject(403, "residency_violation"), &[]).is_ok());
        assert!(validate_decision(&reject(599, "x"), &[]).is_ok());
        assert!(
            validate_decision(&reject(200, "x"), &[])
                .unwrap_err()
                .contains("200")
        );
        assert!(validate_decision(&reject(600, "x"), &[]).is_err());
        assert!(
            validate_decision(&reject(403, ""), &[])
                .unwrap_err()
                .contains("code is empty")
        );
    }
}
