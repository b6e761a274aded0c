//! The upstream client over TLS, against a loopback server with a certificate
//! made here and trusted through `SSL_CERT_FILE` (read when the process first
//! loads its roots, so this file is its own test binary): h2 when the server
//! offers it over ALPN (another h2 connection when one is full), HTTP/1.1 when
//! it does not, and pooled either way.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use switchyard::upstream::{ClientOptions, UpstreamClient};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// What the server saw of one request.
#[derive(Debug, Clone)]
struct Seen {
    version: Version,
    /// The authority in the request target (HTTP/1.1 absolute-form, or h2's
    /// `:authority`).
    target_authority: Option<String>,
    host_header: Option<String>,
    path: String,
}

/// A TLS server on 127.0.0.1 offering `alpn`, answering `ok` to everything.
struct Server {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    connections: Arc<AtomicUsize>,
}

impl Server {
    async fn start(
        cert: CertificateDer<'static>,
        key: PrivateKeyDer<'static>,
        alpn: &[&[u8]],
    ) -> Server {
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .unwrap();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let (log, count) = (seen.clone(), connections.clone());
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                count.fetch_add(1, Ordering::SeqCst);
                let (acceptor, log) = (acceptor.clone(), log.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = service_fn(move |req: Request<Incoming>| {
                        let log = log.clone();
                        async move {
                            log.lock().unwrap().push(Seen {
                                version: req.version(),
                                target_authority: req.uri().authority().map(|a| a.to_string()),
                                host_header: req
                                    .headers()
                                    .get("host")
                                    .map(|h| h.to_str().unwrap().to_owned()),
                                path: req.uri().path().to_owned(),
                            });
                            req.into_body().collect().await.unwrap();
                            Ok::<_, hyper::Error>(Response::new(Full::new(Bytes::from_static(
                                b"ok",
                            ))))
                        }
                    });
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        Server {
            addr,
            seen,
            connections,
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// Sends three requests one after the other and checks each answer.
async fn three_requests(client: &UpstreamClient, port: u16) {
    for _ in 0..3 {
        let request = Request::post(format!("https://localhost:{port}/v1/chat/completions"))
            .body(Full::new(Bytes::from_static(b"{}")))
            .unwrap();
        let response = client.send(request).await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.into_body().collect().await.unwrap().to_bytes(),
            "ok"
        );
    }
}

#[tokio::test]
async fn https_upstreams_get_h2_when_offered_and_http1_otherwise() {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let roots = dir.path().join("roots.pem");
    std::fs::write(&roots, made.cert.pem()).unwrap();
    // SAFETY: the only test in this binary, and no thread reads the environment yet.
    unsafe { std::env::set_var("SSL_CERT_FILE", &roots) };
    assert!(switchyard::upstream::tls::native_roots_available());
    let cert = made.cert.der().clone();
    let key = || PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(made.signing_key.serialize_der()));

    // The server offers h2: the client takes it and shares one connection.
    let h2 = Server::start(cert.clone(), key(), &[b"h2", b"http/1.1"]).await;
    let client = UpstreamClient::new(ClientOptions::default());
    three_requests(&client, h2.addr.port()).await;
    let seen = h2.seen();
    assert_eq!(seen.len(), 3);
    for request in &seen {
        assert_eq!(request.version, Version::HTTP_2, "{request:?}");
        let authority = format!("localhost:{}", h2.addr.port());
        assert_eq!(request.target_authority.as_ref(), Some(&authority));
        assert_eq!(request.path, "/v1/chat/completions");
    }
    assert_eq!(
        h2.connections.load(Ordering::SeqCst),
        1,
        "one shared h2 connection"
    );

    // A full h2 connection does not hold requests back: past the streams
    // allowed on one, another connection is opened, and both are reused.
    let h2 = Server::start(cert.clone(), key(), &[b"h2"]).await;
    let client = UpstreamClient::new(ClientOptions {
        http2_max_streams: 1,
        ..ClientOptions::default()
    });
    let url = format!("https://localhost:{}/v1/chat/completions", h2.addr.port());
    let post = || {
        Request::post(&url)
            .body(Full::new(Bytes::from_static(b"{}")))
            .unwrap()
    };
    // Two answers held unread: each keeps its place on its connection.
    let first = client.send(post()).await.unwrap();
    let second = client.send(post()).await.unwrap();
    assert_eq!(
        h2.connections.load(Ordering::SeqCst),
        2,
        "the first was full"
    );
    drop(first);
    let third = client.send(post()).await.unwrap();
    assert_eq!(third.into_body().collect().await.unwrap().to_bytes(), "ok");
    assert_eq!(second.into_body().collect().await.unwrap().to_bytes(), "ok");
    three_requests(&client, h2.addr.port()).await;
    assert_eq!(
        h2.connections.load(Ordering::SeqCst),
        2,
        "places are freed when a body ends or is dropped"
    );

    // HTTP/1.1 only: origin-form target, `Host` with the port, connection reused.
    let h1 = Server::start(cert, key(), &[b"http/1.1"]).await;
    let client = UpstreamClient::new(ClientOptions::default());
    three_requests(&client, h1.addr.port()).await;
    let seen = h1.seen();
    assert_eq!(seen.len(), 3);
    for request in &seen {
        assert_eq!(request.version, Version::HTTP_11, "{request:?}");
        assert_eq!(request.target_authority, None, "origin-form: {request:?}");
        let host = format!("localhost:{}", h1.addr.port());
        assert_eq!(request.host_header.as_ref(), Some(&host));
        assert_eq!(request.path, "/v1/chat/completions");
    }
    assert_eq!(
        h1.connections.load(Ordering::SeqCst),
        1,
        "one pooled connection"
    );
}
