//! The client-facing data path. One request goes through these stages, each its
//! own module:
//!
//! 1. [`listener`]: accept, HTTP/1.1 or h2, client limits.
//! 2. [`auth`]: gateway key → tenant (401).
//! 3. [`request_view`]: bounded body read and the view of the JSON (400/413).
//! 4. [`route`]: first matching route (404).
//! 5. `plan`: the route's policy chain ([`crate::policy::Chain`]) turns the
//!    candidates into an ordered plan, or the client's error (403…/503).
//! 6. [`mod@execute`]: attempt the plan's targets with fallback (429/502/504).
//! 7. [`stream`]: forward the response unbuffered, read `usage` on the way.
//! 8. [`outcome`]: metrics, health, access log, policy `observe`.
//!
//! [`response`] holds the error shape and the `x-switchyard-*` headers.

pub mod auth;
pub mod client_text;
pub mod execute;
pub mod listener;
pub mod outcome;
mod plan;
pub mod request_view;
pub mod response;
pub mod route;
pub mod stream;

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body::Body;
use tokio::time::Instant;

use self::client_text::ClientText;
use self::execute::{PlanRun, execute};
use self::outcome::{Ending, OutcomeSink, PendingOutcome};
use self::plan::PolicyInput;
use self::request_view::{RequestBodyError, RequestView, read_bounded};
use self::response::{GatewayBody, GatewayError, Stamp, stamp, strip_upstream_headers};
use crate::admin::Metrics;
use crate::config::ProviderKind;
use crate::provider::Operation;
use crate::snapshot::{Serving, Snapshot, UpstreamEntry};

/// The gateway's request handler: the current snapshot plus what outlives snapshots.
pub struct Gateway {
    snapshot: ArcSwap<Snapshot>,
    outcomes: Arc<OutcomeSink>,
}

impl Gateway {
    /// A gateway serving `snapshot`; must be called within a tokio runtime.
    pub fn new(snapshot: Snapshot, metrics: Arc<Metrics>) -> Gateway {
        Gateway {
            snapshot: ArcSwap::from_pointee(snapshot),
            outcomes: OutcomeSink::start(metrics),
        }
    }

    /// The snapshot new requests run on.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// Installs a new snapshot: requests in flight finish on the old one.
    pub fn install(&self, snapshot: Snapshot) {
        self.snapshot.store(Arc::new(snapshot));
    }

    /// The gateway's metrics.
    pub fn metrics(&self) -> &Metrics {
        self.outcomes.metrics()
    }

    /// Serves one client request.
    pub async fn handle<B>(&self, request: Request<B>) -> Response<GatewayBody>
    where
        B: Body<Data = Bytes>,
        B::Error: std::fmt::Display,
    {
        let mut answering = Answering {
            ctx: self.context(request.headers()),
            sink: &self.outcomes,
            answered: false,
        };
        let served = self.serve(&mut answering.ctx, request).await;
        answering.answered = true;
        match served {
            Ok(response) => response,
            Err(err) => self.answer_error(&answering.ctx, err),
        }
    }

    /// Answers a request the listener refused before the data path (an
    /// ambiguous body length, too many headers) with `err`, logged and counted
    /// like every other request.
    pub fn refuse(&self, headers: &HeaderMap, err: GatewayError) -> Response<GatewayBody> {
        self.answer_error(&self.context(headers), err)
    }

    fn context(&self, headers: &HeaderMap) -> RequestContext {
        RequestContext {
            snapshot: self.snapshot.load_full(),
            request_id: request_id(headers),
            started: Instant::now(),
            route: None,
            tenant: None,
            model: String::new(),
            attempts: 0,
        }
    }

    fn answer_error(&self, ctx: &RequestContext, err: GatewayError) -> Response<GatewayBody> {
        let status = err.status.as_u16();
        let mut response = err.into_response();
        stamp(response.headers_mut(), &ctx.stamp(None));
        ctx.pending(self.outcomes.clone(), status)
            .finish(None, Ending::Complete);
        response
    }

