//! Credentials, read from the environment or from files the config names, and
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

    fn non_empty(
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
fn read_credential_file(path: &Path) -> Result<String, ProviderConfigError> {
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

/// `value` without a comment that follows it: `#` or `;` after whitespace, as
/// the AWS SDKs read their config files (credential values hold neither).
fn without_comment(value: &str) -> &str {
    let bytes = value.as_bytes();
    let cut = (1..bytes.len())
        .find(|&i| matches!(bytes[i], b'#' | b';') && bytes[i - 1].is_ascii_whitespace());
    cut.map_or(value, |i| &value[..i]).trim()
}

/// AWS credentials for SigV4: an access key id, a secret access key and an
/// optional session token (temporary credentials).
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct AwsKeys {
    pub(crate) access_key_id: Secret,
    pub(crate) secret_access_key: Secret,
    pub(crate) session_token: Option<Secret>,
}

impl fmt::Debug for AwsKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AwsKeys([redacted])")
    }
}

/// The AWS variables and the shared credentials file's keys, in the order
/// access key id, secret access key, session token.
const AWS_ENV: [&str; 3] = [
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
];
const AWS_FILE_KEYS: [&str; 3] = [
    "aws_access_key_id",
    "aws_secret_access_key",
    "aws_session_token",
];

impl AwsKeys {
    /// From `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and, if set,
    /// `AWS_SESSION_TOKEN`.
    pub(crate) fn from_env(
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<AwsKeys, ProviderConfigError> {
        let [id, secret, token] = AWS_ENV;
        let keys = AwsKeys {
            access_key_id: Secret::from_env(env, id)?,
            secret_access_key: Secret::from_env(env, secret)?,
            session_token: Secret::from_env(env, token).ok(),
        };
        keys.check(|i| SecretOrigin::Env(AWS_ENV[i].to_string()))?;
        Ok(keys)
    }

    /// From profile `profile` of the AWS shared credentials file at `path`
    /// (the `~/.aws/credentials` format: `[profile]` sections of
    /// `aws_access_key_id`, `aws_secret_access_key` and an optional
    /// `aws_session_token`, or its older name `aws_security_token`), as
    /// credential helpers that refresh temporary credentials write it. Read as
    /// the AWS SDKs read it: profile names case-sensitive, key names not, and a
    /// comment may follow a value after whitespace.
    pub(crate) fn from_file(path: &Path, profile: &str) -> Result<AwsKeys, ProviderConfigError> {
        let text = read_credential_file(path)?;
        let origin = |i: usize| SecretOrigin::AwsProfile {
            file: path.to_path_buf(),
            profile: profile.to_string(),
            key: AWS_FILE_KEYS[i],
        };
        let mut defaults = configparser::ini::Ini::new_cs().defaults();
        // Comments after values are cut below, by the AWS rule.
        defaults.enable_inline_comments = false;
        // Keys above the first section belong to no profile (the parser would
        // file them under a section named `default`).
        defaults.default_section = "\0outside any profile".to_string();
        let mut ini = configparser::ini::Ini::new_from_defaults(defaults);
        // The parser's message quotes nothing of the file, but a secret's file
        // is not worth the risk: only the file is named.
        let sections = ini
            .read(text.trim_start_matches('\u{feff}').to_string())
            .map_err(|_| ProviderConfigError::UnreadableSecret {
                from: SecretOrigin::File(path.to_path_buf()),
                reason: "not in the AWS shared credentials format".to_string(),
            })?;
        let section = sections.get(profile);
        let value = |key: &str| {
            let (_, value) = section?
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(key))?;
            Some(without_comment(value.as_deref()?).to_string())
        };
        let read = |i: usize| {
            let text = value(AWS_FILE_KEYS[i]).unwrap_or_default();
            Secret::non_empty(&text, || origin(i))
        };
        let keys = AwsKeys {
            access_key_id: read(0)?,
            secret_access_key: read(1)?,
            session_token: read(2)
                .or_else(|_| {
                    let legacy = value("aws_security_token").unwrap_or_default();
                    Secret::non_empty(&legacy, || origin(2))
                })
                .ok(),
        };
        keys.check(origin)?;
        Ok(keys)
    }

