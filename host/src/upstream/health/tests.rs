//! Unit tests of health tracking, on a synthetic monotonic clock.

use super::*;
use http::HeaderValue;

const MS: Duration = Duration::from_millis(1);

fn health() -> UpstreamHealth {
    UpstreamHealth::new(HealthSettings::default())
}

#[test]
fn starts_healthy_and_counts_in_flight() {
    let h = Arc::new(health());
    let view = h.view();
    assert_eq!(view.health, HealthState::Healthy);
    assert_eq!((view.in_flight, view.cooldown_remaining_ms), (0, 0));
    assert_eq!(view.ratelimit_remaining_requests, None);
    let a = h.start_attempt();
    let b = h.start_attempt();
    assert_eq!(h.view().in_flight, 2);
    drop(a);
    assert_eq!(h.view().in_flight, 1);
    drop(b);
    assert_eq!(h.view().in_flight, 0);
}

#[test]
fn rate_limit_cooldown_uses_retry_after_or_default() {
    let h = health();
    let t0 = Instant::now();
    h.record_at(
        AttemptOutcome::RateLimited {
            retry_after: Some(Duration::from_secs(4)),
        },
        MS,
        t0,
    );
    let view = h.view_at(t0);
    assert_eq!(view.health, HealthState::CoolingDown);
    assert!(
        (3_990..=4_000).contains(&view.cooldown_remaining_ms),
        "{view:?}"
    );
    // A success does not cut the provider's own wait short.
    h.record_at(AttemptOutcome::Success, MS, t0 + Duration::from_secs(1));
    assert_eq!(
        h.view_at(t0 + Duration::from_secs(1)).health,
        HealthState::CoolingDown
    );
    assert_ne!(
        h.view_at(t0 + Duration::from_secs(5)).health,
        HealthState::CoolingDown
    );

    let h = health();
    h.record_at(AttemptOutcome::RateLimited { retry_after: None }, MS, t0);
    assert_eq!(
        h.view_at(t0 + Duration::from_millis(500)).health,
        HealthState::CoolingDown
    );
    assert_eq!(
        h.view_at(t0 + Duration::from_millis(1100))
            .cooldown_remaining_ms,
        0
    );

    let h = health();
    h.record_at(
        AttemptOutcome::RateLimited {
            retry_after: Some(Duration::from_secs(86_400)),
        },
        MS,
        t0,
    );
    assert!(h.view_at(t0).cooldown_remaining_ms <= 300_000, "capped");
}

#[test]
fn consecutive_failures_make_unhealthy_then_probation_then_healthy() {
    let h = health();
    let t0 = Instant::now();
    h.record_at(AttemptOutcome::ConnectError, MS, t0);
    h.record_at(AttemptOutcome::Timeout, MS, t0);
    assert_ne!(
        h.view_at(t0).health,
        HealthState::Unhealthy,
        "two failures are not enough"
    );
    h.record_at(AttemptOutcome::ServerError, MS, t0);
    let view = h.view_at(t0);
    assert_eq!(view.health, HealthState::Unhealthy);
    assert_eq!(view.cooldown_remaining_ms, 5_000);

    // Cooldown over: on probation, tried again.
    let t1 = t0 + Duration::from_millis(5_001);
    assert_eq!(h.view_at(t1).health, HealthState::Degraded);
    // It fails again: a doubled cooldown.
    h.record_at(AttemptOutcome::ServerError, MS, t1);
    assert_eq!(h.view_at(t1).cooldown_remaining_ms, 10_000);
    // More failures during the cooldown do not extend it.
    h.record_at(AttemptOutcome::Broken, MS, t1 + MS);
    assert_eq!(h.view_at(t1).cooldown_remaining_ms, 10_000);

    // A success ends it all.
    h.record_at(AttemptOutcome::Success, MS, t1 + Duration::from_secs(1));
    let view = h.view_at(t1 + Duration::from_secs(1));
    assert_eq!(view.cooldown_remaining_ms, 0);
    assert_eq!(h.consecutive_failures(), 0);
    assert_ne!(view.health, HealthState::Unhealthy);
    // …and the backoff restarts from the first cooldown.
    let t2 = t1 + Duration::from_secs(2);
    for _ in 0..3 {
        h.record_at(AttemptOutcome::Timeout, MS, t2);
    }
    assert_eq!(h.view_at(t2).cooldown_remaining_ms, 5_000);
}

#[test]
fn forgiven_failures_leave_a_rate_limit_alone() {
    let h = health();
    let t0 = Instant::now();
    for _ in 0..4 {
        h.record_at(AttemptOutcome::ServerError, MS, t0);
    }
    assert_eq!(h.view_at(t0).health, HealthState::Unhealthy);
    h.forgive_failures();
    let view = h.view_at(t0);
    assert_eq!(view.health, HealthState::Healthy);
    assert_eq!((view.cooldown_remaining_ms, view.error_rate), (0, 0.0));
    assert_eq!(h.consecutive_failures(), 0);
    // The backoff starts over from the first cooldown.
    for _ in 0..3 {
        h.record_at(AttemptOutcome::Timeout, MS, t0);
    }
    assert_eq!(h.view_at(t0).cooldown_remaining_ms, 5_000);

    // A 429's cooldown is the provider's word on load, not on credentials.
    let limited = health();
    limited.record_at(
        AttemptOutcome::RateLimited {
            retry_after: Some(Duration::from_secs(4)),
        },
        MS,
        t0,
    );
    limited.forgive_failures();
    assert_eq!(limited.view_at(t0).health, HealthState::CoolingDown);
}

