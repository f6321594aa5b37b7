//! Helpers for the resilience tests (reload, retry, limits, shutdown), on top
//! of `tests/common`: configs with custom policy settings, signals, metrics
//! scraping, polling, and a background load of real requests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::common::*;
use tss_gate::protocol::{CallbackRequest, CallbackResponse, Status};

/// A temp copy of the shipped policy library, without its spending limits:
/// these tests send the same approving request hundreds of times, which the
/// shipped limits would (rightly) stop.
pub fn policy_copy(ws: &Workspace) -> PathBuf {
    policy_with_limits(ws, None)
}

/// Writes the workspace config with the given node keys (`node-a`, `node-b`),
/// lines added to the `policy:` section, and extra top-level YAML.
pub fn write_config(
    ws: &Workspace,
    policy_dir: &Path,
    node_keys: &[&str],
    policy_extra: &str,
    extra: &str,
) -> PathBuf {
    let kd = ws.path().join("keys");
    let mut keys = String::new();
    for k in node_keys {
        keys.push_str(&format!(
            "    - name: {k}\n      path: {}\n",
            kd.join(format!("{k}.pub.pem")).display()
        ));
    }
    // Most of these tests swap in sets without tests on purpose; the ones
    // about the test gate turn it on (or leave the default) themselves.
    let gate = if policy_extra.contains("require_passing_tests") {
        ""
    } else {
        "  require_passing_tests: false\n"
    };
    let text = format!(
        "callback_server:\n  service_name: tss-gate-test\n  endpoint: \"127.0.0.1:0\"\n  service_private_key_path: {}\n  tss_node_keys:\n{keys}policy:\n  dir: {}\n{gate}{policy_extra}{extra}",
        kd.join("callback-server.pem").display(),
        policy_dir.display(),
    );
    let p = ws.path().join("tss-gate.yaml");
    // Write then rename, so a reload never reads a half-written config.
    let tmp = ws.path().join("tss-gate.yaml.tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, &p).unwrap();
    p
}

/// The shipped policy, SIGHUP-only reload, and `extra` top-level YAML. The
/// evaluation time limit is raised from 200 ms to 5 s: a loaded 2-core test
/// machine can stretch an ordinary evaluation past the default, and these
/// tests are not about that limit (tests/limits.rs tests it on its own).
pub fn config(ws: &Workspace, extra: &str) -> PathBuf {
    write_config(ws, &repo().join("rego"), &["node-a"], NO_WATCH, extra)
}

/// `policy:` lines for tests that reload by SIGHUP only (see [`config`]).
pub const NO_WATCH: &str = "  watch: false\n  eval_timeout_ms: 5000\n";

/// Writes a file atomically (temp + rename), as deploy tools do.
pub fn write_atomic(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp~");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

pub fn signal(server: &Server, sig: libc::c_int) {
    // SAFETY: kill(2) with the pid of a child we spawned and still own.
    let rc = unsafe { libc::kill(server.child.id() as libc::pid_t, sig) };
    assert_eq!(rc, 0, "kill({sig})");
}

pub fn hup(server: &Server) {
    signal(server, libc::SIGHUP);
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The `/metrics` text.
pub fn metrics_text(server: &Server) -> String {
    let url = server.url("/metrics");
    runtime().block_on(async { reqwest::get(url).await.unwrap().text().await.unwrap() })
}

/// Value of one series (`name` or `name{labels}` exactly as exported).
pub fn metric(server: &Server, series: &str) -> Option<f64> {
    metrics_text(server).lines().find_map(|l| {
        let (k, v) = l.rsplit_once(' ')?;
        (k == series).then(|| v.parse().ok()).flatten()
    })
}

/// Polls `f` until it returns `Some`, up to `limit`; panics with `what`.
pub fn poll<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The shipped KEYSIGN fixture that approves, under a fresh request_id.
pub fn keysign(id: &str) -> CallbackRequest {
    let mut r =
        tss_gate::fixture::load_request(&repo().join("tests/fixtures/keysign_eth_approve.json"))
            .unwrap();
    r.request_id = id.into();
    r
}

static SEQ: AtomicU64 = AtomicU64::new(0);

/// A request_id unique within the test binary.
pub fn fresh_id(prefix: &str) -> String {
    format!("{prefix}-{}", SEQ.fetch_add(1, Ordering::Relaxed))
}

/// Sends `req` signed by `key` and returns the verified answer, or why not.
pub async fn send_async(
    client: &reqwest::Client,
    url: &str,
    req: &CallbackRequest,
    key: &rsa::RsaPrivateKey,
) -> Result<CallbackResponse, String> {
    let token = mint(req, key);
    let body = serde_urlencoded::to_string([("TSS_JWT_MSG", token)]).unwrap();
    let r = client
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .map_err(|e| format!("send: {e:?}"))?;
    let status = r.status().as_u16();
    let text = r.text().await.map_err(|e| format!("body: {e:?}"))?;
    if status != 200 {
        return Err(format!("HTTP {status}: {text}"));
    }
    let key = verifying("callback-server", &test_keys().server);
    let bytes = tss_gate::token::verify_answer(&text, &key)
        .map_err(|e| format!("unsigned answer ({e}): {text}"))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("answer JSON: {e}"))
}

/// What a load thread saw.
#[derive(Debug, Default)]
pub struct LoadStats {
    pub answers: usize,
    pub approvals: usize,
    pub rejections: usize,
    pub failures: Vec<String>,
}

/// Background load: `threads` clients, each sending fresh KEYSIGN requests
/// back to back until stopped. Every answer must be a signed status 0 that
/// echoes the request_id and passes `check`.
pub struct Load {
    stop: Arc<AtomicBool>,
    handles: Vec<JoinHandle<LoadStats>>,
}

impl Load {
    pub fn start(
        server: &Server,
        threads: usize,
        check: fn(&CallbackResponse) -> Result<(), String>,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let handles = (0..threads)
            .map(|t| {
                let stop = stop.clone();
                let url = server.check_url();
                std::thread::spawn(move || {
                    let rt = runtime();
                    let client = reqwest::Client::new();
                    let mut s = LoadStats::default();
                    while !stop.load(Ordering::Relaxed) {
                        let req = keysign(&fresh_id(&format!("load{t}")));
                        let res = rt.block_on(send_async(&client, &url, &req, &test_keys().node));
                        let res = res.and_then(|a| {
                            if a.status != Status::Ok {
                                return Err(format!("status {:?}: {}", a.status, a.error));
                            }
                            if a.request_id != req.request_id {
                                return Err(format!(
                                    "echo {} for {}",
                                    a.request_id, req.request_id
                                ));
                            }
                            check(&a).map(|()| a)
                        });
                        match res {
                            Ok(a) if a.is_approval() => s.approvals += 1,
                            Ok(_) => s.rejections += 1,
                            Err(e) => s.failures.push(e),
                        }
                        s.answers += 1;
                    }
                    s
                })
            })
            .collect();
        Load { stop, handles }
    }

    pub fn stop(self) -> LoadStats {
        self.stop.store(true, Ordering::Relaxed);
        let mut total = LoadStats::default();
        for h in self.handles {
            let s = h.join().unwrap();
            total.answers += s.answers;
            total.approvals += s.approvals;
            total.rejections += s.rejections;
            total.failures.extend(s.failures);
        }
        total
    }
}

/// Sends one request as node-a on a fresh client; blocking.
pub fn send_as(
    server: &Server,
    req: &CallbackRequest,
    key: &rsa::RsaPrivateKey,
) -> CallbackResponse {
    let client = reqwest::Client::new();
    runtime()
        .block_on(send_async(&client, &server.check_url(), req, key))
        .unwrap()
}
