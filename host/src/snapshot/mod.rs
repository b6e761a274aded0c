//! Snapshots: an immutable, validated view of the config and the loaded policies.
//!
//! Every request runs on the snapshot that was current when it arrived; a reload
//! builds and checks a whole new snapshot off the request path, then swaps it in.

mod build;
mod reload;
mod watch;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

pub use build::{EnvLookup, SnapshotBuilder, SnapshotError};
pub use reload::{Attempt, ReloadReport, Reloader};
pub use watch::{FileWatch, WatchSettings};

use crate::config::{Config, ProviderKind};
use crate::gateway::auth::ClientKeys;
use crate::gateway::route::Route;
use crate::policy::Policy;
use crate::policy::types::{Candidate, Health, LiveState};
use crate::provider::ProviderAdapter;
use crate::upstream::health::{HealthState, UpstreamHealth};

/// A validated config with its policies loaded.
pub struct Snapshot {
    /// Increases with every installed snapshot.
    pub generation: u64,
    /// When it was built.
    pub loaded_at: SystemTime,
    /// The config it was built from.
    pub config: Arc<Config>,
    /// Client keys.
    pub clients: ClientKeys,
    /// Upstreams in config order.
    pub upstreams: Vec<UpstreamEntry>,
    /// Client-facing model → the upstreams serving it, in config order.
    pub models: HashMap<String, Vec<Serving>>,
    /// Routes in match order.
    pub routes: Vec<Route>,
    /// Loaded policies in config order.
    pub policies: Vec<LoadedPolicy>,
}

/// One upstream and what the gateway needs to call it.
pub struct UpstreamEntry {
    /// Config name.
    pub name: Arc<str>,
    /// Provider kind policies see (a mock's `simulates` kind).
    pub provider: ProviderKind,
    /// Builds and sends the provider's wire requests.
    pub adapter: ProviderAdapter,
    /// Live health, shared across snapshots.
    pub health: Arc<UpstreamHealth>,
    /// Time allowed from sending a request to the first response byte.
    pub first_byte_timeout: Duration,
    /// Region, jurisdiction and tags, as policies see them.
    pub region: String,
    /// Jurisdiction of the region.
    pub jurisdiction: String,
    /// Free-form tags.
    pub tags: Vec<String>,
}

/// One upstream serving one client-facing model.
#[derive(Debug, Clone)]
pub struct Serving {
    /// Index into [`Snapshot::upstreams`].
    pub upstream: usize,
    /// The provider-side model or deployment.
    pub upstream_model: String,
    /// USD per million input tokens.
    pub input_per_mtok: f64,
    /// USD per million output tokens.
    pub output_per_mtok: f64,
}

/// A policy as loaded into a snapshot.
pub struct LoadedPolicy {
    /// The loaded component.
    pub policy: Arc<Policy>,
    /// The file it came from.
    pub source: PathBuf,
    /// When this version was first loaded.
    pub loaded_at: SystemTime,
}

impl Snapshot {
    /// The candidate a policy sees for `serving`, with the upstream's live state.
    pub fn candidate(&self, serving: &Serving) -> Candidate {
        let upstream = &self.upstreams[serving.upstream];
        let view = upstream.health.view();
        Candidate {
            upstream: upstream.name.to_string(),
            provider: match upstream.provider {
                ProviderKind::Openai => crate::policy::types::ProviderKind::Openai,
                ProviderKind::AzureOpenai => crate::policy::types::ProviderKind::AzureOpenai,
                ProviderKind::Bedrock => crate::policy::types::ProviderKind::Bedrock,
                ProviderKind::Mock => crate::policy::types::ProviderKind::Mock,
            },
            region: upstream.region.clone(),
            jurisdiction: upstream.jurisdiction.clone(),
            tags: upstream.tags.clone(),
            upstream_model: serving.upstream_model.clone(),
            input_per_mtok: serving.input_per_mtok,
            output_per_mtok: serving.output_per_mtok,
            state: LiveState {
                health: match view.health {
                    HealthState::Healthy => Health::Healthy,
                    HealthState::Degraded => Health::Degraded,
                    HealthState::CoolingDown => Health::CoolingDown,
                    HealthState::Unhealthy => Health::Unhealthy,
                },
                latency_ewma_ms: view.latency_ewma_ms,
                in_flight: view.in_flight,
                error_rate: view.error_rate,
                cooldown_remaining_ms: view.cooldown_remaining_ms,
                ratelimit_remaining_requests: view.ratelimit_remaining_requests,
                ratelimit_remaining_tokens: view.ratelimit_remaining_tokens,
            },
        }
    }

    /// The policy named `name`.
    pub fn policy(&self, name: &str) -> Option<&LoadedPolicy> {
        self.policies.iter().find(|p| p.policy.name() == name)
    }
}
