//! [`PolicyEngine`]: the one wasmtime `Engine` and `Linker` of the process, the
//! epoch ticker that enforces deadlines, the compiled-artifact cache, the
//! counters, and loading (compile, cache, type-check) of policies.

use std::sync::Arc;
use std::time::Instant;

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, ProfilingStrategy,
};

use crate::config::EngineConfig;

use super::bindings;
use super::cache::ArtifactCache;
use super::counters::{CounterStore, InMemoryCounters};
use super::error::{EngineError, LoadError};
use super::limits::MAX_TABLE_ELEMENTS;
use super::loaded::{LoadInfo, Policy};
use super::settings::PolicySpec;
use super::store::StoreState;
use super::ticker::{EpochTicker, Ticking};

/// The contract version policies are built against (the WIT package).
pub const CONTRACT_VERSION: &str = "switchyard:policy@0.1.0";

/// The world every policy is type-checked against.
pub const WORLD: &str = "switchyard:policy/policy@0.1.0";

/// The policy engine. Create one per process and clone it freely; it stays alive
/// (with its epoch ticker thread) until the last clone and the last policy
/// loaded by it are dropped.
#[derive(Clone)]
pub struct PolicyEngine {
    inner: Arc<EngineInner>,
}

struct EngineInner {
    engine: Engine,
    linker: Linker<StoreState>,
    cache: Option<ArtifactCache>,
    counters: Arc<dyn CounterStore>,
    max_memory_bytes: u64,
    ticker: EpochTicker,
}

impl PolicyEngine {
    /// An engine with the pooling allocator sized from `[engine]` and the
    /// in-memory counter store.
    pub fn new(config: &EngineConfig) -> Result<PolicyEngine, EngineError> {
        PolicyEngine::with_counters(config, Arc::new(InMemoryCounters::default()))
    }

    /// Like [`PolicyEngine::new`], with another counter store.
    pub fn with_counters(
        config: &EngineConfig,
        counters: Arc<dyn CounterStore>,
    ) -> Result<PolicyEngine, EngineError> {
        let instances = config.max_instances.max(1);
        let max_memory_bytes = config.max_memory_mib.max(1).saturating_mul(1 << 20);
        let slot = usize::try_from(max_memory_bytes).map_err(|_| {
            EngineError::new("[engine] max_memory_mib", "too large for this platform")
        })?;

        let mut pool = PoolingAllocationConfig::new();
        pool.total_component_instances(instances)
            // Components hold several core instances (the program, WASI shims,
            // and for Python or JS guests more), usually one or two memories.
            .total_core_instances(instances.saturating_mul(16))
            .total_memories(instances.saturating_mul(2))
            .total_tables(instances.saturating_mul(4))
            .total_stacks(instances)
            .total_gc_heaps(instances)
            .max_memories_per_module(2)
            .max_tables_per_module(4)
            .table_elements(MAX_TABLE_ELEMENTS)
            .max_memory_size(slot);

        let mut wasm = Config::new();
        wasm.wasm_component_model(true)
            .epoch_interruption(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        if config.perf_map {
            wasm.profiler(ProfilingStrategy::PerfMap);
        }
        if max_memory_bytes > 4 << 30 {
            wasm.memory_reservation(max_memory_bytes);
        }
        let engine = Engine::new(&wasm)
            .map_err(|e| EngineError::new("creating the WebAssembly engine", e))?;

        let mut linker = Linker::<StoreState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| EngineError::new("linking WASI", e))?;
        bindings::Policy::add_to_linker::<StoreState, HasSelf<StoreState>>(&mut linker, |state| {
            state
        })
        .map_err(|e| EngineError::new("linking the host interface", e))?;

        let cache = config
            .cache_dir
            .clone()
            .map(|dir| ArtifactCache::new(dir, &engine));
        let ticker = EpochTicker::start(engine.clone());
        Ok(PolicyEngine {
            inner: Arc::new(EngineInner {
                engine,
                linker,
                cache,
                counters,
                max_memory_bytes,
                ticker,
            }),
        })
    }

    /// The counters policies read and write; they outlive reloads.
    pub fn counters(&self) -> &Arc<dyn CounterStore> {
        &self.inner.counters
    }

