//! `switchyard demo`: the gateway with simulated Azure, Bedrock and OpenAI
//! upstreams and the example policies, ready to try with curl or the OpenAI SDK.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use switchyard::guests::EXAMPLES;

/// Arguments of `switchyard demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Client listener.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Admin listener (metrics, health, admin API).
    #[arg(long, default_value = "127.0.0.1:9090")]
    pub admin_listen: SocketAddr,
    /// Where to write the demo's config and policies (default: a new private
    /// directory under the temp dir, kept after the demo ends).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// Writes the demo config and policies, prints how to try it, and serves until Ctrl-C.
pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    let dir = match args.dir {
        Some(dir) => dir,
        // A predictable name in a shared /tmp would let another user plant a
        // config the demo then loads (and hot-reloads): make a new 0700 one.
        None => tempfile::Builder::new()
            .prefix("switchyard-demo-")
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .tempdir()
            .context("creating the demo's directory")?
            .keep(),
    };
    let config_path = write_demo(&dir, args.listen, args.admin_listen)?;
    let instructions = || print_instructions(&config_path, args.listen, args.admin_listen);
    super::serve::runtime()?.block_on(super::serve::serve_config(&config_path, instructions))
}

/// Writes the example policies and a config using them into `dir`.
pub fn write_demo(
    dir: &Path,
    listen: SocketAddr,
    admin_listen: SocketAddr,
) -> anyhow::Result<PathBuf> {
    let policies = dir.join("policies");
    std::fs::create_dir_all(&policies)
        .with_context(|| format!("creating {}", policies.display()))?;
    for (name, wasm) in EXAMPLES {
        let path = policies.join(format!("{name}.wasm"));
        std::fs::write(&path, wasm).with_context(|| format!("writing {}", path.display()))?;
    }
    let config = DEMO_CONFIG
        .replace("{listen}", &listen.to_string())
        .replace("{admin_listen}", &admin_listen.to_string())
        .replace("{eu_key_sha256}", &sha256_hex(DEMO_EU_KEY))
        .replace("{us_key_sha256}", &sha256_hex(DEMO_US_KEY));
    let path = dir.join("switchyard.toml");
    std::fs::write(&path, config).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

fn sha256_hex(key: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(key.as_bytes()))
}

/// Demo client keys: not secrets, printed for the user to paste.
const DEMO_EU_KEY: &str = "sk-demo-eu-bank";
const DEMO_US_KEY: &str = "sk-demo-us-retail";

fn print_instructions(config: &Path, listen: SocketAddr, admin: SocketAddr) {
    let base = format!("http://{listen}");
    let body = r#"{"model":"gpt-4o","messages":[{"role":"user","content":"Hello!"}]}"#;
    let stream_body =
        r#"{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"Hello!"}]}"#;
    println!(
        r#"
Switchyard demo: every upstream below is SIMULATED (in-process mock provider).
  azure-eastus, azure-swedencentral (Azure OpenAI), bedrock-us-east-1, bedrock-eu-central-1
  (Bedrock), openai (OpenAI). Config and policies: {config}
  Edit the config, or replace a .wasm in its policies/ folder: it reloads without a restart.

Routes (pick one with the x-demo-route header; the default route chains compliance → cost):
  x-demo-route: azure-first   Azure first, others as fallback
  x-demo-route: cost          cheapest candidate for this request first
  (none)                      compliance (EU tenants stay in the EU) then cost

Try it:
  # US tenant, default chain: cheapest upstream wins
  curl -s {base}/v1/chat/completions -H 'authorization: Bearer {us}' \
       -H 'content-type: application/json' -d '{body}' -D - 

  # EU tenant: only EU upstreams are candidates
  curl -s {base}/v1/chat/completions -H 'authorization: Bearer {eu}' \
       -H 'content-type: application/json' -d '{body}' -D - 

  # Azure first, streamed
  curl -sN {base}/v1/chat/completions -H 'authorization: Bearer {us}' -H 'x-demo-route: azure-first' \
       -H 'content-type: application/json' -d '{stream_body}'

  # The OpenAI SDK (pip install openai):
  python3 -c "from openai import OpenAI; c = OpenAI(base_url='{base}/v1', api_key='{eu}'); \
print(c.chat.completions.create(model='gpt-4o', messages=[{{'role':'user','content':'Hi'}}]).choices[0].message.content)"

  # Operations
  curl -s http://{admin}/metrics | grep switchyard_requests_total
  curl -s http://{admin}/admin/policies
  curl -s http://{admin}/admin/upstreams

Press Ctrl-C to stop.
"#,
        config = config.display(),
        us = DEMO_US_KEY,
        eu = DEMO_EU_KEY,
    );
}

