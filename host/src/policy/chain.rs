//! The chain runner: a route's policies applied in order. Each stage gets the
//! previous stage's plan as its candidates and may drop, reorder or reject, never
//! add (the decision is validated against the candidates the stage was given).

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::HeaderValue;

use crate::config::OnError;

use super::error::{PolicyError, PolicyErrorKind};
use super::loaded::Policy;
use super::types::{Candidate, Decision, Rejection, RetryOn};

/// The reason given when a route has no policies.
pub const CONFIG_ORDER_REASON: &str = "config order";

/// Told about every stage a chain runs (the gateway records metrics with it).
pub trait StageObserver {
    /// `policy` finished after `elapsed`, failing with `error` if it did (a
    /// fail-open stage that failed is reported too).
    fn stage_finished(&self, policy: &Policy, elapsed: Duration, error: Option<PolicyErrorKind>);
}

/// Observes nothing.
impl StageObserver for () {
    fn stage_finished(
        &self,
        _policy: &Policy,
        _elapsed: Duration,
        _error: Option<PolicyErrorKind>,
    ) {
    }
}

/// The final plan of a chain.
#[derive(Debug, Clone)]
pub struct RoutePlan {
    /// The candidates to try, in order. May be empty (the gateway answers 503 `no_route`).
    pub targets: Vec<Candidate>,
    /// The failures that allow the next target, from the last stage that routed.
    pub retry_on: RetryOn,
    /// Each stage's reason, in order, with the stage's name; see
    /// [`RoutePlan::reason`].
    pub reasons: Vec<(Arc<str>, String)>,
}

impl RoutePlan {
    /// The stages' reasons as `name: reason`, joined with `; ` (made on demand:
    /// the request path does not need it).
    pub fn reason(&self) -> String {
        if self.reasons.is_empty() {
            return CONFIG_ORDER_REASON.to_owned();
        }
        let mut out = String::new();
        for (i, (policy, reason)) in self.reasons.iter().enumerate() {
            if i > 0 {
                out.push_str("; ");
            }
            out.push_str(policy);
            out.push_str(": ");
            out.push_str(reason);
        }
        out
    }
}

/// What a chain decided.
#[derive(Debug, Clone)]
pub enum ChainOutcome {
    /// Serve the request with this plan.
    Route(RoutePlan),
    /// A stage refused the request.
    Reject {
        /// The stage that refused.
        policy: Arc<str>,
        /// Its rejection (already validated).
        rejection: Rejection,
    },
    /// A fail-closed stage failed: the gateway answers 503 `policy_error`.
    Failed(PolicyError),
}

/// An ordered list of policies, with the `x-switchyard-policy` header value
/// precomputed.
#[derive(Debug, Clone)]
pub struct Chain {
    stages: Vec<Arc<Policy>>,
    header: String,
    /// `header` as a header value; `None` for an empty chain.
    stamp: Option<HeaderValue>,
}

impl Chain {
    /// A chain running `stages` in order; an empty chain routes to every
    /// candidate in config order.
    pub fn new(stages: Vec<Arc<Policy>>) -> Chain {
        let header = stages
            .iter()
            .map(|p| format!("{}@{}", p.name(), p.hash8()))
            .collect::<Vec<_>>()
            .join(",");
        // Config validation keeps policy names to letters, digits, '-', '_' and
        // '.', and hashes are hex, so the value parses; a policy loaded by other
        // means with another name gets no header rather than a broken one. An
        // empty chain says so with an empty value.
        let stamp = HeaderValue::from_str(&header).ok();
        Chain {
            stages,
            header,
            stamp,
        }
    }

    /// The stages, in order.
    pub fn stages(&self) -> &[Arc<Policy>] {
        &self.stages
    }

    /// `name@hash8,name@hash8`: the `x-switchyard-policy` header; empty for an empty chain.
    pub fn header_value(&self) -> &str {
        &self.header
    }

    /// [`Chain::header_value`] made into a header value once (empty for an
    /// empty chain).
    pub fn stamp(&self) -> Option<&HeaderValue> {
        self.stamp.as_ref()
    }

    /// Runs the chain for one request; `candidates` are numbered against `catalog`.
    pub async fn run(
        &self,
        req: &Arc<super::types::Request>,
        catalog: &Arc<super::Catalog>,
        candidates: Vec<Candidate>,
        observer: &impl StageObserver,
    ) -> ChainOutcome {
        let mut current = candidates;
        let mut retry_on = RetryOn::all();
        let mut reasons = Vec::with_capacity(self.stages.len());
        // One clock read a stage: each stage starts when the one before ended.
        let mut started = Instant::now();
        for stage in &self.stages {
            let result = stage.decide_indexed(req, catalog, &current, started).await;
            let ended = Instant::now();
            observer.stage_finished(
                stage,
                ended - started,
                result.as_ref().err().map(|e| e.kind),
            );
            started = ended;
            match result {
                Ok((Decision::Route(plan), positions)) => {
                    current = pick(current, &positions);
                    retry_on = plan.retry_on;
                    reasons.push((stage.name_arc().clone(), plan.reason));
                }
                Ok((Decision::Reject(rejection), _)) => {
                    return ChainOutcome::Reject {
                        policy: stage.name_arc().clone(),
                        rejection,
                    };
                }
                Err(err) => match stage.settings().on_error {
                    OnError::FailClosed => return ChainOutcome::Failed(err),
                    OnError::FailOpen => {
                        tracing::debug!(policy = stage.name(), error = %err, "fail-open policy skipped");
                        reasons.push((stage.name_arc().clone(), format!("skipped ({})", err.kind)));
                    }
                },
            }
        }
        ChainOutcome::Route(RoutePlan {
            targets: current,
            retry_on,
            reasons,
        })
    }
}

/// The candidates at `positions` (distinct, validated), in that order.
fn pick(candidates: Vec<Candidate>, positions: &[usize]) -> Vec<Candidate> {
    let mut slots: Vec<Option<Candidate>> = candidates.into_iter().map(Some).collect();
    positions
        .iter()
        .filter_map(|&i| slots.get_mut(i).and_then(Option::take))
        .collect()
}
