//! The idle connections of one [`UpstreamClient`](super::UpstreamClient), and the
//! response body that hands an HTTP/1.1 connection back once its response has
//! been read to the end.
//!
//! Each client talks to one upstream, so the pool needs no key: it is a stack
//! of idle HTTP/1.1 connections (the most recently used is reused first, the
//! oldest expire first) and a list of shared h2 connections, each carrying up
//! to a set number of requests at once (another is opened when all are full).
//! A connection goes back on the stack, or a request's place on an h2
//! connection is freed, from the request's own task when its body ends;
//! nothing is spawned per request.

use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
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
    shared: Mutex<Vec<SharedH2>>,
    max_idle: usize,
    idle_timeout: Duration,
    max_h2_streams: usize,
    /// Set while a request opens another h2 connection because all were full.
    h2_connecting: AtomicBool,
    reaper_started: AtomicBool,
}

/// An h2 connection shared by concurrent requests, and how many it carries now.
struct SharedH2 {
    sender: H2Sender,
    streams: Arc<AtomicUsize>,
}

/// See [`Pool::connecting`].
pub(crate) struct Connecting<'a>(&'a Pool);

impl Drop for Connecting<'_> {
    fn drop(&mut self) {
        self.0.h2_connecting.store(false, Ordering::Release);
    }
}

/// One request's place on a shared h2 connection, freed when dropped.
pub(crate) struct StreamSlot(Arc<AtomicUsize>);

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

struct Idle {
    sender: H1Sender,
    since: Instant,
}

