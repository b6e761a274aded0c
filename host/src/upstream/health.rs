//! Per-upstream health: what policies see as a candidate's live state.
//!
//! Every attempt is recorded with its outcome and latency. From that each
//! [`UpstreamHealth`] keeps, with atomics only (no lock on the request path):
//!
//! - a latency EWMA (fast) and a long-run latency baseline (slow EWMA), in ms;
//! - a recent error rate: an EWMA of "this attempt failed" (1.0) or not (0.0);
//! - the number of consecutive failures, requests in flight, and the remaining
//!   rate limit the provider last reported;
//! - a cooldown deadline on the monotonic clock.
//!
//! The state ([`HealthState`]) follows from those:
//!
//! - **cooling-down**: a 429 put the upstream into cooldown for its `retry-after`
//!   (or [`HealthSettings::rate_limit_cooldown`] when it named none);
//! - **unhealthy**: [`HealthSettings::failure_threshold`] consecutive failures
//!   (connect error, timeout, 5xx, the gateway's own credentials refused with
//!   401/403, broken connection) started a cooldown of
//!   [`HealthSettings::unhealthy_cooldown`], doubling on each further trip up to
//!   [`HealthSettings::max_unhealthy_cooldown`];
//! - **degraded**: on probation after an unhealthy cooldown ran out (the next attempt
//!   decides), or the error rate is above [`HealthSettings::degraded_error_rate`], or
//!   the latency EWMA is more than [`HealthSettings::degraded_latency_factor`] times
//!   the long-run baseline and at least [`HealthSettings::degraded_latency_margin_ms`]
//!   above it;
//! - **healthy** otherwise.
//!
//! A success ends a failure streak and an unhealthy cooldown. A 4xx other than
//! 429, 401 and 403 (the request's fault, or for a 404 one model's config)
//! counts neither way: bad requests can neither trip an upstream nor clear
//! what real traffic recorded. A rate-limit cooldown is the provider's own
//! instruction and runs its course.
//!
//! The registry outlives config reloads, so an upstream keeps its history when a
//! new snapshot is installed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{HeaderMap, HeaderName};

pub use super::retry_after::{
    parse_retry_after, parse_retry_after_ms, retry_after, retry_after_at,
};

/// How one attempt at an upstream ended, as far as its health is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// A 2xx/3xx answer.
    Success,
    /// A 4xx other than 429, 401 and 403: the request (or, for a 404, one
    /// model's config) was at fault. Says nothing of the upstream's health
    /// either way, so a client sending bad requests can neither trip an
    /// upstream nor clear the failures real traffic recorded.
    ClientError,
    /// A 429, with the wait the upstream asked for.
    RateLimited {
        /// From `retry-after`, `retry-after-ms` or `x-ms-retry-after-ms`.
        retry_after: Option<Duration>,
    },
    /// A 5xx answer.
    ServerError,
    /// No answer in time.
    Timeout,
    /// No connection.
    ConnectError,
    /// The connection broke: reset before the headers or cut mid-stream.
    Broken,
}

/// An upstream's health state, as policies see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthState {
    /// Working normally.
    Healthy,
    /// Working, but failing often, slow, or on probation after being unhealthy.
    Degraded,
    /// Rate-limited: the provider asked us to wait.
    CoolingDown,
    /// Failing repeatedly; not worth trying until its cooldown ends.
    Unhealthy,
}

impl HealthState {
    /// The name used in the policy contract and the admin API.
    pub fn as_str(self) -> &'static str {
        match self {
            HealthState::Healthy => "healthy",
            HealthState::Degraded => "degraded",
            HealthState::CoolingDown => "cooling-down",
            HealthState::Unhealthy => "unhealthy",
        }
    }

    /// The value of the `switchyard_upstream_health` gauge: 0 healthy, 1 degraded,
    /// 2 cooling-down, 3 unhealthy.
    pub fn gauge_value(self) -> i64 {
        match self {
            HealthState::Healthy => 0,
            HealthState::Degraded => 1,
            HealthState::CoolingDown => 2,
            HealthState::Unhealthy => 3,
        }
    }
}

/// A point-in-time view of an upstream's health.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HealthView {
    /// The state.
    pub health: HealthState,
    /// Latency EWMA of answered attempts, in ms (0 before the first).
    pub latency_ewma_ms: f64,
    /// Attempts in flight.
    pub in_flight: u32,
    /// Recent error rate, 0.0 to 1.0.
    pub error_rate: f64,
    /// Time left in the current cooldown, in ms (0 when none).
    pub cooldown_remaining_ms: u64,
    /// `x-ratelimit-remaining-requests` from the last response that carried it.
    pub ratelimit_remaining_requests: Option<u64>,
    /// `x-ratelimit-remaining-tokens` from the last response that carried it.
    pub ratelimit_remaining_tokens: Option<u64>,
}

