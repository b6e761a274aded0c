//! Forwarding an upstream response body to the client, frame by frame, never
//! buffered. On the way it keeps the last bytes to read the token `usage` at the
//! end, passes SSE on in whole events, dropping the usage-only chunk the
//! gateway asked for on a client's behalf (`events`), ends a stream that
//! breaks mid-way with an SSE error event, and reports the request's outcome
//! when the body ends (or the client goes away).

mod events;

use std::pin::Pin;
use std::sync::LazyLock;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use self::events::SseEvents;
use super::outcome::{Ending, PendingOutcome, Usage};
use crate::provider::UpstreamBody;

/// Bytes kept from the end of a body to find `usage` in.
const TAIL_BYTES: usize = 4096;

/// An upstream body on its way to the client.
pub struct ResponseStream {
    first: Option<Frame<Bytes>>,
    inner: UpstreamBody,
    idle_timeout: Duration,
    idle: Pin<Box<Sleep>>,
    sse: bool,
    tail: Tail,
    /// An SSE body's events (none for other bodies, passed on frame by frame).
    events: Option<SseEvents>,
    outcome: Option<PendingOutcome>,
    finished: bool,
}

/// Why a stream stopped early.
#[derive(Debug, thiserror::Error)]
#[error("upstream response broke off: {0}")]
pub struct StreamBroken(String);

impl ResponseStream {
    /// Wraps an upstream body whose first frame was already read (to decide on
    /// fallback). `sse` selects how a mid-stream failure is reported and
    /// passes the body on in whole events; `usage_added` says the gateway
    /// asked for the stream's usage on the client's behalf, so the usage-only
    /// chunk is not the client's.
    pub fn new(
        first: Option<Frame<Bytes>>,
        inner: UpstreamBody,
        sse: bool,
        usage_added: bool,
        idle_timeout: Duration,
        outcome: PendingOutcome,
    ) -> ResponseStream {
        let mut tail = Tail::default();
        if let Some(data) = first.as_ref().and_then(Frame::data_ref) {
            tail.push(data);
        }
        let finished = first.is_none();
        let mut events = sse.then(|| SseEvents::new(usage_added));
        let first = match (first, events.as_mut()) {
            (Some(frame), Some(events)) => match frame.into_data() {
                Ok(data) => events.push(data).map(Frame::data),
                Err(frame) => Some(frame),
            },
            (first, _) => first,
        };
        let mut stream = ResponseStream {
            first,
            inner,
            idle_timeout,
            idle: Box::pin(tokio::time::sleep(idle_timeout)),
            sse,
            tail,
            events,
            outcome: Some(outcome),
            finished,
        };
        if finished {
            stream.finish(Ending::Complete);
        }
        stream
    }

    fn finish(&mut self, ending: Ending) {
        self.finished = true;
        if let Some(outcome) = self.outcome.take() {
            outcome.finish(self.tail.usage(), ending);
        }
    }

    /// Reports the request complete once the upstream body has nothing left: with
    /// a known length, hyper stops polling after the last byte and drops the body
    /// without asking for its end, which must not look like a client going away.
    fn finish_if_drained(&mut self) {
        // An h2 upstream flags the end in a frame of its own, after the last
        // data; its remaining content length already says so.
        let drained = self.inner.is_end_stream() || self.inner.size_hint().exact() == Some(0);
        if !self.finished && drained {
            self.finish(Ending::Complete);
        }
    }

    fn broken(&mut self, reason: String) -> Poll<Option<Result<Frame<Bytes>, StreamBroken>>> {
        self.finish(Ending::Broken);
        if let Some(events) = &mut self.events {
            // The event the upstream left unfinished would corrupt the error event.
            events.discard();
        }
        if self.sse {
            // The client is reading SSE: say what happened instead of cutting silently.
            let event = serde_json::json!({
                "error": {
                    "message": format!("the upstream stream broke off: {reason}"),
                    "type": "api_error",
                    "code": "upstream_error",
                }
            });
            let frame = format!("data: {event}\n\n");
            Poll::Ready(Some(Ok(Frame::data(Bytes::from(frame)))))
        } else {
            Poll::Ready(Some(Err(StreamBroken(reason))))
        }
    }
}

