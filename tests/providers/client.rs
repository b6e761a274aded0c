//! The pooled client through real sockets: connect failures are told apart from
//! failures after connecting, `send` returns at the headers, bodies stream, and
//! connections are reused.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use switchyard::provider::{AttemptErrorKind, BodyErrorKind, ConnectCause};
use switchyard::upstream::{ClientOptions, UpstreamClient};
use tokio::sync::oneshot;

use super::support::{
    Call, Reply, Upstream, adapter, closed_port, env, raw_server, read_request, write,
};

fn openai_at(url: &str) -> switchyard::provider::ProviderAdapter {
    let cfg = format!(
        "name = \"oa\"\nprovider = \"openai\"\nendpoint = \"{url}\"\napi_key_env = \"K\"\nconnect_timeout_ms = 3000\nmodels = {{ \"m\" = {{}} }}"
    );
    adapter(&cfg, &env(&[("K", "sk-secret-value")]))
}

fn post(url: &str) -> http::Request<Full<Bytes>> {
    http::Request::post(url)
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap()
}

#[tokio::test]
async fn refused_connection_is_a_retry_safe_connect_error() {
    let addr = closed_port().await;
    let err = Call::chat("m")
        .send(&openai_at(&format!("http://{addr}")))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), AttemptErrorKind::Connect);
    assert!(err.is_connect() && err.is_retry_safe());
    assert_eq!(err.connect_cause(), Some(ConnectCause::Refused), "{err}");
    let text = err.to_string();
    assert!(text.contains(&addr.to_string()), "names the host: {text}");
    assert!(
        !text.contains("sk-secret-value") && !text.contains("/v1/"),
        "{text}"
    );
}

#[tokio::test]
async fn unknown_host_is_a_dns_connect_error() {
    // `.invalid` never resolves (RFC 6761).
    let err = Call::chat("m")
        .send(&openai_at("http://no-such-upstream.invalid"))
        .await
        .unwrap_err();
    assert_eq!(err.connect_cause(), Some(ConnectCause::Dns), "{err}");
    assert!(err.is_retry_safe());
}

#[tokio::test]
async fn tls_handshake_failure_is_a_connect_error() {
    // A server that answers plain HTTP to a TLS client hello.
    let addr = raw_server(|mut stream| async move {
        write(
            &mut stream,
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n",
        )
        .await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    })
    .await;
    let client = UpstreamClient::new(ClientOptions::default());
    let err = client
        .send(post(&format!("https://{addr}/v1/x?sig=secret")))
        .await
        .unwrap_err();
    assert_eq!(err.connect_cause(), Some(ConnectCause::Tls), "{err}");
    assert!(!err.to_string().contains("secret"), "{err}");
}

#[tokio::test]
async fn connect_timeout_covers_the_tls_handshake() {
    // Accepts, then never says a word: the TLS handshake stalls.
    let addr = raw_server(|stream| async move {
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(stream);
    })
    .await;
    let client = UpstreamClient::new(ClientOptions {
        connect_timeout: Duration::from_millis(200),
        ..ClientOptions::default()
    });
    let started = Instant::now();
    let err = client
        .send(post(&format!("https://{addr}/")))
        .await
        .unwrap_err();
    assert_eq!(err.connect_cause(), Some(ConnectCause::Timeout), "{err}");
    assert!(err.is_connect());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "gave up long before the server would"
    );
}

#[tokio::test]
async fn close_before_headers_is_broken() {
    let addr = raw_server(|mut stream| async move {
        read_request(&mut stream).await;
        drop(stream);
    })
    .await;
    let err = Call::chat("m")
        .send(&openai_at(&format!("http://{addr}")))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), AttemptErrorKind::Broken, "{err}");
    assert!(!err.is_connect() && !err.is_retry_safe());
}

#[tokio::test]
async fn send_returns_at_the_headers_and_the_body_streams() {
    let (release_tx, release_rx) = oneshot::channel::<()>();
    let release = std::sync::Mutex::new(Some(release_rx));
    let addr = raw_server(move |mut stream| {
        let release = release.lock().unwrap().take();
        async move {
            read_request(&mut stream).await;
            write(
                &mut stream,
                b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n",
            )
            .await;
            write(&mut stream, b"b\r\ndata: one\n\n\r\n").await;
            if let Some(release) = release {
                let _ = release.await;
            }
            write(&mut stream, b"b\r\ndata: two\n\n\r\n0\r\n\r\n").await;
        }
    })
    .await;
    let mut call = Call::chat("m");
    call.streaming = true;
    let oa = openai_at(&format!("http://{addr}"));
    let response = tokio::time::timeout(Duration::from_secs(10), call.send(&oa))
        .await
        .expect("send returned while the body was still open")
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(
        first, "data: one\n\n",
        "the first chunk arrives before the upstream finished"
    );
    release_tx.send(()).unwrap();
    let rest = body.collect().await.unwrap().to_bytes();
    assert_eq!(rest, "data: two\n\n");
}

#[tokio::test]
async fn body_cut_midway_is_a_reset() {
    let addr = raw_server(|mut stream| async move {
        read_request(&mut stream).await;
        write(
            &mut stream,
            b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n0123456789",
        )
        .await;
        drop(stream);
    })
    .await;
    let response = Call::chat("m")
        .send(&openai_at(&format!("http://{addr}")))
        .await
        .unwrap();
    let err = response.into_body().collect().await.unwrap_err();
    assert_eq!(err.kind(), BodyErrorKind::Reset, "{err}");
    assert!(err.is_reset() && !err.is_timeout());
}

