//! The `switchyard` command.

mod allocator;
mod cli;

/// mimalloc rather than glibc's allocator: a proxied request makes a few dozen
/// small, short-lived allocations, and mimalloc's thread-local free lists serve
/// them in far fewer instructions (see `bench/profile.sh`).
#[global_allocator]
static ALLOCATOR: allocator::MiMalloc = allocator::MiMalloc;

fn main() -> std::process::ExitCode {
    cli::main()
}
