//! No client-supplied header, URI form or body field changes where the gateway
//! sends a request: the upstream URL comes from the config alone.

use std::time::Duration;

use crate::common::{Gateway, one_upstream, raw_exchange, status_of};
use crate::support::upstream::{Reply, Upstream};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_input_cannot_redirect_the_upstream_request() {
    let upstream = Upstream::always(Reply::completion("gpt-4o", 3, 4)).await;
    let gw = Gateway::spawn(&one_upstream(&upstream.url(), ""), &[("UP_KEY", "k")]);
    let body = r#"{"model":"gpt-4o","base_url":"http://169.254.169.254","endpoint":"http://evil.invalid","api_base":"http://evil.invalid","messages":[]}"#;
    let head = |target: &str, extra: &str| {
        format!(
            "POST {target} HTTP/1.1\r\nHost: evil.invalid\r\nX-Forwarded-Host: evil.invalid\r\nX-Forwarded-Proto: https\r\nForwarded: host=evil.invalid\r\nX-Original-URL: /admin\r\nX-Rewrite-URL: /admin\r\n{extra}Connection: close\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    for request in [
        head("/v1/chat/completions", ""),
        head("http://evil.invalid/v1/chat/completions", ""),
        head("/v1/chat/completions", "X-Switchyard-Upstream: evil\r\n"),
    ] {
        let answer = raw_exchange(gw.addr(), request.as_bytes(), Duration::from_secs(10)).await;
        assert_eq!(status_of(&answer), 200, "{answer}");
    }
    // h2 with a foreign :authority.
    let response = crate::common::h2_client()
        .post(format!("{}/v1/chat/completions", gw.url()))
        .header("host", "evil.invalid")
        .header("x-forwarded-host", "evil.invalid")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    let received = upstream.received();
    assert_eq!(received.len(), 4);
    for request in received {
        assert_eq!(request.uri, "/v1/chat/completions", "{request:?}");
        assert_eq!(
            request.header("host"),
            Some(upstream.addr.to_string().as_str()),
            "the upstream's own host: {request:?}"
        );
        assert_eq!(request.header("authorization"), Some("Bearer k"));
    }
}
