//! `switchyard serve`: run the gateway from a config file until SIGTERM/SIGINT.
//! SIGHUP, `POST /admin/reload` and changes to the config, policy or credential
//! files reload.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use switchyard::config::Config;
use switchyard::server::Server;
use switchyard::snapshot::{Baseline, FileWatch};

/// Arguments of `switchyard serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// The config file.
    #[arg(long, short, default_value = "switchyard.toml")]
    pub config: PathBuf,
}

/// Runs the gateway.
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let runtime = runtime()?;
    let result = runtime.block_on(serve_config(&args.config, || {}));
    // Whatever is still running after the drain (streams cut by the drain timeout,
    // queued `observe` calls) is abandoned rather than waited for.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    result
}

/// The multi-threaded runtime the gateway runs on.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")
}

/// Loads `path`, starts the gateway and serves until a shutdown signal.
/// `on_listening` runs once both listeners are bound (the demo prints its
/// instructions then, not before a busy port stops it).
pub async fn serve_config(path: &Path, on_listening: impl FnOnce()) -> anyhow::Result<()> {
    // Before anything loads: a file edited while the first snapshot builds must
    // count as changed when the watch starts.
    let baseline = Baseline::read(path);
    let config = Config::load(path)?;
    let server = Server::start(
        config,
        Some(path.to_path_buf()),
        Box::new(|name| std::env::var(name).ok()),
    )
    .await
    .context("the gateway did not start")?;
    let (client, admin) = server.bind().await?;
    // Install the handlers and the file watch before announcing the ports: a
    // SIGTERM sent right after the line below must drain, not kill the process,
    // and a file edited right after it must be seen.
    let shutdown = shutdown_signal()?;
    let hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("installing the SIGHUP handler")?;
    tokio::spawn(reload_on_sighup(server.clone(), hangups));
    let _watch = watch_files(&server, path, baseline);
    // One machine-readable line on stdout, so scripts and tests can find the ports.
    println!(
        "switchyard listening on http://{} (admin http://{})",
        client.local_addr()?,
        admin.local_addr()?
    );
    on_listening();
    server.clone().run(client, admin, shutdown).await;
    tracing::info!("switchyard stopped");
    Ok(())
}

/// Installs the SIGTERM and SIGINT handlers now; the future resolves on the first
/// of them.
pub fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: shutting down, draining open requests"),
            _ = int.recv() => tracing::info!("SIGINT: shutting down, draining open requests"),
        }
    })
}

/// Reloads when the config file, a policy file or a credential file changes. A
/// gateway that cannot watch (e.g. out of inotify watches) still serves, and
/// still reloads on SIGHUP.
fn watch_files(server: &Arc<Server>, path: &Path, baseline: Baseline) -> Option<FileWatch> {
    match server.watch_files(path.to_path_buf(), baseline) {
        Ok(watch) => Some(watch),
        Err(err) => {
            tracing::warn!(error = %err, "cannot watch files for changes; reload with SIGHUP");
            None
        }
    }
}

async fn reload_on_sighup(server: Arc<Server>, mut hup: tokio::signal::unix::Signal) {
    while hup.recv().await.is_some() {
        tracing::info!("SIGHUP: reloading");
        let _ = server.reload().await;
    }
}
