//! [`Policy`]: one loaded policy version, its warm instances, and the guarded
//! call path (deadline, memory cap, classification, validation).

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use wasmtime::{Store, Trap, UpdateDeadline, WasmBacktrace};

use crate::config::Isolation;

use super::bindings::PolicyPre;
use super::catalog::Catalog;
use super::counters::CounterStore;
use super::engine::PolicyEngine;
use super::error::{PolicyError, PolicyErrorKind};
use super::log_rate::LogRate;
use super::pool::{Instance, InstancePool, PoolStats};
use super::request;
use super::settings::{PolicySettings, PolicySpec};
use super::store::{StoreState, truncate};
use super::types::{Candidate, Decision, Outcome, Request};
use super::validate::validate_decision;

/// Longest failure message kept, in bytes.
const MAX_ERROR_BYTES: usize = 1024;

/// How a policy was loaded, for `policy check` and the admin API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadInfo {
    /// Size of the component in bytes.
    pub size_bytes: usize,
    /// Time spent compiling (or loading from the cache) and type-checking.
    pub elapsed: Duration,
    /// Whether the compiled code came from the on-disk cache.
    pub from_cache: bool,
}

/// The compiled, type-checked component, shared by every [`Policy`] made from
/// it with [`Policy::with_config`].
struct Compiled {
    engine: PolicyEngine,
    pre: PolicyPre<StoreState>,
    hash: String,
    info: LoadInfo,
}

/// A loaded policy version: name, content hash, settings, config and a pool of
/// warm instances. Share it as `Arc<Policy>`; calls may run concurrently.
pub struct Policy {
    name: Arc<str>,
    settings: PolicySettings,
    config: Arc<BTreeMap<String, String>>,
    memory_limit: u64,
    compiled: Arc<Compiled>,
    /// Where `counter-add` and `counter-get` go: the engine's live counters,
    /// or a scratch store for checks ([`Policy::with_counters`]).
    counters: Arc<dyn CounterStore>,
    pool: InstancePool,
    /// Calls of this version running at once: half the cores (at least one), so
    /// a policy that spins to its deadline on every call can take at most half
    /// the CPU, and other routes' calls and the gateway's I/O keep the rest.
    running: tokio::sync::Semaphore,
    /// Set once the policy said its `observe` does nothing (`ignore-outcomes`).
    ignores_outcomes: Arc<AtomicBool>,
    /// Its guest log lines per second, across its instances.
    log_rate: Arc<LogRate>,
}

impl Policy {
    pub(crate) fn new(
        engine: PolicyEngine,
        spec: PolicySpec,
        hash: String,
        pre: PolicyPre<StoreState>,
        info: LoadInfo,
    ) -> Arc<Policy> {
        let compiled = Arc::new(Compiled {
            engine,
            pre,
            hash,
            info,
        });
        let counters = compiled.engine.counters().clone();
        Policy::build(
            spec.name.into(),
            spec.settings,
            Arc::new(spec.config),
            compiled,
            counters,
        )
    }

