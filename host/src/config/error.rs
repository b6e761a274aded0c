//! Config errors that name the file, line and key.

use std::fmt;
use std::path::PathBuf;

/// Why a config could not be loaded. Never retryable without editing the file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The text is not valid TOML or does not have the config's shape.
    #[error("{location}: {message}")]
    Parse {
        /// Where the problem is.
        location: Location,
        /// What is wrong.
        message: String,
    },
    /// The config is well-formed but inconsistent (unknown policy, duplicate name…).
    #[error("{location}: {key}: {message}")]
    Invalid {
        /// Where the problem is.
        location: Location,
        /// The key at fault, e.g. `upstream "azure-eastus".endpoint`.
        key: String,
        /// What is wrong.
        message: String,
    },
}

/// A position in a config file: the file (when known) and a 1-based line.
#[derive(Debug, Clone)]
pub struct Location {
    /// The config file, when the text came from one.
    pub file: Option<PathBuf>,
    /// 1-based line; 0 when unknown.
    pub line: usize,
    /// 1-based column; 0 when unknown.
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.file {
            Some(file) => write!(f, "{}", file.display())?,
            None => f.write_str("<config>")?,
        }
        if self.line > 0 {
            write!(f, ":{}", self.line)?;
            if self.column > 0 {
                write!(f, ":{}", self.column)?;
            }
        }
        Ok(())
    }
}
