//! Hot reload of policies, data and keys while serving.
//!
//! Triggers: a change under the policy directory or of a configured data file
//! (watched with `notify`, debounced, when `policy.watch` is on), and SIGHUP,
//! which also re-reads the config file and reloads the keys (so a TSS Node
//! key can be rotated: configure old and new side by side, SIGHUP, later
//! remove the old one, SIGHUP).
//!
//! A candidate set is loaded, compiled and contract-checked
//! ([`PolicySet::load`]) and, with `policy.require_passing_tests` (the
//! default), must pass its own `test_*` rules and the fixtures under
//! `policy.fixtures`, before it replaces the serving set in one atomic
//! store. The first good load after refused ones is logged as a recovery. A refused candidate is logged with its file, line and reason and
//! counted (`tss_gate_policy_reloads_total{result="failure"}`,
//! `tss_gate_policy_load_ok 0`); the old set keeps serving. The warnings of
//! `check` ([`crate::testing::runner::warnings`]) are logged at WARN for
//! every new set accepted, and beside the failing cases for a set the test
//! gate refused (they often explain them). Requests in flight
//! finish on the set they started with (see [`crate::decide::Live`]).
//!
//! The shadow set (`policy.shadow_dir`, [`crate::decide::shadow`]) is tried after the
//! live one on every reload, through the same loader and gate (its own
//! `test_*` rules, not the live fixtures). A refused shadow set is logged
//! with its file, line and reason (`tss_gate_shadow_policy_load_ok 0`) and
//! the last good one keeps evaluating; with none loaded yet (a broken set at
//! start) the server serves without shadow until one loads. A SIGHUP whose
//! config no longer sets `shadow_dir` turns shadow mode off. The shadow set
//! never affects the live reload's result.
//!
//! Owns: the reload task, the watcher, and the minimal Rego test check used
//! as a reload gate. It touches only the live handle ([`Live`]: gate, policy, shadow) and
//! metrics.
//! Limits (except the JSON depth, which the rebuilt token gate carries),
//! endpoints and the retry cache are read once at start; changing them
//! needs a restart. So do the watched paths: a SIGHUP that moves
//! `policy.dir` loads from the new directory, but only a restart watches it.
//! A SIGHUP that finds such a setting changed says so in a warning, naming
//! the sections, so an operator is never left believing a new limit holds.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};

use super::gate::{
    ReloadError, TestGate, load_checked, refused_set_warnings, shadow_options, test_gate,
};
use crate::config::{Config, Overrides};
use crate::decide::Live;
use crate::metrics::Metrics;
use crate::policy::PolicyOptions;

/// Quiet time after the last file event before reloading: editors and
/// `cp -r` write a set of files in bursts, and a half-written set must not
/// be tried (it would be refused, but noisily).
pub const DEBOUNCE: Duration = Duration::from_millis(200);

/// Reloads the serving state from its sources. One per server.
pub struct Reloader {
    live: Arc<Live>,
    metrics: Arc<Metrics>,
    /// The config file, re-read on SIGHUP.
    config_path: PathBuf,
    /// Command-line overrides, re-applied on every re-read so that a reload
    /// never silently drops them.
    overrides: Overrides,
    /// Policy settings of the last config that loaded.
    policy: Mutex<(PolicyOptions, TestGate)>,
    /// Policy loads refused since the last good one.
    refused: Mutex<u64>,
    /// Shadow set settings of the last config that loaded; None: off.
    shadow: Mutex<Option<(PolicyOptions, TestGate)>>,
    /// The settings read once at start, as the running server uses them.
    started_with: Config,
    /// Serialises reloads: the watcher and SIGHUP may fire together.
    busy: Mutex<()>,
}

impl Reloader {
    pub fn new(live: Arc<Live>, metrics: Arc<Metrics>, cfg: &Config, overrides: Overrides) -> Self {
        Self {
            live,
            metrics,
            config_path: cfg.source.clone(),
            overrides,
            policy: Mutex::new((cfg.policy_options(), test_gate(cfg))),
            refused: Mutex::new(0),
            shadow: Mutex::new(shadow_options(cfg)),
            started_with: cfg.clone(),
            busy: Mutex::new(()),
        }
    }

