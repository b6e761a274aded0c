//! The policy chain stage: the route's chain turns the candidates (every
//! upstream that serves the model, in config order) into the plan's targets
//! and fallback rules, or into the client's error (a policy's reject, a
//! failed policy, or a plan with nothing left). A route without policies
//! tries the candidates in config order and falls back on every failure.

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, StatusCode};

use super::RequestContext;
use super::client_text::ClientText;
use super::execute::Fallback;
use super::request_view::RequestView;
use super::response::GatewayError;
use crate::admin::Metrics;
use crate::policy::types::{CREDENTIAL_HEADERS, Headers, Request as PolicyRequest, RetryOn};
use crate::policy::{ChainOutcome, Policy, PolicyErrorKind, StageObserver};
use crate::snapshot::Serving;

/// What the policies are told about a request.
pub(super) struct PolicyInput<'a> {
    /// The request so far (id, tenant, snapshot).
    pub ctx: &'a RequestContext,
    /// The client's request head.
    pub parts: &'a http::request::Parts,
    /// The request body's view.
    pub view: &'a RequestView,
    /// The matched route's index in the snapshot.
    pub route: usize,
}

/// Runs the route's chain over `servings` (the model's upstreams that serve the
/// operation): the targets to try in order and when to fall back, or the
/// client's error.
pub(super) async fn run<'s>(
    input: PolicyInput<'_>,
    servings: &'s [Serving],
    metrics: &Metrics,
) -> Result<(Vec<&'s Serving>, Fallback), GatewayError> {
    let snapshot = &input.ctx.snapshot;
    let route = &snapshot.routes[input.route];
    if route.chain.stages().is_empty() {
        return Ok((servings.iter().collect(), Fallback::ALL));
    }
    let request = Arc::new(policy_request(&input));
    let candidates = servings.iter().map(|s| snapshot.candidate(s)).collect();
    let observer = MetricsObserver(metrics);
    let chain = route
        .chain
        .run(&request, &snapshot.catalog, candidates, &observer);
    let (targets, fallback) = match chain.await {
        ChainOutcome::Route(plan) => {
            let targets = plan
                .targets
                .iter()
                .filter_map(|c| servings.iter().find(|s| s.id == c.id))
                .collect::<Vec<_>>();
            (targets, fallback_from(plan.retry_on))
        }
        ChainOutcome::Reject { policy, rejection } => {
            let status = StatusCode::from_u16(rejection.status).unwrap_or(StatusCode::FORBIDDEN);
            let message = if rejection.message.is_empty() {
                format!("rejected by policy {policy:?}")
            } else {
                rejection.message
            };
            return Err(GatewayError::new(status, rejection.code, message));
        }
        ChainOutcome::Failed(err) => {
            return Err(GatewayError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "policy_error",
                format!(
                    "routing policy {:?} failed ({})",
                    &*err.policy,
                    err.kind.as_str()
                ),
            ));
        }
    };
    if targets.is_empty() {
        return Err(GatewayError::no_route(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the routing policies left no upstream for model \"{}\"",
                ClientText(input.view.model())
            ),
        ));
    }
    Ok((targets, fallback))
}

fn policy_request(input: &PolicyInput<'_>) -> PolicyRequest {
    let PolicyInput {
        ctx,
        parts,
        view,
        route,
    } = input;
    let route = &ctx.snapshot.routes[*route];
    PolicyRequest {
        id: ctx.request_id.clone(),
        method: parts.method.as_str().to_string(),
        path: parts.uri.path().to_string(),
        model: view.model().to_string(),
        streaming: view.streaming(),
        tenant: ctx.tenant.as_deref().map(str::to_string),
        headers: policy_headers(&parts.headers),
        body_bytes: view.body_len() as u64,
        input_tokens_estimate: view.input_tokens_estimate(),
        max_output_tokens: view.max_output_tokens(),
        route: route.name.to_string(),
        labels: route.labels.clone(),
    }
}

/// The client's headers as policies see them: without credentials, in the
/// request map's order (names as they first came, a repeated name's values
/// together). Names and values are shared with the request, not copied.
fn policy_headers(client: &HeaderMap) -> Headers {
    let mut headers = Headers::with_capacity(client.len());
    for (name, value) in client {
        if !CREDENTIAL_HEADERS.contains(name) {
            headers.append(name.clone(), value.clone());
        }
    }
    headers
}

fn fallback_from(retry_on: RetryOn) -> Fallback {
    Fallback {
        connect_error: retry_on.contains(RetryOn::CONNECT_ERROR),
        timeout: retry_on.contains(RetryOn::TIMEOUT),
        rate_limited: retry_on.contains(RetryOn::RATE_LIMITED),
        server_error: retry_on.contains(RetryOn::SERVER_ERROR),
    }
}

/// Records each policy stage in the metrics.
struct MetricsObserver<'a>(&'a Metrics);

impl StageObserver for MetricsObserver<'_> {
    fn stage_finished(&self, policy: &Policy, elapsed: Duration, error: Option<PolicyErrorKind>) {
        self.0.policy_decision(policy.name(), elapsed);
        if let Some(kind) = error {
            self.0.policy_error(policy.name(), kind.as_str());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_never_see_credentials() {
        let mut client = HeaderMap::new();
        for (name, value) in [
            ("authorization", "Bearer sk-client"),
            ("Api-Key", "sk-azure"),
            ("x-api-key", "sk-anthropic-style"),
            ("cookie", "session=1"),
            ("cookie", "other=2"),
            ("proxy-authorization", "Basic eA=="),
            ("x-data-residency", "eu"),
            ("content-type", "application/json"),
        ] {
            client.append(
                http::HeaderName::try_from(name).unwrap(),
                value.parse().unwrap(),
            );
        }
        let seen = policy_headers(&client);
        let seen: Vec<(&str, &str)> = seen
            .iter()
            .map(|(name, value)| (name.as_str(), value.to_str().unwrap()))
            .collect();
        assert_eq!(
            seen,
            [
                ("x-data-residency", "eu"),
                ("content-type", "application/json")
            ]
        );
    }
}
