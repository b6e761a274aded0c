use switchyard_policy::{Candidate, Decision, Policy, Request, RetryOn, export_policy};

/// EU upstreams first for requests that ask for it; otherwise the order is kept.
struct PreferEu;

impl Policy for PreferEu {
    fn decide(req: &Request, candidates: Vec<Candidate>) -> Decision {
        if req.header("x-prefer-region").as_deref() != Some("eu") {
            return Decision::route(&candidates, RetryOn::all(), "order kept");
        }
        let (eu, rest): (Vec<&Candidate>, Vec<&Candidate>) = candidates
            .iter()
            .partition(|c| c.offer().jurisdiction == "eu");
        Decision::route(eu.into_iter().chain(rest), RetryOn::all(), "eu first")
    }
}

export_policy!(PreferEu);
