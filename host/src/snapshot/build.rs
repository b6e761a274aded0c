//! Building a snapshot from a config: load (or reuse) each policy, check it, build
//! the upstream adapters and compile the routes.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::HeaderValue;
use sha2::{Digest, Sha256};

use super::{LoadedPolicy, Serving, Snapshot, UpstreamEntry};
use crate::config::{Config, ConfigError, PolicyConfig};
use crate::gateway::auth::ClientKeys;
use crate::gateway::route::{Route, RouteError};
use crate::policy::cases::{CaseFile, canary, run_cases};
use crate::policy::types::Offer;
use crate::policy::{Catalog, Chain, LoadError, Policy, PolicyEngine, PolicySettings, PolicySpec};
use crate::provider::{ProviderAdapter, ProviderConfigError};
use crate::upstream::health::HealthRegistry;

/// Why a snapshot was not built. The previous snapshot (if any) keeps serving.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The config file is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A policy file could not be read.
    #[error("policy {policy:?}: reading {}: {source}", path.display())]
    PolicyFile {
        /// The policy.
        policy: String,
        /// Its file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A policy did not compile or does not fit the contract.
    #[error("policy {policy:?}: {source}")]
    PolicyLoad {
        /// The policy.
        policy: String,
        /// Why.
        source: LoadError,
    },
    /// A policy failed its canary decision or its recorded cases.
    #[error("policy {policy:?} failed its checks: {message}")]
    PolicyCheck {
        /// The policy.
        policy: String,
        /// What failed.
        message: String,
    },
    /// An upstream could not be set up (e.g. its key variable is unset).
    #[error("upstream {upstream:?}: {source}")]
    Upstream {
        /// The upstream.
        upstream: String,
        /// Why.
        source: ProviderConfigError,
    },
    /// A route did not compile.
    #[error(transparent)]
    Route(#[from] RouteError),
}

impl SnapshotError {
    /// The policy the error is about, if any.
    pub fn policy(&self) -> Option<&str> {
        match self {
            SnapshotError::PolicyFile { policy, .. }
            | SnapshotError::PolicyLoad { policy, .. }
            | SnapshotError::PolicyCheck { policy, .. } => Some(policy),
            _ => None,
        }
    }
}

/// Reads an environment variable (a function so tests can inject secrets).
pub type EnvLookup = dyn Fn(&str) -> Option<String> + Send + Sync;

/// Builds snapshots, reusing what an earlier snapshot already loaded.
pub struct SnapshotBuilder<'a> {
    /// The policy engine.
    pub engine: &'a PolicyEngine,
    /// Upstream health, shared across snapshots.
    pub health: &'a HealthRegistry,
    /// Where upstream keys come from.
    pub env: &'a EnvLookup,
    /// The snapshot being replaced: unchanged policies are reused, not recompiled.
    pub previous: Option<&'a Snapshot>,
    /// Whether an upstream whose credentials cannot be read, and whose config
    /// is otherwise unchanged, keeps the previous snapshot's adapter (and its
    /// credentials) instead of failing the build.
    pub keep_stale_credentials: bool,
}

