//! The data of one instance's `Store`: the policy's identity and config, its
//! limits and deadline, a deny-by-default WASI context, the request and catalog
//! of the running call, and the host imports (`log`, `config`, `now-ms`,
//! counters, `offer-of`, `ignore-outcomes`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxView, WasiView};

use super::bindings::switchyard::policy::{host, types};
use super::catalog::Catalog;
use super::counters::CounterStore;
use super::limits::Limits;
use super::log_rate::{Admit, LogRate, MAX_LOG_LINES_PER_SECOND};
use super::request::Request;
use super::stdio::OutputTail;
use super::types::Candidate;

/// Longest log line a guest may write, in bytes; longer ones are cut.
pub const MAX_LOG_BYTES: usize = 1024;

/// Most `log` lines one call may write; the rest are dropped (and the drop is
/// logged once). Logging is synchronous and the epoch deadline cannot stop a
/// host call, so a guest logging in a loop must not flood the log or stall
/// the call on a slow log pipe.
pub const MAX_LOG_LINES_PER_CALL: u32 = 32;

/// Most host resources (WASI streams, pollables) one instance may hold at
/// once. The memory cap counts only the guest's own memory, so a guest that
/// never drops what it opens traps here instead of growing the host's heap
/// (wasmtime's default allows a million entries).
const MAX_TABLE_ENTRIES: usize = 10_000;

/// Store data of one policy instance.
pub struct StoreState {
    policy: Arc<str>,
    config: Arc<BTreeMap<String, String>>,
    counters: Arc<dyn CounterStore>,
    /// Memory and table limits (the store's `ResourceLimiter`).
    pub limits: Limits,
    /// When the current call must end; read by the epoch callback.
    pub deadline: Instant,
    /// What the guest printed, and the error lines it logged, in the running call.
    pub output: OutputTail,
    /// `log` lines written by the running call.
    logged: u32,
    /// The request the running `decide` call reads through its handle.
    pub(super) request: Option<Arc<Request>>,
    /// The candidates of the running `decide` call, whose live state the guest
    /// may read through the request handle.
    pub(super) candidates: Vec<Candidate>,
    /// The catalog this instance serves, fixed by its first `decide` call.
    pub(super) catalog: Option<Arc<Catalog>>,
    /// Set when the policy calls `ignore-outcomes`; shared by its instances.
    ignores_outcomes: Arc<AtomicBool>,
    /// The policy's log lines per second; shared by its instances.
    log_rate: Arc<LogRate>,
    wasi: WasiCtx,
    table: ResourceTable,
}

impl StoreState {
    /// Store data for one instance of `policy`.
    pub fn new(
        policy: Arc<str>,
        config: Arc<BTreeMap<String, String>>,
        counters: Arc<dyn CounterStore>,
        memory_limit_bytes: u64,
        ignores_outcomes: Arc<AtomicBool>,
        log_rate: Arc<LogRate>,
    ) -> StoreState {
        let output = OutputTail::default();
        StoreState {
            policy,
            config,
            counters,
            limits: Limits::new(memory_limit_bytes),
            deadline: Instant::now(),
            wasi: deny_by_default_wasi(&output),
            output,
            logged: 0,
            request: None,
            candidates: Vec::new(),
            catalog: None,
            ignores_outcomes,
            log_rate,
            table: {
                let mut table = ResourceTable::new();
                table.set_max_capacity(MAX_TABLE_ENTRIES);
                table
            },
        }
    }
}

/// WASI for guests that import it without needing it (every `wasm32-wasip2`
/// build): no preopens, environment, arguments or network; stdin closed; stdout
/// and stderr kept only as a short tail; clocks frozen at the epoch (the host's
/// `now-ms` is the only clock). Randomness stays available (hash-map seeds).
fn deny_by_default_wasi(output: &OutputTail) -> WasiCtx {
    WasiCtx::builder()
        .stdout(output.clone())
        .stderr(output.clone())
        .wall_clock(FrozenClock)
        .monotonic_clock(FrozenClock)
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .build()
}

/// A clock that always reads zero.
struct FrozenClock;

impl HostWallClock for FrozenClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

impl WasiView for StoreState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl types::Host for StoreState {}

impl StoreState {
    /// Starts a call's `log` budget afresh.
    pub(super) fn reset_log_budget(&mut self) {
        self.logged = 0;
    }
}

