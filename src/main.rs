//! The `fjord` binary: everything is in the library; this only hands over the command line.
#![forbid(unsafe_code)]

/// mimalloc rather than glibc's malloc: hyper's 8 KiB connection buffers, taken and given back
/// for every request since idle connections are parked, are too large for glibc's per-thread
/// cache but not for mimalloc's, and mimalloc returns freed pages to the system where glibc
/// keeps whatever lies below its top chunk. Transparent huge pages are off (`no_thp`): with
/// them every arena page touched costs 2 MiB of RSS.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    fjord::cli::main()
}
