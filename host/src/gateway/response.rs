//! What the gateway sends back: the response body type, OpenAI-shaped errors and
//! the `x-switchyard-*` headers.

use std::borrow::Cow;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;

use super::stream::ResponseStream;
use crate::headers::{connection_tokens, is_hop_by_hop};

/// Name of the header naming the upstream that served the response.
pub const UPSTREAM_HEADER: HeaderName = HeaderName::from_static("x-switchyard-upstream");
/// Name of the header listing the policy chain as `name@hash8`.
pub const POLICY_HEADER: HeaderName = HeaderName::from_static("x-switchyard-policy");
/// Name of the header counting upstream attempts.
pub const ATTEMPTS_HEADER: HeaderName = HeaderName::from_static("x-switchyard-attempts");
/// Name of the header labelling an answer from a simulated (mock) upstream.
pub const SIMULATED_HEADER: HeaderName = HeaderName::from_static("x-switchyard-simulated");
/// Name of the request id header.
pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// A response body: a whole buffer, or an upstream response streamed through.
pub enum GatewayBody {
    /// A body the gateway made (errors, model list).
    Full(Full<Bytes>),
    /// An upstream body forwarded frame by frame (boxed: it is much larger
    /// than a buffer and most responses are streamed only once).
    Stream(Box<ResponseStream>),
}

impl GatewayBody {
    /// A body from bytes.
    pub fn full(bytes: impl Into<Bytes>) -> GatewayBody {
        GatewayBody::Full(Full::new(bytes.into()))
    }
}

impl Body for GatewayBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.get_mut() {
            GatewayBody::Full(full) => Pin::new(full)
                .poll_frame(cx)
                .map_err(|never| match never {}),
            GatewayBody::Stream(stream) => {
                Pin::new(stream.as_mut()).poll_frame(cx).map_err(Into::into)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            GatewayBody::Full(full) => full.is_end_stream(),
            GatewayBody::Stream(stream) => stream.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            GatewayBody::Full(full) => full.size_hint(),
            GatewayBody::Stream(stream) => stream.size_hint(),
        }
    }
}

/// An error answered by the gateway itself, in OpenAI's JSON shape
/// `{"error":{"message","type","code"}}`.
#[derive(Debug, Clone)]
pub struct GatewayError {
    /// HTTP status.
    pub status: StatusCode,
    /// Machine-readable code (`invalid_json`, `no_route`, a policy's own code…).
    pub code: Cow<'static, str>,
    /// Human-readable message. Never carries secrets.
    pub message: String,
    /// Seconds for a `retry-after` header (429).
    pub retry_after_secs: Option<u64>,
}

impl GatewayError {
    /// An error with a status, a code and a message.
    pub fn new(
        status: StatusCode,
        code: impl Into<Cow<'static, str>>,
        message: impl Into<String>,
    ) -> GatewayError {
        GatewayError {
            status,
            code: code.into(),
            message: message.into(),
            retry_after_secs: None,
        }
    }

    /// 400 `invalid_json`.
    pub fn invalid_json(message: impl Into<String>) -> GatewayError {
        GatewayError::new(StatusCode::BAD_REQUEST, "invalid_json", message)
    }

    /// 404 or 503 `no_route`.
    pub fn no_route(status: StatusCode, message: impl Into<String>) -> GatewayError {
        GatewayError::new(status, "no_route", message)
    }

