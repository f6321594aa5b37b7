//! `tss-gate bench` smoke tests: a one-second load run against the real
//! server reports non-zero throughput, zero errors and verified answers of
//! both kinds; the ceiling and policy modes report their figures.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Command;

use common::*;
use serde_json::Value;

fn bench(args: &[&str]) -> (i32, Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tss-gate"))
        .arg("bench")
        .args(args)
        .current_dir(repo())
        .output()
        .expect("run tss-gate bench");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let json = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("bench printed no JSON ({e}):\n{stdout}\n{stderr}"));
    (out.status.code().unwrap_or(-1), json, stderr)
}

#[test]
fn load_run_reports_throughput_and_no_errors() {
    let ws = Workspace::new();
    let server = Server::start(&ws.config(""));
    let keys = ws.path().join("keys");
    let pid = server.child.id().to_string();
    let (code, r, stderr) = bench(&[
        &server.check_url(),
        "--key",
        keys.join("node-a.pem").to_str().expect("path"),
        "--server-key",
        keys.join("callback-server.pub.pem").to_str().expect("path"),
        "-c",
        "4",
        "-d",
        "1s",
        "--warmup",
        "300ms",
        "--tokens",
        "300",
        "--verify-every",
        "7",
        "--ping",
        "--server-pid",
        &pid,
        "--json",
        "--quiet",
    ]);
    assert_eq!(code, 0, "{r:#}\n{stderr}");
    assert_eq!(r["mode"], "closed-loop");
    assert!(r["throughput_rps"].as_f64().unwrap_or(0.0) > 0.0, "{r:#}");
    assert_eq!(r["error_total"], 0, "{r:#}");
    assert!(r["verified"].as_u64().unwrap_or(0) > 0, "{r:#}");
    // The fixture mix holds both APPROVE and REJECT fixtures.
    assert!(r["answers"]["APPROVE/0"].as_u64().unwrap_or(0) > 0, "{r:#}");
    assert!(r["answers"]["REJECT/0"].as_u64().unwrap_or(0) > 0, "{r:#}");
    assert!(r["latency"]["p99_us"].as_u64().unwrap_or(0) > 0, "{r:#}");
    // Warm-up answers are not in the window: the actions add up to it.
    let actions: u64 = r["answers"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(actions, r["completed"].as_u64().unwrap(), "{r:#}");
    assert!(
        r["sent"].as_u64().unwrap() > actions,
        "warm-up sent more: {r:#}"
    );
    assert!(r["ping"]["count"].as_u64().unwrap_or(0) > 0, "{r:#}");
    assert!(
        r["server_memory"]["vm_hwm_kib"].as_u64().unwrap_or(0) > 0,
        "{r:#}"
    );
    // Every answer costs the server an RSA signature (~0.25 ms at 2048
    // bits), so its CPU per answer cannot be zero; the load generator
    // reports its own share too.
    let server_us = r["server_cpu"]["us_per_answer"].as_f64().unwrap_or(0.0);
    assert!(server_us > 100.0, "{r:#}");
    assert!(
        r["server_cpu"]["cores"].as_f64().unwrap_or(0.0) > 0.0,
        "{r:#}"
    );
    assert!(r["loadgen_cpu"]["us_per_answer"].is_number(), "{r:#}");
}

#[test]
fn connection_errors_are_errors_not_answers() {
    let ws = Workspace::new();
    let mut server = Server::start(&ws.config(""));
    let keys = ws.path().join("keys");
    let child = Command::new(env!("CARGO_BIN_EXE_tss-gate"))
        .arg("bench")
        .args([
            &server.check_url(),
            "--key",
            keys.join("node-a.pem").to_str().expect("path"),
            "--server-key",
            keys.join("callback-server.pub.pem").to_str().expect("path"),
            "-c",
            "2",
            "-d",
            "2s",
            "--warmup",
            "0",
            "--tokens",
            "200",
            "--json",
            "--quiet",
        ])
        .current_dir(repo())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The server goes away mid-run, once it has answered (a loaded machine
    // may take longer than 600 ms to start the run): what follows are
    // connection errors.
    let t0 = std::time::Instant::now();
    std::thread::sleep(std::time::Duration::from_millis(600));
    while !server.logs().contains("decided") && t0.elapsed().as_secs() < 60 {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let out = child.wait_with_output().unwrap();
    let r: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("no JSON ({e}): {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(out.status.code(), Some(2), "{r:#}");
    let errors = r["errors"]["connection"].as_u64().unwrap_or(0);
    assert!(errors > 0, "{r:#}");
    let actions: u64 = r["answers"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert!(actions > 0, "answers before the kill: {r:#}");
    assert_eq!(actions, r["completed"].as_u64().unwrap(), "{r:#}");
    assert_eq!(r["latency"]["count"].as_u64().unwrap(), actions, "{r:#}");
    assert!(
        r["sent"].as_u64().unwrap() >= actions + errors,
        "errors are not answers: {r:#}"
    );
}

#[test]
fn wrong_server_key_counts_bad_signatures_and_fails() {
    let ws = Workspace::new();
    let server = Server::start(&ws.config(""));
    let keys = ws.path().join("keys");
    // node-b's public key is not the server's: every verified answer fails.
    let (code, r, _) = bench(&[
        &server.check_url(),
        "--key",
        keys.join("node-a.pem").to_str().expect("path"),
        "--server-key",
        keys.join("node-b.pub.pem").to_str().expect("path"),
        "-c",
        "2",
        "-d",
        "300ms",
        "--warmup",
        "0",
        "--tokens",
        "50",
        "--verify-all",
        "--json",
        "--quiet",
    ]);
    assert_eq!(code, 2, "{r:#}");
    assert!(
        r["errors"]["bad_signature"].as_u64().unwrap_or(0) > 0,
        "{r:#}"
    );
    assert_eq!(r["verified"], 0);
}

#[test]
fn ceiling_and_policy_modes_report() {
    let ws = Workspace::new();
    let key = ws.path().join("keys/callback-server.pem");
    let (code, r, _) = bench(&[
        "--ceiling",
        "--server-key-private",
        key.to_str().expect("path"),
        "-d",
        "200ms",
        "--threads",
        "1",
        "--json",
    ]);
    assert_eq!(code, 0);
    assert_eq!(
        (r["key_bits"].as_u64(), r["threads"].as_u64()),
        (Some(2048), Some(1))
    );
    assert!(r["signatures"].as_u64().unwrap_or(0) > 0, "{r:#}");

    let (code, r, _) = bench(&[
        "--policy",
        "--allow-list",
        "2000",
        "--iterations",
        "20",
        "--json",
    ]);
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(r["allow_list_size"], 2000);
    let fixtures = r["fixtures"].as_array().expect("fixtures");
    assert!(
        fixtures
            .iter()
            .any(|f| f["fixture"] == "keysign_eth_approve" && f["action"] == "APPROVE"),
        "{r:#}"
    );
    // Only KEYSIGN fixtures are measured (the target is about them).
    assert!(fixtures.iter().all(|f| {
        f["fixture"].as_str().is_some_and(|n| {
            ["keysign_", "integrity_", "calls_"]
                .iter()
                .any(|p| n.starts_with(p))
        })
    }));
    assert!(!fixtures.iter().any(|f| f["fixture"] == "ping_approve"));
    assert!(r["worst_p99_us"].as_u64().unwrap_or(0) > 0, "{r:#}");
}
