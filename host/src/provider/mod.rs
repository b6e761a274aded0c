//! Provider adapters: turn one upstream attempt into the provider's wire call.
//!
//! A [`ProviderAdapter`] is built once per upstream and snapshot from its
//! `[[upstream]]` config. It knows the provider's URL layout and authentication,
//! owns a pooled [`crate::upstream::UpstreamClient`] (except the
//! in-process mock), and sends an [`UpstreamCall`] whose body the gateway has
//! already rewritten for the upstream's model.
//!
//! - [`openai`]: `POST {base}/v1/chat/completions`, bearer key.
//! - [`azure`]: deployments or v1 URL style, `api-key` or Entra bearer token.
//! - [`bedrock`]: the OpenAI-compatible endpoint, bearer key or SigV4.
//! - [`mock`]: the simulated provider (no network).

mod aws_keys;
pub mod azure;
pub mod bedrock;
mod endpoint;
pub mod mock;
pub mod openai;
mod secret;
pub(crate) mod wire;

use bytes::Bytes;
use http::{HeaderMap, Response};
use http_body_util::combinators::BoxBody;

pub use self::secret::{Secret, SecretOrigin};
use crate::config::{ProviderKind, ServerConfig, UpstreamAuth, UpstreamConfig};
pub use crate::upstream::{AttemptError, AttemptErrorKind, BodyError, BodyErrorKind, ConnectCause};
use crate::upstream::{ClientOptions, UpstreamClient};

/// An upstream response body: streamed as it arrives, with classified errors.
pub type UpstreamBody = BoxBody<Bytes, BodyError>;

/// The client-facing endpoint a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// `POST /v1/chat/completions`.
    ChatCompletions,
    /// `POST /v1/embeddings`.
    Embeddings,
}

impl Operation {
    /// The path below a provider's OpenAI-style prefix: `chat/completions` or
    /// `embeddings`.
    pub fn path(self) -> &'static str {
        match self {
            Operation::ChatCompletions => "chat/completions",
            Operation::Embeddings => "embeddings",
        }
    }
}

/// One attempt at one upstream.
#[derive(Debug, Clone)]
pub struct UpstreamCall<'a> {
    /// The endpoint called.
    pub operation: Operation,
    /// The provider-side model or deployment (already written into `body`).
    pub upstream_model: &'a str,
    /// The JSON request body, exactly as it will be sent (and signed).
    pub body: Bytes,
    /// Whether the client asked for an SSE stream.
    pub streaming: bool,
    /// The client's headers as received. Adapters forward only what
    /// `wire::build_request` lets through: never credentials, hop-by-hop
    /// headers (those the client's `Connection` header names included), AWS
    /// signing headers or the gateway's own.
    pub headers: &'a HeaderMap,
    /// The request id, sent as `x-request-id`.
    pub request_id: &'a str,
}

/// Why an upstream's adapter could not be built. Messages name where a
/// credential comes from (variable, file, profile), never its value.
#[derive(Debug, thiserror::Error)]
pub enum ProviderConfigError {
    /// The credential's variable or file is unset, missing the key, or empty.
    #[error("{from} is missing or empty")]
    MissingSecret {
        /// Where the credential should come from.
        from: SecretOrigin,
    },
    /// The credential's file cannot be read or parsed.
    #[error("cannot read {from}: {reason}")]
    UnreadableSecret {
        /// The file.
        from: SecretOrigin,
        /// The I/O failure or format problem (never the file's contents).
        reason: String,
    },
    /// The credential holds characters that cannot go into an HTTP header.
    #[error("{from} holds characters that are not allowed in an HTTP header")]
    InvalidSecret {
        /// Where the credential came from.
        from: SecretOrigin,
    },
    /// The authentication needs a key and the config names no source for it.
    #[error(
        "auth = \"{auth}\" needs api_key_env (an environment variable) or api_key_file holding the key"
    )]
    NoKeySource {
        /// The authentication.
        auth: &'static str,
    },
    /// The provider does not support this authentication.
    #[error("auth = \"{auth}\" is not supported by {provider} upstreams")]
    UnsupportedAuth {
        /// The provider.
        provider: &'static str,
        /// The authentication.
        auth: &'static str,
    },
    /// The provider has no default endpoint and the config names none.
    #[error("{provider} upstreams need an endpoint")]
    MissingEndpoint {
        /// The provider.
        provider: &'static str,
    },
    /// The endpoint is not a usable URL.
    #[error("invalid endpoint: {reason}")]
    InvalidEndpoint {
        /// Why.
        reason: String,
    },
    /// Bedrock needs a region for its default endpoint and for SigV4.
    #[error("bedrock upstreams need a region (for the default endpoint and SigV4 signing)")]
    MissingRegion,
    /// The endpoint uses HTTPS and the system has no root certificates.
    #[error("{host} uses https, but no root certificates were found on this system")]
    NoTlsRoots {
        /// The endpoint's host.
        host: String,
    },
}

