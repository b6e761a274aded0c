//! What every HTTP provider request has in common: the forwarded client headers
//! (minus anything that could carry a credential or change the connection), the
//! JSON and SSE content headers, the request id, and the boxed response body.

use bytes::Bytes;
use http::header::{ACCEPT, CONNECTION, CONTENT_TYPE, GetAll};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, Uri};
use http_body_util::{BodyExt, Full};

use super::secret::AuthHeader;
use super::{UpstreamBody, UpstreamCall};
use crate::headers::{connection_tokens, is_credential, is_hop_by_hop};
use crate::upstream::{BodyError, ResponseBody};

/// Client headers never sent upstream besides credentials and hop-by-hop
/// headers ([`crate::headers`]): headers the adapter sets itself,
/// `accept-encoding` (the gateway reads `usage` from the response body, so it
/// must arrive uncompressed), `expect`, and the OpenAI account headers: the
/// gateway's key decides the organization and project, and the official SDK
/// sends the client's own (`OPENAI_ORG_ID`, `OPENAI_PROJECT_ID`), which would
/// not match it.
const NEVER_FORWARDED: [&str; 9] = [
    "host",
    "content-length",
    "content-type",
    "accept",
    "accept-encoding",
    "x-request-id",
    "expect",
    "openai-organization",
    "openai-project",
];

/// Prefixes of client headers never sent upstream: AWS signing headers (a client
/// must not influence a SigV4 signature) and the gateway's own.
const NEVER_FORWARDED_PREFIXES: [&str; 2] = ["x-amz-", "x-switchyard-"];

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

fn forwardable(name: &HeaderName) -> bool {
    if is_credential(name) || is_hop_by_hop(name) {
        return false;
    }
    let name = name.as_str();
    !NEVER_FORWARDED.contains(&name)
        && !NEVER_FORWARDED_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// Whether the client's `Connection` header lists `name`.
fn named_by_connection(connection: &GetAll<'_, HeaderValue>, name: &HeaderName) -> bool {
    connection_tokens(connection).any(|token| token.eq_ignore_ascii_case(name.as_str()))
}

/// Builds `POST uri` with the call's body and headers, plus `auth` when given.
pub(crate) fn build_request(
    uri: Uri,
    call: &UpstreamCall<'_>,
    auth: Option<&AuthHeader>,
) -> Request<Full<Bytes>> {
    let mut headers = HeaderMap::with_capacity(call.headers.len() + 4);
    let connection = call.headers.get_all(CONNECTION);
    for (name, value) in call.headers {
        if forwardable(name) && !named_by_connection(&connection, name) {
            headers.append(name.clone(), value.clone());
        }
    }
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let accept = if call.streaming {
        "text/event-stream"
    } else {
        "application/json"
    };
    headers.insert(ACCEPT, HeaderValue::from_static(accept));
    if let Ok(id) = HeaderValue::from_str(call.request_id) {
        headers.insert(REQUEST_ID, id);
    }
    if let Some(auth) = auth {
        headers.insert(auth.name.clone(), auth.value.clone());
    }
    let mut request = Request::new(Full::new(call.body.clone()));
    *request.method_mut() = Method::POST;
    *request.uri_mut() = uri;
    *request.headers_mut() = headers;
    request
}

/// The upstream response with its body boxed and its errors classified.
pub(crate) fn box_response(response: Response<ResponseBody>) -> Response<UpstreamBody> {
    response.map(|body| body.map_err(BodyError::from_hyper).boxed())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::Operation;

    #[test]
    fn no_credential_or_hop_by_hop_header_goes_upstream() {
        for name in crate::headers::CREDENTIAL
            .iter()
            .chain(&crate::headers::HOP_BY_HOP)
        {
            assert!(!forwardable(name), "{name}");
        }
    }

    #[test]
    fn only_harmless_client_headers_go_upstream() {
        let mut client = HeaderMap::new();
        for (name, value) in [
            ("authorization", "Bearer sk-client"),
            ("api-key", "client-key"),
            ("cookie", "session=1"),
            ("proxy-authenticate", "Basic"),
            ("accept-encoding", "gzip"),
            ("connection", "keep-alive, X-Hop-Secret"),
            ("x-hop-secret", "for the gateway only"),
            ("host", "gateway.local"),
            ("x-amz-date", "20260101T000000Z"),
            ("x-switchyard-attempts", "9"),
            ("x-request-id", "client-id"),
            ("user-agent", "OpenAI/Python 1.54.0"),
            ("x-stainless-lang", "python"),
        ] {
            client.append(name, HeaderValue::from_static(value));
        }
        let call = UpstreamCall {
            operation: Operation::ChatCompletions,
            upstream_model: "m",
            body: Bytes::from_static(b"{}"),
            streaming: true,
            headers: &client,
            request_id: "req-1",
        };
        let request = build_request(Uri::from_static("http://127.0.0.1/v1"), &call, None);
        let mut sent: Vec<_> = request
            .headers()
            .iter()
            .map(|(k, v)| format!("{k}: {}", v.to_str().unwrap()))
            .collect();
        sent.sort();
        assert_eq!(
            sent,
            [
                "accept: text/event-stream",
                "content-type: application/json",
                "user-agent: OpenAI/Python 1.54.0",
                "x-request-id: req-1",
                "x-stainless-lang: python",
            ]
        );
    }
}
