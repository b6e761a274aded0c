//! Admin listener: Prometheus metrics, health probes and the admin API.
//!
//! The admin surface runs on its own listener (`[server] admin_listen`, loopback by
//! default) and is never reachable through the client listener:
//!
//! | method | path | answer |
//! |---|---|---|
//! | GET | `/metrics` | [`Metrics::encode`], OpenMetrics text |
//! | GET | `/healthz` | 200 `ok` while the process runs |
//! | GET | `/readyz` | 200 when [`AdminState::ready`], else 503 |
//! | GET | `/admin/policies` | [`AdminState::policies`] as JSON |
//! | GET | `/admin/upstreams` | [`AdminState::upstreams`] as JSON |
//! | POST | `/admin/reload` | [`AdminState::reload`]: 200 with its JSON, or 422 with the error |
//!
//! With a token (`[server] admin_token_env`), every path except `/healthz` and
//! `/readyz` requires `Authorization: Bearer <token>`.

mod auth;
mod metrics;
mod series;
mod server;

use std::future::Future;
use std::pin::Pin;

pub use metrics::{CONTENT_TYPE, Metrics, NONE_LABEL};
pub use server::serve;

/// What the admin listener needs from the running gateway.
///
/// Implementations must never put secrets (upstream keys, client keys, the admin
/// token) in the JSON they return.
pub trait AdminState: Send + Sync + 'static {
    /// The process-wide metrics.
    fn metrics(&self) -> &Metrics;

    /// True once a valid snapshot is installed and until shutdown begins.
    fn ready(&self) -> bool;

    /// Loaded policies: name, version hash, source, loaded-at, last reload result.
    fn policies(&self) -> serde_json::Value;

    /// Health state per upstream.
    fn upstreams(&self) -> serde_json::Value;

    /// Rebuilds and installs a snapshot. `Ok` carries a JSON description of what
    /// was installed, `Err` the reason the new snapshot was refused (the old one
    /// keeps serving). Implementations record `switchyard_policy_reloads_total`
    /// themselves (reloads also come from file watching and SIGHUP); the admin
    /// server does not count them again.
    fn reload(
        &self,
    ) -> Pin<Box<dyn Future<Output = Result<serde_json::Value, String>> + Send + '_>>;
}
