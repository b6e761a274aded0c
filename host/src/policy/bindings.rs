//! Host bindings for the `switchyard:policy/policy` world, generated from `wit/`.
//!
//! Exports (`decide`, `observe`) are called asynchronously so that the epoch
//! deadline can yield to the runtime; host imports are synchronous, and
//! `counter-add` may trap (a policy that exceeds the counter limits is stopped).

wasmtime::component::bindgen!({
    world: "policy",
    path: "../wit",
    imports: {
        "switchyard:policy/host.counter-add": trappable,
    },
    exports: { default: async },
});
