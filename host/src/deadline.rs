//! Deadlines that cost nothing for work that is already done.
//!
//! Registering a timer on every request or policy call costs a timer-wheel
//! insert and removal, yet most of that work finishes in its first poll: a
//! small body arrives with the request head, and a policy's `decide` returns
//! without yielding. [`within`] polls once before it arms the timer.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

use tokio::time::Instant;

/// Runs `work` until `deadline`: its output, or None when the deadline came
/// first. The timer is armed only if `work` is still pending after its first
/// poll. `work` is pinned by the caller (`std::pin::pin!`), so a large future
/// (a wasmtime call's) is not moved again to get here.
pub async fn within<F: Future>(deadline: Instant, mut work: Pin<&mut F>) -> Option<F::Output> {
    let first = std::future::poll_fn(|cx| Poll::Ready(work.as_mut().poll(cx))).await;
    match first {
        Poll::Ready(output) => Some(output),
        Poll::Pending => tokio::time::timeout_at(deadline, work).await.ok(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn ready_work_beats_any_deadline_and_pending_work_ends_at_it() {
        // Already past: work that is ready at once still finishes.
        let past = Instant::now() - Duration::from_secs(1);
        assert_eq!(within(past, std::pin::pin!(async { 7 })).await, Some(7));
        let deadline = Instant::now() + Duration::from_millis(20);
        let never = std::pin::pin!(std::future::pending::<u8>());
        assert_eq!(within(deadline, never).await, None);
        assert!(Instant::now() >= deadline);
    }
}
