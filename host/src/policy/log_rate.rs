//! How many `log` lines a policy may write per second, across all its
//! instances. The per-call budget bounds one call; this bounds a policy that
//! logs on every request (or throws on every request, which a JavaScript
//! policy's glue logs), so that it cannot flood the gateway's log under load.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

/// Lines one policy may write to the gateway's log per second.
pub const MAX_LOG_LINES_PER_SECOND: u32 = 50;

/// A per-second allowance of log lines, shared by a policy's instances.
#[derive(Debug)]
pub struct LogRate {
    origin: Instant,
    /// The second (since `origin`) the counts below are for.
    second: AtomicU64,
    /// Lines admitted in that second.
    admitted: AtomicU32,
    /// Lines refused since the last report of them.
    dropped: AtomicU64,
}

/// Whether a line may be written, and how many were dropped before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Write it; `dropped` lines were refused since the last line admitted
    /// after a refusal (say so first, when not zero).
    Yes {
        /// Lines refused before this one.
        dropped: u64,
    },
    /// Over this second's allowance: drop it.
    No,
}

impl Default for LogRate {
    fn default() -> Self {
        LogRate {
            origin: Instant::now(),
            second: AtomicU64::new(0),
            admitted: AtomicU32::new(0),
            dropped: AtomicU64::new(0),
        }
    }
}

impl LogRate {
    /// Whether one more line may be written at `now`. Concurrent callers may
    /// admit a line or two more than the allowance at a second's turn: this
    /// bounds a flood, it does not count exactly.
    pub fn admit(&self, now: Instant) -> Admit {
        let second = now.saturating_duration_since(self.origin).as_secs();
        let current = self.second.load(Ordering::Relaxed);
        if second > current
            && self
                .second
                .compare_exchange(current, second, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.admitted.store(0, Ordering::Relaxed);
        }
        if self.admitted.fetch_add(1, Ordering::Relaxed) < MAX_LOG_LINES_PER_SECOND {
            Admit::Yes {
                dropped: self.dropped.swap(0, Ordering::Relaxed),
            }
        } else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            Admit::No
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_second_admits_its_allowance_then_reports_what_it_dropped() {
        let rate = LogRate::default();
        let t0 = rate.origin;
        for _ in 0..MAX_LOG_LINES_PER_SECOND {
            assert_eq!(rate.admit(t0), Admit::Yes { dropped: 0 });
        }
        for _ in 0..7 {
            assert_eq!(rate.admit(t0 + Duration::from_millis(900)), Admit::No);
        }
        let t1 = t0 + Duration::from_millis(1_100);
        assert_eq!(rate.admit(t1), Admit::Yes { dropped: 7 });
        assert_eq!(rate.admit(t1), Admit::Yes { dropped: 0 });
        // An earlier instant (another thread's clock read) starts nothing over.
        assert_eq!(rate.admit(t0), Admit::Yes { dropped: 0 });
    }
}
