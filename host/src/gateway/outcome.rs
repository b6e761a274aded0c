//! The end of a request: metrics, health, the access log line and the policies'
//! `observe` calls, which run on a bounded queue off the response path.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::client_text::ClientText;
use crate::admin::Metrics;
use crate::policy::types::Outcome;
use crate::snapshot::Snapshot;
use crate::upstream::health::{AttemptOutcome, InFlight};

/// Outcomes waiting for `observe` before new ones are dropped (and counted).
const OBSERVE_QUEUE: usize = 4096;

/// Token counts from an upstream's `usage`.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
pub struct Usage {
    /// Input tokens.
    #[serde(default)]
    pub prompt_tokens: u64,
    /// Output tokens.
    #[serde(default)]
    pub completion_tokens: u64,
}

/// How a response body ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The whole response reached the client.
    Complete,
    /// The upstream broke off mid-body.
    Broken,
    /// The client disconnected before the end.
    ClientGone,
}

impl Ending {
    fn as_str(self) -> &'static str {
        match self {
            Ending::Complete => "complete",
            Ending::Broken => "upstream-broken",
            Ending::ClientGone => "client-gone",
        }
    }
}

/// Where finished requests are reported: metrics and the observe queue.
pub struct OutcomeSink {
    metrics: Arc<Metrics>,
    observe: ObserveQueue<ObserveJob>,
}

struct ObserveJob {
    snapshot: Arc<Snapshot>,
    route: usize,
    outcome: Outcome,
}

impl OutcomeSink {
    /// Starts the observe worker on the current tokio runtime.
    pub fn start(metrics: Arc<Metrics>) -> Arc<OutcomeSink> {
        let observe = ObserveQueue::start(OBSERVE_QUEUE, metrics.clone(), {
            let metrics = metrics.clone();
            move |job| observe_all(job, metrics.clone())
        });
        Arc::new(OutcomeSink { metrics, observe })
    }

    /// The gateway's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }
}

/// Calls every stage's `observe` of the route the request ran on, in chain order.
/// A failure is counted in `switchyard_policy_errors_total` and logged; it never
/// reaches the client, whose response has already been sent.
async fn observe_all(job: ObserveJob, metrics: Arc<Metrics>) {
    let route = &job.snapshot.routes[job.route];
    for policy in route.chain.stages() {
        if let Err(err) = policy.observe(&job.outcome).await {
            metrics.policy_error(policy.name(), err.kind.as_str());
            tracing::warn!(policy = policy.name(), error = %err, "policy observe failed");
        }
    }
}

/// A bounded queue in front of one worker task. Pushing never waits: when the
/// queue is full the job is dropped and `switchyard_observe_dropped_total` counts
/// it, so a slow or failing consumer can never hold up the response path.
struct ObserveQueue<J> {
    sender: mpsc::Sender<J>,
    metrics: Arc<Metrics>,
}

impl<J: Send + 'static> ObserveQueue<J> {
    /// Spawns the worker, which runs `handle` on one job at a time.
    fn start<F, Fut>(capacity: usize, metrics: Arc<Metrics>, mut handle: F) -> ObserveQueue<J>
    where
        F: FnMut(J) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send,
    {
        let (sender, mut receiver) = mpsc::channel(capacity);
        tokio::spawn(async move {
            while let Some(job) = receiver.recv().await {
                handle(job).await;
            }
        });
        ObserveQueue { sender, metrics }
    }

    /// Queues `job` without waiting; a full (or closed) queue drops and counts it.
    fn push(&self, job: J) {
        if self.sender.try_send(job).is_err() {
            self.metrics.observe_dropped();
        }
    }
}

/// Everything known about a request that is needed once it ends.
pub struct PendingOutcome {
    /// Where to report.
    pub sink: Arc<OutcomeSink>,
    /// The snapshot the request ran on.
    pub snapshot: Arc<Snapshot>,
    /// Index of the matched route in the snapshot.
    pub route: Option<usize>,
    /// The request id.
    pub request_id: String,
    /// The client's tenant.
    pub tenant: Option<Arc<str>>,
    /// The requested model ("" when none).
    pub model: String,
    /// When the request arrived.
    pub started: Instant,
    /// Index of the serving upstream in the snapshot, when one answered.
    pub upstream: Option<usize>,
    /// Prices per million tokens (input, output) of the serving candidate.
    pub prices: (f64, f64),
    /// Status sent to the client.
    pub status: u16,
    /// Upstream attempts made.
    pub attempts: u32,
    /// Time from arrival to the upstream's first body byte.
    pub time_to_first_byte: Option<Duration>,
    /// The serving attempt, whose health record waits for the body's end.
    pub attempt: Option<ServingAttempt>,
}

/// The attempt whose response the client is getting. Its upstream counts it in
/// flight until the body ends, and its health record waits until then too: a
/// stream that breaks mid-way is one broken attempt, not a success and then a
/// failure (which would reset the failure streak every time).
pub struct ServingAttempt {
    /// How the attempt went as far as its headers (success or client error).
    pub outcome: AttemptOutcome,
    /// From sending the request to the first body byte.
    pub latency: Duration,
    /// Keeps the upstream's in-flight count up while the body streams.
    pub in_flight: InFlight,
}

