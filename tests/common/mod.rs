//! Shared harness for integration tests: real RSA keys generated at test time,
//! the real `tss-gate` binary started on port 0 with a temp config, and a
//! client that acts like a TSS Node over real HTTP.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use rsa::RsaPrivateKey;
use tss_gate::keys::{self, SigningKey, VerifyingKey};
use tss_gate::protocol::{CallbackRequest, CallbackResponse};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Key pairs generated once per test binary (RSA generation is slow).
pub struct TestKeys {
    pub server: RsaPrivateKey,
    pub node: RsaPrivateKey,
    /// A second, configured node key (several nodes may share one server).
    pub node_b: RsaPrivateKey,
    /// A key that is NOT configured anywhere.
    pub stranger: RsaPrivateKey,
}

pub fn test_keys() -> &'static TestKeys {
    static KEYS: OnceLock<TestKeys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let fresh = || keys::generate(2048).expect("keygen");
        TestKeys {
            server: fresh(),
            node: fresh(),
            node_b: fresh(),
            stranger: fresh(),
        }
    })
}

pub fn signing(k: &RsaPrivateKey) -> SigningKey {
    keys::signing_key_from(k, Path::new("test")).expect("signing key")
}

pub fn verifying(name: &str, k: &RsaPrivateKey) -> VerifyingKey {
    keys::verifying_key_from(name, &k.to_public_key(), Path::new("test"))
}

/// A temp dir holding the test keys as files and a config pointing at them.
pub struct Workspace {
    pub dir: tempfile::TempDir,
}

impl Workspace {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let k = test_keys();
        let kd = dir.path().join("keys");
        keys::write_pair(&k.server, &kd, "callback-server", false).expect("write");
        keys::write_pair(&k.node, &kd, "node-a", false).expect("write");
        keys::write_pair(&k.node_b, &kd, "node-b", false).expect("write");
        Self { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The standard test config: the repo's shipped policies, both node keys.
    /// `extra` is appended verbatim (top-level YAML sections).
    pub fn config(&self, extra: &str) -> PathBuf {
        self.config_with_policy(&repo().join("rego"), extra)
    }

    pub fn config_with_policy(&self, policy_dir: &Path, extra: &str) -> PathBuf {
        let kd = self.path().join("keys");
        let text = format!(
            "callback_server:\n  service_name: tss-gate-test\n  endpoint: \"127.0.0.1:0\"\n  token_expire_minutes: 2\n  service_private_key_path: {}\n  tss_node_keys:\n    - name: node-a\n      path: {}\n    - name: node-b\n      path: {}\npolicy:\n  dir: {}\n  watch: false\n  require_passing_tests: false\n{}",
            kd.join("callback-server.pem").display(),
            kd.join("node-a.pub.pem").display(),
            kd.join("node-b.pub.pem").display(),
            policy_dir.display(),
            extra
        );
        let p = self.path().join("tss-gate.yaml");
        std::fs::write(&p, text).expect("write config");
        p
    }
}

/// The real binary, serving on an ephemeral loopback port. Killed on drop.
pub struct Server {
    pub child: Child,
    pub addr: String,
    pub metrics_addr: Option<String>,
    /// The node event listener (`event_server`), when configured.
    pub events_addr: Option<String>,
    pub stderr_log: PathBuf,
}

impl Server {
    pub fn start(config: &Path) -> Self {
        Self::start_with_args(config, &[])
    }

