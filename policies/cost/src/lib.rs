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
//! - The gateway moves on after a connect error, a timeout, a 429, a 5xx, or a 401/403/404 (see `retry-on` in the WIT).

use core::fmt;

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
                    "cheapest: {} at {} ({skipped} unusable skipped)",
                    c.offer().upstream,
                    Usd(*price)
                )
            }
            Some((price, c)) => {
                format!(
                    "cheapest: {} at {} (none usable, all kept)",
                    c.offer().upstream,
                    Usd(*price)
                )
            }
        };
        Decision::route(priced.into_iter().map(|(_, c)| c), RetryOn::all(), reason)
    }
}

/// A price in USD with six decimals (`$0.003310`), printed with integer
/// arithmetic: Rust's exact float formatting (`{:.6}`) can fall back to a
/// bignum algorithm, which would be a good part of this policy's per-call cost.
struct Usd(f64);

impl fmt::Display for Usd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let micros = (self.0 * 1e6).round();
        if !(0.0..1e15).contains(&micros) {
            return write!(f, "${:.6}", self.0);
        }
        let micros = micros as u64;
        write!(f, "${}.{:06}", micros / 1_000_000, micros % 1_000_000)
    }
}

export_policy!(Cost);
