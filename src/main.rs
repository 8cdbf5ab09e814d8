//! The `fjord` binary: everything is in the library; this only hands over the command line.
#![forbid(unsafe_code)]

/// mimalloc rather than glibc's malloc: hyper's 8 KiB connection buffers, taken and given back
/// whenever a connection parks and wakes, are too large for glibc's per-thread cache but not
/// for mimalloc's; and as the process goes on allocating, mimalloc returns pages that have
/// emptied to the system, where glibc keeps whatever lies below its top chunk (10,000 routes:
/// 17 MiB against 22). Transparent huge pages are off (`no_thp`): with them every arena page
/// touched costs 2 MiB of RSS.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    fjord::cli::main()
}
