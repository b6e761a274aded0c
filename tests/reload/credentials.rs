//! Rotated credentials: an upstream key in a Kubernetes-style Secret volume and
//! AWS session credentials rewritten by a credential helper are picked up by the
//! running gateway, under traffic, without a restart and without a failed
//! request; a rotation that leaves an unusable file keeps the last good
//! credentials for that upstream without holding back any other change; and a
//! new token is not held back by the failures its expired predecessor caused.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::reload::fixture::{Traffic, sample};
use crate::support::upstream::{Recorded, Reply, Upstream};
use crate::support::{BinaryGateway, client};

/// Generous: a reload under load on a busy 2-core machine; never a timing claim.
const PATIENCE: Duration = Duration::from_secs(20);

/// An upstream that accepts the credentials `valid` holds (as `credential`
/// reads them off a request) and answers anything else 401, as a provider does
/// once a key is revoked.
async fn upstream_accepting(
    valid: Arc<Mutex<Vec<String>>>,
    credential: fn(&Recorded) -> Option<String>,
) -> Upstream {
    Upstream::start(move |request| {
        let shown = credential(request).unwrap_or_default();
        if valid.lock().unwrap().contains(&shown) {
            Reply::completion("gpt-4o", 5, 5)
        } else {
            Reply::error(401, vec![])
        }
    })
    .await
}

/// Starts the binary on loopback ports with `upstreams` (TOML `[[upstream]]`
/// blocks) as `dir/switchyard.toml`.
async fn gateway(dir: &Path, upstreams: String) -> BinaryGateway {
    let path = dir.join("switchyard.toml");
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\n{upstreams}"
    );
    std::fs::write(&path, config).unwrap();
    tokio::task::spawn_blocking(move || BinaryGateway::spawn(&path, &[]))
        .await
        .unwrap()
}

/// Polls until the upstream's last request carried `wanted`.
async fn wait_for_credential(
    upstream: &Upstream,
    gateway: &BinaryGateway,
    credential: fn(&Recorded) -> Option<String>,
    wanted: &str,
) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let last = upstream.received().last().and_then(credential);
        if last.as_deref() == Some(wanted) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{wanted} never reached the upstream (last: {last:?}); logs:\n{}",
            gateway.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Once requests that began before the reload are done, revokes the first
