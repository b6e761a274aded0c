//! `switchyard policy check|eval|test`, run as the real binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");
const GUESTS: &str = env!("SWITCHYARD_GUESTS_DIR");

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Runs the binary with a private compile cache.
fn switchyard(args: &[&str], cache: &Path) -> Output {
    Command::new(BIN)
        .args(args)
        .env("XDG_CACHE_HOME", cache)
        .env("RUST_LOG", "warn")
        .output()
        .expect("running switchyard")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn guest(name: &str) -> String {
    format!("{GUESTS}/{name}.wasm")
}

#[test]
fn the_example_policies_pass_their_recorded_cases() {
    let cache = tempfile::tempdir().unwrap();
    for name in ["azure-first", "cost", "compliance", "prefer-eu"] {
        let cases = repo().join("policies").join(name).join("cases.json");
        assert!(cases.is_file(), "{} is missing", cases.display());
        let out = switchyard(
            &["policy", "test", &guest(name), cases.to_str().unwrap()],
            cache.path(),
        );
        let stdout = text(&out.stdout);
        assert!(
            out.status.success(),
            "{name}:\n{stdout}\n{}",
            text(&out.stderr)
        );
        let last = stdout.lines().last().unwrap_or_default();
        assert!(
            last.ends_with(" passed, 0 failed"),
            "{name}: last line {last:?}"
        );
        let passed: usize = last.split(' ').next().unwrap().parse().unwrap();
        assert!(passed >= 8, "{name}: only {passed} cases");
        assert_eq!(
            stdout.lines().filter(|l| l.starts_with("ok   ")).count(),
            passed,
            "{stdout}"
        );
    }
}

/// The README's first policy is `policies/prefer-eu`, which the build compiles
/// and the test above runs against its cases: the snippet cannot rot.
#[test]
fn the_readme_first_policy_is_the_prefer_eu_example() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let section = readme
        .split("## Write your first policy (Rust)")
        .nth(1)
        .expect("README has the section");
    let snippet = section
        .split("```rust\n")
        .nth(1)
        .and_then(|rest| rest.split("```\n").next())
        .expect("the section opens with a Rust block");
    let source = std::fs::read_to_string(repo().join("policies/prefer-eu/src/lib.rs")).unwrap();
    assert_eq!(
        snippet, source,
        "README and policies/prefer-eu/src/lib.rs differ"
    );
}

#[test]
fn check_prints_the_contract_and_hash() {
    let cache = tempfile::tempdir().unwrap();
    let out = switchyard(&["policy", "check", &guest("hostile")], cache.path());
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("switchyard:policy@0.1.0"), "{stdout}");
    let hash = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("hash"))
        .expect("a hash line")
        .trim()
        .to_owned();
    let hash8 = &hash[..8];
    assert!(hash8.chars().all(|c| c.is_ascii_hexdigit()), "{stdout}");
    assert!(stdout.contains("compiled in"), "{stdout}");
    // The second check finds the compiled artifact in the cache.
    let again = text(&switchyard(&["policy", "check", &guest("hostile")], cache.path()).stdout);
    assert!(again.contains("loaded from the compile cache"), "{again}");
}

#[test]
fn check_refuses_a_file_that_is_not_a_component() {
    let dir = tempfile::tempdir().unwrap();
    let bogus = dir.path().join("policy.wasm");
    std::fs::write(&bogus, "this is a text file, not a policy").unwrap();
    let out = switchyard(&["policy", "check", bogus.to_str().unwrap()], dir.path());
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("not a WebAssembly component"), "{stderr}");
    assert!(stderr.contains("policy.wasm"), "{stderr}");

    let core = dir.path().join("core.wasm");
    std::fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
    let stderr = text(&switchyard(&["policy", "check", core.to_str().unwrap()], dir.path()).stderr);
    assert!(stderr.contains("core WebAssembly module"), "{stderr}");
}

