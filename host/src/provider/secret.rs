//! Credentials read from the environment, kept out of Debug output, logs and errors.

use std::fmt;
use std::sync::Arc;

use http::{HeaderName, HeaderValue};

use super::ProviderConfigError;

/// A credential (API key, token, AWS secret). Its `Debug` prints `[redacted]` and
/// it has no `Display`, so it cannot end up in a log line by accident.
#[derive(Clone)]
pub struct Secret(Arc<str>);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl Secret {
    /// Wraps a credential.
    pub fn new(value: impl Into<Arc<str>>) -> Secret {
        Secret(value.into())
    }

    /// Reads the credential from environment variable `variable` (surrounding
    /// whitespace trimmed). Errors name the variable, never its value.
    pub fn from_env(
        env: &dyn Fn(&str) -> Option<String>,
        variable: &str,
    ) -> Result<Secret, ProviderConfigError> {
        let value = env(variable).unwrap_or_default();
        let value = value.trim();
        if value.is_empty() {
            return Err(ProviderConfigError::MissingSecret {
                variable: variable.to_string(),
            });
        }
        Ok(Secret::new(value))
    }

    /// The credential itself. Only for building a request or signing one.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// An authentication header with a value marked sensitive (HPACK never indexes it,
/// and its `Debug` hides it).
#[derive(Clone)]
pub(crate) struct AuthHeader {
    pub(crate) name: HeaderName,
    pub(crate) value: HeaderValue,
}

impl fmt::Debug for AuthHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: [redacted]", self.name)
    }
}

impl AuthHeader {
    /// `Authorization: Bearer <secret>`.
    pub(crate) fn bearer(
        secret: &Secret,
        variable: &str,
    ) -> Result<AuthHeader, ProviderConfigError> {
        AuthHeader::new(http::header::AUTHORIZATION, "Bearer ", secret, variable)
    }

    /// `<name>: <secret>`.
    pub(crate) fn plain(
        name: HeaderName,
        secret: &Secret,
        variable: &str,
    ) -> Result<AuthHeader, ProviderConfigError> {
        AuthHeader::new(name, "", secret, variable)
    }

    fn new(
        name: HeaderName,
        prefix: &str,
        secret: &Secret,
        variable: &str,
    ) -> Result<AuthHeader, ProviderConfigError> {
        let mut value =
            HeaderValue::try_from(format!("{prefix}{}", secret.expose())).map_err(|_| {
                ProviderConfigError::InvalidSecret {
                    variable: variable.to_string(),
                }
            })?;
        value.set_sensitive(true);
        Ok(AuthHeader { name, value })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        let secret = Secret::new("sk-canary-123");
        assert_eq!(format!("{secret:?}"), "[redacted]");
        let header = AuthHeader::bearer(&secret, "KEY").unwrap();
        let shown = format!("{header:?}");
        assert!(!shown.contains("canary"), "{shown}");
        assert!(header.value.is_sensitive());
        assert_eq!(header.value, "Bearer sk-canary-123");
    }

    #[test]
    fn env_errors_name_the_variable_only() {
        let env = |name: &str| match name {
            "BLANK" => Some("  ".to_string()),
            "NEWLINE" => Some("abc\u{7f}def".to_string()),
            "PADDED" => Some(" key\n".to_string()),
            _ => None,
        };
        let err = Secret::from_env(&env, "UNSET").unwrap_err();
        assert!(err.to_string().contains("UNSET"), "{err}");
        assert!(Secret::from_env(&env, "BLANK").is_err());
        assert_eq!(Secret::from_env(&env, "PADDED").unwrap().expose(), "key");
        let bad = Secret::from_env(&env, "NEWLINE").unwrap();
        let err = AuthHeader::bearer(&bad, "NEWLINE").unwrap_err();
        assert!(
            err.to_string().contains("NEWLINE") && !err.to_string().contains("abc"),
            "{err}"
        );
    }
}
