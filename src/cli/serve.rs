//! `tss-gate serve`: load config, keys and policies (refusing to start on
//! anything `check` would refuse), then run the server until SIGINT/SIGTERM.
//! With the shipped dev config, missing key files are generated first.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Args;
use tracing::{error, info, warn};

use super::Exit;
use crate::config::{Config, Overrides};
use crate::decide::Decider;
use crate::http::AppState;
use crate::metrics::Metrics;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Config file (YAML).
    #[arg(long, default_value = crate::config::DEFAULT_CONFIG)]
    pub config: PathBuf,
    /// Listen address, ADDR:PORT.
    #[arg(long)]
    pub endpoint: Option<String>,
    /// A TSS Node public key; repeat for several nodes. Replaces the config's keys.
    #[arg(long = "tss-node-key")]
    pub tss_node_key: Vec<PathBuf>,
    /// The callback server's private key.
    #[arg(long)]
    pub private_key: Option<PathBuf>,
    /// Policy directory; wins over the config's `policy.dir`.
    #[arg(long)]
    pub policy_dir: Option<PathBuf>,
    /// JSON log lines instead of human-readable ones.
    #[arg(long)]
    pub log_json: bool,
}

impl ServeArgs {
    pub fn overrides(&self) -> Overrides {
        Overrides {
            endpoint: self.endpoint.clone(),
            tss_node_keys: self.tss_node_key.clone(),
            private_key: self.private_key.clone(),
            policy_dir: self.policy_dir.clone(),
        }
    }
}

pub fn run(a: ServeArgs) -> Exit {
    let cfg = match Config::load(&a.config, &a.overrides()) {
        Ok(c) => c,
        Err(e) => {
            super::print_error(&e.into());
            return Exit::Error;
        }
    };
    init_logging(&cfg, a.log_json);
    if cfg.generate_dev_keys
        && let Err(e) = ensure_dev_keys(&cfg)
    {
        error!("{e}");
        return Exit::Error;
    }
    let loaded = match crate::runtime::build::load_all(&cfg) {
        Ok(l) => l,
        Err(e) => return refused(&e),
    };
    // What `check` would warn about goes live silently otherwise (a rule
    // the decision never reaches, a data key no policy reads).
    for w in crate::testing::runner::warnings(&loaded.policy) {
        warn!("policy warning: {w}");
    }
    let log = match crate::runtime::build::open_decision_log(&cfg) {
        Ok(l) => l,
        Err(e) => return refused(&e),
    };
    // Requests queued for a decision or being decided: the store's load
    // hint (a group commit waits only while some may still join it).
    let deciding = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let wiring = crate::runtime::build::StoreWiring {
        load_hint: Some({
            let d = deciding.clone();
            Arc::new(move || d.load(std::sync::atomic::Ordering::Acquire))
        }),
        // One fsync of the log covers a group commit's lines.
        commit_hook: log
            .clone()
            .map(|l| -> crate::store::CommitHook { Arc::new(move || l.write_held()) }),
    };
    // Opened outside the async runtime: the PostgreSQL client blocks, and
    // is dropped (below) outside it too.
    let (store, log_hold) = match crate::runtime::build::open_store(&cfg, wiring) {
        Ok(s) => s,
        Err(e) => return refused(&e),
    };
    let parts = Parts {
        store: store.clone(),
        log,
        deciding,
        log_hold,
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(crate::http::async_worker_threads())
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return Exit::Error;
        }
    };
    let result = rt.block_on(serve(cfg, a.overrides(), loaded, parts));
    drop(rt);
    drop(store);
    match result {
        Ok(()) => Exit::Ok,
        Err(e) => refused(&e),
    }
}

/// A start refused (or a serve that failed): logged and printed, exit 1.
fn refused(e: &anyhow::Error) -> Exit {
    error!("{}", super::error_text(e));
    super::print_error(e);
    Exit::Error
}