    fn policy_settings(&self) -> (PolicyOptions, TestGate) {
        self.policy
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Tries the policy directory as it is now. On success the new set is
    /// serving and its revision is returned; on failure the old one still is.
    pub fn reload_policy(&self) -> Result<String, ReloadError> {
        let _one = self.busy.lock().unwrap_or_else(|p| p.into_inner());
        let live = self.reload_policy_locked();
        self.reload_shadow_locked();
        live
    }

    /// Tries the shadow set as it is now (or turns shadow mode off when
    /// none is configured). Never fails: a refused set is logged and
    /// counted, and whatever was evaluating before goes on.
    pub fn reload_shadow(&self) {
        let _one = self.busy.lock().unwrap_or_else(|p| p.into_inner());
        self.reload_shadow_locked();
    }

    fn reload_shadow_locked(&self) {
        let settings = self
            .shadow
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let shadow = &self.live.shadow;
        let Some((opts, gate)) = settings else {
            if shadow.turn_off() {
                info!("shadow mode off: `policy.shadow_dir` is no longer set");
            }
            self.metrics.shadow_loaded(None);
            return;
        };
        let old = shadow.revision();
        match load_checked(&opts, &gate) {
            Ok(set) => {
                let rev = set.revision.clone();
                let warnings = if old.as_deref() == Some(rev.as_str()) {
                    Vec::new()
                } else {
                    crate::testing::runner::warnings(&set)
                };
                if let Err(e) = shadow.install(set) {
                    self.metrics.shadow_refused();
                    error!("cannot start the shadow thread, running without shadow: {e}");
                    return;
                }
                self.metrics.shadow_loaded(Some(&rev));
                if old.as_deref() == Some(rev.as_str()) {
                    debug!(shadow_revision = %rev, "shadow policy reloaded, unchanged");
                } else {
                    info!(
                        shadow_revision = %rev,
                        previous_shadow_revision = old.as_deref().unwrap_or("none"),
                        shadow_dir = %opts.dir.display(),
                        "shadow policy loaded: evaluating beside the live policy, answers unaffected"
                    );
                }
                for w in warnings {
                    warn!(shadow_revision = %rev, "shadow policy warning: {w}");
                }
            }
            Err(e) => {
                self.metrics.shadow_refused();
                let keeps = match &old {
                    Some(_) => "the previous shadow set keeps evaluating",
                    None => "running without shadow until it loads",
                };
                error!(
                    shadow_dir = %opts.dir.display(),
                    shadow_revision = old.as_deref().unwrap_or("none"),
                    "shadow policy load refused, {keeps} (answers unaffected): {}",
                    crate::policy::one_line(&e.to_string())
                );
                for w in refused_set_warnings(&opts, &e) {
                    warn!(shadow_dir = %opts.dir.display(), "shadow policy warning in the refused set: {w}");
                }
            }
        }
    }

    fn reload_policy_locked(&self) -> Result<String, ReloadError> {
        let (opts, gate) = self.policy_settings();
        let old = self.live.policy.load().revision.clone();
        match load_checked(&opts, &gate) {
            Ok(set) => {
                let rev = set.revision.clone();
                let files = set.files.len();
                self.metrics.velocity_limits_loaded(&set.velocity);
                self.live.policy.store(Arc::new(set));
                self.metrics.policy_loaded(&rev);
                let refused =
                    std::mem::take(&mut *self.refused.lock().unwrap_or_else(|p| p.into_inner()));
                if refused > 0 {
                    // The operator saw refusals; say plainly they are over.
                    info!(
                        policy_revision = %rev,
                        previous_revision = %old,
                        refused_loads = refused,
                        "policy load recovered: this set passed every check and now serves"
                    );
                } else if rev == old {
                    debug!(policy_revision = %rev, "policy reloaded, unchanged");
                } else {
                    info!(policy_revision = %rev, previous_revision = %old, policy_files = files, "policy reloaded");
                }
                if refused > 0 || rev != old {
                    for w in crate::testing::runner::warnings(&self.live.policy.load()) {
                        warn!(policy_revision = %rev, "policy warning: {w}");
                    }
                }
                Ok(rev)
            }
            Err(e) => {
                *self.refused.lock().unwrap_or_else(|p| p.into_inner()) += 1;
                self.metrics.policy_refused();
                error!(
                    policy_dir = %opts.dir.display(),
                    serving_revision = %old,
                    "policy reload refused, previous policy keeps serving: {}",
                    crate::policy::one_line(&e.to_string())
                );
                for w in refused_set_warnings(&opts, &e) {
                    warn!(policy_dir = %opts.dir.display(), "policy warning in the refused set: {w}");
                }
                Err(e)
            }
        }
    }

    /// SIGHUP: re-read the config, reload the keys, then the policy. A config
    /// or key problem leaves the keys as they were; the policy is still tried.
    pub fn reload_all(&self) -> Result<String, ReloadError> {
        let _one = self.busy.lock().unwrap_or_else(|p| p.into_inner());
        match self.reload_keys() {
            Ok(cfg) => {
                let pending = restart_only_changes(&self.started_with, &cfg);
                if !pending.is_empty() {
                    warn!(
                        sections = ?pending,
                        "config changes to these settings take effect only after a restart; the running server keeps the values it started with"
                    );
                }
                crate::policy::install_time_limit(Duration::from_millis(
                    cfg.policy.eval_timeout_ms,
                ));
                *self.policy.lock().unwrap_or_else(|p| p.into_inner()) =
                    (cfg.policy_options(), test_gate(&cfg));
                *self.shadow.lock().unwrap_or_else(|p| p.into_inner()) = shadow_options(&cfg);
            }
            Err(e) => {
                error!("key reload refused, previous keys keep serving: {e}");
            }
        }
        let live = self.reload_policy_locked();
        self.reload_shadow_locked();
        live
    }

    fn reload_keys(&self) -> Result<Config, ReloadError> {
        let cfg = Config::load(&self.config_path, &self.overrides)?;
        let gate =
            super::build::load_gate(&cfg).map_err(|e| ReloadError::Keys(format!("{e:#}")))?;
        let names: Vec<String> = gate.verifier.key_names().map(str::to_owned).collect();
        self.live.gate.store(Arc::new(gate));
        info!(tss_node_keys = ?names, "keys reloaded");
        Ok(cfg)
    }

    /// Paths to watch: the policy directory (recursively) and the directory
    /// of each extra data file (editors replace files by renaming, which a
    /// watch on the file itself would lose).
    fn watch_paths(&self) -> Vec<(PathBuf, notify::RecursiveMode)> {
        let (opts, _) = self.policy_settings();
        let mut out = vec![(opts.dir.clone(), notify::RecursiveMode::Recursive)];
        let shadow = self
            .shadow
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut data_files = opts.data_files.clone();
        if let Some((s, _)) = shadow {
            if s.dir.is_dir() && !out.iter().any(|(p, _)| *p == s.dir) {
                out.push((s.dir.clone(), notify::RecursiveMode::Recursive));
            }
            data_files.extend(s.data_files);
        }
        for f in &data_files {
            let parent = f.parent().map(Path::to_path_buf).unwrap_or_default();
            if !parent.as_os_str().is_empty() && !out.iter().any(|(p, _)| *p == parent) {
                out.push((parent, notify::RecursiveMode::NonRecursive));
            }
        }
        out
    }
}

/// Starts the file watcher; events are forwarded to `tx`. The watcher stops
/// when the returned value is dropped.
fn start_watcher(
    paths: &[(PathBuf, notify::RecursiveMode)],
    tx: mpsc::UnboundedSender<()>,
) -> notify::Result<notify::RecommendedWatcher> {
    use notify::Watcher;
    let mut w = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
        let relevant = match ev {
            // Reads do not change the set.
            Ok(e) => !matches!(e.kind, notify::EventKind::Access(_)),
            // A lost event (queue overflow) may hide a change: reload.
            Err(_) => true,
        };
        if relevant {
            let _ = tx.send(());
        }
    })?;
    for (p, mode) in paths {
        w.watch(p, *mode)?;
    }
    Ok(w)
}