/// credential; from then on every request must carry the new one (a request
/// with the old one would fail and show in the traffic's failures).
async fn revoke_old_and_keep_serving(upstream: &Upstream, valid: &Mutex<Vec<String>>) {
    let wait_hits = |n: usize| {
        let target = upstream.hits() + n;
        async move {
            while upstream.hits() < target {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    wait_hits(20).await;
    valid.lock().unwrap().remove(0);
    wait_hits(50).await;
}

/// The value of one exact series on `/metrics`.
async fn metric(gateway: &BinaryGateway, series: &str) -> f64 {
    let text = client()
        .get(format!("{}/metrics", gateway.admin_url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    sample(&text, series)
}

/// `switchyard_policy_reloads_total{result}` (config and file reloads alike).
async fn reloads(gateway: &BinaryGateway, result: &str) -> u64 {
    let series = format!("switchyard_policy_reloads_total{{result=\"{result}\"}}");
    metric(gateway, &series).await as u64
}

/// A Secret volume's layout: `key` → `..data/key`, `..data` → a versioned
/// directory, swapped atomically for a new one on each rotation.
fn secret_volume_version(volume: &Path, version: u32, key: &str) {
    let dir = volume.join(format!("..v{version}"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("key"), format!("{key}\n")).unwrap();
    let link = volume.join("..data_tmp");
    std::os::unix::fs::symlink(format!("..v{version}"), &link).unwrap();
    std::fs::rename(&link, volume.join("..data")).unwrap();
    if !volume.join("key").exists() {
        std::os::unix::fs::symlink("..data/key", volume.join("key")).unwrap();
    }
}

fn bearer(request: &Recorded) -> Option<String> {
    let value = request.header("authorization")?;
    Some(value.strip_prefix("Bearer ")?.to_string())
}

/// `GET /admin/upstreams`' entry for `name`.
async fn upstream_view(gateway: &BinaryGateway, name: &str) -> serde_json::Value {
    let view: serde_json::Value = client()
        .get(format!("{}/admin/upstreams", gateway.admin_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    view["upstreams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == name)
        .unwrap()
        .clone()
}

/// Polls `GET /admin/upstreams` until `check` holds for upstream `name`.
async fn wait_for_view(
    gateway: &BinaryGateway,
    name: &str,
    check: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let view = upstream_view(gateway, name).await;
        if check(&view) {
            return view;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name}: {view}; logs:\n{}",
            gateway.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One chat request for `model`: its status.
async fn ask(gateway: &BinaryGateway, model: &str) -> u16 {
    client()
        .post(format!("{}/v1/chat/completions", gateway.url()))
        .json(&crate::support::chat(model))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Writes `text` to a temporary name and renames it over `path`.
fn replace_file(path: &Path, text: &str) {
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, text).unwrap();
    std::fs::rename(&temporary, path).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_key_file_is_used_without_a_restart_or_a_failed_request() {
    let dir = tempfile::tempdir().unwrap();
    let volume = dir.path().join("secrets");
    std::fs::create_dir(&volume).unwrap();
    secret_volume_version(&volume, 1, "sk-first-canary");
    let other_key = dir.path().join("other-key");
    replace_file(&other_key, "sk-other-1-canary");
    // As a provider rotating keys: the old and new are both valid for a while.
    let valid = Arc::new(Mutex::new(vec![
        "sk-first-canary".to_string(),
        "sk-other-1-canary".to_string(),
        "sk-other-2-canary".to_string(),
    ]));
    let upstream = upstream_accepting(valid.clone(), bearer).await;
    let config = format!(
        r#"[[upstream]]
name = "primary"
provider = "openai"
endpoint = "{url}"
api_key_file = "secrets/key"
models = {{ "gpt-4o" = {{}} }}

[[upstream]]
name = "other"
provider = "openai"
endpoint = "{url}"
api_key_file = "other-key"
models = {{ "gpt-4o-mini" = {{}} }}
"#,
        url = upstream.url()
    );
    let gateway = gateway(dir.path(), config).await;
    let traffic = Traffic::start(gateway.url(), 4);
    wait_for_credential(&upstream, &gateway, bearer, "sk-first-canary").await;

    // The volume briefly holds an empty key: "primary" keeps the key it has,
    // and says so, and the rest of the config still reloads: the other
    // upstream's rotation is installed meanwhile.
    secret_volume_version(&volume, 2, "");
    let view = wait_for_view(&gateway, "primary", |v| v["stale_credentials"].is_string()).await;
    let why = view["stale_credentials"].as_str().unwrap();
    assert!(
        why.contains("secrets/key") && why.contains("empty"),
        "{why}"
    );
    let stale = "switchyard_upstream_stale_credentials{upstream=\"primary\"}";
    assert_eq!(metric(&gateway, stale).await, 1.0);
    replace_file(&other_key, "sk-other-2-canary\n");
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        assert_eq!(ask(&gateway, "gpt-4o-mini").await, 200);
        let last = upstream
            .received()
            .into_iter()
            .rev()
            .find(|r| r.json()["model"] == "gpt-4o-mini");
        if last.as_ref().and_then(bearer).as_deref() == Some("sk-other-2-canary") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{}", gateway.logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(reloads(&gateway, "error").await, 0, "{}", gateway.logs());

    valid.lock().unwrap().push("sk-second-canary".to_string());
    secret_volume_version(&volume, 3, "sk-second-canary");
    wait_for_credential(&upstream, &gateway, bearer, "sk-second-canary").await;
    wait_for_view(&gateway, "primary", |v| v["stale_credentials"].is_null()).await;
    assert_eq!(metric(&gateway, stale).await, 0.0);
    revoke_old_and_keep_serving(&upstream, &valid).await;
    let traffic = traffic.stop().await;

    let failures = traffic.failures.lock().unwrap().clone();
    assert!(failures.is_empty(), "{failures:?}\n{}", gateway.logs());
    let logs = gateway.logs();
    assert!(!logs.contains("canary"), "a key reached the log:\n{logs}");
    assert!(logs.contains("keeps the previous ones"), "{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_token_is_not_held_back_by_the_failures_of_the_expired_one() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("entra-token");
    replace_file(&token, "expired-token");
    let valid = Arc::new(Mutex::new(vec!["fresh-token".to_string()]));
    let upstream = upstream_accepting(valid, bearer).await;
    let config = format!(
        r#"[[upstream]]
name = "azure"
provider = "azure-openai"
endpoint = "{}"
auth = "entra"
api_key_file = "entra-token"
models = {{ "gpt-4o" = {{ deployment = "gpt4o" }} }}
"#,
        upstream.url()
    );
    let gateway = gateway(dir.path(), config).await;
    // The expired token's 401s trip the upstream into its unhealthy cooldown.
    for _ in 0..3 {
        assert_eq!(ask(&gateway, "gpt-4o").await, 502);
    }
    let view = upstream_view(&gateway, "azure").await;
    assert_eq!(view["health"], "unhealthy", "{view}");

    // The sidecar writes a fresh token: the upstream is healthy at once, not
    // after a cooldown earned by a token it no longer sends.
    replace_file(&token, "fresh-token");
    let view = wait_for_view(&gateway, "azure", |v| v["health"] == "healthy").await;
    assert_eq!(view["cooldown_remaining_ms"], 0, "{view}");
    assert_eq!(ask(&gateway, "gpt-4o").await, 200);
    assert_eq!(
        upstream.received().last().and_then(bearer).as_deref(),
        Some("fresh-token")
    );
}

/// The access key id of a SigV4 `Authorization`, and the session token.
fn aws_identity(request: &Recorded) -> Option<String> {
    let authorization = request.header("authorization")?;
    let credential = authorization.split("Credential=").nth(1)?;
    let key_id = credential.split('/').next()?;
    let token = request.header("x-amz-security-token").unwrap_or("-");
    Some(format!("{key_id} {token}"))
}

/// An AWS shared credentials file as a credential helper writes it: to a
/// temporary name, then renamed into place.
fn write_aws_credentials(path: &Path, key_id: &str, token: &str) {
    replace_file(
        path,
        &format!(
            "[other]\naws_access_key_id = AKIDOTHER\naws_secret_access_key = other\n\n\
             [bedrock]\naws_access_key_id = {key_id}\n\
             aws_secret_access_key = secret-{key_id}\naws_session_token = {token}\n"
        ),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refreshed_aws_session_credentials_are_signed_with_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("aws-credentials");
    write_aws_credentials(&file, "ASIAFIRST", "token-one");
    let valid = Arc::new(Mutex::new(vec!["ASIAFIRST token-one".to_string()]));
    let upstream = upstream_accepting(valid.clone(), aws_identity).await;
    let config = format!(
        r#"[[upstream]]
name = "bedrock"
provider = "bedrock"
region = "eu-central-1"
endpoint = "{}"
auth = "sigv4"
aws_credentials_file = "{}"
aws_profile = "bedrock"
models = {{ "gpt-4o" = {{ model_id = "openai.gpt-oss-120b-1:0" }} }}
"#,
        upstream.url(),
        file.display()
    );
    let gateway = gateway(dir.path(), config).await;
    let traffic = Traffic::start(gateway.url(), 4);
    wait_for_credential(&upstream, &gateway, aws_identity, "ASIAFIRST token-one").await;

    // The helper refreshes the session: new key id, secret and token together.
    valid
        .lock()
        .unwrap()
        .push("ASIASECOND token-two".to_string());
    write_aws_credentials(&file, "ASIASECOND", "token-two");
    wait_for_credential(&upstream, &gateway, aws_identity, "ASIASECOND token-two").await;
    revoke_old_and_keep_serving(&upstream, &valid).await;
    let traffic = traffic.stop().await;

    let failures = traffic.failures.lock().unwrap().clone();
    assert!(failures.is_empty(), "{failures:?}\n{}", gateway.logs());
    let logs = gateway.logs();
    for secret in ["secret-ASIA", "token-one", "token-two"] {
        assert!(!logs.contains(secret), "{secret} reached the log:\n{logs}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_credentials_directory_removed_and_made_again_is_followed() {
    let dir = tempfile::tempdir().unwrap();
    // Away from the config's directory, whose watch would see it made again.
    let elsewhere = tempfile::tempdir().unwrap();
    let creds = elsewhere.path().join("creds");
    std::fs::create_dir(&creds).unwrap();
    replace_file(&creds.join("key"), "sk-one");
    let valid = Arc::new(Mutex::new(vec![
        "sk-one".to_string(),
        "sk-two".to_string(),
        "sk-three".to_string(),
    ]));
    let upstream = upstream_accepting(valid, bearer).await;
    let config = format!(
        r#"[[upstream]]
name = "primary"
provider = "openai"
endpoint = "{}"
api_key_file = "{}"
models = {{ "gpt-4o" = {{}} }}
"#,
        upstream.url(),
        creds.join("key").display()
    );
    let gateway = gateway(dir.path(), config).await;
    let traffic = Traffic::start(gateway.url(), 2);
    wait_for_credential(&upstream, &gateway, bearer, "sk-one").await;

    // The directory goes (its watch with it): the key it had keeps serving.
    std::fs::remove_dir_all(&creds).unwrap();
    wait_for_view(&gateway, "primary", |v| v["stale_credentials"].is_string()).await;
    // Made again, with no event the watch could see: the periodic look finds
    // the new key (within `poll`, 10 s) and watches the new directory...
    std::fs::create_dir(&creds).unwrap();
    replace_file(&creds.join("key"), "sk-two");
    wait_for_credential(&upstream, &gateway, bearer, "sk-two").await;
    // ...so the next change is an event again.
    replace_file(&creds.join("key"), "sk-three");
    wait_for_credential(&upstream, &gateway, bearer, "sk-three").await;
    let traffic = traffic.stop().await;
    let failures = traffic.failures.lock().unwrap().clone();
    assert!(failures.is_empty(), "{failures:?}\n{}", gateway.logs());
}
