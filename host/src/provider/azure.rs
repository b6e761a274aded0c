//! Azure OpenAI, in either URL style:
//!
//! - deployments (default): `POST {endpoint}/openai/deployments/{deployment}/chat/completions?api-version={v}`,
//!   the deployment being the candidate's upstream model;
//! - v1: `POST {endpoint}/openai/v1/chat/completions`, no `api-version`, the
//!   deployment in the body's `model` (the gateway already wrote it there).
//!
//! Authentication is `api-key: <key>` or, with `auth = "entra"`, a Microsoft
//! Entra token as `Authorization: Bearer <token>`.

use http::{HeaderName, Response};

use super::endpoint::{Endpoint, encode_component};
use super::secret::AuthHeader;
use super::{
    ProviderConfigError, UpstreamBody, UpstreamCall, auth_name, client_for, read_key, wire,
};
use crate::config::{AzureApiStyle, UpstreamAuth, UpstreamConfig};
use crate::upstream::{AttemptError, ClientOptions, UpstreamClient};

/// The `api-version` used when the config names none (the current GA version).
pub const DEFAULT_API_VERSION: &str = "2024-10-21";

const API_KEY: HeaderName = HeaderName::from_static("api-key");

/// Sends requests to an Azure OpenAI resource.
#[derive(Debug, Clone)]
pub struct AzureAdapter {
    client: UpstreamClient,
    endpoint: Endpoint,
    auth: Option<AuthHeader>,
    style: AzureApiStyle,
    /// `?api-version=…`, encoded (deployments style only).
    query: String,
}

impl AzureAdapter {
    /// Builds the adapter from its upstream config.
    pub fn from_config(
        up: &UpstreamConfig,
        options: ClientOptions,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<AzureAdapter, ProviderConfigError> {
        let raw = up
            .endpoint
            .as_deref()
            .ok_or(ProviderConfigError::MissingEndpoint {
                provider: "azure-openai",
            })?;
        let endpoint = Endpoint::parse(raw)?;
        let auth = match up.effective_auth() {
            UpstreamAuth::None => None,
            UpstreamAuth::ApiKey => {
                let (key, origin) = read_key(up, UpstreamAuth::ApiKey, env)?;
                Some(AuthHeader::plain(API_KEY, &key, &origin)?)
            }
            UpstreamAuth::Entra => {
                let (key, origin) = read_key(up, UpstreamAuth::Entra, env)?;
                Some(AuthHeader::bearer(&key, &origin)?)
            }
            other => {
                return Err(ProviderConfigError::UnsupportedAuth {
                    provider: "azure-openai",
                    auth: auth_name(other),
                });
            }
        };
        let version = up.api_version.as_deref().unwrap_or(DEFAULT_API_VERSION);
        Ok(AzureAdapter {
            client: client_for(&endpoint, options)?,
            endpoint,
            auth,
            style: up.api_style,
            query: format!("?api-version={}", encode_component(version)),
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
    pub(crate) fn same_credentials(&self, other: &AzureAdapter) -> bool {
        self.auth == other.auth
    }

    /// The path and query of a call.
    fn path(&self, call: &UpstreamCall<'_>) -> String {
        match self.style {
            AzureApiStyle::Deployments => format!(
                "/openai/deployments/{}/{}{}",
                encode_component(call.upstream_model),
                call.operation.path(),
                self.query
            ),
            AzureApiStyle::V1 => format!("/openai/v1/{}", call.operation.path()),
        }
    }

    /// Sends one attempt; see [`super::ProviderAdapter::send`].
    pub async fn send(
        &self,
        call: UpstreamCall<'_>,
    ) -> Result<Response<UpstreamBody>, AttemptError> {
        let uri = self.endpoint.url(&self.path(&call))?;
        let request = wire::build_request(uri, &call, self.auth.as_ref());
        Ok(wire::box_response(self.client.send(request).await?))
    }
}
