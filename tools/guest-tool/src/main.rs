//! `guest-tool`: the few `wit-bindgen` / `wasm-tools` steps that non-Rust
//! Switchyard policies need, built from the library crates so that CI does not
//! spend minutes on `cargo install wit-bindgen-cli wasm-tools`.
//!
//! - `c-bindings`: generate the C bindings (`<world>.h`, `<world>.c` and
//!   `<world>_component_type.o`) for a WIT world, like `wit-bindgen c`.
//! - `component-new`: turn a core wasm module into a component, adapting WASI
//!   preview1 imports with the preview1 adapter, like
//!   `wasm-tools component new --adapt`.
//! - `check`: confirm that a component targets a WIT world, and list what it
//!   imports (like `wasm-tools component targets` plus `component wit`).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use wit_parser::{Resolve, WorldId, WorldItem};

#[derive(Parser)]
#[command(name = "guest-tool", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate C bindings for a WIT world into a directory.
    CBindings {
        /// WIT file or directory.
        #[arg(long, default_value = "wit")]
        wit: PathBuf,
        /// World to generate bindings for.
        #[arg(long, default_value = "policy")]
        world: String,
        /// Directory that receives `<world>.h`, `<world>.c` and `<world>_component_type.o`.
        #[arg(long)]
        out: PathBuf,
    },
    /// Turn a core wasm module (with embedded component type) into a component.
    ComponentNew {
        /// The core module, e.g. the output of clang.
        module: PathBuf,
        /// Which WASI preview1 adapter to link for the module's `wasi_snapshot_preview1` imports.
        #[arg(long, value_enum, default_value_t = Adapter::Reactor)]
        adapt: Adapter,
        /// Where to write the component.
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Check that a component targets a WIT world and print its imports and exports.
    Check {
        /// The component to check.
        component: PathBuf,
        /// WIT file or directory.
        #[arg(long, default_value = "wit")]
        wit: PathBuf,
        /// World the component must target.
        #[arg(long, default_value = "policy")]
        world: String,
    },
}

/// The WASI preview1 adapter flavours shipped by wasmtime.
#[derive(Clone, Copy, ValueEnum)]
enum Adapter {
    /// For libraries called through their exports (`-mexec-model=reactor`).
    Reactor,
    /// For programs with a `_start` entry point.
    Command,
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::CBindings { wit, world, out } => c_bindings(&wit, &world, &out),
        Command::ComponentNew {
            module,
            adapt,
            output,
        } => component_new(&module, adapt, &output),
        Command::Check {
            component,
            wit,
            world,
        } => check(&component, &wit, &world),
    }
}

/// Parses the WIT at `path` and selects `world` in it.
fn load_world(path: &Path, world: &str) -> Result<(Resolve, WorldId)> {
    let mut resolve = Resolve::default();
    let (pkg, _files) = resolve
        .push_path(path)
        .with_context(|| format!("parsing WIT at {}", path.display()))?;
    let world = resolve
        .select_world(&[pkg], Some(world))
        .with_context(|| format!("selecting world `{world}` in {}", path.display()))?;
    Ok((resolve, world))
}

fn c_bindings(wit: &Path, world_name: &str, out: &Path) -> Result<()> {
    let (mut resolve, world) = load_world(wit, world_name)?;
    let mut files = wit_bindgen_core::Files::default();
    wit_bindgen_c::Opts::default()
        .build()
        .generate(&mut resolve, world, &mut files)
        .context("generating C bindings")?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    for (name, contents) in files.iter() {
        let dest = out.join(name);
        std::fs::write(&dest, contents).with_context(|| format!("writing {}", dest.display()))?;
        println!("{}", dest.display());
    }
    Ok(())
}

fn component_new(module: &Path, adapt: Adapter, output: &Path) -> Result<()> {
    use wasi_preview1_component_adapter_provider as adapters;
    let bytes = std::fs::read(module).with_context(|| format!("reading {}", module.display()))?;
    let adapter = match adapt {
        Adapter::Reactor => adapters::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
        Adapter::Command => adapters::WASI_SNAPSHOT_PREVIEW1_COMMAND_ADAPTER,
    };
    let component = wit_component::ComponentEncoder::default()
        .module(&bytes)
        .context("reading the module's component type (was it linked with the bindings' _component_type.o?)")?
        .adapter(adapters::WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME, adapter)?
        .validate(true)
        .encode()
        .with_context(|| format!("turning {} into a component", module.display()))?;
    std::fs::write(output, &component).with_context(|| format!("writing {}", output.display()))?;
    Ok(())
}

fn check(component: &Path, wit: &Path, world_name: &str) -> Result<()> {
    let (mut resolve, world) = load_world(wit, world_name)?;
    let bytes =
        std::fs::read(component).with_context(|| format!("reading {}", component.display()))?;
    let wit_component::DecodedWasm::Component(mut decoded, decoded_world) =
        wit_component::decode(&bytes).context("decoding the component")?
    else {
        bail!("{} is a WIT package, not a component", component.display());
    };
    println!(
        "{}: {} bytes, imports and exports:",
        component.display(),
        bytes.len()
    );
    let listed = &decoded.worlds[decoded_world];
    for (label, items) in [("import", &listed.imports), ("export", &listed.exports)] {
        for (key, item) in items {
            let kind = match item {
                WorldItem::Interface { .. } => "interface",
                WorldItem::Function(_) => "func",
                WorldItem::Type { .. } => "type",
            };
            println!("  {label} {kind} {}", decoded.name_world_key(key));
        }
    }

    // JS and Python engines import WASI interfaces even when a policy never
    // calls them; the gateway links a deny-by-default WASI context for those.
    // So the world to check against is `world` plus the component's own WASI
    // imports: everything else must match the contract exactly.
    let wasi_keys: Vec<_> = decoded.worlds[decoded_world]
        .imports
        .keys()
        .filter(|key| decoded.name_world_key(key).starts_with("wasi:"))
        .cloned()
        .collect();
    let wasi_world = &mut decoded.worlds[decoded_world];
    // Type imports stay: the world's own type table must keep them.
    wasi_world
        .imports
        .retain(|key, item| wasi_keys.contains(key) || matches!(item, WorldItem::Type { .. }));
    wasi_world.exports.clear();
    let remap = resolve
        .merge(decoded)
        .context("merging the component's WASI imports")?;
    let wasi_world = remap
        .map_world(decoded_world, Default::default())
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    resolve
        .merge_worlds(wasi_world, world, &mut Default::default())
        .context("adding the component's WASI imports to the world")?;
    wit_component::targets(&resolve, world, &bytes).with_context(|| {
        format!(
            "{} does not target world `{world_name}`",
            component.display()
        )
    })?;
    println!(
        "ok: targets `{world_name}`{}",
        if wasi_keys.is_empty() {
            String::new()
        } else {
            format!(" (plus {} WASI interfaces)", wasi_keys.len())
        }
    );
    Ok(())
}
