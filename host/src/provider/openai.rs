//! OpenAI: `POST {base}/v1/chat/completions` (or `/v1/embeddings`) with
//! `Authorization: Bearer <key>`. The base defaults to `https://api.openai.com`; a
//! base written with a trailing `/v1` is accepted too.

use http::Response;

use super::endpoint::{Endpoint, OperationUrls};
use super::secret::AuthHeader;
use super::{
    ProviderConfigError, UpstreamBody, UpstreamCall, auth_name, client_for, read_key, wire,
};
use crate::config::{UpstreamAuth, UpstreamConfig};
use crate::upstream::{AttemptError, ClientOptions, UpstreamClient};

/// OpenAI's default base URL.
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com";

/// Sends requests to OpenAI (or any server with OpenAI's URL layout).
#[derive(Debug, Clone)]
pub struct OpenAiAdapter {
    client: UpstreamClient,
    endpoint: Endpoint,
    /// The URL of each operation, built once.
    urls: OperationUrls,
    auth: Option<AuthHeader>,
}

impl OpenAiAdapter {
    /// Builds the adapter from its upstream config.
    pub fn from_config(
        up: &UpstreamConfig,
        options: ClientOptions,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<OpenAiAdapter, ProviderConfigError> {
        let endpoint = Endpoint::parse(up.endpoint.as_deref().unwrap_or(DEFAULT_BASE_URL))?
            .without_suffix("/v1");
        let auth = match up.effective_auth() {
            UpstreamAuth::None => None,
            UpstreamAuth::ApiKey => {
                let (key, origin) = read_key(up, UpstreamAuth::ApiKey, env)?;
                Some(AuthHeader::bearer(&key, &origin)?)
            }
            other => {
                return Err(ProviderConfigError::UnsupportedAuth {
                    provider: "openai",
                    auth: auth_name(other),
                });
            }
        };
        Ok(OpenAiAdapter {
            client: client_for(&endpoint, options)?,
            urls: OperationUrls::new(&endpoint, "/v1/")?,
            endpoint,
            auth,
        })
    }

    pub(crate) fn client(&self) -> &UpstreamClient {
        &self.client
    }

    pub(crate) fn client_mut(&mut self) -> &mut UpstreamClient {
        &mut self.client
    }

    pub(crate) fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Whether both authenticate with the same credentials.
    pub(crate) fn same_credentials(&self, other: &OpenAiAdapter) -> bool {
        self.auth == other.auth
    }

    /// Sends one attempt; see [`super::ProviderAdapter::send`].
    pub async fn send(
        &self,
        call: UpstreamCall<'_>,
    ) -> Result<Response<UpstreamBody>, AttemptError> {
        let uri = self.urls.get(call.operation);
        let request = wire::build_request(uri, &call, self.auth.as_ref());
        Ok(wire::box_response(self.client.send(request).await?))
    }
}
