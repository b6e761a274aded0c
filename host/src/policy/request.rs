//! [`Request`]: the client request as policies see it, and the host side of the
//! WIT `request` resource that guests read it through.
//!
//! A guest gets a borrowed handle for the length of one `decide` call and reads
//! only the fields it needs; the handle refers to the request the store is
//! deciding right now ([`super::store::StoreState`] holds it), so nothing is
//! copied into the guest until it asks.

use std::sync::Arc;

use http::{HeaderName, HeaderValue};
use wasmtime::component::Resource;

use super::bindings::switchyard::policy::types::{self, Header, Label, LiveState};
use super::store::StoreState;
use super::types::Candidate;

/// A read-only view of one client request, built once by the gateway (or from
/// JSON by `switchyard policy eval|test`) and shared by every stage of a chain.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Request {
    /// The gateway's request id (also sent back as `x-request-id`).
    pub id: String,
    /// HTTP method, upper-case.
    pub method: String,
    /// Path without the query string.
    pub path: String,
    /// The model the client asked for; empty when absent.
    pub model: String,
    /// True when the client asked for a streamed response.
    pub streaming: bool,
    /// The tenant of the authenticated client, if client auth is on.
    pub tenant: Option<String>,
    /// Client headers, minus credentials, in the order they came (a repeated
    /// name's values together); a value that is not visible ASCII is invisible
    /// to policies.
    pub headers: Headers,
    /// Size of the request body in bytes.
    pub body_bytes: u64,
    /// Estimated input tokens.
    pub input_tokens_estimate: u32,
    /// `max_completion_tokens` or `max_tokens`, when set.
    pub max_output_tokens: Option<u32>,
    /// The matched route's name.
    pub route: String,
    /// The matched route's labels.
    pub labels: Vec<Label>,
}

impl Request {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)
    }

    /// Every header as (lower-case name, value), in the list's order.
    pub fn header_list(&self) -> Vec<Header> {
        self.headers
            .iter()
            .filter_map(|(name, value)| {
                Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned()))
            })
            .collect()
    }

    /// The value of route label `key`.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Client headers a policy never sees: credentials ([`crate::headers::CREDENTIAL`]).
pub const CREDENTIAL_HEADERS: [HeaderName; 5] = crate::headers::CREDENTIAL;

/// A request's headers as policies see them: (name, value) pairs in order,
/// names lower-case as `http` keeps them.
///
/// A list rather than a [`http::HeaderMap`]: the gateway builds one for every
/// request and a policy looks up a header or two, so pushing pairs (which
/// share the request's bytes) beats hashing each name into a map. The list
/// keeps the order it is given; the gateway fills it from hyper's header map,
/// which keeps names in the order they first came and a repeated name's values
/// together.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Headers(Vec<(HeaderName, HeaderValue)>);

impl Headers {
    /// An empty list with room for `capacity` headers.
    pub fn with_capacity(capacity: usize) -> Headers {
        Headers(Vec::with_capacity(capacity))
    }

    /// Adds a header after the others.
    pub fn append(&mut self, name: HeaderName, value: HeaderValue) {
        self.0.push((name, value));
    }

    /// The first value of header `name` (any case) that is visible ASCII.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .filter(|(have, _)| have.as_str().eq_ignore_ascii_case(name))
            .find_map(|(_, value)| value.to_str().ok())
    }

    /// The headers in order.
    pub fn iter(&self) -> impl Iterator<Item = (&HeaderName, &HeaderValue)> {
        self.0.iter().map(|(name, value)| (name, value))
    }

    /// How many headers there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FromIterator<(HeaderName, HeaderValue)> for Headers {
    fn from_iter<I: IntoIterator<Item = (HeaderName, HeaderValue)>>(pairs: I) -> Headers {
        Headers(pairs.into_iter().collect())
    }
}

/// The host type behind the WIT `request` resource. Guests only ever hold a
/// borrowed handle to it, and the handle always means "the request being
/// decided", so it carries no data of its own.
pub struct RequestHandle;

/// The borrowed handle passed to `decide`.
pub(crate) fn handle() -> Resource<RequestHandle> {
    Resource::new_borrow(0)
}

