//! The `tss-gate` command line: argument definitions and dispatch. Each
//! subcommand lives in its own file and returns an [`Exit`].

use clap::{Parser, Subcommand};

pub mod bench;
pub mod check;
pub mod eval;
pub mod keys;
pub mod ledger;
pub mod send;
pub mod serve;
pub mod test;

#[derive(Debug, Parser)]
#[command(
    name = "tss-gate",
    version,
    about = "Rego-policy callback server for Cobo TSS Nodes"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the callback server.
    Serve(serve::ServeArgs),
    /// Manage RSA key files.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Act as a TSS Node: sign a request, post it, verify and print the answer.
    Send(send::SendArgs),
    /// Run the Rego tests and the fixtures.
    Test(test::TestArgs),
    /// Show the input, decision and answer for one request.
    Eval(eval::EvalArgs),
    /// Load config, keys and policies as `serve` would, without serving.
    Check(check::CheckArgs),
    /// Load-test a callback server as many TSS Nodes; or measure the signing
    /// ceiling (`--ceiling`) or policy evaluation (`--policy`).
    Bench(bench::BenchArgs),
    /// Inspect the spending-limit ledger, or release a hold.
    #[command(subcommand)]
    Ledger(ledger::LedgerCommand),
}

/// Process exit codes, typed so every command uses them the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Success; for `send`, an APPROVE.
    Ok,
    /// For `send`, a REJECT; for other commands, a usage or load error.
    One,
    /// For `send`, a non-zero status or any failure; for `test`, failures.
    Two,
}

impl From<Exit> for std::process::ExitCode {
    fn from(e: Exit) -> Self {
        match e {
            Exit::Ok => std::process::ExitCode::SUCCESS,
            Exit::One => std::process::ExitCode::from(1),
            Exit::Two => std::process::ExitCode::from(2),
        }
    }
}

pub fn run(cli: Cli) -> Exit {
    match cli.command {
        Command::Serve(a) => serve::run(a),
        Command::Keys(k) => keys::run(k),
        Command::Send(a) => send::run(a),
        Command::Test(a) => test::run(a),
        Command::Eval(a) => eval::run(a),
        Command::Check(a) => check::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Ledger(c) => ledger::run(c),
    }
}

/// Plain stderr logging for the short-lived commands.
pub fn init_cli_logging() {
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .try_init();
}
