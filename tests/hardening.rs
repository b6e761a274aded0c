//! Hardening (issue 7), against the real `switchyard` binary on loopback: hostile
//! clients (limits, smuggling, bad bodies), h2 abuse, failing upstreams, hostile
//! policies and secrets.

mod support;

#[path = "hardening/body.rs"]
mod body;
#[path = "hardening/client_limits.rs"]
mod client_limits;
#[path = "hardening/common.rs"]
mod common;
#[path = "hardening/containment.rs"]
mod containment;
#[path = "hardening/h2_limits.rs"]
mod h2_limits;
#[path = "hardening/secrets.rs"]
mod secrets;
#[path = "hardening/ssrf.rs"]
mod ssrf;
#[path = "hardening/upstream_faults.rs"]
mod upstream_faults;
