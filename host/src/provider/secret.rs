//! Credentials, read from the environment or from files the config names (AWS
//! ones: [`super::aws_keys`]), and
//! kept out of Debug output, logs and errors. A file is read each time a
//! snapshot is built; the file watch rebuilds one when a credential file changes,
//! so rotated keys, tokens and session credentials take effect without a restart.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use http::{HeaderName, HeaderValue};

use super::ProviderConfigError;

/// Largest credential file read. A key or token is a few KiB at most; anything
/// larger is not one (a wrong path), and is refused before it is read whole.
const MAX_SECRET_FILE_BYTES: u64 = 64 * 1024;

/// Where a credential comes from, as errors and logs name it (never its value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretOrigin {
    /// An environment variable.
    Env(String),
    /// A file holding the credential alone.
    File(PathBuf),
    /// One key of a profile in an AWS shared credentials file.
    AwsProfile {
        /// The credentials file.
        file: PathBuf,
        /// The profile (section).
        profile: String,
        /// The key, e.g. `aws_secret_access_key`.
        key: &'static str,
    },
}

impl fmt::Display for SecretOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretOrigin::Env(variable) => write!(f, "environment variable {variable}"),
            SecretOrigin::File(path) => write!(f, "file {}", path.display()),
            SecretOrigin::AwsProfile { file, profile, key } => {
                write!(f, "{key} of profile [{profile}] in {}", file.display())
            }
        }
    }
}

/// A credential (API key, token, AWS secret). Its `Debug` prints `[redacted]` and
/// it has no `Display`, so it cannot end up in a log line by accident.
#[derive(Clone, PartialEq, Eq)]
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
        Secret::non_empty(&value, || SecretOrigin::Env(variable.to_string()))
    }

    /// Reads the credential from `path`: the whole file, surrounding whitespace
    /// (a trailing newline) trimmed. Errors name the file, never its contents.
    pub fn from_file(path: &Path) -> Result<Secret, ProviderConfigError> {
        let text = read_credential_file(path)?;
        Secret::non_empty(&text, || SecretOrigin::File(path.to_path_buf()))
    }

    pub(super) fn non_empty(
        value: &str,
        origin: impl FnOnce() -> SecretOrigin,
    ) -> Result<Secret, ProviderConfigError> {
        let value = value.trim();
        if value.is_empty() {
            return Err(ProviderConfigError::MissingSecret { from: origin() });
        }
        Ok(Secret::new(value))
    }

    /// The credential itself. Only for building a request or signing one.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Refuses a credential that is not a single token of visible ASCII: one
    /// that cannot travel in a header, or one holding a space or a byte-order
    /// mark, which no provider issues and every provider would refuse.
    pub(crate) fn header_safe(&self, origin: &SecretOrigin) -> Result<(), ProviderConfigError> {
        if self.expose().bytes().all(|b| b.is_ascii_graphic()) {
            Ok(())
        } else {
            Err(ProviderConfigError::InvalidSecret {
                from: origin.clone(),
            })
        }
    }
}

/// Reads a credential file of at most [`MAX_SECRET_FILE_BYTES`] as UTF-8.
/// Errors name the file and the failure, never the contents.
pub(super) fn read_credential_file(path: &Path) -> Result<String, ProviderConfigError> {
    let unreadable = |reason: String| ProviderConfigError::UnreadableSecret {
        from: SecretOrigin::File(path.to_path_buf()),
        reason,
    };
    let bytes = crate::files::read_regular(path, Some(MAX_SECRET_FILE_BYTES)).map_err(|e| {
        // The I/O error's own text: a kind or this module's own words, no contents.
        unreadable(match e.kind() {
            std::io::ErrorKind::InvalidInput => e.to_string(),
            kind => kind.to_string(),
        })
    })?;
    String::from_utf8(bytes).map_err(|_| unreadable("not UTF-8 text".to_string()))
}

/// An authentication header with a value marked sensitive (HPACK never indexes it,
/// and its `Debug` hides it).
#[derive(Clone, PartialEq, Eq)]
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
        origin: &SecretOrigin,
    ) -> Result<AuthHeader, ProviderConfigError> {
        AuthHeader::new(http::header::AUTHORIZATION, "Bearer ", secret, origin)
    }

    /// `<name>: <secret>`.
    pub(crate) fn plain(
        name: HeaderName,
        secret: &Secret,
        origin: &SecretOrigin,
    ) -> Result<AuthHeader, ProviderConfigError> {
        AuthHeader::new(name, "", secret, origin)
    }

    fn new(
        name: HeaderName,
        prefix: &str,
        secret: &Secret,
        origin: &SecretOrigin,
    ) -> Result<AuthHeader, ProviderConfigError> {
        secret.header_safe(origin)?;
        let mut value =
            HeaderValue::try_from(format!("{prefix}{}", secret.expose())).map_err(|_| {
                ProviderConfigError::InvalidSecret {
                    from: origin.clone(),
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
        let header = AuthHeader::bearer(&secret, &SecretOrigin::Env("KEY".into())).unwrap();
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
        let err = AuthHeader::bearer(&bad, &SecretOrigin::Env("NEWLINE".into())).unwrap_err();
        assert!(
            err.to_string().contains("NEWLINE") && !err.to_string().contains("abc"),
            "{err}"
        );
    }

    #[test]
    fn files_are_trimmed_and_errors_name_the_file_only() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("key");
        std::fs::write(&key, "sk-canary-1\n").unwrap();
        assert_eq!(Secret::from_file(&key).unwrap().expose(), "sk-canary-1");

        std::fs::write(&key, " \n").unwrap();
        let err = Secret::from_file(&key).unwrap_err();
        assert!(matches!(err, ProviderConfigError::MissingSecret { .. }));
        assert!(err.to_string().contains("key"), "{err}");

        let err = Secret::from_file(&dir.path().join("absent")).unwrap_err();
        assert!(err.to_string().contains("absent"), "{err}");
        let err = Secret::from_file(dir.path()).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");

        std::fs::write(&key, vec![b'k'; 64 * 1024 + 1]).unwrap();
        let err = Secret::from_file(&key).unwrap_err();
        assert!(err.to_string().contains("larger than 65536 bytes"), "{err}");

        std::fs::write(&key, b"sk-canary-\xff").unwrap();
        let err = Secret::from_file(&key).unwrap_err();
        assert!(!err.to_string().contains("canary"), "{err}");
    }
}