    async fn serve<B>(
        &self,
        ctx: &mut RequestContext,
        request: Request<B>,
    ) -> Result<Response<GatewayBody>, GatewayError>
    where
        B: Body<Data = Bytes>,
        B::Error: std::fmt::Display,
    {
        let snapshot = ctx.snapshot.clone();
        let (parts, body) = request.into_parts();
        let operation = match (&parts.method, parts.uri.path()) {
            (&Method::POST, "/v1/chat/completions") => Operation::ChatCompletions,
            (&Method::POST, "/v1/embeddings") => Operation::Embeddings,
            (&Method::GET, "/v1/models") => {
                authenticate(&snapshot, &parts.headers)?;
                return Ok(self.models(ctx, &snapshot));
            }
            (_, path) => {
                return Err(GatewayError::no_route(
                    StatusCode::NOT_FOUND,
                    format!("no route for {} {path}", parts.method),
                ));
            }
        };

        ctx.tenant = authenticate(&snapshot, &parts.headers)?;

        let limit = snapshot.config.server.max_request_body_bytes;
        let declared = parts
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        let timeout_ms = snapshot.config.server.body_read_timeout_ms;
        let deadline = ctx.started + Duration::from_millis(timeout_ms);
        let read = std::pin::pin!(read_bounded(body, declared, limit));
        let body = crate::deadline::within(deadline, read)
            .await
            .unwrap_or(Err(RequestBodyError::TimedOut { timeout_ms }))
            .map_err(body_error)?;
        let view = RequestView::parse(body).map_err(body_error)?;
        ctx.model = view.model().to_string();

        let path = parts.uri.path();
        let Some(route_index) = snapshot
            .routes
            .iter()
            .position(|route| route.matches(path, view.model(), &parts.headers))
        else {
            return Err(GatewayError::no_route(
                StatusCode::NOT_FOUND,
                format!(
                    "no route serves model \"{}\" on {path}",
                    ClientText(view.model())
                ),
            ));
        };
        ctx.route = Some(route_index);

        let all = snapshot
            .models
            .get(view.model())
            .map(Vec::as_slice)
            .unwrap_or_default();
        // Only embeddings ever leave some out, so chat requests copy nothing.
        let serves = |s: &Serving| snapshot.upstreams[s.upstream].serves(operation);
        let servings: Cow<'_, [Serving]> = if all.iter().all(serves) {
            Cow::Borrowed(all)
        } else {
            Cow::Owned(all.iter().filter(|s| serves(s)).cloned().collect())
        };
        let servings = &*servings;
        if servings.is_empty() {
            return Err(GatewayError::new(
                StatusCode::NOT_FOUND,
                "model_not_found",
                format!(
                    "no upstream serves model \"{}\" for {}",
                    ClientText(view.model()),
                    operation.path()
                ),
            ));
        }

        let policy_input = PolicyInput {
            ctx,
            parts: &parts,
            view: &view,
            route: route_index,
        };
        let (targets, fallback) = plan::run(policy_input, servings, self.metrics()).await?;

        let committed = execute(PlanRun {
            snapshot: &snapshot,
            targets: &targets,
            fallback,
            view: &view,
            operation,
            headers: &parts.headers,
            request_id: &ctx.request_id,
            started: ctx.started,
            metrics: self.metrics(),
            made: &mut ctx.attempts,
        })
        .await?;

        let serving: &Serving = targets[committed.target];
        let upstream = &snapshot.upstreams[serving.upstream];
        let mut parts = committed.parts;
        strip_upstream_headers(&mut parts.headers);
        stamp(&mut parts.headers, &ctx.stamp(Some(upstream)));
        let sse = parts
            .headers
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
        if sse {
            // The forwarder passes SSE on in whole events and may drop one, so
            // the upstream's length (rare on a stream) would no longer hold.
            parts.headers.remove(http::header::CONTENT_LENGTH);
        }
        let mut pending = ctx.pending(self.outcomes.clone(), parts.status.as_u16());
        pending.upstream = Some(serving.upstream);
        pending.prices = (serving.input_per_mtok, serving.output_per_mtok);
        pending.time_to_first_byte = Some(committed.time_to_first_byte);
        pending.attempt = Some(committed.attempt);
        let idle = Duration::from_millis(snapshot.config.server.idle_timeout_ms);
        let body = stream::ResponseStream::new(
            committed.first,
            committed.body,
            sse,
            committed.usage_added,
            idle,
            pending,
        );
        Ok(Response::from_parts(
            parts,
            GatewayBody::Stream(Box::new(body)),
        ))
    }

    fn models(&self, ctx: &RequestContext, snapshot: &Snapshot) -> Response<GatewayBody> {
        let mut names: Vec<&String> = snapshot.models.keys().collect();
        names.sort();
        let data: Vec<_> = names
            .iter()
            .map(|id| serde_json::json!({"id": id, "object": "model", "created": 0, "owned_by": "switchyard"}))
            .collect();
        let body = serde_json::to_vec(&serde_json::json!({"object": "list", "data": data}))
            .expect("JSON value");
        let mut response = Response::new(GatewayBody::full(body));
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        stamp(response.headers_mut(), &ctx.stamp(None));
        // Logged and counted like every other request.
        ctx.pending(self.outcomes.clone(), StatusCode::OK.as_u16())
            .finish(None, Ending::Complete);
        response
    }
}

