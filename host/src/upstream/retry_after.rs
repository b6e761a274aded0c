//! How long an upstream asked us to wait: `retry-after-ms`, `x-ms-retry-after-ms`
//! (Azure) and `retry-after` (seconds or an HTTP-date).

use std::time::{Duration, SystemTime};

use http::HeaderMap;

/// The wait an upstream response asks for, if it names one. Millisecond headers
/// win over `retry-after` because they are more precise.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    retry_after_at(headers, SystemTime::now())
}

/// [`retry_after`], with `now` as the reference for an HTTP-date.
pub fn retry_after_at(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    text("retry-after-ms")
        .and_then(parse_retry_after_ms)
        .or_else(|| text("x-ms-retry-after-ms").and_then(parse_retry_after_ms))
        .or_else(|| text("retry-after").and_then(|v| parse_retry_after(v, now)))
}

/// Parses a `retry-after` value: delay seconds (a decimal fraction is accepted) or
/// an HTTP-date, which is turned into the time left from `now` (zero when past).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Some(secs) = parse_non_negative(value) {
        return Duration::try_from_secs_f64(secs).ok();
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Parses a millisecond value (`retry-after-ms`, `x-ms-retry-after-ms`).
pub fn parse_retry_after_ms(value: &str) -> Option<Duration> {
    let ms = parse_non_negative(value.trim())?;
    Duration::try_from_secs_f64(ms / 1000.0).ok()
}

fn parse_non_negative(value: &str) -> Option<f64> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return None;
    }
    value
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn seconds() {
        let now = SystemTime::now();
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("1.5", now),
            Some(Duration::from_millis(1500))
        );
    }

    #[test]
    fn http_date() {
        let now = httpdate::parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT").unwrap();
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now),
            Some(Duration::ZERO),
            "a date in the past means retry now"
        );
    }

    #[test]
    fn garbage_is_none() {
        let now = SystemTime::now();
        for bad in [
            "",
            "-1",
            "soon",
            "1e3",
            "NaN",
            "inf",
            "12 s",
            "99999999999999999999999999",
        ] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad:?}");
        }
        assert_eq!(parse_retry_after_ms("-5"), None);
        assert_eq!(parse_retry_after_ms("abc"), None);
    }

    #[test]
    fn milliseconds() {
        assert_eq!(
            parse_retry_after_ms("250"),
            Some(Duration::from_millis(250))
        );
        assert_eq!(
            parse_retry_after_ms("0.5"),
            Some(Duration::from_micros(500))
        );
    }

    #[test]
    fn header_precedence() {
        let now = SystemTime::now();
        let h = headers(&[("retry-after", "10"), ("retry-after-ms", "1200")]);
        assert_eq!(retry_after_at(&h, now), Some(Duration::from_millis(1200)));
        let h = headers(&[("retry-after", "10"), ("x-ms-retry-after-ms", "300")]);
        assert_eq!(retry_after_at(&h, now), Some(Duration::from_millis(300)));
        let h = headers(&[("retry-after", "10")]);
        assert_eq!(retry_after_at(&h, now), Some(Duration::from_secs(10)));
        let h = headers(&[("retry-after-ms", "junk"), ("retry-after", "2")]);
        assert_eq!(
            retry_after_at(&h, now),
            Some(Duration::from_secs(2)),
            "a bad ms header falls through"
        );
        assert_eq!(retry_after_at(&HeaderMap::new(), now), None);
    }
}
