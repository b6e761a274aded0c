//! Policy counters (`counter-add`, `counter-get`): named `s64` values that belong
//! to one policy, start at 0 and survive reloads because the engine owns them.
//!
//! The store is behind [`CounterStore`] so that a shared store (for several
//! gateway replicas) can replace the in-memory one later.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

/// Longest counter key a policy may use, in bytes.
pub const MAX_KEY_BYTES: usize = 256;
/// Most distinct counters one policy may create.
pub const MAX_KEYS_PER_POLICY: usize = 10_000;

/// Why a counter update was refused. The guest call traps with this message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CounterError {
    /// The key is longer than [`MAX_KEY_BYTES`].
    #[error("counter key of {0} bytes is longer than {MAX_KEY_BYTES}")]
    KeyTooLong(usize),
    /// The policy already has [`MAX_KEYS_PER_POLICY`] counters.
    #[error("the policy already has {MAX_KEYS_PER_POLICY} counters")]
    TooManyKeys,
}

/// Where counters live. Counters are namespaced by policy name: two policies
/// never see each other's counters.
pub trait CounterStore: Send + Sync + 'static {
    /// Adds `delta` (saturating) to `policy`'s counter `key`; returns the new value.
    fn add(&self, policy: &str, key: &str, delta: i64) -> Result<i64, CounterError>;
    /// Reads `policy`'s counter `key`; 0 when it was never written.
    fn get(&self, policy: &str, key: &str) -> i64;
}

/// One policy's counters.
type Namespace = Arc<Mutex<HashMap<String, i64>>>;

/// Counters in this process's memory.
#[derive(Debug, Default)]
pub struct InMemoryCounters {
    policies: RwLock<HashMap<String, Namespace>>,
}

impl InMemoryCounters {
    fn namespace(&self, policy: &str) -> Namespace {
        if let Some(ns) = self
            .policies
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(policy)
        {
            return ns.clone();
        }
        let mut policies = self.policies.write().unwrap_or_else(|e| e.into_inner());
        policies.entry(policy.to_owned()).or_default().clone()
    }
}

impl CounterStore for InMemoryCounters {
    fn add(&self, policy: &str, key: &str, delta: i64) -> Result<i64, CounterError> {
        if key.len() > MAX_KEY_BYTES {
            return Err(CounterError::KeyTooLong(key.len()));
        }
        let ns = self.namespace(policy);
        let mut counters = ns.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(value) = counters.get_mut(key) {
            *value = value.saturating_add(delta);
            return Ok(*value);
        }
        if counters.len() >= MAX_KEYS_PER_POLICY {
            return Err(CounterError::TooManyKeys);
        }
        counters.insert(key.to_owned(), delta);
        Ok(delta)
    }

    fn get(&self, policy: &str, key: &str) -> i64 {
        let policies = self.policies.read().unwrap_or_else(|e| e.into_inner());
        let Some(ns) = policies.get(policy) else {
            return 0;
        };
        let counters = ns.lock().unwrap_or_else(|e| e.into_inner());
        counters.get(key).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_namespaced_and_saturate() {
        let store = InMemoryCounters::default();
        assert_eq!(store.add("a", "k", 2).unwrap(), 2);
        assert_eq!(store.add("a", "k", 3).unwrap(), 5);
        assert_eq!(store.get("b", "k"), 0);
        assert_eq!(store.add("b", "k", i64::MAX).unwrap(), i64::MAX);
        assert_eq!(store.add("b", "k", 1).unwrap(), i64::MAX);
        assert_eq!(store.get("a", "k"), 5);
    }

    #[test]
    fn counters_are_bounded() {
        let store = InMemoryCounters::default();
        let long = "x".repeat(MAX_KEY_BYTES + 1);
        assert_eq!(
            store.add("a", &long, 1),
            Err(CounterError::KeyTooLong(MAX_KEY_BYTES + 1))
        );
        for i in 0..MAX_KEYS_PER_POLICY {
            store.add("a", &i.to_string(), 1).unwrap();
        }
        assert_eq!(
            store.add("a", "one-more", 1),
            Err(CounterError::TooManyKeys)
        );
        assert_eq!(store.add("a", "0", 1).unwrap(), 2);
        assert_eq!(store.add("b", "other", 1).unwrap(), 1);
    }
}
