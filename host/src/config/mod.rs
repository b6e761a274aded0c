//! The gateway's TOML configuration: the shape users write, loaded and validated.
//!
//! [`Config::load`] reads a file, parses it and checks it as a whole (unique names,
//! known policies, valid globs, providers' required keys). Errors name the file, the
//! line and the key, so `switchyard config check` can print them as they are.

mod error;
mod validate;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use error::ConfigError;

/// A whole gateway configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Listeners and client-facing limits.
    #[serde(default)]
    pub server: ServerConfig,
    /// Policy engine settings shared by every policy.
    #[serde(default)]
    pub engine: EngineConfig,
    /// Gateway keys that clients present; empty turns client auth off.
    #[serde(default, rename = "client")]
    pub clients: Vec<ClientConfig>,
    /// Upstreams, in config order (the order candidates are seeded in).
    #[serde(default, rename = "upstream")]
    pub upstreams: Vec<UpstreamConfig>,
    /// Policy components.
    #[serde(default, rename = "policy")]
    pub policies: Vec<PolicyConfig>,
    /// Routes, matched first to last.
    #[serde(default, rename = "route")]
    pub routes: Vec<RouteConfig>,
    /// The file this config was read from; relative paths in it resolve against
    /// its directory.
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

/// `[server]`: listeners, limits and timeouts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Client-facing listener.
    pub listen: SocketAddr,
    /// Admin listener (metrics, health, admin API). Keep it on loopback.
    pub admin_listen: SocketAddr,
    /// Name of the environment variable holding the admin API bearer token; none
    /// means the admin API is open to whoever reaches `admin_listen`.
    pub admin_token_env: Option<String>,
    /// Largest request body accepted (413 `body_too_large` beyond it).
    pub max_request_body_bytes: u64,
    /// Most request headers accepted (431 beyond it).
    pub max_header_count: usize,
    /// Largest total size of request headers in bytes (431 beyond it).
    pub max_header_bytes: usize,
    /// Time a client has to send its request headers.
    pub header_read_timeout_ms: u64,
    /// Time a client has to send its request body, from the request's arrival
    /// (408 `request_timeout` beyond it): a client that declares a body and
    /// goes quiet must not hold a connection slot for ever.
    pub body_read_timeout_ms: u64,
    /// Most concurrent client connections; further ones wait in the accept queue.
    pub max_connections: usize,
    /// HTTP/2 concurrent streams per client connection.
    pub h2_max_concurrent_streams: u32,
    /// HTTP/2 streams a client may open and reset before the gateway accepts them
    /// ("rapid reset", CVE-2023-44487); beyond it the connection gets a GOAWAY.
    pub h2_max_pending_accept_reset_streams: usize,
    /// HTTP/2 streams the gateway may reset for protocol errors on one connection
    /// before it sends a GOAWAY (CVE-2024-2758 style floods).
    pub h2_max_local_error_reset_streams: usize,
    /// An HTTP/2 client connection on which no request has started or been
    /// answered for this long gets a GOAWAY (responses still streaming finish):
    /// a client that only answers pings must not hold a connection slot for
    /// ever. (An idle HTTP/1.1 connection is bounded by `header_read_timeout_ms`.)
    pub h2_idle_timeout_ms: u64,
    /// Longest a client may leave the response unread (the gateway's writes
    /// to it not accepted at all) before its connection is closed, with every
    /// request on it, so that the upstream work it holds is released.
    pub send_timeout_ms: u64,
    /// Default time to establish an upstream connection (including TLS).
    pub connect_timeout_ms: u64,
    /// Default time from sending an upstream request to its first response
    /// byte, for streamed completions and embeddings.
    pub first_byte_timeout_ms: u64,
    /// Default time from sending a non-streamed chat completion to its first
    /// response byte: the provider answers only once the whole completion is
    /// generated, which takes minutes for long or reasoning answers.
    pub response_timeout_ms: u64,
    /// Longest gap between two body chunks of an upstream response once streaming.
    pub idle_timeout_ms: u64,
    /// On SIGTERM/SIGINT, how long in-flight requests may take to finish.
    pub drain_timeout_ms: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 9090)),
            admin_token_env: None,
            max_request_body_bytes: 10 * 1024 * 1024,
            max_header_count: 100,
            max_header_bytes: 64 * 1024,
            header_read_timeout_ms: 10_000,
            body_read_timeout_ms: 60_000,
            max_connections: 10_000,
            h2_max_concurrent_streams: 256,
            h2_max_pending_accept_reset_streams: 64,
            h2_max_local_error_reset_streams: 256,
            h2_idle_timeout_ms: 180_000,
            send_timeout_ms: 60_000,
            connect_timeout_ms: 2_000,
            first_byte_timeout_ms: 60_000,
            response_timeout_ms: 600_000,
            idle_timeout_ms: 60_000,
            drain_timeout_ms: 30_000,
        }
    }
}

