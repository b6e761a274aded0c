//! Command-line verbs: `serve`, `demo`, `config check`, `policy check|eval|test`.

mod config_cmd;
mod demo;
mod logging;
mod policy;
mod serve;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Switchyard: an OpenAI-compatible LLM gateway whose routing decisions are
/// WebAssembly policy components.
#[derive(Debug, Parser)]
#[command(name = "switchyard", version, about)]
struct Cli {
    /// How log lines on stderr are written (filter them with RUST_LOG).
    #[arg(long, global = true, value_enum, default_value_t)]
    log_format: logging::LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway from a config file.
    Serve(serve::ServeArgs),
    /// Run the gateway with simulated upstreams and the example policies.
    Demo(demo::DemoArgs),
    /// Work with config files.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Check, evaluate and test policy components.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Validate a config file the way `serve` would.
    Check(config_cmd::CheckArgs),
}

/// Parses the command line and runs the verb.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(err) = logging::init(cli.log_format) {
        eprintln!("error: {}", chain_text(&err));
        return ExitCode::FAILURE;
    }
    match cli.command {
        Command::Serve(args) => report(serve::run(args)),
        Command::Demo(args) => report(demo::run(args)),
        Command::Config(ConfigCommand::Check(args)) => config_cmd::check(args),
        Command::Policy(command) => policy::run(command),
    }
}

/// Exit status of a verb that returns an error: the error chain on stderr, status 1.
fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", chain_text(&err));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, joined with ": ", leaving out a cause whose text
/// is already said: the library's errors put their cause in their message
/// (the admin API shows that message alone), and anyhow's `{:#}` would print
/// it twice.
fn chain_text(err: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in err.chain() {
        let part = cause.to_string();
        if part.is_empty() || text.contains(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn a_cause_already_in_the_message_is_said_once() {
        #[derive(Debug, thiserror::Error)]
        #[error("upstream \"oa\": {source}")]
        struct Wrapped {
            source: std::io::Error,
        }
        let inner = std::io::Error::other("variable X is not set");
        let err = anyhow::Error::new(Wrapped { source: inner }).context("did not start");
        assert_eq!(
            chain_text(&err),
            "did not start: upstream \"oa\": variable X is not set"
        );
        let plain = anyhow::anyhow!("root").context("outer");
        assert_eq!(chain_text(&plain), "outer: root");
    }

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn policy_verbs_parse() {
        let cli = Cli::try_parse_from([
            "switchyard",
            "policy",
            "eval",
            "p.wasm",
            "--request",
            "r.json",
            "--config",
            "a=b",
            "--config",
            "c=d=e",
        ])
        .unwrap();
        let Command::Policy(policy::PolicyCommand::Eval(args)) = cli.command else {
            panic!("not policy eval")
        };
        assert_eq!(
            args.config,
            vec![("a".into(), "b".into()), ("c".into(), "d=e".into())]
        );
        assert!(
            Cli::try_parse_from([
                "switchyard",
                "policy",
                "eval",
                "p.wasm",
                "--request",
                "r.json",
                "--config",
                "novalue"
            ])
            .is_err()
        );
        assert!(
            Cli::try_parse_from(["switchyard", "policy", "test", "p.wasm", "cases.json"]).is_ok()
        );
        assert!(Cli::try_parse_from(["switchyard", "policy", "check", "p.wasm"]).is_ok());
    }
}
