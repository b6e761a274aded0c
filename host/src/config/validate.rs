//! Parsing with line numbers, then whole-config checks.

use std::collections::HashSet;
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use super::error::Location;
use super::{
    ClientConfig, Config, ConfigError, EngineConfig, PolicyConfig, ProviderKind, RouteConfig,
    ServerConfig, UpstreamAuth, UpstreamConfig,
};

/// The config as parsed, with the span of every array-of-tables entry.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SpannedConfig {
    #[serde(default)]
    server: ServerConfig,
    #[serde(default)]
    engine: EngineConfig,
    #[serde(default)]
    client: Vec<Spanned<ClientConfig>>,
    #[serde(default)]
    upstream: Vec<Spanned<UpstreamConfig>>,
    #[serde(default)]
    policy: Vec<Spanned<PolicyConfig>>,
    #[serde(default)]
    route: Vec<Spanned<RouteConfig>>,
}

/// Parses TOML into a [`Config`], recording each entry's line.
pub(super) fn parse_with_lines(text: &str, source: Option<&Path>) -> Result<Config, ConfigError> {
    let raw: SpannedConfig = toml::from_str(text).map_err(|err| {
        let offset = err.span().map(|span| span.start);
        ConfigError::Parse {
            location: locate(text, source, offset),
            message: err.message().trim().to_string(),
        }
    })?;
    fn with_lines<T>(text: &str, entries: Vec<Spanned<T>>, set: fn(&mut T, usize)) -> Vec<T> {
        entries
            .into_iter()
            .map(|entry| {
                let line = line_of(text, entry.span().start);
                let mut value = entry.into_inner();
                set(&mut value, line);
                value
            })
            .collect()
    }
    Ok(Config {
        server: raw.server,
        engine: raw.engine,
        clients: with_lines(text, raw.client, |c, l| c.line = l),
        upstreams: with_lines(text, raw.upstream, |u, l| u.line = l),
        policies: with_lines(text, raw.policy, |p, l| p.line = l),
        routes: with_lines(text, raw.route, |r, l| r.line = l),
        source: None,
    })
}

fn line_of(text: &str, offset: usize) -> usize {
    let offset = offset.min(text.len());
    text.as_bytes()[..offset]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

fn locate(text: &str, source: Option<&Path>, offset: Option<usize>) -> Location {
    let (line, column) = match offset {
        Some(offset) => {
            let offset = offset.min(text.len());
            let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
            (line_of(text, offset), offset - line_start + 1)
        }
        None => (0, 0),
    };
    Location {
        file: source.map(Path::to_path_buf),
        line,
        column,
    }
}

/// Collects the first problem found, with its location.
struct Checker<'a> {
    source: Option<&'a Path>,
}

impl Checker<'_> {
    fn fail(&self, line: usize, key: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            location: Location {
                file: self.source.map(Path::to_path_buf),
                line,
                column: 0,
            },
            key: key.into(),
            message: message.into(),
        }
    }
}

/// Whole-config checks that serde cannot express.
pub(super) fn check(
    config: &Config,
    _text: &str,
    source: Option<&Path>,
) -> Result<(), ConfigError> {
    let c = Checker { source };
    check_server(&c, config)?;
    check_clients(&c, &config.clients)?;
    check_upstreams(&c, &config.upstreams)?;
    check_policies(&c, config)?;
    check_routes(&c, config)?;
    Ok(())
}

/// Most client connections `max_connections` may allow: far beyond what one
/// process can hold open, and within what the accept loop's semaphore can count.
const MAX_CONNECTIONS: usize = 10_000_000;

fn check_server(c: &Checker, config: &Config) -> Result<(), ConfigError> {
    let s = &config.server;
    let positive = [
        ("server.max_request_body_bytes", s.max_request_body_bytes),
        ("server.max_header_count", s.max_header_count as u64),
        ("server.max_header_bytes", s.max_header_bytes as u64),
        ("server.max_connections", s.max_connections as u64),
        (
            "server.h2_max_concurrent_streams",
            u64::from(s.h2_max_concurrent_streams),
        ),
        // A zero timeout would fail every request, not disable the timer.
        ("server.header_read_timeout_ms", s.header_read_timeout_ms),
        ("server.body_read_timeout_ms", s.body_read_timeout_ms),
        ("server.h2_idle_timeout_ms", s.h2_idle_timeout_ms),
        ("server.send_timeout_ms", s.send_timeout_ms),
        ("server.connect_timeout_ms", s.connect_timeout_ms),
        ("server.first_byte_timeout_ms", s.first_byte_timeout_ms),
        ("server.response_timeout_ms", s.response_timeout_ms),
        ("server.idle_timeout_ms", s.idle_timeout_ms),
    ];
    if let Some((key, _)) = positive.iter().find(|(_, value)| *value == 0) {
        return Err(c.fail(0, *key, "must be greater than 0"));
    }
    if s.max_connections > MAX_CONNECTIONS {
        return Err(c.fail(
            0,
            "server.max_connections",
            format!("must be at most {MAX_CONNECTIONS}"),
        ));
    }
    if config.engine.max_instances == 0 || config.engine.max_memory_mib == 0 {
        return Err(c.fail(
            0,
            "engine",
            "max_instances and max_memory_mib must be greater than 0",
        ));
    }
    Ok(())
}