impl Body for ResponseStream {
    type Data = Bytes;
    type Error = StreamBroken;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, StreamBroken>>> {
        let this = self.get_mut();
        if let Some(first) = this.first.take() {
            this.finish_if_drained();
            return Poll::Ready(Some(Ok(first)));
        }
        loop {
            if this.finished {
                // An unfinished SSE event still held, if any, then the end.
                let held = this.events.as_mut().and_then(SseEvents::finish);
                return Poll::Ready(held.map(|data| Ok(Frame::data(data))));
            }
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    if let Some(data) = frame.data_ref() {
                        this.tail.push(data);
                    }
                    let deadline = Instant::now() + this.idle_timeout;
                    this.idle.as_mut().reset(deadline);
                    this.finish_if_drained();
                    let Some(events) = &mut this.events else {
                        return Poll::Ready(Some(Ok(frame)));
                    };
                    match frame.into_data() {
                        Ok(data) => match events.push(data) {
                            Some(kept) => return Poll::Ready(Some(Ok(Frame::data(kept)))),
                            // Nothing whole yet: read on.
                            None => continue,
                        },
                        Err(frame) => return Poll::Ready(Some(Ok(frame))),
                    }
                }
                Poll::Ready(Some(Err(err))) => return this.broken(err.to_string()),
                Poll::Ready(None) => {
                    this.finish(Ending::Complete);
                    continue;
                }
                Poll::Pending => {
                    ready!(this.idle.as_mut().poll(cx));
                    let reason = format!("no data for {} ms", this.idle_timeout.as_millis());
                    return this.broken(reason);
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.first.is_none()
            && self.finished
            && self.events.as_ref().is_none_or(SseEvents::is_empty)
    }

    fn size_hint(&self) -> SizeHint {
        if self.events.is_some() {
            // Held and dropped events make the length unknowable (and the
            // handler removed the upstream's Content-Length).
            return SizeHint::default();
        }
        let inner = self.inner.size_hint();
        let first = self
            .first
            .as_ref()
            .and_then(Frame::data_ref)
            .map_or(0, |d| d.len() as u64);
        // Upper before lower: `set_lower` asserts lower <= upper.
        let mut hint = SizeHint::new();
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper + first);
        }
        hint.set_lower(inner.lower() + first);
        hint
    }
}

impl Drop for ResponseStream {
    fn drop(&mut self) {
        if !self.finished {
            // The client went away mid-body; dropping `inner` cancels the upstream request.
            self.finish(Ending::ClientGone);
        }
    }
}

/// The last bytes of a body.
#[derive(Default)]
struct Tail {
    bytes: Vec<u8>,
}

impl Tail {
    fn push(&mut self, data: &[u8]) {
        if data.len() >= TAIL_BYTES {
            self.bytes.clear();
            self.bytes
                .extend_from_slice(&data[data.len() - TAIL_BYTES..]);
            return;
        }
        let overflow = (self.bytes.len() + data.len()).saturating_sub(TAIL_BYTES);
        self.bytes.drain(..overflow);
        self.bytes.extend_from_slice(data);
    }

    /// The last `"usage": {…}` object in the tail: the end of a JSON completion, or
    /// the final chunk of an SSE stream.
    fn usage(&self) -> Option<Usage> {
        usage_in(&self.bytes)
    }
}

/// Runs `chunks` through the tail the forwarder keeps, as a body's frames arrive,
/// and reads `usage` from it as the forwarder does when the body ends. The
/// parsing half of the SSE forwarder, public for the fuzz targets.
pub fn usage_after_frames<'a>(chunks: impl IntoIterator<Item = &'a [u8]>) -> Option<Usage> {
    let mut tail = Tail::default();
    for chunk in chunks {
        tail.push(chunk);
    }
    tail.usage()
}

fn usage_in(bytes: &[u8]) -> Option<Usage> {
    const MARKER: &[u8] = b"\"usage\"";
    // Built once: a searcher's set-up costs more than searching a short tail.
    static FINDER: LazyLock<memchr::memmem::FinderRev<'static>> =
        LazyLock::new(|| memchr::memmem::FinderRev::new(MARKER));
    let mut end = bytes.len();
    while let Some(at) = FINDER.rfind(&bytes[..end]) {
        let rest = bytes[at + MARKER.len()..].trim_ascii_start();
        if let Some(rest) = rest.strip_prefix(b":") {
            let mut values =
                serde_json::Deserializer::from_slice(rest).into_iter::<Option<Usage>>();
            if let Some(Ok(Some(usage))) = values.next() {
                return Some(usage);
            }
        }
        end = at;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_from_json_completion() {
        let body = br#"{"id":"x","choices":[{"message":{"content":"hi \"usage\""}}],"usage":{"prompt_tokens":12,"completion_tokens":5,"total_tokens":17},"system_fingerprint":"f"}"#;
        let usage = usage_in(body).unwrap();
        assert_eq!((usage.prompt_tokens, usage.completion_tokens), (12, 5));
    }

    #[test]
    fn usage_from_final_sse_chunk() {
        let body = b"data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}],\"usage\":null}\n\n\
data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":9}}\n\ndata: [DONE]\n\n";
        let usage = usage_in(body).unwrap();
        assert_eq!((usage.prompt_tokens, usage.completion_tokens), (3, 9));
    }

    #[test]
    fn null_usage_only_is_none() {
        assert!(usage_in(b"data: {\"usage\":null}\n\n").is_none());
        assert!(usage_in(b"{}").is_none());
    }

    #[test]
    fn tail_keeps_the_end() {
        let mut tail = Tail::default();
        tail.push(&vec![b'x'; 3000]);
        tail.push(&vec![b'y'; 3000]);
        assert_eq!(tail.bytes.len(), TAIL_BYTES);
        assert!(tail.bytes.ends_with(b"yyy"));
        tail.push(br#","usage":{"prompt_tokens":1,"completion_tokens":2}}"#);
        assert_eq!(tail.usage().unwrap().completion_tokens, 2);
    }
}
