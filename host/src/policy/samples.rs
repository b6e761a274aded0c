//! A built-in sample request and candidate set: the synthetic input of the
//! reload canary and of `switchyard policy eval` without `--candidates`.

use std::sync::Arc;

use super::catalog::Catalog;
use super::types::{Candidate, Headers, Health, LiveState, Offer, ProviderKind, Request};

/// A chat request for `gpt-4o` with a few ordinary headers and no tenant.
pub fn request() -> Request {
    Request {
        id: "canary".to_owned(),
        method: "POST".to_owned(),
        path: "/v1/chat/completions".to_owned(),
        model: "gpt-4o".to_owned(),
        streaming: false,
        tenant: None,
        headers: Headers::from_iter([
            (
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            ),
            (
                http::header::USER_AGENT,
                http::HeaderValue::from_static("switchyard-canary"),
            ),
        ]),
        body_bytes: 1200,
        input_tokens_estimate: 300,
        max_output_tokens: Some(256),
        route: "canary".to_owned(),
        labels: Vec::new(),
    }
}

/// Four upstreams serving `gpt-4o`: `azure-eastus` (us), `azure-westeurope`
/// (eu), `bedrock-eu-central-1` (eu, degraded) and `openai` (us), all with
/// prices and live state filled in; ids 0 to 3 in that order, in a catalog of
/// their own.
pub fn candidates() -> (Arc<Catalog>, Vec<Candidate>) {
    let (offers, candidates) = [
        candidate(
            "azure-eastus",
            ProviderKind::AzureOpenai,
            "eastus",
            "us",
            2.5,
            10.0,
            Health::Healthy,
        ),
        candidate(
            "azure-westeurope",
            ProviderKind::AzureOpenai,
            "westeurope",
            "eu",
            2.5,
            10.0,
            Health::Healthy,
        ),
        candidate(
            "bedrock-eu-central-1",
            ProviderKind::Bedrock,
            "eu-central-1",
            "eu",
            2.0,
            8.0,
            Health::Degraded,
        ),
        candidate(
            "openai",
            ProviderKind::Openai,
            "",
            "us",
            2.5,
            10.0,
            Health::Healthy,
        ),
    ]
    .into_iter()
    .zip(0..)
    .map(|((offer, state), id)| (offer, Candidate { id, state }))
    .unzip();
    (Catalog::new(offers), candidates)
}

fn candidate(
    upstream: &str,
    provider: ProviderKind,
    region: &str,
    jurisdiction: &str,
    input_per_mtok: f64,
    output_per_mtok: f64,
    health: Health,
) -> (Offer, LiveState) {
    let offer = Offer {
        upstream: upstream.to_owned(),
        provider,
        region: region.to_owned(),
        jurisdiction: jurisdiction.to_owned(),
        tags: Vec::new(),
        upstream_model: "gpt-4o".to_owned(),
        input_per_mtok,
        output_per_mtok,
    };
    let state = LiveState {
        health,
        latency_ewma_ms: 150.0,
        in_flight: 2,
        error_rate: if health == Health::Healthy { 0.0 } else { 0.2 },
        cooldown_remaining_ms: 0,
        ratelimit_remaining_requests: None,
        ratelimit_remaining_tokens: None,
    };
    (offer, state)
}
