//! Pooled upstream client and health tracking.
//!
//! - [`client`]: the pooled HTTPS/HTTP client ([`UpstreamClient`]) with a connect
//!   timeout over DNS, TCP and TLS.
//! - [`pool`]: its idle connections, and the [`ResponseBody`] that returns an
//!   HTTP/1.1 connection to them when the response has been read.
//! - [`error`]: what can go wrong in one attempt ([`AttemptError`], which says
//!   whether a retry is safe) and while reading an upstream body ([`BodyError`]:
//!   never retried, since the response has begun).
//! - [`health`]: per-upstream live state ([`UpstreamHealth`]) kept across reloads
//!   in a [`HealthRegistry`].
//! - [`retry_after`]: parsing the waits a 429 asks for.
//! - [`tls`]: the shared rustls configuration.

pub mod client;
pub mod error;
pub mod health;
pub mod pool;
pub mod retry_after;
pub mod tls;

pub use client::{ClientOptions, UpstreamClient};
pub use error::{AttemptError, AttemptErrorKind, BodyError, BodyErrorKind, ConnectCause};
pub use health::{
    AttemptOutcome, HealthRegistry, HealthSettings, HealthState, HealthView, InFlight,
    UpstreamHealth,
};
pub use pool::ResponseBody;
