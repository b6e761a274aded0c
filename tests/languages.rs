//! Policies in JavaScript, Python and C: the `compliance` rule built from
//! policies/compliance-{js,py,c}/ passes the shared policies/compliance/cases.json
//! through the real `switchyard policy test`, and a real gateway serves routes
//! through each of them to loopback upstreams.
//!
//! The components come from `policies/build.sh DIR c js python`, in
//! `$SWITCHYARD_GUESTS_EXTRA` (set by `.ci/run`) or else `target/guests-all`.
//! When they are missing the tests say how to build them and are skipped
//! locally; under CI (`CI` set) they fail instead. Two JS test policies,
//! tests/fixtures/js/compliance-async.js and throws.js, are built there too
//! (as `NAME-js.wasm`, by `.ci/run`).
//!
//! A JS or Python guest takes seconds to compile, so every guest is compiled
//! once: the `policy test` runs fill one compile cache (in parallel), and the
//! gateway loads the components from it.

#[path = "support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use serde_json::Value;
use sha2::Digest;
use support::upstream::{Reply, Upstream};
use support::{TestGateway, chat, client, repo_root};

/// The languages, as `(policy folder suffix, what the test calls it)`.
const LANGUAGES: [(&str, &str); 3] = [("js", "JavaScript"), ("py", "Python"), ("c", "C")];

/// Where `policies/build.sh` put the non-Rust guests, when all three are there.
/// `None` (locally only): the caller skips.
fn guests_dir() -> Option<PathBuf> {
    let (dir, from_env) = match std::env::var_os("SWITCHYARD_GUESTS_EXTRA") {
        Some(dir) => (PathBuf::from(dir), true),
        None => {
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| repo_root().join("target"));
            (target.join("guests-all"), false)
        }
    };
    let missing: Vec<String> = LANGUAGES
        .iter()
        .map(|(suffix, _)| dir.join(format!("compliance-{suffix}.wasm")))
        .filter(|file| !file.is_file())
        .map(|file| file.display().to_string())
        .collect();
    if missing.is_empty() {
        return Some(dir);
    }
    let how = format!(
        "missing {}; build them with `policies/build.sh {} c js python` \
         (or set SWITCHYARD_GUESTS_EXTRA to where they are)",
        missing.join(", "),
        dir.display()
    );
    assert!(
        std::env::var_os("CI").is_none() && !from_env,
        "non-Rust guests: {how} (.ci/run does this in CI)"
    );
    eprintln!("skipped: {how}");
    None
}

/// A compile cache shared by every test in this file, as an `XDG_CACHE_HOME`
/// (the engine caches in its `switchyard/` folder).
fn cache_home() -> &'static Path {
    static CACHE: OnceLock<tempfile::TempDir> = OnceLock::new();
    CACHE.get_or_init(|| tempfile::tempdir().unwrap()).path()
}

/// `switchyard policy test` of each language's build against the shared cases,
/// run once (the three in parallel) and shared by the tests: it also compiles
/// each guest into the cache.
fn policy_test_runs(guests: &Path) -> &'static [(&'static str, Output)] {
    static RUNS: OnceLock<Vec<(&'static str, Output)>> = OnceLock::new();
    RUNS.get_or_init(|| {
        let cases = repo_root().join("policies/compliance/cases.json");
        let runs: Vec<_> = LANGUAGES
            .iter()
            .map(|&(suffix, _)| {
                let child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
                    .args(["policy", "test"])
                    .arg(guests.join(format!("compliance-{suffix}.wasm")))
                    .arg(&cases)
                    .env("XDG_CACHE_HOME", cache_home())
                    .env("RUST_LOG", "warn")
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .expect("running switchyard policy test");
                (suffix, child)
            })
            .collect();
        runs.into_iter()
            .map(|(suffix, child)| (suffix, child.wait_with_output().unwrap()))
            .collect()
    })
}

/// Asserts that a `switchyard policy test` run against
/// policies/compliance/cases.json passed every case, each reported `ok`.
fn assert_passes_every_case(language: &str, out: &Output) {
    let cases: Value = serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("policies/compliance/cases.json")).unwrap(),
    )
    .unwrap();
    let expected = cases
        .as_array()
        .or_else(|| cases["cases"].as_array())
        .expect("cases.json holds a list of cases")
        .len();
    assert!(expected >= 8, "only {expected} shared cases");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{language}: policy test failed:\n{stdout}\n{stderr}"
    );
    let last = stdout.lines().last().unwrap_or_default();
    assert_eq!(
        last,
        format!("{expected} passed, 0 failed"),
        "{language}:\n{stdout}"
    );
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("ok   ")).count(),
        expected,
        "{language}:\n{stdout}"
    );
}