/// The status logged and counted for a request whose client went away before
/// its response was ready (nginx's "client closed request"); never sent.
const CLIENT_CLOSED: u16 = 499;

/// A request being answered. When the client goes away first, hyper drops the
/// handler's future, and with it this: the request is still logged and
/// counted, with status [`CLIENT_CLOSED`] and ending `client-gone`. (Once the
/// response has begun, its body reports the client going away instead.)
struct Answering<'a> {
    ctx: RequestContext,
    sink: &'a Arc<OutcomeSink>,
    answered: bool,
}

impl Drop for Answering<'_> {
    fn drop(&mut self) {
        if !self.answered {
            self.ctx
                .pending(self.sink.clone(), CLIENT_CLOSED)
                .finish(None, Ending::ClientGone);
        }
    }
}

/// What is known about a request as it goes through the stages.
struct RequestContext {
    snapshot: Arc<Snapshot>,
    request_id: String,
    started: Instant,
    route: Option<usize>,
    tenant: Option<Arc<str>>,
    model: String,
    attempts: u32,
}

impl RequestContext {
    fn stamp<'a>(&'a self, upstream: Option<&'a UpstreamEntry>) -> Stamp<'a> {
        Stamp {
            request_id: &self.request_id,
            policy: self
                .route
                .and_then(|i| self.snapshot.routes[i].chain.stamp()),
            upstream: upstream.and_then(|u| u.stamp.as_ref()),
            attempts: self.attempts,
            simulated: upstream.is_some_and(|u| u.adapter.kind() == ProviderKind::Mock),
        }
    }

    fn pending(&self, sink: Arc<OutcomeSink>, status: u16) -> PendingOutcome {
        PendingOutcome {
            sink,
            snapshot: self.snapshot.clone(),
            route: self.route,
            request_id: self.request_id.clone(),
            tenant: self.tenant.clone(),
            model: self.model.clone(),
            started: self.started,
            upstream: None,
            prices: (0.0, 0.0),
            status,
            attempts: self.attempts,
            time_to_first_byte: None,
            attempt: None,
        }
    }
}

fn authenticate(
    snapshot: &Snapshot,
    headers: &HeaderMap,
) -> Result<Option<Arc<str>>, GatewayError> {
    match snapshot.clients.authenticate(headers) {
        Ok(who) => Ok(who.and_then(|w| w.tenant.clone())),
        Err(err) => Err(GatewayError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_api_key",
            err.to_string(),
        )),
    }
}

fn body_error(err: RequestBodyError) -> GatewayError {
    match err {
        RequestBodyError::TooLarge { .. } => GatewayError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            err.to_string(),
        ),
        RequestBodyError::MissingModel(_) => {
            GatewayError::new(StatusCode::BAD_REQUEST, "missing_model", err.to_string())
        }
        RequestBodyError::InvalidJson(_) => GatewayError::invalid_json(err.to_string()),
        RequestBodyError::Read(_) => {
            GatewayError::new(StatusCode::BAD_REQUEST, "invalid_request", err.to_string())
        }
        RequestBodyError::TimedOut { .. } => GatewayError::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            err.to_string(),
        ),
    }
}

/// The client's request id when it sent a sane one, else a new UUID.
fn request_id(headers: &HeaderMap) -> String {
    headers
        .get(response::REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|id| !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}