/// Starts the reload task: SIGHUP and (when `watch`) file changes, until
/// `shutdown` resolves. The signal handler and the watcher are in place when
/// this returns, so a SIGHUP sent after it never kills the process and no
/// file change after it goes unseen. Reload work runs on the blocking pool.
/// Must be called within a tokio runtime.
pub fn start(
    reloader: Arc<Reloader>,
    watch: bool,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let hup = match signal(SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            warn!("cannot listen for SIGHUP, reload by signal is off: {e}");
            None
        }
    };
    let (tx, rx) = mpsc::unbounded_channel::<()>();
    let watcher = if watch {
        let paths = reloader.watch_paths();
        match start_watcher(&paths, tx.clone()) {
            Ok(w) => {
                info!(paths = ?paths.iter().map(|(p, _)| p).collect::<Vec<_>>(), "watching policy files");
                Some(w)
            }
            Err(e) => {
                warn!("cannot watch policy files, reload on SIGHUP only: {e}");
                None
            }
        }
    } else {
        None
    };
    tokio::spawn(run(reloader, hup, rx, tx, watcher, shutdown))
}

/// The settings a reload cannot apply (read once at start) that differ
/// between `running` and `new`, by config name. Whole sections are
/// compared, so a field added to one later is covered without touching this.
pub fn restart_only_changes(running: &Config, new: &Config) -> Vec<&'static str> {
    let mut out = Vec::new();
    if running.callback_server.endpoint != new.callback_server.endpoint {
        out.push("callback_server.endpoint");
    }
    if running.callback_server.enable_debug != new.callback_server.enable_debug {
        out.push("callback_server.enable_debug");
    }
    if running.policy.watch != new.policy.watch {
        out.push("policy.watch");
    }
    if running.metrics != new.metrics {
        out.push("metrics");
    }
    if running.decision_log != new.decision_log {
        out.push("decision_log");
    }
    // The token gate, and with it the JSON depth limit, is rebuilt on reload.
    let mut limits = new.limits.clone();
    limits.max_json_depth = running.limits.max_json_depth;
    if running.limits != limits {
        out.push("limits");
    }
    if running.retry_cache != new.retry_cache {
        out.push("retry_cache");
    }
    if running.logging != new.logging {
        out.push("logging");
    }
    if running.record_dir != new.record_dir {
        out.push("record_dir");
    }
    // The event listener and its keys are built once at start.
    if running.event_server != new.event_server {
        out.push("event_server");
    }
    out
}

