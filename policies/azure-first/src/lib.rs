//! `azure-first`: Azure OpenAI candidates first, everything else after.
//!
//! - Azure OpenAI candidates come first: the usable ones (health `healthy` or
//!   `degraded`) before the others (`cooling-down`, `unhealthy`), each group in
//!   candidate order.
//! - Every other candidate follows, in candidate order, whatever its health.
//! - Nothing is dropped; no candidates gives an empty plan (503 `no_route`).
//! - The gateway moves on to the next target after a connect error, a timeout,
//!   a 429, a 5xx, or a 401/403/404 (see `retry-on` in the WIT).

use switchyard_policy::{
    Candidate, Decision, Policy, ProviderKind, Request, RetryOn, export_policy,
};

struct AzureFirst;

impl Policy for AzureFirst {
    fn decide(_req: &Request, candidates: Vec<Candidate>) -> Decision {
        let (azure, others): (Vec<&Candidate>, Vec<&Candidate>) = candidates
            .iter()
            .partition(|c| c.offer().provider == ProviderKind::AzureOpenai);
        let (usable, unusable): (Vec<&Candidate>, Vec<&Candidate>) =
            azure.into_iter().partition(|c| c.is_healthy());
        let reason = format!(
            "azure first: {} usable + {} unusable azure, then {} other",
            usable.len(),
            unusable.len(),
            others.len()
        );
        let plan = usable.into_iter().chain(unusable).chain(others);
        Decision::route(plan, RetryOn::all(), reason)
    }
}

export_policy!(AzureFirst);
