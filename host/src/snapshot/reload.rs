//! Reloads: build a new snapshot from the config file off the request path, check
//! it, and only then swap it in. A failed reload leaves the old snapshot serving.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use super::build::EnvLookup;
use super::{Snapshot, SnapshotBuilder, SnapshotError};
use crate::config::Config;
use crate::gateway::Gateway;
use crate::policy::PolicyEngine;
use crate::upstream::health::HealthRegistry;

/// The result of the last reload attempt, for the admin API and logs.
#[derive(Debug, Clone)]
pub struct ReloadReport {
    /// When it finished.
    pub at: SystemTime,
    /// The generation installed, or the error that kept the old one.
    pub result: Result<u64, String>,
    /// The policy at fault, when the error was a policy's.
    pub policy: Option<String>,
    /// Keys the installed config changed that take effect only at the next
    /// start (see [`Config::changes_needing_restart`]).
    pub restart_required: Vec<&'static str>,
    /// Upstreams whose credentials could not be read, which kept the previous
    /// ones: `upstream "name": why`.
    pub stale_credentials: Vec<String>,
}

/// What a successful reload installed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reloaded {
    /// The generation now serving.
    pub generation: u64,
    /// Keys the installed config changed that take effect only at the next
    /// start (see [`Config::changes_needing_restart`]).
    pub restart_required: Vec<&'static str>,
    /// Upstreams whose credentials could not be read, which kept the previous
    /// ones: `upstream "name": why`.
    pub stale_credentials: Vec<String>,
}

/// How a failed reload is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// A failure is final: logged as an error, counted
    /// (`switchyard_policy_reloads_total{result="error"}`) and shown by the admin API.
    Final,
    /// A failure may be a file still being written: it is logged at debug level
    /// only, and the caller retries (the file watcher's grace period). A success
    /// counts like any other.
    Tentative,
}

/// Builds and installs snapshots for one gateway.
pub struct Reloader {
    engine: PolicyEngine,
    health: HealthRegistry,
    env: Box<EnvLookup>,
    config_path: Option<PathBuf>,
    generation: AtomicU64,
    /// Serializes reloads.
    running: tokio::sync::Mutex<()>,
    /// The last reload's result.
    last: std::sync::Mutex<Option<ReloadReport>>,
    /// The config the gateway started with: what its listeners and engine use.
    started: std::sync::OnceLock<Arc<Config>>,
}

impl Reloader {
    /// A reloader reading `config_path` (none: the config cannot be reloaded from disk).
    pub fn new(
        engine: PolicyEngine,
        health: HealthRegistry,
        env: Box<EnvLookup>,
        config_path: Option<PathBuf>,
    ) -> Reloader {
        Reloader {
            engine,
            health,
            env,
            config_path,
            generation: AtomicU64::new(0),
            running: tokio::sync::Mutex::new(()),
            last: std::sync::Mutex::new(None),
            started: std::sync::OnceLock::new(),
        }
    }

    /// The config file watched for changes.
    pub fn config_path(&self) -> Option<&std::path::Path> {
        self.config_path.as_deref()
    }

    /// Builds the first snapshot; its config is the one the listeners and the
    /// engine keep until a restart.
    pub async fn initial(&self, config: Config) -> Result<Snapshot, SnapshotError> {
        let snapshot = self.build(config, None, Attempt::Final).await?;
        let _ = self.started.set(snapshot.config.clone());
        Ok(snapshot)
    }

    async fn build(
        &self,
        config: Config,
        previous: Option<&Snapshot>,
        attempt: Attempt,
    ) -> Result<Snapshot, SnapshotError> {
        let builder = SnapshotBuilder {
            engine: &self.engine,
            health: &self.health,
            env: &*self.env,
            previous,
            keep_stale_credentials: attempt == Attempt::Final,
        };
        let mut snapshot = builder.build(config, 0).await?;
        // Numbered once built, so failed attempts leave no gaps.
        snapshot.generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        Ok(snapshot)
    }

    /// Re-reads the config file, its policies and the upstreams' credentials;
    /// installs the result only if every check passes.
    pub async fn reload(&self, gateway: &Gateway) -> Result<Reloaded, Arc<SnapshotError>> {
        self.reload_with(gateway, Attempt::Final).await
    }

    /// Like [`Reloader::reload`]; a failed [`Attempt::Tentative`] leaves no trace in
    /// the metrics or the admin API. Reloads run one at a time.
    pub async fn reload_with(
        &self,
        gateway: &Gateway,
        attempt: Attempt,
    ) -> Result<Reloaded, Arc<SnapshotError>> {
        let _running = self.running.lock().await;
        let result = match &self.config_path {
            Some(path) => match Config::load(path) {
                Ok(config) => {
                    let previous = gateway.snapshot();
                    self.build(config, Some(&previous), attempt).await
                }
                Err(err) => Err(err.into()),
            },
            None => {
                let previous = gateway.snapshot();
                self.build((*previous.config).clone(), Some(&previous), attempt)
                    .await
            }
        };
        let mut restart_required = Vec::new();
        let mut stale_credentials = Vec::new();
        let result = result.map(|snapshot| {
            stale_credentials = snapshot.stale_credentials();
            let previous = gateway.snapshot();
            if !previous.config.clients.is_empty() && snapshot.config.clients.is_empty() {
                tracing::warn!(
                    "the reloaded config has no [[client]] keys: client authentication is now off"
                );
            }
            if let Some(started) = self.started.get() {
                restart_required = snapshot.config.changes_needing_restart(started);
            }
            let generation = snapshot.generation;
            gateway.install(snapshot);
            generation
        });
        if !restart_required.is_empty() {
            tracing::warn!(
                keys = ?restart_required,
                "reloaded, but these settings take effect only after a restart"
            );
        }
        let result = result.map_err(Arc::new);
        if let (Err(err), Attempt::Tentative) = (&result, attempt) {
            tracing::debug!(error = %err, "reload not possible yet; will retry");
            return Err(err.clone());
        }
        gateway.metrics().reload(result.is_ok());
        match &result {
            Ok(generation) => tracing::info!(generation, "reloaded config and policies"),
            Err(err) => {
                tracing::error!(error = %err, "reload refused; the previous snapshot keeps serving")
            }
        }
        *self.last.lock().expect("reload report lock") = Some(ReloadReport {
            at: SystemTime::now(),
            result: result.as_ref().map(|g| *g).map_err(|e| e.to_string()),
            policy: result
                .as_ref()
                .err()
                .and_then(|e| e.policy())
                .map(str::to_string),
            restart_required: restart_required.clone(),
            stale_credentials: stale_credentials.clone(),
        });
        result.map(|generation| Reloaded {
            generation,
            restart_required,
            stale_credentials,
        })
    }

    /// The last reload's report, if any reload ran.
    pub fn last_report(&self) -> Option<ReloadReport> {
        self.last.lock().expect("reload report lock").clone()
    }

    /// The health registry shared by all snapshots.
    pub fn health(&self) -> &HealthRegistry {
        &self.health
    }
}
