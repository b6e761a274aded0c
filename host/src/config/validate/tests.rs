//! Unit tests of config validation: each rule names the key at fault.

use std::path::PathBuf;

use super::*;

#[test]
fn parse_errors_name_the_line() {
    let err = Config::parse("[server]\nlisten = 12\n", Some(Path::new("gw.toml"))).unwrap_err();
    let text = err.to_string();
    assert!(text.starts_with("gw.toml:2"), "{text}");
}

#[test]
fn unknown_policy_in_route_names_route_line() {
    let toml = r#"
[[upstream]]
name = "m"
provider = "mock"
models = { "gpt-4o" = {} }

[[route]]
name = "chat"
policies = ["nope"]
"#;
    let err = Config::parse(toml, Some(Path::new("gw.toml"))).unwrap_err();
    assert_eq!(
        err.to_string(),
        "gw.toml:7: route \"chat\".policies: no [[policy]] named \"nope\""
    );
}

#[test]
fn unknown_keys_are_refused() {
    let err = Config::parse("[server]\nlisten_addr = \"x\"\n", None).unwrap_err();
    assert!(err.to_string().contains("unknown field"), "{err}");
}

#[test]
fn zero_timeouts_and_unbounded_limits_are_refused() {
    for (toml, key) in [
        (
            "[server]\nfirst_byte_timeout_ms = 0\n",
            "server.first_byte_timeout_ms",
        ),
        (
            "[server]\nheader_read_timeout_ms = 0\n",
            "server.header_read_timeout_ms",
        ),
        (
            "[server]\nmax_header_bytes = 0\n",
            "server.max_header_bytes",
        ),
        (
            "[server]\nmax_connections = 4611686018427387904\n",
            "server.max_connections",
        ),
    ] {
        let err = Config::parse(toml, None).unwrap_err().to_string();
        assert!(err.contains(key), "{toml}: {err}");
    }
    let toml = r#"
[[upstream]]
name = "m"
provider = "mock"
connect_timeout_ms = 0
models = { "gpt-4o" = {} }
"#;
    let err = Config::parse(toml, None).unwrap_err().to_string();
    assert!(err.contains("upstream \"m\".connect_timeout_ms"), "{err}");
}

#[test]
fn upstream_and_policy_names_and_route_header_names_are_checked() {
    let toml = r#"
[[policy]]
name = "coût"
file = "p.wasm"
"#;
    let err = Config::parse(toml, None).unwrap_err().to_string();
    assert!(err.contains("policy.name"), "{err}");
    for bad in ["azure east", "azure\\u000aeast", ""] {
        let toml = format!(
            "[[upstream]]\nname = \"{bad}\"\nprovider = \"mock\"\nmodels = {{ m = {{}} }}\n"
        );
        let err = Config::parse(&toml, None).unwrap_err().to_string();
        assert!(err.contains("upstream.name"), "{bad:?}: {err}");
    }
    let toml = r#"
[[route]]
name = "r"
headers = { "x team" = "a" }
"#;
    let err = Config::parse(toml, None).unwrap_err().to_string();
    assert!(err.contains("route \"r\".headers"), "{err}");
}

#[test]
fn stream_usage_is_asked_of_providers_that_accept_it() {
    let toml = r#"
[[upstream]]
name = "az-old"
provider = "azure-openai"
endpoint = "https://a.openai.azure.com"
api_key_env = "K"
api_version = "2024-06-01"
models = { "gpt-4o" = { deployment = "d" } }

[[upstream]]
name = "az"
provider = "azure-openai"
endpoint = "https://a.openai.azure.com"
api_key_env = "K"
models = { "gpt-4o" = { deployment = "d" } }

[[upstream]]
name = "oa"
provider = "openai"
api_key_env = "K"
models = { "gpt-4o" = {} }

[[upstream]]
name = "sim"
provider = "mock"
models = { "gpt-4o" = {} }
"#;
    let config = Config::parse(toml, None).unwrap();
    let asks: Vec<bool> = config
        .upstreams
        .iter()
        .map(|u| u.adds_stream_usage())
        .collect();
    assert_eq!(asks, [false, true, true, false]);
}

