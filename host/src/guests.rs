//! The example policies, built from `policies/` by the build script and embedded so
//! that `switchyard demo` works from a single binary.

/// Directory the build script wrote the guest components to (examples and test
/// fixtures). Valid on the machine that built this crate; tests and benches use it.
pub const BUILT_GUESTS_DIR: &str = env!("SWITCHYARD_GUESTS_DIR");

/// The example policies as (name, component bytes).
pub const EXAMPLES: &[(&str, &[u8])] = &[
    (
        "azure-first",
        include_bytes!(concat!(env!("SWITCHYARD_GUESTS_DIR"), "/azure-first.wasm")),
    ),
    (
        "cost",
        include_bytes!(concat!(env!("SWITCHYARD_GUESTS_DIR"), "/cost.wasm")),
    ),
    (
        "compliance",
        include_bytes!(concat!(env!("SWITCHYARD_GUESTS_DIR"), "/compliance.wasm")),
    ),
];