impl StoreState {
    /// The request of the running `decide` call. Guests can only reach the
    /// `request` methods through the handle `decide` receives, so one is set.
    fn current(&self) -> &Request {
        static NONE: std::sync::LazyLock<Request> = std::sync::LazyLock::new(Request::default);
        self.request.as_deref().unwrap_or(&NONE)
    }

    /// Sets the request and candidates the next `decide` call reads.
    pub(crate) fn set_call(&mut self, request: Arc<Request>, candidates: &[Candidate]) {
        self.request = Some(request);
        self.candidates.clear();
        self.candidates.extend_from_slice(candidates);
    }

    /// Forgets the finished call's request and candidates.
    pub(crate) fn end_call(&mut self) {
        self.request = None;
        self.candidates.clear();
    }
}

impl types::HostRequest for StoreState {
    fn id(&mut self, _: Resource<RequestHandle>) -> String {
        self.current().id.clone()
    }

    fn method(&mut self, _: Resource<RequestHandle>) -> String {
        self.current().method.clone()
    }

    fn path(&mut self, _: Resource<RequestHandle>) -> String {
        self.current().path.clone()
    }

    fn model(&mut self, _: Resource<RequestHandle>) -> String {
        self.current().model.clone()
    }

    fn streaming(&mut self, _: Resource<RequestHandle>) -> bool {
        self.current().streaming
    }

    fn tenant(&mut self, _: Resource<RequestHandle>) -> Option<String> {
        self.current().tenant.clone()
    }

    fn header(&mut self, _: Resource<RequestHandle>, name: String) -> Option<String> {
        self.current().header(&name).map(str::to_owned)
    }

    fn headers(&mut self, _: Resource<RequestHandle>) -> Vec<Header> {
        self.current().header_list()
    }

    fn body_bytes(&mut self, _: Resource<RequestHandle>) -> u64 {
        self.current().body_bytes
    }

    fn input_tokens_estimate(&mut self, _: Resource<RequestHandle>) -> u32 {
        self.current().input_tokens_estimate
    }

    fn max_output_tokens(&mut self, _: Resource<RequestHandle>) -> Option<u32> {
        self.current().max_output_tokens
    }

    fn route(&mut self, _: Resource<RequestHandle>) -> String {
        self.current().route.clone()
    }

    fn label(&mut self, _: Resource<RequestHandle>, key: String) -> Option<String> {
        self.current().label(&key).map(str::to_owned)
    }

    fn labels(&mut self, _: Resource<RequestHandle>) -> Vec<Label> {
        self.current().labels.clone()
    }

    fn live_state(&mut self, _: Resource<RequestHandle>, id: u32) -> Option<LiveState> {
        self.candidates.iter().find(|c| c.id == id).map(|c| c.state)
    }

    fn drop(&mut self, _: Resource<RequestHandle>) -> wasmtime::Result<()> {
        // Guests only receive borrows; the host owns the one request.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_lookup_ignores_case_and_the_list_keeps_its_order() {
        let name = |n: &'static str| HeaderName::from_static(n);
        let headers = Headers::from_iter([
            (name("x-data-residency"), HeaderValue::from_static("eu")),
            (name("accept"), HeaderValue::from_static("*/*")),
            (name("x-data-residency"), HeaderValue::from_static("us")),
            (name("x-opaque"), HeaderValue::from_bytes(b"\xff").unwrap()),
        ]);
        let req = Request {
            headers,
            labels: vec![("team".into(), "search".into())],
            ..Request::default()
        };
        assert_eq!(req.header("X-Data-Residency"), Some("eu"));
        assert_eq!(req.header("x-missing"), None);
        assert_eq!(req.header("not a name"), None);
        assert_eq!(req.header("x-opaque"), None, "not visible ASCII");
        assert_eq!(
            req.header_list(),
            vec![
                ("x-data-residency".to_owned(), "eu".to_owned()),
                ("accept".to_owned(), "*/*".to_owned()),
                ("x-data-residency".to_owned(), "us".to_owned()),
            ]
        );
        assert_eq!(req.label("team"), Some("search"));
        assert_eq!(req.label("Team"), None);
    }
}
