//! Request bodies: the size limit for declared and chunked bodies (with the
//! gateway's memory watched from /proc), and bad JSON of every kind.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::{Gateway, error_code_in, one_upstream, raw_exchange, status_of};
use crate::support::upstream::{Reply, Upstream};

const LIMIT: u64 = 4 * 1024 * 1024;

async fn gateway() -> (Gateway, Upstream) {
    let upstream = Upstream::always(Reply::completion("gpt-4o", 3, 4)).await;
    let server = format!("max_request_body_bytes = {LIMIT}");
    let gw = Gateway::spawn(&one_upstream(&upstream.url(), &server), &[("UP_KEY", "k")]);
    (gw, upstream)
}

/// A declared length over the limit is refused before a body byte is read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_length_over_the_limit_is_413_without_reading() {
    let (gw, upstream) = gateway().await;
    let head = "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 1073741824\r\n\r\n{\"model\":";
    let answer = raw_exchange(gw.addr(), head.as_bytes(), Duration::from_secs(10)).await;
    assert_eq!(status_of(&answer), 413, "{answer}");
    assert_eq!(error_code_in(&answer), "body_too_large", "{answer}");
    // Also with Expect: 100-continue: no "100 Continue" invites the body.
    let head = "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 1073741824\r\n\r\n";
    let answer = raw_exchange(gw.addr(), head.as_bytes(), Duration::from_secs(10)).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert_eq!(upstream.hits(), 0);
    gw.assert_serves("gpt-4o").await;
}

/// A 1 GiB chunked upload: the gateway answers 413 once the limit is passed,
/// stops reading, and its peak RSS grows by no more than the limit plus a small
/// constant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gigabyte_chunked_upload_is_refused_in_bounded_memory() {
    let (gw, upstream) = gateway().await;
    gw.assert_serves("gpt-4o").await; // warm: pools, allocator arenas
    let (rss_before, hwm_before) = gw.memory_kib();

    let stream = TcpStream::connect(gw.addr()).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let answer = tokio::spawn(async move {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        // Read until the gateway closes; the answer arrives while we still write.
        while let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_secs(60), read.read(&mut buf)).await
        {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&out).into_owned()
    });
    write
        .write_all(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
        )
        .await
        .unwrap();
    let chunk = {
        let data = vec![b'a'; 64 * 1024];
        let mut c = format!("{:x}\r\n", data.len()).into_bytes();
        c.extend_from_slice(&data);
        c.extend_from_slice(b"\r\n");
        c
    };
    let gib = 1u64 << 30;
    let mut sent = 0u64;
    while sent < gib && !answer.is_finished() {
        match write.write_all(&chunk).await {
            Ok(()) => sent += chunk.len() as u64,
            Err(_) => break, // the gateway closed the connection
        }
    }
    let answer = answer.await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert_eq!(error_code_in(&answer), "body_too_large", "{answer}");
    assert!(
        sent < 64 << 20,
        "the gateway stopped reading soon after the limit: {sent} bytes sent"
    );
    let (rss_after, hwm_after) = gw.memory_kib();
    let limit_kib = LIMIT / 1024;
    let slack_kib = 24 * 1024;
    eprintln!(
        "chunked upload: sent {} MiB; RSS {rss_before} -> {rss_after} KiB, HWM {hwm_before} -> {hwm_after} KiB",
        sent >> 20
    );
    assert!(
        hwm_after <= rss_before.max(hwm_before) + limit_kib + slack_kib,
        "peak RSS {hwm_after} KiB exceeds {rss_before} KiB + limit {limit_kib} KiB + {slack_kib} KiB"
    );
    assert_eq!(
        upstream.hits(),
        1,
        "only the warm-up request reached the upstream"
    );
    gw.assert_serves("gpt-4o").await;
}

/// Over h2 there is no Content-Length to refuse early: the streamed body is cut
/// off at the limit all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2_body_over_the_limit_is_413() {
    let (gw, _up) = gateway().await;
    let chunks = futures_util::stream::iter(
        (0..256).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b' '; 64 * 1024]))),
    );
    let response = crate::common::h2_client()
        .post(format!("{}/v1/chat/completions", gw.url()))
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(response.status(), 413);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "body_too_large");
    gw.assert_serves("gpt-4o").await;
}

/// Bodies that are not what the API takes: 400 with the design's code, and the
/// gateway keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bodies_get_400_with_the_design_codes() {
    let (gw, upstream) = gateway().await;
    let deep = |n: usize| {
        format!(
            r#"{{"model":"gpt-4o","x":{}{}}}"#,
            "[".repeat(n),
            "]".repeat(n)
        )
    };
    let mut invalid_utf8 = br#"{"model":"gpt-4o","messages":[{"role":"user","content":""#.to_vec();
    invalid_utf8.extend_from_slice(&[0xc3, 0x28, 0xff]);
    invalid_utf8.extend_from_slice(br#""}]}"#);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("not JSON", b"hello".to_vec(), "invalid_json"),
        ("empty", Vec::new(), "invalid_json"),
        (
            "truncated",
            br#"{"model":"gpt-4o","messages":["#.to_vec(),
            "invalid_json",
        ),
        ("array", br#"[{"model":"gpt-4o"}]"#.to_vec(), "invalid_json"),
        (
            "trailing bytes",
            br#"{"model":"gpt-4o"} {}"#.to_vec(),
            "invalid_json",
        ),
        ("invalid UTF-8", invalid_utf8, "invalid_json"),
        (
            "lone surrogate",
            br#"{"model":"gpt-4o","x":"\ud800"}"#.to_vec(),
            "",
        ),
        ("model number", br#"{"model":42}"#.to_vec(), "missing_model"),
        (
            "model object",
            br#"{"model":{"name":"gpt-4o"}}"#.to_vec(),
            "missing_model",
        ),
        (
            "model array",
            br#"{"model":["gpt-4o"]}"#.to_vec(),
            "missing_model",
        ),
        ("model null", br#"{"model":null}"#.to_vec(), "missing_model"),
        ("model empty", br#"{"model":""}"#.to_vec(), "missing_model"),
        ("no model", br#"{"messages":[]}"#.to_vec(), "missing_model"),
        (
            "stream string",
            br#"{"model":"gpt-4o","stream":"yes"}"#.to_vec(),
            "invalid_json",
        ),
        ("nested 129", deep(129).into_bytes(), "invalid_json"),
        ("nested 1M", deep(1_000_000).into_bytes(), "invalid_json"),
        (
            "unclosed 3M",
            "[".repeat(3_000_000).into_bytes(),
            "invalid_json",
        ),
        ("NUL bytes", vec![0u8; 4096], "invalid_json"),
    ];
    let client = crate::support::client();
    for (name, body, code) in cases {
        let response = client
            .post(format!("{}/v1/chat/completions", gw.url()))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        if code.is_empty() {
            // serde_json accepts lone surrogates escaped; either answer is fine,
            // as long as it is an answer.
            assert!(status == 400 || status == 200, "{name}: {status} {text}");
            continue;
        }
        assert_eq!(status, 400, "{name}: {text}");
        let body: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(body["error"]["code"], code, "{name}: {text}");
        assert_eq!(
            body["error"]["type"], "invalid_request_error",
            "{name}: {text}"
        );
    }
    assert!(upstream.hits() <= 1);
    // 128 levels is still accepted.
    let ok = client
        .post(format!("{}/v1/chat/completions", gw.url()))
        .body(deep(127))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    gw.assert_serves("gpt-4o").await;
}
