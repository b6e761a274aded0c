//! Request-smuggling guard for HTTP/1.1 connections.
//!
//! hyper resolves a request that carries both `Content-Length` and
//! `Transfer-Encoding` the way RFC 9112 §6.1 allows: it drops the length, reads
//! the chunked body and closes the connection afterwards. It also accepts
//! repeated identical lengths. By the time the service sees the request, the
//! dropped header is gone, so the gateway cannot tell. Switchyard refuses those
//! shapes outright instead, as Envoy does: [`GuardedIo`] watches the bytes hyper
//! reads, finds each request head (following the body framing from one head to
//! the next, as hyper does), and records the number of the first request whose
//! head is ambiguous. The service answers that request 400 and closes the
//! connection.
//!
//! The scanner only reads; it never changes what hyper sees. When it meets
//! anything it does not follow (a head hyper will refuse anyway, an h2 preface),
//! it stops watching that connection.

use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Longest chunk-size or trailer line followed before giving up.
const MAX_LINE: usize = 4096;

/// What one connection's guard has seen, shared with its service.
#[derive(Debug, Default)]
pub struct Verdicts {
    /// Requests handed to the service so far on this connection.
    served: AtomicU64,
    /// 1-based number of the first request that must be refused (an ambiguous
    /// head, or the first one the guard could not follow); 0 when none.
    first_refused: AtomicU64,
}

impl Verdicts {
    /// Called once per request, in order: whether this request must be refused
    /// because its head was ambiguous, or because the guard lost track of the
    /// framing before it (fail safe: an unchecked request is never served).
    pub fn next_request_is_ambiguous(&self) -> bool {
        let number = self.served.fetch_add(1, Ordering::Relaxed) + 1;
        let first = self.first_refused.load(Ordering::Relaxed);
        first != 0 && number >= first
    }
}

/// An IO stream whose inbound bytes are scanned for ambiguous HTTP/1.1 framing.
pub struct GuardedIo<I> {
    inner: I,
    scanner: Option<Scanner>,
    verdicts: Arc<Verdicts>,
}