#[test]
fn eval_prints_the_decision_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let request = dir.path().join("request.json");
    std::fs::write(&request, r#"{"model":"gpt-4o","headers":{"X-Trace":"1"}}"#).unwrap();
    let args = |extra: &[&str]| {
        let mut args = vec![
            "policy",
            "eval",
            GUESTS_HOSTILE.as_str(),
            "--request",
            request.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        args.into_iter().map(str::to_owned).collect::<Vec<_>>()
    };
    let run = |extra: &[&str]| {
        let args = args(extra);
        switchyard(
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
            dir.path(),
        )
    };

    // The built-in sample candidates.
    let out = run(&["--config", "mode=ok"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let decision: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(
        decision["route"]["targets"],
        serde_json::json!([
            "azure-eastus",
            "azure-westeurope",
            "bedrock-eu-central-1",
            "openai"
        ])
    );

    // Candidates from a file.
    let candidates = dir.path().join("candidates.json");
    std::fs::write(
        &candidates,
        r#"[{"upstream":"x"},{"upstream":"y","provider":"bedrock"}]"#,
    )
    .unwrap();
    let out = run(&["--candidates", candidates.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let decision: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(decision["route"]["targets"], serde_json::json!(["x", "y"]));
    assert_eq!(
        decision["route"]["retry_on"],
        serde_json::json!(["connect-error", "timeout", "rate-limited", "server-error"])
    );

    // A failing policy: non-zero exit, the failure kind on stderr.
    let out = run(&["--config", "mode=bad-status"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("invalid-decision"),
        "{}",
        text(&out.stderr)
    );
}

static GUESTS_HOSTILE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| guest("hostile"));

#[test]
fn test_reports_each_case_and_fails_when_one_fails() {
    let dir = tempfile::tempdir().unwrap();
    let cases = dir.path().join("cases.json");
    std::fs::write(
        &cases,
        r#"{
          "candidates": [{"upstream": "a"}, {"upstream": "b"}],
          "config": {"mode": "ok"},
          "cases": [
            {"name": "routes in order", "expect": {"route": {"targets": ["a", "b"], "reason": "ok"}}},
            {"name": "wrong order", "expect": {"route": {"targets": ["b", "a"]}}},
            {"name": "per-case config", "config": {"mode": "bad-status"},
             "expect": {"reject": {"status": 403, "code": "x"}}}
          ]
        }"#,
    )
    .unwrap();
    let out = switchyard(
        &["policy", "test", &guest("hostile"), cases.to_str().unwrap()],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{stdout}");
    assert_eq!(lines[0], "ok   routes in order");
    assert!(
        lines[1].starts_with("FAIL wrong order: expected "),
        "{stdout}"
    );
    assert!(
        lines[1].contains(r#"got {"route":{"targets":["a","b"]"#),
        "{stdout}"
    );
    assert!(
        lines[2].starts_with("FAIL per-case config: expected "),
        "{stdout}"
    );
    assert!(lines[2].contains("invalid-decision"), "{stdout}");
    assert_eq!(lines[3], "1 passed, 2 failed");
}

#[test]
fn config_check_names_missing_credential_files_and_reads_none() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("present-key"), "sk-canary-present").unwrap();
    let config = dir.path().join("gw.toml");
    std::fs::write(
        &config,
        r#"[[upstream]]
name = "a"
provider = "openai"
api_key_file = "present-key"
models = { "m" = {} }

[[upstream]]
name = "b"
provider = "azure-openai"
endpoint = "https://b.openai.azure.com"
auth = "entra"
api_key_file = "tokens/missing"
models = { "m" = { deployment = "d" } }
"#,
    )
    .unwrap();
    let out = switchyard(&["config", "check", config.to_str().unwrap()], dir.path());
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("warning: credential file")
            && stdout.contains("tokens/missing")
            && !stdout.contains("present-key does not exist"),
        "{stdout}"
    );
    assert!(!stdout.contains("canary"), "{stdout}");
}