#[test]
fn every_language_passes_the_shared_compliance_cases() {
    let Some(guests) = guests_dir() else { return };
    for (suffix, out) in policy_test_runs(&guests) {
        let language = LANGUAGES.iter().find(|(s, _)| s == suffix).unwrap().1;
        assert_passes_every_case(language, out);
    }
}

/// The JS test policy tests/fixtures/js/NAME.js, built into the guests folder
/// as `NAME-js.wasm` by `.ci/run`. `None` (locally only) when it is missing:
/// the caller skips.
fn js_fixture(guests: &Path, name: &str) -> Option<PathBuf> {
    let wasm = guests.join(format!("{name}-js.wasm"));
    if wasm.is_file() {
        return Some(wasm);
    }
    let how = format!(
        "missing {}; build it with `node guest-sdk/js/componentize.mjs policies/compliance-js \
         tests/fixtures/js/{name}.js wit {}` after `policies/build.sh {} js`",
        wasm.display(),
        wasm.display(),
        guests.display()
    );
    assert!(
        std::env::var_os("CI").is_none(),
        "{how} (.ci/run does this)"
    );
    eprintln!("skipped: {how}");
    None
}

/// The `compliance` rule as an `async decide` that awaits before it reads the
/// request (tests/fixtures/js/compliance-async.js): the JS glue's path for a
/// promise result, which keeps the request borrowed across the await. Built
/// into the guests folder by `.ci/run`; locally skipped when absent.
#[test]
fn an_async_js_decide_passes_the_shared_compliance_cases() {
    let Some(guests) = guests_dir() else { return };
    let Some(wasm) = js_fixture(&guests, "compliance-async") else {
        return;
    };
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["policy", "test"])
        .arg(&wasm)
        .arg(repo_root().join("policies/compliance/cases.json"))
        .env("XDG_CACHE_HOME", cache_home())
        .env("RUST_LOG", "warn")
        .output()
        .expect("running switchyard policy test");
    assert_passes_every_case("JavaScript, async decide", &out);
}

/// Runs `switchyard policy ARGS` with the shared compile cache; the first
/// run of a component compiles it into the cache.
fn policy_cli(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .arg("policy")
        .args(args)
        .env("XDG_CACHE_HOME", cache_home())
        .env("RUST_LOG", "warn")
        .output()
        .expect("running switchyard policy")
}

