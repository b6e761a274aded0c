//! h2 limits seen on the wire: a hand-written h2 client (raw frames, literal HPACK)
//! reads the gateway's SETTINGS and floods it with resets.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::{Gateway, one_upstream};
use crate::support::upstream::{Reply, Upstream};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const GOAWAY: u8 = 0x7;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const ENHANCE_YOUR_CALM: u32 = 0xb;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// HPACK integer with an N-bit prefix (RFC 7541 §5.1).
fn int(out: &mut Vec<u8>, first: u8, prefix: u8, mut value: usize) {
    let max = (1usize << prefix) - 1;
    if value < max {
        out.push(first | value as u8);
        return;
    }
    out.push(first | max as u8);
    value -= max;
    while value >= 128 {
        out.push((value % 128 + 128) as u8);
        value /= 128;
    }
    out.push(value as u8);
}

fn string(out: &mut Vec<u8>, s: &str) {
    int(out, 0, 7, s.len());
    out.extend_from_slice(s.as_bytes());
}

/// A header block: POST /v1/chat/completions plus `extra` as literals.
fn header_block(extra: &[(&str, &str)]) -> Vec<u8> {
    let mut out = vec![0x83, 0x86]; // :method POST, :scheme http
    int(&mut out, 0x00, 4, 4); // :path, literal without indexing
    string(&mut out, "/v1/chat/completions");
    int(&mut out, 0x00, 4, 1); // :authority
    string(&mut out, "gateway");
    for (name, value) in extra {
        out.push(0x00);
        string(&mut out, name);
        string(&mut out, value);
    }
    out
}

/// A connected raw h2 client that has sent its preface and empty SETTINGS, read
/// the gateway's SETTINGS (returned) and acknowledged them (so they apply).
async fn connect(gw: &Gateway) -> (TcpStream, Vec<(u16, u32)>) {
    let mut stream = TcpStream::connect(gw.addr()).await.unwrap();
    let mut hello = PREFACE.to_vec();
    hello.extend(frame(SETTINGS, 0, 0, &[]));
    stream.write_all(&hello).await.unwrap();
    let mut head = [0u8; 9];
    stream.read_exact(&mut head).await.unwrap();
    assert_eq!(
        (head[3], head[4]),
        (SETTINGS, 0),
        "the gateway starts with SETTINGS"
    );
    let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload).await.unwrap();
    stream.write_all(&frame(SETTINGS, 1, 0, &[])).await.unwrap();
    let settings = payload
        .chunks(6)
        .map(|c| {
            (
                u16::from_be_bytes([c[0], c[1]]),
                u32::from_be_bytes([c[2], c[3], c[4], c[5]]),
            )
        })
        .collect();
    (stream, settings)
}

/// Reads frames until `wait` passes or the connection closes: (type, flags, stream, payload).
async fn read_frames(stream: &mut TcpStream, wait: Duration) -> Vec<(u8, u8, u32, Vec<u8>)> {
    read_frames_until(stream, wait, |_| false).await
}

/// Like [`read_frames`], stopping early after the first frame `last` accepts.
async fn read_frames_until(
    stream: &mut TcpStream,
    wait: Duration,
    last: impl Fn(&(u8, u8, u32, Vec<u8>)) -> bool,
) -> Vec<(u8, u8, u32, Vec<u8>)> {
    let mut frames = Vec::new();
    let _ = tokio::time::timeout(wait, async {
        loop {
            let mut head = [0u8; 9];
            if stream.read_exact(&mut head).await.is_err() {
                return;
            }
            let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
            let mut payload = vec![0u8; len];
            if stream.read_exact(&mut payload).await.is_err() {
                return;
            }
            let id = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
            let frame = (head[3], head[4], id, payload);
            let done = frame.0 == GOAWAY || last(&frame);
            frames.push(frame);
            if done {
                return;
            }
        }
    })
    .await;
    frames
}

fn goaway_code(frames: &[(u8, u8, u32, Vec<u8>)]) -> Option<u32> {
    frames
        .iter()
        .find(|(kind, ..)| *kind == GOAWAY)
        .map(|(_, _, _, p)| u32::from_be_bytes([p[4], p[5], p[6], p[7]]))
}

async fn gateway(server: &str) -> (Gateway, Upstream) {
    let upstream = Upstream::always(Reply::completion("gpt-4o", 3, 4)).await;
    let gw = Gateway::spawn(&one_upstream(&upstream.url(), server), &[("UP_KEY", "k")]);
    (gw, upstream)
}

