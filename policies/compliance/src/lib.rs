//! `compliance`: EU-bound requests may only use EU upstreams.
//!
//! - A request is EU-bound when its tenant is listed in config `eu_tenants`
//!   (comma-separated, entries trimmed, exact match; absent means no EU tenants) or
//!   when it carries the header `x-data-residency: eu` (value trimmed, any case).
//! - An EU-bound request keeps only candidates whose jurisdiction is `eu` (any case),
//!   in candidate order. When candidates were given but none is in the EU, the
//!   request is rejected: 403 `residency_violation`.
//! - Every other request passes through untouched, in the same order.
//! - No candidates at all is not a residency question: the plan is empty (503 `no_route`).
//! - The gateway moves on after a connect error, a timeout, a 429, a 5xx, or a 401/403/404 (see `retry-on` in the WIT).

use switchyard_policy::{Candidate, Decision, Policy, Request, RetryOn, export_policy, host};

struct Compliance;

impl Policy for Compliance {
    fn decide(req: &Request, candidates: Vec<Candidate>) -> Decision {
        let Some(why) = eu_bound(req) else {
            return Decision::route(&candidates, RetryOn::all(), "not EU-bound: pass-through");
        };
        if candidates.is_empty() {
            return Decision::route(&candidates, RetryOn::all(), format!("{why}: no candidates"));
        }
        let eu: Vec<&Candidate> = candidates
            .iter()
            .filter(|c| c.offer().jurisdiction.eq_ignore_ascii_case("eu"))
            .collect();
        if eu.is_empty() {
            let message = format!("{why}, but no EU upstream serves model '{}'", req.model());
            return Decision::reject(403, "residency_violation", message);
        }
        let reason = format!(
            "{why}: kept {} of {} candidates",
            eu.len(),
            candidates.len()
        );
        Decision::route(eu, RetryOn::all(), reason)
    }
}

/// Why the request must stay in the EU, or `None` when it need not. Reads the
/// tenant first and the header only when the tenant does not decide it.
fn eu_bound(req: &Request) -> Option<String> {
    if let Some(tenant) = req.tenant().filter(|t| !t.is_empty()) {
        let eu_tenants = host::config("eu_tenants").unwrap_or_default();
        if eu_tenants.split(',').any(|t| t.trim() == tenant) {
            return Some(format!("tenant '{tenant}' must stay in the EU"));
        }
    }
    req.header("x-data-residency")
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("eu"))
        .then(|| "the request asks for EU data residency (x-data-residency: eu)".to_owned())
}

export_policy!(Compliance);
