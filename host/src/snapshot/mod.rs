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

use http::HeaderValue;

pub use build::{EnvLookup, SnapshotBuilder, SnapshotError};
pub use reload::{Attempt, ReloadReport, Reloaded, Reloader};
pub use watch::{Baseline, FileWatch, WatchSettings};

use crate::config::{Config, ProviderKind};
use crate::gateway::auth::ClientKeys;
use crate::gateway::route::Route;
use crate::policy::types::ProviderKind as PolicyProviderKind;
use crate::policy::types::{Candidate, Health, LiveState};
use crate::policy::{Catalog, Policy};
use crate::provider::{Operation, ProviderAdapter};
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
    pub models: HashMap<String, Vec<Serving>, foldhash::fast::RandomState>,
    /// The offer of every [`Serving`], by its id: what policies read about candidates.
    pub catalog: Arc<Catalog>,
    /// Routes in match order.
    pub routes: Vec<Route>,
    /// Loaded policies in config order.
    pub policies: Vec<LoadedPolicy>,
}

/// One upstream and what the gateway needs to call it.
pub struct UpstreamEntry {
    /// Config name.
    pub name: Arc<str>,
    /// `name` as the `x-switchyard-upstream` header value.
    pub stamp: Option<HeaderValue>,
    /// Provider kind policies see (a mock's `simulates` kind).
    pub provider: ProviderKind,
    /// Builds and sends the provider's wire requests.
    pub adapter: ProviderAdapter,
    /// Live health, shared across snapshots.
    pub health: Arc<UpstreamHealth>,
    /// Time allowed from sending a request to the first response byte, for
    /// streamed completions and embeddings.
    pub first_byte_timeout: Duration,
    /// Time allowed from sending a non-streamed chat completion to the first
    /// response byte (the provider answers once the whole completion is generated).
    pub response_timeout: Duration,
    /// Whether a stream's usage is asked for on the client's behalf (see
    /// [`crate::config::UpstreamConfig::adds_stream_usage`]).
    pub adds_stream_usage: bool,
    /// Region, as configured.
    pub region: String,
    /// Jurisdiction of the region, as configured.
    pub jurisdiction: String,
    /// Why its credentials could not be read when this snapshot was built, if
    /// so: it kept the previous snapshot's adapter (and credentials).
    pub stale_credentials: Option<String>,
}

/// One upstream serving one client-facing model.
#[derive(Debug, Clone)]
pub struct Serving {
    /// The candidate id policies see: its offer's position in [`Snapshot::catalog`].
    pub id: u32,
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

impl UpstreamEntry {
    /// Whether the upstream offers `operation`. Bedrock's OpenAI-compatible
    /// API (and so a mock simulating Bedrock) has chat completions only.
    pub fn serves(&self, operation: Operation) -> bool {
        !(self.provider == ProviderKind::Bedrock && operation == Operation::Embeddings)
    }
}

impl Snapshot {
    /// The upstreams whose credentials could not be read for this snapshot
    /// (they kept the previous ones): `upstream "name": why`.
    pub fn stale_credentials(&self) -> Vec<String> {
        self.upstreams
            .iter()
            .filter_map(|up| {
                let why = up.stale_credentials.as_deref()?;
                Some(format!("upstream \"{}\": {why}", up.name))
            })
            .collect()
    }

    /// The candidate a policy sees for `serving`: its id and the upstream's live state.
    pub fn candidate(&self, serving: &Serving) -> Candidate {
        let view = self.upstreams[serving.upstream].health.view();
        Candidate {
            id: serving.id,
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

impl From<ProviderKind> for PolicyProviderKind {
    fn from(kind: ProviderKind) -> PolicyProviderKind {
        match kind {
            ProviderKind::Openai => PolicyProviderKind::Openai,
            ProviderKind::AzureOpenai => PolicyProviderKind::AzureOpenai,
            ProviderKind::Bedrock => PolicyProviderKind::Bedrock,
            ProviderKind::Mock => PolicyProviderKind::Mock,
        }
    }
}
