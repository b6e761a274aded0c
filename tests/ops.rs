//! Operations, end to end: Prometheus metrics after real traffic, every admin
//! endpoint (and its absence from the client listener), the admin token, access
//! logs without secrets, graceful shutdown of the real binary, and `observe` off
//! the response path.
//!
//! No test here asserts on time: waits are bounded polls with generous limits.

mod support;

mod ops {
    pub mod admin;
    pub mod drain;
    pub mod logs;
    pub mod observe;
    pub mod scrape;
    pub mod traffic;
}