    /// The key id and the token travel in headers (`Authorization`,
    /// `x-amz-security-token`); the signer would panic on a value that cannot.
    /// A temporary key id (`ASIA…`) is useless without its session token:
    /// refused here rather than answered 403 on every request.
    fn check(&self, origin: impl Fn(usize) -> SecretOrigin) -> Result<(), ProviderConfigError> {
        self.access_key_id.header_safe(&origin(0))?;
        match &self.session_token {
            Some(token) => token.header_safe(&origin(2))?,
            None if self.access_key_id.expose().starts_with("ASIA") => {
                return Err(ProviderConfigError::MissingSecret { from: origin(2) });
            }
            None => {}
        }
        Ok(())
    }
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
        // A FIFO with no writer would block the read for good.
        let fifo = dir.path().join("fifo");
        let name = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: `name` is a NUL-terminated path that outlives the call.
        assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0);
        let err = Secret::from_file(&fifo).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");

        std::fs::write(&key, vec![b'k'; 64 * 1024 + 1]).unwrap();
        let err = Secret::from_file(&key).unwrap_err();
        assert!(err.to_string().contains("larger than 65536 bytes"), "{err}");

        std::fs::write(&key, b"sk-canary-\xff").unwrap();
        let err = Secret::from_file(&key).unwrap_err();
        assert!(!err.to_string().contains("canary"), "{err}");
    }

    #[test]
    fn aws_credentials_file_profiles() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("credentials");
        std::fs::write(
            &file,
            "\u{feff}aws_access_key_id = AKIDOUTSIDE\n\
             # written by a credential helper\r\n\
             [default]\r\n\
             aws_access_key_id = AKIDDEFAULT   # rotated hourly\r\n\
             AWS_Secret_Access_Key = secret/with+;semicolon\r\n\n\
             [Bedrock]\n\
             aws_access_key_id=ASIASESSION\n\
             aws_secret_access_key=sess-secret ; comment\n\
             aws_security_token = tok/en+=\n\
             [temporary]\n\
             aws_access_key_id = ASIANOTOKEN\n\
             aws_secret_access_key = s\n\
             [spaced]\n\
             aws_access_key_id = AKID WITH SPACE\n\
             aws_secret_access_key = s\n",
        )
        .unwrap();
        let keys = AwsKeys::from_file(&file, "default").unwrap();
        assert_eq!(keys.access_key_id.expose(), "AKIDDEFAULT");
        assert_eq!(keys.secret_access_key.expose(), "secret/with+;semicolon");
        assert!(keys.session_token.is_none());
        let keys = AwsKeys::from_file(&file, "Bedrock").unwrap();
        assert_eq!(keys.access_key_id.expose(), "ASIASESSION");
        assert_eq!(keys.secret_access_key.expose(), "sess-secret");
        assert_eq!(keys.session_token.unwrap().expose(), "tok/en+=");
        assert_eq!(
            format!("{:?}", AwsKeys::from_file(&file, "default").unwrap()),
            "AwsKeys([redacted])"
        );

        // Profile names are case-sensitive; the error names file, profile and key.
        let err = AwsKeys::from_file(&file, "bedrock").unwrap_err();
        let shown = err.to_string();
        assert!(
            shown.contains("aws_access_key_id of profile [bedrock]")
                && shown.contains("credentials"),
            "{shown}"
        );
        assert!(!shown.contains("AKID"), "{shown}");
        // Keys above the first section belong to no profile, `default` included.
        let outside = dir.path().join("outside");
        std::fs::write(
            &outside,
            "aws_access_key_id = A\naws_secret_access_key = s\n",
        )
        .unwrap();
        assert!(AwsKeys::from_file(&outside, "default").is_err());
        // A temporary key without its token, a key with a space: refused.
        let err = AwsKeys::from_file(&file, "temporary")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("aws_session_token of profile [temporary]"),
            "{err}"
        );
        let err = AwsKeys::from_file(&file, "spaced").unwrap_err();
        assert!(
            matches!(err, ProviderConfigError::InvalidSecret { .. }),
            "{err}"
        );
        assert!(!err.to_string().contains("SPACE"), "{err}");
    }

    #[test]
    fn comments_after_values_need_whitespace_before_them() {
        assert_eq!(without_comment("abc # note"), "abc");
        assert_eq!(without_comment("abc\t;note"), "abc");
        assert_eq!(without_comment("a#b;c"), "a#b;c");
        assert_eq!(without_comment("#abc"), "#abc");
        assert_eq!(without_comment(""), "");
    }
}