impl host::Host for StoreState {
    fn log(&mut self, level: host::LogLevel, message: String) {
        let policy = &*self.policy;
        self.logged = self.logged.saturating_add(1);
        let mut within_budget = self.logged <= MAX_LOG_LINES_PER_CALL;
        if within_budget || self.logged == MAX_LOG_LINES_PER_CALL + 1 {
            match self.log_rate.admit(Instant::now()) {
                Admit::No => within_budget = false,
                Admit::Yes { dropped } => {
                    if dropped > 0 {
                        tracing::warn!(
                            target: "switchyard::policy::guest",
                            policy,
                            "dropped {dropped} log lines over {MAX_LOG_LINES_PER_SECOND} a second"
                        );
                    }
                    if !within_budget {
                        tracing::warn!(
                            target: "switchyard::policy::guest",
                            policy,
                            "more than {MAX_LOG_LINES_PER_CALL} log lines in one call; dropping the rest"
                        );
                    }
                }
            }
        }
        // An error line also goes where a trap report reads the guest's last
        // words (budget or not: that tail is small and in memory). A guest
        // without stdio reports its failure this way: the JS glue logs what an
        // export threw, just before the instance traps on it.
        let is_error = level == host::LogLevel::Error;
        if !within_budget && !is_error {
            return;
        }
        // Escaped first, then cut: the line stays within the limit.
        let line = one_line(&message);
        let message = truncate(&line, MAX_LOG_BYTES);
        if is_error {
            self.output.push_line(message);
        }
        if !within_budget {
            return;
        }
        match level {
            host::LogLevel::Trace => {
                tracing::trace!(target: "switchyard::policy::guest", policy, "{message}")
            }
            host::LogLevel::Debug => {
                tracing::debug!(target: "switchyard::policy::guest", policy, "{message}")
            }
            host::LogLevel::Info => {
                tracing::info!(target: "switchyard::policy::guest", policy, "{message}")
            }
            host::LogLevel::Warn => {
                tracing::warn!(target: "switchyard::policy::guest", policy, "{message}")
            }
            host::LogLevel::Error => {
                tracing::error!(target: "switchyard::policy::guest", policy, "{message}")
            }
        }
    }

    fn config(&mut self, key: String) -> Option<String> {
        self.config.get(&key).cloned()
    }

    fn now_ms(&mut self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    }

    fn counter_add(&mut self, key: String, delta: i64) -> wasmtime::Result<i64> {
        Ok(self.counters.add(&self.policy, &key, delta)?)
    }

    fn counter_get(&mut self, key: String) -> i64 {
        self.counters.get(&self.policy, &key)
    }

    fn ignore_outcomes(&mut self) {
        self.ignores_outcomes.store(true, Ordering::Relaxed);
    }

    fn offer_of(&mut self, id: u32) -> wasmtime::Result<types::Offer> {
        match self.catalog.as_ref().and_then(|c| c.offer(id)) {
            Some(offer) => Ok(offer.clone()),
            None => Err(wasmtime::Error::msg(format!(
                "offer-of({id}): no candidate with this id was ever given to this instance"
            ))),
        }
    }
}

/// `text` with its control characters escaped (`\n` as `\\n`…), so that a
/// guest's message stays on one log line and cannot forge another.
fn one_line(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// `text` cut to at most `max` bytes on a character boundary.
pub(crate) fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_messages_stay_on_one_line() {
        assert_eq!(one_line("plain"), "plain");
        assert_eq!(
            one_line("ok\nINFO forged line\r\t"),
            "ok\\nINFO forged line\\r\\t"
        );
    }

    /// Error lines reach the trap report's tail, escaped, even past the
    /// call's log budget; other levels do not.
    #[test]
    fn logged_errors_reach_the_trap_report() {
        use host::Host as _;
        let mut state = StoreState::new(
            "p".into(),
            Arc::default(),
            Arc::new(super::super::counters::InMemoryCounters::default()),
            1 << 20,
            Arc::default(),
            Arc::default(),
        );
        state.log(host::LogLevel::Error, "Uncaught Error: one\ntwo".into());
        assert_eq!(
            state.output.last_line().as_deref(),
            Some("Uncaught Error: one\\ntwo")
        );
        for _ in 0..MAX_LOG_LINES_PER_CALL {
            state.log(host::LogLevel::Info, "chatter".into());
        }
        state.log(host::LogLevel::Warn, "a warning".into());
        state.log(host::LogLevel::Error, "Uncaught Error: late".into());
        assert_eq!(
            state.output.last_line().as_deref(),
            Some("Uncaught Error: late")
        );
    }

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("héllo", 3), "hé");
        assert_eq!(truncate("abc", 10), "abc");
    }
}
