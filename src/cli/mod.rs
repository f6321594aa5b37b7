//! The `tss-gate` command line: argument definitions and dispatch. Each
//! subcommand lives in its own file and returns an [`Exit`].

use clap::{Parser, Subcommand};

pub mod bench;
pub mod check;
pub mod eval;
pub mod fixture;
pub mod freeze;
pub mod impact;
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
    /// Work with fixtures: derive a new one from an existing one.
    #[command(subcommand)]
    Fixture(fixture::FixtureCommand),
    /// Judge recorded decisions (decision logs, recorded fixtures) with a
    /// draft policy set and report what it would decide differently.
    Replay(impact::ReplayArgs),
    /// Inspect the spending-limit ledger, or release a hold.
    #[command(subcommand)]
    Ledger(ledger::LedgerCommand),
    /// The emergency stop: reject every KEYSIGN (or every task) at once,
    /// whatever the policy says, until `freeze off`.
    #[command(subcommand)]
    Freeze(freeze::FreezeCommand),
}

/// Process exit codes, typed so every command uses them the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Success; for `send`, an APPROVE.
    Ok,
    /// 1: a usage, config or load error.
    Error,
    /// 1: `send` got a REJECT.
    Rejected,
    /// 2: `test` had failures; `send` got a non-zero status or failed.
    Failed,
    /// 3: `replay`'s draft approves something that was rejected (or, with
    /// `--fail-on any-change`, decides anything differently).
    Looser,
}

impl From<Exit> for std::process::ExitCode {
    fn from(e: Exit) -> Self {
        match e {
            Exit::Ok => std::process::ExitCode::SUCCESS,
            Exit::Error | Exit::Rejected => std::process::ExitCode::from(1),
            Exit::Failed => std::process::ExitCode::from(2),
            Exit::Looser => std::process::ExitCode::from(3),
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
        Command::Freeze(c) => freeze::run(c),
        Command::Replay(a) => impact::run(a),
        Command::Fixture(c) => fixture::run(c),
    }
}

pub use crate::error_text;

/// Prints an error to stderr, one `error: ` line per problem it holds
/// (a config file's problems are reported all at once).
pub fn print_error(e: &anyhow::Error) {
    for line in error_text(e).lines() {
        eprintln!("error: {line}");
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn error_text_says_each_cause_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file or directory");
        let key =
            crate::keys::load_signing_key(std::path::Path::new("/nonexistent/k.pem")).unwrap_err();
        let text = error_text(&anyhow::Error::from(key));
        assert_eq!(
            text.matches("No such file or directory").count(),
            1,
            "{text}"
        );
        assert!(text.contains("/nonexistent/k.pem"), "{text}");
        let wrapped = anyhow::Error::from(io).context("loading the config");
        assert_eq!(
            error_text(&wrapped),
            "loading the config: No such file or directory"
        );
    }

    /// Every subcommand, argument and flag says what it is for in `--help`.
    #[test]
    fn every_command_and_argument_has_help() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if matches!(id, "help" | "version") {
                    continue;
                }
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} --{id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                let p = format!("{path} {}", sub.get_name());
                if sub.get_about().is_none() && sub.get_long_about().is_none() {
                    missing.push(p.clone());
                }
                walk(sub, &p, missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "tss-gate", &mut missing);
        assert!(missing.is_empty(), "no help text: {missing:#?}");
    }
}
