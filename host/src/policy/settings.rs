//! What the engine needs to load one policy: its bytes, limits and config.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use crate::config::{Isolation, OnError, PolicyConfig};

use super::error::LoadError;

/// Limits and behaviour of one policy, taken from its `[[policy]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicySettings {
    /// What a failure does to the request.
    pub on_error: OnError,
    /// Wall-clock budget of one call.
    pub deadline: Duration,
    /// Linear-memory cap of one instance (all its memories together).
    pub memory_limit_bytes: u64,
    /// Whether warm instances are reused.
    pub isolation: Isolation,
    /// A pooled instance is recycled after this many calls.
    pub max_uses: u64,
    /// Most idle warm instances kept.
    pub pool_size: usize,
}

impl Default for PolicySettings {
    /// The defaults of a `[[policy]]` entry that sets nothing.
    fn default() -> Self {
        PolicySettings {
            on_error: OnError::FailClosed,
            deadline: Duration::from_millis(50),
            memory_limit_bytes: 256 << 20,
            isolation: Isolation::Pooled,
            max_uses: 10_000,
            pool_size: 16,
        }
    }
}

impl From<&PolicyConfig> for PolicySettings {
    fn from(pc: &PolicyConfig) -> Self {
        PolicySettings {
            on_error: pc.on_error,
            deadline: Duration::from_millis(pc.deadline_ms),
            memory_limit_bytes: pc.memory_limit_mib.saturating_mul(1 << 20),
            isolation: pc.isolation,
            max_uses: pc.max_uses.max(1),
            pool_size: pc.pool_size,
        }
    }
}

/// One policy to load: a name, the component bytes, its limits and its own config.
#[derive(Debug, Clone)]
pub struct PolicySpec {
    /// The policy's name (metrics, logs, counters namespace).
    pub name: String,
    /// The component, binary (or WAT text, for tests).
    pub wasm: Vec<u8>,
    /// Limits and behaviour.
    pub settings: PolicySettings,
    /// The policy's `[policy.config]` table, read by the guest with `config(key)`.
    pub config: BTreeMap<String, String>,
}

impl PolicySpec {
    /// A spec with default settings and no config, reading the component from `path`.
    pub fn from_file(name: impl Into<String>, path: &Path) -> Result<PolicySpec, LoadError> {
        let wasm = std::fs::read(path).map_err(|source| LoadError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Ok(PolicySpec {
            name: name.into(),
            wasm,
            settings: PolicySettings::default(),
            config: BTreeMap::new(),
        })
    }
}
