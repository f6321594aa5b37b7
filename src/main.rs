//! Entry point: parse the command line and dispatch. Logic lives in the library.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = tss_gate::cli::Cli::parse();
    tss_gate::cli::run(cli).into()
}
