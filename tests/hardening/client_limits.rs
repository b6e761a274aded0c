//! Client-side limits of the listener, against the real binary: header count and
//! size (431), silent and slow clients, connection limit, request smuggling
//! shapes, and clients that stop reading their response.

use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::common::{
    Gateway, error_code_in, one_upstream, raw_exchange, read_until_close, responses_in, status_of,
};
use crate::support::upstream::{Reply, Upstream};

const LIMITS: &str = "max_header_count = 40\nmax_header_bytes = 16384\nheader_read_timeout_ms = 400\nbody_read_timeout_ms = 400\nmax_request_body_bytes = 65536";

async fn gateway() -> (Gateway, Upstream) {
    let upstream = Upstream::always(Reply::completion("gpt-4o", 3, 4)).await;
    let gw = Gateway::spawn(&one_upstream(&upstream.url(), LIMITS), &[("UP_KEY", "k")]);
    (gw, upstream)
}

fn head_with(extra: &str) -> String {
    let body = r#"{"model":"gpt-4o","messages":[]}"#;
    format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_or_too_large_headers_get_431_on_http1() {
    let (gw, _up) = gateway().await;
    let wait = Duration::from_secs(10);

    let within: String = (0..30).map(|i| format!("x-h{i}: v\r\n")).collect();
    let answer = raw_exchange(
        gw.addr(),
        head_with(&within).as_bytes(),
        Duration::from_secs(2),
    )
    .await;
    assert_eq!(status_of(&answer), 200, "{answer}");

    let many: String = (0..60).map(|i| format!("x-h{i}: v\r\n")).collect();
    let answer = raw_exchange(gw.addr(), head_with(&many).as_bytes(), wait).await;
    assert_eq!(status_of(&answer), 431, "too many headers: {answer}");

    let large = format!("x-big: {}\r\n", "a".repeat(40_000));
    let answer = raw_exchange(gw.addr(), head_with(&large).as_bytes(), wait).await;
    assert_eq!(status_of(&answer), 431, "headers too large: {answer}");
    gw.assert_serves("gpt-4o").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_or_too_large_headers_get_431_on_h2() {
    let (gw, _up) = gateway().await;
    let client = crate::common::h2_client();
    let url = format!("{}/v1/chat/completions", gw.url());

    let mut request = client.post(&url).json(&crate::support::chat("gpt-4o"));
    for i in 0..60 {
        request = request.header(format!("x-h{i}"), "v");
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(response.status(), 431);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "headers_too_large", "{body}");

    let large = client
        .post(&url)
        .header("x-big", "a".repeat(40_000))
        .json(&crate::support::chat("gpt-4o"))
        .send()
        .await;
    match large {
        Ok(response) => assert_eq!(response.status(), 431),
        // h2 answers 431 and resets the stream; a client may see only the reset.
        Err(err) => assert!(format!("{err:?}").contains("REFUSED_STREAM"), "{err:?}"),
    }

    let ok = client
        .post(&url)
        .json(&crate::support::chat("gpt-4o"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200, "the h2 client keeps being served");
    gw.assert_serves("gpt-4o").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_slow_clients_are_cut_off() {
    let (gw, _up) = gateway().await;
    // Well above the 400 ms limit, so a slow machine cannot fail it; the point is
    // that the connection is closed at all.
    let patience = Duration::from_secs(20);

    // Connects and says nothing.
    let mut silent = TcpStream::connect(gw.addr()).await.unwrap();
    // Sends a partial h2 preface, then stalls.
    let mut preface = TcpStream::connect(gw.addr()).await.unwrap();
    preface.write_all(b"PRI * HTTP/2").await.unwrap();
    // Sends a head one byte at a time, forever.
    let mut slow = TcpStream::connect(gw.addr()).await.unwrap();
    let dribble = tokio::spawn(async move {
        let head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Slow: ";
        for byte in head.iter().chain(std::iter::repeat(&b'a')).take(10_000) {
            if slow.write_all(std::slice::from_ref(byte)).await.is_err() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    });

    gw.assert_serves("gpt-4o").await;
    let started = std::time::Instant::now();
    read_until_close(&mut silent, patience).await;
    read_until_close(&mut preface, patience).await;
    assert!(
        started.elapsed() < patience,
        "silent clients are disconnected"
    );
    let cut = tokio::time::timeout(patience, dribble).await;
    assert!(
        matches!(cut, Ok(Ok(true))),
        "a client dribbling its headers is disconnected"
    );
    gw.assert_serves("gpt-4o").await;
}

/// A client that declares a body and then sends only part of it gets 408 once
/// `body_read_timeout_ms` has passed, instead of holding its connection for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_stops_arriving_gets_408() {
    let (gw, up) = gateway().await;
    let partial = "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n\
                   Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"model\":";
    let answer = raw_exchange(gw.addr(), partial.as_bytes(), Duration::from_secs(20)).await;
    assert_eq!(status_of(&answer), 408, "{answer}");
    assert_eq!(error_code_in(&answer), "request_timeout", "{answer}");
    assert_eq!(up.hits(), 0, "nothing went upstream");
    gw.assert_serves("gpt-4o").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limit_wait_for_a_free_slot() {
    let upstream = Upstream::always(Reply::completion("gpt-4o", 3, 4)).await;
    let server = "max_connections = 2\nheader_read_timeout_ms = 60000";
    let gw = Gateway::spawn(&one_upstream(&upstream.url(), server), &[("UP_KEY", "k")]);
    // Two idle connections take both slots.
    let first = TcpStream::connect(gw.addr()).await.unwrap();
    let second = TcpStream::connect(gw.addr()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    let addr = gw.addr();
    let third = tokio::spawn(async move {
        let head = head_with("Connection: close\r\n");
        raw_exchange(addr, head.as_bytes(), Duration::from_secs(30)).await
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !third.is_finished(),
        "a third connection is not served while two are open"
    );
    assert_eq!(upstream.hits(), 0, "nor is its request sent upstream");
    drop(first);
    let answer = tokio::time::timeout(Duration::from_secs(30), third)
        .await
        .expect("served once a slot is free")
        .unwrap();
    assert_eq!(status_of(&answer), 200, "{answer}");
    drop(second);
}

/// Smuggling shapes: each is refused, nothing reaches the upstream, the smuggled
/// request behind it is never executed, and the connection is closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_smuggling_shapes_are_refused() {
    let (gw, upstream) = gateway().await;
    let body = r#"{"model":"gpt-4o","messages":[]}"#;
    let smuggled = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let chunked = format!("{:x}\r\n{body}\r\n0\r\n\r\n", body.len());
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "CL then TE",
            format!(
                "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n{chunked}{smuggled}"
            ),
            "invalid_request",
        ),
        (
            "TE then CL",
            format!(
                "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: {}\r\n\r\n{chunked}{smuggled}",
                chunked.len()
            ),
            "invalid_request",
        ),
        (
            "duplicate equal CL",
            format!(
                "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: {n}\r\nContent-Length: {n}\r\n\r\n{body}{smuggled}",
                n = body.len()
            ),
            "invalid_request",
        ),
        (
            "CL list",
            format!(
                "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: {n}, {n}\r\n\r\n{body}{smuggled}",
                n = body.len()
            ),
            "",
        ),
        (
            "duplicate different CL",
            format!(
                "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nContent-Length: 4\r\n\r\n{body}{smuggled}",
                body.len()
            ),
            "",
        ),
        (
            "TE not chunked",
            format!(
                "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n{body}{smuggled}"
            ),
            "",
        ),
        (
            "TE on HTTP/1.0",
            format!(
                "POST /v1/chat/completions HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n{chunked}{smuggled}"
            ),
            "",
        ),
    ];
    for (name, request, code) in cases {
        let answer = raw_exchange(gw.addr(), request.as_bytes(), Duration::from_secs(10)).await;
        assert_eq!(status_of(&answer), 400, "{name}: {answer}");
        assert_eq!(
            responses_in(&answer),
            1,
            "{name}: the smuggled request never runs: {answer}"
        );
        if !code.is_empty() {
            assert_eq!(error_code_in(&answer), code, "{name}: {answer}");
            // Refused by the listener, yet answered like any other request.
            assert!(
                answer.to_ascii_lowercase().contains("\r\nx-request-id: "),
                "{name}: {answer}"
            );
            assert!(
                answer
                    .to_ascii_lowercase()
                    .contains("\r\nconnection: close"),
                "{name}: {answer}"
            );
        }
        assert_eq!(upstream.hits(), 0, "{name}: nothing reached the upstream");
    }
    // … and counted.
    let metrics = gw.admin("/metrics").await;
    assert!(
        metrics
            .contains(r#"switchyard_requests_total{route="none",upstream="none",status="400"} 3"#),
        "{metrics}"
    );
    // A chunked request on its own is fine, and so is a pipelined pair.
    let request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n{chunked}{}",
        smuggled.replace("Host: x\r\n", "Host: x\r\nConnection: close\r\n")
    );
    let answer = raw_exchange(gw.addr(), request.as_bytes(), Duration::from_secs(10)).await;
    assert_eq!(responses_in(&answer), 2, "{answer}");
    assert_eq!(status_of(&answer), 200, "{answer}");
    assert_eq!(upstream.hits(), 2);
    gw.assert_serves("gpt-4o").await;
}

/// A client that stops reading a streamed answer: once it has taken no byte
/// for `send_timeout_ms`, its connection is closed, which releases the
/// upstream request it held (nothing else would: hyper has no write timeout).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_cut_off_after_the_send_timeout() {
    let content = "x".repeat(32 * 1024);
    let event = serde_json::json!({"choices": [{"index": 0, "delta": {"content": content}}]});
    let upstream = Upstream::start(move |request| {
        if request.json()["stream"] == true {
            // About 13 MB: more than the socket buffers on both sides hold.
            Reply::Sse {
                events: vec![event.to_string(); 400],
                interval: Duration::ZERO,
                cut_after: None,
            }
        } else {
            Reply::completion("gpt-4o", 3, 4)
        }
    })
    .await;
    let gw = Gateway::spawn(
        &one_upstream(&upstream.url(), "send_timeout_ms = 500"),
        &[("UP_KEY", "k")],
    );
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(gw.addr()).await.unwrap();
    let body = r#"{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    let request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();

    // The client reads nothing. The upstream request is in flight, then
    // released once the send timeout has passed.
    let in_flight = || async { gw.upstream_state("up").await["in_flight"].as_u64().unwrap() };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while in_flight().await == 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        tokio::time::Instant::now() < deadline,
        "the request never went upstream"
    );
    let stalled = tokio::time::Instant::now();
    while in_flight().await != 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        in_flight().await,
        0,
        "the stalled response still holds its upstream"
    );
    assert!(stalled.elapsed() < Duration::from_secs(9));
    // The connection is closed: what was buffered can be read, then it ends.
    let read = tokio::time::Instant::now();
    read_until_close(&mut stream, Duration::from_secs(20)).await;
    assert!(
        read.elapsed() < Duration::from_secs(19),
        "the connection stayed open"
    );
    gw.assert_serves("gpt-4o").await;
}