/// `[engine]`: the WebAssembly engine shared by all policies.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    /// Directory for compiled policy artifacts. In the file, a leading `~/` is
    /// the home directory, a relative path is relative to the config file (as
    /// policy `file`s are), and `""` turns the on-disk cache off (None).
    pub cache_dir: Option<PathBuf>,
    /// Most policy instances alive at once across all policies (pooling allocator slots).
    pub max_instances: u32,
    /// Largest linear memory any policy may be given, in MiB (the pooling slot size).
    pub max_memory_mib: u64,
    /// Writes `/tmp/perf-PID.map` so that `perf` can name the policies' compiled
    /// functions. For profiling only: the map grows with every policy loaded.
    pub perf_map: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            cache_dir: default_cache_dir(),
            max_instances: 1000,
            max_memory_mib: 1024,
            perf_map: false,
        }
    }
}

fn default_cache_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return Some(PathBuf::from(dir).join("switchyard"));
    }
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache").join("switchyard"))
}

/// `[[client]]`: one gateway key, stored as its SHA-256.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// A name for logs.
    pub name: String,
    /// Hex SHA-256 of the key the client sends as `Authorization: Bearer <key>`.
    pub key_sha256: String,
    /// The tenant the client's requests belong to (policies see it).
    pub tenant: Option<String>,
    /// Line of the entry in the config file.
    #[serde(skip)]
    pub line: usize,
}

/// The kind of provider an upstream is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProviderKind {
    /// OpenAI's API.
    Openai,
    /// Azure OpenAI.
    AzureOpenai,
    /// AWS Bedrock's OpenAI-compatible endpoint.
    Bedrock,
    /// The in-process simulated provider.
    Mock,
}

impl ProviderKind {
    /// The name used in config and labels.
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Openai => "openai",
            ProviderKind::AzureOpenai => "azure-openai",
            ProviderKind::Bedrock => "bedrock",
            ProviderKind::Mock => "mock",
        }
    }
}

/// How the gateway authenticates to an upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UpstreamAuth {
    /// The provider's API key from `api_key_env` or `api_key_file` (OpenAI and
    /// Bedrock: bearer; Azure: `api-key`).
    ApiKey,
    /// Azure: a Microsoft Entra token from `api_key_env` or `api_key_file`, sent
    /// as a bearer token.
    Entra,
    /// Bedrock: AWS SigV4 with credentials from the standard AWS environment
    /// variables or `aws_credentials_file`.
    Sigv4,
    /// No credentials (mock upstreams, private endpoints).
    None,
}

/// Azure OpenAI URL style.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AzureApiStyle {
    /// `{endpoint}/openai/deployments/{deployment}/chat/completions?api-version=…`
    #[default]
    Deployments,
    /// `{endpoint}/openai/v1/chat/completions`, deployment in the body's `model`.
    V1,
}

