//! Health tracking with real time (short durations, generous bounds).

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderValue};
use switchyard::upstream::health::{
    AttemptOutcome, HealthRegistry, HealthSettings, HealthState, parse_retry_after, retry_after,
};

fn registry() -> HealthRegistry {
    HealthRegistry::new(HealthSettings {
        unhealthy_cooldown: Duration::from_millis(500),
        max_unhealthy_cooldown: Duration::from_millis(2000),
        rate_limit_cooldown: Duration::from_millis(500),
        ..HealthSettings::default()
    })
}

const MS: Duration = Duration::from_millis(1);

#[test]
fn retry_after_headers() {
    let mut headers = HeaderMap::new();
    assert_eq!(retry_after(&headers), None);
    headers.insert("retry-after", HeaderValue::from_static("3"));
    assert_eq!(retry_after(&headers), Some(Duration::from_secs(3)));
    headers.insert("x-ms-retry-after-ms", HeaderValue::from_static("250"));
    assert_eq!(retry_after(&headers), Some(Duration::from_millis(250)));
    headers.insert("retry-after-ms", HeaderValue::from_static("120"));
    assert_eq!(retry_after(&headers), Some(Duration::from_millis(120)));

    let now = std::time::SystemTime::now();
    let later = httpdate::fmt_http_date(now + Duration::from_secs(120));
    let wait = parse_retry_after(&later, now).unwrap();
    assert!(
        wait > Duration::from_secs(118) && wait <= Duration::from_secs(120),
        "{wait:?}"
    );
    assert_eq!(parse_retry_after("tomorrow", now), None);
}

#[tokio::test]
async fn rate_limit_cooldown_runs_out() {
    let registry = registry();
    let health = registry.get_or_create("azure-eastus");
    let mut headers = HeaderMap::new();
    headers.insert("retry-after-ms", HeaderValue::from_static("600"));
    health.record(
        AttemptOutcome::RateLimited {
            retry_after: retry_after(&headers),
        },
        MS,
    );
    let view = health.view();
    assert_eq!(view.health, HealthState::CoolingDown);
    assert!(
        view.cooldown_remaining_ms > 0 && view.cooldown_remaining_ms <= 600,
        "{view:?}"
    );
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let view = health.view();
    assert_eq!(view.cooldown_remaining_ms, 0);
    assert_ne!(view.health, HealthState::CoolingDown);

    // Without a retry-after: the short default.
    health.record(AttemptOutcome::RateLimited { retry_after: None }, MS);
    assert_eq!(health.view().health, HealthState::CoolingDown);
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_ne!(health.view().health, HealthState::CoolingDown);
}

#[tokio::test]
async fn unhealthy_then_retried_then_healthy() {
    let registry = registry();
    let health = registry.get_or_create("bedrock-us");
    for outcome in [
        AttemptOutcome::ConnectError,
        AttemptOutcome::Timeout,
        AttemptOutcome::ServerError,
    ] {
        health.record(outcome, MS);
    }
    let view = health.view();
    assert_eq!(view.health, HealthState::Unhealthy);
    assert!(
        view.cooldown_remaining_ms > 0 && view.cooldown_remaining_ms <= 500,
        "{view:?}"
    );

    tokio::time::sleep(Duration::from_millis(900)).await;
    // The cooldown ran out: on probation, policies may try it again.
    assert_eq!(health.view().health, HealthState::Degraded);
    health.record(AttemptOutcome::Broken, MS);
    let view = health.view();
    assert_eq!(view.health, HealthState::Unhealthy, "failed again");
    assert!(
        view.cooldown_remaining_ms > 500 && view.cooldown_remaining_ms <= 1000,
        "doubled: {view:?}"
    );

    health.record(AttemptOutcome::Success, Duration::from_millis(20));
    let view = health.view();
    assert_eq!(view.cooldown_remaining_ms, 0);
    assert_ne!(view.health, HealthState::Unhealthy);
    assert!(
        view.error_rate > 0.0,
        "the failures are still in the recent error rate"
    );
    assert_eq!(health.consecutive_failures(), 0);
}

#[tokio::test]
async fn in_flight_and_registry_across_reloads() {
    let registry = registry();
    let health = registry.get_or_create("openai");
    let guards: Vec<_> = (0..3).map(|_| health.start_attempt()).collect();
    assert_eq!(
        registry.get_or_create("openai").view().in_flight,
        3,
        "same state after a reload"
    );
    drop(guards);
    assert_eq!(health.view().in_flight, 0);

    registry.get_or_create("removed");
    registry.retain(["openai"]);
    assert!(registry.get("removed").is_none());
    assert!(Arc::ptr_eq(&registry.get("openai").unwrap(), &health));
}