impl<I> GuardedIo<I> {
    /// Wraps `inner`; with `watch` false (an h2 connection) the bytes pass unseen.
    pub fn new(
        inner: I,
        watch: bool,
        max_head_bytes: usize,
        max_headers: usize,
    ) -> (GuardedIo<I>, Arc<Verdicts>) {
        let verdicts = Arc::new(Verdicts::default());
        let scanner = watch.then(|| Scanner::new(max_head_bytes, max_headers));
        let io = GuardedIo {
            inner,
            scanner,
            verdicts: verdicts.clone(),
        };
        (io, verdicts)
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for GuardedIo<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let (Poll::Ready(Ok(())), Some(scanner)) = (&polled, this.scanner.as_mut()) {
            let first_refused = match scanner.feed(&buf.filled()[before..]) {
                Scan::Continue => None,
                Scan::Ambiguous(number) => Some(number),
                Scan::GiveUp => Some(scanner.heads + 1),
            };
            if let Some(number) = first_refused {
                this.verdicts.first_refused.store(number, Ordering::Relaxed);
                this.scanner = None;
            }
        }
        polled
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for GuardedIo<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// What the scanner made of the bytes so far.
#[derive(Debug, PartialEq, Eq)]
pub enum Scan {
    /// Nothing wrong yet.
    Continue,
    /// The head of request number N (1-based) is ambiguous.
    Ambiguous(u64),
    /// Stop watching: the framing could not be followed (usually input hyper
    /// refuses itself). Every request after the last complete head is refused.
    GiveUp,
}

/// Follows HTTP/1.1 message framing over a byte stream, head to head.
#[derive(Debug)]
pub struct Scanner {
    state: State,
    line: Vec<u8>,
    heads: u64,
    max_head_bytes: usize,
    max_headers: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading a request head into `line`.
    Head,
    /// A fixed-length body with this many bytes left.
    Fixed(u64),
    /// A chunk-size line.
    ChunkSize,
    /// Chunk data with this many bytes left, then its CRLF.
    ChunkData(u64),
    /// The CRLF after chunk data (bytes of it left).
    ChunkEnd(u8),
    /// Trailer lines until an empty one.
    Trailers,
}

impl Scanner {
    /// A scanner that gives up on heads longer than `max_head_bytes` or with more
    /// than `max_headers` fields (hyper refuses those with 431).
    pub fn new(max_head_bytes: usize, max_headers: usize) -> Scanner {
        Scanner {
            state: State::Head,
            line: Vec::new(),
            heads: 0,
            max_head_bytes,
            max_headers,
        }
    }

    /// Feeds the next bytes read from the client.
    pub fn feed(&mut self, mut bytes: &[u8]) -> Scan {
        while !bytes.is_empty() {
            match self.state {
                State::Head => {
                    if self.line.is_empty() {
                        // Empty lines before a request line are ignored (RFC 9112 §2.2).
                        let skip = bytes
                            .iter()
                            .position(|b| !matches!(b, b'\r' | b'\n'))
                            .unwrap_or(bytes.len());
                        bytes = &bytes[skip..];
                        if bytes.is_empty() {
                            break;
                        }
                    }
                    let seen = self.line.len();
                    // httparse (hyper's parser) says where the head ends, so bare-LF
                    // line endings are followed exactly as hyper follows them. A head
                    // that arrives in one read (the usual case) is parsed where it
                    // lies; only a head split across reads is buffered.
                    let parsed = if seen == 0 {
                        head_end(bytes, self.max_headers)
                    } else {
                        self.line.extend_from_slice(bytes);
                        head_end(&self.line, self.max_headers)
                    };
                    let (end, framing) = match parsed {
                        HeadEnd::At(end, framing) => (end, framing),
                        HeadEnd::Partial => {
                            if seen == 0 {
                                self.line.extend_from_slice(bytes);
                            }
                            if self.line.len() <= self.max_head_bytes {
                                break;
                            }
                            return Scan::GiveUp;
                        }
                        HeadEnd::Invalid => return Scan::GiveUp,
                    };
                    if end > self.max_head_bytes {
                        // Whatever the read sizes were: hyper refuses it (431).
                        return Scan::GiveUp;
                    }
                    let consumed = end - seen;
                    self.line.clear();
                    self.heads += 1;
                    match framing {
                        Framing::Ambiguous => return Scan::Ambiguous(self.heads),
                        Framing::Refused => return Scan::GiveUp,
                        Framing::None => self.state = State::Head,
                        Framing::Length(0) => self.state = State::Head,
                        Framing::Length(n) => self.state = State::Fixed(n),
                        Framing::Chunked => self.state = State::ChunkSize,
                    }
                    bytes = &bytes[consumed..];
                }
                State::Fixed(left) => {
                    let take = left.min(bytes.len() as u64);
                    bytes = &bytes[take as usize..];
                    self.state = match left - take {
                        0 => State::Head,
                        n => State::Fixed(n),
                    };
                }
                State::ChunkSize | State::Trailers => {
                    // hyper ends a trailer line only at CRLF (a bare LF is part of
                    // the line); a chunk-size line ends at LF.
                    let end = if self.state == State::Trailers {
                        trailer_line_end(&self.line, bytes)
                    } else {
                        memchr::memchr(b'\n', bytes)
                    };
                    let Some(nl) = end else {
                        self.line.extend_from_slice(bytes);
                        if self.line.len() > MAX_LINE {
                            return Scan::GiveUp;
                        }
                        break;
                    };
                    self.line.extend_from_slice(&bytes[..=nl]);
                    bytes = &bytes[nl + 1..];
                    let line = std::mem::take(&mut self.line);
                    let text = line.strip_suffix(b"\n").unwrap_or(&line);
                    let text = text.strip_suffix(b"\r").unwrap_or(text);
                    if self.state == State::Trailers {
                        if text.is_empty() {
                            self.state = State::Head;
                        }
                        continue;
                    }
                    let Some(size) = chunk_size(text) else {
                        return Scan::GiveUp;
                    };
                    self.state = match size {
                        0 => State::Trailers,
                        n => State::ChunkData(n),
                    };
                }
                State::ChunkData(left) => {
                    let take = left.min(bytes.len() as u64);
                    bytes = &bytes[take as usize..];
                    self.state = match left - take {
                        0 => State::ChunkEnd(2),
                        n => State::ChunkData(n),
                    };
                }
                State::ChunkEnd(left) => {
                    let expected: &[u8] = if left == 2 { b"\r\n" } else { b"\n" };
                    if bytes[0] != expected[0] {
                        return Scan::GiveUp;
                    }
                    bytes = &bytes[1..];
                    self.state = if left == 2 {
                        State::ChunkEnd(1)
                    } else {
                        State::ChunkSize
                    };
                }
            }
        }
        Scan::Continue
    }
}

/// Where a buffered request head ends, as httparse sees it.
enum HeadEnd {
    /// The head is complete, this many bytes long, and frames its body so.
    At(usize, Framing),
    /// More bytes are needed.
    Partial,
    /// Not a head hyper would accept.
    Invalid,
}

fn head_end(buffered: &[u8], max_headers: usize) -> HeadEnd {
    // Header slots on the stack, left uninitialised, for the usual limits; a
    // larger configured limit gets them from the heap.
    const ON_STACK: usize = 128;
    let mut stack = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; ON_STACK];
    let mut heap = Vec::new();
    let slots = if max_headers <= ON_STACK {
        &mut stack[..max_headers]
    } else {
        heap.resize_with(max_headers, MaybeUninit::uninit);
        &mut heap[..]
    };
    let mut request = httparse::Request::new(&mut []);
    match request.parse_with_uninit_headers(buffered, slots) {
        Ok(httparse::Status::Complete(end)) => HeadEnd::At(end, framing(&request)),
        Ok(httparse::Status::Partial) => HeadEnd::Partial,
        Err(_) => HeadEnd::Invalid,
    }
}

/// The index in `bytes` of the LF ending a trailer line (a CRLF, whose CR may
/// be the last byte already buffered in `line`).
fn trailer_line_end(line: &[u8], bytes: &[u8]) -> Option<usize> {
    if line.last() == Some(&b'\r') && bytes.first() == Some(&b'\n') {
        return Some(0);
    }
    memchr::memmem::find(bytes, b"\r\n").map(|at| at + 1)
}

/// How a request head frames its body.
#[derive(Debug, PartialEq, Eq)]
enum Framing {
    None,
    Length(u64),
    Chunked,
    /// Both a length and a transfer coding, or more than one length.
    Ambiguous,
    /// hyper refuses this head itself (or it is not HTTP/1.x).
    Refused,
}

/// How a parsed head frames its body.
fn framing(request: &httparse::Request<'_, '_>) -> Framing {
    if request.method == Some("PRI") {
        return Framing::Refused;
    }
    let mut lengths = 0usize;
    let mut length = None;
    let mut chunked = None;
    for header in request.headers.iter() {
        if header.name.eq_ignore_ascii_case("content-length") {
            lengths += 1;
            if header.value.contains(&b',') {
                lengths += 1;
            }
            length = std::str::from_utf8(header.value)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok());
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            // The last coding of the last field decides, as in hyper.
            let last = header.value.rsplit(|&b| b == b',').next().unwrap_or(b"");
            chunked = Some(last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        }
    }
    match (lengths, chunked) {
        (0, None) => Framing::None,
        (1, None) => length.map_or(Framing::Refused, Framing::Length),
        (0, Some(true)) => Framing::Chunked,
        (0, Some(false)) => Framing::Refused,
        _ => Framing::Ambiguous,
    }
}

/// Parses a chunk-size line (`1a;ext=1`).
fn chunk_size(line: &[u8]) -> Option<u64> {
    let hex = line.split(|&b| b == b';').next()?.trim_ascii();
    if hex.is_empty() || hex.len() > 16 {
        return None;
    }
    u64::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(parts: &[&[u8]]) -> Scan {
        let mut scanner = Scanner::new(64 * 1024, 100);
        for part in parts {
            match scanner.feed(part) {
                Scan::Continue => {}
                other => return other,
            }
        }
        Scan::Continue
    }

    #[test]
    fn plain_requests_pass() {
        let req = b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello\
GET /b HTTP/1.1\r\nHost: x\r\n\r\n\
POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n\
POST /d HTTP/1.1\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(scan(&[req]), Scan::Continue);
        // The same bytes one at a time.
        let mut scanner = Scanner::new(64 * 1024, 100);
        for byte in req.iter() {
            assert_eq!(scanner.feed(std::slice::from_ref(byte)), Scan::Continue);
        }
        assert_eq!(scanner.heads, 4);
        assert_eq!(scanner.state, State::Head);
    }

    #[test]
    fn length_and_transfer_encoding_is_ambiguous() {
        let req = b"POST /a HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(scan(&[req]), Scan::Ambiguous(1));
        let req = b"POST /a HTTP/1.1\r\ntransfer-encoding: chunked\r\ncontent-length: 4\r\n\r\n";
        assert_eq!(scan(&[req]), Scan::Ambiguous(1));
    }

    #[test]
    fn duplicate_lengths_are_ambiguous_on_a_later_request() {
        let first = b"POST /a HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi";
        let second = b"POST /b HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nhi";
        assert_eq!(scan(&[first, second]), Scan::Ambiguous(2));
        let listed = b"POST /b HTTP/1.1\r\nContent-Length: 2, 2\r\n\r\nhi";
        assert_eq!(scan(&[listed]), Scan::Ambiguous(1));
    }

    #[test]
    fn smuggled_head_inside_a_body_is_not_a_head() {
        // The second "request" is body bytes of the first; it is never a head.
        let body = b"GET /x HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        let head = format!("POST /a HTTP/1.1\r\nContent-Length: {}\r\n\r\n", body.len());
        assert_eq!(scan(&[head.as_bytes(), body]), Scan::Continue);
    }

    #[test]
    fn gives_up_on_what_hyper_refuses() {
        assert_eq!(scan(&[b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"]), Scan::GiveUp);
        assert_eq!(scan(&[b"NOT HTTP\r\n\r\n"]), Scan::GiveUp);
        let bad_chunk = b"POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n";
        assert_eq!(scan(&[bad_chunk]), Scan::GiveUp);
        let mut scanner = Scanner::new(100, 100);
        assert_eq!(scanner.feed(&[b'a'; 200]), Scan::GiveUp);
    }

    #[test]
    fn an_oversized_head_gives_up_however_it_arrives() {
        let head = format!("GET / HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(300));
        let mut whole = Scanner::new(100, 100);
        assert_eq!(whole.feed(head.as_bytes()), Scan::GiveUp);
        let mut bytewise = Scanner::new(100, 100);
        let verdict = head
            .as_bytes()
            .chunks(1)
            .map(|b| bytewise.feed(b))
            .find(|v| *v != Scan::Continue);
        assert_eq!(verdict, Some(Scan::GiveUp));
    }

    #[test]
    fn bare_lf_heads_are_followed_as_hyper_follows_them() {
        let req = b"POST /a HTTP/1.1\nContent-Length: 4\nTransfer-Encoding: chunked\n\n";
        assert_eq!(scan(&[req]), Scan::Ambiguous(1));
        let mut scanner = Scanner::new(64 * 1024, 100);
        let mixed = b"GET /a HTTP/1.1\nHost: x\n\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(scanner.feed(mixed), Scan::Continue);
        assert_eq!(scanner.heads, 2);
    }

    #[test]
    fn a_bare_lf_in_trailers_does_not_end_them() {
        // hyper reads `X: 1\n\nGET /x …` as trailer bytes: no second head.
        let req = b"POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: 1\n\nGET /x HTTP/1.1\r\n\r\n";
        let mut scanner = Scanner::new(64 * 1024, 100);
        assert_eq!(scanner.feed(req), Scan::Continue);
        assert_eq!(scanner.heads, 1);
        // The CRLF CRLF after `GET /x HTTP/1.1` ends the trailer section.
        assert_eq!(scanner.state, State::Head);
    }

    #[test]
    fn after_giving_up_every_later_request_is_refused() {
        let stream = b"POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n";
        let (mut io, verdicts) = GuardedIo::new(&stream[..], true, 64 * 1024, 100);
        let mut sink = Vec::new();
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(tokio::io::AsyncReadExt::read_to_end(&mut io, &mut sink))
            .unwrap();
        assert!(
            !verdicts.next_request_is_ambiguous(),
            "the first head was checked"
        );
        assert!(verdicts.next_request_is_ambiguous());
        assert!(verdicts.next_request_is_ambiguous());
    }
}
