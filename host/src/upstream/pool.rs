//! The idle connections of one [`UpstreamClient`](super::UpstreamClient), and the
//! response body that hands an HTTP/1.1 connection back once its response has
//! been read to the end.
//!
//! Each client talks to one upstream, so the pool needs no key: it is a stack
//! of idle HTTP/1.1 connections (the most recently used is reused first, the
//! oldest expire first) and at most one shared h2 connection. A connection
//! goes back on the stack from the request's own task, when its body ends;
//! nothing is spawned per request.

use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::{http1, http2};

/// Sends requests over one HTTP/1.1 connection, one at a time.
pub(crate) type H1Sender = http1::SendRequest<Full<Bytes>>;
/// Sends requests over one h2 connection, any number at once.
pub(crate) type H2Sender = http2::SendRequest<Full<Bytes>>;

/// The idle connections to one upstream.
pub(crate) struct Pool {
    idle: Mutex<VecDeque<Idle>>,
    shared: Mutex<Option<H2Sender>>,
    max_idle: usize,
    idle_timeout: Duration,
    reaper_started: AtomicBool,
}

struct Idle {
    sender: H1Sender,
    since: Instant,
}

impl Pool {
    /// A pool keeping at most `max_idle` idle HTTP/1.1 connections, each for at
    /// most `idle_timeout`.
    pub(crate) fn new(max_idle: usize, idle_timeout: Duration) -> Pool {
        Pool {
            idle: Mutex::new(VecDeque::new()),
            shared: Mutex::new(None),
            max_idle,
            idle_timeout,
            reaper_started: AtomicBool::new(false),
        }
    }

    /// The most recently used idle HTTP/1.1 connection that is still open and
    /// has not been idle too long. It may not be ready yet: its connection task
    /// can still be finishing the previous response.
    pub(crate) fn take_h1(&self) -> Option<H1Sender> {
        let mut idle = lock(&self.idle);
        while let Some(entry) = idle.pop_back() {
            if entry.sender.is_closed() {
                continue;
            }
            if entry.since.elapsed() >= self.idle_timeout {
                // Everything below it is older still.
                idle.clear();
                return None;
            }
            return Some(entry.sender);
        }
        None
    }

    /// Keeps `sender` for reuse unless its connection closed or the pool is full.
    /// Dropping a sender closes its connection once the connection is idle.
    pub(crate) fn put_h1(&self, sender: H1Sender) {
        if sender.is_closed() || self.max_idle == 0 {
            return;
        }
        let now = Instant::now();
        let mut idle = lock(&self.idle);
        while idle
            .front()
            .is_some_and(|oldest| now.duration_since(oldest.since) >= self.idle_timeout)
        {
            idle.pop_front();
        }
        if idle.len() < self.max_idle {
            idle.push_back(Idle { sender, since: now });
        }
    }

    /// The shared h2 connection, while it is open.
    pub(crate) fn shared_h2(&self) -> Option<H2Sender> {
        let mut shared = lock(&self.shared);
        match shared.as_ref() {
            Some(sender) if !sender.is_closed() => Some(sender.clone()),
            Some(_) => {
                *shared = None;
                None
            }
            None => None,
        }
    }

    /// Stops offering the shared h2 connection (requests already on it go on).
    pub(crate) fn forget_h2(&self) {
        *lock(&self.shared) = None;
    }

    /// Makes `sender` the shared h2 connection.
    pub(crate) fn set_h2(&self, sender: H2Sender) {
        *lock(&self.shared) = Some(sender);
    }

    /// Closes the HTTP/1.1 connections idle longer than the timeout.
    pub(crate) fn prune(&self) {
        let now = Instant::now();
        lock(&self.idle).retain(|entry| {
            !entry.sender.is_closed() && now.duration_since(entry.since) < self.idle_timeout
        });
    }

