//! `switchyard policy check|eval|test`: the policy author's offline tools.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use switchyard::config::EngineConfig;
use switchyard::policy::cases::{CaseFile, run_cases};
use switchyard::policy::json::{self, CandidateJson, DecisionJson, RequestJson};
use switchyard::policy::types::Request;
use switchyard::policy::{
    CONTRACT_VERSION, Policy, PolicyEngine, PolicySettings, PolicySpec, WORLD, samples,
};

/// Instance slots for the CLI's engine: it runs one policy at a time.
const CLI_MAX_INSTANCES: u32 = 64;

/// `switchyard policy …`
#[derive(Debug, clap::Subcommand)]
pub enum PolicyCommand {
    /// Compile a component and type-check it against the policy contract.
    Check(CheckArgs),
    /// Run one decision and print it as JSON.
    Eval(EvalArgs),
    /// Run recorded cases and report each; exits 1 if any fails.
    Test(TestArgs),
}

/// Arguments of `switchyard policy check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The policy component (`.wasm`).
    pub file: PathBuf,
}

/// Arguments of `switchyard policy eval`.
#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    /// The policy component (`.wasm`).
    pub file: PathBuf,
    /// The request, as JSON (see the README for the shape; every field is optional).
    #[arg(long)]
    pub request: PathBuf,
    /// The candidates, as a JSON array. Without it a built-in sample set is used:
    /// azure-eastus (us), azure-westeurope (eu), bedrock-eu-central-1 (eu, degraded)
    /// and openai (us), all serving gpt-4o.
    #[arg(long)]
    pub candidates: Option<PathBuf>,
    /// A policy config entry, `key=value`; repeat for more.
    #[arg(long = "config", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub config: Vec<(String, String)>,
    /// The call's deadline.
    #[arg(long, default_value_t = 50)]
    pub deadline_ms: u64,
}

/// Arguments of `switchyard policy test`.
#[derive(Debug, clap::Args)]
pub struct TestArgs {
    /// The policy component (`.wasm`).
    pub file: PathBuf,
    /// The recorded cases (`cases.json`).
    pub cases: PathBuf,
}

fn parse_key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got {text:?}")),
    }
}

/// Runs a `policy` verb.
pub fn run(command: PolicyCommand) -> ExitCode {
    let result = match command {
        PolicyCommand::Check(args) => check(&args),
        PolicyCommand::Eval(args) => eval(&args),
        PolicyCommand::Test(args) => test(&args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {}", super::chain_text(&err));
            ExitCode::FAILURE
        }
    }
}

fn engine() -> anyhow::Result<PolicyEngine> {
    let config = EngineConfig {
        max_instances: CLI_MAX_INSTANCES,
        ..EngineConfig::default()
    };
    PolicyEngine::new(&config).context("starting the policy engine")
}

fn load(
    engine: &PolicyEngine,
    file: &Path,
    settings: PolicySettings,
    config: BTreeMap<String, String>,
) -> anyhow::Result<Arc<Policy>> {
    let mut spec = PolicySpec::from_file(policy_name(file), file)?;
    spec.settings = settings;
    spec.config = config;
    engine
        .load(spec)
        .with_context(|| format!("{}", file.display()))
}

/// The policy's name in logs: the file name without `.wasm`.
fn policy_name(file: &Path) -> String {
    file.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "policy".to_owned())
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")
}

fn check(args: &CheckArgs) -> anyhow::Result<ExitCode> {
    let engine = engine()?;
    let policy = load(
        &engine,
        &args.file,
        PolicySettings::default(),
        BTreeMap::new(),
    )?;
    let info = policy.load_info();
    let how = if info.from_cache {
        "loaded from the compile cache"
    } else {
        "compiled"
    };
    println!("{}: ok", args.file.display());
    println!("  contract  {CONTRACT_VERSION} (world {WORLD})");
    println!("  hash      {} (sha256 {})", policy.hash8(), policy.hash());
    println!("  size      {}", human_bytes(info.size_bytes));
    println!("  compile   {} in {}", how, human_duration(info.elapsed));
    Ok(ExitCode::SUCCESS)
}

fn eval(args: &EvalArgs) -> anyhow::Result<ExitCode> {
    let request: Arc<Request> = Arc::new(read_json::<RequestJson>(&args.request)?.into());
    let (catalog, candidates) = match &args.candidates {
        Some(path) => json::candidates(&read_json::<Vec<CandidateJson>>(path)?),
        None => samples::candidates(),
    };
    let settings = PolicySettings {
        deadline: Duration::from_millis(args.deadline_ms),
        ..PolicySettings::default()
    };
    let engine = engine()?;
    let policy = load(
        &engine,
        &args.file,
        settings,
        args.config.iter().cloned().collect(),
    )?;
    let decision = runtime()?.block_on(policy.decide(&request, &catalog, &candidates));
    match decision {
        Ok(decision) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&DecisionJson::new(&decision, &catalog))?
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(err) => bail!(
            "{} failed ({}): {}",
            args.file.display(),
            err.kind,
            err.message
        ),
    }
}

fn test(args: &TestArgs) -> anyhow::Result<ExitCode> {
    let cases = CaseFile::load(&args.cases)?;
    let engine = engine()?;
    let policy = load(
        &engine,
        &args.file,
        PolicySettings::default(),
        cases.config.clone(),
    )?;
    let results = runtime()?.block_on(run_cases(&policy, &cases));
    let failed = results.iter().filter(|r| !r.passed).count();
    for result in &results {
        println!("{result}");
    }
    println!("{} passed, {} failed", results.len() - failed, failed);
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> anyhow::Result<T> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("{}: not the expected JSON shape", path.display()))
}

fn human_bytes(n: usize) -> String {
    match n {
        0..1024 => format!("{n} B"),
        1024..1_048_576 => format!("{:.1} KiB", n as f64 / 1024.0),
        _ => format!("{:.1} MiB", n as f64 / 1_048_576.0),
    }
}

fn human_duration(d: Duration) -> String {
    if d < Duration::from_millis(10) {
        format!("{:.2} ms", d.as_secs_f64() * 1000.0)
    } else {
        format!("{} ms", d.as_millis())
    }
}
