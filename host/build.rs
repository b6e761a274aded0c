//! Builds the Rust guest components (example policies and test fixtures) from
//! source for `wasm32-wasip2`, the way wasmtime builds its test programs: no
//! compiled `.wasm` is ever committed.
//!
//! The components land in `$OUT_DIR/guests/<name>.wasm`; the crate, its tests and
//! benches find them through `SWITCHYARD_GUESTS_DIR`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Guest packages to build, as (cargo package, component name).
const GUESTS: &[(&str, &str)] = &[
    ("azure-first", "azure-first"),
    ("cost", "cost"),
    ("compliance", "compliance"),
    ("prefer-eu", "prefer-eu"),
    ("hostile-policy", "hostile"),
];

/// Directories whose changes require rebuilding the guests.
const SOURCES: &[&str] = &[
    "wit",
    "guest-sdk",
    "policies/azure-first",
    "policies/cost",
    "policies/compliance",
    "policies/prefer-eu",
    "tests/fixtures/hostile",
];

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir.parent().unwrap().to_path_buf();
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").unwrap()).join("guests");
    std::fs::create_dir_all(&out_dir).unwrap();
    for source in SOURCES {
        println!("cargo:rerun-if-changed={}", root.join(source).display());
    }
    println!("cargo:rerun-if-changed=build.rs");
    // The workspace manifest holds the `guest` profile the guests are built
    // with, and the lock file their dependencies' versions.
    for file in ["Cargo.toml", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={}", root.join(file).display());
    }

    // A target dir of its own: the outer cargo holds the lock on the main one.
    // A relative CARGO_TARGET_DIR is taken from the workspace root, where the
    // guest build runs (this script runs in host/).
    let target_dir = root
        .join(std::env::var_os("CARGO_TARGET_DIR").unwrap_or_else(|| "target".into()))
        .join("guests");
    build_guests(&root, &target_dir);
    for (package, name) in GUESTS {
        let built = target_dir
            .join("wasm32-wasip2/guest")
            .join(format!("{}.wasm", package.replace('-', "_")));
        let dest = out_dir.join(format!("{name}.wasm"));
        std::fs::copy(&built, &dest)
            .unwrap_or_else(|e| panic!("copying {} to {}: {e}", built.display(), dest.display()));
    }
    println!(
        "cargo:rustc-env=SWITCHYARD_GUESTS_DIR={}",
        out_dir.display()
    );
}

/// Makes sure the guest target's standard library is installed. rustup adds the
/// targets of `rust-toolchain.toml` only when it installs the toolchain itself, so
/// a machine that already had `stable` lacks it on a fresh clone.
fn ensure_guest_target() {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let sysroot = Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
    let installed = sysroot.is_some_and(|root| root.join("lib/rustlib/wasm32-wasip2").is_dir());
    if installed {
        return;
    }
    println!(
        "cargo:warning=installing the wasm32-wasip2 target with rustup (needed to build the policies)"
    );
    let added = Command::new("rustup")
        .args(["target", "add", "wasm32-wasip2"])
        .status();
    if !matches!(added, Ok(status) if status.success()) {
        panic!(
            "the wasm32-wasip2 target is missing and `rustup target add wasm32-wasip2` failed; install it and build again"
        );
    }
}

fn build_guests(root: &Path, target_dir: &Path) {
    ensure_guest_target();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root)
        .args(["build", "--profile", "guest", "--target", "wasm32-wasip2"])
        .arg("--target-dir")
        .arg(target_dir);
    for (package, _) in GUESTS {
        cmd.args(["-p", package]);
    }
    // The outer build's settings (clippy's wrapper, host flags, the outer
    // target) must not leak into the guest build.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "CARGO_MAKEFLAGS",
        "MAKEFLAGS",
        "MFLAGS",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd
        .status()
        .expect("running cargo to build the guest components");
    assert!(
        status.success(),
        "building the guest components failed (see the output above)"
    );
}