/// `[[upstream]]`: one provider endpoint and the models it serves.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Unique name; policies and metrics refer to the upstream by it.
    pub name: String,
    /// The provider kind.
    pub provider: ProviderKind,
    /// Base URL; defaults per provider (OpenAI's API, Bedrock's regional endpoint).
    pub endpoint: Option<String>,
    /// Environment variable holding the API key or token.
    pub api_key_env: Option<String>,
    /// File holding the API key or token instead (relative to the config
    /// file), re-read whenever it changes: for keys and Entra tokens that are
    /// rotated while the gateway runs.
    pub api_key_file: Option<PathBuf>,
    /// Bedrock SigV4: an AWS shared credentials file to read the credentials
    /// from instead of the `AWS_*` variables (relative to the config file),
    /// re-read whenever it changes.
    pub aws_credentials_file: Option<PathBuf>,
    /// The profile of `aws_credentials_file` (default `default`).
    pub aws_profile: Option<String>,
    /// How to authenticate; defaults to `api-key` (or `none` for mock).
    pub auth: Option<UpstreamAuth>,
    /// Azure `api-version` query parameter.
    pub api_version: Option<String>,
    /// Azure URL style.
    #[serde(default)]
    pub api_style: AzureApiStyle,
    /// Provider region (Bedrock: also the SigV4 signing region).
    #[serde(default)]
    pub region: String,
    /// Legal jurisdiction of the region, e.g. `us`, `eu`.
    #[serde(default)]
    pub jurisdiction: String,
    /// Free-form tags that policies see.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Client-facing model name → how this upstream serves it.
    #[serde(default)]
    pub models: BTreeMap<String, ModelConfig>,
    /// Overrides `[server] connect_timeout_ms` for this upstream.
    pub connect_timeout_ms: Option<u64>,
    /// Overrides `[server] first_byte_timeout_ms` for this upstream.
    pub first_byte_timeout_ms: Option<u64>,
    /// Overrides `[server] response_timeout_ms` for this upstream.
    pub response_timeout_ms: Option<u64>,
    /// Simulation settings for `provider = "mock"`.
    pub mock: Option<MockConfig>,
    /// Line of the entry in the config file.
    #[serde(skip)]
    pub line: usize,
}

impl UpstreamConfig {
    /// Whether the gateway asks this upstream for a stream's usage
    /// (`stream_options.include_usage`) when the client did not: OpenAI,
    /// Bedrock and Azure put usage in a stream only when asked. Not for Azure
    /// API versions before 2024-09-01, which refuse the option, nor for the
    /// simulated provider, which always sends usage.
    pub fn adds_stream_usage(&self) -> bool {
        match self.provider {
            ProviderKind::Mock => false,
            ProviderKind::AzureOpenai => self
                .api_version
                .as_deref()
                .is_none_or(|version| version >= "2024-09-01"),
            ProviderKind::Openai | ProviderKind::Bedrock => true,
        }
    }

    /// Whether `other` describes the same adapter: provider, endpoint,
    /// authentication and where its credentials come from, URL style and
    /// connect timeout. Models, prices, tags and response timeouts aside.
    pub fn same_adapter(&self, other: &UpstreamConfig) -> bool {
        self.provider == other.provider
            && self.endpoint == other.endpoint
            && self.effective_auth() == other.effective_auth()
            && self.api_key_env == other.api_key_env
            && self.api_key_file == other.api_key_file
            && self.aws_credentials_file == other.aws_credentials_file
            && self.aws_profile == other.aws_profile
            && self.api_version == other.api_version
            && self.api_style == other.api_style
            && self.region == other.region
            && self.connect_timeout_ms == other.connect_timeout_ms
    }

    /// The authentication in effect, with the provider's default filled in.
    pub fn effective_auth(&self) -> UpstreamAuth {
        match (self.auth, self.provider) {
            (Some(auth), _) => auth,
            (None, ProviderKind::Mock) => UpstreamAuth::None,
            (None, _) => UpstreamAuth::ApiKey,
        }
    }
}