/// The configured limits reach h2: they are in the SETTINGS the gateway sends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_h2_limits_are_advertised() {
    let (gw, _up) = gateway("h2_max_concurrent_streams = 7\nmax_header_bytes = 20000").await;
    let (_stream, settings) = connect(&gw).await;
    assert!(
        settings.contains(&(0x3, 7)),
        "MAX_CONCURRENT_STREAMS: {settings:?}"
    );
    assert!(
        settings.contains(&(0x6, 20000)),
        "MAX_HEADER_LIST_SIZE: {settings:?}"
    );
    gw.assert_serves("gpt-4o").await;
}

/// Streams the gateway must reset for protocol errors (here a connection-specific
/// header, forbidden in h2) are capped per connection: then GOAWAY.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_error_resets_are_capped() {
    let (gw, _up) = gateway("h2_max_local_error_reset_streams = 8").await;
    let (mut stream, _) = connect(&gw).await;
    let block = header_block(&[("connection", "keep-alive")]);
    let mut flood = Vec::new();
    for i in 0..50u32 {
        flood.extend(frame(HEADERS, END_HEADERS | END_STREAM, 2 * i + 1, &block));
    }
    let _ = stream.write_all(&flood).await;
    let frames = read_frames(&mut stream, Duration::from_secs(10)).await;
    let resets = frames.iter().filter(|(k, ..)| *k == RST_STREAM).count();
    assert_eq!(goaway_code(&frames), Some(ENHANCE_YOUR_CALM), "{frames:?}");
    assert!(
        resets <= 8,
        "at most the limit of resets before GOAWAY: {resets}"
    );
    gw.assert_serves("gpt-4o").await;
}

/// "Rapid reset": streams opened and reset at once, faster than they are served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rapid_reset_floods_end_in_goaway() {
    let (gw, upstream) = gateway("h2_max_pending_accept_reset_streams = 4").await;
    let (mut stream, _) = connect(&gw).await;
    let block = header_block(&[("content-type", "application/json")]);
    let mut flood = Vec::new();
    for i in 0..2000u32 {
        let id = 2 * i + 1;
        flood.extend(frame(HEADERS, END_HEADERS, id, &block));
        flood.extend(frame(RST_STREAM, 0, id, &8u32.to_be_bytes())); // CANCEL
    }
    let _ = stream.write_all(&flood).await;
    let frames = read_frames(&mut stream, Duration::from_secs(10)).await;
    assert_eq!(goaway_code(&frames), Some(ENHANCE_YOUR_CALM), "{frames:?}");
    assert_eq!(upstream.hits(), 0, "no reset stream reached an upstream");
    gw.assert_serves("gpt-4o").await;
}

/// The concurrent-stream limit is enforced, not only advertised: a stream beyond
/// it is refused while the others are open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_beyond_the_limit_are_refused() {
    let (gw, _up) = gateway("h2_max_concurrent_streams = 2").await;
    let (mut stream, _) = connect(&gw).await;
    let block = header_block(&[("content-type", "application/json")]);
    let mut open = Vec::new();
    for id in [1u32, 3, 5] {
        // No END_STREAM: the streams stay open waiting for a body.
        open.extend(frame(HEADERS, END_HEADERS, id, &block));
    }
    stream.write_all(&open).await.unwrap();
    let is_refusal = |(k, _, id, p): &(u8, u8, u32, Vec<u8>)| {
        *k == RST_STREAM && *id == 5 && p == &7u32.to_be_bytes()
    };
    let frames = read_frames_until(&mut stream, Duration::from_secs(10), is_refusal).await;
    let refused: Vec<_> = frames.iter().filter(|f| is_refusal(f)).collect();
    assert_eq!(refused.len(), 1, "stream 5 gets REFUSED_STREAM: {frames:?}");
    gw.assert_serves("gpt-4o").await;
}

/// A client that opens an h2 connection and never sends a request (it would
/// answer pings) gets a GOAWAY once `h2_idle_timeout_ms` passes, so it cannot
/// hold a connection slot for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_h2_connections_get_goaway() {
    const NO_ERROR: u32 = 0;
    let (gw, _up) = gateway("h2_idle_timeout_ms = 500").await;
    let (mut idle, _) = connect(&gw).await;
    let started = std::time::Instant::now();
    let frames = read_frames(&mut idle, Duration::from_secs(10)).await;
    assert_eq!(goaway_code(&frames), Some(NO_ERROR), "{frames:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "GOAWAY only after the idle timeout: {:?}",
        started.elapsed()
    );
    gw.assert_serves("gpt-4o").await;
}
