//! `switchyard serve`: run the gateway from a config file until SIGTERM/SIGINT;
//! SIGHUP reloads.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use switchyard::config::Config;
use switchyard::server::Server;

/// Arguments of `switchyard serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// The config file.
    #[arg(long, short, default_value = "switchyard.toml")]
    pub config: PathBuf,
}

/// Runs the gateway.
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    runtime()?.block_on(serve_config(&args.config))
}

/// The multi-threaded runtime the gateway runs on.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")
}

/// Loads `path`, starts the gateway and serves until a shutdown signal.
pub async fn serve_config(path: &Path) -> anyhow::Result<()> {
    let config = Config::load(path)?;
    let server = Server::start(
        config,
        Some(path.to_path_buf()),
        Box::new(|name| std::env::var(name).ok()),
    )
    .await
    .context("the gateway did not start")?;
    let (client, admin) = server.bind().await?;
    // One machine-readable line on stdout, so scripts and tests can find the ports.
    println!(
        "switchyard listening on http://{} (admin http://{})",
        client.local_addr()?,
        admin.local_addr()?
    );
    tokio::spawn(reload_on_sighup(server.clone()));
    server.clone().run(client, admin, shutdown_signal()).await;
    tracing::info!("switchyard stopped");
    Ok(())
}

/// Resolves on the first SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("installing the SIGINT handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
    }
}

async fn reload_on_sighup(server: Arc<Server>) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        return;
    };
    while hup.recv().await.is_some() {
        tracing::info!("SIGHUP: reloading");
        let _ = server.reload().await;
    }
}
