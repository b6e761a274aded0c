//! Host bindings for the `switchyard:policy/policy` world, generated from `wit/`.
//!
//! Exports (`decide`, `observe`) are called asynchronously so that the epoch
//! deadline can yield to the runtime; host imports are synchronous. `counter-add`
//! and `offer-of` may trap (a policy over the counter limits, or asking for an offer
//! that does not exist, is stopped).

wasmtime::component::bindgen!({
    world: "policy",
    path: "../wit",
    imports: {
        "switchyard:policy/host.counter-add": trappable,
        "switchyard:policy/host.offer-of": trappable,
    },
    with: {
        "switchyard:policy/types.request": super::request::RequestHandle,
    },
    exports: { default: async },
    additional_derives: [PartialEq],
});
