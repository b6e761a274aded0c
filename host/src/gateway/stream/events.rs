//! Passing an SSE body on in whole events, minus the usage-only chunk when the
//! gateway asked for it.
//!
//! The start of an event whose end has not arrived is held until it does. An
//! SSE client dispatches nothing before an event's end anyway, so holding it
//! delays nothing the client could use; and a stream that breaks mid-event
//! then ends at an event boundary, where the gateway's error event parses
//! (appended to half an event, it would corrupt both).
//!
//! Events end with a blank line written `\n\n` or `\r\n\r\n`, as every
//! provider here writes them. A body whose events end otherwise (`\r` alone,
//! which SSE also allows) or that is not SSE at all is passed on once
//! [`MAX_HELD`] bytes are waiting, so nothing is buffered without bound.
//!
//! OpenAI-style APIs put `usage` in a stream only when the request sets
//! `stream_options.include_usage`; then the last event before `[DONE]` is a
//! chunk with no choices and the usage. The gateway sets the option for every
//! stream so that it can count tokens and cost, and a client that did not set it
//! must see the stream it asked for: that one event is dropped.

use bytes::{Bytes, BytesMut};
use serde::Deserialize;
use serde::de::IgnoredAny;

/// Most bytes held for an unfinished event: far more than any real event, and
/// past it the bytes go on as they are.
const MAX_HELD: usize = 64 * 1024;

/// An SSE body on its way, frame by frame, in whole events.
#[derive(Debug, Default)]
pub struct SseEvents {
    /// The start of an event whose end has not arrived.
    held: BytesMut,
    /// Whether the usage-only chunk is dropped.
    drop_usage_chunk: bool,
}

impl SseEvents {
    /// Events of a body; `drop_usage_chunk` when the gateway asked for the
    /// usage on the client's behalf.
    pub fn new(drop_usage_chunk: bool) -> SseEvents {
        SseEvents {
            held: BytesMut::new(),
            drop_usage_chunk,
        }
    }

    /// What to pass on of `data`, the next bytes of the body: the events it
    /// completes (minus the usage-only chunk, when dropped). None when there is
    /// nothing to pass on yet.
    pub fn push(&mut self, data: Bytes) -> Option<Bytes> {
        let whole = if self.held.is_empty() {
            let end = events_end(&data);
            self.held.extend_from_slice(&data[end..]);
            data.slice(..end)
        } else {
            self.held.extend_from_slice(&data);
            let end = events_end(&self.held);
            self.held.split_to(end).freeze()
        };
        if self.held.len() > MAX_HELD {
            // No event ends where this framing can see it: pass everything on.
            let mut all = BytesMut::from(&whole[..]);
            all.extend_from_slice(&self.held.split());
            return Some(all.freeze());
        }
        let kept = if self.drop_usage_chunk {
            without_usage_chunk(whole)
        } else {
            whole
        };
        (!kept.is_empty()).then_some(kept)
    }

    /// What is still held when the upstream's body ends: an event it never
    /// finished, passed on as it came.
    pub fn finish(&mut self) -> Option<Bytes> {
        (!self.held.is_empty()).then(|| self.held.split().freeze())
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// Forgets a held, unfinished event: the stream broke and the gateway's
    /// error event follows instead.
    pub fn discard(&mut self) {
        self.held.clear();
    }
}

/// Where the last whole event in `bytes` ends (0 when none does): just after
/// the last blank line.
fn events_end(bytes: &[u8]) -> usize {
    let lf = memchr::memmem::rfind(bytes, b"\n\n").map(|at| at + 2);
    let crlf = memchr::memmem::rfind(bytes, b"\r\n\r\n").map(|at| at + 4);
    lf.max(crlf).unwrap_or(0)
}

/// `events` (whole events) with the usage-only chunk removed; the same bytes,
/// uncopied, when there is none.
fn without_usage_chunk(events: Bytes) -> Bytes {
    let Some((start, end)) = usage_chunk(&events) else {
        return events;
    };
    let mut kept = BytesMut::with_capacity(events.len() - (end - start));
    kept.extend_from_slice(&events[..start]);
    kept.extend_from_slice(&events[end..]);
    kept.freeze()
}

/// The byte range of the usage-only chunk among whole `events`, if one is there.
fn usage_chunk(events: &[u8]) -> Option<(usize, usize)> {
    // Cheap test first: with include_usage every chunk says `"usage":null`,
    // and only the last one has an object there, so only that one is parsed.
    if !has_usage_object(events) {
        return None;
    }
    let mut start = 0;
    while start < events.len() {
        let rest = &events[start..];
        let end = start + events_end_first(rest);
        if is_usage_only(&events[start..end]) {
            return Some((start, end));
        }
        if end == start {
            break;
        }
        start = end;
    }
    None
}

/// Whether some `"usage"` key in `bytes` has an object for its value.
fn has_usage_object(bytes: &[u8]) -> bool {
    memchr::memmem::find_iter(bytes, b"\"usage\"").any(|at| {
        let rest = bytes[at + b"\"usage\"".len()..].trim_ascii_start();
        rest.strip_prefix(b":")
            .is_some_and(|value| value.trim_ascii_start().starts_with(b"{"))
    })
}

/// Where the first event in `bytes` ends, just after its blank line (the
/// whole length when none ends).
fn events_end_first(bytes: &[u8]) -> usize {
    let lf = memchr::memmem::find(bytes, b"\n\n").map(|at| at + 2);
    let crlf = memchr::memmem::find(bytes, b"\r\n\r\n").map(|at| at + 4);
    match (lf, crlf) {
        (Some(a), Some(b)) => a.min(b),
        (Some(end), None) | (None, Some(end)) => end,
        (None, None) => bytes.len(),
    }
}

/// Whether one event is a chunk with no choices and a usage object.
fn is_usage_only(event: &[u8]) -> bool {
    #[derive(Deserialize)]
    struct Chunk {
        choices: Vec<IgnoredAny>,
        usage: Option<IgnoredAny>,
    }
    let Some(data) = event.trim_ascii().strip_prefix(b"data:") else {
        return false;
    };
    matches!(
        serde_json::from_slice::<Chunk>(data.trim_ascii()),
        Ok(Chunk { choices, usage: Some(_) }) if choices.is_empty()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHUNK: &str = "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}],\"usage\":null}\n\n";
    const USAGE: &str =
        "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":9}}\n\n";
    const DONE: &str = "data: [DONE]\n\n";