fn init_logging(cfg: &Config, json_flag: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        let level = if cfg.callback_server.enable_debug {
            "debug"
        } else {
            cfg.logging.level.as_str()
        };
        tracing_subscriber::EnvFilter::new(level)
    });
    // Logs go to stderr: stdout carries the machine-readable `listening on`
    // lines scripts and tests read.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json_flag || cfg.logging.format == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// Dev config only: generate the callback-server pair and a stand-in TSS
/// Node pair where their files are missing, and say so loudly.
fn ensure_dev_keys(cfg: &Config) -> anyhow::Result<()> {
    let server_priv = &cfg.callback_server.service_private_key_path;
    let mut generated = Vec::new();
    if !server_priv.exists() {
        let (dir, name) = split_pair_path(server_priv)?;
        let key = crate::keys::generate(2048)?;
        let p = crate::keys::write_pair(&key, &dir, &name, false)?;
        generated.push(p.private);
    }
    for nk in cfg.node_keys() {
        if !nk.path.exists() {
            let (dir, name) = split_pair_path(&nk.path)?;
            let key = crate::keys::generate(2048)?;
            let p = crate::keys::write_pair(&key, &dir, &name, false)?;
            if p.public != nk.path {
                anyhow::bail!(
                    "dev key for `{}` must be named NAME.pub.pem, got `{}`",
                    nk.name,
                    nk.path.display()
                );
            }
            generated.push(p.private);
        }
    }
    if generated.is_empty() {
        return Ok(());
    }
    let node_priv = cfg
        .node_keys()
        .first()
        .map(|k| {
            let (d, n) = split_pair_path(&k.path).unwrap_or_default();
            crate::keys::pair_paths(&d, &n).private
        })
        .unwrap_or_default();
    let server_pub = split_pair_path(server_priv)
        .map(|(d, n)| crate::keys::pair_paths(&d, &n).public)
        .unwrap_or_default();
    let banner = "=".repeat(72);
    warn!("{banner}");
    warn!("DEV MODE: generated missing key files (generate_dev_keys: true):");
    for g in &generated {
        warn!("  {}", g.display());
    }
    warn!("These keys are for development only. Never use this config in production.");
    warn!("Try it from another shell:");
    warn!(
        "  cargo run --release -- send http://{}/v2/check tests/fixtures/keysign_eth_approve.json --key {} --server-key {}",
        cfg.callback_server.endpoint.replace("0.0.0.0", "127.0.0.1"),
        node_priv.display(),
        server_pub.display()
    );
    warn!("{banner}");
    Ok(())
}

/// `keys/callback-server.pem` → (`keys`, `callback-server`); also accepts the
/// public file name `NAME.pub.pem`.
fn split_pair_path(p: &Path) -> anyhow::Result<(PathBuf, String)> {
    let dir = p.parent().map(Path::to_path_buf).unwrap_or_default();
    let file = p
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = file
        .strip_suffix(".pub.pem")
        .or_else(|| file.strip_suffix(".pem"))
        .ok_or_else(|| {
            anyhow::anyhow!(
                "dev key path `{}` must end in .pem or .pub.pem",
                p.display()
            )
        })?;
    Ok((dir, name.to_owned()))
}

/// What `serve` is handed, built before the async runtime starts.
struct Parts {
    store: Arc<dyn crate::store::Store>,
    log: Option<Arc<crate::decision_log::DecisionLog>>,
    deciding: Arc<std::sync::atomic::AtomicUsize>,
    /// How long a decision's log line may wait for its store commit.
    log_hold: std::time::Duration,
}