impl PendingOutcome {
    /// Reports the request: metrics, health, access log, and `observe`.
    pub fn finish(self, usage: Option<Usage>, ending: Ending) {
        let now = Instant::now();
        let latency = now - self.started;
        let metrics = &self.sink.metrics;
        let route_name = self
            .route
            .map(|i| &*self.snapshot.routes[i].name)
            .unwrap_or("none");
        let upstream = self.upstream.map(|i| &self.snapshot.upstreams[i]);
        let upstream_name = upstream.map(|u| &*u.name);
        let usage = usage.unwrap_or_default();
        let cost = (usage.prompt_tokens as f64 * self.prices.0
            + usage.completion_tokens as f64 * self.prices.1)
            / 1e6;

        metrics.request_finished(route_name, upstream_name, self.status, latency);
        if let (Some(upstream), Some(attempt)) = (upstream, &self.attempt) {
            let outcome = match ending {
                Ending::Broken => AttemptOutcome::Broken,
                // A client going away says nothing about the upstream.
                Ending::Complete | Ending::ClientGone => attempt.outcome,
            };
            upstream
                .health
                .record_at(outcome, attempt.latency, now.into_std());
        }
        if let Some(upstream) = upstream {
            metrics.tokens(
                &upstream.name,
                &self.model,
                usage.prompt_tokens,
                usage.completion_tokens,
            );
            metrics.cost(&upstream.name, &self.model, self.tenant.as_deref(), cost);
        }
        if let Some(ttfb) = self.time_to_first_byte {
            metrics.time_to_first_token(ttfb);
        }

        let policy = self
            .route
            .map(|i| self.snapshot.routes[i].chain.header_value())
            .unwrap_or("");
        tracing::info!(
            target: "switchyard::access",
            request_id = %self.request_id,
            tenant = self.tenant.as_deref().unwrap_or("-"),
            route = route_name,
            policy,
            model = %ClientText(&self.model),
            upstream = upstream_name.unwrap_or("-"),
            attempts = self.attempts,
            status = self.status,
            latency_ms = latency.as_secs_f64() * 1e3,
            tokens_in = usage.prompt_tokens,
            tokens_out = usage.completion_tokens,
            ending = ending.as_str(),
            "request finished"
        );

        let Some(route) = self.route else { return };
        if !self.snapshot.routes[route]
            .chain
            .stages()
            .iter()
            .any(|p| p.observes())
        {
            return;
        }
        let outcome = Outcome {
            request_id: self.request_id,
            route: route_name.to_string(),
            tenant: self.tenant.as_deref().map(str::to_string),
            model: self.model,
            upstream: upstream_name.map(str::to_string),
            status: self.status,
            attempts: self.attempts,
            latency_ms: u32::try_from(latency.as_millis()).unwrap_or(u32::MAX),
            time_to_first_token_ms: self
                .time_to_first_byte
                .map(|d| u32::try_from(d.as_millis()).unwrap_or(u32::MAX)),
            tokens_in: u32::try_from(usage.prompt_tokens).unwrap_or(u32::MAX),
            tokens_out: u32::try_from(usage.completion_tokens).unwrap_or(u32::MAX),
            cost_usd: cost,
        };
        let job = ObserveJob {
            snapshot: self.snapshot.clone(),
            route,
            outcome,
        };
        self.sink.observe.push(job);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dropped(metrics: &Metrics) -> f64 {
        let text = metrics.encode();
        text.lines()
            .find_map(|l| l.strip_prefix("switchyard_observe_dropped_total "))
            .expect("the dropped counter is exported")
            .parse()
            .unwrap()
    }

    /// A consumer stuck forever never blocks `push`: the queue fills, every
    /// further job is dropped and counted, and nothing waits on the worker.
    #[tokio::test]
    async fn a_stuck_consumer_never_blocks_and_overflow_is_counted() {
        let metrics = Arc::new(Metrics::new());
        let started = Arc::new(tokio::sync::Notify::new());
        let release = Arc::new(tokio::sync::Notify::new());
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let queue = ObserveQueue::start(2, metrics.clone(), {
            let (started, release, seen) = (started.clone(), release.clone(), seen.clone());
            move |job: u32| {
                let (started, release, seen) = (started.clone(), release.clone(), seen.clone());
                async move {
                    seen.lock().unwrap().push(job);
                    started.notify_one();
                    release.notified().await;
                }
            }
        });

        queue.push(0);
        started.notified().await; // the worker holds job 0 and is stuck
        for job in 1..=6 {
            queue.push(job); // 1 and 2 fill the queue, 3..=6 are dropped
        }
        assert_eq!(dropped(&metrics), 4.0);

        // Once the consumer moves again, the queued jobs are delivered in order.
        for _ in 0..2 {
            release.notify_one();
            started.notified().await;
        }
        assert_eq!(*seen.lock().unwrap(), vec![0, 1, 2]);
        assert_eq!(dropped(&metrics), 4.0);
    }
}
