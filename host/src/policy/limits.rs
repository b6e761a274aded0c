//! Per-instance resource limits: a memory cap across all of an instance's linear
//! memories and a table size cap. A refused growth is remembered so that the
//! trap that usually follows (a Rust guest aborts when allocation fails) is
//! classified as a `memory` failure.

use wasmtime::ResourceLimiter;

/// Largest table any policy instance may have, in elements.
pub const MAX_TABLE_ELEMENTS: usize = 100_000;
/// Most core instances, memories and tables one component instance may create.
const MAX_OBJECTS: usize = 1_000;

/// The limiter kept in each instance's store data.
#[derive(Debug)]
pub struct Limits {
    memory_limit: usize,
    memory_used: usize,
    memory_refused: bool,
}

impl Limits {
    /// Limits for one instance with a memory cap in bytes.
    pub fn new(memory_limit_bytes: u64) -> Limits {
        Limits {
            memory_limit: usize::try_from(memory_limit_bytes).unwrap_or(usize::MAX),
            memory_used: 0,
            memory_refused: false,
        }
    }

    /// Whether a memory growth was refused since the last [`Limits::reset_refusal`].
    pub fn memory_refused(&self) -> bool {
        self.memory_refused
    }

    /// Forgets an earlier refusal (called before every guest call).
    pub fn reset_refusal(&mut self) {
        self.memory_refused = false;
    }
}

impl ResourceLimiter for Limits {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let after = self
            .memory_used
            .saturating_sub(current)
            .saturating_add(desired);
        if after > self.memory_limit {
            self.memory_refused = true;
            return Ok(false);
        }
        self.memory_used = after;
        Ok(true)
    }

    fn memory_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        // The pooling allocator's slot is smaller than asked: also a memory failure.
        self.memory_refused = true;
        Ok(())
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }

    fn instances(&self) -> usize {
        MAX_OBJECTS
    }

    fn tables(&self) -> usize {
        MAX_OBJECTS
    }

    fn memories(&self) -> usize {
        MAX_OBJECTS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_cap_counts_all_memories() {
        let mut limits = Limits::new(100);
        assert!(limits.memory_growing(0, 60, None).unwrap());
        assert!(limits.memory_growing(0, 40, None).unwrap());
        assert!(!limits.memory_refused());
        assert!(!limits.memory_growing(60, 61, None).unwrap());
        assert!(limits.memory_refused());
        assert_eq!(limits.memory_used, 100);
        limits.reset_refusal();
        assert!(!limits.memory_refused());
    }

    #[test]
    fn tables_are_capped() {
        let mut limits = Limits::new(0);
        assert!(limits.table_growing(0, MAX_TABLE_ELEMENTS, None).unwrap());
        assert!(
            !limits
                .table_growing(0, MAX_TABLE_ELEMENTS + 1, None)
                .unwrap()
        );
    }
}
