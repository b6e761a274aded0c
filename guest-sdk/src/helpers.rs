//! Small conveniences on the generated WIT types: candidate facts, prices,
//! plan and rejection builders.

use crate::cache;
use crate::{Candidate, Decision, Health, LiveState, Offer, Plan, Rejection, Request, RetryOn};

impl Candidate {
    /// The candidate's fixed facts: upstream name, provider, region,
    /// jurisdiction, tags, provider-side model and prices. Read from the host
    /// the first time an id is seen, then kept for the instance's life (the
    /// facts behind an id never change while an instance lives).
    pub fn offer(&self) -> &'static Offer {
        cache::offer(self.id)
    }

    /// True when the upstream is usable now: health `healthy` or `degraded`
    /// (`cooling-down` and `unhealthy` are not).
    pub fn is_healthy(&self) -> bool {
        matches!(self.health, Health::Healthy | Health::Degraded)
    }

    /// The candidate's whole live state (latency, requests in flight, error
    /// rate, cooldown, rate limits) for this call of `decide`. Asks the host on
    /// every call: read it only in rules that use more than the health.
    pub fn live_state(&self, req: &Request) -> LiveState {
        req.live_state(self.id)
            .expect("the host knows the live state of every candidate it passed")
    }
}

/// The tokens a request is expected to use, for pricing candidates: read from
/// the request once, then applied to each candidate with [`Tokens::cost`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tokens {
    /// Estimated input tokens.
    pub input: u32,
    /// Output tokens: the client's `max_output_tokens`, or a default.
    pub output: u32,
}

impl Tokens {
    /// The request's input estimate and `max_output_tokens`, or
    /// `default_output_tokens` when the client set none.
    pub fn of(req: &Request, default_output_tokens: u32) -> Tokens {
        Tokens {
            input: req.input_tokens_estimate(),
            output: req.max_output_tokens().unwrap_or(default_output_tokens),
        }
    }

    /// The estimated price in USD at `offer`'s prices:
    /// `(input × input_per_mtok + output × output_per_mtok) / 1e6`.
    pub fn cost(&self, offer: &Offer) -> f64 {
        (f64::from(self.input) * offer.input_per_mtok
            + f64::from(self.output) * offer.output_per_mtok)
            / 1_000_000.0
    }
}

/// Something that names a plan target: a candidate or a candidate id.
pub trait IntoTarget {
    /// The candidate id to put in the plan.
    fn into_target(self) -> u32;
}

impl IntoTarget for u32 {
    fn into_target(self) -> u32 {
        self
    }
}

impl IntoTarget for &u32 {
    fn into_target(self) -> u32 {
        *self
    }
}

impl IntoTarget for Candidate {
    fn into_target(self) -> u32 {
        self.id
    }
}

impl IntoTarget for &Candidate {
    fn into_target(self) -> u32 {
        self.id
    }
}

impl IntoTarget for &&Candidate {
    fn into_target(self) -> u32 {
        self.id
    }
}

impl Decision {
    /// Routes to `targets` in order (candidates or their ids), moving on to the
    /// next one after the failures in `retry_on`.
    ///
    /// `Decision::route(&candidates, RetryOn::all(), "as given")` passes the
    /// candidates through unchanged.
    pub fn route<I>(targets: I, retry_on: RetryOn, reason: impl Into<String>) -> Decision
    where
        I: IntoIterator,
        I::Item: IntoTarget,
    {
        Decision::Route(Plan {
            targets: targets.into_iter().map(IntoTarget::into_target).collect(),
            retry_on,
            reason: reason.into(),
        })
    }

    /// Refuses the request with an HTTP `status` (400 to 599), a machine-readable
    /// `code` and a `message` for the client.
    pub fn reject(status: u16, code: impl Into<String>, message: impl Into<String>) -> Decision {
        Decision::Reject(Rejection {
            status,
            code: code.into(),
            message: message.into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ProviderKind;

    fn candidate(id: u32, health: Health) -> Candidate {
        Candidate { id, health }
    }

    fn offer() -> Offer {
        Offer {
            upstream: "azure-eastus".into(),
            provider: ProviderKind::AzureOpenai,
            region: "eastus".into(),
            jurisdiction: "us".into(),
            tags: Vec::new(),
            upstream_model: "gpt4o-prod".into(),
            input_per_mtok: 2.5,
            output_per_mtok: 10.0,
        }
    }

    #[test]
    fn healthy_and_degraded_are_usable() {
        assert!(candidate(0, Health::Healthy).is_healthy());
        assert!(candidate(0, Health::Degraded).is_healthy());
        assert!(!candidate(0, Health::CoolingDown).is_healthy());
        assert!(!candidate(0, Health::Unhealthy).is_healthy());
    }

    #[test]
    fn cost_is_per_million_tokens() {
        // 300 × 2.5 + 500 × 10 = 5750 per million.
        let tokens = Tokens {
            input: 300,
            output: 500,
        };
        assert!((tokens.cost(&offer()) - 0.00575).abs() < 1e-12);
    }

    #[test]
    fn route_accepts_candidates_and_ids() {
        let candidates = vec![candidate(4, Health::Healthy), candidate(2, Health::Healthy)];
        let expected = Decision::Route(Plan {
            targets: vec![4, 2],
            retry_on: RetryOn::all(),
            reason: "as given".into(),
        });
        assert_eq!(
            Decision::route(&candidates, RetryOn::all(), "as given"),
            expected
        );
        assert_eq!(
            Decision::route([4, 2], RetryOn::all(), "as given"),
            expected
        );
        let refs: Vec<&Candidate> = candidates.iter().collect();
        assert_eq!(Decision::route(&refs, RetryOn::all(), "as given"), expected);
        assert_eq!(Decision::route(refs, RetryOn::all(), "as given"), expected);
        assert_eq!(
            Decision::route(candidates, RetryOn::all(), "as given"),
            expected
        );
    }

    #[test]
    fn retry_on_all_has_every_failure_kind() {
        let all = RetryOn::all();
        for flag in [
            RetryOn::CONNECT_ERROR,
            RetryOn::TIMEOUT,
            RetryOn::RATE_LIMITED,
            RetryOn::SERVER_ERROR,
        ] {
            assert!(all.contains(flag));
        }
    }

    #[test]
    fn reject_builds_a_rejection() {
        assert_eq!(
            Decision::reject(403, "residency_violation", "no EU upstream"),
            Decision::Reject(Rejection {
                status: 403,
                code: "residency_violation".into(),
                message: "no EU upstream".into(),
            })
        );
    }
}
