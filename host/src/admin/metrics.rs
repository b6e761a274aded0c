//! The gateway's Prometheus metrics, with the names fixed by the design.
//!
//! [`Metrics`] owns the registry and one handle per metric. Recording is `&self`,
//! thread-safe and allocation-free once a label set has been seen (see
//! [`Series`](super::series)). Label values are configuration names (routes,
//! upstreams, policies, configured models, tenants), never raw client input.

use std::sync::atomic::{AtomicI64, AtomicU64};
use std::time::Duration;

use prometheus_client::encoding::text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use super::series::Series;

/// Content type of [`Metrics::encode`]'s output (OpenMetrics text, which Prometheus
/// scrapes natively).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Label value used when a request was not served by any upstream, or has no tenant.
pub const NONE_LABEL: &str = "none";

/// Policy decision time buckets, seconds: 1 µs to 100 ms.
const DECISION_BUCKETS: [f64; 16] = [
    0.000_001,
    0.000_002_5,
    0.000_005,
    0.000_01,
    0.000_025,
    0.000_05,
    0.000_1,
    0.000_25,
    0.000_5,
    0.001,
    0.002_5,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
];

/// Request duration buckets, seconds: 5 ms to 10 minutes (long streams).
const REQUEST_BUCKETS: [f64; 16] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];

/// Time to first token buckets, seconds: 5 ms to 2 minutes.
const FIRST_TOKEN_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

fn decision_histogram() -> Histogram {
    Histogram::new(DECISION_BUCKETS)
}

fn request_histogram() -> Histogram {
    Histogram::new(REQUEST_BUCKETS)
}

type CostCounter = Counter<f64, AtomicU64>;
type HealthGauge = Gauge<i64, AtomicI64>;

/// Every metric the gateway exports, and the registry that encodes them.
///
/// Create one per process and share it (`Arc<Metrics>`); it outlives reloads, so
/// counters never reset when a snapshot is swapped.
pub struct Metrics {
    registry: Registry,
    requests: Series<Counter, 3>,
    attempts: Series<Counter, 2>,
    fallbacks: Counter,
    policy_decision: Series<Histogram, 1>,
    policy_errors: Series<Counter, 2>,
    reloads: Series<Counter, 1>,
    request_duration: Series<Histogram, 1>,
    first_token: Histogram,
    tokens: Series<Counter, 3>,
    cost: Series<CostCounter, 3>,
    upstream_health: Series<HealthGauge, 1>,
    stale_credentials: Series<HealthGauge, 1>,
    observe_dropped: Counter,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// `switchyard_upstream_health` value of a healthy upstream.
    pub const HEALTH_HEALTHY: i64 = 0;
    /// `switchyard_upstream_health` value of a degraded upstream.
    pub const HEALTH_DEGRADED: i64 = 1;
    /// `switchyard_upstream_health` value of an upstream cooling down.
    pub const HEALTH_COOLING_DOWN: i64 = 2;
    /// `switchyard_upstream_health` value of an unhealthy upstream.
    pub const HEALTH_UNHEALTHY: i64 = 3;

    /// Registers every metric. `switchyard_build_info` is set to 1 for this build's
    /// version; `switchyard_policy_reloads_total` starts with both results at 0.
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let requests = Series::new(["route", "upstream", "status"]);
        let attempts = Series::new(["upstream", "outcome"]);
        let fallbacks = Counter::default();
        let policy_decision = Series::with_constructor(["policy"], decision_histogram);
        let policy_errors = Series::new(["policy", "kind"]);
        let reloads = Series::new(["result"]);
        let request_duration = Series::with_constructor(["route"], request_histogram);
        let first_token = Histogram::new(FIRST_TOKEN_BUCKETS);
        let tokens = Series::new(["upstream", "model", "direction"]);
        let cost = Series::new(["upstream", "model", "tenant"]);
        let upstream_health = Series::new(["upstream"]);
        let stale_credentials = Series::new(["upstream"]);
        let observe_dropped = Counter::default();
        let build_info: Series<Gauge, 1> = Series::new(["version"]);