/// How one upstream serves one client-facing model.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Azure deployment name.
    pub deployment: Option<String>,
    /// Bedrock model id, e.g. `openai.gpt-oss-120b-1:0`.
    pub model_id: Option<String>,
    /// Provider-side model name for OpenAI and mock upstreams.
    pub model: Option<String>,
    /// USD per million input tokens.
    #[serde(default)]
    pub input_per_mtok: f64,
    /// USD per million output tokens.
    #[serde(default)]
    pub output_per_mtok: f64,
}

impl ModelConfig {
    /// The provider-side model or deployment name, falling back to the client-facing one.
    pub fn upstream_model<'a>(&'a self, client_model: &'a str) -> &'a str {
        self.deployment
            .as_deref()
            .or(self.model_id.as_deref())
            .or(self.model.as_deref())
            .unwrap_or(client_model)
    }
}

/// `mock = { … }`: how a simulated upstream behaves.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MockConfig {
    /// Time to the response headers.
    pub latency_ms: u64,
    /// Uniform random extra latency, 0..=jitter_ms.
    pub jitter_ms: u64,
    /// Share of requests that fail with `error_status`, 0.0 to 1.0.
    pub error_rate: f64,
    /// Status of simulated failures.
    pub error_status: u16,
    /// Content chunks in a streamed answer.
    pub stream_chunks: u32,
    /// Time between streamed chunks.
    pub chunk_interval_ms: u64,
    /// Output tokens reported in `usage`.
    pub completion_tokens: u32,
    /// The provider kind policies see for this simulated upstream (default `mock`),
    /// so a demo can stand in for Azure, Bedrock or OpenAI.
    pub simulates: Option<ProviderKind>,
}

impl Default for MockConfig {
    fn default() -> Self {
        MockConfig {
            latency_ms: 0,
            jitter_ms: 0,
            error_rate: 0.0,
            error_status: 500,
            stream_chunks: 8,
            chunk_interval_ms: 0,
            completion_tokens: 16,
            simulates: None,
        }
    }
}

/// What a failing policy does to the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnError {
    /// Answer 503 `policy_error`.
    #[default]
    FailClosed,
    /// Skip the stage; its candidates pass through unchanged.
    FailOpen,
}

/// Whether a policy's instances are reused across requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Isolation {
    /// Warm instances are reused (guest globals persist between calls).
    #[default]
    Pooled,
    /// A fresh instance for every call.
    PerRequest,
}

/// `[[policy]]`: one policy component and its limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// Unique name; routes and metrics refer to the policy by it.
    pub name: String,
    /// Path to the component (`.wasm`), relative to the config file.
    pub file: PathBuf,
    /// What a failure of this policy does to the request.
    #[serde(default)]
    pub on_error: OnError,
    /// Wall-clock budget for one call.
    #[serde(default = "default_deadline_ms")]
    pub deadline_ms: u64,
    /// Linear memory cap per instance.
    #[serde(default = "default_memory_limit_mib")]
    pub memory_limit_mib: u64,
    /// Instance reuse.
    #[serde(default)]
    pub isolation: Isolation,
    /// Recycle a pooled instance after this many calls.
    #[serde(default = "default_max_uses")]
    pub max_uses: u64,
    /// Most idle warm instances kept for reuse.
    #[serde(default = "default_pool_size")]
    pub pool_size: usize,
    /// Recorded cases (`cases.json`) the policy must pass before it is installed.
    pub tests: Option<PathBuf>,
    /// The policy's own settings, read by the guest with `config(key)`.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    /// Line of the entry in the config file.
    #[serde(skip)]
    pub line: usize,
}

fn default_deadline_ms() -> u64 {
    50
}
fn default_memory_limit_mib() -> u64 {
    256
}
fn default_max_uses() -> u64 {
    10_000
}
fn default_pool_size() -> usize {
    16
}

/// `[[route]]`: which requests a policy chain serves.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Unique name, used in metrics and shown to policies.
    pub name: String,
    /// The request path must start with this.
    #[serde(default = "default_path_prefix")]
    pub path_prefix: String,
    /// Model globs (`*` and `?`); empty matches every model.
    #[serde(default)]
    pub models: Vec<String>,
    /// Headers the request must carry with exactly these values (`*`: any value).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The policy chain, in order; empty means config order with plain fallback.
    #[serde(default)]
    pub policies: Vec<String>,
    /// Labels passed to the policies.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Line of the entry in the config file.
    #[serde(skip)]
    pub line: usize,
}

