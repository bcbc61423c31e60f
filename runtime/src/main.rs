//! The `cairn` command line. A thin layer: it parses arguments, calls the
//! library, and turns results into output and an exit status.

mod cli;

use std::process::ExitCode;

use clap::Parser;

/// mimalloc rather than glibc's malloc: a run's threads allocate from
/// pages they keep, where glibc's per-thread arenas grow by `mprotect` a
/// few pages at a time (457 calls and ~3,000 page faults on a no-op run of
/// 1,000 stages; see BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let arguments = cli::Cli::parse();
    cli::init_tracing(arguments.verbose);
    match arguments.execute() {
        Ok(status) => status.into(),
        Err(error) => {
            cli::terminal::print_error(&error);
            cli::Status::Usage.into()
        }
    }
}
