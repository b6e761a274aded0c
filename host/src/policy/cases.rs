//! Recorded cases (`cases.json`): loading them, running them against a policy,
//! and the reload canary.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::catalog::Catalog;
use super::counters::{CounterStore, InMemoryCounters};
use super::error::PolicyError;
use super::json::{self, CandidateJson, DecisionJson, ExpectJson, RequestJson};
use super::loaded::Policy;
use super::samples;
use super::settings::PolicySettings;
use super::types::Decision;

/// A `cases.json` file: default candidates and config, and the cases.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseFile {
    /// Candidates of every case that does not set its own.
    #[serde(default)]
    pub candidates: Vec<CandidateJson>,
    /// Policy config of every case that does not set its own.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    /// The cases, run in order.
    pub cases: Vec<Case>,
}

/// One recorded case.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// Shown in the report.
    pub name: String,
    /// The request.
    #[serde(default)]
    pub request: RequestJson,
    /// Replaces the file's candidates for this case.
    pub candidates: Option<Vec<CandidateJson>>,
    /// Replaces the file's config (wholly) for this case.
    pub config: Option<BTreeMap<String, String>>,
    /// The expected decision.
    pub expect: ExpectJson,
}

/// A case file could not be read or parsed.
#[derive(Debug, thiserror::Error)]
pub enum CaseFileError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid JSON of the case-file shape.
    #[error("{path}: {source}")]
    Parse {
        /// The file.
        path: String,
        /// Where and what (serde's line and column).
        source: serde_json::Error,
    },
}

impl CaseFile {
    /// Reads and parses a case file.
    pub fn load(path: &Path) -> Result<CaseFile, CaseFileError> {
        let bytes = crate::files::read_regular(path, None).map_err(|source| CaseFileError::Io {
            path: path.display().to_string(),
            source,
        })?;
        serde_json::from_slice(&bytes).map_err(|source| CaseFileError::Parse {
            path: path.display().to_string(),
            source,
        })
    }
}

/// The result of one case.
#[derive(Debug, Clone)]
pub struct CaseResult {
    /// The case's name.
    pub name: String,
    /// Whether the decision met the expectation.
    pub passed: bool,
    /// For a failure: what was expected and what came back, as JSON.
    pub detail: Option<String>,
}

impl fmt::Display for CaseResult {
    /// `ok   name` or `FAIL name: expected … got …`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.detail, self.passed) {
            (_, true) => write!(f, "ok   {}", self.name),
            (Some(detail), false) => write!(f, "FAIL {}: {detail}", self.name),
            (None, false) => write!(f, "FAIL {}", self.name),
        }
    }
}

/// Least deadline a recorded case runs under. Cases check behaviour, not speed:
/// each case instantiates afresh (about 1 ms for a JS or Python guest, many
/// times that on a loaded machine), which must not fail a case that would pass
/// under the policy's own, tighter deadline. A looping policy still ends.
pub const CASE_DEADLINE: Duration = Duration::from_secs(2);

/// Runs every case of `file` against `policy`, in order. Each case runs on a
/// fresh instance with its own config, so no guest state leaks between cases,
/// under the policy's deadline or [`CASE_DEADLINE`], whichever is longer.
/// Counters start at zero for each run and carry over from one case to the
/// next, so a file can walk a budget down case by case; the live counters are
/// never read or moved.
pub async fn run_cases(policy: &Policy, file: &CaseFile) -> Vec<CaseResult> {
    let mut results = Vec::with_capacity(file.cases.len());
    let settings = PolicySettings {
        deadline: policy.settings().deadline.max(CASE_DEADLINE),
        ..policy.settings().clone()
    };
    let counters: Arc<dyn CounterStore> = Arc::new(InMemoryCounters::default());
    for case in &file.cases {
        let config = case.config.as_ref().unwrap_or(&file.config).clone();
        let (catalog, candidates) =
            json::candidates(case.candidates.as_ref().unwrap_or(&file.candidates));
        let request = Arc::new(case.request.clone().into());
        let decided = policy
            .with_counters(settings.clone(), config, counters.clone())
            .decide(&request, &catalog, &candidates)
            .await;
        results.push(judge(case, &catalog, decided));
    }
    results
}

fn judge(case: &Case, catalog: &Catalog, decided: Result<Decision, PolicyError>) -> CaseResult {
    let expected = serde_json::to_string(&case.expect).unwrap_or_default();
    let detail = match decided.map(|d| DecisionJson::new(&d, catalog)) {
        Ok(decision) if case.expect.matches(&decision) => None,
        Ok(decision) => Some(format!(
            "expected {expected} got {}",
            serde_json::to_string(&decision).unwrap_or_default()
        )),
        Err(err) => Some(format!(
            "expected {expected} got error: {} ({})",
            err.message, err.kind
        )),
    };
    CaseResult {
        name: case.name.clone(),
        passed: detail.is_none(),
        detail,
    }
}

/// One `decide` on the built-in sample request and candidates (see
/// [`samples`]); the policy must return a valid decision. Run before a new
/// policy version is installed, on a copy with counters of its own (a reload
/// must not move a live budget) and its own instance.
pub async fn canary(policy: &Policy) -> Result<Decision, PolicyError> {
    let (catalog, candidates) = samples::candidates();
    let counters: Arc<dyn CounterStore> = Arc::new(InMemoryCounters::default());
    policy
        .with_counters(policy.settings().clone(), policy.config().clone(), counters)
        .decide(&Arc::new(samples::request()), &catalog, &candidates)
        .await
}
