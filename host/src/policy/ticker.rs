//! The epoch ticker: advances the engine's epoch every [`EPOCH_TICK`] while
//! guest code may run, so deadlines fire, and sleeps while none can.
//!
//! Every decide, observe and instantiation holds a [`Ticking`] guard. After
//! [`QUIET_TICKS`] ticks with no guard held, the ticker parks; the next guard
//! wakes it. An idle gateway therefore costs no wakeups, where a free-running
//! 1 ms ticker would wake the process a thousand times a second.
//!
//! The hand-off needs no lock. A guard announces itself (`running += 1`), then
//! reads `asleep`; the ticker announces that it is going to sleep (`asleep`),
//! then reads `running`. Both sides use sequentially consistent operations, so
//! at least one of them sees the other: either the ticker finds the call and
//! stays awake, or the call finds the ticker asleep and unparks it (an unpark
//! that comes before the park makes the park return at once).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::Engine;

/// How often the epoch advances: the granularity of deadlines and of yields to
/// the async runtime while a policy runs.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);

/// Ticks in a row with no guest code running before the ticker parks.
const QUIET_TICKS: u32 = 10;

/// The ticker thread and the state it shares with the calls.
pub(super) struct EpochTicker {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct Shared {
    /// Guards alive now: calls that may be running guest code.
    running: AtomicUsize,
    /// Set by the ticker just before it parks, cleared when it wakes.
    asleep: AtomicBool,
    /// Set when the engine goes away.
    stop: AtomicBool,
}

/// Keeps the ticker awake while it lives. Hold one across anything that runs
/// guest code under an epoch deadline.
#[must_use = "the ticker may sleep as soon as the guard is dropped"]
pub(super) struct Ticking<'a> {
    ticker: &'a EpochTicker,
}

impl EpochTicker {
    /// Starts the ticker thread for `engine`.
    pub(super) fn start(engine: Engine) -> EpochTicker {
        let shared = Arc::new(Shared::default());
        let state = shared.clone();
        let thread = std::thread::Builder::new()
            .name("switchyard-epoch".to_owned())
            .spawn(move || tick(&engine, &state))
            .expect("spawning the epoch ticker thread");
        EpochTicker {
            shared,
            thread: Some(thread),
        }
    }

    /// A guard that keeps the epoch advancing until it is dropped.
    pub(super) fn ticking(&self) -> Ticking<'_> {
        self.shared.running.fetch_add(1, Ordering::SeqCst);
        if self.shared.asleep.load(Ordering::SeqCst) {
            self.unpark();
        }
        Ticking { ticker: self }
    }

    /// Whether the ticker is parked (or about to park) for lack of calls.
    #[cfg(test)]
    fn is_asleep(&self) -> bool {
        self.shared.asleep.load(Ordering::SeqCst)
    }

    fn unpark(&self) {
        if let Some(thread) = &self.thread {
            thread.thread().unpark();
        }
    }
}

impl Drop for Ticking<'_> {
    fn drop(&mut self) {
        self.ticker.shared.running.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.unpark();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The ticker thread's loop.
fn tick(engine: &Engine, shared: &Shared) {
    let mut quiet = 0;
    while !shared.stop.load(Ordering::SeqCst) {
        std::thread::sleep(EPOCH_TICK);
        engine.increment_epoch();
        if shared.running.load(Ordering::SeqCst) != 0 {
            quiet = 0;
            continue;
        }
        quiet += 1;
        if quiet < QUIET_TICKS {
            continue;
        }
        shared.asleep.store(true, Ordering::SeqCst);
        if shared.running.load(Ordering::SeqCst) == 0 && !shared.stop.load(Ordering::SeqCst) {
            // Spurious wake-ups are harmless: the loop counts quiet ticks again.
            std::thread::park();
        }
        shared.asleep.store(false, Ordering::SeqCst);
        quiet = 0;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    /// Polls `condition` for up to five seconds (generous: the machine is shared).
    fn eventually(condition: impl Fn() -> bool) -> bool {
        let until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < until {
            if condition() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        false
    }

    #[test]
    fn the_ticker_sleeps_without_calls_and_wakes_for_one() {
        let ticker = EpochTicker::start(Engine::default());
        assert!(eventually(|| ticker.is_asleep()), "an idle ticker parks");

        let guard = ticker.ticking();
        assert!(
            eventually(|| !ticker.is_asleep()),
            "a call wakes the ticker"
        );
        // While the guard lives, the ticker stays awake however long the call runs.
        std::thread::sleep(EPOCH_TICK * (QUIET_TICKS * 3));
        assert!(!ticker.is_asleep(), "the ticker slept during a call");

        drop(guard);
        assert!(eventually(|| ticker.is_asleep()), "the ticker parks again");
    }

    #[test]
    fn dropping_a_sleeping_ticker_stops_its_thread() {
        let ticker = EpochTicker::start(Engine::default());
        assert!(eventually(|| ticker.is_asleep()));
        drop(ticker); // joins the thread: the test would hang if it stayed parked
    }
}