        // Counters get their `_total` suffix and histograms their unit from the
        // encoder; prometheus-client appends a full stop to each help text.
        registry.register(
            "switchyard_requests",
            "Client requests answered, by route, serving upstream (\"none\" when no upstream served) and HTTP status",
            requests.clone(),
        );
        registry.register(
            "switchyard_upstream_attempts",
            "Upstream attempts by outcome: success, client-error, rate-limited, server-error, refused, not-found, timeout, connect-error, request-error, broken",
            attempts.clone(),
        );
        registry.register(
            "switchyard_fallbacks",
            "Times a request moved on to the next target of its plan",
            fallbacks.clone(),
        );
        registry.register_with_unit(
            "switchyard_policy_decision",
            "Time one policy stage took to decide",
            Unit::Seconds,
            policy_decision.clone(),
        );
        registry.register(
            "switchyard_policy_errors",
            "Policy failures by kind: trap, deadline, memory, invalid-decision",
            policy_errors.clone(),
        );
        registry.register(
            "switchyard_policy_reloads",
            "Snapshot reloads by result: success, error",
            reloads.clone(),
        );
        registry.register_with_unit(
            "switchyard_request_duration",
            "Time from request received to response end (streams included), by route",
            Unit::Seconds,
            request_duration.clone(),
        );
        registry.register_with_unit(
            "switchyard_time_to_first_token",
            "Time from request received to the first response byte from the upstream",
            Unit::Seconds,
            first_token.clone(),
        );
        registry.register(
            "switchyard_tokens",
            "Tokens reported by upstream usage, by direction: input, output",
            tokens.clone(),
        );
        registry.register(
            "switchyard_cost_usd",
            "Estimated cost in US dollars from usage and configured prices, by tenant (\"none\" without one)",
            cost.clone(),
        );
        registry.register(
            "switchyard_upstream_health",
            "Upstream health state: 0 healthy, 1 degraded, 2 cooling-down, 3 unhealthy",
            upstream_health.clone(),
        );
        registry.register(
            "switchyard_upstream_stale_credentials",
            "1 while an upstream serves with its previous credentials because its new ones could not be read",
            stale_credentials.clone(),
        );
        registry.register(
            "switchyard_observe_dropped",
            "Policy observe outcomes dropped because the observe queue was full",
            observe_dropped.clone(),
        );
        registry.register(
            "switchyard_build_info",
            "Build information; the value is always 1",
            build_info.clone(),
        );

        build_info.with([env!("CARGO_PKG_VERSION")], |g| g.set(1));
        for result in ["success", "error"] {
            reloads.with([result], |_| ());
        }

