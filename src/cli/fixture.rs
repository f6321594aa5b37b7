//! `tss-gate fixture derive`: a new fixture from an existing one with some
//! fields changed (see [`crate::fixture::derive`]), written in the readable
//! form (embedded documents as objects). It also says what the current
//! policy decides for the new request, so a wrong expectation shows at once.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::Exit;
use crate::fixture::{Change, Expect};
use crate::protocol::Action;

#[derive(Debug, Subcommand)]
pub enum FixtureCommand {
    /// Write a new fixture from an existing one with fields changed.
    Derive(DeriveArgs),
}

#[derive(Debug, Args)]
pub struct DeriveArgs {
    /// The fixture (or bare request) to start from.
    pub from: PathBuf,
    /// PATH=VALUE: set a dotted path of the request (e.g.
    /// `extra_info.transaction.fee.gas_price=1`); VALUE is JSON, or a
    /// string when it is not valid JSON. Repeatable.
    #[arg(long = "set", value_name = "PATH=VALUE")]
    pub set: Vec<String>,
    /// Remove a dotted path of the request. Repeatable.
    #[arg(long = "unset", value_name = "PATH")]
    pub unset: Vec<String>,
    /// What the new fixture expects.
    #[arg(long, value_enum)]
    pub expect: ExpectArg,
    /// A substring the answer's error must contain (required with
    /// `--expect reject`). Repeatable.
    #[arg(long = "reason")]
    pub reasons: Vec<String>,
    /// The new fixture's description.
    #[arg(long, default_value = "")]
    pub description: String,
    /// Where to write it (`-` or absent: stdout). An existing file is kept
    /// unless `--force`.
    #[arg(short, long)]
    pub out: Option<PathBuf>,
    /// Overwrite `--out` if it exists.
    #[arg(long)]
    pub force: bool,
    /// Policy directory for the check of what the new fixture gets.
    #[arg(long, default_value = "rego")]
    pub policy_dir: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExpectArg {
    Approve,
    Reject,
}

pub fn run(c: FixtureCommand) -> Exit {
    super::init_cli_logging();
    match c {
        FixtureCommand::Derive(a) => match derive(&a) {
            Ok(e) => e,
            Err(e) => {
                super::print_error(&e);
                Exit::One
            }
        },
    }
}

fn derive(a: &DeriveArgs) -> anyhow::Result<Exit> {
    let mut changes = Vec::new();
    for s in &a.set {
        let (path, value) = s
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("--set `{s}`: expected PATH=VALUE"))?;
        let value = serde_json::from_str(value)
            .unwrap_or_else(|_| serde_json::Value::String(value.to_owned()));
        changes.push(Change::Set(path.to_owned(), value));
    }
    changes.extend(a.unset.iter().map(|p| Change::Unset(p.clone())));
    let action = match a.expect {
        ExpectArg::Approve => Action::Approve,
        ExpectArg::Reject => Action::Reject,
    };
    if action == Action::Reject && a.reasons.is_empty() {
        anyhow::bail!(
            "--expect reject needs at least one --reason (a substring of the answer's error)"
        );
    }
    let base = std::fs::read_to_string(&a.from)
        .map_err(|e| anyhow::anyhow!("cannot read `{}`: {e}", a.from.display()))?;
    let expect = Expect {
        action,
        status: 0,
        reasons: a.reasons.clone(),
    };
    let text = crate::fixture::derive(&base, &changes, expect, &a.description)
        .map_err(|e| anyhow::anyhow!("`{}`: {e}", a.from.display()))?;

    // Read back exactly as `test` will read it, then decided.
    let label = a.out.clone().unwrap_or_else(|| PathBuf::from("-"));
    let fixture = crate::fixture::parse_fixture(&label, &text)?;
    let verdict = crate::testing::runner::check_fixture(&a.policy_dir, &fixture);

    match a.out.as_deref().filter(|p| *p != std::path::Path::new("-")) {
        None => print!("{text}"),
        Some(p) => {
            if p.exists() && !a.force {
                anyhow::bail!("`{}` exists; pass --force to overwrite it", p.display());
            }
            std::fs::write(p, &text)
                .map_err(|e| anyhow::anyhow!("cannot write `{}`: {e}", p.display()))?;
            eprintln!("wrote {}", p.display());
        }
    }
    match verdict {
        Ok(None) => {
            eprintln!(
                "the policy in `{}` decides as expected",
                a.policy_dir.display()
            );
            Ok(Exit::Ok)
        }
        Ok(Some(why)) => {
            eprintln!(
                "warning: the policy in `{}` does not decide as this fixture expects: {why}",
                a.policy_dir.display()
            );
            Ok(Exit::Two)
        }
        Err(e) => {
            eprintln!(
                "warning: could not check the new fixture against `{}`: {e}",
                a.policy_dir.display()
            );
            Ok(Exit::Ok)
        }
    }
}