    pub fn start_with_args(config: &Path, args: &[&str]) -> Self {
        let log = config.with_extension("stderr.log");
        let stderr = std::fs::File::create(&log).expect("log file");
        let mut child = Command::new(env!("CARGO_BIN_EXE_tss-gate"))
            .arg("serve")
            .arg("--config")
            .arg(config)
            .args(args)
            .current_dir(repo())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn tss-gate");
        let stdout = child.stdout.take().expect("stdout");
        let mut reader = BufReader::new(stdout);
        let mut addr = None;
        let mut metrics_addr = None;
        let mut events_addr = None;
        let mut line = String::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while std::time::Instant::now() < deadline {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                break;
            }
            if let Some(a) = line.trim().strip_prefix("metrics on ") {
                metrics_addr = Some(a.to_owned());
            }
            if let Some(a) = line.trim().strip_prefix("events on ") {
                events_addr = Some(a.to_owned());
            }
            if let Some(a) = line.trim().strip_prefix("listening on ") {
                addr = Some(a.to_owned());
                break;
            }
        }
        let Some(addr) = addr else {
            let _ = child.kill();
            let err = std::fs::read_to_string(&log).unwrap_or_default();
            panic!("tss-gate did not start:\n{err}");
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut sink = String::new();
            while reader.read_line(&mut sink).unwrap_or(0) > 0 {
                sink.clear();
            }
        });
        Server {
            child,
            addr,
            metrics_addr,
            events_addr,
            stderr_log: log,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn check_url(&self) -> String {
        self.url("/v2/check")
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.stderr_log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Mints a request token as the TSS Node does.
pub fn mint(req: &CallbackRequest, key: &RsaPrivateKey) -> String {
    let doc = serde_json::to_vec(req).expect("json");
    tss_gate::token::sign_package(&doc, &signing(key), "tss-node", 120).expect("sign")
}

/// Mints a request token over exact request bytes (repeated keys and all).
pub fn mint_bytes(doc: &[u8], key: &RsaPrivateKey) -> String {
    tss_gate::token::sign_package(doc, &signing(key), "tss-node", 120).expect("sign")
}

/// Sends exact request bytes as node-a and returns the verified answer.
pub fn send_bytes(server: &Server, doc: &[u8]) -> CallbackResponse {
    let (status, body) = post_token(&server.check_url(), &mint_bytes(doc, &test_keys().node));
    assert_eq!(status, 200, "every answer is HTTP 200: {body}");
    verify_answer(&body)
}

/// Posts a raw form body and returns (HTTP status, body).
pub fn post_form(url: &str, body: &str) -> (u16, String) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    rt.block_on(async {
        let c = reqwest::Client::new();
        let r = c
            .post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.to_owned())
            .send()
            .await
            .expect("post");
        let s = r.status().as_u16();
        (s, r.text().await.expect("body"))
    })
}

/// Posts a token as the `TSS_JWT_MSG` form field.
pub fn post_token(url: &str, token: &str) -> (u16, String) {
    let body = serde_urlencoded::to_string([("TSS_JWT_MSG", token)]).expect("form");
    post_form(url, &body)
}

/// Verifies an answer with the server's public key and decodes it. Panics if
/// the answer is not a valid signed token: every answer must be one.
pub fn verify_answer(body: &str) -> CallbackResponse {
    let key = verifying("callback-server", &test_keys().server);
    let bytes = tss_gate::token::verify_answer(body, &key)
        .unwrap_or_else(|e| panic!("answer does not verify ({e}): {body}"));
    serde_json::from_slice(&bytes).expect("answer JSON")
}

/// Sends a request as node-a and returns the verified answer.
pub fn send(server: &Server, req: &CallbackRequest) -> CallbackResponse {
    let (status, body) = post_token(&server.check_url(), &mint(req, &test_keys().node));
    assert_eq!(status, 200, "every answer is HTTP 200: {body}");
    verify_answer(&body)
}

pub fn fixture_paths() -> Vec<PathBuf> {
    tss_gate::fixture::discover(&repo().join("tests/fixtures")).expect("fixtures")
}

/// Copies a directory tree (the shipped `rego/` into a temp dir).
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read_dir") {
        let e = e.expect("entry");
        let p = e.path();
        if p.is_dir() {
            copy_tree(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).expect("copy");
        }
    }
}

/// A copy of the shipped policy in the workspace with `data.velocity`
/// replaced: `limits` is the YAML list of limits, None removes spending
/// limits altogether (for tests about something else that send approving
/// requests again and again).
pub fn policy_with_limits(ws: &Workspace, limits: Option<&str>) -> PathBuf {
    let dir = ws.path().join("rego");
    copy_tree(&repo().join("rego"), &dir);
    let data_path = dir.join("data.yaml");
    let mut data: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(&data_path).expect("data")).expect("yaml");
    let map = data.as_mapping_mut().expect("mapping");
    match limits {
        None => {
            map.remove("velocity");
        }
        Some(l) => {
            let limits: serde_yaml_ng::Value = serde_yaml_ng::from_str(l).expect("limits yaml");
            let mut velocity = serde_yaml_ng::Mapping::new();
            velocity.insert("limits".into(), limits);
            map.insert("velocity".into(), serde_yaml_ng::Value::Mapping(velocity));
        }
    }
    std::fs::write(&data_path, serde_yaml_ng::to_string(&data).expect("yaml")).expect("write");
    dir
}

/// The shipped policy library, loaded once per test binary.
pub fn shipped_policy() -> &'static tss_gate::policy::PolicySet {
    static P: OnceLock<tss_gate::policy::PolicySet> = OnceLock::new();
    P.get_or_init(|| {
        tss_gate::policy::PolicySet::load(&tss_gate::policy::PolicyOptions {
            dir: repo().join("rego"),
            entrypoint: tss_gate::policy::DEFAULT_ENTRYPOINT.into(),
            data_files: vec![],
            eval_timeout: std::time::Duration::from_secs(5),
        })
        .expect("shipped policy loads")
    })
}
