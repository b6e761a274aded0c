//! What every HTTP provider request has in common: the forwarded client headers
//! (minus anything that could carry a credential or change the connection), the
//! JSON and SSE content headers, the request id, and the boxed response body.

use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_TYPE};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;

use super::secret::AuthHeader;
use super::{UpstreamBody, UpstreamCall};
use crate::upstream::BodyError;

/// Client headers never sent upstream, whatever the gateway forwards: credentials,
/// hop-by-hop headers, and headers the adapter sets itself.
const NEVER_FORWARDED: [&str; 18] = [
    "authorization",
    "proxy-authorization",
    "api-key",
    "x-api-key",
    "cookie",
    "host",
    "content-length",
    "content-type",
    "accept",
    "x-request-id",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "expect",
];

/// Prefixes of client headers never sent upstream: AWS signing headers (a client
/// must not influence a SigV4 signature) and the gateway's own.
const NEVER_FORWARDED_PREFIXES: [&str; 2] = ["x-amz-", "x-switchyard-"];

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

fn forwardable(name: &HeaderName) -> bool {
    let name = name.as_str();
    !NEVER_FORWARDED.contains(&name)
        && !NEVER_FORWARDED_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// Builds `POST uri` with the call's body and headers, plus `auth` when given.
pub(crate) fn build_request(
    uri: Uri,
    call: &UpstreamCall<'_>,
    auth: Option<&AuthHeader>,
) -> Request<Full<Bytes>> {
    let mut headers = HeaderMap::with_capacity(call.headers.len() + 4);
    for (name, value) in call.headers {
        if forwardable(name) {
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
pub(crate) fn box_response(response: Response<Incoming>) -> Response<UpstreamBody> {
    response.map(|body| body.map_err(BodyError::from_hyper).boxed())
}
