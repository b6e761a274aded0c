//! One client connection: tells HTTP/1.1 from h2, wraps the socket in the
//! smuggling guard and the send watch (which fails the connection once a
//! client leaves its response unread past `send_timeout_ms`), serves requests
//! through the gateway, and closes gracefully on shutdown or, for h2, once
//! the connection has been idle for `h2_idle_timeout_ms`.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use http::{HeaderValue, Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

use super::send_watch::SendWatch;
use super::{ClientLimits, H2_PREFACE, head_guard, refusal};
use crate::gateway::Gateway;
use crate::gateway::response::GatewayBody;

/// Serves `stream` until the client leaves or the connection is closed;
/// `draining` turns true when the gateway shuts down.
pub(super) async fn serve_connection(
    stream: TcpStream,
    gateway: Arc<Gateway>,
    builder: &auto::Builder<TokioExecutor>,
    limits: &Arc<ClientLimits>,
    mut draining: watch::Receiver<bool>,
) {
    // hyper's version detection waits for bytes without a deadline, and its
    // header timer only starts after it: bound the silence before the first bytes.
    let h2 = match sniff_h2(&stream, limits.header_read_timeout).await {
        Some(h2) => h2,
        None => return,
    };
    let head_bytes = limits.max_header_bytes.saturating_add(8192);
    let (io, verdicts) = head_guard::GuardedIo::new(
        SendWatch::new(stream, limits.send_timeout),
        !h2,
        head_bytes,
        limits.max_header_count,
    );
    // HTTP/1.1 keep-alive waits are bounded by hyper's header read timeout.
    let activity = h2.then(|| Arc::new(Activity::default()));
    let requests = Arc::new(Requests {
        gateway,
        limits: limits.clone(),
        activity: activity.clone(),
    });
    let service = service_fn(move |request: Request<Incoming>| {
        // Asked now, in request order: the guard's verdict is for the next head.
        let ambiguous = verdicts.next_request_is_ambiguous();
        let requests = requests.clone();
        async move { Ok::<_, Infallible>(requests.answer(request, ambiguous).await) }
    });
    let connection = builder.serve_connection(TokioIo::new(io), service);
    let mut connection = std::pin::pin!(connection);
    let mut closing = false;
    loop {
        tokio::select! {
            biased;
            result = connection.as_mut() => {
                if let Err(err) = result {
                    tracing::debug!(error = %err, "client connection ended with an error");
                }
                return;
            }
            _ = draining.wait_for(|draining| *draining), if !closing => {
                connection.as_mut().graceful_shutdown();
                closing = true;
            }
            () = idle(activity.as_deref(), limits.h2_idle_timeout), if !closing && activity.is_some() => {
                tracing::debug!("closing an idle h2 client connection");
                connection.as_mut().graceful_shutdown();
                closing = true;
            }
        }
    }
}

/// What every request on one connection is answered with.
struct Requests {
    gateway: Arc<Gateway>,
    limits: Arc<ClientLimits>,
    activity: Option<Arc<Activity>>,
}

impl Requests {
    /// The gateway's answer, or the listener's refusal (`ambiguous`: the
    /// smuggling guard found the request's body length ambiguous).
    async fn answer(&self, request: Request<Incoming>, ambiguous: bool) -> Response<GatewayBody> {
        let _open = self.activity.as_ref().map(Activity::open);
        let Some((err, close)) = refusal(&request, &self.limits, ambiguous) else {
            return self.gateway.handle(request).await;
        };
        let mut response = self.gateway.refuse(request.headers(), err);
        if close {
            response
                .headers_mut()
                .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

/// Requests open on an h2 connection, and when one last started or ended.
struct Activity {
    open: AtomicUsize,
    /// Milliseconds after `origin` of the last start or end.
    last_ms: AtomicU64,
    origin: Instant,
}

impl Default for Activity {
    fn default() -> Self {
        Activity {
            open: AtomicUsize::new(0),
            last_ms: AtomicU64::new(0),
            origin: Instant::now(),
        }
    }
}

impl Activity {
    /// Counts a request as open until the returned guard is dropped.
    fn open(self: &Arc<Self>) -> Open {
        self.open.fetch_add(1, Ordering::Relaxed);
        self.touch();
        Open(self.clone())
    }

    fn touch(&self) {
        let now = self.origin.elapsed().as_millis() as u64;
        self.last_ms.store(now, Ordering::Relaxed);
    }
}

/// An open request of an [`Activity`].
struct Open(Arc<Activity>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
        self.0.touch();
    }
}

/// Resolves once the connection has had no request open, started or ended
/// for `timeout`. Pending for ever without an [`Activity`].
async fn idle(activity: Option<&Activity>, timeout: Duration) {
    let Some(activity) = activity else {
        return std::future::pending().await;
    };
    loop {
        let last = activity.last_ms.load(Ordering::Relaxed);
        let quiet_until = activity.origin + Duration::from_millis(last) + timeout;
        tokio::time::sleep_until(quiet_until.max(Instant::now())).await;
        let open = activity.open.load(Ordering::Relaxed);
        if open == 0 && activity.last_ms.load(Ordering::Relaxed) == last {
            return;
        }
        if open > 0 && activity.last_ms.load(Ordering::Relaxed) == last {
            // A long request is open: look again a whole timeout later.
            tokio::time::sleep(timeout).await;
        }
    }
}

/// Waits (up to `timeout`) until the client has sent enough to tell HTTP/1.1 from
/// an h2 preface. None: the client went away or stayed silent.
async fn sniff_h2(stream: &TcpStream, timeout: Duration) -> Option<bool> {
    let sniff = async {
        let mut buf = [0u8; H2_PREFACE.len()];
        loop {
            let n = stream.peek(&mut buf).await.ok()?;
            if n == 0 {
                return None;
            }
            if buf[..n] != H2_PREFACE[..n] {
                return Some(false);
            }
            if n == H2_PREFACE.len() {
                return Some(true);
            }
            // A partial preface: peek returns at once until more arrives.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    match tokio::time::timeout(timeout, sniff).await {
        Ok(found) => found,
        Err(_) => {
            tracing::debug!("client sent nothing within the header read timeout");
            None
        }
    }
}
