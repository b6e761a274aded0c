//! The running gateway: the composition root that owns the policy engine, health
//! registry, metrics, the [`Gateway`] handler and the [`Reloader`], and serves the
//! client and admin listeners until shutdown.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::admin::Metrics;
use crate::config::Config;
use crate::gateway::Gateway;
use crate::gateway::listener::{self, ClientLimits};
use crate::policy::{EngineError, PolicyEngine};
use crate::snapshot::{
    Baseline, EnvLookup, FileWatch, Reloaded, Reloader, SnapshotError, WatchSettings,
};
use crate::upstream::health::HealthRegistry;

/// Why the gateway did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The WebAssembly engine could not be set up.
    #[error("policy engine: {0}")]
    Engine(#[from] EngineError),
    /// The first snapshot failed its checks.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    /// `admin_token_env` names a variable that is unset or empty. Starting
    /// anyway would leave the admin API (reload, policies, metrics) open to
    /// whoever reaches its port, because of a missing secret or a typo.
    #[error(
        "[server] admin_token_env names {variable}, which is unset or empty: \
         set it, or remove admin_token_env to run the admin API without a token"
    )]
    AdminToken {
        /// The variable's name.
        variable: String,
    },
    /// A listener could not be bound.
    #[error("binding {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// A started gateway with its first snapshot installed.
pub struct Server {
    gateway: Arc<Gateway>,
    reloader: Reloader,
    ready: AtomicBool,
    /// The admin API's bearer token, read once at start.
    admin_token: Option<String>,
}

impl Server {
    /// Sets up the engine and builds the first snapshot. `config_path` is the file
    /// reloads re-read; `env` supplies upstream keys.
    pub async fn start(
        config: Config,
        config_path: Option<PathBuf>,
        env: Box<EnvLookup>,
    ) -> Result<Arc<Server>, StartError> {
        if config.clients.is_empty() {
            tracing::warn!("no [[client]] keys are configured: client authentication is off");
        }
        let admin_token = match config.server.admin_token_env.as_deref() {
            None => None,
            Some(variable) => match env(variable) {
                Some(token) if !token.is_empty() => Some(token),
                _ => {
                    return Err(StartError::AdminToken {
                        variable: variable.to_owned(),
                    });
                }
            },
        };
        let engine = PolicyEngine::new(&config.engine)?;
        let reloader = Reloader::new(engine, HealthRegistry::default(), env, config_path);
        let snapshot = reloader.initial(config).await?;
        let gateway = Arc::new(Gateway::new(snapshot, Arc::new(Metrics::new())));
        Ok(Arc::new(Server {
            gateway,
            reloader,
            ready: AtomicBool::new(true),
            admin_token,
        }))
    }

    /// The request handler.
    pub fn gateway(&self) -> &Arc<Gateway> {
        &self.gateway
    }

    /// The reloader.
    pub fn reloader(&self) -> &Reloader {
        &self.reloader
    }

    /// True once a valid snapshot is installed and until shutdown begins.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// Re-reads config and policies and installs them if they pass every check.
    pub async fn reload(&self) -> Result<Reloaded, Arc<SnapshotError>> {
        self.reloader.reload(&self.gateway).await
    }

    /// Watches `config_path` and the policy files it names, and reloads when
    /// they change. `baseline` is what the files held before the first
    /// snapshot was built ([`Baseline::read`]). Must be called inside a tokio
    /// runtime; dropping the watch stops it.
    pub fn watch_files(
        self: &Arc<Self>,
        config_path: PathBuf,
        baseline: Baseline,
    ) -> Result<FileWatch, notify::Error> {
        let server = self.clone();
        FileWatch::start(
            config_path,
            self.gateway.clone(),
            WatchSettings::default(),
            baseline,
            move |attempt| {
                let server = server.clone();
                async move { server.reloader.reload_with(&server.gateway, attempt).await }
            },
        )
    }

    /// Binds the client and admin listeners named in the current config.
    pub async fn bind(&self) -> Result<(TcpListener, TcpListener), StartError> {
        let server = &self.gateway.snapshot().config.server;
        let bind = |addr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| StartError::Bind { addr, source })
        };
        Ok((bind(server.listen).await?, bind(server.admin_listen).await?))
    }

    /// Serves both listeners until `shutdown` resolves, then drains client
    /// connections (up to the drain timeout) and returns. The admin listener keeps
    /// answering during the drain (`/readyz` is 503 from the start of shutdown, and
    /// `/metrics` can still be scraped) and stops once the drain is over.
    pub async fn run(
        self: Arc<Self>,
        client: TcpListener,
        admin: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) {
        let limits = ClientLimits::from(&self.gateway.snapshot().config.server);
        let (stop_tx, stop_rx) = watch::channel(false);
        let admin_task = tokio::spawn(crate::admin::serve(
            admin,
            self.clone(),
            self.admin_token.clone(),
            wait(stop_rx),
        ));
        let client_shutdown = {
            let this = self.clone();
            async move {
                shutdown.await;
                this.ready.store(false, Ordering::Relaxed);
            }
        };
        listener::serve(client, self.gateway.clone(), limits, client_shutdown).await;
        let _ = stop_tx.send(true);
        let _ = admin_task.await;
    }
}

