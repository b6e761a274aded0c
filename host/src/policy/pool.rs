//! The warm instances of one policy version: a lock-free queue of idle
//! instances, each in its own `Store`, recycled after a number of uses.

use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_queue::ArrayQueue;
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

/// Idle instances of one policy version. `None` queue: every call gets a fresh
/// instance (per-request isolation, or a pool size of 0).
pub struct InstancePool {
    idle: Option<ArrayQueue<Instance>>,
    max_uses: u64,
    created: AtomicU64,
    recycled: AtomicU64,
    discarded: AtomicU64,
}

impl InstancePool {
    /// A pool keeping at most `size` idle instances, each used at most `max_uses` times.
    pub fn new(size: usize, max_uses: u64) -> InstancePool {
        InstancePool {
            idle: (size > 0).then(|| ArrayQueue::new(size)),
            max_uses: max_uses.max(1),
            created: AtomicU64::new(0),
            recycled: AtomicU64::new(0),
            discarded: AtomicU64::new(0),
        }
    }

    /// An idle instance, if one is warm.
    pub fn take(&self) -> Option<Instance> {
        self.idle.as_ref()?.pop()
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
        if let Some(idle) = &self.idle {
            // A full queue hands the instance back; dropping it frees its slot.
            let _ = idle.push(instance);
        }
    }

    /// Current counts.
    pub fn stats(&self) -> PoolStats {
        PoolStats {
            idle: self.idle.as_ref().map_or(0, ArrayQueue::len),
            created: self.created.load(Ordering::Relaxed),
            recycled: self.recycled.load(Ordering::Relaxed),
            discarded: self.discarded.load(Ordering::Relaxed),
        }
    }
}
