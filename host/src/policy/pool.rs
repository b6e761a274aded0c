//! The warm instances of one policy version: a stack of idle instances, each
//! in its own `Store`, recycled after a number of uses.
//!
//! The stack hands out the instance used most recently. Its memory, stack and
//! store are the likeliest to still be in the CPU's caches; a queue would rotate
//! through every idle instance and find each one cold.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use wasmtime::Store;

use super::bindings;
use super::store::StoreState;

/// One instantiated policy, ready to be called.
pub struct Instance {
    /// The instance's store (its memories, limits, deadline, WASI state).
    pub store: Store<StoreState>,
    /// The typed exports.
    pub exports: bindings::Policy,
    /// Calls served so far.
    pub uses: u64,
    /// The candidate list `decide` passes, kept to be refilled by the next call.
    pub wire: Vec<bindings::switchyard::policy::types::Candidate>,
}

/// How a policy's instances have been used; for tests and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PoolStats {
    /// Idle warm instances right now.
    pub idle: usize,
    /// Instances created since the policy was loaded.
    pub created: u64,
    /// Instances retired after reaching `max_uses`.
    pub recycled: u64,
    /// Instances thrown away after a failed call.
    pub discarded: u64,
}

/// Idle instances of one policy version. `None` stack: every call gets a fresh
/// instance (per-request isolation, or a pool size of 0).
pub struct InstancePool {
    /// Most recently used last. The lock is held only to push or pop.
    idle: Option<Mutex<Vec<Instance>>>,
    /// Most idle instances kept.
    size: usize,
    max_uses: u64,
    created: AtomicU64,
    recycled: AtomicU64,
    discarded: AtomicU64,
}

impl InstancePool {
    /// A pool keeping at most `size` idle instances, each used at most `max_uses` times.
    pub fn new(size: usize, max_uses: u64) -> InstancePool {
        InstancePool {
            idle: (size > 0).then(|| Mutex::new(Vec::new())),
            size,
            max_uses: max_uses.max(1),
            created: AtomicU64::new(0),
            recycled: AtomicU64::new(0),
            discarded: AtomicU64::new(0),
        }
    }

    /// The most recently used idle instance, if one is warm.
    pub fn take(&self) -> Option<Instance> {
        lock(self.idle.as_ref()?).pop()
    }

    /// Records that a new instance was created.
    pub fn note_created(&self) {
        self.created.fetch_add(1, Ordering::Relaxed);
    }

    /// Records that an instance was thrown away after a failure.
    pub fn note_discarded(&self) {
        self.discarded.fetch_add(1, Ordering::Relaxed);
    }

    /// Returns an instance after a successful call: kept warm unless it reached
    /// `max_uses` or the pool is full.
    pub fn give_back(&self, mut instance: Instance) {
        instance.uses += 1;
        if instance.uses >= self.max_uses {
            self.recycled.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let Some(idle) = &self.idle else { return };
        let mut idle = lock(idle);
        if idle.len() < self.size {
            idle.push(instance);
        } else {
            // A full stack: the instance is dropped (freeing its slot) after
            // the lock is released.
            drop(idle);
        }
    }

    /// Current counts.
    pub fn stats(&self) -> PoolStats {
        PoolStats {
            idle: self.idle.as_ref().map_or(0, |idle| lock(idle).len()),
            created: self.created.load(Ordering::Relaxed),
            recycled: self.recycled.load(Ordering::Relaxed),
            discarded: self.discarded.load(Ordering::Relaxed),
        }
    }
}

/// Locks an idle stack. Push and pop cannot leave it half-changed, so a lock
/// poisoned by a panic elsewhere is used as it is.
fn lock(idle: &Mutex<Vec<Instance>>) -> std::sync::MutexGuard<'_, Vec<Instance>> {
    idle.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
