//! The guest's stdout and stderr, and the lines it logs at `error` level: the
//! last few hundred bytes of the running call are kept in memory (the output is
//! never logged as it is written) so that a trap can say what the guest
//! printed or reported just before it, e.g. a Rust panic message, a Python
//! exception, or the error a JavaScript export threw (which a JS policy's glue
//! logs, since its component has no stdio).

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

use super::store::truncate;

/// Bytes of guest output kept.
const TAIL_BYTES: usize = 512;

/// A bounded tail of what the guest wrote to stdout and stderr, and of the
/// error lines it logged, since the running call began.
#[derive(Debug, Clone, Default)]
pub struct OutputTail(Arc<Tail>);

#[derive(Debug, Default)]
struct Tail {
    bytes: Mutex<VecDeque<u8>>,
    /// Set by every write: most calls write nothing, and then clearing the
    /// tail before the next call takes no lock.
    written: AtomicBool,
}

impl OutputTail {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<u8>> {
        self.0.bytes.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, bytes: &[u8]) {
        self.0.written.store(true, Ordering::Relaxed);
        let mut tail = self.lock();
        let keep = &bytes[bytes.len().saturating_sub(TAIL_BYTES)..];
        let overflow = (tail.len() + keep.len()).saturating_sub(TAIL_BYTES);
        tail.drain(..overflow);
        tail.extend(keep);
    }

    /// Adds `line` (one line: no line breaks in it) as a line of its own, even
    /// after output that did not end its line, cut so that its start is kept.
    pub fn push_line(&self, line: &str) {
        let line = truncate(line, TAIL_BYTES - 2);
        let mut bytes = Vec::with_capacity(line.len() + 2);
        bytes.push(b'\n');
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        self.push(&bytes);
    }

    /// Forgets what earlier calls wrote: a trap is only about its own call.
    pub fn clear(&self) {
        if self.0.written.swap(false, Ordering::Relaxed) {
            self.lock().clear();
        }
    }

    /// The last meaningful line the guest wrote, if any (lossy UTF-8, trimmed).
    /// Lines that only frame an error are skipped: Rust's "run with
    /// `RUST_BACKTRACE=1`" hint and "thread … panicked at" header, and
    /// componentize-py's generic "Python function threw an unexpected
    /// exception", so a Python guest's error reads as its exception
    /// (`ValueError: …`, the last line of the traceback it printed).
    pub fn last_line(&self) -> Option<String> {
        let tail = self.lock();
        let (a, b) = tail.as_slices();
        let text = String::from_utf8_lossy(&[a, b].concat()).into_owned();
        text.lines()
            .map(str::trim)
            .rfind(|line| !line.is_empty() && !is_framing(line))
            .map(str::to_owned)
    }
}

/// A line a guest runtime prints around an error rather than about it.
fn is_framing(line: &str) -> bool {
    line.starts_with("note: run with `RUST_BACKTRACE")
        || (line.starts_with("thread '") && line.contains(" panicked at "))
        || line == "Python function threw an unexpected exception"
}

impl IsTerminal for OutputTail {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for OutputTail {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
}

impl OutputStream for OutputTail {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for OutputTail {
    async fn ready(&mut self) {}
}

impl AsyncWrite for OutputTail {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_line_of_a_bounded_tail() {
        let tail = OutputTail::default();
        assert_eq!(tail.last_line(), None);
        tail.push(&vec![b'x'; 10_000]);
        tail.push(b"\nthread panicked at src/lib.rs:3:5:\nboom\n");
        tail.push(
            b"note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n\n",
        );
        assert_eq!(tail.last_line().as_deref(), Some("boom"));
        assert!(tail.lock().len() <= TAIL_BYTES);
    }

    /// What componentize-py prints when `decide` raises (as measured with a
    /// guest raising `ValueError`).
    #[test]
    fn a_python_exception_reads_as_itself() {
        let tail = OutputTail::default();
        tail.push(
            b"Traceback (most recent call last):\n  File \"/0/app.py\", line 7, in decide\n\
              ValueError: no upstream for tenant x\n\n\
              thread '<unnamed>' (1) panicked at runtime/src/lib.rs:1280:25:\n\
              Python function threw an unexpected exception\n\
              note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n",
        );
        assert_eq!(
            tail.last_line().as_deref(),
            Some("ValueError: no upstream for tenant x")
        );
    }

    #[test]
    fn clearing_forgets_what_earlier_calls_wrote() {
        let tail = OutputTail::default();
        tail.push(b"panicked in an earlier call\n");
        tail.clear();
        assert_eq!(tail.last_line(), None);
        tail.clear();
        tail.push_line("this call");
        assert_eq!(tail.last_line().as_deref(), Some("this call"));
    }

    /// What a JavaScript policy's glue logs when an export throws: a line of
    /// its own after unterminated output, its start kept when it is long.
    #[test]
    fn a_logged_error_is_a_line_of_its_own() {
        let tail = OutputTail::default();
        tail.push(b"partial output");
        tail.push_line("Uncaught Error: no upstream for tenant x");
        assert_eq!(
            tail.last_line().as_deref(),
            Some("Uncaught Error: no upstream for tenant x")
        );

        let long = format!("Uncaught Error: {}", "é".repeat(1000));
        tail.push_line(&long);
        let last = tail.last_line().unwrap();
        assert!(last.starts_with("Uncaught Error: éé"), "{last}");
        assert!(long.starts_with(&last));
        assert!(tail.lock().len() <= TAIL_BYTES);

        tail.clear();
        assert_eq!(tail.last_line(), None);
    }
}
