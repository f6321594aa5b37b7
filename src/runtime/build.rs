//! Building a server's parts from its config: keys into a [`Gate`], the
//! checked policy set, the decision log, the state store, the retry cache
//! and the HTTP limits. `serve` and hot reload both build through here, so
//! the library never calls into the CLI.

use std::sync::Arc;
use std::time::Duration;

use tracing::info;

use crate::config::Config;
use crate::decide::Gate;
use crate::policy::PolicySet;

/// Keys, gate and policy, loaded and checked before anything listens.
pub struct Loaded {
    pub gate: Gate,
    pub policy: PolicySet,
    /// The node event keys, when `event_server` is configured.
    pub events: Option<crate::token::Verifier>,
}

/// Loads everything `serve` needs; the same checks `check` runs.
/// Keys and policies are both tried so that one run reports every problem.
pub fn load_all(cfg: &Config) -> anyhow::Result<Loaded> {
    let gate = load_gate(cfg).and_then(|g| load_event_verifier(cfg).map(|ev| (g, ev)));
    crate::policy::install_time_limit(std::time::Duration::from_millis(cfg.policy.eval_timeout_ms));
    // The same gate a reload passes through, so a set that could never be
    // reloaded cannot be started with either.
    let policy = super::gate::load_checked(&cfg.policy_options(), &super::gate::test_gate(cfg))
        .map_err(anyhow::Error::from);
    match (gate, policy) {
        (Ok((gate, events)), Ok(policy)) => Ok(Loaded {
            gate,
            policy,
            events,
        }),
        (Err(e), Ok(_)) => Err(e),
        (Ok(_), Err(e)) => Err(e),
        (Err(k), Err(p)) => Err(anyhow::anyhow!(
            "{}\n{}",
            crate::error_text(&k),
            crate::error_text(&p)
        )),
    }
}

/// The verifier of the node's event tokens (`event_server` keys).
pub fn load_event_verifier(cfg: &Config) -> anyhow::Result<Option<crate::token::Verifier>> {
    let Some(ev) = &cfg.event_server else {
        return Ok(None);
    };
    let mut keys = Vec::new();
    for k in ev.keys() {
        keys.push(crate::keys::load_verifying_key(&k.name, &k.path)?);
    }
    Ok(Some(crate::token::Verifier::new(
        keys,
        cfg.callback_server.clock_skew_leeway_seconds,
    )))
}

/// Loads the keys into a [`Gate`]; used at start and on key reload.
pub fn load_gate(cfg: &Config) -> anyhow::Result<Gate> {
    let signer = crate::keys::load_signing_key(&cfg.callback_server.service_private_key_path)?;
    let mut verifying = Vec::new();
    for k in cfg.node_keys() {
        verifying.push(crate::keys::load_verifying_key(&k.name, &k.path)?);
    }
    Ok(Gate {
        verifier: crate::token::Verifier::new(
            verifying,
            cfg.callback_server.clock_skew_leeway_seconds,
        ),
        signer,
        service_name: cfg.callback_server.service_name.clone(),
        token_ttl_secs: cfg.token_ttl().as_secs(),
        max_json_depth: cfg.limits.max_json_depth,
    })
}

/// Opens the decision log when `decision_log.path` is set; refusing to start
/// without it, since an audit trail that silently is not there is worse.
pub fn open_decision_log(
    cfg: &Config,
) -> anyhow::Result<Option<Arc<crate::decision_log::DecisionLog>>> {
    use crate::decision_log::{DecisionLog, InputMode, Options};
    let d = &cfg.decision_log;
    let Some(path) = &d.path else {
        return Ok(None);
    };
    let log = DecisionLog::open(Options {
        path: path.clone(),
        input: InputMode::parse(&d.input)?,
        fail_closed: d.fail_closed,
        max_bytes: d.max_bytes,
        retain: d.retain,
    })?;
    info!(path = %path.display(), input = %d.input, fail_closed = d.fail_closed, "decision log open");
    Ok(Some(Arc::new(log)))
}

/// Opens the configured state store (created on first start). A store that
/// cannot be opened, is damaged or has a newer schema refuses the start:
/// deciding spending limits without it would approve blind.
/// `wiring`: what the store is told of the server (its load, its decision
/// log). Returns the store and how long a decision's other durable effects
/// may wait for its commit (the group commit's window; zero when each
/// decision commits at once).
pub fn open_store(
    cfg: &Config,
    wiring: StoreWiring,
) -> anyhow::Result<(Arc<dyn crate::store::Store>, Duration)> {
    if cfg.state.backend == "postgres" {
        let store = crate::store::PostgresStore::open_with(&cfg.state.postgres.options())?;
        info!(target_db = %store.target(), "state store open (postgres)");
        return Ok((Arc::new(store), Duration::ZERO));
    }
    let path = &cfg.state.sqlite.path;
    let group_commit = Duration::from_millis(cfg.state.sqlite.group_commit_ms);
    let store = crate::store::SqliteStore::open_with(path, group_commit)?;
    if let Some(hint) = wiring.load_hint {
        store.set_load_hint(hint);
    }
    if let Some(hook) = wiring.commit_hook {
        store.set_commit_hook(hook);
    }
    info!(path = %path.display(), "state store open (sqlite)");
    let window = store.batch_window();
    Ok((Arc::new(store), window))
}

/// What [`open_store`] tells a store that has a group commit.
#[derive(Default)]
pub struct StoreWiring {
    /// How many requests are still being decided (may join a commit).
    pub load_hint: Option<crate::store::LoadHint>,
    /// Runs as a group commit takes its batch (the decision log's flush).
    pub commit_hook: Option<crate::store::CommitHook>,
}

/// The HTTP layer's limits (`limits`), read once at start.
pub fn http_limits(cfg: &Config) -> crate::http::Limits {
    let c = &cfg.limits;
    crate::http::Limits {
        max_body_bytes: c.max_body_bytes,
        body_read_timeout: Duration::from_millis(c.body_read_timeout_ms),
        header_read_timeout: Duration::from_millis(c.header_read_timeout_ms),
        request_deadline: Duration::from_millis(c.request_deadline_ms),
        max_queue: c.max_queue,
        shutdown_grace: Duration::from_millis(c.shutdown_grace_ms),
    }
}

/// The retry cache (`retry_cache`), read once at start.
pub fn retry_cache(cfg: &Config) -> crate::decide::retry::RetryCache {
    let c = &cfg.retry_cache;
    crate::decide::retry::RetryCache::new(
        c.enabled,
        Duration::from_secs(c.window_seconds),
        c.max_entries,
    )
}

/// The configured store opened beside a running server, for `ledger` and
/// `freeze` (SQLite: a second connection, which WAL allows; the server holds
/// the file's lock). `create`: a SQLite file no server has made yet is
/// created (so a server that starts later finds the switch); otherwise its
/// absence is an error.
pub fn open_beside(cfg: &Config, create: bool) -> anyhow::Result<Box<dyn crate::store::Store>> {
    if cfg.state.backend == "postgres" {
        let store = crate::store::PostgresStore::open_with(&cfg.state.postgres.options())?;
        return Ok(Box::new(store));
    }
    let path = &cfg.state.sqlite.path;
    if !path.exists() {
        if !create {
            anyhow::bail!(
                "no state store at `{}` (it is created when the server first starts)",
                path.display()
            );
        }
        drop(crate::store::SqliteStore::open(path)?);
    }
    Ok(Box::new(crate::store::sqlite::Beside::open(path)?))
}
