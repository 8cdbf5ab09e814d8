//! The `fjord` binary: everything is in the library; this only hands over the command line.
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    fjord::cli::main()
}