#[test]
fn prices_must_be_finite() {
    let toml = r#"
[[upstream]]
name = "m"
provider = "mock"
models = { "gpt-4o" = { input_per_mtok = nan } }
"#;
    let err = Config::parse(toml, None).unwrap_err().to_string();
    assert!(err.contains("finite"), "{err}");
}

#[test]
fn cache_dir_is_resolved_like_the_other_paths() {
    let parse = |dir: &str| {
        let toml = format!("[engine]\ncache_dir = \"{dir}\"\n");
        Config::parse(&toml, Some(Path::new("/etc/switchyard/gw.toml")))
            .unwrap()
            .engine
            .cache_dir
    };
    assert_eq!(parse(""), None, "empty turns the cache off");
    assert_eq!(parse("cache"), Some(PathBuf::from("/etc/switchyard/cache")));
    assert_eq!(parse("/var/cache/sy"), Some(PathBuf::from("/var/cache/sy")));
    if let Some(home) = std::env::var_os("HOME") {
        assert_eq!(
            parse("~/.cache/switchyard"),
            Some(PathBuf::from(home).join(".cache/switchyard"))
        );
    }
}

#[test]
fn api_key_upstreams_need_the_env_name() {
    let toml = r#"
[[upstream]]
name = "oa"
provider = "openai"
models = { "gpt-4o" = {} }
"#;
    let err = Config::parse(toml, None).unwrap_err();
    assert!(err.to_string().contains("api_key_env"), "{err}");
}

#[test]
fn credential_files_are_resolved_and_used_only_where_read() {
    let parse = |fields: &str| {
        let toml = format!(
            "[[upstream]]\nname = \"u\"\nregion = \"eu-central-1\"\n{fields}\nmodels = {{ \"m\" = {{}} }}\n"
        );
        Config::parse(&toml, Some(Path::new("/etc/switchyard/gw.toml")))
    };
    let config = parse("provider = \"azure-openai\"\nendpoint = \"https://a\"\nauth = \"entra\"\napi_key_file = \"tokens/entra\"").unwrap();
    assert_eq!(
        config.upstreams[0].api_key_file.as_deref(),
        Some(Path::new("/etc/switchyard/tokens/entra"))
    );
    let config = parse("provider = \"bedrock\"\nauth = \"sigv4\"\naws_credentials_file = \"/run/aws/credentials\"\naws_profile = \"gw\"").unwrap();
    let files: Vec<&Path> = config.credential_files().collect();
    assert_eq!(files, [Path::new("/run/aws/credentials")]);
    if let Some(home) = std::env::var_os("HOME") {
        let config = parse("provider = \"bedrock\"\nauth = \"sigv4\"\naws_credentials_file = \"~/.aws/credentials\"").unwrap();
        assert_eq!(
            config.upstreams[0].aws_credentials_file,
            Some(PathBuf::from(home).join(".aws/credentials"))
        );
    }

    for (fields, key) in [
        (
            "provider = \"openai\"\napi_key_env = \"K\"\napi_key_file = \"k\"",
            "api_key_file",
        ),
        (
            "provider = \"bedrock\"\nauth = \"sigv4\"\napi_key_file = \"k\"",
            "api_key_file",
        ),
        (
            "provider = \"openai\"\napi_key_env = \"K\"\naws_credentials_file = \"c\"",
            "aws_credentials_file",
        ),
        (
            "provider = \"bedrock\"\nauth = \"sigv4\"\naws_profile = \"gw\"",
            "aws_profile",
        ),
        ("provider = \"openai\"\napi_key_file = \"\"", "api_key_file"),
        (
            "provider = \"bedrock\"\nauth = \"sigv4\"\naws_credentials_file = \"c\"\naws_profile = \" \"",
            "aws_profile",
        ),
    ] {
        let err = parse(fields).unwrap_err().to_string();
        assert!(err.contains(key), "{fields}: {err}");
    }
}
