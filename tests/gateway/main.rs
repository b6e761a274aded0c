//! End-to-end tests of the data path: a gateway on a real loopback listener, real
//! compiled policies, loopback upstreams that check what they receive.

#[path = "../support/mod.rs"]
mod support;

mod errors;
mod fallback;
mod sdk;
mod streaming;
mod wire;
