//! Small conveniences on the generated WIT types.

use crate::{Candidate, Decision, Health, Plan, Rejection, Request, RetryOn};

impl Request {
    /// The value of header `name` (compared case-insensitively); the first one
    /// when the client sent it several times.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The value of the matched route's label `key` (compared exactly).
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, value)| value.as_str())
    }
}

impl Candidate {
    /// True when the upstream is usable now: health `healthy` or `degraded`
    /// (`cooling-down` and `unhealthy` are not).
    pub fn is_healthy(&self) -> bool {
        matches!(self.state.health, Health::Healthy | Health::Degraded)
    }
}

/// The estimated price in USD of serving `req` on `candidate`:
/// `input_tokens_estimate × input_per_mtok + output tokens × output_per_mtok`,
/// per million tokens, where the output tokens are the request's
/// `max_output_tokens`, or `default_output_tokens` when the client set none.
pub fn estimated_cost(req: &Request, candidate: &Candidate, default_output_tokens: u32) -> f64 {
    let output_tokens = req.max_output_tokens.unwrap_or(default_output_tokens);
    (f64::from(req.input_tokens_estimate) * candidate.input_per_mtok
        + f64::from(output_tokens) * candidate.output_per_mtok)
        / 1_000_000.0
}

/// Something that names a plan target: an upstream name or a candidate.
pub trait IntoTarget {
    /// The upstream name to put in the plan.
    fn into_target(self) -> String;
}

impl IntoTarget for String {
    fn into_target(self) -> String {
        self
    }
}

impl IntoTarget for &String {
    fn into_target(self) -> String {
        self.clone()
    }
}

impl IntoTarget for &str {
    fn into_target(self) -> String {
        self.to_owned()
    }
}

impl IntoTarget for Candidate {
    fn into_target(self) -> String {
        self.upstream
    }
}

impl IntoTarget for &Candidate {
    fn into_target(self) -> String {
        self.upstream.clone()
    }
}

impl Decision {
    /// Routes to `targets` in order (candidates or upstream names), moving on to
    /// the next one after the failures in `retry_on`.
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
    use crate::{LiveState, ProviderKind};

    fn request() -> Request {
        Request {
            id: "req-1".into(),
            method: "POST".into(),
            path: "/v1/chat/completions".into(),
            model: "gpt-4o".into(),
            streaming: false,
            tenant: None,
            headers: vec![
                ("x-data-residency".into(), "eu".into()),
                ("x-team".into(), "a".into()),
                ("x-team".into(), "b".into()),
            ],
            body_bytes: 1200,
            input_tokens_estimate: 300,
            max_output_tokens: Some(500),
            route: "chat".into(),
            labels: vec![("team".into(), "search".into())],
        }
    }

    fn candidate(upstream: &str, health: Health) -> Candidate {
        Candidate {
            upstream: upstream.into(),
            provider: ProviderKind::AzureOpenai,
            region: "eastus".into(),
            jurisdiction: "us".into(),
            tags: Vec::new(),
            upstream_model: "gpt4o-prod".into(),
            input_per_mtok: 2.5,
            output_per_mtok: 10.0,
            state: LiveState {
                health,
                latency_ewma_ms: 0.0,
                in_flight: 0,
                error_rate: 0.0,
                cooldown_remaining_ms: 0,
                ratelimit_remaining_requests: None,
                ratelimit_remaining_tokens: None,
            },
        }
    }

    #[test]
    fn header_lookup_ignores_name_case_and_takes_the_first() {
        let req = request();
        assert_eq!(req.header("X-Data-Residency"), Some("eu"));
        assert_eq!(req.header("x-team"), Some("a"));
        assert_eq!(req.header("x-missing"), None);
    }

    #[test]
    fn label_lookup_is_exact() {
        let req = request();
        assert_eq!(req.label("team"), Some("search"));
        assert_eq!(req.label("Team"), None);
    }

    #[test]
    fn healthy_and_degraded_are_usable() {
        assert!(candidate("a", Health::Healthy).is_healthy());
        assert!(candidate("a", Health::Degraded).is_healthy());
        assert!(!candidate("a", Health::CoolingDown).is_healthy());
        assert!(!candidate("a", Health::Unhealthy).is_healthy());
    }

    #[test]
    fn cost_uses_max_output_tokens_then_the_default() {
        let mut req = request();
        let c = candidate("a", Health::Healthy);
        // 300 × 2.5 + 500 × 10 = 5750 per million.
        assert!((estimated_cost(&req, &c, 256) - 0.00575).abs() < 1e-12);
        req.max_output_tokens = None;
        // 300 × 2.5 + 256 × 10 = 3310 per million.
        assert!((estimated_cost(&req, &c, 256) - 0.00331).abs() < 1e-12);
    }

    #[test]
    fn route_accepts_candidates_and_names() {
        let candidates = vec![
            candidate("a", Health::Healthy),
            candidate("b", Health::Healthy),
        ];
        let expected = Decision::Route(Plan {
            targets: vec!["a".into(), "b".into()],
            retry_on: RetryOn::all(),
            reason: "as given".into(),
        });
        assert_eq!(
            Decision::route(&candidates, RetryOn::all(), "as given"),
            expected
        );
        assert_eq!(
            Decision::route(["a", "b"], RetryOn::all(), "as given"),
            expected
        );
        let refs: Vec<&Candidate> = candidates.iter().collect();
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
