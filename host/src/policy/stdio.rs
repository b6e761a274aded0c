//! The guest's stdout and stderr: the last few hundred bytes are kept in memory
//! (never logged as they are written) so that a trap can say what the guest
//! printed just before it, e.g. a Rust panic message.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// Bytes of guest output kept.
const TAIL_BYTES: usize = 512;

/// A bounded tail of everything the guest wrote to stdout and stderr.
#[derive(Debug, Clone, Default)]
pub struct OutputTail(Arc<Mutex<VecDeque<u8>>>);

impl OutputTail {
    fn push(&self, bytes: &[u8]) {
        let mut tail = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let keep = &bytes[bytes.len().saturating_sub(TAIL_BYTES)..];
        let overflow = (tail.len() + keep.len()).saturating_sub(TAIL_BYTES);
        tail.drain(..overflow);
        tail.extend(keep);
    }

    /// The last meaningful line the guest wrote, if any (lossy UTF-8, trimmed).
    /// Lines that only frame an error are skipped: Rust's "run with
    /// `RUST_BACKTRACE=1`" hint and "thread … panicked at" header, and
    /// componentize-py's generic "Python function threw an unexpected
    /// exception", so a Python guest's error reads as its exception
    /// (`ValueError: …`, the last line of the traceback it printed).
    pub fn last_line(&self) -> Option<String> {
        let tail = self.0.lock().unwrap_or_else(|e| e.into_inner());
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
        assert!(tail.0.lock().unwrap().len() <= TAIL_BYTES);
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
}