    fn build(
        name: Arc<str>,
        settings: PolicySettings,
        config: Arc<BTreeMap<String, String>>,
        compiled: Arc<Compiled>,
        counters: Arc<dyn CounterStore>,
    ) -> Arc<Policy> {
        let pool_size = match settings.isolation {
            Isolation::Pooled => settings.pool_size,
            Isolation::PerRequest => 0,
        };
        let memory_limit = settings
            .memory_limit_bytes
            .min(compiled.engine.max_memory_bytes());
        let slots = std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1));
        Arc::new(Policy {
            pool: InstancePool::new(pool_size, settings.max_uses),
            running: tokio::sync::Semaphore::new(slots),
            ignores_outcomes: Arc::new(AtomicBool::new(false)),
            log_rate: Arc::default(),
            name,
            settings,
            config,
            memory_limit,
            compiled,
            counters,
        })
    }

    /// The same compiled policy with another config and a pool of its own (used by
    /// `policy test`, where each case may set its config).
    pub fn with_config(&self, config: BTreeMap<String, String>) -> Arc<Policy> {
        self.with_settings(self.settings.clone(), config)
    }

    /// The same compiled policy with other settings and config, and a pool of
    /// its own (a reload that changed only the settings reuses the compiled code).
    pub fn with_settings(
        &self,
        settings: PolicySettings,
        config: BTreeMap<String, String>,
    ) -> Arc<Policy> {
        self.with_counters(settings, config, self.counters.clone())
    }

    /// The same compiled policy with other settings, config and counters, and
    /// a pool of its own. A reload's canary and recorded cases run on one with
    /// scratch counters, so that a check neither reads nor moves the live ones.
    pub fn with_counters(
        &self,
        settings: PolicySettings,
        config: BTreeMap<String, String>,
        counters: Arc<dyn CounterStore>,
    ) -> Arc<Policy> {
        Policy::build(
            self.name.clone(),
            settings,
            Arc::new(config),
            self.compiled.clone(),
            counters,
        )
    }

    /// The policy's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The policy's name, shared.
    pub fn name_arc(&self) -> &Arc<str> {
        &self.name
    }

    /// SHA-256 of the component, lower-case hex.
    pub fn hash(&self) -> &str {
        &self.compiled.hash
    }

    /// The first 8 hex characters of [`Policy::hash`] (as in `x-switchyard-policy`).
    pub fn hash8(&self) -> &str {
        &self.compiled.hash[..8]
    }

    /// Limits and behaviour.
    pub fn settings(&self) -> &PolicySettings {
        &self.settings
    }

    /// The policy's own config table.
    pub fn config(&self) -> &BTreeMap<String, String> {
        &self.config
    }

    /// How the policy was loaded.
    pub fn load_info(&self) -> &LoadInfo {
        &self.compiled.info
    }

    /// Instance pool counts.
    pub fn pool_stats(&self) -> PoolStats {
        self.pool.stats()
    }

    /// Asks the policy how to serve `req`. `candidates` are numbered against
    /// `catalog` (their offers). Runs under the policy's deadline and memory
    /// cap, then validates the decision against `candidates`. Must be called
    /// inside a Tokio runtime with time enabled; a looping policy yields to the
    /// runtime every millisecond until its deadline.
    pub async fn decide(
        &self,
        req: &Arc<Request>,
        catalog: &Arc<Catalog>,
        candidates: &[Candidate],
    ) -> Result<Decision, PolicyError> {
        self.decide_indexed(req, catalog, candidates, Instant::now())
            .await
            .map(|(decision, _)| decision)
    }

    /// [`Policy::decide`] for a call that began at `started` (the deadline
    /// runs from then), also returning for a route the position in
    /// `candidates` of each target, in plan order.
    pub(crate) async fn decide_indexed(
        &self,
        req: &Arc<Request>,
        catalog: &Arc<Catalog>,
        candidates: &[Candidate],
        started: Instant,
    ) -> Result<(Decision, Vec<usize>), PolicyError> {
        let deadline = started + self.settings.deadline;
        let _running = self.start_call(deadline).await?;
        let _ticking = self.compiled.engine.ticking();
        let mut instance = self.checkout_for(catalog, deadline).await?;
        instance.store.data_mut().set_call(req.clone(), candidates);
        instance.wire.clear();
        instance.wire.extend(candidates.iter().map(Candidate::wire));
        let called = {
            // Pinned where it is made: a wasmtime call's future is large.
            let call = std::pin::pin!(instance.exports.call_decide(
                &mut instance.store,
                request::handle(),
                &instance.wire
            ));
            run_until(deadline, call).await
        };
        instance.store.data_mut().end_call();
        let decision = match called {
            Ok(decision) => decision,
            Err(failure) => return Err(self.fail(instance, failure)),
        };
        match validate_decision(&decision, candidates) {
            Ok(positions) => {
                self.pool.give_back(instance);
                Ok((decision, positions))
            }
            Err(message) => {
                self.pool.note_discarded();
                Err(self.error(PolicyErrorKind::InvalidDecision, message))
            }
        }
    }

    /// Whether the policy wants outcomes: false once it called
    /// `ignore-outcomes`, after which [`Policy::observe`] calls nothing.
    pub fn observes(&self) -> bool {
        !self.ignores_outcomes.load(Ordering::Relaxed)
    }

    /// Reports a finished request to the policy, under the same limits as `decide`.
    /// It takes no call slot: the one observe worker already runs these calls
    /// one at a time, and they must not delay `decide` on the request path.
    /// Does nothing for a policy that ignores outcomes.
    pub async fn observe(&self, outcome: &Outcome) -> Result<(), PolicyError> {
        if !self.observes() {
            return Ok(());
        }
        let deadline = Instant::now() + self.settings.deadline;
        let _ticking = self.compiled.engine.ticking();
        let mut instance = self.checkout(deadline).await?;
        let called = {
            let call = std::pin::pin!(instance.exports.call_observe(&mut instance.store, outcome));
            run_until(deadline, call).await
        };
        match called {
            Ok(()) => {
                self.pool.give_back(instance);
                Ok(())
            }
            Err(failure) => Err(self.fail(instance, failure)),
        }
    }

    /// Waits for a free call slot; a call still waiting at its deadline fails
    /// as a `deadline` error (an overloaded policy sheds its own calls).
    async fn start_call(
        &self,
        deadline: Instant,
    ) -> Result<tokio::sync::SemaphorePermit<'_>, PolicyError> {
        // The common case, a free slot, needs no timer.
        if let Ok(permit) = self.running.try_acquire() {
            return Ok(permit);
        }
        match tokio::time::timeout_at(deadline.into(), self.running.acquire()).await {
            Ok(permit) => Ok(permit.expect("the semaphore is never closed")),
            Err(_) => Err(self.error(
                PolicyErrorKind::Deadline,
                format!(
                    "waited past its deadline of {} ms for a free call slot \
                     (its share of the cores is busy with it)",
                    self.settings.deadline.as_millis()
                ),
            )),
        }
    }

    /// [`Policy::checkout`], for an instance that serves `catalog`: a pooled
    /// instance made for another catalog is retired (its guest may have kept
    /// offers by id, and ids mean other offers there).
    async fn checkout_for(
        &self,
        catalog: &Arc<Catalog>,
        deadline: Instant,
    ) -> Result<Instance, PolicyError> {
        loop {
            let mut instance = self.checkout(deadline).await?;
            let state = instance.store.data_mut();
            match &state.catalog {
                Some(bound) if !Arc::ptr_eq(bound, catalog) => {
                    self.pool.note_discarded();
                    continue;
                }
                Some(_) => {}
                None => state.catalog = Some(catalog.clone()),
            }
            return Ok(instance);
        }
    }

    /// A warm instance armed for a call ending at `deadline`, or a new one.
    async fn checkout(&self, deadline: Instant) -> Result<Instance, PolicyError> {
        if let Some(mut instance) = self.pool.take() {
            arm(&mut instance.store, deadline);
            return Ok(instance);
        }
        let state = StoreState::new(
            self.name.clone(),
            self.config.clone(),
            self.counters.clone(),
            self.memory_limit,
            self.ignores_outcomes.clone(),
            self.log_rate.clone(),
        );
        let mut store = Store::new(self.compiled.engine.wasmtime(), state);
        store.limiter(|state| &mut state.limits);
        store.epoch_deadline_callback(|ctx| {
            if Instant::now() >= ctx.data().deadline {
                Ok(UpdateDeadline::Interrupt)
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });
        arm(&mut store, deadline);
        self.pool.note_created();
        let instantiated = {
            let instantiate = std::pin::pin!(self.compiled.pre.instantiate_async(&mut store));
            run_until(deadline, instantiate).await
        };
        match instantiated {
            Ok(exports) => Ok(Instance {
                store,
                exports,
                uses: 0,
                wire: Vec::new(),
            }),
            Err(failure) => {
                let err = self.classify(&store, failure, "instantiating: ");
                self.pool.note_discarded();
                Err(err)
            }
        }
    }

    /// Classifies a failed call; the instance is dropped.
    fn fail(&self, instance: Instance, failure: CallFailure) -> PolicyError {
        self.pool.note_discarded();
        self.classify(&instance.store, failure, "")
    }

    fn classify(
        &self,
        store: &Store<StoreState>,
        failure: CallFailure,
        prefix: &str,
    ) -> PolicyError {
        let deadline_ms = self.settings.deadline.as_millis();
        let err = match failure {
            CallFailure::TimedOut => {
                return self.error(
                    PolicyErrorKind::Deadline,
                    format!("{prefix}ran past its deadline of {deadline_ms} ms while waiting on the host"),
                );
            }
            CallFailure::Wasm(err) => err,
        };
        if err.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
            return self.error(
                PolicyErrorKind::Deadline,
                format!("{prefix}ran past its deadline of {deadline_ms} ms"),
            );
        }
        let mut message = format!("{prefix}{}", err.root_cause());
        if let Some(frame) = err
            .downcast_ref::<WasmBacktrace>()
            .and_then(|bt| bt.frames().iter().find_map(|f| f.func_name()))
        {
            message.push_str(&format!(" in {frame}"));
        }
        let state = store.data();
        if let Some(line) = state.output.last_line() {
            message.push_str(&format!("; guest output: {line}"));
        }
        if state.limits.memory_refused() {
            let limit_mib = self.memory_limit as f64 / f64::from(1 << 20);
            return self.error(
                PolicyErrorKind::Memory,
                format!("exceeded its memory limit of {limit_mib} MiB ({message})"),
            );
        }
        self.error(PolicyErrorKind::Trap, message)
    }

    fn error(&self, kind: PolicyErrorKind, message: String) -> PolicyError {
        PolicyError {
            policy: self.name.clone(),
            kind,
            message: truncate(&message, MAX_ERROR_BYTES).to_owned(),
        }
    }
}

