//! `cost`: the cheapest candidate for this request first.
//!
//! - Price per candidate: `input_tokens_estimate × input_per_mtok + output tokens ×
//!   output_per_mtok` per million, where output tokens are the request's
//!   `max_output_tokens`, or config `default_output_tokens` (default 256) when the
//!   client set none.
//! - Unusable candidates (`cooling-down`, `unhealthy`) are dropped while at least one
//!   usable one (`healthy`, `degraded`) remains; when none is usable, all are kept.
//! - Candidates are ordered by price, cheapest first; equal prices keep candidate order.
//! - The reason names the cheapest target and its price, e.g.
//!   `cheapest: bedrock-us at $0.003310`.
//! - The gateway moves on after a connect error, a timeout, a 429 or a 5xx.

use switchyard_policy::{
    Candidate, Decision, Policy, Request, RetryOn, Tokens, export_policy, host,
};

/// Output tokens assumed when neither the request nor the config says.
const DEFAULT_OUTPUT_TOKENS: u32 = 256;

struct Cost;

impl Policy for Cost {
    fn decide(req: &Request, candidates: Vec<Candidate>) -> Decision {
        let default_output = host::config_or("default_output_tokens", DEFAULT_OUTPUT_TOKENS);
        let tokens = Tokens::of(req, default_output);
        let any_usable = candidates.iter().any(Candidate::is_healthy);
        let mut priced: Vec<(f64, &Candidate)> = candidates
            .iter()
            .filter(|c| !any_usable || c.is_healthy())
            .map(|c| (tokens.cost(c.offer()), c))
            .collect();
        // `sort_by` is stable: equal prices keep candidate order.
        priced.sort_by(|a, b| a.0.total_cmp(&b.0));
        let reason = match priced.first() {
            None => "no candidates".to_owned(),
            Some((price, c)) if any_usable => {
                let skipped = candidates.len() - priced.len();
                format!(
                    "cheapest: {} at ${price:.6} ({skipped} unusable skipped)",
                    c.offer().upstream
                )
            }
            Some((price, c)) => {
                format!(
                    "cheapest: {} at ${price:.6} (none usable, all kept)",
                    c.offer().upstream
                )
            }
        };
        Decision::route(priced.into_iter().map(|(_, c)| c), RetryOn::all(), reason)
    }
}

export_policy!(Cost);
