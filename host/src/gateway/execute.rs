//! Plan execution: try the plan's targets in order, falling back only on the
//! failures the plan allows and only before the first response byte has gone to
//! the client.

use bytes::Bytes;
use http::{HeaderMap, StatusCode, response};
use http_body::Frame;
use http_body_util::BodyExt;
use tokio::time::Instant;

use super::outcome::ServingAttempt;
use super::request_view::RequestView;
use super::response::GatewayError;
use crate::admin::Metrics;
use crate::provider::{AttemptError, AttemptErrorKind, Operation, UpstreamBody, UpstreamCall};
use crate::snapshot::{Serving, Snapshot};
use crate::upstream::health::{AttemptOutcome, retry_after};

/// Which attempt failures allow the next target (the plan's `retry-on` flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fallback {
    /// Connection or TLS failures.
    pub connect_error: bool,
    /// No response headers or first byte in time.
    pub timeout: bool,
    /// 429 answers.
    pub rate_limited: bool,
    /// 5xx answers, connections that broke before the headers, 401/403
    /// answers (the upstream refused the gateway's own credentials) and 404
    /// answers (the upstream lacks the model or deployment it is configured with).
    pub server_error: bool,
}

impl Fallback {
    /// Fall back on every failure.
    pub const ALL: Fallback = Fallback {
        connect_error: true,
        timeout: true,
        rate_limited: true,
        server_error: true,
    };

    fn allows(self, failure: &Failure) -> bool {
        match failure {
            Failure::Connect | Failure::Request => self.connect_error,
            Failure::Timeout => self.timeout,
            Failure::RateLimited(_) => self.rate_limited,
            Failure::ServerError(_) | Failure::Refused(_) | Failure::NotFound | Failure::Broken => {
                self.server_error
            }
        }
    }
}

/// A failed attempt.
#[derive(Debug)]
enum Failure {
    Connect,
    /// The gateway could not build or sign the request for this upstream
    /// (nothing was sent). Allowed by `connect-error`, like a connection that
    /// never opened, but labelled apart: it is a config or credential fault,
    /// not the network's.
    Request,
    Timeout,
    RateLimited(Option<std::time::Duration>),
    ServerError(StatusCode),
    /// 401 or 403: the upstream refused the gateway's key or token (expired,
    /// rotated, wrong scope). Never the client's fault, so never passed on as
    /// the client's: the client's own key was checked by the gateway.
    Refused(StatusCode),
    /// 404: the upstream has no such model or deployment. The gateway chose
    /// the operation and the upstream's model name from its config, so the
    /// config is wrong, not the client's request. Not counted against the
    /// upstream's health: its other models may be fine.
    NotFound,
    Broken,
}

impl Failure {
    fn health(&self) -> AttemptOutcome {
        match self {
            Failure::Connect => AttemptOutcome::ConnectError,
            // Every request to it will fail the same way until the config or
            // its credentials change: count it against its health.
            Failure::Request => AttemptOutcome::ServerError,
            Failure::Timeout => AttemptOutcome::Timeout,
            Failure::RateLimited(retry_after) => AttemptOutcome::RateLimited {
                retry_after: *retry_after,
            },
            // An upstream that refuses the gateway's credentials cannot serve
            // anyone: count it against its health like a server error.
            Failure::ServerError(_) | Failure::Refused(_) => AttemptOutcome::ServerError,
            // One missing model says nothing of the upstream's other models,
            // and health is kept per upstream.
            Failure::NotFound => AttemptOutcome::ClientError,
            Failure::Broken => AttemptOutcome::Broken,
        }
    }

    fn label(&self) -> &'static str {
        match self {
            Failure::Connect => "connect-error",
            Failure::Request => "request-error",
            Failure::Timeout => "timeout",
            Failure::RateLimited(_) => "rate-limited",
            Failure::ServerError(_) => "server-error",
            Failure::Refused(_) => "refused",
            Failure::NotFound => "not-found",
            Failure::Broken => "broken",
        }
    }
}

/// The failure an upstream's answer reports, if it is one the gateway does
/// not pass on: 429, 5xx, 401/403 and 404.
fn failed_answer(response: &http::Response<UpstreamBody>) -> Option<Failure> {
    let status = response.status();
    Some(match status {
        StatusCode::TOO_MANY_REQUESTS => Failure::RateLimited(retry_after(response.headers())),
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Failure::Refused(status),
        StatusCode::NOT_FOUND => Failure::NotFound,
        _ if status.is_server_error() => Failure::ServerError(status),
        _ => return None,
    })
}

/// Most of a failed answer's body read to keep its connection.
const DISCARD_BYTES: usize = 64 * 1024;
/// Longest wait for the rest of a failed answer's body.
const DISCARD_WAIT: std::time::Duration = std::time::Duration::from_millis(50);

