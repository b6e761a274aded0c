//! Rust SDK for Switchyard routing policies.
//!
//! A policy is a WebAssembly component that targets the `policy` world of
//! `switchyard:policy@0.1.0` (`wit/policy.wit`). For every client request the
//! gateway calls [`Policy::decide`] with the request and the upstreams that may
//! serve it (the candidates, in the previous stage's order); the policy answers
//! with a plan ([`Decision::route`]) or a rejection ([`Decision::reject`]). After
//! the request ends the gateway reports its [`Outcome`] to [`Policy::observe`].
//!
//! The request is a handle read through methods (`req.tenant()`,
//! `req.header("x-data-residency")`, `req.input_tokens_estimate()`, …): each
//! call asks the host, and strings are copied only when read. A [`Candidate`] is
//! an id and its health; [`Candidate::live_state`] asks the host for the rest
//! of its live state (latency, load, error rate, cooldown, rate limits), and
//! [`Candidate::offer`] gives its fixed facts
//! (upstream name, provider, region, jurisdiction, tags, prices), read from the
//! host once per id and kept. [`host::config`] is cached the same way. So a warm
//! call copies almost nothing into the policy.
//!
//! This crate re-exports the WIT types, wraps the host imports in [`host`], and adds
//! a few helpers: [`Candidate::offer`], [`Candidate::is_healthy`],
//! [`Candidate::live_state`], [`Tokens`],
//! [`Decision::route`] and [`Decision::reject`]. `RetryOn` is a `bitflags` type,
//! so `RetryOn::all()`, `|` and `contains` work.
//!
//! # Example
//!
//! A complete policy: EU-bound requests keep EU upstreams only, usable ones first.
//!
//! ```no_run
//! use switchyard_policy::{export_policy, host, Candidate, Decision, Policy, Request, RetryOn};
//!
//! struct EuFirst;
//!
//! impl Policy for EuFirst {
//!     fn decide(req: &Request, candidates: Vec<Candidate>) -> Decision {
//!         let eu_only = req.header("x-data-residency").as_deref() == Some("eu");
//!         let mut allowed: Vec<&Candidate> = candidates
//!             .iter()
//!             .filter(|c| !eu_only || c.offer().jurisdiction == "eu")
//!             .collect();
//!         if allowed.is_empty() {
//!             return Decision::reject(403, "residency_violation", "no EU upstream serves this model");
//!         }
//!         // A stable sort: usable upstreams first, candidate order otherwise.
//!         allowed.sort_by_key(|c| !c.is_healthy());
//!         host::debug(&format!("{} of {} candidates allowed", allowed.len(), candidates.len()));
//!         Decision::route(allowed, RetryOn::all(), "eu-first")
//!     }
//! }
//!
//! export_policy!(EuFirst);
//! ```
//!
//! Build it with `cargo build --target wasm32-wasip2 --release` (crate type
//! `cdylib`) and test it offline with `switchyard policy test FILE.wasm CASES.json`.
//!
//! The host functions only exist inside the gateway: natively they panic, so test
//! native code paths that do not call [`host`], and test whole policies with
//! `switchyard policy test`.
//!
//! Instances are reused between requests, so `static` state survives from one
//! call to the next unless the policy is configured with `isolation = "per-request"`.
//! Use the host counters ([`host::counter_add`]) for state that must be shared.

mod cache;
mod helpers;
pub mod host;

pub use helpers::{IntoTarget, Tokens};

/// The bindings generated from `wit/policy.wit`. Use the re-exports at the crate
/// root instead; this module is public only for [`export_policy!`].
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "policy",
        additional_derives: [PartialEq],
        pub_export_macro: true,
        default_bindings_module: "switchyard_policy::bindings",
        export_macro_name: "__export_policy_world",
    });
}

pub use bindings::switchyard::policy::host::LogLevel;
pub use bindings::switchyard::policy::types::{
    Candidate, Decision, Health, LiveState, Offer, Outcome, Plan, ProviderKind, Rejection, Request,
    RetryOn,
};

/// A routing policy. Implement it on a unit struct and export it with
/// [`export_policy!`].
pub trait Policy {
    /// Decides how to serve `req`: a plan listing some of `candidates` in the
    /// order to try them, or a rejection. A plan may drop and reorder candidates
    /// but never list one it was not given.
    fn decide(req: &Request, candidates: Vec<Candidate>) -> Decision;

    /// Called after a request ended, off the response path. Unless overridden,
    /// it tells the gateway (`host.ignore-outcomes`) that this policy has no use
    /// for outcomes, and the gateway stops calling it.
    fn observe(outcome: Outcome) {
        let _ = outcome;
        host::ignore_outcomes();
    }
}

impl<T: Policy> bindings::Guest for T {
    fn decide(req: &Request, candidates: Vec<Candidate>) -> Decision {
        <T as Policy>::decide(req, candidates)
    }

    fn observe(outcome: Outcome) {
        <T as Policy>::observe(outcome)
    }
}

/// Exports a type that implements [`Policy`] as the component's `decide` and
/// `observe`. Use it once per policy crate, with the type's name:
/// `export_policy!(MyPolicy);`.
#[macro_export]
macro_rules! export_policy {
    ($ty:ident) => {
        $crate::bindings::__export_policy_world!($ty with_types_in $crate::bindings);
    };
}
