//! The `cairn` command line. A thin layer: it parses arguments, calls the
//! library, and turns results into output and an exit status.

mod cli;

use std::process::ExitCode;

use clap::Parser;

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