    /// True the first time it is called: the caller starts the reaper.
    pub(crate) fn start_reaper(&self) -> bool {
        !self.reaper_started.swap(true, Ordering::Relaxed)
    }

    /// Idle HTTP/1.1 connections right now.
    #[cfg(test)]
    pub(crate) fn idle_count(&self) -> usize {
        lock(&self.idle).len()
    }
}

/// A poisoned lock only means another request panicked while holding it; the
/// list itself is still valid.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// An upstream response body. Over HTTP/1.1 it returns its connection to the
/// pool once the body has ended; a body dropped early, or one that failed,
/// takes its connection with it (the rest of the response is never read).
pub struct ResponseBody {
    body: Incoming,
    give_back: Option<(Arc<Pool>, H1Sender)>,
}

impl ResponseBody {
    /// A body whose HTTP/1.1 connection goes back to `pool` when it ends.
    pub(crate) fn pooled(body: Incoming, pool: Arc<Pool>, sender: H1Sender) -> ResponseBody {
        let mut body = ResponseBody {
            body,
            give_back: Some((pool, sender)),
        };
        if body.body.is_end_stream() {
            body.release();
        }
        body
    }

    /// A body on a shared h2 connection: nothing to give back.
    pub(crate) fn shared(body: Incoming) -> ResponseBody {
        ResponseBody {
            body,
            give_back: None,
        }
    }

    fn release(&mut self) {
        if let Some((pool, sender)) = self.give_back.take() {
            pool.put_h1(sender);
        }
    }
}

impl fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseBody")
            .field("body", &self.body)
            .field("pooled", &self.give_back.is_some())
            .finish()
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let frame = ready!(Pin::new(&mut this.body).poll_frame(cx));
        match &frame {
            Some(Ok(_)) if !this.body.is_end_stream() => {}
            Some(Ok(_)) | None => this.release(),
            Some(Err(_)) => this.give_back = None,
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper_util::rt::TokioIo;

    /// A sender on an in-memory connection whose task runs (and whose peer stays
    /// open) until the test ends.
    async fn sender() -> (H1Sender, tokio::io::DuplexStream) {
        let (ours, theirs) = tokio::io::duplex(1024);
        let (sender, connection) = http1::handshake(TokioIo::new(ours)).await.unwrap();
        tokio::spawn(connection);
        (sender, theirs)
    }

    #[tokio::test]
    async fn keeps_at_most_max_idle() {
        let pool = Pool::new(2, Duration::from_secs(60));
        let mut peers = Vec::new();
        for _ in 0..3 {
            let (s, peer) = sender().await;
            peers.push(peer);
            pool.put_h1(s);
        }
        assert_eq!(pool.idle_count(), 2);
        assert!(pool.take_h1().is_some() && pool.take_h1().is_some());
        assert!(pool.take_h1().is_none());
    }

    #[tokio::test]
    async fn no_pooling_with_max_idle_zero() {
        let pool = Pool::new(0, Duration::from_secs(60));
        let (s, _peer) = sender().await;
        pool.put_h1(s);
        assert_eq!(pool.idle_count(), 0);
    }

    #[tokio::test]
    async fn expired_and_closed_connections_are_dropped() {
        let pool = Pool::new(8, Duration::from_millis(50));
        let (s, _peer) = sender().await;
        pool.put_h1(s);
        tokio::time::sleep(Duration::from_millis(80)).await;
        assert!(pool.take_h1().is_none(), "expired");

        let (s, _peer) = sender().await;
        pool.put_h1(s);
        tokio::time::sleep(Duration::from_millis(80)).await;
        pool.prune();
        assert_eq!(pool.idle_count(), 0, "the reaper's prune drops it too");

        let pool = Pool::new(8, Duration::from_secs(60));
        let (s, peer) = sender().await;
        pool.put_h1(s);
        drop(peer);
        // The connection's task sees the hang-up and marks the sender closed.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(pool.take_h1().is_none(), "closed");
    }
}
