//! The YAML configuration: its schema, defaults, validation and path
//! resolution. The `callback_server` section takes the keys of Cobo's sample
//! servers unchanged so an operator's existing file works; everything else is
//! ours. Unknown keys and bad values are refused with the file, key and reason.
//!
//! Relative paths are resolved against the directory of the config file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Default config file, at the repository root.
pub const DEFAULT_CONFIG: &str = "tss-gate.yaml";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config `{path}`: {reason}")]
    Read { path: PathBuf, reason: String },
    /// Every problem found in one file, one per line, each `FILE:LINE:`.
    #[error("{}", .problems.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("\n"))]
    Problems { problems: Vec<Problem> },
}

/// One problem in a config file, located as precisely as the file allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: PathBuf,
    /// 1-based line (and column, for parse errors); None when the value
    /// is not written in the file (a default, or a command-line override).
    pub line: Option<usize>,
    pub column: Option<usize>,
    /// Dotted key, for problems found after parsing.
    pub key: Option<String>,
    pub reason: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.path.display())?;
        match (self.line, self.column) {
            (Some(l), Some(c)) => write!(f, ":{l}:{c}")?,
            (Some(l), None) => write!(f, ":{l}")?,
            _ => {}
        }
        match &self.key {
            Some(k) => write!(f, ": key `{k}`: {}", self.reason),
            None => write!(f, ": {}", self.reason),
        }
    }
}

/// A command-line path, relative to the working directory, made absolute
/// so messages name the file meant.
fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_owned())
}

/// serde_yaml's message without its trailing ` at line L column C` (the
/// location is printed in front, as `FILE:LINE:COL`).
fn strip_location(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) if msg[i..].contains(" column ") => msg[..i].to_owned(),
        _ => msg.to_owned(),
    }
}

/// Most problems one report lists before it stops looking.
const MAX_PROBLEMS: usize = 50;

/// The 1-based line where the dotted `key` is written in block-style YAML
/// `text`, or where its nearest written ancestor is; None if not even the
/// top-level key is written.
pub fn key_line(text: &str, key: &str) -> Option<usize> {
    let want: Vec<&str> = key.split('.').collect();
    let mut stack: Vec<(usize, String)> = Vec::new();
    let mut best: Option<(usize, usize)> = None;
    for (i, raw) in text.lines().enumerate() {
        let trimmed = raw.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let mut indent = raw.len() - trimmed.len();
        let mut t = trimmed;
        // A list item's first key sits after its dash.
        while let Some(rest) = t.strip_prefix("- ") {
            indent += 2 + (rest.len() - rest.trim_start().len());
            t = rest.trim_start();
        }
        let Some((k, _)) = t.split_once(':') else {
            continue;
        };
        let k = k.trim().trim_matches('"').trim_matches('\'');
        while stack.last().is_some_and(|(ind, _)| *ind >= indent) {
            stack.pop();
        }
        stack.push((indent, k.to_owned()));
        let depth = stack.len();
        if depth <= want.len()
            && stack.iter().zip(&want).all(|((_, a), b)| a == b)
            && best.is_none_or(|(d, _)| depth > d)
        {
            best = Some((depth, i + 1));
            if depth == want.len() {
                break;
            }
        }
    }
    best.map(|(_, line)| line)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub callback_server: CallbackServer,
    #[serde(default)]
    pub policy: PolicySection,
    #[serde(default)]
    pub metrics: MetricsSection,
    #[serde(default)]
    pub decision_log: DecisionLogSection,
    #[serde(default)]
    pub limits: LimitsSection,
    #[serde(default)]
    pub retry_cache: RetryCacheSection,
    #[serde(default)]
    pub logging: LoggingSection,
    /// Where state that must survive a restart lives (spending-limit ledger,
    /// durable retry records).
    #[serde(default)]
    pub state: StateSection,
    /// Opt-in: the node's events (`/v2/event`) on their own listener.
    #[serde(default)]
    pub event_server: Option<EventServer>,
    /// Opt-in: write each verified request as a fixture file here.
    #[serde(default)]
    pub record_dir: Option<PathBuf>,
    /// Marks the shipped development config: missing key files are generated
    /// into `keys/` instead of refusing to start. Never set it in production.
    #[serde(default)]
    pub generate_dev_keys: bool,
    /// Where this config was read from; relative paths resolve against its
    /// directory.
    #[serde(skip)]
    pub source: PathBuf,
    /// The file's text, to point problems at their lines.
    #[serde(skip)]
    pub text: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallbackServer {
    #[serde(default = "default_service_name")]
    pub service_name: String,
    #[serde(default = "default_endpoint")]
    pub endpoint: String,
    #[serde(default = "default_token_expire_minutes")]
    pub token_expire_minutes: u64,
    /// Cobo samples' single TSS Node key; loaded under the name `client_public_key`.
    #[serde(default)]
    pub client_public_key_path: Option<PathBuf>,
    pub service_private_key_path: PathBuf,
    #[serde(default)]
    pub enable_debug: bool,
    /// Named TSS Node public keys; several nodes may share one callback server.
    #[serde(default)]
    pub tss_node_keys: Vec<NamedKey>,
    /// Accepted clock difference when checking `exp`/`nbf`.
    #[serde(default = "default_leeway")]
    pub clock_skew_leeway_seconds: u64,
}

/// The node's event reports (Cobo's event-server sample keys, accepted
/// unchanged, plus named keys and the path). Present: the listener runs and
/// every approval is recorded for the audit.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventServer {
    #[serde(default = "default_event_service_name")]
    pub service_name: String,
    #[serde(default = "default_event_endpoint")]
    pub endpoint: String,
    /// The sample's single node event key; named `client_public_key`.
    #[serde(default)]
    pub client_public_key_path: Option<PathBuf>,
    #[serde(default)]
    pub enable_debug: bool,
    /// Named node event public keys (one per node).
    #[serde(default)]
    pub event_keys: Vec<NamedKey>,
    #[serde(default = "default_event_path")]
    pub path: String,
    /// An approved task with no terminal event after this long counts as
    /// stalled (`tss_gate_tasks_stalled`).
    #[serde(default = "default_stalled_after")]
    pub stalled_after_seconds: u64,
    /// Which outcomes release a task's spending-limit hold: any of
    /// `failed`, `canceled`, `declined` (default all three).
    #[serde(default = "default_release_on")]
    pub release_on: Vec<String>,
}

