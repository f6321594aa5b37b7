//! `tss-gate freeze on|off|status`: the emergency stop (crate::freeze),
//! written to the config's state store while the server runs. Every server
//! on that store applies it within [`crate::freeze::POLL`], without a reload
//! and whatever the policy or its test gate says.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::Exit;
use crate::config::{Config, Overrides};
use crate::freeze::{Freeze, Scope};

#[derive(Debug, Subcommand)]
pub enum FreezeCommand {
    /// Reject every KEYSIGN (with --all: every task but PING) from now on.
    On(OnArgs),
    /// Lift the freeze: requests are decided by the policy again.
    Off(StoreArgs),
    /// Show whether the gate is frozen.
    Status(StatusArgs),
}

#[derive(Debug, Args)]
pub struct StoreArgs {
    /// Config file (YAML): its `state` section names the store.
    #[arg(long, default_value = crate::config::DEFAULT_CONFIG)]
    pub config: PathBuf,
}

#[derive(Debug, Args)]
pub struct OnArgs {
    /// Why: quoted in every rejected answer (the Cobo portal shows it) and
    /// in the log.
    #[arg(long, default_value = "")]
    pub reason: String,
    /// Freeze KEYGEN, KEYRESHARE and KEYSHARESIGN too, not only KEYSIGN.
    #[arg(long)]
    pub all: bool,
    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// One JSON document instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub store: StoreArgs,
}

pub fn run(c: FreezeCommand) -> Exit {
    let result = match c {
        FreezeCommand::On(a) => on(a),
        FreezeCommand::Off(a) => off(a),
        FreezeCommand::Status(a) => status(a),
    };
    match result {
        Ok(e) => e,
        Err(e) => {
            super::print_error(&e);
            Exit::Error
        }
    }
}

/// The config's store, opened beside a running server (SQLite: a second
/// connection, as `ledger` does; the server holds the file's lock).
struct Target(Box<dyn crate::store::Store>);

impl Target {
    fn open(config: &std::path::Path) -> anyhow::Result<Self> {
        let cfg = Config::load(config, &Overrides::default())?;
        // No server has run yet: the store is created, so the first one
        // starts frozen.
        Ok(Target(crate::runtime::build::open_beside(&cfg, true)?))
    }

    fn read(&self) -> anyhow::Result<Option<Freeze>> {
        Ok(crate::freeze::read(self.0.as_ref())?)
    }

    fn write(&self, f: Option<&Freeze>) -> anyhow::Result<()> {
        Ok(crate::freeze::write(
            self.0.as_ref(),
            f,
            crate::clock::now_ms(),
        )?)
    }

    fn name(&self) -> String {
        self.0.location()
    }
}

/// Who ran the command, for the record (never a secret: a user and host name).
fn operator() -> String {
    let user = std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| "unknown".into());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default();
    if host.is_empty() {
        user
    } else {
        format!("{user}@{host}")
    }
}

fn on(a: OnArgs) -> anyhow::Result<Exit> {
    let t = Target::open(&a.store.config)?;
    let scope = if a.all { Scope::All } else { Scope::Keysign };
    let f = Freeze::new(scope, &a.reason, crate::clock::now_ms(), &operator());
    t.write(Some(&f))?;
    // Read back: what the servers will read is what was written.
    let stored = t.read()?;
    if stored.as_ref() != Some(&f) {
        anyhow::bail!(
            "the freeze switch in `{}` did not read back as written",
            t.name()
        );
    }
    println!(
        "frozen: {} rejected from now on (store `{}`); running servers apply it within {} ms",
        match scope {
            Scope::Keysign => "every KEYSIGN is",
            Scope::All => "every task but PING is",
        },
        t.name(),
        crate::freeze::POLL.as_millis()
    );
    Ok(Exit::Ok)
}

fn off(a: StoreArgs) -> anyhow::Result<Exit> {
    let t = Target::open(&a.config)?;
    t.write(None)?;
    if t.read()?.is_some() {
        anyhow::bail!("the freeze switch in `{}` is still set", t.name());
    }
    println!(
        "thawed: requests are decided by the policy again (store `{}`); running servers apply it within {} ms",
        t.name(),
        crate::freeze::POLL.as_millis()
    );
    Ok(Exit::Ok)
}

fn status(a: StatusArgs) -> anyhow::Result<Exit> {
    let t = Target::open(&a.store.config)?;
    let f = t.read()?;
    if a.json {
        println!(
            "{}",
            serde_json::json!({"frozen": f.is_some(), "freeze": f, "store": t.name()})
        );
        return Ok(Exit::Ok);
    }
    match f {
        None => println!("not frozen (store `{}`)", t.name()),
        Some(f) => println!(
            "frozen: scope {}, since {}, by {}, reason: {}",
            f.scope.as_str(),
            crate::decision_log::timestamp(f.since_ms),
            if f.by.is_empty() { "-" } else { &f.by },
            if f.reason.is_empty() { "-" } else { &f.reason }
        ),
    }
    Ok(Exit::Ok)
}
