//! The rustls client configuration shared by every upstream client: the `ring`
//! provider and the platform's native root certificates, loaded once per process.

use std::sync::{Arc, OnceLock};

use hyper_rustls::ConfigBuilderExt;

struct Tls {
    config: Arc<rustls::ClientConfig>,
    roots_loaded: bool,
}

fn tls() -> &'static Tls {
    static TLS: OnceLock<Tls> = OnceLock::new();
    TLS.get_or_init(|| {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("the ring provider supports the default TLS versions");
        match builder.clone().with_native_roots() {
            Ok(with_roots) => Tls {
                config: Arc::new(with_roots.with_no_client_auth()),
                roots_loaded: true,
            },
            Err(err) => {
                tracing::warn!(error = %err, "no native root certificates: HTTPS upstreams will fail their handshake");
                Tls {
                    config: Arc::new(
                        builder
                            .with_root_certificates(rustls::RootCertStore::empty())
                            .with_no_client_auth(),
                    ),
                    roots_loaded: false,
                }
            }
        }
    })
}

/// A fresh copy of the shared TLS client configuration (no ALPN set yet).
pub(crate) fn client_config() -> rustls::ClientConfig {
    (*tls().config).clone()
}

/// Whether the platform's root certificates were found; without them no HTTPS
/// upstream can be verified.
pub fn native_roots_available() -> bool {
    tls().roots_loaded
}