/// Thresholds and time constants of health tracking.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HealthSettings {
    /// Consecutive failures that make an upstream unhealthy.
    pub failure_threshold: u32,
    /// First unhealthy cooldown.
    pub unhealthy_cooldown: Duration,
    /// Longest unhealthy cooldown (it doubles per trip up to this).
    pub max_unhealthy_cooldown: Duration,
    /// Cooldown after a 429 that names no wait.
    pub rate_limit_cooldown: Duration,
    /// Longest cooldown a 429's `retry-after` can impose.
    pub max_rate_limit_cooldown: Duration,
    /// Error rate above which an upstream is degraded.
    pub degraded_error_rate: f64,
    /// Weight of the newest attempt in the error rate.
    pub error_rate_alpha: f64,
    /// Weight of the newest latency in the latency EWMA.
    pub latency_alpha: f64,
    /// Weight of the newest latency in the long-run baseline.
    pub baseline_alpha: f64,
    /// Latency EWMA over baseline ratio that makes an upstream degraded.
    pub degraded_latency_factor: f64,
    /// … and by at least this many ms (so tiny loopback latencies do not flap).
    pub degraded_latency_margin_ms: f64,
    /// Latency samples needed before latency can make an upstream degraded.
    pub min_latency_samples: u64,
}

impl Default for HealthSettings {
    fn default() -> Self {
        HealthSettings {
            failure_threshold: 3,
            unhealthy_cooldown: Duration::from_secs(5),
            max_unhealthy_cooldown: Duration::from_secs(60),
            rate_limit_cooldown: Duration::from_secs(1),
            max_rate_limit_cooldown: Duration::from_secs(300),
            degraded_error_rate: 0.2,
            error_rate_alpha: 0.1,
            latency_alpha: 0.2,
            baseline_alpha: 0.01,
            degraded_latency_factor: 3.0,
            degraded_latency_margin_ms: 50.0,
            min_latency_samples: 10,
        }
    }
}

/// Sentinel for "no rate limit reported".
const UNKNOWN: u64 = u64::MAX;

/// The rate-limit headers read from every upstream response. Names, not
/// strings: a lookup by `&str` parses and lower-cases the name each time.
const REMAINING_REQUESTS: HeaderName = HeaderName::from_static("x-ratelimit-remaining-requests");
const REMAINING_TOKENS: HeaderName = HeaderName::from_static("x-ratelimit-remaining-tokens");

const REASON_NONE: u8 = 0;
const REASON_RATE_LIMITED: u8 = 1;
const REASON_UNHEALTHY: u8 = 2;

/// An `f64` in an `AtomicU64`.
struct AtomicF64(AtomicU64);

impl AtomicF64 {
    fn new(value: f64) -> AtomicF64 {
        AtomicF64(AtomicU64::new(value.to_bits()))
    }

    fn load(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }

    fn store(&self, value: f64) {
        self.0.store(value.to_bits(), Ordering::Relaxed);
    }

    /// Moves the value towards `sample` by `alpha`.
    fn ewma(&self, sample: f64, alpha: f64) {
        let _ = self
            .0
            .try_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                let old = f64::from_bits(bits);
                Some((old + alpha * (sample - old)).to_bits())
            });
    }
}

/// The live health of one upstream.
pub struct UpstreamHealth {
    settings: HealthSettings,
    /// Zero of the millisecond clock below.
    origin: Instant,
    in_flight: AtomicU32,
    latency_ms: AtomicF64,
    baseline_ms: AtomicF64,
    latency_samples: AtomicU64,
    error_rate: AtomicF64,
    consecutive_failures: AtomicU32,
    /// End of the cooldown, in ms since `origin` (0: none).
    cooldown_until_ms: AtomicU64,
    cooldown_reason: AtomicU8,
    /// The next unhealthy cooldown, in ms (0: the initial one).
    next_unhealthy_ms: AtomicU64,
    remaining_requests: AtomicU64,
    remaining_tokens: AtomicU64,
}

impl std::fmt::Debug for UpstreamHealth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamHealth")
            .field("view", &self.view())
            .finish()
    }
}