#[tokio::test]
async fn connections_are_pooled_and_any_status_is_returned() {
    let upstream = Upstream::start(Reply {
        status: 503,
        headers: vec![("content-type", "application/json"), ("retry-after", "2")],
        body: r#"{"error":{"message":"busy","type":"server_error","code":null}}"#,
    })
    .await;
    let oa = openai_at(&upstream.url());
    for _ in 0..3 {
        let (parts, body) = Call::chat("m").fetch(&oa).await;
        assert_eq!(parts.status, 503, "statuses are the gateway's to classify");
        assert!(body.starts_with(b"{\"error\""));
    }
    assert_eq!(upstream.recorded().len(), 3);
    assert_eq!(
        upstream.connections(),
        1,
        "one pooled connection served every request"
    );
    // Clones share the pool.
    let clone = oa.clone();
    Call::chat("m").fetch(&clone).await;
    assert_eq!(upstream.connections(), 1);
}

/// A raw upstream that counts its connections and answers each request on
/// them with `reply`; with `close_after_reply` it hangs up after the first.
async fn counting_server(
    reply: &'static [u8],
    close_after_reply: bool,
) -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let connections = std::sync::Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    let addr = raw_server(move |mut stream| {
        counted.fetch_add(1, Ordering::SeqCst);
        async move {
            loop {
                if read_request(&mut stream).await.is_empty() {
                    return;
                }
                write(&mut stream, reply).await;
                if close_after_reply {
                    return;
                }
            }
        }
    })
    .await;
    (addr, connections)
}

const SMALL_OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";

/// Sends three requests in turn, each answered `ok`, pausing `pause` after each.
async fn three_ok_answers(client: &UpstreamClient, addr: std::net::SocketAddr, pause: Duration) {
    for round in 1..=3 {
        let response = client
            .send(post(&format!("http://{addr}/v1/x")))
            .await
            .unwrap_or_else(|err| panic!("request {round}: {err}"));
        assert_eq!(
            response.into_body().collect().await.unwrap().to_bytes(),
            "ok"
        );
        tokio::time::sleep(pause).await;
    }
}

#[tokio::test]
async fn a_connection_closed_while_idle_is_not_reused() {
    use std::sync::atomic::Ordering;
    // Answers without `connection: close`, then hangs up anyway.
    let (addr, connections) = counting_server(SMALL_OK, true).await;
    let client = UpstreamClient::new(ClientOptions::default());
    // Give the connection's task time to see the hang-up.
    three_ok_answers(&client, addr, Duration::from_millis(50)).await;
    assert_eq!(connections.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn idle_connections_expire() {
    use std::sync::atomic::Ordering;
    let (addr, connections) = counting_server(SMALL_OK, false).await;
    let client = UpstreamClient::new(ClientOptions {
        // Long enough that a busy machine's pause between the first two
        // requests does not expire the connection.
        pool_idle_timeout: Duration::from_secs(1),
        ..ClientOptions::default()
    });
    let url = format!("http://{addr}/v1/x");
    for _ in 0..2 {
        let response = client.send(post(&url)).await.unwrap();
        response.into_body().collect().await.unwrap();
    }
    assert_eq!(connections.load(Ordering::SeqCst), 1, "reused while fresh");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let response = client.send(post(&url)).await.unwrap();
    response.into_body().collect().await.unwrap();
    assert_eq!(
        connections.load(Ordering::SeqCst),
        2,
        "a new one after the idle timeout"
    );
}

#[tokio::test]
async fn a_body_dropped_midway_takes_its_connection_with_it() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let connections = std::sync::Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    let addr = raw_server(move |mut stream| {
        let first = counted.fetch_add(1, Ordering::SeqCst) == 0;
        async move {
            while !read_request(&mut stream).await.is_empty() {
                if first {
                    // Half a body, then silence: the rest would follow later.
                    write(
                        &mut stream,
                        b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n01234",
                    )
                    .await;
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    return;
                }
                write(&mut stream, SMALL_OK).await;
            }
        }
    })
    .await;
    let client = UpstreamClient::new(ClientOptions::default());
    let url = format!("http://{addr}/v1/x");
    let mut body = client.send(post(&url)).await.unwrap().into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(first, "01234");
    drop(body);
    let response = tokio::time::timeout(Duration::from_secs(10), client.send(post(&url)))
        .await
        .expect("the next request does not wait on the abandoned connection")
        .unwrap();
    assert_eq!(
        response.into_body().collect().await.unwrap().to_bytes(),
        "ok"
    );
    assert_eq!(connections.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_connection_the_upstream_says_it_will_close_is_not_reused() {
    use std::sync::atomic::Ordering;
    const CLOSING: &[u8] = b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok";
    // The server keeps its end open: only the header says the connection ends.
    let (addr, connections) = counting_server(CLOSING, false).await;
    let client = UpstreamClient::new(ClientOptions::default());
    three_ok_answers(&client, addr, Duration::ZERO).await;
    assert_eq!(connections.load(Ordering::SeqCst), 3);
}