fn default_path_prefix() -> String {
    "/v1/".to_string()
}

impl Config {
    /// Reads, parses and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(&text, Some(path))
    }

    /// Parses and validates config text; `source` names the file in errors and
    /// anchors relative paths.
    pub fn parse(text: &str, source: Option<&Path>) -> Result<Config, ConfigError> {
        let mut config = validate::parse_with_lines(text, source)?;
        config.source = source.map(Path::to_path_buf);
        config.engine.cache_dir = config
            .engine
            .cache_dir
            .take()
            .and_then(|dir| config.resolve_cache_dir(dir));
        for up in &mut config.upstreams {
            for file in [&mut up.api_key_file, &mut up.aws_credentials_file] {
                // An empty path stays empty, for validation to name.
                if let Some(path) = file.as_mut().filter(|p| !p.as_os_str().is_empty()) {
                    *path = resolve_against(source, expand_home(std::mem::take(path)));
                }
            }
        }
        validate::check(&config, text, source)?;
        Ok(config)
    }

    /// The keys whose values differ from `started`'s among those the gateway
    /// reads only when it starts: the listeners and their limits, the admin
    /// token, the drain timeout and the whole `[engine]`. A reload installs
    /// everything else; these need a restart.
    pub fn changes_needing_restart(&self, started: &Config) -> Vec<&'static str> {
        let mut changed = Vec::new();
        macro_rules! compare {
            ($table:ident: $($field:ident),+) => {$(
                if self.$table.$field != started.$table.$field {
                    changed.push(concat!(stringify!($table), ".", stringify!($field)));
                }
            )+};
        }
        compare!(server: listen, admin_listen, admin_token_env, max_header_count,
            max_header_bytes, header_read_timeout_ms, max_connections,
            h2_max_concurrent_streams, h2_max_pending_accept_reset_streams,
            h2_max_local_error_reset_streams, h2_idle_timeout_ms, send_timeout_ms,
            drain_timeout_ms);
        compare!(engine: cache_dir, max_instances, max_memory_mib, perf_map);
        changed
    }

    /// `cache_dir` as written in the file, made usable: see [`EngineConfig::cache_dir`].
    fn resolve_cache_dir(&self, dir: PathBuf) -> Option<PathBuf> {
        if dir.as_os_str().is_empty() {
            return None;
        }
        if dir.starts_with("~") && std::env::var_os("HOME").is_none() {
            // No home to expand to: fall back to the default place, not `./~`.
            return default_cache_dir();
        }
        Some(self.resolve_path(&expand_home(dir)))
    }

    /// The credential files the upstreams name (already resolved), which the
    /// file watch follows like the config itself.
    pub fn credential_files(&self) -> impl Iterator<Item = &Path> {
        self.upstreams.iter().flat_map(|up| {
            [&up.api_key_file, &up.aws_credentials_file]
                .into_iter()
                .flatten()
                .map(PathBuf::as_path)
        })
    }

    /// Resolves a path from the config against the config file's directory.
    pub fn resolve_path(&self, path: &Path) -> PathBuf {
        resolve_against(self.source.as_deref(), path.to_path_buf())
    }
}

/// `path` with a leading `~` replaced by `$HOME` (left as is without one).
fn expand_home(path: PathBuf) -> PathBuf {
    match (path.strip_prefix("~"), std::env::var_os("HOME")) {
        (Ok(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => path,
    }
}

/// `path`, when relative, joined to the directory of the config file `source`.
fn resolve_against(source: Option<&Path>, path: PathBuf) -> PathBuf {
    match source.and_then(Path::parent) {
        Some(dir) if path.is_relative() => dir.join(path),
        _ => path,
    }
}