        Metrics {
            registry,
            requests,
            attempts,
            fallbacks,
            policy_decision,
            policy_errors,
            reloads,
            request_duration,
            first_token,
            tokens,
            cost,
            upstream_health,
            stale_credentials,
            observe_dropped,
        }
    }

    /// Records a finished client request: `switchyard_requests_total` and
    /// `switchyard_request_duration_seconds`. `upstream` is `None` when no upstream
    /// served it (auth failure, reject, no route, every attempt failed before a
    /// response).
    pub fn request_finished(
        &self,
        route: &str,
        upstream: Option<&str>,
        status: u16,
        duration: Duration,
    ) {
        let mut buf = [0u8; 5];
        let status = status_str(status, &mut buf);
        self.requests
            .with([route, non_empty(upstream), status], |c| c.inc());
        self.request_duration
            .with([route], |h| h.observe(duration.as_secs_f64()));
    }

    /// Counts one upstream attempt; `outcome` is one of `success`, `client-error`,
    /// `rate-limited`, `server-error`, `refused`, `not-found`, `timeout`,
    /// `connect-error`, `request-error`, `broken`.
    pub fn attempt(&self, upstream: &str, outcome: &str) {
        self.attempts.with([upstream, outcome], |c| c.inc());
    }

    /// Counts a fallback to the next target of a plan.
    pub fn fallback(&self) {
        self.fallbacks.inc();
    }

    /// Records how long one policy stage took to decide.
    pub fn policy_decision(&self, policy: &str, elapsed: Duration) {
        self.policy_decision
            .with([policy], |h| h.observe(elapsed.as_secs_f64()));
    }

    /// Counts a policy failure; `kind` is one of `trap`, `deadline`, `memory`,
    /// `invalid-decision`.
    pub fn policy_error(&self, policy: &str, kind: &str) {
        self.policy_errors.with([policy, kind], |c| c.inc());
    }

    /// Counts a snapshot reload attempt (`result="success"` or `"error"`).
    pub fn reload(&self, ok: bool) {
        let result = if ok { "success" } else { "error" };
        self.reloads.with([result], |c| c.inc());
    }

    /// Records the time to the first response byte of a request.
    pub fn time_to_first_token(&self, d: Duration) {
        self.first_token.observe(d.as_secs_f64());
    }

    /// Adds the tokens of one response. `model` must be a configured model name.
    pub fn tokens(&self, upstream: &str, model: &str, input: u64, output: u64) {
        self.tokens
            .with([upstream, model, "input"], |c| c.inc_by(input));
        self.tokens
            .with([upstream, model, "output"], |c| c.inc_by(output));
    }

    /// Adds the estimated cost of one response in US dollars. Negative and
    /// non-finite amounts are ignored (a counter never goes down).
    pub fn cost(&self, upstream: &str, model: &str, tenant: Option<&str>, usd: f64) {
        if !usd.is_finite() || usd < 0.0 {
            return;
        }
        self.cost
            .with([upstream, model, non_empty(tenant)], |c| c.inc_by(usd));
    }

    /// Sets an upstream's health state: [`Metrics::HEALTH_HEALTHY`] (0),
    /// [`Metrics::HEALTH_DEGRADED`] (1), [`Metrics::HEALTH_COOLING_DOWN`] (2) or
    /// [`Metrics::HEALTH_UNHEALTHY`] (3).
    pub fn upstream_health(&self, upstream: &str, value: i64) {
        self.upstream_health.with([upstream], |g| g.set(value));
    }

    /// Sets whether an upstream serves with stale credentials (see
    /// [`crate::snapshot::UpstreamEntry::stale_credentials`]).
    pub fn stale_credentials(&self, upstream: &str, stale: bool) {
        self.stale_credentials
            .with([upstream], |g| g.set(i64::from(stale)));
    }

    /// Forgets the health and credential gauges of every upstream `current`
    /// refuses: one a reload removed must not keep reporting its last state.
    pub fn retain_upstream_health(&self, current: impl Fn(&str) -> bool) {
        self.upstream_health.retain(|[upstream]| current(upstream));
        self.stale_credentials
            .retain(|[upstream]| current(upstream));
    }

    /// Counts a policy outcome dropped because the observe queue was full.
    pub fn observe_dropped(&self) {
        self.observe_dropped.inc();
    }

    /// The whole registry in the OpenMetrics text exposition format
    /// (content type [`CONTENT_TYPE`]), ending with `# EOF`.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(8 * 1024);
        // Writing to a String cannot fail, and no metric here produces an error of
        // its own, so an error would be a bug in the encoder.
        text::encode(&mut out, &self.registry).expect("encoding metrics into a String cannot fail");
        out
    }
}

/// `value`, or [`NONE_LABEL`] when absent or empty.
fn non_empty(value: Option<&str>) -> &str {
    match value {
        Some(v) if !v.is_empty() => v,
        _ => NONE_LABEL,
    }
}