async fn run(
    reloader: Arc<Reloader>,
    mut hup: Option<tokio::signal::unix::Signal>,
    mut rx: mpsc::UnboundedReceiver<()>,
    // Held so that `rx` never reports closed while the task runs.
    tx: mpsc::UnboundedSender<()>,
    // Held: dropping it stops watching.
    _watcher: Option<notify::RecommendedWatcher>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        let hup_recv = async {
            match hup.as_mut() {
                Some(h) => h.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = &mut shutdown => break,
            _ = hup_recv => {
                info!("SIGHUP: reloading config, keys and policy");
                let r = reloader.clone();
                let _ = tokio::task::spawn_blocking(move || r.reload_all()).await;
            }
            Some(()) = rx.recv() => {
                // Debounce: wait until the files have been quiet for DEBOUNCE.
                while let Ok(Some(())) = tokio::time::timeout(DEBOUNCE, rx.recv()).await {}
                let r = reloader.clone();
                let _ = tokio::task::spawn_blocking(move || r.reload_policy()).await;
            }
        }
    }
    drop(tx);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::gate::run_policy_tests;

    #[test]
    fn restart_only_settings_that_changed_are_named() {
        let parse = |port: u16, extra: &str| {
            let text = format!(
                "callback_server:\n  endpoint: \"127.0.0.1:{port}\"\n  service_private_key_path: k.pem\n{extra}"
            );
            Config::parse(Path::new("/etc/t/c.yaml"), &text).unwrap()
        };
        let running = parse(9000, "limits:\n  max_queue: 64\n");
        assert!(
            restart_only_changes(&running, &parse(9000, "limits:\n  max_queue: 64\n")).is_empty()
        );
        // Settings a SIGHUP does apply (keys, policy, the token gate's JSON
        // depth) are not reported.
        assert!(
            restart_only_changes(
                &running,
                &parse(
                    9000,
                    "limits:\n  max_queue: 64\n  max_json_depth: 9\npolicy:\n  eval_timeout_ms: 7\n"
                )
            )
            .is_empty()
        );
        assert_eq!(
            restart_only_changes(
                &running,
                &parse(
                    9001,
                    "limits:\n  max_queue: 65\nlogging:\n  level: debug\nretry_cache:\n  enabled: false\n"
                )
            ),
            vec![
                "callback_server.endpoint",
                "limits",
                "retry_cache",
                "logging"
            ]
        );
    }

    fn opts(dir: &Path) -> PolicyOptions {
        PolicyOptions {
            dir: dir.to_owned(),
            entrypoint: crate::policy::DEFAULT_ENTRYPOINT.into(),
            data_files: Vec::new(),
            eval_timeout: Duration::from_secs(5),
        }
    }

    #[test]
    fn failing_and_undefined_tests_are_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("p.rego"),
            "package p\n\nx := 1\n\ndecision := {\"allow\": false, \"reasons\": [\"no\"]}\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("p_test.rego"),
            "package p_test\n\nimport data.p\n\ntest_ok if p.x == 1\n\ntest_wrong if p.x == 2\n\ntest_value := 7\n",
        )
        .unwrap();
        let mut o = opts(dir.path());
        o.entrypoint = "data.p.decision".into();
        match run_policy_tests(&o, None) {
            Err(ReloadError::TestsFailed {
                failed,
                total,
                failures,
            }) => {
                assert_eq!((failed, total), (2, 3));
                assert!(
                    failures[0].contains("test_wrong") && failures[0].contains("p_test.rego:7"),
                    "{failures:?}"
                );
                assert!(
                    failures[1].contains("test_value") && failures[1].contains("`7`, not true"),
                    "{failures:?}"
                );
            }
            other => panic!("expected failures, got {other:?}"),
        }
        std::fs::write(
            dir.path().join("p_test.rego"),
            "package p_test\n\nimport data.p\n\ntest_ok if p.x == 1\n",
        )
        .unwrap();
        assert_eq!(run_policy_tests(&o, None).unwrap(), 1);
        std::fs::remove_file(dir.path().join("p_test.rego")).unwrap();
        assert!(matches!(
            run_policy_tests(&o, None),
            Err(ReloadError::NoTests(_))
        ));
    }
}