impl fmt::Debug for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Policy")
            .field("name", &self.name)
            .field("hash", &self.compiled.hash)
            .field("settings", &self.settings)
            .field("config_keys", &self.config.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// Prepares a store for a call ending at `deadline`.
fn arm(store: &mut Store<StoreState>, deadline: Instant) {
    let state = store.data_mut();
    state.deadline = deadline;
    state.limits.reset_refusal();
    state.reset_log_budget();
    state.output.clear();
    store.set_epoch_deadline(1);
}

/// Why a guest call did not return a value.
enum CallFailure {
    /// The guest trapped or a host import failed.
    Wasm(wasmtime::Error),
    /// The deadline passed while the guest waited on the host: epoch
    /// interruption only fires while guest code runs, and a guest can wait in
    /// WASI (a sleep is a `wasi:io/poll` on a monotonic-clock pollable).
    TimedOut,
}

/// Runs a guest call or an instantiation, giving up at `deadline` even when it
/// waits on the host. The future is dropped there, and the instance with it.
/// Only a call still pending after its first poll (a guest that ran past an
/// epoch tick and yielded, or one waiting on the host) arms a timer.
async fn run_until<T>(
    deadline: Instant,
    call: Pin<&mut impl Future<Output = wasmtime::Result<T>>>,
) -> Result<T, CallFailure> {
    match crate::deadline::within(deadline.into(), call).await {
        Some(result) => result.map_err(CallFailure::Wasm),
        None => Err(CallFailure::TimedOut),
    }
}