#[test]
fn backoff_is_capped() {
    let h = health();
    let mut t = Instant::now();
    for _ in 0..3 {
        h.record_at(AttemptOutcome::ConnectError, MS, t);
    }
    let mut last = 0;
    for _ in 0..8 {
        last = h.view_at(t).cooldown_remaining_ms;
        t += Duration::from_millis(last + 1);
        h.record_at(AttemptOutcome::ConnectError, MS, t);
    }
    assert_eq!(last, 60_000);
}

#[test]
fn client_errors_are_not_failures() {
    let h = health();
    let t0 = Instant::now();
    for _ in 0..10 {
        h.record_at(AttemptOutcome::ClientError, MS, t0);
    }
    let view = h.view_at(t0);
    assert_eq!(view.health, HealthState::Healthy);
    assert_eq!(view.error_rate, 0.0);
}

#[test]
fn client_errors_do_not_clear_failures_either() {
    let h = health();
    let t0 = Instant::now();
    h.record_at(AttemptOutcome::ServerError, MS, t0);
    h.record_at(AttemptOutcome::ServerError, MS, t0);
    let rate = h.view_at(t0).error_rate;
    // Bad requests between real failures: the third failure still trips it.
    for _ in 0..10 {
        h.record_at(AttemptOutcome::ClientError, MS, t0);
    }
    assert_eq!(h.view_at(t0).error_rate, rate);
    h.record_at(AttemptOutcome::ServerError, MS, t0);
    let view = h.view_at(t0);
    assert_eq!(view.health, HealthState::Unhealthy, "{view:?}");
    // … and a bad request during the cooldown does not end it.
    h.record_at(AttemptOutcome::ClientError, MS, t0);
    assert_eq!(h.view_at(t0).health, HealthState::Unhealthy);
}

#[test]
fn error_rate_degrades_and_recovers() {
    let h = health();
    let t0 = Instant::now();
    for outcome in [
        AttemptOutcome::ServerError,
        AttemptOutcome::Success,
        AttemptOutcome::ServerError,
    ] {
        h.record_at(outcome, MS, t0);
    }
    for _ in 0..2 {
        h.record_at(AttemptOutcome::ServerError, MS, t0);
        h.record_at(AttemptOutcome::Success, MS, t0);
    }
    let view = h.view_at(t0);
    assert!(view.error_rate > 0.2, "{view:?}");
    assert_eq!(view.health, HealthState::Degraded);
    for _ in 0..40 {
        h.record_at(AttemptOutcome::Success, MS, t0);
    }
    let view = h.view_at(t0);
    assert!(view.error_rate < 0.02, "{view:?}");
    assert_eq!(view.health, HealthState::Healthy);
}

#[test]
fn latency_well_above_baseline_degrades() {
    let h = health();
    let t0 = Instant::now();
    for _ in 0..50 {
        h.record_at(AttemptOutcome::Success, Duration::from_millis(20), t0);
    }
    let view = h.view_at(t0);
    assert!((view.latency_ewma_ms - 20.0).abs() < 0.5, "{view:?}");
    assert_eq!(view.health, HealthState::Healthy);
    for _ in 0..10 {
        h.record_at(AttemptOutcome::Success, Duration::from_millis(500), t0);
    }
    assert_eq!(h.view_at(t0).health, HealthState::Degraded);
}

#[test]
fn ratelimit_headers() {
    let h = health();
    let mut headers = HeaderMap::new();
    headers.insert(
        "x-ratelimit-remaining-requests",
        HeaderValue::from_static("42"),
    );
    headers.insert(
        "x-ratelimit-remaining-tokens",
        HeaderValue::from_static("9000"),
    );
    h.observe_headers(&headers);
    let view = h.view();
    assert_eq!(view.ratelimit_remaining_requests, Some(42));
    assert_eq!(view.ratelimit_remaining_tokens, Some(9000));
    let mut headers = HeaderMap::new();
    headers.insert(
        "x-ratelimit-remaining-requests",
        HeaderValue::from_static("nope"),
    );
    h.observe_headers(&headers);
    assert_eq!(
        h.view().ratelimit_remaining_requests,
        Some(42),
        "garbage keeps the last value"
    );
}

#[test]
fn registry_keeps_and_forgets() {
    let registry = HealthRegistry::default();
    let a = registry.get_or_create("a");
    a.record(AttemptOutcome::ServerError, MS);
    assert!(Arc::ptr_eq(&a, &registry.get_or_create("a")));
    registry.get_or_create("b");
    registry.retain(["a"]);
    assert!(registry.get("b").is_none());
    assert!(registry.get("a").is_some());
    assert_eq!(registry.views().len(), 1);
}

#[test]
fn state_names_and_gauge() {
    let states = [
        HealthState::Healthy,
        HealthState::Degraded,
        HealthState::CoolingDown,
        HealthState::Unhealthy,
    ];
    let names: Vec<_> = states.iter().map(|s| s.as_str()).collect();
    assert_eq!(names, ["healthy", "degraded", "cooling-down", "unhealthy"]);
    let gauges: Vec<_> = states.iter().map(|s| s.gauge_value()).collect();
    assert_eq!(gauges, [0, 1, 2, 3]);
}
