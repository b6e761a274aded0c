//! Switchyard: an OpenAI-compatible LLM gateway whose routing decisions are made by
//! WebAssembly policy components.
//!
//! The modules follow one request through the gateway:
//!
//! - [`gateway`]: the client-facing listener and the data path (auth, request view,
//!   route match, plan execution, response streaming, outcome).
//! - [`policy`]: the policy engine (wasmtime components, instance pools, limits)
//!   and the chain runner.
//! - [`provider`]: provider adapters that turn a request into Azure OpenAI, Bedrock,
//!   OpenAI or simulated wire calls.
//! - [`upstream`]: the pooled HTTPS client and per-upstream health tracking.
//! - [`snapshot`]: an immutable, validated view of config and policies, and reloads.
//! - [`admin`]: the admin listener, metrics and admin API.
//! - [`config`]: the TOML configuration.
//! - [`deadline`]: timeouts that arm a timer only for work still pending.
//! - [`headers`]: the credential and hop-by-hop header names every boundary keeps out.

// Every public item says what it is (clippy runs with -D warnings).
#![warn(missing_docs)]

pub mod admin;
pub mod config;
pub mod deadline;
pub(crate) mod files;
pub mod gateway;
pub mod guests;
pub mod headers;
pub mod policy;
pub mod provider;
pub mod server;
pub mod snapshot;
pub mod upstream;
