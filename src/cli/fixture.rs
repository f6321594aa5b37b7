//! `tss-gate fixture derive`: a new fixture from an existing one with some
//! fields changed (see [`crate::fixture::derive_with`]), written in the
//! readable form (embedded documents as objects). When the change moves what
//! the signed bytes state (destination, amount, token), the unsigned raw
//! transaction and `msg_hash_list` are rebuilt with the policy's chain and
//! token tables (`--keep-raw-tx` keeps them). It also says what the current
//! policy decides for the new request, so a wrong expectation shows at once.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::Exit;
use crate::fixture::{Change, Expect, RawTx};
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
    /// `extra_info.transaction.fee.gas_price=1`), or the fixture's own
    /// `received_at_ms`, `verified_by` or `history`; VALUE is JSON, or a
    /// string when it is not valid JSON (a number over a string, such as an
    /// amount, stays a string as written). Repeatable.
    #[arg(long = "set", value_name = "PATH=VALUE")]
    pub set: Vec<String>,
    /// Remove a dotted path of the request (or `received_at_ms`,
    /// `verified_by`, `history`). Repeatable.
    #[arg(long = "unset", value_name = "PATH")]
    pub unset: Vec<String>,
    /// The spending-limit rows that exist before the request: a JSON file
    /// holding a list of `{limit, group, amount, ago, repeat}`, or a fixture
    /// whose `history` is taken. Applied before `--set`.
    #[arg(long, value_name = "FILE.json")]
    pub history: Option<PathBuf>,
    /// Keep the base fixture's `unsigned_raw_tx` and `msg_hash_list` even
    /// when the description changes what they state (to make a tampered
    /// REJECT fixture). Without it they are rebuilt to agree with the new
    /// description.
    #[arg(long)]
    pub keep_raw_tx: bool,
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
    /// Policy directory: its chain and token tables rebuild the raw
    /// transaction, and it checks what the new fixture gets.
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
                Exit::Error
            }
        },
    }
}

fn derive(a: &DeriveArgs) -> anyhow::Result<Exit> {
    let mut changes = Vec::new();
    if let Some(path) = &a.history {
        changes.push(Change::Set("history".to_owned(), history_rows(path)?));
    }
    for s in &a.set {
        let (path, value) = s
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("--set `{s}`: expected PATH=VALUE"))?;
        changes.push(Change::Text(path.to_owned(), value.to_owned()));
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
    // The chain and token tables come from the policy that is checked.
    let policy = (!a.keep_raw_tx).then(|| {
        crate::policy::PolicySet::load(&crate::policy::PolicyOptions {
            dir: a.policy_dir.clone(),
            entrypoint: crate::policy::DEFAULT_ENTRYPOINT.to_owned(),
            data_files: Vec::new(),
            eval_timeout: std::time::Duration::from_secs(10),
        })
        .map_err(|e| format!("`{}`: {e}", a.policy_dir.display()))
    });
    let raw = match &policy {
        None => RawTx::Keep,
        Some(Ok(set)) => RawTx::Follow(&set.derive),
        Some(Err(why)) => RawTx::Unavailable(why),
    };
    let derived = crate::fixture::derive_with(&base, &changes, expect, &a.description, raw)
        .map_err(|e| anyhow::anyhow!("`{}`: {e}", a.from.display()))?;
    for note in &derived.notes {
        eprintln!("{note}");
    }
    let text = derived.text;

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
            Ok(Exit::Failed)
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

/// `--history FILE`: a list of ledger rows, or a fixture's `history`.
fn history_rows(path: &std::path::Path) -> anyhow::Result<serde_json::Value> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("--history: cannot read `{}`: {e}", path.display()))?;
    let doc: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| anyhow::anyhow!("--history: `{}` is not JSON: {e}", path.display()))?;
    match doc {
        serde_json::Value::Array(_) => Ok(doc),
        serde_json::Value::Object(mut o) if o.contains_key("history") => {
            Ok(o.remove("history").unwrap_or_default())
        }
        _ => anyhow::bail!(
            "--history: `{}` is neither a list of ledger rows nor a fixture with a `history`",
            path.display()
        ),
    }
}