fn default_release_on() -> Vec<String> {
    vec!["failed".into(), "canceled".into(), "declined".into()]
}

fn default_event_service_name() -> String {
    "tss-gate-events".into()
}
fn default_event_endpoint() -> String {
    "0.0.0.0:11030".into()
}
fn default_event_path() -> String {
    "/v2/event".into()
}
fn default_stalled_after() -> u64 {
    3600
}

impl EventServer {
    /// All event keys, the sample's single key first.
    pub fn keys(&self) -> Vec<NamedKey> {
        let mut out = Vec::new();
        if let Some(p) = &self.client_public_key_path {
            out.push(NamedKey {
                name: "client_public_key".into(),
                path: p.clone(),
            });
        }
        out.extend(self.event_keys.iter().cloned());
        out
    }

    pub fn endpoint(&self) -> SocketAddr {
        self.endpoint
            .parse()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 11030)))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamedKey {
    pub name: String,
    pub path: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySection {
    #[serde(default = "default_policy_dir")]
    pub dir: PathBuf,
    #[serde(default = "default_entrypoint")]
    pub entrypoint: String,
    #[serde(default)]
    pub data_files: Vec<PathBuf>,
    #[serde(default = "default_eval_timeout_ms")]
    pub eval_timeout_ms: u64,
    /// Watch the policy directory and reload on change.
    #[serde(default = "default_true")]
    pub watch: bool,
    /// A policy set serves (at start and on every reload) only when its
    /// own `test_*` rules, and the fixtures under `fixtures`, all pass.
    #[serde(default = "default_true")]
    pub require_passing_tests: bool,
    /// Fixtures that must decide as they expect before a set serves, with
    /// `require_passing_tests`. Unset: the Rego tests alone.
    #[serde(default)]
    pub fixtures: Option<PathBuf>,
    /// Shadow mode: a second policy set evaluated beside this one on live
    /// traffic and compared, never answered (see [`crate::decide::shadow`]).
    #[serde(default)]
    pub shadow_dir: Option<PathBuf>,
    /// The shadow set's extra data files, as `data_files` is the live set's.
    #[serde(default)]
    pub shadow_data_files: Vec<PathBuf>,
}

impl Default for PolicySection {
    fn default() -> Self {
        Self {
            dir: default_policy_dir(),
            entrypoint: default_entrypoint(),
            data_files: Vec::new(),
            eval_timeout_ms: default_eval_timeout_ms(),
            watch: true,
            require_passing_tests: true,
            fixtures: None,
            shadow_dir: None,
            shadow_data_files: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MetricsSection {
    /// Separate listen address for `/metrics`; when unset it is served on the
    /// main endpoint.
    #[serde(default)]
    pub endpoint: Option<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DecisionLogSection {
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// `full` or `digest`.
    #[serde(default = "default_input_mode")]
    pub input: String,
    /// When the log cannot be written: answer status 30 (`true`) or decide anyway.
    #[serde(default = "default_true")]
    pub fail_closed: bool,
    #[serde(default = "default_rotate_bytes")]
    pub max_bytes: u64,
    #[serde(default = "default_retain")]
    pub retain: usize,
}

impl Default for DecisionLogSection {
    fn default() -> Self {
        Self {
            path: None,
            input: default_input_mode(),
            fail_closed: true,
            max_bytes: default_rotate_bytes(),
            retain: default_retain(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LimitsSection {
    #[serde(default = "default_body_bytes")]
    pub max_body_bytes: usize,
    #[serde(default = "default_json_depth")]
    pub max_json_depth: usize,
    #[serde(default = "default_header_timeout_ms")]
    pub header_read_timeout_ms: u64,
    #[serde(default = "default_body_timeout_ms")]
    pub body_read_timeout_ms: u64,
    #[serde(default = "default_deadline_ms")]
    pub request_deadline_ms: u64,
    /// Requests admitted to decide at once (waiting + working); beyond this a
    /// request is answered "overloaded" at once.
    #[serde(default = "default_queue")]
    pub max_queue: usize,
    #[serde(default = "default_shutdown_ms")]
    pub shutdown_grace_ms: u64,
}

impl Default for LimitsSection {
    fn default() -> Self {
        Self {
            max_body_bytes: default_body_bytes(),
            max_json_depth: default_json_depth(),
            header_read_timeout_ms: default_header_timeout_ms(),
            body_read_timeout_ms: default_body_timeout_ms(),
            request_deadline_ms: default_deadline_ms(),
            max_queue: default_queue(),
            shutdown_grace_ms: default_shutdown_ms(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RetryCacheSection {
    #[serde(default = "default_true")]
    pub enabled: bool,
    #[serde(default = "default_retry_window")]
    pub window_seconds: u64,
    #[serde(default = "default_retry_entries")]
    pub max_entries: usize,
}

impl Default for RetryCacheSection {
    fn default() -> Self {
        Self {
            enabled: true,
            window_seconds: default_retry_window(),
            max_entries: default_retry_entries(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StateSection {
    /// `sqlite` (embedded, one process per file) or `postgres` (shared by
    /// several instances).
    #[serde(default = "default_state_backend")]
    pub backend: String,
    #[serde(default)]
    pub sqlite: SqliteSection,
    #[serde(default)]
    pub postgres: PostgresSection,
}

impl Default for StateSection {
    fn default() -> Self {
        Self {
            backend: default_state_backend(),
            sqlite: SqliteSection::default(),
            postgres: PostgresSection::default(),
        }
    }
}

/// The shared store. The password never sits in the config: it comes from
/// an environment variable or a file (0600) named here.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PostgresSection {
    /// `postgres://USER@HOST:PORT/DB` (or key=value form), no password.
    #[serde(default)]
    pub url: String,
    /// Environment variable holding the password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// File holding the password (its first line).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Connections per instance.
    #[serde(default = "default_pg_pool")]
    pub pool_size: u32,
    /// Connecting, and waiting for a free pooled connection.
    #[serde(default = "default_pg_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Any one statement, lock waits included; past it the request is
    /// answered with status 30.
    #[serde(default = "default_pg_timeout_ms")]
    pub statement_timeout_ms: u64,
}

impl PostgresSection {
    /// What the store needs of this section.
    pub fn options(&self) -> crate::store::PostgresOptions {
        crate::store::PostgresOptions::new(
            &self.url,
            self.password_env.as_deref(),
            self.password_file.as_deref(),
            self.pool_size,
            self.connect_timeout_ms,
            self.statement_timeout_ms,
        )
    }
}

impl Default for PostgresSection {
    fn default() -> Self {
        Self {
            url: String::new(),
            password_env: None,
            password_file: None,
            pool_size: default_pg_pool(),
            connect_timeout_ms: default_pg_timeout_ms(),
            statement_timeout_ms: default_pg_timeout_ms(),
        }
    }
}

fn default_pg_pool() -> u32 {
    16
}

fn default_pg_timeout_ms() -> u64 {
    2000
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SqliteSection {
    /// The database file, created (0600, with its directory) on first start.
    #[serde(default = "default_sqlite_path")]
    pub path: PathBuf,
    /// Group commit: while approvals under a spending limit arrive faster
    /// than one per 2.5 ms and other requests are still being decided, wait
    /// up to this long to make several durable with one fsync (0: commit
    /// each at once).
    #[serde(default = "default_group_commit_ms")]
    pub group_commit_ms: u64,
}

impl Default for SqliteSection {
    fn default() -> Self {
        Self {
            path: default_sqlite_path(),
            group_commit_ms: default_group_commit_ms(),
        }
    }
}

/// The most a group commit may hold an answer back.
pub const MAX_GROUP_COMMIT_MS: u64 = 50;

// Each commit writes the groups' right-edge pages and their parents once
// however many rows it carries: 20 ms gathers about twice the rows of 8 ms
// and took the writer's CPU per answer from 42 to 30 µs (BENCHMARKS.md).
fn default_group_commit_ms() -> u64 {
    20
}

fn default_state_backend() -> String {
    "sqlite".into()
}
fn default_sqlite_path() -> PathBuf {
    PathBuf::from("state/tss-gate.sqlite")
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LoggingSection {
    /// `pretty` or `json`.
    #[serde(default = "default_log_format")]
    pub format: String,
    #[serde(default = "default_log_level")]
    pub level: String,
}

impl Default for LoggingSection {
    fn default() -> Self {
        Self {
            format: default_log_format(),
            level: default_log_level(),
        }
    }
}

fn default_service_name() -> String {
    "tss-gate".into()
}
fn default_endpoint() -> String {
    "0.0.0.0:11020".into()
}
fn default_token_expire_minutes() -> u64 {
    2
}
fn default_leeway() -> u64 {
    30
}
fn default_policy_dir() -> PathBuf {
    PathBuf::from("rego")
}
fn default_entrypoint() -> String {
    crate::policy::DEFAULT_ENTRYPOINT.into()
}
fn default_eval_timeout_ms() -> u64 {
    1000
}
fn default_true() -> bool {
    true
}
fn default_input_mode() -> String {
    "full".into()
}
fn default_rotate_bytes() -> u64 {
    100 * 1024 * 1024
}
fn default_retain() -> usize {
    10
}
fn default_body_bytes() -> usize {
    1024 * 1024
}
fn default_json_depth() -> usize {
    crate::input::DEFAULT_MAX_DEPTH
}
fn default_header_timeout_ms() -> u64 {
    5_000
}
fn default_body_timeout_ms() -> u64 {
    5_000
}
fn default_deadline_ms() -> u64 {
    8_000
}
fn default_queue() -> usize {
    1024
}
fn default_shutdown_ms() -> u64 {
    10_000
}
fn default_retry_window() -> u64 {
    crate::decide::retry::DEFAULT_WINDOW_SECS
}
fn default_retry_entries() -> usize {
    crate::decide::retry::DEFAULT_MAX_ENTRIES
}
fn default_log_format() -> String {
    "pretty".into()
}
fn default_log_level() -> String {
    "info".into()
}

/// Overrides given on the command line; they win over the file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub endpoint: Option<String>,
    pub tss_node_keys: Vec<PathBuf>,
    pub private_key: Option<PathBuf>,
    pub policy_dir: Option<PathBuf>,
}

impl Config {
    /// Reads, parses, applies overrides, resolves paths and validates.
    pub fn load(path: &Path, overrides: &Overrides) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        // Absolute, so every path resolved against it (and every message
        // naming one) says exactly which file is meant.
        let path = &std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
        let mut cfg = Config::parse(path, &text)?;
        cfg.apply(overrides);
        cfg.validate()?;
        Ok(cfg)
    }

    /// Parses YAML text; `path` is only used for messages and path resolution.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        // serde stops at the first error. To report every one, a line in
        // error is blanked and the text parsed again (so that key takes
        // its default), until it parses or an error cannot be blanked.
        let mut problems = Vec::new();
        let mut work: Vec<String> = text.lines().map(str::to_owned).collect();
        let parsed = loop {
            match serde_yaml_ng::from_str::<Config>(&work.join("\n")) {
                Ok(cfg) => break Some(cfg),
                Err(e) => {
                    let loc = e.location();
                    let reason = strip_location(&e.to_string());
                    let line = loc.as_ref().map(|l| l.line());
                    problems.push(Problem {
                        path: path.to_owned(),
                        line,
                        column: loc.as_ref().map(|l| l.column()),
                        key: None,
                        reason: reason.clone(),
                    });
                    let blankable =
                        line.and_then(|l| work.get(l.wrapping_sub(1)))
                            .is_some_and(|l| {
                                let t = l.trim();
                                !t.is_empty()
                                    && !t.ends_with(':')
                                    && !reason.contains("missing field")
                            });
                    match line {
                        Some(l) if blankable && problems.len() < MAX_PROBLEMS => {
                            work[l - 1] = String::new();
                        }
                        _ => break None,
                    }
                }
            }
        };
        let mut cfg = match parsed {
            Some(c) => c,
            None => return Err(ConfigError::Problems { problems }),
        };
        cfg.source = path.to_owned();
        cfg.text = text.to_owned();
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        cfg.resolve(&base);
        if problems.is_empty() {
            return Ok(cfg);
        }
        // The rest of the file is checked too, with the broken keys at
        // their defaults.
        if let Err(ConfigError::Problems { problems: more }) = cfg.validate() {
            problems.extend(more);
        }
        Err(ConfigError::Problems { problems })
    }

    fn resolve(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() && !base.as_os_str().is_empty() {
                *p = base.join(&*p);
            }
        };
        let cs = &mut self.callback_server;
        fix(&mut cs.service_private_key_path);
        if let Some(p) = cs.client_public_key_path.as_mut() {
            fix(p);
        }
        for k in &mut cs.tss_node_keys {
            fix(&mut k.path);
        }
        fix(&mut self.policy.dir);
        if let Some(p) = self.policy.fixtures.as_mut() {
            fix(p);
        }
        if let Some(p) = self.state.postgres.password_file.as_mut() {
            fix(p);
        }
        for p in &mut self.policy.data_files {
            fix(p);
        }
        if let Some(p) = self.policy.shadow_dir.as_mut() {
            fix(p);
        }
        for p in &mut self.policy.shadow_data_files {
            fix(p);
        }
        if let Some(p) = self.decision_log.path.as_mut() {
            fix(p);
        }
        if let Some(p) = self.record_dir.as_mut() {
            fix(p);
        }
        if let Some(ev) = self.event_server.as_mut() {
            if let Some(p) = ev.client_public_key_path.as_mut() {
                fix(p);
            }
            for k in &mut ev.event_keys {
                fix(&mut k.path);
            }
        }
        fix(&mut self.state.sqlite.path);
    }

    fn apply(&mut self, o: &Overrides) {
        if let Some(e) = &o.endpoint {
            self.callback_server.endpoint = e.clone();
        }
        if !o.tss_node_keys.is_empty() {
            // Keys given on the command line replace the file's: mixing them
            // would make it unclear which nodes are trusted.
            self.callback_server.client_public_key_path = None;
            self.callback_server.tss_node_keys = o
                .tss_node_keys
                .iter()
                .map(|p| NamedKey {
                    name: key_name_from_path(p),
                    path: absolute(p),
                })
                .collect();
        }
        if let Some(p) = &o.private_key {
            self.callback_server.service_private_key_path = absolute(p);
        }
        if let Some(d) = &o.policy_dir {
            self.policy.dir = absolute(d);
        }
    }

    fn invalid(&self, key: &str, reason: impl Into<String>) -> Problem {
        Problem {
            path: self.source.clone(),
            line: key_line(&self.text, key),
            column: None,
            key: Some(key.into()),
            reason: reason.into(),
        }
    }

    /// Checks every value; all problems are reported together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut out: Vec<Problem> = Vec::new();
        let cs = &self.callback_server;
        if cs.endpoint.parse::<SocketAddr>().is_err() {
            out.push(self.invalid(
                "callback_server.endpoint",
                format!("`{}` is not an ADDR:PORT socket address", cs.endpoint),
            ));
        }
        if let Some(m) = &self.metrics.endpoint
            && m.parse::<SocketAddr>().is_err()
        {
            out.push(self.invalid(
                "metrics.endpoint",
                format!("`{m}` is not an ADDR:PORT socket address"),
            ));
        }
        match self.state.backend.as_str() {
            "sqlite" => {
                let ms = self.state.sqlite.group_commit_ms;
                if ms > MAX_GROUP_COMMIT_MS {
                    out.push(self.invalid(
                        "state.sqlite.group_commit_ms",
                        format!("{ms} is outside 0..={MAX_GROUP_COMMIT_MS}"),
                    ));
                }
            }
            "postgres" => {
                let pg = &self.state.postgres;
                if pg.url.trim().is_empty() {
                    out.push(
                        self.invalid("state.postgres.url", "is required with `backend: postgres`"),
                    );
                }
                if pg.password_env.is_some() && pg.password_file.is_some() {
                    out.push(self.invalid(
                        "state.postgres.password_env",
                        "set `password_env` or `password_file`, not both",
                    ));
                }
                if !(1..=512).contains(&pg.pool_size) {
                    out.push(self.invalid(
                        "state.postgres.pool_size",
                        format!("{} is outside 1..=512", pg.pool_size),
                    ));
                }
                for (key, v) in [
                    ("state.postgres.connect_timeout_ms", pg.connect_timeout_ms),
                    (
                        "state.postgres.statement_timeout_ms",
                        pg.statement_timeout_ms,
                    ),
                ] {
                    if !(1..=600_000).contains(&v) {
                        out.push(self.invalid(key, format!("{v} is outside 1..=600000")));
                    }
                }
            }
            other => out.push(self.invalid(
                "state.backend",
                format!("`{other}` is not a known backend (sqlite, postgres)"),
            )),
        }
        if cs.service_name.trim().is_empty() {
            out.push(self.invalid("callback_server.service_name", "must not be empty"));
        }
        if !(1..=60).contains(&cs.token_expire_minutes) {
            out.push(self.invalid(
                "callback_server.token_expire_minutes",
                format!("{} is outside 1..=60", cs.token_expire_minutes),
            ));
        }
        if cs.clock_skew_leeway_seconds > 300 {
            out.push(self.invalid(
                "callback_server.clock_skew_leeway_seconds",
                format!("{} is above 300", cs.clock_skew_leeway_seconds),
            ));
        }
        let keys = self.node_keys();
        if keys.is_empty() {
            out.push(self.invalid(
                "callback_server.tss_node_keys",
                "no TSS Node public key configured (set `tss_node_keys` or `client_public_key_path`)",
            ));
        }
        let mut names = std::collections::BTreeSet::new();
        for k in &keys {
            if k.name.trim().is_empty() || k.name.len() > 64 {
                out.push(self.invalid(
                    "callback_server.tss_node_keys.name",
                    "names must be 1 to 64 characters",
                ));
            }
            if !names.insert(k.name.clone()) {
                out.push(self.invalid(
                    "callback_server.tss_node_keys.name",
                    format!("`{}` is used twice", k.name),
                ));
            }
        }
        if !self.policy.entrypoint.starts_with("data.") {
            out.push(self.invalid(
                "policy.entrypoint",
                format!(
                    "`{}` must be a rule path starting with `data.`",
                    self.policy.entrypoint
                ),
            ));
        }
        if self.policy.shadow_dir.is_none() && !self.policy.shadow_data_files.is_empty() {
            out.push(self.invalid(
                "policy.shadow_data_files",
                "needs `policy.shadow_dir` (the shadow set they belong to)",
            ));
        }
        if let Some(sd) = &self.policy.shadow_dir
            && (sd.starts_with(&self.policy.dir) || self.policy.dir.starts_with(sd))
        {
            // The loader reads every `.rego` below a directory, so nested
            // sets would each load the other's rules.
            out.push(self.invalid(
                "policy.shadow_dir",
                format!(
                    "`{}` must lie outside `policy.dir` and not contain it",
                    sd.display()
                ),
            ));
        }
        if !(1..=10_000).contains(&self.policy.eval_timeout_ms) {
            out.push(self.invalid(
                "policy.eval_timeout_ms",
                format!("{} is outside 1..=10000", self.policy.eval_timeout_ms),
            ));
        }
        if !matches!(self.decision_log.input.as_str(), "full" | "digest") {
            out.push(self.invalid(
                "decision_log.input",
                format!("`{}` must be `full` or `digest`", self.decision_log.input),
            ));
        }
        if self.decision_log.max_bytes < 4096 {
            out.push(self.invalid("decision_log.max_bytes", "must be at least 4096"));
        }
        let l = &self.limits;
        if !(1024..=64 * 1024 * 1024).contains(&l.max_body_bytes) {
            out.push(self.invalid("limits.max_body_bytes", "must be between 1 KiB and 64 MiB"));
        }
        if !(4..=512).contains(&l.max_json_depth) {
            out.push(self.invalid("limits.max_json_depth", "must be between 4 and 512"));
        }
        for (key, v) in [
            ("limits.header_read_timeout_ms", l.header_read_timeout_ms),
            ("limits.body_read_timeout_ms", l.body_read_timeout_ms),
            ("limits.request_deadline_ms", l.request_deadline_ms),
            ("limits.shutdown_grace_ms", l.shutdown_grace_ms),
        ] {
            if !(1..=600_000).contains(&v) {
                out.push(self.invalid(key, format!("{v} is outside 1..=600000")));
            }
        }
        if l.max_queue == 0 {
            out.push(self.invalid("limits.max_queue", "must be at least 1"));
        }
        if self.retry_cache.enabled && self.retry_cache.max_entries == 0 {
            out.push(self.invalid("retry_cache.max_entries", "must be at least 1"));
        }
        if let Some(ev) = &self.event_server {
            self.validate_events(ev, &mut out);
        }
        if !matches!(self.logging.format.as_str(), "pretty" | "json") {
            out.push(self.invalid(
                "logging.format",
                format!("`{}` must be `pretty` or `json`", self.logging.format),
            ));
        }
        if out.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Problems { problems: out })
        }
    }

    fn validate_events(&self, ev: &EventServer, out: &mut Vec<Problem>) {
        match ev.endpoint.parse::<SocketAddr>() {
            Err(_) => out.push(self.invalid(
                "event_server.endpoint",
                format!("`{}` is not an ADDR:PORT socket address", ev.endpoint),
            )),
            Ok(a) if clash(a, self.endpoint()) => out.push(self.invalid(
                "event_server.endpoint",
                "must differ from callback_server.endpoint (events have their own listener)",
            )),
            Ok(_) => {}
        }
        if !ev.path.starts_with('/') || ev.path.len() > 128 {
            out.push(self.invalid(
                "event_server.path",
                format!("`{}` must start with `/` (at most 128 characters)", ev.path),
            ));
        }
        let keys = ev.keys();
        if keys.is_empty() {
            out.push(self.invalid(
                "event_server.event_keys",
                "no node event public key configured (set `event_keys` or `client_public_key_path`)",
            ));
        }
        let mut names = std::collections::BTreeSet::new();
        for k in &keys {
            if k.name.trim().is_empty() || k.name.len() > 64 || !names.insert(k.name.clone()) {
                out.push(self.invalid(
                    "event_server.event_keys.name",
                    format!("`{}`: names must be unique, 1 to 64 characters", k.name),
                ));
            }
        }
        for o in &ev.release_on {
            if !matches!(o.as_str(), "failed" | "canceled" | "declined") {
                out.push(self.invalid(
                    "event_server.release_on",
                    format!("`{o}` is not an outcome (failed, canceled, declined)"),
                ));
            }
        }
        if !(60..=30 * 86_400).contains(&ev.stalled_after_seconds) {
            out.push(self.invalid(
                "event_server.stalled_after_seconds",
                format!("{} is outside 60..=2592000", ev.stalled_after_seconds),
            ));
        }
    }

    /// All TSS Node keys, the samples' single key first.
    pub fn node_keys(&self) -> Vec<NamedKey> {
        let cs = &self.callback_server;
        let mut out = Vec::new();
        if let Some(p) = &cs.client_public_key_path {
            out.push(NamedKey {
                name: "client_public_key".into(),
                path: p.clone(),
            });
        }
        out.extend(cs.tss_node_keys.iter().cloned());
        out
    }

    pub fn endpoint(&self) -> SocketAddr {
        self.callback_server
            .endpoint
            .parse()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 11020)))
    }

    pub fn token_ttl(&self) -> Duration {
        Duration::from_secs(self.callback_server.token_expire_minutes * 60)
    }

    pub fn policy_options(&self) -> crate::policy::PolicyOptions {
        crate::policy::PolicyOptions {
            dir: self.policy.dir.clone(),
            entrypoint: self.policy.entrypoint.clone(),
            data_files: self.policy.data_files.clone(),
            eval_timeout: Duration::from_millis(self.policy.eval_timeout_ms),
        }
    }
}

/// Two listen addresses that cannot both be bound: the same port on the
/// same address, or on any address when either is unspecified (0.0.0.0).
fn clash(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port()
        && a.port() != 0
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

/// A key given by path alone is named after its file: `node-a.pub.pem` → `node-a`.
pub fn key_name_from_path(p: &Path) -> String {
    let name = p
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "tss-node".into());
    let name = name
        .trim_end_matches(".pem")
        .trim_end_matches(".pub")
        .trim_end_matches(".public")
        .to_owned();
    if name.is_empty() {
        "tss-node".into()
    } else {
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: &str =
        "callback_server:\n  service_private_key_path: k.pem\n  client_public_key_path: n.pem\n";

    #[test]
    fn cobo_sample_keys_load_unchanged() {
        let text = "callback_server:\n  service_name: cobo-callback\n  endpoint: \"0.0.0.0:11020\"\n  token_expire_minutes: 2\n  client_public_key_path: \"configs/tss-node-callback-pub.key\"\n  service_private_key_path: \"configs/callback-server-pri.pem\"\n  enable_debug: false\n";
        let cfg = Config::parse(Path::new("/etc/x/cfg.yaml"), text).unwrap();
        cfg.validate().unwrap();
        assert_eq!(
            cfg.node_keys()[0].path,
            PathBuf::from("/etc/x/configs/tss-node-callback-pub.key")
        );
        assert_eq!(cfg.token_ttl(), Duration::from_secs(120));
    }

    #[test]
    fn unknown_keys_name_the_key_and_line() {
        let err = Config::parse(Path::new("c.yaml"), &format!("{MIN}  surprise: 1\n")).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("c.yaml:") && msg.contains("surprise"),
            "{msg}"
        );
    }

    #[test]
    fn bad_values_are_refused_with_key_and_reason() {
        for (extra, key) in [
            ("  endpoint: nope\n", "callback_server.endpoint"),
            (
                "  token_expire_minutes: 0\n",
                "callback_server.token_expire_minutes",
            ),
        ] {
            let cfg = Config::parse(Path::new("c.yaml"), &format!("{MIN}{extra}")).unwrap();
            let msg = cfg.validate().unwrap_err().to_string();
            assert!(msg.contains(key) && msg.contains("c.yaml"), "{msg}");
        }
        let cfg = Config::parse(
            Path::new("c.yaml"),
            &format!("{MIN}policy:\n  eval_timeout_ms: 0\n"),
        )
        .unwrap();
        assert!(
            cfg.validate()
                .unwrap_err()
                .to_string()
                .contains("policy.eval_timeout_ms")
        );
        let cfg = Config::parse(
            Path::new("c.yaml"),
            &format!("{MIN}state:\n  sqlite:\n    group_commit_ms: 51\n"),
        )
        .unwrap();
        let msg = cfg.validate().unwrap_err().to_string();
        assert!(
            msg.contains("c.yaml:6") && msg.contains("state.sqlite.group_commit_ms"),
            "{msg}"
        );
        let cfg = Config::parse(
            Path::new("c.yaml"),
            &format!("{MIN}state:\n  sqlite:\n    group_commit_ms: 0\n"),
        )
        .unwrap();
        cfg.validate().unwrap();
        assert_eq!(
            Config::parse(Path::new("c.yaml"), MIN)
                .unwrap()
                .state
                .sqlite
                .group_commit_ms,
            20
        );
    }

    #[test]
    fn event_server_problems_are_reported_with_their_lines() {
        let text = format!(
            "{MIN}event_server:\n  endpoint: \"127.0.0.1:11020\"\n  path: v2/event\n  stalled_after_seconds: 5\n"
        );
        let cfg = Config::parse(Path::new("/etc/c.yaml"), &text).expect("parses");
        let err = cfg.validate().unwrap_err();
        let ConfigError::Problems { problems } = &err else {
            panic!("{err}")
        };
        let got: Vec<(Option<usize>, String)> = problems
            .iter()
            .map(|p| (p.line, p.key.clone().unwrap_or_default()))
            .collect();
        assert_eq!(
            got,
            vec![
                (Some(5), "event_server.endpoint".into()),
                (Some(6), "event_server.path".into()),
                (Some(4), "event_server.event_keys".into()),
                (Some(7), "event_server.stalled_after_seconds".into()),
            ],
            "{err}"
        );
        assert!(
            err.to_string()
                .contains("must differ from callback_server.endpoint")
        );

        // The sample's keys alone are a complete section, with defaults.
        let ok = format!(
            "{MIN}event_server:\n  service_name: ev\n  endpoint: \"0.0.0.0:11030\"\n  client_public_key_path: ev.pem\n  enable_debug: false\n"
        );
        let cfg = Config::parse(Path::new("/etc/c.yaml"), &ok).expect("valid");
        cfg.validate().expect("valid");
        let ev = cfg.event_server.expect("section");
        assert_eq!(ev.path, "/v2/event");
        assert_eq!(ev.keys().len(), 1);
        assert_eq!(ev.keys()[0].path, Path::new("/etc/ev.pem"));
    }

    #[test]
    fn every_problem_of_a_file_is_reported_with_its_line() {
        let text = "callback_server:\n  endpoint: nope\n  token_expire_minutes: abc\n  bogus: 1\n  service_private_key_path: k.pem\n  tss_node_keys:\n    - name: a\n      path: a.pem\n    - name: a\n      path: b.pem\npolicy:\n  eval_timeout_ms: 0\nlimits:\n  max_queue: 0\n";
        let err = Config::parse(Path::new("/etc/c.yaml"), text).unwrap_err();
        let ConfigError::Problems { problems } = &err else {
            panic!("{err}")
        };
        let got: Vec<(Option<usize>, String)> = problems
            .iter()
            .map(|p| (p.line, p.key.clone().unwrap_or_else(|| p.reason.clone())))
            .collect();
        // Parse errors first (each blanked in turn), then every value.
        assert_eq!(got.len(), 6, "{err}");
        assert_eq!(got[0].0, Some(3), "{err}");
        assert!(got[0].1.contains("invalid type"), "{err}");
        assert_eq!(got[1].0, Some(4), "{err}");
        assert!(got[1].1.contains("unknown field `bogus`"), "{err}");
        assert_eq!(got[2], (Some(2), "callback_server.endpoint".into()));
        assert_eq!(
            got[3],
            (Some(7), "callback_server.tss_node_keys.name".into())
        );
        assert_eq!(got[4], (Some(12), "policy.eval_timeout_ms".into()));
        assert_eq!(got[5], (Some(14), "limits.max_queue".into()));
        for line in err.to_string().lines() {
            assert!(line.starts_with("/etc/c.yaml:"), "{line}");
        }
    }

    #[test]
    fn key_line_follows_nesting_and_list_items() {
        let text = "a:\n  b: 1\n  c:\n    - d: 2\n      e: 3\n# a.c.e: not here\nf: {g: 1}\n";
        assert_eq!(key_line(text, "a.b"), Some(2));
        assert_eq!(key_line(text, "a.c.e"), Some(5));
        assert_eq!(key_line(text, "a.c.d"), Some(4));
        assert_eq!(
            key_line(text, "f.g"),
            Some(7),
            "the nearest written ancestor"
        );
        assert_eq!(key_line(text, "a.zz"), Some(1));
        assert_eq!(key_line(text, "zz"), None);
    }

    #[test]
    fn shipped_configs_validate() {
        for name in ["tss-gate.yaml", "tss-gate.example.yaml"] {
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(name);
            let cfg = Config::load(&path, &Overrides::default())
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(!cfg.node_keys().is_empty(), "{name}");
            // An edit that fails a test or a fixture never goes live.
            assert!(cfg.policy.require_passing_tests, "{name}");
            assert!(
                cfg.policy.fixtures.as_ref().is_some_and(|f| f.is_dir()),
                "{name} names an existing fixture directory"
            );
        }
        let bare = Config::parse(Path::new("c.yaml"), MIN).unwrap();
        assert!(bare.policy.require_passing_tests, "on by default");
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("tss-gate.example.yaml");
        let cfg = Config::load(&example, &Overrides::default()).unwrap();
        assert!(
            !cfg.generate_dev_keys,
            "the production example never generates keys"
        );
    }

    #[test]
    fn shadow_settings_are_checked_and_resolved() {
        let parse = |policy: &str| {
            Config::parse(
                Path::new("/etc/t/c.yaml"),
                &format!("{MIN}policy:\n{policy}"),
            )
            .unwrap()
        };
        let cfg = parse("  shadow_dir: draft\n  shadow_data_files: [d.yaml]\n");
        cfg.validate().unwrap();
        assert_eq!(cfg.policy.shadow_dir, Some(PathBuf::from("/etc/t/draft")));
        assert_eq!(
            cfg.policy.shadow_data_files,
            vec![PathBuf::from("/etc/t/d.yaml")]
        );
        assert!(cfg.policy.require_passing_tests);
        assert!(parse("  watch: true\n").policy.shadow_dir.is_none());
        for (policy, key) in [
            (
                "  shadow_data_files: [d.yaml]\n",
                "policy.shadow_data_files",
            ),
            ("  dir: p\n  shadow_dir: p/draft\n", "policy.shadow_dir"),
        ] {
            let msg = parse(policy).validate().unwrap_err().to_string();
            assert!(msg.contains(key), "{msg}");
        }
    }

    #[test]
    fn overrides_win() {
        let mut cfg = Config::parse(Path::new("c.yaml"), MIN).unwrap();
        cfg.apply(&Overrides {
            endpoint: Some("127.0.0.1:1".into()),
            tss_node_keys: vec!["a/node-a.pub.pem".into(), "b/node-b.pem".into()],
            private_key: None,
            policy_dir: Some("p".into()),
        });
        cfg.validate().unwrap();
        let names: Vec<_> = cfg.node_keys().into_iter().map(|k| k.name).collect();
        assert_eq!(names, vec!["node-a", "node-b"]);
        assert_eq!(cfg.endpoint().port(), 1);
    }
}