impl ProviderConfigError {
    /// Whether the adapter failed on reading its credentials (a variable or
    /// file), as opposed to the upstream's config itself.
    pub fn is_credentials(&self) -> bool {
        matches!(
            self,
            ProviderConfigError::MissingSecret { .. }
                | ProviderConfigError::UnreadableSecret { .. }
                | ProviderConfigError::InvalidSecret { .. }
        )
    }
}

/// The adapter for one upstream, by provider.
#[derive(Debug, Clone)]
pub enum ProviderAdapter {
    /// OpenAI.
    Openai(openai::OpenAiAdapter),
    /// Azure OpenAI.
    Azure(azure::AzureAdapter),
    /// AWS Bedrock.
    Bedrock(bedrock::BedrockAdapter),
    /// The simulated provider.
    Mock(mock::MockAdapter),
}

impl ProviderAdapter {
    /// Builds the adapter for `up`: reads its credentials through `env`, and
    /// creates its pooled client with the upstream's connect timeout (or the
    /// server default).
    pub fn from_config(
        up: &UpstreamConfig,
        server: &ServerConfig,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<ProviderAdapter, ProviderConfigError> {
        let options = ClientOptions {
            connect_timeout: std::time::Duration::from_millis(
                up.connect_timeout_ms.unwrap_or(server.connect_timeout_ms),
            ),
            ..ClientOptions::default()
        };
        Ok(match up.provider {
            ProviderKind::Openai => {
                ProviderAdapter::Openai(openai::OpenAiAdapter::from_config(up, options, env)?)
            }
            ProviderKind::AzureOpenai => {
                ProviderAdapter::Azure(azure::AzureAdapter::from_config(up, options, env)?)
            }
            ProviderKind::Bedrock => {
                ProviderAdapter::Bedrock(bedrock::BedrockAdapter::from_config(up, options, env)?)
            }
            ProviderKind::Mock => {
                ProviderAdapter::Mock(mock::MockAdapter::new(up.mock.clone().unwrap_or_default()))
            }
        })
    }

    /// Whether `up`'s credentials would cross the network unencrypted: plain
    /// http to a host that is not this machine. It may be a deliberate private
    /// hop, so the snapshot builder warns rather than refuses.
    pub fn sends_credentials_in_clear(&self, up: &UpstreamConfig) -> bool {
        let cleartext = self.origin().is_some_and(|o| o.starts_with("http://"));
        cleartext && up.effective_auth() != UpstreamAuth::None && !is_loopback(self.host())
    }

    /// Sends one attempt. Returns once the response headers arrive, with any
    /// status; the caller classifies 429 and 5xx and applies the first-byte
    /// timeout. Only the connect timeout is applied here.
    pub async fn send(
        &self,
        call: UpstreamCall<'_>,
    ) -> Result<Response<UpstreamBody>, AttemptError> {
        match self {
            ProviderAdapter::Openai(a) => a.send(call).await,
            ProviderAdapter::Azure(a) => a.send(call).await,
            ProviderAdapter::Bedrock(a) => a.send(call).await,
            ProviderAdapter::Mock(a) => Ok(a.send(call).await),
        }
    }

    /// The provider kind.
    pub fn kind(&self) -> ProviderKind {
        match self {
            ProviderAdapter::Openai(_) => ProviderKind::Openai,
            ProviderAdapter::Azure(_) => ProviderKind::AzureOpenai,
            ProviderAdapter::Bedrock(_) => ProviderKind::Bedrock,
            ProviderAdapter::Mock(_) => ProviderKind::Mock,
        }
    }

    /// Takes over `previous`'s pooled connections when both reach the same
    /// origin with the same client options, so that a reload, which builds
    /// every adapter anew, does not reconnect to every upstream. Returns
    /// whether it did.
    pub fn keep_connections_of(&mut self, previous: &ProviderAdapter) -> bool {
        let same_origin = self.origin().is_some() && self.origin() == previous.origin();
        if let (true, Some(old)) = (same_origin, previous.client())
            && let Some(client) = self.client_mut()
            && client.options() == old.options()
        {
            *client = old.clone();
            return true;
        }
        false
    }

    /// Whether `self` authenticates as `previous` did (same key, token or AWS
    /// credentials); false across providers.
    pub fn same_credentials(&self, previous: &ProviderAdapter) -> bool {
        match (self, previous) {
            (ProviderAdapter::Openai(a), ProviderAdapter::Openai(b)) => a.same_credentials(b),
            (ProviderAdapter::Azure(a), ProviderAdapter::Azure(b)) => a.same_credentials(b),
            (ProviderAdapter::Bedrock(a), ProviderAdapter::Bedrock(b)) => a.same_credentials(b),
            (ProviderAdapter::Mock(_), ProviderAdapter::Mock(_)) => true,
            _ => false,
        }
    }

    /// `scheme://host[:port]` of the upstream (none for the simulated provider).
    fn origin(&self) -> Option<&str> {
        match self {
            ProviderAdapter::Openai(a) => Some(a.endpoint().origin()),
            ProviderAdapter::Azure(a) => Some(a.endpoint().origin()),
            ProviderAdapter::Bedrock(a) => Some(a.endpoint().origin()),
            ProviderAdapter::Mock(_) => None,
        }
    }

    fn client(&self) -> Option<&UpstreamClient> {
        match self {
            ProviderAdapter::Openai(a) => Some(a.client()),
            ProviderAdapter::Azure(a) => Some(a.client()),
            ProviderAdapter::Bedrock(a) => Some(a.client()),
            ProviderAdapter::Mock(_) => None,
        }
    }

    fn client_mut(&mut self) -> Option<&mut UpstreamClient> {
        match self {
            ProviderAdapter::Openai(a) => Some(a.client_mut()),
            ProviderAdapter::Azure(a) => Some(a.client_mut()),
            ProviderAdapter::Bedrock(a) => Some(a.client_mut()),
            ProviderAdapter::Mock(_) => None,
        }
    }

    /// The upstream's `host[:port]` (`mock` for the simulated provider), for
    /// error messages.
    pub fn host(&self) -> &str {
        match self {
            ProviderAdapter::Openai(a) => a.endpoint().host(),
            ProviderAdapter::Azure(a) => a.endpoint().host(),
            ProviderAdapter::Bedrock(a) => a.endpoint().host(),
            ProviderAdapter::Mock(_) => "mock",
        }
    }
}

/// Whether `host[:port]` names this machine (`localhost` or a loopback address).
fn is_loopback(host_port: &str) -> bool {
    let host = match host_port.strip_prefix('[') {
        Some(bracketed) => bracketed.split(']').next().unwrap_or_default(),
        None => host_port.split(':').next().unwrap_or_default(),
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The config name of an authentication, for messages.
fn auth_name(auth: UpstreamAuth) -> &'static str {
    match auth {
        UpstreamAuth::ApiKey => "api-key",
        UpstreamAuth::Entra => "entra",
        UpstreamAuth::Sigv4 => "sigv4",
        UpstreamAuth::None => "none",
    }
}

/// The key or token `auth` needs, from `api_key_file` or else `api_key_env`,
/// and where it came from.
fn read_key(
    up: &UpstreamConfig,
    auth: UpstreamAuth,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(Secret, SecretOrigin), ProviderConfigError> {
    if let Some(path) = &up.api_key_file {
        return Ok((Secret::from_file(path)?, SecretOrigin::File(path.clone())));
    }
    let variable = up.api_key_env.as_deref().filter(|v| !v.is_empty()).ok_or(
        ProviderConfigError::NoKeySource {
            auth: auth_name(auth),
        },
    )?;
    Ok((
        Secret::from_env(env, variable)?,
        SecretOrigin::Env(variable.to_string()),
    ))
}

/// The pooled client for an endpoint, refusing HTTPS when no roots can verify it.
fn client_for(
    endpoint: &endpoint::Endpoint,
    options: ClientOptions,
) -> Result<UpstreamClient, ProviderConfigError> {
    if endpoint.is_https() && !crate::upstream::tls::native_roots_available() {
        return Err(ProviderConfigError::NoTlsRoots {
            host: endpoint.host().to_string(),
        });
    }
    Ok(UpstreamClient::new(options))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MockConfig;

    fn is_send<T: Send>(_: &T) {}

    #[test]
    fn loopback_hosts_are_recognised() {
        for host in [
            "127.0.0.1:8080",
            "localhost",
            "LOCALHOST:1",
            "[::1]:443",
            "127.9.9.9",
        ] {
            assert!(is_loopback(host), "{host}");
        }
        for host in [
            "10.0.0.1:80",
            "api.openai.com",
            "[2001:db8::1]:80",
            "localhost.evil.com",
        ] {
            assert!(!is_loopback(host), "{host}");
        }
    }
    fn is_shareable<T: Send + Sync + 'static>() {}

    #[tokio::test]
    async fn adapters_and_their_futures_cross_threads() {
        is_shareable::<ProviderAdapter>();
        is_shareable::<UpstreamBody>();
        let adapter = ProviderAdapter::Mock(mock::MockAdapter::new(MockConfig::default()));
        let headers = HeaderMap::new();
        let call = UpstreamCall {
            operation: Operation::ChatCompletions,
            upstream_model: "m",
            body: Bytes::from_static(b"{}"),
            streaming: false,
            headers: &headers,
            request_id: "r",
        };
        let future = adapter.send(call);
        is_send(&future);
        assert_eq!(future.await.unwrap().status(), 200);
    }

    #[test]
    fn operation_paths() {
        assert_eq!(Operation::ChatCompletions.path(), "chat/completions");
        assert_eq!(Operation::Embeddings.path(), "embeddings");
    }
}