impl Pool {
    /// A pool keeping at most `max_idle` idle HTTP/1.1 connections, each for at
    /// most `idle_timeout`, and putting at most `max_h2_streams` requests at
    /// once on one h2 connection.
    pub(crate) fn new(max_idle: usize, idle_timeout: Duration, max_h2_streams: usize) -> Pool {
        Pool {
            idle: Mutex::new(VecDeque::new()),
            shared: Mutex::new(Vec::new()),
            max_idle,
            idle_timeout,
            max_h2_streams: max_h2_streams.max(1),
            h2_connecting: AtomicBool::new(false),
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

    /// A place on the first open h2 connection with room for one more request.
    /// `None` when there is none: the caller opens another connection, holding
    /// a [`Pool::connecting`] guard while it does.
    ///
    /// When every connection is full, only one request opens another; the
    /// requests that come meanwhile go on the least loaded connection (hyper
    /// holds them until the server allows another stream) rather than each
    /// opening a connection of its own.
    pub(crate) fn take_h2(&self) -> Option<(H2Sender, StreamSlot)> {
        let mut shared = lock(&self.shared);
        shared.retain(|connection| !connection.sender.is_closed());
        // Counted under the lock, so two takers cannot both fill the last place.
        let with_room = shared
            .iter()
            .find(|c| c.streams.load(Ordering::Relaxed) < self.max_h2_streams);
        let connection = match with_room {
            Some(connection) => connection,
            None if shared.is_empty() => return None,
            None if !self.h2_connecting.swap(true, Ordering::AcqRel) => return None,
            None => shared
                .iter()
                .min_by_key(|c| c.streams.load(Ordering::Relaxed))?,
        };
        connection.streams.fetch_add(1, Ordering::Relaxed);
        let slot = StreamSlot(connection.streams.clone());
        Some((connection.sender.clone(), slot))
    }

    /// Held while a connection is opened; dropping it (opened, failed, or the
    /// request cancelled, e.g. by its timeout) lets the next request that
    /// finds every h2 connection full open another.
    pub(crate) fn connecting(&self) -> Connecting<'_> {
        Connecting(self)
    }

    /// Shares a new h2 connection; the returned place on it is the caller's.
    pub(crate) fn add_h2(&self, sender: H2Sender) -> StreamSlot {
        let streams = Arc::new(AtomicUsize::new(1));
        lock(&self.shared).push(SharedH2 {
            sender,
            streams: streams.clone(),
        });
        StreamSlot(streams)
    }

    /// Stops offering the h2 connection `slot` is on (requests already on it go on).
    pub(crate) fn forget_h2(&self, slot: &StreamSlot) {
        lock(&self.shared).retain(|connection| !Arc::ptr_eq(&connection.streams, &slot.0));
    }

    /// Closes the HTTP/1.1 connections idle longer than the timeout, and the
    /// h2 connections after the first that carry nothing (opened for a burst).
    /// The first h2 connection stays however long it is idle: h2 keep-alive
    /// pings keep it usable, and the server closes it when it wants to.
    pub(crate) fn prune(&self) {
        let now = Instant::now();
        lock(&self.idle).retain(|entry| {
            !entry.sender.is_closed() && now.duration_since(entry.since) < self.idle_timeout
        });
        let mut shared = lock(&self.shared);
        shared.retain(|connection| !connection.sender.is_closed());
        let mut index = 0;
        shared.retain(|connection| {
            index += 1;
            index == 1 || connection.streams.load(Ordering::Relaxed) > 0
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
/// Over h2 it holds its place on the shared connection until it ends or is
/// dropped.
pub struct ResponseBody {
    body: Incoming,
    give_back: Option<(Arc<Pool>, H1Sender)>,
    slot: Option<StreamSlot>,
}

impl ResponseBody {
    /// A body whose HTTP/1.1 connection goes back to `pool` when it ends.
    pub(crate) fn pooled(body: Incoming, pool: Arc<Pool>, sender: H1Sender) -> ResponseBody {
        let mut body = ResponseBody {
            body,
            give_back: Some((pool, sender)),
            slot: None,
        };
        if body.body.is_end_stream() {
            body.release();
        }
        body
    }

    /// A body on a shared h2 connection, holding `slot` until it ends.
    pub(crate) fn shared(body: Incoming, slot: StreamSlot) -> ResponseBody {
        let mut body = ResponseBody {
            body,
            give_back: None,
            slot: Some(slot),
        };
        if body.body.is_end_stream() {
            body.release();
        }
        body
    }

    fn release(&mut self) {
        if let Some((pool, sender)) = self.give_back.take() {
            pool.put_h1(sender);
        }
        self.slot = None;
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
            Some(Err(_)) => {
                this.give_back = None;
                this.slot = None;
            }
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

    /// An h2 sender on an in-memory connection (the client sends its preface
    /// without waiting for the peer).
    async fn h2_sender() -> (H2Sender, tokio::io::DuplexStream) {
        let (ours, theirs) = tokio::io::duplex(64 * 1024);
        let (sender, connection) = http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .handshake(TokioIo::new(ours))
            .await
            .unwrap();
        tokio::spawn(connection);
        (sender, theirs)
    }

    #[tokio::test]
    async fn h2_places_are_counted_and_burst_connections_pruned() {
        let pool = Pool::new(8, Duration::from_secs(60), 2);
        assert!(pool.take_h2().is_none(), "no connection yet");
        let (a, _peer_a) = h2_sender().await;
        let first = pool.add_h2(a);
        let (_, second) = pool.take_h2().expect("room for a second request");
        assert!(
            pool.take_h2().is_none(),
            "full at two: this caller connects"
        );
        // While it connects, others wait on the full connection instead.
        let (_, queued) = pool.take_h2().expect("one connect at a time");
        drop(queued);
        // That connect is cancelled (its request timed out): the next may connect.
        drop(pool.connecting());
        assert!(
            pool.take_h2().is_none(),
            "a cancelled connect is not waited for"
        );
        let (b, _peer_b) = h2_sender().await;
        let on_b = pool.add_h2(b);
        drop(pool.connecting());
        drop(second);
        let (_, again) = pool.take_h2().expect("a freed place is offered again");
        drop((first, again, on_b));
        // Nothing in flight: the burst connection goes, the first stays.
        pool.prune();
        assert_eq!(lock(&pool.shared).len(), 1);
        let forget = pool.take_h2().expect("the first connection stays").1;
        pool.forget_h2(&forget);
        assert!(pool.take_h2().is_none(), "forgotten");
    }

    #[tokio::test]
    async fn keeps_at_most_max_idle() {
        let pool = Pool::new(2, Duration::from_secs(60), 100);
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
        let pool = Pool::new(0, Duration::from_secs(60), 100);
        let (s, _peer) = sender().await;
        pool.put_h1(s);
        assert_eq!(pool.idle_count(), 0);
    }

    #[tokio::test]
    async fn expired_and_closed_connections_are_dropped() {
        let pool = Pool::new(8, Duration::from_millis(50), 100);
        let (s, _peer) = sender().await;
        pool.put_h1(s);
        tokio::time::sleep(Duration::from_millis(80)).await;
        assert!(pool.take_h1().is_none(), "expired");

        let (s, _peer) = sender().await;
        pool.put_h1(s);
        tokio::time::sleep(Duration::from_millis(80)).await;
        pool.prune();
        assert_eq!(pool.idle_count(), 0, "the reaper's prune drops it too");

        let pool = Pool::new(8, Duration::from_secs(60), 100);
        let (s, peer) = sender().await;
        pool.put_h1(s);
        drop(peer);
        // The connection's task sees the hang-up and marks the sender closed.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(pool.take_h1().is_none(), "closed");
    }
}