const DEMO_CONFIG: &str = r#"# Switchyard demo config: all upstreams are simulated.
[server]
listen = "{listen}"
admin_listen = "{admin_listen}"

[[client]]
name = "eu-bank"
key_sha256 = "{eu_key_sha256}"   # sha256 of "sk-demo-eu-bank"
tenant = "eu-bank"

[[client]]
name = "us-retail"
key_sha256 = "{us_key_sha256}"   # sha256 of "sk-demo-us-retail"
tenant = "us-retail"

[[upstream]]
name = "azure-eastus"
provider = "mock"
region = "eastus"
jurisdiction = "us"
tags = ["simulated"]
mock = { simulates = "azure-openai", latency_ms = 40, jitter_ms = 20, stream_chunks = 8, chunk_interval_ms = 30 }
models = { "gpt-4o" = { model = "gpt4o-prod", input_per_mtok = 2.5, output_per_mtok = 10.0 }, "gpt-4o-mini" = { model = "gpt4o-mini-prod", input_per_mtok = 0.15, output_per_mtok = 0.6 } }

[[upstream]]
name = "azure-swedencentral"
provider = "mock"
region = "swedencentral"
jurisdiction = "eu"
tags = ["simulated"]
mock = { simulates = "azure-openai", latency_ms = 60, jitter_ms = 20, stream_chunks = 8, chunk_interval_ms = 30 }
models = { "gpt-4o" = { model = "gpt4o-eu", input_per_mtok = 2.75, output_per_mtok = 11.0 } }

[[upstream]]
name = "bedrock-us-east-1"
provider = "mock"
region = "us-east-1"
jurisdiction = "us"
tags = ["simulated"]
mock = { simulates = "bedrock", latency_ms = 50, jitter_ms = 30, error_rate = 0.05, error_status = 503, stream_chunks = 8, chunk_interval_ms = 30 }
models = { "gpt-4o" = { model = "openai.gpt-4o", input_per_mtok = 2.4, output_per_mtok = 9.5 }, "gpt-oss-120b" = { model = "openai.gpt-oss-120b-1:0", input_per_mtok = 0.15, output_per_mtok = 0.6 } }

[[upstream]]
name = "bedrock-eu-central-1"
provider = "mock"
region = "eu-central-1"
jurisdiction = "eu"
tags = ["simulated"]
mock = { simulates = "bedrock", latency_ms = 70, jitter_ms = 30, stream_chunks = 8, chunk_interval_ms = 30 }
models = { "gpt-4o" = { model = "eu.openai.gpt-4o", input_per_mtok = 2.6, output_per_mtok = 10.4 }, "gpt-oss-120b" = { model = "eu.openai.gpt-oss-120b-1:0", input_per_mtok = 0.17, output_per_mtok = 0.66 } }

[[upstream]]
name = "openai"
provider = "mock"
region = "global"
jurisdiction = "us"
tags = ["simulated"]
mock = { simulates = "openai", latency_ms = 80, jitter_ms = 40, stream_chunks = 8, chunk_interval_ms = 30 }
models = { "gpt-4o" = { input_per_mtok = 2.5, output_per_mtok = 10.0 }, "gpt-4o-mini" = { input_per_mtok = 0.15, output_per_mtok = 0.6 } }

[[policy]]
name = "compliance"
file = "policies/compliance.wasm"
on_error = "fail-closed"
config = { eu_tenants = "eu-bank" }

[[policy]]
name = "cost"
file = "policies/cost.wasm"
on_error = "fail-open"

[[policy]]
name = "azure-first"
file = "policies/azure-first.wasm"
on_error = "fail-open"

[[route]]
name = "azure-first"
headers = { "x-demo-route" = "azure-first" }
policies = ["compliance", "azure-first"]

[[route]]
name = "cost"
headers = { "x-demo-route" = "cost" }
policies = ["cost"]

[[route]]
name = "default"
policies = ["compliance", "cost"]
"#;