fn check_clients(c: &Checker, clients: &[ClientConfig]) -> Result<(), ConfigError> {
    let mut keys = HashSet::new();
    for client in clients {
        let key = format!("client \"{}\".key_sha256", client.name);
        let digest = client.key_sha256.trim();
        if digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(c.fail(
                client.line,
                key,
                "must be 64 hex digits (the SHA-256 of the key)",
            ));
        }
        if !keys.insert(digest.to_ascii_lowercase()) {
            return Err(c.fail(client.line, key, "the same key is configured twice"));
        }
    }
    Ok(())
}

fn check_upstreams(c: &Checker, upstreams: &[UpstreamConfig]) -> Result<(), ConfigError> {
    let mut names = HashSet::new();
    for up in upstreams {
        let at = |field: &str| format!("upstream \"{}\".{field}", up.name);
        // Names go into the x-switchyard-upstream header and metric labels.
        if !is_plain_name(&up.name) {
            return Err(c.fail(
                up.line,
                "upstream.name",
                format!("{:?}: must be letters, digits, '-', '_' or '.'", up.name),
            ));
        }
        if !names.insert(up.name.as_str()) {
            return Err(c.fail(up.line, at("name"), "another upstream has this name"));
        }
        if up.models.is_empty() {
            return Err(c.fail(
                up.line,
                at("models"),
                "an upstream must serve at least one model",
            ));
        }
        if let Some(endpoint) = &up.endpoint {
            let ok = endpoint.parse::<http::Uri>().ok().filter(|uri| {
                matches!(uri.scheme_str(), Some("http" | "https")) && uri.host().is_some()
            });
            if ok.is_none() {
                return Err(c.fail(
                    up.line,
                    at("endpoint"),
                    "must be an http:// or https:// URL",
                ));
            }
        }
        for (model, cfg) in &up.models {
            let valid = |price: f64| price.is_finite() && price >= 0.0;
            if !valid(cfg.input_per_mtok) || !valid(cfg.output_per_mtok) {
                return Err(c.fail(
                    up.line,
                    at(&format!("models.\"{model}\"")),
                    "prices must be finite numbers, 0 or more",
                ));
            }
        }
        for (field, timeout) in [
            ("connect_timeout_ms", up.connect_timeout_ms),
            ("first_byte_timeout_ms", up.first_byte_timeout_ms),
            ("response_timeout_ms", up.response_timeout_ms),
        ] {
            if timeout == Some(0) {
                return Err(c.fail(up.line, at(field), "must be greater than 0"));
            }
        }
        let auth = up.effective_auth();
        match (up.provider, auth) {
            (ProviderKind::AzureOpenai, _) if up.endpoint.is_none() => {
                return Err(c.fail(
                    up.line,
                    at("endpoint"),
                    "azure-openai needs the resource endpoint",
                ));
            }
            (ProviderKind::Bedrock, _) if up.endpoint.is_none() && up.region.is_empty() => {
                return Err(c.fail(
                    up.line,
                    at("region"),
                    "bedrock needs a region (or an endpoint)",
                ));
            }
            (ProviderKind::Bedrock, UpstreamAuth::Sigv4) if up.region.is_empty() => {
                return Err(c.fail(up.line, at("region"), "SigV4 signing needs the region"));
            }
            (p, UpstreamAuth::Sigv4) if p != ProviderKind::Bedrock => {
                return Err(c.fail(up.line, at("auth"), "sigv4 is only for bedrock upstreams"));
            }
            (p, UpstreamAuth::Entra) if p != ProviderKind::AzureOpenai => {
                return Err(c.fail(
                    up.line,
                    at("auth"),
                    "entra is only for azure-openai upstreams",
                ));
            }
            (_, UpstreamAuth::ApiKey | UpstreamAuth::Entra)
                if up.api_key_env.is_none() && up.api_key_file.is_none() =>
            {
                return Err(c.fail(
                    up.line,
                    at("api_key_env"),
                    "name the environment variable (or with api_key_file, the file) that holds the key",
                ));
            }
            _ => {}
        }
        check_credential_sources(c, up, auth)?;
        match (&up.mock, up.provider) {
            (Some(_), p) if p != ProviderKind::Mock => {
                return Err(c.fail(
                    up.line,
                    at("mock"),
                    "only mock upstreams take mock settings",
                ));
            }
            (Some(mock), _) if !(0.0..=1.0).contains(&mock.error_rate) => {
                return Err(c.fail(
                    up.line,
                    at("mock.error_rate"),
                    "must be between 0.0 and 1.0",
                ));
            }
            (Some(mock), _) if !(100..=599).contains(&mock.error_status) => {
                return Err(c.fail(up.line, at("mock.error_status"), "must be an HTTP status"));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Each credential key names one source, and only where `auth` reads it.
fn check_credential_sources(
    c: &Checker,
    up: &UpstreamConfig,
    auth: UpstreamAuth,
) -> Result<(), ConfigError> {
    let at = |field: &str| format!("upstream \"{}\".{field}", up.name);
    let keyed = matches!(auth, UpstreamAuth::ApiKey | UpstreamAuth::Entra);
    for (field, path) in [
        ("api_key_file", &up.api_key_file),
        ("aws_credentials_file", &up.aws_credentials_file),
    ] {
        if path.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
            return Err(c.fail(up.line, at(field), "must name a file"));
        }
    }
    if up
        .aws_profile
        .as_deref()
        .is_some_and(|p| p.trim().is_empty())
    {
        return Err(c.fail(up.line, at("aws_profile"), "must name a profile"));
    }
    if up.api_key_file.is_some() && up.api_key_env.is_some() {
        return Err(c.fail(
            up.line,
            at("api_key_file"),
            "name the key's environment variable or its file, not both",
        ));
    }
    if up.api_key_file.is_some() && !keyed {
        return Err(c.fail(
            up.line,
            at("api_key_file"),
            "only auth = \"api-key\" or \"entra\" reads a key file",
        ));
    }
    if up.aws_credentials_file.is_some() && auth != UpstreamAuth::Sigv4 {
        return Err(c.fail(
            up.line,
            at("aws_credentials_file"),
            "only auth = \"sigv4\" reads AWS credentials",
        ));
    }
    if up.aws_profile.is_some() && up.aws_credentials_file.is_none() {
        return Err(c.fail(
            up.line,
            at("aws_profile"),
            "a profile is read from aws_credentials_file; name the file too",
        ));
    }
    Ok(())
}

/// A name that reads the same in a header, a metric label and a log line:
/// letters, digits, `-`, `_` and `.`, at least one.
fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn check_policies(c: &Checker, config: &Config) -> Result<(), ConfigError> {
    let mut names = HashSet::new();
    for policy in &config.policies {
        let at = |field: &str| format!("policy \"{}\".{field}", policy.name);
        // Names go into the x-switchyard-policy header and metric labels.
        if !is_plain_name(&policy.name) {
            return Err(c.fail(
                policy.line,
                "policy.name",
                format!(
                    "{:?}: must be letters, digits, '-', '_' or '.'",
                    policy.name
                ),
            ));
        }
        if !names.insert(policy.name.as_str()) {
            return Err(c.fail(policy.line, at("name"), "another policy has this name"));
        }
        if policy.deadline_ms == 0 {
            return Err(c.fail(policy.line, at("deadline_ms"), "must be greater than 0"));
        }
        if policy.memory_limit_mib == 0 || policy.memory_limit_mib > config.engine.max_memory_mib {
            return Err(c.fail(
                policy.line,
                at("memory_limit_mib"),
                format!(
                    "must be between 1 and engine.max_memory_mib ({})",
                    config.engine.max_memory_mib
                ),
            ));
        }
        if policy.max_uses == 0 {
            return Err(c.fail(policy.line, at("max_uses"), "must be greater than 0"));
        }
    }
    Ok(())
}

fn check_routes(c: &Checker, config: &Config) -> Result<(), ConfigError> {
    let policies: HashSet<&str> = config.policies.iter().map(|p| p.name.as_str()).collect();
    let mut names = HashSet::new();
    for route in &config.routes {
        let at = |field: &str| format!("route \"{}\".{field}", route.name);
        if !names.insert(route.name.as_str()) {
            return Err(c.fail(route.line, at("name"), "another route has this name"));
        }
        if !route.path_prefix.starts_with('/') {
            return Err(c.fail(route.line, at("path_prefix"), "must start with '/'"));
        }
        for name in route.headers.keys() {
            if http::HeaderName::try_from(name.as_str()).is_err() {
                return Err(c.fail(
                    route.line,
                    at("headers"),
                    format!("{name:?} is not a valid header name"),
                ));
            }
        }
        for glob in &route.models {
            if let Err(err) = globset::Glob::new(glob) {
                return Err(c.fail(
                    route.line,
                    at("models"),
                    format!("bad glob {glob:?}: {}", err.kind()),
                ));
            }
        }
        let mut seen = HashSet::new();
        for name in &route.policies {
            if !policies.contains(name.as_str()) {
                return Err(c.fail(
                    route.line,
                    at("policies"),
                    format!("no [[policy]] named {name:?}"),
                ));
            }
            if !seen.insert(name.as_str()) {
                return Err(c.fail(
                    route.line,
                    at("policies"),
                    format!("{name:?} appears twice in the chain"),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