/// tests/fixtures/js/throws.js, compiled into the shared cache once (both
/// tests below need it).
fn throws_fixture(guests: &Path) -> Option<PathBuf> {
    static CHECKED: OnceLock<Output> = OnceLock::new();
    let wasm = js_fixture(guests, "throws")?;
    let out = CHECKED.get_or_init(|| policy_cli(&["check".as_ref(), wasm.as_os_str()]));
    assert!(
        out.status.success(),
        "policy check {}:\n{}",
        wasm.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    Some(wasm)
}

/// What a JavaScript policy throws (tests/fixtures/js/throws.js, in each of
/// its ways) is named in the trap report of `policy test` and `policy eval`,
/// as a Python guest's exception is. The component has no stdio: its glue
/// logs the error (`Uncaught …`) at `error` level before the instance traps,
/// and the host keeps a call's error lines for the report.
#[test]
fn a_thrown_js_error_is_named_in_the_trap_report() {
    let Some(guests) = guests_dir() else { return };
    let Some(wasm) = throws_fixture(&guests) else {
        return;
    };
    // The `x-throw` header picks the failure; each case expects a route, so
    // each failing one prints the error it got.
    let reports = [
        (
            "error",
            "Uncaught Error: no upstream for tenant eu-bank \
             (at pickFor@tests/fixtures/js/throws.js:",
        ),
        ("string", "Uncaught a thrown string"),
        (
            "async",
            "Uncaught TypeError: rejected after an await (at decide/<@tests/fixtures/js/throws.js:",
        ),
        (
            "chatty",
            "Uncaught RangeError: thrown after 40 log lines (at decide@tests/fixtures/js/throws.js:",
        ),
        (
            "bad-decision",
            "Uncaught TypeError: invalid variant tag value `\"rout\"` \
             (received `[object Object]`) specified for `Decision`",
        ),
    ];
    let case = |mode: &str| {
        serde_json::json!({
            "name": mode,
            "request": { "model": "gpt-4o", "tenant": "eu-bank", "headers": { "x-throw": mode } },
            "expect": { "route": { "targets": ["a", "b"] } },
        })
    };
    let cases: Vec<Value> = std::iter::once(case("none"))
        .chain(reports.iter().map(|(mode, _)| case(mode)))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let cases_file = dir.path().join("cases.json");
    let file = serde_json::json!({
        "candidates": [{ "upstream": "a" }, { "upstream": "b" }],
        "cases": cases,
    });
    std::fs::write(&cases_file, file.to_string()).unwrap();

    let out = policy_cli(&["test".as_ref(), wasm.as_os_str(), cases_file.as_os_str()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stdout.contains("ok   none"), "{stdout}");
    for (mode, report) in reports {
        let line = stdout
            .lines()
            .find(|line| line.starts_with(&format!("FAIL {mode}: ")))
            .unwrap_or_else(|| panic!("no FAIL line for {mode}:\n{stdout}"));
        assert!(
            line.contains(&format!(
                "got error: wasm trap: wasm `unreachable` instruction executed in decide; \
                 guest output: {report}"
            )) && line.ends_with(" (trap)"),
            "{mode}: {line}"
        );
    }
    assert_eq!(
        stdout.lines().last(),
        Some("1 passed, 5 failed"),
        "{stdout}"
    );

    // `policy eval` prints the guest's error line as it is logged, then the
    // failure, which names it.
    let request = dir.path().join("request.json");
    std::fs::write(
        &request,
        r#"{"model":"gpt-4o","tenant":"eu-bank","headers":{"x-throw":"error"}}"#,
    )
    .unwrap();
    let out = policy_cli(&[
        "eval".as_ref(),
        wasm.as_os_str(),
        "--request".as_ref(),
        request.as_os_str(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    let report = reports[0].1;
    assert!(
        stderr.contains(&format!("ERROR switchyard::policy::guest: {report}")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "failed (trap): wasm trap: wasm `unreachable` instruction executed in decide; \
             guest output: {report}"
        )),
        "{stderr}"
    );
}

/// The gateway's log names what a JavaScript policy threw, from `decide` (the
/// request gets 503 `policy_error`) and from `observe`, and the next call is
/// served by a fresh instance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_logs_what_a_js_policy_threw() {
    let Some(guests) = guests_dir() else { return };
    let Some(wasm) = tokio::task::spawn_blocking(move || throws_fixture(&guests))
        .await
        .unwrap()
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("switchyard.toml");
    std::fs::write(
        &config,
        format!(
            r#"[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"

[engine]
cache_dir = "{cache}"

[[upstream]]
name = "sim"
provider = "mock"
models = {{ "gpt-4o" = {{}} }}

[[policy]]
name = "throws-js"
file = "{file}"
config = {{ observe = "throw" }}
deadline_ms = 5000

[[route]]
name = "chat"
policies = ["throws-js"]
"#,
            cache = cache_home().join("switchyard").display(),
            file = wasm.display(),
        ),
    )
    .unwrap();
    let gw = tokio::task::spawn_blocking(move || {
        support::BinaryGateway::spawn(&config, &[("RUST_LOG", "warn")])
    })
    .await
    .unwrap();
    let http = client();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !http
        .get(format!("{}/readyz", gw.admin_url()))
        .send()
        .await
        .is_ok_and(|r| r.status() == 200)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "not ready:\n{}",
            gw.logs()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let send = |throw: Option<&'static str>| {
        let mut req = http
            .post(format!("{}/v1/chat/completions", gw.url()))
            .json(&chat("gpt-4o"));
        if let Some(throw) = throw {
            req = req.header("x-throw", throw);
        }
        req.send()
    };

    let res = send(Some("error")).await.unwrap();
    assert_eq!(res.status(), 503);
    let json: Value = res.json().await.unwrap();
    assert_eq!(json["error"]["code"], "policy_error", "{json}");
    let res = send(None).await.unwrap();
    assert_eq!(res.status(), 200, "{}", gw.logs());

    let thrown = "ERROR switchyard::policy::guest: Uncaught Error: no upstream for tenant none \
                  (at pickFor@tests/fixtures/js/throws.js:";
    let observed = "guest output: Uncaught Error: cannot record a 200 \
                    (at observe@tests/fixtures/js/throws.js:";
    loop {
        let logs = gw.logs();
        if logs.contains(thrown)
            && logs
                .lines()
                .any(|l| l.contains("policy observe failed") && l.contains(observed))
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "expected {thrown:?} and an observe failure with {observed:?} in:\n{logs}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// A gateway with one route per language (picked by the `x-policy-language`
/// header), each through that language's compliance policy; an EU and a US
/// upstream both serve `gpt-4o`, only the US one serves `gpt-4o-mini`.
fn gateway_toml(guests: &Path, us: &Upstream, eu: &Upstream) -> String {
    let key = |k: &str| hex::encode(sha2::Sha256::digest(k.as_bytes()));
    let mut toml = format!(
        r#"
[engine]
cache_dir = "{cache}"

[[client]]
name = "bank"
key_sha256 = "{eu_key}"
tenant = "eu-bank"

[[client]]
name = "shop"
key_sha256 = "{us_key}"
tenant = "us-retail"

[[upstream]]
name = "us-east"
provider = "openai"
endpoint = "{us}"
jurisdiction = "us"
api_key_env = "KEY"
models = {{ "gpt-4o" = {{}}, "gpt-4o-mini" = {{}} }}

[[upstream]]
name = "eu-west"
provider = "openai"
endpoint = "{eu}"
jurisdiction = "eu"
api_key_env = "KEY"
models = {{ "gpt-4o" = {{}} }}
"#,
        cache = cache_home().join("switchyard").display(),
        eu_key = key("sk-bank"),
        us_key = key("sk-shop"),
        us = us.url(),
        eu = eu.url(),
    );
    for (suffix, _) in LANGUAGES {
        toml.push_str(&format!(
            r#"
[[policy]]
name = "compliance-{suffix}"
file = "{file}"
config = {{ eu_tenants = "eu-insurer, eu-bank" }}
# Behaviour, not speed: a loaded machine must not fail the first (cold) call.
deadline_ms = 5000

[[route]]
name = "chat-{suffix}"
headers = {{ "x-policy-language" = "{suffix}" }}
policies = ["compliance-{suffix}"]
"#,
            file = guests.join(format!("compliance-{suffix}.wasm")).display(),
        ));
    }
    toml
}

/// Status, serving upstream and JSON body of one chat completion.
async fn ask(
    gw: &TestGateway,
    language: &str,
    key: &str,
    model: &str,
    residency: Option<&str>,
) -> (u16, Option<String>, Value) {
    let mut req = client()
        .post(format!("{}/v1/chat/completions", gw.url()))
        .header("authorization", format!("Bearer {key}"))
        .header("x-policy-language", language)
        .json(&chat(model));
    if let Some(residency) = residency {
        req = req.header("x-data-residency", residency);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let upstream = res
        .headers()
        .get("x-switchyard-upstream")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, upstream, res.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_routes_through_each_language() {
    let Some(guests) = guests_dir() else { return };
    // Compiles every guest into the shared cache (once for the whole file).
    let runs = tokio::task::spawn_blocking({
        let guests = guests.clone();
        move || policy_test_runs(&guests)
    })
    .await
    .unwrap();
    assert!(runs.iter().all(|(_, out)| out.status.success()));

    let us = Upstream::always(Reply::completion("gpt-4o", 10, 5)).await;
    let eu = Upstream::always(Reply::completion("gpt-4o", 10, 5)).await;
    let gw = TestGateway::start(&gateway_toml(&guests, &us, &eu), &[("KEY", "sk-up")]).await;

    let mut us_hits = 0;
    let mut eu_hits = 0;
    for (suffix, language) in LANGUAGES {
        // An EU tenant is served by the EU upstream, though the US one comes first.
        let (status, upstream, json) = ask(&gw, suffix, "sk-bank", "gpt-4o", None).await;
        assert_eq!(status, 200, "{language}: {json}");
        assert_eq!(upstream.as_deref(), Some("eu-west"), "{language}");
        eu_hits += 1;

        // No EU upstream serves the model: the policy's rejection reaches the client.
        let (status, upstream, json) = ask(&gw, suffix, "sk-bank", "gpt-4o-mini", None).await;
        assert_eq!(status, 403, "{language}: {json}");
        assert_eq!(json["error"]["code"], "residency_violation", "{language}");
        let message = json["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("eu-bank") && message.contains("gpt-4o-mini"),
            "{language}: {message}"
        );
        assert_eq!(upstream, None, "{language}");

        // Other tenants pass through in config order...
        let (status, upstream, json) = ask(&gw, suffix, "sk-shop", "gpt-4o", None).await;
        assert_eq!(status, 200, "{language}: {json}");
        assert_eq!(upstream.as_deref(), Some("us-east"), "{language}");
        us_hits += 1;

        // ...unless the request asks for EU residency.
        let (status, upstream, json) = ask(&gw, suffix, "sk-shop", "gpt-4o", Some("Eu")).await;
        assert_eq!(status, 200, "{language}: {json}");
        assert_eq!(upstream.as_deref(), Some("eu-west"), "{language}");
        eu_hits += 1;

        assert_eq!((us.hits(), eu.hits()), (us_hits, eu_hits), "{language}");
    }
    gw.stop().await;
}
