//! AWS Bedrock through its OpenAI-compatible endpoint:
//! `POST {endpoint}/openai/v1/chat/completions`, the endpoint defaulting to
//! `https://bedrock-runtime.{region}.amazonaws.com`. That API has no embeddings:
//! a Bedrock upstream is never a candidate for them (`UpstreamEntry::serves`).
//!
//! Authentication is a Bedrock API key (`Authorization: Bearer <key>`) or SigV4
//! (service `bedrock`, the configured region, credentials from `AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY` and optionally `AWS_SESSION_TOKEN`, or from a profile
//! of the AWS shared credentials file `aws_credentials_file`, which the file
//! watch re-reads when a credential helper rewrites it), signed over the exact
//! body bytes sent. Model ids such as `openai.gpt-oss-120b-1:0` travel in the
//! body and are never put in the URL.

use std::fmt;
use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderName, Request, Response};
use http_body_util::Full;

use super::aws_keys::AwsKeys;
use super::endpoint::{Endpoint, OperationUrls};
use super::secret::AuthHeader;
use super::{
    ProviderConfigError, UpstreamBody, UpstreamCall, auth_name, client_for, read_key, wire,
};
use crate::config::{UpstreamAuth, UpstreamConfig};
use crate::upstream::{AttemptError, ClientOptions, UpstreamClient};

/// The SigV4 service name of Bedrock.
pub const SIGNING_SERVICE: &str = "bedrock";
/// The profile of `aws_credentials_file` read when the config names none.
pub const DEFAULT_PROFILE: &str = "default";

const SECURITY_TOKEN: HeaderName = HeaderName::from_static("x-amz-security-token");

/// Sends requests to Bedrock's OpenAI-compatible endpoint.
#[derive(Debug, Clone)]
pub struct BedrockAdapter {
    client: UpstreamClient,
    endpoint: Endpoint,
    /// The URL of each operation, built once.
    urls: OperationUrls,
    auth: BedrockAuth,
}

#[derive(Debug, Clone, PartialEq)]
enum BedrockAuth {
    None,
    Bearer(AuthHeader),
    SigV4(SigV4),
}

/// SigV4 credentials and region. The `Identity` wraps `Credentials`, whose own
/// `Debug` redacts the secret; ours prints nothing of it at all.
#[derive(Clone)]
struct SigV4 {
    identity: Identity,
    /// What `identity` was made from, to tell whether a reload changed it.
    keys: AwsKeys,
    region: String,
}

impl PartialEq for SigV4 {
    fn eq(&self, other: &SigV4) -> bool {
        self.keys == other.keys && self.region == other.region
    }
}

impl fmt::Debug for SigV4 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigV4")
            .field("region", &self.region)
            .field("credentials", &"[redacted]")
            .finish()
    }
}

impl BedrockAdapter {
    /// Builds the adapter from its upstream config.
    pub fn from_config(
        up: &UpstreamConfig,
        options: ClientOptions,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<BedrockAdapter, ProviderConfigError> {
        let region = up.region.trim();
        let region_ok = !region.is_empty()
            && region
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-');
        let endpoint = match up.endpoint.as_deref() {
            Some(raw) => Endpoint::parse(raw)?,
            None if region_ok => {
                Endpoint::parse(&format!("https://bedrock-runtime.{region}.amazonaws.com"))?
            }
            None => return Err(ProviderConfigError::MissingRegion),
        };
        let auth = match up.effective_auth() {
            UpstreamAuth::None => BedrockAuth::None,
            UpstreamAuth::ApiKey => {
                let (key, origin) = read_key(up, UpstreamAuth::ApiKey, env)?;
                BedrockAuth::Bearer(AuthHeader::bearer(&key, &origin)?)
            }
            UpstreamAuth::Sigv4 => {
                if !region_ok {
                    return Err(ProviderConfigError::MissingRegion);
                }
                let keys = match &up.aws_credentials_file {
                    Some(file) => AwsKeys::from_file(
                        file,
                        up.aws_profile.as_deref().unwrap_or(DEFAULT_PROFILE),
                    )?,
                    None => AwsKeys::from_env(env)?,
                };
                let credentials = Credentials::new(
                    keys.access_key_id.expose(),
                    keys.secret_access_key.expose(),
                    keys.session_token.as_ref().map(|t| t.expose().to_string()),
                    None,
                    "switchyard",
                );
                BedrockAuth::SigV4(SigV4 {
                    identity: credentials.into(),
                    keys,
                    region: region.to_string(),
                })
            }
            other => {
                return Err(ProviderConfigError::UnsupportedAuth {
                    provider: "bedrock",
                    auth: auth_name(other),
                });
            }
        };
        Ok(BedrockAdapter {
            client: client_for(&endpoint, options)?,
            urls: OperationUrls::new(&endpoint, "/openai/v1/")?,
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
    pub(crate) fn same_credentials(&self, other: &BedrockAdapter) -> bool {
        self.auth == other.auth
    }

    /// Sends one attempt; see [`super::ProviderAdapter::send`].
    pub async fn send(
        &self,
        call: UpstreamCall<'_>,
    ) -> Result<Response<UpstreamBody>, AttemptError> {
        let uri = self.urls.get(call.operation);
        let request = match &self.auth {
            BedrockAuth::None => wire::build_request(uri, &call, None),
            BedrockAuth::Bearer(header) => wire::build_request(uri, &call, Some(header)),
            BedrockAuth::SigV4(sigv4) => {
                let mut request = wire::build_request(uri, &call, None);
                self.sign(sigv4, &mut request, &call.body)?;
                request
            }
        };
        Ok(wire::box_response(self.client.send(request).await?))
    }

    /// Adds `x-amz-date`, `Authorization` and (with a session token)
    /// `x-amz-security-token`. Signed: `host` (from the URL, as the client sends
    /// it), `content-type`, `x-amz-date`, the token, and the body's SHA-256.
    fn sign(
        &self,
        sigv4: &SigV4,
        request: &mut Request<Full<Bytes>>,
        body: &[u8],
    ) -> Result<(), AttemptError> {
        let failed = |what: &dyn fmt::Display| AttemptError::Request {
            host: self.endpoint.host().to_string(),
            detail: format!("SigV4 signing failed: {what}"),
        };
        let uri = request.uri().to_string();
        let content_type = request
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/json");
        let signable = SignableRequest::new(
            request.method().as_str(),
            uri.as_str(),
            [("content-type", content_type)].into_iter(),
            SignableBody::Bytes(body),
        )
        .map_err(|e| failed(&e))?;
        let params = v4::SigningParams::builder()
            .identity(&sigv4.identity)
            .region(&sigv4.region)
            .name(SIGNING_SERVICE)
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| failed(&e))?
            .into();
        // aws-sigv4 traces the credentials' access key id; keep it out of our logs.
        let signed =
            tracing::subscriber::with_default(tracing::subscriber::NoSubscriber::default(), || {
                sign(signable, &params)
            });
        let (instructions, _signature) = signed.map_err(|e| failed(&e))?.into_parts();
        instructions.apply_to_request_http1x(request);
        for name in [AUTHORIZATION, SECURITY_TOKEN] {
            if let Some(value) = request.headers_mut().get_mut(name) {
                value.set_sensitive(true);
            }
        }
        Ok(())
    }
}
