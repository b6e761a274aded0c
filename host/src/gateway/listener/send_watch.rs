//! `send_timeout_ms` on the client side: a socket wrapper whose writes fail
//! once the client has taken no byte for the timeout (its receive window and
//! the socket's send buffer full). hyper has no write timeout of its own, and a
//! response body it cannot send is simply not polled: without this, a client
//! that never reads would hold its upstream request for as long as it stayed
//! connected. The failed write ends the connection, and every request on it.
//!
//! The timer exists only while a write waits: a client that keeps reading
//! costs one branch per write.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// Passes reads and writes through; a write that waits longer than the send
/// timeout fails with [`io::ErrorKind::TimedOut`].
pub struct SendWatch<I> {
    inner: I,
    timeout: Duration,
    /// Armed when a write first waits, cleared when one goes through.
    waiting: Option<Pin<Box<Sleep>>>,
}

impl<I> SendWatch<I> {
    /// Wraps `inner` with a send timeout of `timeout`.
    pub fn new(inner: I, timeout: Duration) -> SendWatch<I> {
        SendWatch {
            inner,
            timeout,
            waiting: None,
        }
    }

    /// Passes a ready write on; a waiting one fails once it has waited `timeout`.
    fn watch<T>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if poll.is_ready() {
            self.waiting = None;
            return poll;
        }
        let timeout = self.timeout;
        let waiting = self
            .waiting
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match waiting.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client took no response byte within the send timeout",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for SendWatch<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for SendWatch<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.watch(cx, poll)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.watch(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_flush(cx);
        this.watch(cx, poll)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    const TIMEOUT: Duration = Duration::from_millis(500);

    #[tokio::test(start_paused = true)]
    async fn a_write_the_client_never_takes_fails_after_the_timeout() {
        let (_client, server) = tokio::io::duplex(64);
        let mut io = SendWatch::new(server, TIMEOUT);
        io.write_all(&[b'a'; 64]).await.unwrap();
        let started = tokio::time::Instant::now();
        let err = io.write_all(b"more").await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), TIMEOUT);
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_reads_slowly_is_not_cut_off() {
        let (mut client, server) = tokio::io::duplex(64);
        let mut io = SendWatch::new(server, TIMEOUT);
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 16];
            let mut total = 0;
            // 16 bytes every 400 ms: each wait is shorter than the timeout,
            // the whole write much longer.
            while total < 64 * 8 {
                tokio::time::sleep(Duration::from_millis(400)).await;
                total += client.read(&mut buf).await.unwrap();
            }
        });
        io.write_all(&[b'a'; 64 * 8]).await.unwrap();
        reader.await.unwrap();
    }
}
