//! `switchyard config check FILE`: validate a config the way `serve` would.

use std::path::PathBuf;
use std::process::ExitCode;

use switchyard::config::Config;

/// Arguments of `switchyard config check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The config file.
    pub file: PathBuf,
}

/// Validates the file; prints the first problem with its file, line and key.
pub fn check(args: CheckArgs) -> ExitCode {
    match Config::load(&args.file) {
        Ok(config) => {
            println!(
                "{}: ok ({} upstreams, {} policies, {} routes, client auth {})",
                args.file.display(),
                config.upstreams.len(),
                config.policies.len(),
                config.routes.len(),
                if config.clients.is_empty() {
                    "off"
                } else {
                    "on"
                },
            );
            for policy in &config.policies {
                let path = config.resolve_path(&policy.file);
                if !path.exists() {
                    println!(
                        "warning: policy {:?}: {} does not exist yet",
                        policy.name,
                        path.display()
                    );
                }
            }
            // Named, never read: a check prints nothing of a credential.
            for path in config.credential_files().filter(|path| !path.is_file()) {
                println!(
                    "warning: credential file {} does not exist yet",
                    path.display()
                );
            }
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("{err}");
            ExitCode::FAILURE
        }
    }
}