/// Reads a failed answer's body to its end (it is never passed on) so its
/// HTTP/1.1 connection goes back to the pool, and a burst of 429s costs no
/// reconnects. Past [`DISCARD_BYTES`] or [`DISCARD_WAIT`] it gives up, and the
/// connection is closed instead. An h2 answer is dropped at once: that resets
/// only its own stream.
async fn discard(response: http::Response<UpstreamBody>) {
    if response.version() == http::Version::HTTP_2 {
        return;
    }
    let mut body = response.into_body();
    let read = async {
        let mut left = DISCARD_BYTES;
        while let Some(Ok(frame)) = body.frame().await {
            let len = frame.data_ref().map_or(0, Bytes::len);
            let Some(rest) = left.checked_sub(len) else {
                return;
            };
            left = rest;
        }
    };
    let _ = tokio::time::timeout(DISCARD_WAIT, read).await;
}

/// An upstream response the gateway committed to: its first frame has been read.
pub struct Committed {
    /// Index of the serving target in the plan.
    pub target: usize,
    /// Status and headers.
    pub parts: response::Parts,
    /// The first frame (None when the body was empty).
    pub first: Option<Frame<Bytes>>,
    /// The rest of the body.
    pub body: UpstreamBody,
    /// Time from the request's arrival to the first byte.
    pub time_to_first_byte: std::time::Duration,
    /// The gateway added the usage request (`stream_options.include_usage`)
    /// on the client's behalf: the usage-only chunk is for the gateway, not
    /// the client.
    pub usage_added: bool,
    /// The attempt, recorded in the upstream's health when the body ends.
    pub attempt: ServingAttempt,
}

/// One request's inputs to plan execution.
pub struct PlanRun<'a> {
    /// The snapshot serving the request.
    pub snapshot: &'a Snapshot,
    /// The plan's targets, in order.
    pub targets: &'a [&'a Serving],
    /// The plan's fallback rules.
    pub fallback: Fallback,
    /// The request body's view.
    pub view: &'a RequestView,
    /// The endpoint called.
    pub operation: Operation,
    /// Client headers to forward.
    pub headers: &'a HeaderMap,
    /// The request id.
    pub request_id: &'a str,
    /// When the request arrived.
    pub started: Instant,
    /// Where attempts are counted.
    pub metrics: &'a Metrics,
    /// Attempts made so far, updated as each one starts, so that a request
    /// whose client leaves mid-plan reports how far it got.
    pub made: &'a mut u32,
}

/// Runs the plan: the committed response, or the error for the client.
pub async fn execute(run: PlanRun<'_>) -> Result<Committed, GatewayError> {
    let mut failures: Vec<(usize, Failure)> = Vec::new();
    for (index, serving) in run.targets.iter().enumerate() {
        *run.made = index as u32 + 1;
        let upstream = &run.snapshot.upstreams[serving.upstream];
        if index > 0 {
            run.metrics.fallback();
        }
        let in_flight = upstream.health.start_attempt();
        let sent = Instant::now();
        // A non-streamed completion's first byte comes with its last.
        let whole_answer = run.operation == Operation::ChatCompletions && !run.view.streaming();
        let deadline = sent
            + if whole_answer {
                upstream.response_timeout
            } else {
                upstream.first_byte_timeout
            };
        let usage_added = run.operation == Operation::ChatCompletions
            && run.view.adds_usage_request()
            && upstream.adds_stream_usage;
        let call = UpstreamCall {
            operation: run.operation,
            upstream_model: &serving.upstream_model,
            body: run.view.body_for(&serving.upstream_model, usage_added),
            streaming: run.view.streaming(),
            headers: run.headers,
            request_id: run.request_id,
        };
        let failure = match tokio::time::timeout_at(deadline, upstream.adapter.send(call)).await {
            Err(_) => Failure::Timeout,
            Ok(Err(err)) => {
                let failure = classify(&err);
                if let Failure::Request = failure {
                    // A config or credential fault the operator must see; the
                    // error carries no secret.
                    tracing::warn!(
                        request_id = run.request_id,
                        upstream = &*upstream.name,
                        error = %err,
                        "could not build the upstream request"
                    );
                }
                failure
            }
            Ok(Ok(response)) => {
                let status = response.status();
                upstream.health.observe_headers(response.headers());
                if let Some(failure) = failed_answer(&response) {
                    discard(response).await;
                    failure
                } else {
                    let (parts, mut body) = response.into_parts();
                    match tokio::time::timeout_at(deadline, body.frame()).await {
                        Err(_) => Failure::Timeout,
                        Ok(Some(Err(_))) => Failure::Broken,
                        Ok(first) => {
                            let first = first.map(|frame| frame.expect("errors handled above"));
                            let outcome = if status.is_client_error() {
                                ("client-error", AttemptOutcome::ClientError)
                            } else {
                                ("success", AttemptOutcome::Success)
                            };
                            let now = Instant::now();
                            run.metrics.attempt(&upstream.name, outcome.0);
                            return Ok(Committed {
                                target: index,
                                parts,
                                first,
                                body,
                                time_to_first_byte: now - run.started,
                                usage_added,
                                attempt: ServingAttempt {
                                    outcome: outcome.1,
                                    latency: now - sent,
                                    in_flight,
                                },
                            });
                        }
                    }
                }
            }
        };
        let now = Instant::now();
        upstream
            .health
            .record_at(failure.health(), now - sent, now.into_std());
        run.metrics.attempt(&upstream.name, failure.label());
        tracing::debug!(
            request_id = run.request_id,
            upstream = &*upstream.name,
            failure = failure.label(),
            "upstream attempt failed"
        );
        let allowed = run.fallback.allows(&failure);
        failures.push((serving.upstream, failure));
        if !allowed {
            break;
        }
    }
    Err(exhausted(run.snapshot, &failures))
}