/// An attempt in flight; the count drops when this guard does.
#[derive(Debug)]
#[must_use = "the attempt counts as in flight only while the guard lives"]
pub struct InFlight(Arc<UpstreamHealth>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl UpstreamHealth {
    /// A healthy upstream with no history.
    pub fn new(settings: HealthSettings) -> UpstreamHealth {
        UpstreamHealth {
            settings,
            origin: Instant::now(),
            in_flight: AtomicU32::new(0),
            latency_ms: AtomicF64::new(0.0),
            baseline_ms: AtomicF64::new(0.0),
            latency_samples: AtomicU64::new(0),
            error_rate: AtomicF64::new(0.0),
            consecutive_failures: AtomicU32::new(0),
            cooldown_until_ms: AtomicU64::new(0),
            cooldown_reason: AtomicU8::new(REASON_NONE),
            next_unhealthy_ms: AtomicU64::new(0),
            remaining_requests: AtomicU64::new(UNKNOWN),
            remaining_tokens: AtomicU64::new(UNKNOWN),
        }
    }

    /// The settings in effect.
    pub fn settings(&self) -> &HealthSettings {
        &self.settings
    }

    /// Counts an attempt as in flight until the returned guard is dropped.
    pub fn start_attempt(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    /// Records how an attempt ended and how long it took.
    pub fn record(&self, outcome: AttemptOutcome, latency: Duration) {
        self.record_at(outcome, latency, Instant::now());
    }

    /// [`UpstreamHealth::record`] at a given instant of the monotonic clock.
    pub fn record_at(&self, outcome: AttemptOutcome, latency: Duration, now: Instant) {
        let s = &self.settings;
        let now_ms = self.ms(now);
        match outcome {
            AttemptOutcome::ClientError => {}
            AttemptOutcome::Success => {
                self.error_rate.ewma(0.0, s.error_rate_alpha);
                self.observe_latency(latency);
                self.consecutive_failures.store(0, Ordering::Relaxed);
                self.next_unhealthy_ms.store(0, Ordering::Relaxed);
                if self.cooldown_reason.load(Ordering::Relaxed) == REASON_UNHEALTHY {
                    self.cooldown_until_ms.store(0, Ordering::Relaxed);
                    self.cooldown_reason.store(REASON_NONE, Ordering::Relaxed);
                }
            }
            AttemptOutcome::RateLimited { retry_after } => {
                self.error_rate.ewma(1.0, s.error_rate_alpha);
                let wait = retry_after
                    .unwrap_or(s.rate_limit_cooldown)
                    .min(s.max_rate_limit_cooldown);
                let until = now_ms.saturating_add(millis(wait));
                let before = self.cooldown_until_ms.fetch_max(until, Ordering::Relaxed);
                if until > before {
                    self.cooldown_reason
                        .store(REASON_RATE_LIMITED, Ordering::Relaxed);
                }
            }
            AttemptOutcome::ServerError
            | AttemptOutcome::Timeout
            | AttemptOutcome::ConnectError
            | AttemptOutcome::Broken => {
                self.error_rate.ewma(1.0, s.error_rate_alpha);
                let streak = self
                    .consecutive_failures
                    .fetch_add(1, Ordering::Relaxed)
                    .saturating_add(1);
                if streak >= s.failure_threshold {
                    self.trip(now_ms);
                }
            }
        }
    }

    /// Starts an unhealthy cooldown unless one (of any kind) is running.
    fn trip(&self, now_ms: u64) {
        let s = &self.settings;
        let current = self.cooldown_until_ms.load(Ordering::Relaxed);
        if current > now_ms {
            return;
        }
        let wait = match self.next_unhealthy_ms.load(Ordering::Relaxed) {
            0 => millis(s.unhealthy_cooldown),
            ms => ms,
        };
        let until = now_ms.saturating_add(wait);
        // Only one of several concurrent failures starts the cooldown and doubles it.
        if self
            .cooldown_until_ms
            .compare_exchange(current, until, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            self.cooldown_reason
                .store(REASON_UNHEALTHY, Ordering::Relaxed);
            let next = wait
                .saturating_mul(2)
                .min(millis(s.max_unhealthy_cooldown))
                .max(wait);
            self.next_unhealthy_ms.store(next, Ordering::Relaxed);
            tracing::debug!(cooldown_ms = wait, "upstream marked unhealthy");
        }
    }

    fn observe_latency(&self, latency: Duration) {
        let ms = latency.as_secs_f64() * 1e3;
        if self.latency_samples.fetch_add(1, Ordering::Relaxed) == 0 {
            self.latency_ms.store(ms);
            self.baseline_ms.store(ms);
        } else {
            self.latency_ms.ewma(ms, self.settings.latency_alpha);
            self.baseline_ms.ewma(ms, self.settings.baseline_alpha);
        }
    }

    /// Reads `x-ratelimit-remaining-requests` and `x-ratelimit-remaining-tokens`
    /// from an upstream response; values that are absent or not numbers leave the
    /// last known ones in place.
    pub fn observe_headers(&self, headers: &HeaderMap) {
        let number = |name: &HeaderName| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .filter(|v| *v != UNKNOWN)
        };
        if let Some(n) = number(&REMAINING_REQUESTS) {
            self.remaining_requests.store(n, Ordering::Relaxed);
        }
        if let Some(n) = number(&REMAINING_TOKENS) {
            self.remaining_tokens.store(n, Ordering::Relaxed);
        }
    }

    /// The current view.
    pub fn view(&self) -> HealthView {
        self.view_at(Instant::now())
    }

    /// [`UpstreamHealth::view`] at a given instant of the monotonic clock.
    pub fn view_at(&self, now: Instant) -> HealthView {
        let s = &self.settings;
        let now_ms = self.ms(now);
        let until = self.cooldown_until_ms.load(Ordering::Relaxed);
        let cooldown_remaining_ms = until.saturating_sub(now_ms);
        let latency = self.latency_ms.load();
        let baseline = self.baseline_ms.load();
        let error_rate = self.error_rate.load().clamp(0.0, 1.0);
        let slow = self.latency_samples.load(Ordering::Relaxed) >= s.min_latency_samples
            && latency > baseline * s.degraded_latency_factor
            && latency - baseline >= s.degraded_latency_margin_ms;
        let health = if cooldown_remaining_ms > 0 {
            match self.cooldown_reason.load(Ordering::Relaxed) {
                REASON_RATE_LIMITED => HealthState::CoolingDown,
                _ => HealthState::Unhealthy,
            }
        } else if self.consecutive_failures.load(Ordering::Relaxed) >= s.failure_threshold
            || error_rate > s.degraded_error_rate
            || slow
        {
            HealthState::Degraded
        } else {
            HealthState::Healthy
        };
        let known = |v: u64| (v != UNKNOWN).then_some(v);
        HealthView {
            health,
            latency_ewma_ms: latency,
            in_flight: self.in_flight.load(Ordering::Relaxed),
            error_rate,
            cooldown_remaining_ms,
            ratelimit_remaining_requests: known(self.remaining_requests.load(Ordering::Relaxed)),
            ratelimit_remaining_tokens: known(self.remaining_tokens.load(Ordering::Relaxed)),
        }
    }

    /// Forgets the failures counted so far (the streak, the error rate and an
    /// unhealthy cooldown; a rate-limit cooldown stays): the upstream's
    /// credentials changed, and what the old ones met says nothing of the new.
    pub fn forgive_failures(&self) {
        self.error_rate.0.store(0f64.to_bits(), Ordering::Relaxed);
        self.consecutive_failures.store(0, Ordering::Relaxed);
        self.next_unhealthy_ms.store(0, Ordering::Relaxed);
        if self.cooldown_reason.load(Ordering::Relaxed) == REASON_UNHEALTHY {
            self.cooldown_until_ms.store(0, Ordering::Relaxed);
            self.cooldown_reason.store(REASON_NONE, Ordering::Relaxed);
        }
    }

    /// Consecutive failed attempts since the last success.
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures.load(Ordering::Relaxed)
    }

    fn ms(&self, now: Instant) -> u64 {
        millis(now.saturating_duration_since(self.origin))
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Health of every configured upstream, by name; it outlives config reloads.
#[derive(Debug, Default)]
pub struct HealthRegistry {
    settings: HealthSettings,
    upstreams: Mutex<HashMap<String, Arc<UpstreamHealth>>>,
}

impl HealthRegistry {
    /// An empty registry whose upstreams use `settings`.
    pub fn new(settings: HealthSettings) -> HealthRegistry {
        HealthRegistry {
            settings,
            upstreams: Mutex::new(HashMap::new()),
        }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<UpstreamHealth>>> {
        // The map stays consistent even if a holder panicked: every operation is one call.
        self.upstreams
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The health of upstream `name`, created healthy on first use.
    pub fn get_or_create(&self, name: &str) -> Arc<UpstreamHealth> {
        let mut map = self.map();
        if let Some(health) = map.get(name) {
            return health.clone();
        }
        let health = Arc::new(UpstreamHealth::new(self.settings));
        map.insert(name.to_string(), health.clone());
        health
    }

    /// The health of upstream `name`, if it is known.
    pub fn get(&self, name: &str) -> Option<Arc<UpstreamHealth>> {
        self.map().get(name).cloned()
    }

    /// Forgets every upstream not in `names` (after a reload removed them).
    pub fn retain<'a>(&self, names: impl IntoIterator<Item = &'a str>) {
        let keep: std::collections::HashSet<&str> = names.into_iter().collect();
        self.map().retain(|name, _| keep.contains(name.as_str()));
    }

    /// Every known upstream's view, sorted by name.
    pub fn views(&self) -> Vec<(String, HealthView)> {
        let mut views: Vec<_> = self
            .map()
            .iter()
            .map(|(n, h)| (n.clone(), h.view()))
            .collect();
        views.sort_by(|a, b| a.0.cmp(&b.0));
        views
    }
}

#[cfg(test)]
mod tests;
