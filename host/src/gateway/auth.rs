//! Client authentication: a gateway key, presented as `Authorization: Bearer <key>`,
//! is matched by its SHA-256 against the `[[client]]` entries and names a tenant.

use std::collections::HashMap;
use std::sync::Arc;

use http::HeaderMap;
use sha2::{Digest, Sha256};

use crate::config::ClientConfig;

/// The authenticated client of a request.
#[derive(Debug, Clone)]
pub struct ClientIdentity {
    /// The `[[client]]` entry's name.
    pub name: Arc<str>,
    /// The tenant policies see.
    pub tenant: Option<Arc<str>>,
}

/// Why a request was not authenticated (401 `invalid_api_key`). Never retryable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    /// No `Authorization: Bearer …` header.
    #[error("missing API key: send `Authorization: Bearer <key>`")]
    Missing,
    /// The key matches no configured client.
    #[error("invalid API key")]
    Unknown,
}

/// The configured client keys, by SHA-256 digest.
#[derive(Debug, Default)]
pub struct ClientKeys {
    by_digest: HashMap<[u8; 32], ClientIdentity, foldhash::fast::RandomState>,
}

impl ClientKeys {
    /// Builds the key table; `clients` must have passed config validation.
    pub fn new(clients: &[ClientConfig]) -> ClientKeys {
        let by_digest = clients
            .iter()
            .filter_map(|client| {
                let mut digest = [0u8; 32];
                hex::decode_to_slice(client.key_sha256.trim(), &mut digest).ok()?;
                let identity = ClientIdentity {
                    name: client.name.as_str().into(),
                    tenant: client.tenant.as_deref().map(Arc::from),
                };
                Some((digest, identity))
            })
            .collect();
        ClientKeys { by_digest }
    }

    /// True when no clients are configured: every request is let in, without a tenant.
    pub fn is_open(&self) -> bool {
        self.by_digest.is_empty()
    }

    /// Authenticates a request by its headers. `Ok(None)` when auth is off.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Option<&ClientIdentity>, AuthError> {
        if self.is_open() {
            return Ok(None);
        }
        let key = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| {
                let (scheme, key) = value.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| key.trim())
            })
            .filter(|key| !key.is_empty())
            .ok_or(AuthError::Missing)?;
        let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        self.by_digest
            .get(&digest)
            .map(Some)
            .ok_or(AuthError::Unknown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> ClientKeys {
        ClientKeys::new(&[ClientConfig {
            name: "team-eu".into(),
            key_sha256: hex::encode(Sha256::digest(b"sk-team-eu")),
            tenant: Some("eu-bank".into()),
            line: 1,
        }])
    }

    fn bearer(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(http::header::AUTHORIZATION, value.parse().unwrap());
        headers
    }

    #[test]
    fn known_key_names_the_tenant() {
        let keys = keys();
        let who = keys
            .authenticate(&bearer("Bearer sk-team-eu"))
            .unwrap()
            .unwrap();
        assert_eq!(who.tenant.as_deref(), Some("eu-bank"));
        assert!(
            keys.authenticate(&bearer("bearer sk-team-eu"))
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn missing_and_unknown_keys_are_refused() {
        let keys = keys();
        assert_eq!(
            keys.authenticate(&HeaderMap::new()).unwrap_err(),
            AuthError::Missing
        );
        assert_eq!(
            keys.authenticate(&bearer("Basic abc")).unwrap_err(),
            AuthError::Missing
        );
        assert_eq!(
            keys.authenticate(&bearer("Bearer nope")).unwrap_err(),
            AuthError::Unknown
        );
    }

    #[test]
    fn no_clients_means_open() {
        let keys = ClientKeys::new(&[]);
        assert!(keys.authenticate(&HeaderMap::new()).unwrap().is_none());
    }
}