/// The failure an adapter's error reports: a connection that never opened, a
/// request that could not be built, or a connection that broke after the
/// request went out.
fn classify(err: &AttemptError) -> Failure {
    match err.kind() {
        AttemptErrorKind::Connect => Failure::Connect,
        AttemptErrorKind::Request => Failure::Request,
        AttemptErrorKind::Broken => Failure::Broken,
    }
}

/// The client's answer when no attempt produced a response.
fn exhausted(snapshot: &Snapshot, failures: &[(usize, Failure)]) -> GatewayError {
    let Some((last_upstream, last)) = failures.last() else {
        return GatewayError::no_route(
            StatusCode::SERVICE_UNAVAILABLE,
            "the plan has no upstream to try",
        );
    };
    let attempts = failures.len();
    let name = &snapshot.upstreams[*last_upstream].name;
    let rate_limited: Vec<_> = failures
        .iter()
        .filter_map(|(_, f)| match f {
            Failure::RateLimited(after) => Some(*after),
            _ => None,
        })
        .collect();
    if rate_limited.len() == attempts {
        let wait = rate_limited
            .iter()
            .flatten()
            .min()
            .copied()
            .unwrap_or_default()
            // The gateway tries an upstream again after this at the latest,
            // whatever it asked for; so may the client.
            .min(
                snapshot.upstreams[*last_upstream]
                    .health
                    .settings()
                    .max_rate_limit_cooldown,
            );
        let mut err = GatewayError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("every upstream tried ({attempts}) is rate-limited; retry later"),
        );
        err.retry_after_secs = Some(wait.as_secs_f64().ceil().max(1.0) as u64);
        return err;
    }
    let detail = match last {
        Failure::Connect => format!("could not connect to {name}"),
        Failure::Request => {
            format!("the gateway could not build the request for {name}; its log says why")
        }
        Failure::Timeout => format!("{name} did not answer in time"),
        Failure::RateLimited(_) => format!("{name} is rate-limited"),
        Failure::ServerError(status) => format!("{name} answered {}", status.as_u16()),
        // The upstream's own body is not passed on: it may quote the key.
        Failure::Refused(status) => format!(
            "{name} refused the gateway's credentials ({}); check its key or token",
            status.as_u16()
        ),
        Failure::NotFound => format!(
            "{name} answered 404: it has no such model or deployment; check its models in the config"
        ),
        Failure::Broken => format!("the connection to {name} broke"),
    };
    let message = format!("{attempts} upstream attempt(s) failed; last: {detail}");
    if matches!(last, Failure::Timeout) {
        GatewayError::new(StatusCode::GATEWAY_TIMEOUT, "upstream_timeout", message)
    } else {
        GatewayError::new(StatusCode::BAD_GATEWAY, "upstream_error", message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(kind: AttemptErrorKind) -> AttemptError {
        let (host, detail) = ("up.example".to_string(), "d".to_string());
        match kind {
            AttemptErrorKind::Request => AttemptError::Request { host, detail },
            AttemptErrorKind::Broken => AttemptError::Broken { host, detail },
            AttemptErrorKind::Connect => AttemptError::Connect {
                host,
                cause: crate::provider::ConnectCause::Refused,
                detail,
            },
        }
    }

    #[test]
    fn a_request_that_could_not_be_built_is_its_own_outcome_and_falls_back_as_a_connect_error() {
        let failure = classify(&error(AttemptErrorKind::Request));
        assert_eq!(failure.label(), "request-error");
        assert_eq!(failure.health(), AttemptOutcome::ServerError);
        let only_connect = Fallback {
            connect_error: true,
            timeout: false,
            rate_limited: false,
            server_error: false,
        };
        assert!(only_connect.allows(&failure));
        assert!(
            !Fallback {
                connect_error: false,
                ..Fallback::ALL
            }
            .allows(&failure)
        );
        assert_eq!(
            classify(&error(AttemptErrorKind::Connect)).label(),
            "connect-error"
        );
        assert_eq!(classify(&error(AttemptErrorKind::Broken)).label(), "broken");
    }
}
