//! Upstream base URLs from the config: parsed once, normalized (no trailing slash,
//! no default port), and joined with each provider's paths.

use http::Uri;

use super::{Operation, ProviderConfigError};
use crate::upstream::AttemptError;

/// A validated upstream base URL.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    /// `scheme://host[:port]`.
    origin: String,
    /// The base path without a trailing slash (often empty).
    path: String,
    /// `host[:port]`, for error messages.
    host: String,
    https: bool,
}

impl Endpoint {
    /// Parses a configured endpoint. It must be an absolute `http://` or `https://`
    /// URL without user info, query or fragment (credentials never go in URLs).
    pub(crate) fn parse(raw: &str) -> Result<Endpoint, ProviderConfigError> {
        let invalid = |reason: &str| ProviderConfigError::InvalidEndpoint {
            reason: reason.to_string(),
        };
        let raw = raw.trim();
        if raw.contains('#') {
            return Err(invalid("must not have a fragment"));
        }
        let uri: Uri = raw.parse().map_err(|_| invalid("not a valid URL"))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(invalid("must start with http:// or https://")),
        };
        let authority = uri.authority().ok_or_else(|| invalid("has no host"))?;
        if authority.as_str().contains('@') {
            return Err(invalid(
                "must not carry user info (keys come from api_key_env or api_key_file)",
            ));
        }
        if uri.query().is_some() {
            return Err(invalid("must not have a query string"));
        }
        let host_name = authority.host();
        let default_port = if https { 443 } else { 80 };
        let host = match authority.port_u16() {
            Some(port) if port != default_port => format!("{host_name}:{port}"),
            _ => host_name.to_string(),
        };
        let path = uri.path().trim_end_matches('/');
        let scheme = if https { "https" } else { "http" };
        Ok(Endpoint {
            origin: format!("{scheme}://{host}"),
            path: path.to_string(),
            host,
            https,
        })
    }

    /// Drops a trailing path suffix such as `/v1` (a common way to write OpenAI's
    /// base URL) so it is not doubled.
    pub(crate) fn without_suffix(mut self, suffix: &str) -> Endpoint {
        if let Some(stripped) = self.path.strip_suffix(suffix) {
            self.path.truncate(stripped.len());
        }
        self
    }

    /// The endpoint with `path_and_query` (starting with `/`) appended.
    pub(crate) fn url(&self, path_and_query: &str) -> Result<Uri, AttemptError> {
        format!("{}{}{path_and_query}", self.origin, self.path)
            .parse()
            .map_err(|_| AttemptError::Request {
                host: self.host.clone(),
                detail: "the upstream path is not a valid URL".to_string(),
            })
    }

    /// `host[:port]`.
    pub(crate) fn host(&self) -> &str {
        &self.host
    }

    /// Whether the endpoint uses TLS.
    pub(crate) fn is_https(&self) -> bool {
        self.https
    }

    /// `scheme://host[:port]`: what a connection to the endpoint reaches.
    pub(crate) fn origin(&self) -> &str {
        &self.origin
    }
}

/// The full URL of each [`Operation`] below one fixed prefix (e.g. `/v1/`),
/// built once when the adapter is made: a request clones one instead of
/// formatting and parsing its URL again.
#[derive(Debug, Clone)]
pub(crate) struct OperationUrls {
    chat_completions: Uri,
    embeddings: Uri,
}

impl OperationUrls {
    /// The URLs of `endpoint` + `prefix` + each operation's path.
    pub(crate) fn new(
        endpoint: &Endpoint,
        prefix: &str,
    ) -> Result<OperationUrls, ProviderConfigError> {
        let url = |operation: Operation| {
            endpoint
                .url(&format!("{prefix}{}", operation.path()))
                .map_err(|_| ProviderConfigError::InvalidEndpoint {
                    reason: "the upstream path is not a valid URL".to_string(),
                })
        };
        Ok(OperationUrls {
            chat_completions: url(Operation::ChatCompletions)?,
            embeddings: url(Operation::Embeddings)?,
        })
    }

    /// The URL of `operation`.
    pub(crate) fn get(&self, operation: Operation) -> Uri {
        match operation {
            Operation::ChatCompletions => self.chat_completions.clone(),
            Operation::Embeddings => self.embeddings.clone(),
        }
    }
}

/// Percent-encodes a value for one URL path segment or query value: everything
/// but RFC 3986 unreserved characters, so a `/`, `?` or `#` can never change the URL.
pub(crate) fn encode_component(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes() {
        let e = Endpoint::parse("https://contoso.openai.azure.com/").unwrap();
        assert_eq!(
            e.url("/openai/v1/chat/completions").unwrap(),
            "https://contoso.openai.azure.com/openai/v1/chat/completions"
        );
        assert_eq!(e.host(), "contoso.openai.azure.com");
        assert!(e.is_https());
        let e = Endpoint::parse("http://127.0.0.1:8081/prefix//").unwrap();
        assert_eq!(e.url("/v1/x").unwrap(), "http://127.0.0.1:8081/prefix/v1/x");
        assert_eq!(e.host(), "127.0.0.1:8081");
        let e = Endpoint::parse("https://api.example.com:443").unwrap();
        assert_eq!(e.host(), "api.example.com", "default port dropped");
        let e = Endpoint::parse("http://[::1]:9000").unwrap();
        assert_eq!(e.url("/a").unwrap(), "http://[::1]:9000/a");
    }

    #[test]
    fn operation_urls_join_the_prefix() {
        let e = Endpoint::parse("http://127.0.0.1:8081/base/").unwrap();
        let urls = OperationUrls::new(&e, "/openai/v1/").unwrap();
        assert_eq!(
            urls.get(Operation::ChatCompletions),
            "http://127.0.0.1:8081/base/openai/v1/chat/completions"
        );
        assert_eq!(
            urls.get(Operation::Embeddings),
            "http://127.0.0.1:8081/base/openai/v1/embeddings"
        );
    }

    #[test]
    fn rejects_unsafe_urls() {
        for bad in [
            "ftp://x",
            "api.openai.com",
            "https://user:key@host",
            "https://host/?key=1",
            "https://host/#x",
            "",
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn strips_v1_suffix_only_from_the_path() {
        let e = Endpoint::parse("https://api.openai.com/v1/")
            .unwrap()
            .without_suffix("/v1");
        assert_eq!(
            e.url("/v1/embeddings").unwrap(),
            "https://api.openai.com/v1/embeddings"
        );
        let e = Endpoint::parse("https://api.openai.com")
            .unwrap()
            .without_suffix("/v1");
        assert_eq!(
            e.url("/v1/embeddings").unwrap(),
            "https://api.openai.com/v1/embeddings"
        );
    }

    #[test]
    fn encodes_components() {
        assert_eq!(encode_component("gpt4o-prod_1.2~x"), "gpt4o-prod_1.2~x");
        assert_eq!(encode_component("a/b?c#d e"), "a%2Fb%3Fc%23d%20e");
        assert_eq!(encode_component("2024-10-21"), "2024-10-21");
    }
}
