//! Typed errors of the policy engine: setting it up, loading a policy, and a
//! policy failing a call.

use std::fmt;
use std::sync::Arc;

/// The engine could not be created (bad `[engine]` settings, or the pooling
/// allocator could not reserve its memory).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct EngineError {
    /// What went wrong, as wasmtime reported it.
    pub message: String,
}

impl EngineError {
    pub(crate) fn new(context: &str, err: impl fmt::Display) -> Self {
        EngineError {
            message: format!("{context}: {err:#}"),
        }
    }
}

/// A policy component could not be loaded. None of these are retryable without
/// changing the file.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The policy file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The bytes are not a WebAssembly component (a core module, or not wasm at all).
    #[error("not a WebAssembly component: {0}")]
    NotAComponent(String),
    /// The component is malformed or uses features the engine does not support.
    #[error("the component does not compile: {0}")]
    Compile(String),
    /// The component's imports cannot be satisfied by the host (wrong contract
    /// version, or it imports something the host does not offer).
    #[error("the component does not target world `switchyard:policy/policy@0.1.0`: {0}")]
    Imports(String),
    /// The component lacks an export of the world or exports it with another type.
    #[error("the component does not export world `switchyard:policy/policy@0.1.0`: {0}")]
    Exports(String),
}

/// How a policy call failed; the label value of `switchyard_policy_errors_total{kind}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PolicyErrorKind {
    /// The guest trapped (panic, `unreachable`, stack overflow, failed instantiation…).
    Trap,
    /// The call ran past its deadline and was interrupted.
    Deadline,
    /// The guest asked for more memory than its cap and then failed.
    Memory,
    /// The guest returned a decision the host refuses (unknown or duplicate target,
    /// bad reject status, oversized strings…).
    InvalidDecision,
}

impl PolicyErrorKind {
    /// Every kind, for pre-registering metric series.
    pub const ALL: [PolicyErrorKind; 4] = [
        PolicyErrorKind::Trap,
        PolicyErrorKind::Deadline,
        PolicyErrorKind::Memory,
        PolicyErrorKind::InvalidDecision,
    ];

    /// The metric label value: `trap`, `deadline`, `memory` or `invalid-decision`.
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyErrorKind::Trap => "trap",
            PolicyErrorKind::Deadline => "deadline",
            PolicyErrorKind::Memory => "memory",
            PolicyErrorKind::InvalidDecision => "invalid-decision",
        }
    }
}

impl fmt::Display for PolicyErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A policy call (`decide` or `observe`) failed. The instance it ran on has been
/// discarded; the next call gets a healthy one.
#[derive(Debug, Clone, thiserror::Error)]
#[error("policy {policy:?} failed ({kind}): {message}")]
pub struct PolicyError {
    /// The policy's name.
    pub policy: Arc<str>,
    /// The failure class.
    pub kind: PolicyErrorKind,
    /// What happened, for logs and `policy eval`.
    pub message: String,
}
