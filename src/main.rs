//! Entry point: parse the command line and dispatch. Logic lives in the library.

use clap::Parser;

// jemalloc, not glibc malloc: a request's buffers are allocated on the async
// runtime's thread and freed on a CPU worker, and regorus allocates on every
// step of an evaluation. Measured on this machine (BENCHMARKS.md, "Fourth
// session"): +9-28 % requests per second, steady-state RSS 55 MiB against
// glibc's 54 MiB. mimalloc was as fast but kept 74 MiB.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    let cli = tss_gate::cli::Cli::parse();
    tss_gate::cli::run(cli).into()
}
