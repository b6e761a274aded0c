//! AWS credentials for SigV4, from the standard `AWS_*` environment variables
//! or a profile of an AWS shared credentials file (`aws_credentials_file`), read
//! as the AWS SDKs read it.

use std::fmt;
use std::path::Path;

use super::ProviderConfigError;
use super::secret::{Secret, SecretOrigin, read_credential_file};

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

#[cfg(test)]
mod tests {
    use super::*;

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