async fn serve(
    cfg: Config,
    overrides: Overrides,
    loaded: crate::runtime::build::Loaded,
    parts: Parts,
) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::new());
    let mut decider = Decider::new(loaded.gate, loaded.policy, metrics);
    if let Some(dir) = &cfg.record_dir {
        decider.recorder = Some(crate::decide::record::Recorder::new(dir)?);
        warn!(dir = %dir.display(), "recording every verified request as a fixture");
    }
    decider.decision_log = parts.log;
    decider.deciding = parts.deciding;
    decider.log_hold = parts.log_hold;
    let store: Arc<dyn crate::store::Store> = Arc::new(crate::store::Metered::new(
        parts.store,
        decider.metrics.clone(),
    ));
    decider.store = Some(store.clone());
    // The emergency stop is in force from the first request: a switch
    // that cannot be read refuses the start (it might be on).
    {
        let s = store.clone();
        let f = tokio::task::spawn_blocking(move || crate::freeze::read(s.as_ref()))
            .await
            .map_err(|e| anyhow::anyhow!("reading the freeze switch: {e}"))?
            .map_err(|e| anyhow::anyhow!("cannot read the freeze switch: {e}"))?;
        crate::freeze::apply(
            &decider.freeze,
            f,
            &decider.metrics,
            decider.decision_log.as_deref(),
        );
    }
    decider.retry = crate::runtime::build::retry_cache(&cfg);
    decider.record_approvals = cfg.event_server.is_some();
    let decider = Arc::new(decider);
    let mut state = AppState::new(decider.clone(), crate::runtime::build::http_limits(&cfg))
        .map_err(|e| anyhow::anyhow!("cannot start worker threads: {e}"))?;
    state.metrics_on_main = cfg.metrics.endpoint.is_none();
    if backtraces_slow_evaluation(
        std::env::var_os("RUST_BACKTRACE").as_deref(),
        std::env::var_os("RUST_LIB_BACKTRACE").as_deref(),
    ) {
        warn!(
            "backtrace capture for error values is on (RUST_BACKTRACE or \
             RUST_LIB_BACKTRACE): every error value regorus creates while evaluating \
             then captures one, which made policy evaluation 1.5-7x slower \
             (BENCHMARKS.md). Set RUST_LIB_BACKTRACE=0 to keep panic backtraces without \
             that cost."
        );
    }
    let state = Arc::new(state);
    tokio::spawn(crate::freeze::follow(
        store.clone(),
        decider.freeze.clone(),
        decider.metrics.clone(),
        decider.decision_log.clone(),
    ));
    // The spending-limit gauge, from the ledger (crate::velocity::gauge).
    {
        let live = decider.live.clone();
        tokio::spawn(crate::velocity::gauge::follow(
            store.clone(),
            move || live.policy.load().velocity.clone(),
            decider.metrics.clone(),
        ));
    }
    let listener = tokio::net::TcpListener::bind(cfg.endpoint())
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on `{}`: {e}", cfg.endpoint()))?;
    let addr = listener.local_addr()?;
    {
        let p = decider.live.policy.load();
        info!(
            endpoint = %addr,
            policy_revision = %p.revision,
            policy_files = p.files.len(),
            tss_node_keys = ?decider.live.gate.load().verifier.key_names().collect::<Vec<_>>(),
            "tss-gate listening"
        );
    }
    let (tx, _) = tokio::sync::broadcast::channel::<()>(1);
    {
        // Hot reload (SIGHUP, and file changes when `policy.watch`); in place
        // before the line below, so a SIGHUP after it cannot kill us.
        let reloader = Arc::new(crate::runtime::reload::Reloader::new(
            decider.live.clone(),
            decider.metrics.clone(),
            &cfg,
            overrides,
        ));
        // Shadow mode, before the first request. A broken shadow set is
        // logged and the server serves without it (crate::runtime::reload).
        reloader.reload_shadow();
        let mut rx = tx.subscribe();
        crate::runtime::reload::start(reloader, cfg.policy.watch, async move {
            let _ = rx.recv().await;
        });
    }
    let signalled = shutdown_signal();
    if let Some(m) = &cfg.metrics.endpoint {
        let ml = tokio::net::TcpListener::bind(m)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on metrics endpoint `{m}`: {e}"))?;
        println!("metrics on {}", ml.local_addr()?);
        let app = crate::http::metrics_app(state.clone());
        let mut rx = tx.subscribe();
        let limits = state.limits.clone();
        tokio::spawn(async move {
            let _ = crate::http::serve(
                ml,
                app,
                limits.header_read_timeout,
                limits.shutdown_grace,
                async move {
                    let _ = rx.recv().await;
                },
            )
            .await;
        });
    }
    if let (Some(evc), Some(verifier), Some(store)) =
        (&cfg.event_server, loaded.events, Some(store.clone()))
    {
        start_events(&state, &cfg, evc, verifier, store, &tx).await?;
    }
    // Machine-readable line for tests and scripts that bind port 0; printed
    // last, once every listener (the metrics one included) is bound.
    println!("listening on {addr}");
    let app = crate::http::app(state.clone());
    let limits = state.limits.clone();
    let tx2 = tx.clone();
    let shutdown = async move {
        signalled.await;
        info!("shutdown signal received: draining");
        let _ = tx2.send(());
    };
    crate::http::serve(
        listener,
        app,
        limits.header_read_timeout,
        limits.shutdown_grace,
        shutdown,
    )
    .await?;
    // Flush the decision log last: every answered line is already durable,
    // this writes the lines of answers that never made it out.
    if let Some(log) = &decider.decision_log {
        log.close();
    }
    info!("stopped");
    Ok(())
}