async fn wait(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopped| *stopped).await;
}

impl crate::admin::AdminState for Server {
    fn metrics(&self) -> &Metrics {
        // Health is a state, not an event: refresh the gauges whenever they are read.
        let metrics = self.gateway.metrics();
        let snapshot = self.gateway.snapshot();
        metrics.retain_upstream_health(|name| snapshot.upstreams.iter().any(|u| &*u.name == name));
        for upstream in &snapshot.upstreams {
            metrics.upstream_health(&upstream.name, upstream.health.view().health.gauge_value());
            metrics.stale_credentials(&upstream.name, upstream.stale_credentials.is_some());
        }
        metrics
    }

    fn ready(&self) -> bool {
        self.is_ready()
    }

    fn policies(&self) -> serde_json::Value {
        let snapshot = self.gateway.snapshot();
        let last = self.reloader.last_report();
        let policies: Vec<_> = snapshot
            .policies
            .iter()
            .map(|loaded| {
                let policy = &loaded.policy;
                let last_reload = last.as_ref().map(|report| match &report.result {
                    Ok(generation) => serde_json::json!({"result": "success", "generation": generation, "at": http_date(report.at)}),
                    Err(error) if report.policy.as_deref().is_none_or(|p| p == policy.name()) => {
                        serde_json::json!({"result": "error", "error": error, "at": http_date(report.at)})
                    }
                    Err(_) => serde_json::json!({"result": "success", "at": http_date(report.at), "note": "the last reload failed on another policy"}),
                });
                serde_json::json!({
                    "name": policy.name(),
                    "version": policy.hash8(),
                    "sha256": policy.hash(),
                    "source": loaded.source.display().to_string(),
                    "loaded_at": http_date(loaded.loaded_at),
                    "on_error": match policy.settings().on_error {
                        crate::config::OnError::FailClosed => "fail-closed",
                        crate::config::OnError::FailOpen => "fail-open",
                    },
                    "last_reload": last_reload,
                })
            })
            .collect();
        serde_json::json!({
            "generation": snapshot.generation,
            "loaded_at": http_date(snapshot.loaded_at),
            "policies": policies,
            "last_reload": last.map(|report| serde_json::json!({
                "result": if report.result.is_ok() { "success" } else { "error" },
                "error": report.result.err(),
                "policy": report.policy,
                "restart_required": report.restart_required,
                "stale_credentials": report.stale_credentials,
                "at": http_date(report.at),
            })),
        })
    }

    fn upstreams(&self) -> serde_json::Value {
        let snapshot = self.gateway.snapshot();
        let upstreams: Vec<_> = snapshot
            .upstreams
            .iter()
            .map(|upstream| {
                let view = upstream.health.view();
                serde_json::json!({
                    "name": &*upstream.name,
                    "provider": upstream.provider.as_str(),
                    "region": upstream.region,
                    "jurisdiction": upstream.jurisdiction,
                    "health": view.health.as_str(),
                    "latency_ewma_ms": view.latency_ewma_ms,
                    "in_flight": view.in_flight,
                    "error_rate": view.error_rate,
                    "cooldown_remaining_ms": view.cooldown_remaining_ms,
                    "ratelimit_remaining_requests": view.ratelimit_remaining_requests,
                    "ratelimit_remaining_tokens": view.ratelimit_remaining_tokens,
                    "stale_credentials": upstream.stale_credentials,
                })
            })
            .collect();
        serde_json::json!({ "upstreams": upstreams })
    }

    fn reload(
        &self,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<serde_json::Value, String>> + Send + '_>>
    {
        Box::pin(async move {
            match Server::reload(self).await {
                Ok(reloaded) => Ok(serde_json::json!({
                    "result": "success",
                    "generation": reloaded.generation,
                    "restart_required": reloaded.restart_required,
                    "stale_credentials": reloaded.stale_credentials,
                })),
                Err(err) => Err(err.to_string()),
            }
        })
    }
}

fn http_date(at: std::time::SystemTime) -> String {
    httpdate::fmt_http_date(at)
}