impl SnapshotBuilder<'_> {
    /// Builds and checks a snapshot; nothing is installed here.
    pub async fn build(&self, config: Config, generation: u64) -> Result<Snapshot, SnapshotError> {
        let mut policies = Vec::with_capacity(config.policies.len());
        for policy_config in &config.policies {
            policies.push(self.load_policy(&config, policy_config).await?);
        }

        let mut upstreams = Vec::with_capacity(config.upstreams.len());
        let mut models: HashMap<String, Vec<Serving>, _> = HashMap::default();
        let mut offers = Vec::new();
        let mut forgive = Vec::new();
        for (index, up) in config.upstreams.iter().enumerate() {
            // A simulated upstream presents itself as the provider it stands in for.
            let provider = up
                .mock
                .as_ref()
                .and_then(|m| m.simulates)
                .unwrap_or(up.provider);
            let before = self
                .previous
                .and_then(|previous| previous.upstreams.iter().find(|old| *old.name == *up.name));
            // Only a final attempt keeps stale credentials: a tentative one
            // fails instead, and is retried while the file may still be
            // being written (a rotation that is not one atomic rename).
            let unchanged = self.keep_stale_credentials
                && self.previous.is_some_and(|previous| {
                    let was = &previous.config;
                    was.server.connect_timeout_ms == config.server.connect_timeout_ms
                        && was
                            .upstreams
                            .iter()
                            .any(|old| old.name == up.name && old.same_adapter(up))
                });
            let (mut adapter, stale_credentials) = match (
                ProviderAdapter::from_config(up, &config.server, self.env),
                before,
            ) {
                (Ok(adapter), _) => (adapter, None),
                // Credentials that no longer read (a rotation left the file
                // empty, a helper died) must not hold back every other change:
                // the upstream keeps the adapter it has, if nothing else of it
                // changed, and the problem is reported with it.
                (Err(err), Some(old)) if err.is_credentials() && unchanged => {
                    tracing::error!(
                        upstream = %up.name,
                        error = %err,
                        "cannot read this upstream's new credentials: it keeps the previous ones"
                    );
                    (old.adapter.clone(), Some(err.to_string()))
                }
                (Err(source), _) => {
                    return Err(SnapshotError::Upstream {
                        upstream: up.name.clone(),
                        source,
                    });
                }
            };
            let kept = before.is_some_and(|old| adapter.keep_connections_of(&old.adapter));
            let new_credentials = before.is_some_and(|old| !adapter.same_credentials(&old.adapter));
            // Said once per upstream and origin, not on every reload.
            if !kept && adapter.sends_credentials_in_clear(up) {
                tracing::warn!(
                    upstream = %up.name,
                    host = adapter.host(),
                    "plain http to a host that is not loopback: this upstream's credentials cross the network unencrypted"
                );
            }
            for (model, serving) in &up.models {
                let upstream_model = serving.upstream_model(model).to_string();
                offers.push(Offer {
                    upstream: up.name.clone(),
                    provider: provider.into(),
                    region: up.region.clone(),
                    jurisdiction: up.jurisdiction.clone(),
                    tags: up.tags.clone(),
                    upstream_model: upstream_model.clone(),
                    input_per_mtok: serving.input_per_mtok,
                    output_per_mtok: serving.output_per_mtok,
                });
                models.entry(model.clone()).or_default().push(Serving {
                    id: u32::try_from(offers.len() - 1).expect("fewer than 2^32 offers"),
                    upstream: index,
                    upstream_model,
                    input_per_mtok: serving.input_per_mtok,
                    output_per_mtok: serving.output_per_mtok,
                });
            }
            upstreams.push(UpstreamEntry {
                name: up.name.as_str().into(),
                stamp: HeaderValue::from_str(&up.name).ok(),
                provider,
                adapter,
                health: self.health.get_or_create(&up.name),
                first_byte_timeout: Duration::from_millis(
                    up.first_byte_timeout_ms
                        .unwrap_or(config.server.first_byte_timeout_ms),
                ),
                response_timeout: Duration::from_millis(
                    up.response_timeout_ms
                        .unwrap_or(config.server.response_timeout_ms),
                ),
                adds_stream_usage: up.adds_stream_usage(),
                region: up.region.clone(),
                jurisdiction: up.jurisdiction.clone(),
                stale_credentials,
            });
            if new_credentials {
                forgive.push(up.name.as_str());
            }
        }
        // The same offers as before keep the same catalog, so pooled policy
        // instances (which may have kept offers by id) stay warm.
        let catalog = match self.previous {
            Some(previous) if previous.catalog.offers() == offers.as_slice() => {
                previous.catalog.clone()
            }
            _ => Catalog::new(offers),
        };
        let mut routes = Vec::with_capacity(config.routes.len().max(1));
        for route in &config.routes {
            let stages = route
                .policies
                .iter()
                .map(|name| {
                    let loaded = policies
                        .iter()
                        .find(|p: &&LoadedPolicy| p.policy.name() == name);
                    loaded
                        .expect("config validation checked route policies")
                        .policy
                        .clone()
                })
                .collect();
            routes.push(Route::new(route, Chain::new(stages))?);
        }
        if routes.is_empty() {
            routes.push(Route::fallback());
        }
        // Last, after every step that can fail: a refused snapshot must leave
        // the live upstreams' health (cooldowns, latency) as it was.
        self.health
            .retain(config.upstreams.iter().map(|u| u.name.as_str()));
        for name in forgive {
            // Failures met with the old credentials (an expired token's 401s)
            // must not keep the new ones cooling down.
            if let Some(health) = self.health.get(name) {
                health.forgive_failures();
            }
        }

        Ok(Snapshot {
            generation,
            loaded_at: SystemTime::now(),
            clients: ClientKeys::new(&config.clients),
            config: Arc::new(config),
            upstreams,
            models,
            catalog,
            routes,
            policies,
        })
    }

    async fn load_policy(
        &self,
        config: &Config,
        pc: &PolicyConfig,
    ) -> Result<LoadedPolicy, SnapshotError> {
        let path = config.resolve_path(&pc.file);
        let read = path.clone();
        let wasm = tokio::task::spawn_blocking(move || crate::files::read_regular(&read, None))
            .await
            .unwrap_or_else(|join| Err(std::io::Error::other(join)))
            .map_err(|source| SnapshotError::PolicyFile {
                policy: pc.name.clone(),
                path: path.clone(),
                source,
            })?;
        let hash = hex::encode(Sha256::digest(&wasm));
        let settings = PolicySettings::from(pc);
        let previous = self
            .previous
            .and_then(|s| s.policy(&pc.name))
            .filter(|previous| previous.policy.hash() == hash);
        if let Some(previous) = previous {
            let same = previous.policy.settings() == &settings
                && previous.policy.config() == &pc.config
                && previous.source == path;
            if same {
                // Unchanged: the same policy, warm instances and all. Its
                // recorded cases run again: the case file may have changed alone.
                self.check_cases(config, pc, &previous.policy).await?;
                return Ok(LoadedPolicy {
                    policy: previous.policy.clone(),
                    source: path,
                    loaded_at: previous.loaded_at,
                });
            }
            // Same component, other settings: reuse the compiled code, check again.
            let policy = previous.policy.with_settings(settings, pc.config.clone());
            self.check_policy(config, pc, &policy).await?;
            return Ok(LoadedPolicy {
                policy,
                source: path,
                loaded_at: SystemTime::now(),
            });
        }

        let spec = PolicySpec {
            name: pc.name.clone(),
            wasm,
            settings,
            config: pc.config.clone(),
        };
        let engine = self.engine.clone();
        let policy = tokio::task::spawn_blocking(move || engine.load(spec))
            .await
            .expect("policy compilation panicked")
            .map_err(|source| SnapshotError::PolicyLoad {
                policy: pc.name.clone(),
                source,
            })?;
        let info = policy.load_info();
        tracing::info!(
            policy = %pc.name,
            version = policy.hash8(),
            bytes = info.size_bytes,
            from_cache = info.from_cache,
            load_ms = info.elapsed.as_millis() as u64,
            "policy loaded"
        );
        self.check_policy(config, pc, &policy).await?;
        Ok(LoadedPolicy {
            policy,
            source: path,
            loaded_at: SystemTime::now(),
        })
    }

    /// The canary decision and the policy's recorded cases.
    async fn check_policy(
        &self,
        config: &Config,
        pc: &PolicyConfig,
        policy: &Arc<Policy>,
    ) -> Result<(), SnapshotError> {
        canary(policy)
            .await
            .map_err(|err| SnapshotError::PolicyCheck {
                policy: pc.name.clone(),
                message: format!("canary decision: {err}"),
            })?;
        self.check_cases(config, pc, policy).await
    }

    /// The policy's recorded cases (its `tests` file), when it has one.
    async fn check_cases(
        &self,
        config: &Config,
        pc: &PolicyConfig,
        policy: &Arc<Policy>,
    ) -> Result<(), SnapshotError> {
        let fail = |message: String| SnapshotError::PolicyCheck {
            policy: pc.name.clone(),
            message,
        };
        let Some(tests) = &pc.tests else {
            return Ok(());
        };
        let path = config.resolve_path(tests);
        let cases =
            CaseFile::load(&path).map_err(|err| fail(format!("{}: {err}", path.display())))?;
        let results = run_cases(policy, &cases).await;
        let failed: Vec<String> = results
            .iter()
            .filter(|r| !r.passed)
            .map(|r| r.to_string())
            .collect();
        if failed.is_empty() {
            Ok(())
        } else {
            Err(fail(format!(
                "{} of {} cases in {} failed: {}",
                failed.len(),
                results.len(),
                path.display(),
                failed.join("; ")
            )))
        }
    }
}
