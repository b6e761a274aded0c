//! The functions the gateway offers a policy: logging, the policy's own config
//! table, the clock and named counters. They exist only inside the gateway; called
//! natively (outside a component) they panic.
//!
//! Candidate offers are read through [`Candidate::offer`](crate::Candidate::offer).

use core::str::FromStr;

pub use crate::LogLevel;
pub use crate::bindings::switchyard::policy::host::{
    counter_add, counter_get, ignore_outcomes, log, now_ms,
};

/// The value of `key` in this policy's `[policy.config]` table. Config does not
/// change while an instance lives, so each key is read from the host once and
/// kept.
pub fn config(key: &str) -> Option<&'static str> {
    crate::cache::config(key)
}

/// Reads config `key` and parses it; `default` when the key is absent. A value
/// that does not parse is logged as a warning and also gives `default`.
pub fn config_or<T: FromStr>(key: &str, default: T) -> T {
    match config(key) {
        None => default,
        Some(raw) => raw.trim().parse().unwrap_or_else(|_| {
            warn(&format!(
                "config `{key}`: cannot parse {raw:?}; using the default"
            ));
            default
        }),
    }
}

/// Logs `message` at level `trace`.
pub fn trace(message: &str) {
    log(LogLevel::Trace, message);
}

/// Logs `message` at level `debug`.
pub fn debug(message: &str) {
    log(LogLevel::Debug, message);
}

/// Logs `message` at level `info`.
pub fn info(message: &str) {
    log(LogLevel::Info, message);
}

/// Logs `message` at level `warn`.
pub fn warn(message: &str) {
    log(LogLevel::Warn, message);
}

/// Logs `message` at level `error`.
pub fn error(message: &str) {
    log(LogLevel::Error, message);
}