    /// The wasmtime engine.
    pub fn wasmtime(&self) -> &Engine {
        &self.inner.engine
    }

    /// Keeps the epoch advancing (so deadlines fire) while the guard lives;
    /// held across every call into guest code.
    pub(super) fn ticking(&self) -> Ticking<'_> {
        self.inner.ticker.ticking()
    }

    /// The on-disk cache, if enabled.
    pub fn cache(&self) -> Option<&ArtifactCache> {
        self.inner.cache.as_ref()
    }

    /// Largest linear memory an instance can have (the pooling slot size).
    pub fn max_memory_bytes(&self) -> u64 {
        self.inner.max_memory_bytes
    }

    /// Compiles (or loads from the cache) and type-checks a policy against the
    /// world. Blocking and CPU-heavy: call it from `spawn_blocking`, never on the
    /// request path.
    pub fn load(&self, spec: PolicySpec) -> Result<Arc<Policy>, LoadError> {
        check_component_bytes(&spec.wasm)?;
        let started = Instant::now();
        let sha256 = hex::encode(Sha256::digest(&spec.wasm));
        let cached = self
            .inner
            .cache
            .as_ref()
            .and_then(|cache| cache.load(&self.inner.engine, &sha256));
        let from_cache = cached.is_some();
        let component = match cached {
            Some(component) => component,
            None => {
                let component = Component::new(&self.inner.engine, &spec.wasm)
                    .map_err(|e| LoadError::Compile(format!("{e:#}")))?;
                if let Some(cache) = &self.inner.cache {
                    cache.store(&sha256, &component);
                }
                component
            }
        };
        let pre = self
            .inner
            .linker
            .instantiate_pre(&component)
            .map_err(|e| LoadError::Imports(format!("{e:#}")))?;
        let pre =
            bindings::PolicyPre::new(pre).map_err(|e| LoadError::Exports(format!("{e:#}")))?;
        let info = LoadInfo {
            size_bytes: spec.wasm.len(),
            elapsed: started.elapsed(),
            from_cache,
        };
        Ok(Policy::new(self.clone(), spec, sha256, pre, info))
    }
}

impl std::fmt::Debug for PolicyEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyEngine")
            .field("cache", &self.inner.cache)
            .field("max_memory_bytes", &self.inner.max_memory_bytes)
            .finish_non_exhaustive()
    }
}

/// Refuses bytes that cannot be a component before handing them to the compiler,
/// so the error says what the file is. WAT text is let through (tests write
/// small contract cases inline).
fn check_component_bytes(bytes: &[u8]) -> Result<(), LoadError> {
    if bytes.is_empty() {
        return Err(LoadError::NotAComponent("the file is empty".to_owned()));
    }
    if let Some(header) = bytes.strip_prefix(b"\0asm") {
        // After the magic: a 16-bit version and a 16-bit layer (0: core module, 1: component).
        return match header.get(2..4) {
            Some([1, 0]) => Ok(()),
            Some([0, 0]) => Err(LoadError::NotAComponent(
                "this is a core WebAssembly module; a policy must be a component \
                 (build for wasm32-wasip2, or wrap the module with `wasm-tools component new`)"
                    .to_owned(),
            )),
            _ => Err(LoadError::NotAComponent(
                "unknown WebAssembly layer".to_owned(),
            )),
        };
    }
    let text = std::str::from_utf8(bytes).unwrap_or("");
    let start = text.trim_start();
    if start.starts_with('(') || start.starts_with(";;") {
        return Ok(());
    }
    Err(LoadError::NotAComponent(
        "the file does not start with the WebAssembly magic bytes (\\0asm)".to_owned(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_components_are_named() {
        let err = |b: &[u8]| check_component_bytes(b).unwrap_err().to_string();
        assert!(err(b"").contains("empty"));
        assert!(err(b"\x7fELF\x02\x01").contains("magic bytes"));
        assert!(err(b"\0asm\x01\0\0\0").contains("core WebAssembly module"));
        assert!(check_component_bytes(b"\0asm\x0d\0\x01\0").is_ok());
        assert!(check_component_bytes(b"  (component)").is_ok());
    }
}