    /// OpenAI's error `type` for the status.
    pub fn error_type(&self) -> &'static str {
        match self.status.as_u16() {
            401 => "authentication_error",
            403 => "permission_error",
            404 => "not_found_error",
            429 => "rate_limit_error",
            400..=499 => "invalid_request_error",
            _ => "api_error",
        }
    }

    /// The JSON body.
    pub fn body(&self) -> Bytes {
        let body = serde_json::json!({
            "error": {
                "message": self.message,
                "type": self.error_type(),
                "param": null,
                "code": self.code,
            }
        });
        Bytes::from(serde_json::to_vec(&body).expect("serializing a JSON value cannot fail"))
    }

    /// The whole response (without the `x-switchyard-*` headers; see [`stamp`]).
    pub fn into_response(self) -> Response<GatewayBody> {
        let mut response = Response::new(GatewayBody::full(self.body()));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(secs) = self.retry_after_secs {
            headers.insert(http::header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// What the gateway reports about a request in response headers. The chain and
/// upstream values are made once per snapshot, so stamping copies nothing.
#[derive(Debug, Default)]
pub struct Stamp<'a> {
    /// The request id.
    pub request_id: &'a str,
    /// The chain as `name@hash8,…`, when a route with policies matched.
    pub policy: Option<&'a HeaderValue>,
    /// The upstream that served the response.
    pub upstream: Option<&'a HeaderValue>,
    /// Upstream attempts made.
    pub attempts: u32,
    /// Whether the serving upstream is simulated: such answers always say so.
    pub simulated: bool,
}

/// Sets the `x-switchyard-*` and `x-request-id` headers.
pub fn stamp(headers: &mut HeaderMap, stamp: &Stamp<'_>) {
    if let Ok(value) = HeaderValue::from_str(stamp.request_id) {
        headers.insert(REQUEST_ID_HEADER, value);
    }
    if let Some(policy) = stamp.policy {
        headers.insert(POLICY_HEADER, policy.clone());
    }
    if let Some(upstream) = stamp.upstream {
        headers.insert(UPSTREAM_HEADER, upstream.clone());
    }
    headers.insert(ATTEMPTS_HEADER, count_value(stamp.attempts));
    if stamp.simulated {
        headers.insert(SIMULATED_HEADER, HeaderValue::from_static("true"));
    }
}

/// `n` as a header value; the small counts every response carries are static.
fn count_value(n: u32) -> HeaderValue {
    const DIGITS: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];
    match DIGITS.get(n as usize) {
        Some(digit) => HeaderValue::from_static(digit),
        None => HeaderValue::from(n),
    }
}

/// Upstream response headers that describe the gateway's own account or
/// connection with the provider, not the client's: the account the gateway's
/// key belongs to, and cookies the provider's edge set on that connection.
const UPSTREAM_ONLY: [&str; 3] = ["openai-organization", "openai-project", "set-cookie"];

/// Removes from an upstream response what must not reach the client: the
/// hop-by-hop headers and those its `Connection` header names (RFC 9110
/// §7.6.1), the headers of the gateway's own upstream account
/// (`openai-organization`, `openai-project`, `set-cookie`), and any `x-switchyard-*` header, which only the
/// gateway itself may set.
pub fn strip_upstream_headers(headers: &mut HeaderMap) {
    let mut named: Vec<HeaderName> = connection_tokens(&headers.get_all(http::header::CONNECTION))
        .filter_map(|name| HeaderName::try_from(name).ok())
        .collect();
    named.extend(
        headers
            .keys()
            .filter(|name| {
                is_hop_by_hop(name)
                    || UPSTREAM_ONLY.contains(&name.as_str())
                    || name.as_str().starts_with("x-switchyard-")
            })
            .cloned(),
    );
    for name in named {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_body_has_openai_shape() {
        let err = GatewayError::new(StatusCode::FORBIDDEN, "residency_violation", "EU only");
        let json: serde_json::Value = serde_json::from_slice(&err.body()).unwrap();
        assert_eq!(json["error"]["code"], "residency_violation");
        assert_eq!(json["error"]["message"], "EU only");
        assert_eq!(json["error"]["type"], "permission_error");
    }

    #[test]
    fn counts_read_the_same_static_or_formatted() {
        for n in [0, 1, 9, 10, 11, 4_000_000_000] {
            assert_eq!(count_value(n), n.to_string().as_str(), "{n}");
        }
    }

    #[test]
    fn upstream_headers_that_are_not_the_clients_are_stripped() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("content-type", "application/json"),
            ("connection", "keep-alive, x-hop"),
            ("x-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("openai-organization", "org-operator"),
            ("set-cookie", "__cf_bm=abc"),
            ("x-switchyard-policy", "forged@00000000"),
            ("x-ratelimit-remaining-requests", "99"),
        ] {
            headers.append(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        strip_upstream_headers(&mut headers);
        let mut left: Vec<_> = headers.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["content-type", "x-ratelimit-remaining-requests"]);
    }

    #[test]
    fn retry_after_header() {
        let mut err = GatewayError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", "slow down");
        err.retry_after_secs = Some(3);
        let response = err.into_response();
        assert_eq!(response.headers()[http::header::RETRY_AFTER], "3");
    }
}
