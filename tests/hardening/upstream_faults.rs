//! The upstream fault matrix against the real binary: each fault ends in the right
//! client answer and health state, and leaves no connection or attempt behind. A
//! client that goes away mid-stream cancels the upstream request.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::common::Gateway;
use crate::support::upstream::{Reply, Upstream, closed_port};

/// A loopback upstream that reads one request head and body, then hands the
/// socket to `answer` (raw bytes: shapes a well-behaved HTTP server cannot send).
async fn raw_upstream<F, Fut>(answer: F) -> SocketAddr
where
    F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let answer = Arc::new(answer);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let answer = answer.clone();
            tokio::spawn(async move {
                if read_request(&mut stream).await {
                    answer(stream).await;
                }
            });
        }
    });
    addr
}

/// Reads a request head and its Content-Length body; false on EOF.
async fn read_request(stream: &mut TcpStream) -> bool {
    let mut data = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&data[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if data.len() >= end + 4 + length {
                return true;
            }
        }
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => data.extend_from_slice(&buf[..n]),
        }
    }
}

const SSE_HEAD: &[u8] =
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";

fn chunk(data: &str) -> Vec<u8> {
    format!("{:x}\r\n{data}\r\n", data.len()).into_bytes()
}

struct Fault {
    model: &'static str,
    endpoint: String,
    stream: bool,
    status: u16,
    code: &'static str,
    health: &'static [&'static str],
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_upstream_fault_gets_the_right_answer_and_health() {
    let ok = Upstream::always(Reply::completion("gpt-4o", 3, 4)).await;
    let reset = Upstream::always(Reply::Reset).await;
    let r429 = Upstream::always(Reply::error(429, vec![("retry-after", "30".into())])).await;
    let r429_bare = Upstream::always(Reply::error(429, vec![])).await;
    let r500 = Upstream::always(Reply::error(500, vec![])).await;
    let r503 = Upstream::always(Reply::error(503, vec![])).await;
    let stall_headers = Upstream::always(Reply::StallBeforeHeaders).await;
    let stall_body = Upstream::always(Reply::StallAfterHeaders).await;
    let mut cut = Reply::stream(6, Duration::from_millis(5));
    if let Reply::Sse { cut_after, .. } = &mut cut {
        *cut_after = Some(2);
    }
    let cut = Upstream::always(cut).await;
    let malformed = raw_upstream(|mut s| async move {
        let mut out = SSE_HEAD.to_vec();
        out.extend(chunk("data: {not json\n\nevent\x00: \u{7f}\n\n"));
        out.extend(chunk("data: [DONE]\n\n"));
        out.extend(b"0\r\n\r\n");
        let _ = s.write_all(&out).await;
    })
    .await;
    let huge_headers = raw_upstream(|mut s| async move {
        let mut out = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n".to_vec();
        out.extend(format!("x-huge: {}\r\n", "h".repeat(2 << 20)).into_bytes());
        out.extend(b"content-length: 2\r\n\r\n{}");
        let _ = s.write_all(&out).await;
    })
    .await;
    let refused = format!("http://{}", closed_port().await);
    let url = |addr: SocketAddr| format!("http://{addr}");

    let faults = [
        Fault {
            model: "m-refused",
            endpoint: refused,
            stream: false,
            status: 502,
            code: "upstream_error",
            health: &["unhealthy"],
        },
        Fault {
            model: "m-reset",
            endpoint: reset.url(),
            stream: false,
            status: 502,
            code: "upstream_error",
            health: &["unhealthy"],
        },
        Fault {
            model: "m-429",
            endpoint: r429.url(),
            stream: false,
            status: 429,
            code: "rate_limited",
            health: &["cooling-down"],
        },
        Fault {
            model: "m-429-bare",
            endpoint: r429_bare.url(),
            stream: false,
            status: 429,
            code: "rate_limited",
            health: &["cooling-down", "degraded", "healthy"],
        },
        Fault {
            model: "m-500",
            endpoint: r500.url(),
            stream: false,
            status: 502,
            code: "upstream_error",
            health: &["unhealthy"],
        },
        Fault {
            model: "m-503",
            endpoint: r503.url(),
            stream: true,
            status: 502,
            code: "upstream_error",
            health: &["unhealthy"],
        },
        Fault {
            model: "m-stall-headers",
            endpoint: stall_headers.url(),
            stream: false,
            status: 504,
            code: "upstream_timeout",
            health: &["unhealthy"],
        },
        Fault {
            model: "m-stall-body",
            endpoint: stall_body.url(),
            stream: false,
            status: 504,
            code: "upstream_timeout",
            health: &["unhealthy"],
        },
        Fault {
            model: "m-huge-headers",
            endpoint: url(huge_headers),
            stream: false,
            status: 502,
            code: "upstream_error",
            health: &["unhealthy"],
        },
    ];
    let mut toml = "[server]\nfirst_byte_timeout_ms = 2000\nresponse_timeout_ms = 2000\nidle_timeout_ms = 2000\n".to_string();
    let mut add = |name: &str, endpoint: &str, model: &str| {
        toml.push_str(&format!(
            "\n[[upstream]]\nname = \"{name}\"\nprovider = \"openai\"\nendpoint = \"{endpoint}\"\napi_key_env = \"UP_KEY\"\nmodels = {{ \"{model}\" = {{}} }}\n"
        ));
    };
    add("ok", &ok.url(), "gpt-4o");
    add("cut", &cut.url(), "m-cut");
    add("malformed", &url(malformed), "m-malformed");
    for fault in &faults {
        add(fault.model, &fault.endpoint, fault.model);
    }
    toml.push_str("\n[[route]]\nname = \"all\"\npolicies = []\n");
    let gw = Gateway::spawn(&toml, &[("UP_KEY", "k")]);
    gw.assert_serves("gpt-4o").await;
    let fds_before = gw.open_fds();

    let client = crate::support::client();
    let post = |model: &str, stream: bool| {
        client
            .post(format!("{}/v1/chat/completions", gw.url()))
            .json(&serde_json::json!({"model": model, "stream": stream, "messages": []}))
            .send()
    };
    // Three attempts each, all faults at once (the stalls take their timeout).
    let runs = faults.iter().map(|fault| async {
        for _ in 0..3 {
            let response = post(fault.model, fault.stream).await.unwrap();
            let status = response.status().as_u16();
            let retry_after = response.headers().get("retry-after").cloned();
            let body: serde_json::Value = response.json().await.unwrap();
            assert_eq!(status, fault.status, "{}: {body}", fault.model);
            assert_eq!(body["error"]["code"], fault.code, "{}: {body}", fault.model);
            if fault.status == 429 {
                let secs: u64 = retry_after.unwrap().to_str().unwrap().parse().unwrap();
                assert!(secs >= 1, "{}: retry-after {secs}", fault.model);
            }
        }
        // Read at once: health forgets failures as time passes, and the
        // slowest faults (the stalls) take seconds longer than the rest.
        let state = gw.upstream_state(fault.model).await;
        let health = state["health"].as_str().unwrap();
        assert!(fault.health.contains(&health), "{}: {state}", fault.model);
    });
    futures_util::future::join_all(runs).await;

    // Mid-stream cut: the stream ends with an SSE error event, never silently.
    let response = post("m-cut", true).await.unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap_or_default();
    assert!(text.contains("part0"), "{text}");
    assert!(
        text.contains(r#""code":"upstream_error""#),
        "the cut is reported: {text}"
    );

    // Malformed SSE is passed through as it came: the gateway does not rewrite it.
    let response = post("m-malformed", true).await.unwrap();
    assert_eq!(response.status(), 200);
    let bytes = response.bytes().await.unwrap();
    assert!(bytes.windows(9).any(|w| w == b"{not json"), "{bytes:?}");

    // Nothing left in flight, no connection leaked.
    for name in faults
        .iter()
        .map(|f| f.model)
        .chain(["ok", "cut", "malformed"])
    {
        let state = gw.upstream_state(name).await;
        assert_eq!(state["in_flight"], 0, "{name}: {state}");
    }
    drop(client);
    gw.assert_serves("gpt-4o").await;
    let mut fds_after = gw.open_fds();
    for _ in 0..50 {
        if fds_after <= fds_before + 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        fds_after = gw.open_fds();
    }
    eprintln!("gateway fds: {fds_before} before the faults, {fds_after} after");
    assert!(
        fds_after <= fds_before + 4,
        "fds {fds_before} -> {fds_after}"
    );
}

/// A client that goes away mid-stream: the gateway drops the upstream request,
/// and the upstream sees its connection closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_leaving_mid_stream_cancels_the_upstream_request() {
    let (closed_tx, mut closed_rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
    let upstream = raw_upstream(move |mut s| {
        let closed = closed_tx.clone();
        async move {
            let mut out = SSE_HEAD.to_vec();
            out.extend(chunk(
                "data: {\"choices\":[{\"delta\":{\"content\":\"first\"}}]}\n\n",
            ));
            if s.write_all(&out).await.is_err() {
                return;
            }
            // Keep the stream open, one event a second, until the gateway hangs up.
            let mut sent = 0u64;
            loop {
                let mut buf = [0u8; 64];
                tokio::select! {
                    read = s.read(&mut buf) => if matches!(read, Ok(0) | Err(_)) { break },
                    () = tokio::time::sleep(Duration::from_secs(1)) => {
                        sent += 1;
                        if s.write_all(&chunk("data: {}\n\n")).await.is_err() {
                            break;
                        }
                    }
                }
            }
            let _ = closed.send(sent);
        }
    })
    .await;
    let toml =
        crate::common::one_upstream(&format!("http://{upstream}"), "idle_timeout_ms = 600000");
    let gw = Gateway::spawn(&toml, &[("UP_KEY", "k")]);
    let response = crate::support::client()
        .post(format!("{}/v1/chat/completions", gw.url()))
        .json(&serde_json::json!({"model": "gpt-4o", "stream": true, "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.bytes_stream();
    let first = body.next().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("first"));
    drop(body); // the client goes away

    let sent = tokio::time::timeout(Duration::from_secs(30), closed_rx.recv())
        .await
        .expect("the upstream connection is closed after the client left")
        .unwrap();
    eprintln!("upstream saw the cancel after {sent} further events");
    let state = gw.upstream_state("up").await;
    assert_eq!(state["in_flight"], 0, "{state}");
    // Still serving (this upstream's streams never end: look at the status only).
    let again = crate::support::client()
        .post(format!("{}/v1/chat/completions", gw.url()))
        .json(&serde_json::json!({"model": "gpt-4o", "stream": true, "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 200);
}
