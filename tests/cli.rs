//! The CLI as a user runs it: `keys generate`, key formats, `send` exit codes
//! against the real server, and the dev config's key generation.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use common::*;
use rsa::pkcs1::{EncodeRsaPrivateKey, EncodeRsaPublicKey};
use rsa::pkcs8::LineEnding;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tss-gate"))
}

#[test]
fn keys_generate_writes_0600_private_and_spki_public_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let out = bin()
        .args([
            "keys", "generate", "--bits", "2048", "--name", "cb", "--out",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let private = dir.path().join("cb.pem");
    let public = dir.path().join("cb.pub.pem");
    let mode = std::fs::metadata(&private).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "private key mode");
    let pem = std::fs::read_to_string(&public).unwrap();
    assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----"), "SPKI: {pem}");
    let key = tss_gate::keys::load_signing_key(&private).unwrap();
    assert_eq!(key.bits, 2048);
    tss_gate::keys::load_verifying_key("cb", &public).unwrap();

    let before = std::fs::read(&private).unwrap();
    let again = bin()
        .args([
            "keys", "generate", "--bits", "2048", "--name", "cb", "--out",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
    assert_eq!(std::fs::read(&private).unwrap(), before, "not overwritten");

    // A world-readable file replaced with --force comes back 0600.
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o644)).unwrap();
    let forced = bin()
        .args([
            "keys", "generate", "--bits", "2048", "--name", "cb", "--force", "--out",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(forced.status.success());
    assert_ne!(
        std::fs::read(&private).unwrap(),
        before,
        "overwritten with --force"
    );
    let mode = std::fs::metadata(&private).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    let small = bin()
        .args([
            "keys", "generate", "--bits", "1024", "--name", "small", "--out",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(small.status.code(), Some(1), "1024-bit keys are refused");
}

#[test]
fn pkcs1_and_pkcs8_private_and_spki_and_pkcs1_public_keys_all_load() {
    let dir = tempfile::tempdir().unwrap();
    let k = &test_keys().node;
    let p1 = dir.path().join("p1.pem");
    std::fs::write(&p1, k.to_pkcs1_pem(LineEnding::LF).unwrap().as_bytes()).unwrap();
    let pub1 = dir.path().join("pub1.pem");
    std::fs::write(
        &pub1,
        k.to_public_key().to_pkcs1_pem(LineEnding::LF).unwrap(),
    )
    .unwrap();
    tss_gate::keys::write_pair(k, dir.path(), "p8", false).unwrap();

    let s1 = tss_gate::keys::load_signing_key(&p1).unwrap();
    let s8 = tss_gate::keys::load_signing_key(&dir.path().join("p8.pem")).unwrap();
    let v1 = tss_gate::keys::load_verifying_key("a", &pub1).unwrap();
    let v8 = tss_gate::keys::load_verifying_key("b", &dir.path().join("p8.pub.pem")).unwrap();
    // Each signing form verifies under each public form: they are one key.
    for s in [&s1, &s8] {
        let tok = tss_gate::token::sign_package(b"{}", s, "x", 60).unwrap();
        for v in [&v1, &v8] {
            let verifier = tss_gate::token::Verifier::new(vec![v.clone()], 0);
            assert!(verifier.verify(&tok).is_ok());
        }
    }
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(
        &garbage,
        "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
    )
    .unwrap();
    let e = tss_gate::keys::load_verifying_key("g", &garbage)
        .unwrap_err()
        .to_string();
    assert!(e.contains("garbage.pem"), "{e}");

    let small = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 1024).unwrap();
    let sp = dir.path().join("small.pem");
    std::fs::write(&sp, small.to_pkcs1_pem(LineEnding::LF).unwrap().as_bytes()).unwrap();
    let e = tss_gate::keys::load_signing_key(&sp)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("1024") && e.contains("2048") && e.contains("small.pem"),
        "{e}"
    );
}

/// `tss-gate send` of a fixture as node-a, with extra flags.
fn send_args(
    server: &Server,
    ws: &Workspace,
    fixture: &str,
    extra: &[&str],
) -> std::process::Output {
    bin()
        .args(["send", &server.check_url()])
        .arg(repo().join("tests/fixtures").join(fixture))
        .arg("--key")
        .arg(ws.path().join("keys/node-a.pem"))
        .arg("--server-key")
        .arg(ws.path().join("keys/callback-server.pub.pem"))
        .args(extra)
        .output()
        .unwrap()
}

fn send(
    server: &Server,
    ws: &Workspace,
    fixture: &str,
) -> (Option<i32>, serde_json::Value, String) {
    let out = send_args(server, ws, fixture, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let v = serde_json::from_str(&stdout).unwrap_or(serde_json::Value::Null);
    (
        out.status.code(),
        v,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn send_exit_codes_follow_the_answer() {
    let ws = Workspace::new();
    let server = Server::start(&ws.config(""));
    let (code, v, err) = send(&server, &ws, "keysign_eth_approve.json");
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(v["action"], "APPROVE");
    assert_eq!(v["request_id"], "c3a1e6f2-4b7d-4e8a-9f10-2d3c4b5a6e7f");

    let (code, v, _) = send(&server, &ws, "keysign_usdt_over_cap_reject.json");
    assert_eq!(code, Some(1));
    assert_eq!(v["action"], "REJECT");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("exceeds the `10000` per-transaction cap"),
        "{v}"
    );

    // Signed with a key the server does not know: a signed status 20 → exit 2.
    let stranger = tempfile::tempdir().unwrap();
    tss_gate::keys::write_pair(&test_keys().stranger, stranger.path(), "s", false).unwrap();
    let out = bin()
        .args(["send", &server.check_url()])
        .arg(repo().join("tests/fixtures/keysign_eth_approve.json"))
        .arg("--key")
        .arg(stranger.path().join("s.pem"))
        .arg("--server-key")
        .arg(ws.path().join("keys/callback-server.pub.pem"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["status"], 20);

    // Verifying the answer with the wrong server key is a failure, not a decision.
    let out = bin()
        .args(["send", &server.check_url()])
        .arg(repo().join("tests/fixtures/keysign_eth_approve.json"))
        .arg("--key")
        .arg(ws.path().join("keys/node-a.pem"))
        .arg("--server-key")
        .arg(ws.path().join("keys/node-b.pub.pem"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not verify"));
    assert!(out.stdout.is_empty(), "nothing printed as an answer");
}

#[test]
fn dev_config_generates_missing_keys_and_serves() {
    let dir = tempfile::tempdir().unwrap();
    let shipped = std::fs::read_to_string(repo().join("tss-gate.yaml")).unwrap();
    let cfg_text = shipped
        .replace("127.0.0.1:11020", "127.0.0.1:0")
        .replace(
            "dir: rego",
            &format!("dir: {}", repo().join("rego").display()),
        )
        .replace(
            "fixtures: tests/fixtures",
            &format!("fixtures: {}", repo().join("tests/fixtures").display()),
        );
    assert!(
        cfg_text.contains("fixtures: /"),
        "the dev config runs the fixtures"
    );
    let cfg = dir.path().join("tss-gate.yaml");
    std::fs::write(&cfg, cfg_text).unwrap();
    let server = Server::start(&cfg);
    let keys = dir.path().join("keys");
    for f in [
        "callback-server.pem",
        "callback-server.pub.pem",
        "dev-tss-node.pem",
        "dev-tss-node.pub.pem",
    ] {
        assert!(keys.join(f).exists(), "{f} generated");
    }
    let mode = std::fs::metadata(keys.join("dev-tss-node.pem"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let logs = server.logs();
    assert!(
        logs.contains("DEV MODE") && logs.contains("cargo run --release -- send http://"),
        "loud, with a send hint: {logs}"
    );
    // The printed command works: the generated node key is trusted and the
    // answer verifies with the generated server key.
    let out = bin()
        .args(["send", &server.check_url()])
        .arg(repo().join("tests/fixtures/keysign_eth_approve.json"))
        .arg("--key")
        .arg(keys.join("dev-tss-node.pem"))
        .arg("--server-key")
        .arg(keys.join("callback-server.pub.pem"))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(Path::new(&keys).is_dir());
}

#[test]
fn keys_generate_refuses_a_bad_size_before_saying_it_generates() {
    let dir = tempfile::tempdir().unwrap();
    for bits in ["1024", "65536"] {
        let out = bin()
            .args(["keys", "generate", "--bits", bits, "--out"])
            .arg(dir.path())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains(bits) && err.contains("error:"), "{err}");
        assert!(!err.contains("generating"), "refused first: {err}");
        assert!(!dir.path().join("callback-server.pem").exists());
    }
}

#[test]
fn send_makes_an_expired_token_with_a_negative_ttl() {
    let ws = Workspace::new();
    let server = Server::start(&ws.config(""));
    let out = send_args(&server, &ws, "ping_approve.json", &["--ttl", "-100"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["status"], 20, "a stale token fails verification: {v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("expired"),
        "{v}"
    );
    assert!(v["action"].is_null() || v["action"] != "APPROVE", "{v}");
}

#[test]
fn send_says_when_the_answer_is_repeated_and_fresh_id_decides_again() {
    let ws = Workspace::new();
    let server = Server::start(&ws.config(""));
    let first = send_args(&server, &ws, "keysign_eth_approve.json", &[]);
    assert_eq!(first.status.code(), Some(0));
    assert!(
        !String::from_utf8_lossy(&first.stderr).contains("note:"),
        "a first answer is decided, no note"
    );

    let again = send_args(&server, &ws, "keysign_eth_approve.json", &[]);
    assert_eq!(again.status.code(), Some(0));
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(
        err.contains("repeats the server's earlier answer") && err.contains("--fresh-id"),
        "{err}"
    );

    let fresh = send_args(&server, &ws, "keysign_eth_approve.json", &["--fresh-id"]);
    let err = String::from_utf8_lossy(&fresh.stderr);
    assert_eq!(fresh.status.code(), Some(0), "{err}");
    assert!(!err.contains("note:"), "{err}");
    let v: serde_json::Value = serde_json::from_slice(&fresh.stdout).unwrap();
    let id = v["request_id"].as_str().unwrap();
    assert!(
        id.starts_with("c3a1e6f2-4b7d-4e8a-9f10-2d3c4b5a6e7f-") && err.contains(id),
        "new id {id} announced: {err}"
    );
    // Each --fresh-id is new: no note the second time either.
    let fresh2 = send_args(&server, &ws, "keysign_eth_approve.json", &["--fresh-id"]);
    let v2: serde_json::Value = serde_json::from_slice(&fresh2.stdout).unwrap();
    assert_ne!(v2["request_id"], v["request_id"]);
    assert!(!String::from_utf8_lossy(&fresh2.stderr).contains("note:"));

    // The same id with another payload: refused, and send says how to go on.
    let text = std::fs::read_to_string(repo().join("tests/fixtures/ping_approve.json")).unwrap();
    let mut doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    doc["request"]["request_id"] = "c3a1e6f2-4b7d-4e8a-9f10-2d3c4b5a6e7f".into();
    let reused = ws.path().join("reused.json");
    std::fs::write(&reused, doc.to_string()).unwrap();
    let out = bin()
        .args(["send", &server.check_url()])
        .arg(&reused)
        .arg("--key")
        .arg(ws.path().join("keys/node-a.pem"))
        .arg("--server-key")
        .arg(ws.path().join("keys/callback-server.pub.pem"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("different payload") && err.contains("--fresh-id"),
        "{err}"
    );
}

#[test]
fn check_reports_every_problem_at_once_each_with_its_place() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.yaml");
    std::fs::write(
        &cfg,
        "callback_server:\n  endpoint: nope\n  token_expire_minutes: 0\n  service_private_key_path: keys/missing.pem\n  tss_node_keys:\n    - name: a\n      path: keys/a.pub.pem\npolicy:\n  eval_timeout_ms: 0\n",
    )
    .unwrap();
    let out = bin()
        .args(["check", "--config"])
        .arg(&cfg)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().collect();
    let at = |n: u32| format!("error: {}:{n}: key `", cfg.display());
    assert_eq!(lines.len(), 3, "{err}");
    assert!(
        lines[0].starts_with(&at(2)) && lines[0].contains("callback_server.endpoint"),
        "{err}"
    );
    assert!(
        lines[1].starts_with(&at(3)) && lines[1].contains("1..=60"),
        "{err}"
    );
    assert!(
        lines[2].starts_with(&at(9)) && lines[2].contains("eval_timeout_ms"),
        "{err}"
    );

    // Values fixed: missing files are named by their resolved paths, once.
    std::fs::write(
        &cfg,
        "callback_server:\n  service_private_key_path: keys/missing.pem\n  tss_node_keys:\n    - name: a\n      path: keys/a.pub.pem\n",
    )
    .unwrap();
    let out = bin()
        .args(["check", "--config", "c.yaml", "--policy-dir", "nowhere"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let root = dir.path().canonicalize().unwrap();
    for line in err.lines() {
        assert!(line.starts_with("error: "), "{err}");
        assert!(
            line.matches("No such file or directory").count() <= 1,
            "{line}"
        );
    }
    assert!(
        err.contains(&format!("{}", root.join("keys/missing.pem").display()))
            || err.contains(&format!(
                "{}",
                dir.path().join("keys/missing.pem").display()
            )),
        "{err}"
    );
    assert!(
        err.contains(&format!("{}", dir.path().join("nowhere").display()))
            || err.contains(&format!("{}", root.join("nowhere").display())),
        "the resolved policy dir: {err}"
    );
}