    /// Runs `frames` through an event framer that drops the usage chunk; the
    /// bytes the client gets.
    fn client_sees(frames: &[&[u8]]) -> String {
        let mut filter = SseEvents::new(true);
        let mut out = Vec::new();
        for frame in frames {
            if let Some(kept) = filter.push(Bytes::copy_from_slice(frame)) {
                out.extend_from_slice(&kept);
            }
        }
        if let Some(rest) = filter.finish() {
            out.extend_from_slice(&rest);
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn the_usage_chunk_is_dropped_and_the_rest_kept_byte_for_byte() {
        let stream = format!("{CHUNK}{CHUNK}{USAGE}{DONE}");
        assert_eq!(
            client_sees(&[stream.as_bytes()]),
            format!("{CHUNK}{CHUNK}{DONE}")
        );
    }

    #[test]
    fn events_split_across_frames_at_any_byte_come_out_whole() {
        let stream = format!("{CHUNK}{USAGE}{DONE}");
        let bytes = stream.as_bytes();
        for cut in 1..bytes.len() {
            let (a, b) = bytes.split_at(cut);
            assert_eq!(
                client_sees(&[a, b]),
                format!("{CHUNK}{DONE}"),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn a_partial_event_is_held_until_its_end() {
        let mut filter = SseEvents::new(false);
        let (head, tail) = CHUNK.split_at(10);
        assert_eq!(filter.push(Bytes::from_static(head.as_bytes())), None);
        assert_eq!(
            filter.push(Bytes::from_static(tail.as_bytes())).as_deref(),
            Some(CHUNK.as_bytes())
        );
        filter.push(Bytes::from_static(b"data: {\"cho"));
        filter.discard();
        assert_eq!(filter.finish(), None);
    }

    #[test]
    fn without_dropping_the_usage_chunk_every_event_passes() {
        let mut events = SseEvents::new(false);
        let stream = format!("{CHUNK}{USAGE}{DONE}");
        let kept = events.push(Bytes::from(stream.clone())).unwrap();
        assert_eq!(&kept[..], stream.as_bytes());
    }

    #[test]
    fn only_a_usage_object_is_worth_parsing() {
        assert!(!has_usage_object(CHUNK.as_bytes()));
        assert!(has_usage_object(USAGE.as_bytes()));
        assert!(has_usage_object(b"{\"usage\" :  {\"prompt_tokens\":1}}"));
    }

    #[test]
    fn a_body_with_no_event_end_is_passed_on_past_the_cap() {
        let mut events = SseEvents::new(false);
        let line = vec![b'x'; 40 * 1024];
        assert_eq!(events.push(Bytes::from(line.clone())), None);
        let out = events.push(Bytes::from(line)).expect("past the cap");
        assert_eq!(out.len(), 80 * 1024);
        assert!(events.is_empty());
    }

    #[test]
    fn chunks_with_choices_or_without_usage_stay() {
        let with_both = "data: {\"choices\":[{\"delta\":{}}],\"usage\":{\"prompt_tokens\":1}}\n\n";
        let null_usage = "data: {\"choices\":[],\"usage\":null}\n\n";
        let crlf = "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1}}\r\n\r\n";
        let stream = format!("{with_both}{null_usage}{crlf}{DONE}");
        assert_eq!(
            client_sees(&[stream.as_bytes()]),
            format!("{with_both}{null_usage}{DONE}")
        );
    }
}