/// Formats an HTTP status code into `buf` without allocating.
fn status_str(status: u16, buf: &mut [u8; 5]) -> &str {
    let mut n = status;
    let mut start = buf.len();
    loop {
        start -= 1;
        buf[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    // Only ASCII digits were written.
    std::str::from_utf8(&buf[start..]).unwrap_or("0")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of the sample line starting with `series ` (exact series text).
    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .map(|v| v.parse().expect("sample value"))
    }

    #[test]
    fn status_codes_format_without_allocating() {
        let mut buf = [0u8; 5];
        assert_eq!(status_str(200, &mut buf), "200");
        assert_eq!(status_str(0, &mut buf), "0");
        assert_eq!(status_str(7, &mut buf), "7");
        assert_eq!(status_str(65535, &mut buf), "65535");
    }

    #[test]
    fn fresh_registry_exposes_build_info_and_reload_series() {
        let text = Metrics::new().encode();
        let version = env!("CARGO_PKG_VERSION");
        assert_eq!(
            sample(
                &text,
                &format!("switchyard_build_info{{version=\"{version}\"}}")
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(&text, "switchyard_policy_reloads_total{result=\"success\"}"),
            Some(0.0)
        );
        assert_eq!(
            sample(&text, "switchyard_policy_reloads_total{result=\"error\"}"),
            Some(0.0)
        );
        assert_eq!(sample(&text, "switchyard_fallbacks_total"), Some(0.0));
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn every_metric_records_under_its_design_name() {
        let m = Metrics::new();
        m.request_finished(
            "chat",
            Some("azure-eastus"),
            200,
            Duration::from_millis(120),
        );
        m.request_finished("chat", Some("azure-eastus"), 200, Duration::from_millis(80));
        m.request_finished("chat", None, 503, Duration::from_millis(1));
        m.request_finished("chat", Some(""), 401, Duration::from_millis(1));
        m.attempt("azure-eastus", "rate-limited");
        m.attempt("azure-eastus", "success");
        m.attempt("azure-eastus", "success");
        m.fallback();
        m.fallback();
        m.policy_decision("cost", Duration::from_micros(3));
        m.policy_error("cost", "deadline");
        m.reload(true);
        m.reload(false);
        m.reload(false);
        m.time_to_first_token(Duration::from_millis(40));
        m.tokens("azure-eastus", "gpt-4o", 300, 12);
        m.tokens("azure-eastus", "gpt-4o", 100, 8);
        m.cost("azure-eastus", "gpt-4o", Some("eu-bank"), 0.25);
        m.cost("azure-eastus", "gpt-4o", Some("eu-bank"), 0.5);
        m.cost("azure-eastus", "gpt-4o", None, 1.0);
        m.cost("azure-eastus", "gpt-4o", None, f64::NAN);
        m.cost("azure-eastus", "gpt-4o", None, -3.0);
        m.upstream_health("azure-eastus", Metrics::HEALTH_COOLING_DOWN);
        m.upstream_health("bedrock-us", Metrics::HEALTH_UNHEALTHY);
        m.upstream_health("bedrock-us", Metrics::HEALTH_HEALTHY);
        m.observe_dropped();

        let text = m.encode();
        let expect = [
            (
                r#"switchyard_requests_total{route="chat",upstream="azure-eastus",status="200"}"#,
                2.0,
            ),
            (
                r#"switchyard_requests_total{route="chat",upstream="none",status="503"}"#,
                1.0,
            ),
            (
                r#"switchyard_requests_total{route="chat",upstream="none",status="401"}"#,
                1.0,
            ),
            (
                r#"switchyard_upstream_attempts_total{upstream="azure-eastus",outcome="success"}"#,
                2.0,
            ),
            (
                r#"switchyard_upstream_attempts_total{upstream="azure-eastus",outcome="rate-limited"}"#,
                1.0,
            ),
            ("switchyard_fallbacks_total", 2.0),
            (
                r#"switchyard_policy_decision_seconds_count{policy="cost"}"#,
                1.0,
            ),
            (
                r#"switchyard_policy_decision_seconds_bucket{le="0.000005",policy="cost"}"#,
                1.0,
            ),
            (
                r#"switchyard_policy_decision_seconds_bucket{le="0.0000025",policy="cost"}"#,
                0.0,
            ),
            (
                r#"switchyard_policy_errors_total{policy="cost",kind="deadline"}"#,
                1.0,
            ),
            (r#"switchyard_policy_reloads_total{result="success"}"#, 1.0),
            (r#"switchyard_policy_reloads_total{result="error"}"#, 2.0),
            (
                r#"switchyard_request_duration_seconds_count{route="chat"}"#,
                4.0,
            ),
            (
                r#"switchyard_request_duration_seconds_bucket{le="0.1",route="chat"}"#,
                3.0,
            ),
            ("switchyard_time_to_first_token_seconds_count", 1.0),
            (
                r#"switchyard_tokens_total{upstream="azure-eastus",model="gpt-4o",direction="input"}"#,
                400.0,
            ),
            (
                r#"switchyard_tokens_total{upstream="azure-eastus",model="gpt-4o",direction="output"}"#,
                20.0,
            ),
            (
                r#"switchyard_cost_usd_total{upstream="azure-eastus",model="gpt-4o",tenant="eu-bank"}"#,
                0.75,
            ),
            (
                r#"switchyard_cost_usd_total{upstream="azure-eastus",model="gpt-4o",tenant="none"}"#,
                1.0,
            ),
            (
                r#"switchyard_upstream_health{upstream="azure-eastus"}"#,
                2.0,
            ),
            (r#"switchyard_upstream_health{upstream="bedrock-us"}"#, 0.0),
            ("switchyard_observe_dropped_total", 1.0),
        ];
        for (series, value) in expect {
            assert_eq!(sample(&text, series), Some(value), "{series} in\n{text}");
        }
        for name in [
            "switchyard_requests",
            "switchyard_upstream_attempts",
            "switchyard_fallbacks",
            "switchyard_policy_decision_seconds",
            "switchyard_policy_errors",
            "switchyard_policy_reloads",
            "switchyard_request_duration_seconds",
            "switchyard_time_to_first_token_seconds",
            "switchyard_tokens",
            "switchyard_cost_usd",
            "switchyard_upstream_health",
            "switchyard_observe_dropped",
            "switchyard_build_info",
        ] {
            assert!(
                text.contains(&format!("# TYPE {name} ")),
                "{name} in\n{text}"
            );
        }
    }

    #[test]
    fn recording_is_safe_across_threads() {
        let m = std::sync::Arc::new(Metrics::new());
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let m = m.clone();
                std::thread::spawn(move || {
                    for i in 0..1000 {
                        m.attempt(["a", "b"][i % 2], "success");
                        m.request_finished("r", Some(["a", "b"][t % 2]), 200, Duration::ZERO);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let text = m.encode();
        assert_eq!(
            sample(
                &text,
                r#"switchyard_upstream_attempts_total{upstream="a",outcome="success"}"#
            ),
            Some(2000.0)
        );
        assert_eq!(
            sample(
                &text,
                r#"switchyard_requests_total{route="r",upstream="b",status="200"}"#
            ),
            Some(2000.0)
        );
    }

    /// Not a timing assertion: prints the per-call cost of the hot path so a human
    /// can compare (`cargo test -p switchyard --lib admin::metrics -- --nocapture`).
    #[test]
    fn hot_path_cost_is_printed() {
        let m = Metrics::new();
        let n = 100_000u32;
        let start = std::time::Instant::now();
        for _ in 0..n {
            m.request_finished("chat", Some("azure-eastus"), 200, Duration::from_millis(5));
            m.attempt("azure-eastus", "success");
            m.tokens("azure-eastus", "gpt-4o", 10, 10);
        }
        let per_request = start.elapsed() / n;
        eprintln!("metrics hot path: {per_request:?} per request (4 series + 1 histogram)");
        let text = m.encode();
        assert_eq!(
            sample(
                &text,
                r#"switchyard_upstream_attempts_total{upstream="azure-eastus",outcome="success"}"#
            ),
            Some(f64::from(n))
        );
    }
}