/// Starts the node's event listener (`event_server`).
async fn start_events(
    state: &Arc<AppState>,
    cfg: &Config,
    evc: &crate::config::EventServer,
    verifier: crate::token::Verifier,
    store: Arc<dyn crate::store::Store>,
    tx: &tokio::sync::broadcast::Sender<()>,
) -> anyhow::Result<()> {
    use crate::events::ingest;
    let metrics = crate::events::metrics::EventMetrics::new(&state.metrics)
        .map_err(|e| anyhow::anyhow!("event metrics: {e}"))?;
    let svc = Arc::new(ingest::EventService {
        verifier,
        store,
        metrics,
        log: state.decider.decision_log.clone(),
        max_body_bytes: cfg.limits.max_body_bytes,
        body_read_timeout: state.limits.body_read_timeout,
        service_name: evc.service_name.clone(),
        stalled_after_ms: evc.stalled_after_seconds as i64 * 1000,
        release_on: evc.release_on.clone(),
        admission: tokio::sync::Semaphore::new(ingest::MAX_CONCURRENT_EVENTS),
    });
    let mut rx = tx.subscribe();
    let addr = ingest::start(
        svc,
        evc.endpoint(),
        &evc.path,
        state.limits.header_read_timeout,
        state.limits.shutdown_grace,
        async move {
            let _ = rx.recv().await;
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("cannot listen on event endpoint `{}`: {e}", evc.endpoint))?;
    info!(endpoint = %addr, path = %evc.path, "node events accepted");
    println!("events on {addr}");
    Ok(())
}

/// Registers SIGINT and SIGTERM now and resolves on the first of them.
/// Registering before the `listening on` line means a signal sent after it
/// always drains instead of killing the process outright.
fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    async move {
        let wait = |s: std::io::Result<tokio::signal::unix::Signal>| async move {
            match s {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(e) => {
                    warn!("cannot listen for a shutdown signal: {e}");
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::select! {
            _ = wait(term) => {}
            _ = wait(int) => {}
        }
    }
}

/// Whether the environment makes anyhow capture a backtrace for every error
/// value: RUST_LIB_BACKTRACE decides when set, else RUST_BACKTRACE does.
fn backtraces_slow_evaluation(
    rust_backtrace: Option<&std::ffi::OsStr>,
    rust_lib_backtrace: Option<&std::ffi::OsStr>,
) -> bool {
    match rust_lib_backtrace.or(rust_backtrace) {
        Some(v) => v != "0",
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::backtraces_slow_evaluation as slow;
    use std::ffi::OsStr;

    #[test]
    fn lib_backtrace_setting_wins_over_rust_backtrace() {
        let (one, zero, full) = (OsStr::new("1"), OsStr::new("0"), OsStr::new("full"));
        assert!(!slow(None, None));
        assert!(slow(Some(one), None));
        assert!(slow(Some(full), None));
        assert!(!slow(Some(zero), None));
        assert!(!slow(Some(one), Some(zero)));
        assert!(slow(Some(zero), Some(one)));
        assert!(slow(None, Some(one)));
    }
}
