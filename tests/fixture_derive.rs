//! Issue 36, item 3: `tss-gate fixture derive` makes a transfer fixture for a
//! new address or amount whose unsigned raw transaction and `msg_hash_list`
//! are rebuilt to agree with it, byte for byte, for every supported family
//! (EVM native and ERC-20, TRON TRX and TRC-20, Solana SOL and SPL, Bitcoin);
//! `received_at_ms` and `history` are settable; a change the bytes cannot
//! follow keeps them and says so.
//!
//! Each derived fixture starts from a shipped approving fixture and gets an
//! allow-listed destination (rego/data.yaml `keysign.allowed_destinations`)
//! and an amount within the caps. Checked through the real binary: `test`
//! approves them, `eval` decodes the new bytes to the new recipient and
//! amount with everything else kept, the hashes are recomputed here with the
//! chain libraries directly, and real OPA decides them as tss-gate does.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::str::FromStr;

use serde_json::Value;
use sha2::{Digest, Sha256};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tss-gate"));
    c.current_dir(repo());
    c
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

const ACCOUNT_OUTPUT: &str = "extra_info.transaction.destination.account_output";
const USDC_MINT: &str = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v";
const TOKEN_PROGRAM: &str = "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA";

/// One derived fixture: its base, the new destination and amount, and what
/// the new bytes must move (base units; `recipient` as the decoder prints
/// it, None for an SPL transfer, which pays the owner's token account).
struct Case {
    name: &'static str,
    base: &'static str,
    address: &'static str,
    amount: &'static str,
    recipient: Option<&'static str>,
    base_units: &'static str,
    asset: &'static str,
}

const CASES: [Case; 9] = [
    Case {
        name: "derived_eth_approve",
        base: "integrity_eip1559_eth_approve",
        address: "0x8f3cf7ad23cd3cadbd9735aff958023239c6a063",
        amount: "2.5",
        recipient: Some("0x8f3cf7ad23cd3cadbd9735aff958023239c6a063"),
        base_units: "2500000000000000000",
        asset: "native",
    },
    Case {
        name: "derived_eth_usdt_approve",
        base: "integrity_legacy_eip155_eth_usdt_approve",
        address: "0x8f3cf7ad23cd3cadbd9735aff958023239c6a063",
        amount: "1234.5",
        recipient: Some("0x8f3cf7ad23cd3cadbd9735aff958023239c6a063"),
        base_units: "1234500000",
        asset: "0xdac17f958d2ee523a2206206994597c13d831ec7",
    },
    Case {
        name: "derived_trx_approve",
        base: "integrity_tron_trx_transfer_ok_approve",
        address: "TN3W4H6rK2ce4vX9YnFQHwKENnHjoxb3m9",
        amount: "42.123456",
        recipient: Some("TN3W4H6rK2ce4vX9YnFQHwKENnHjoxb3m9"),
        base_units: "42123456",
        asset: "native",
    },
    Case {
        name: "derived_tron_usdt_approve",
        base: "integrity_tron_trc20_transfer_ok_approve",
        address: "TN3W4H6rK2ce4vX9YnFQHwKENnHjoxb3m9",
        amount: "777",
        recipient: Some("TN3W4H6rK2ce4vX9YnFQHwKENnHjoxb3m9"),
        base_units: "777000000",
        asset: "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t",
    },
    Case {
        name: "derived_sol_approve",
        base: "integrity_sol_transfer_ok_approve",
        address: "4Nd1mBQtrMJVYVfKf2PJy9NZUZdTAsp7D4xWLs4gDB4T",
        amount: "3.25",
        recipient: Some("4Nd1mBQtrMJVYVfKf2PJy9NZUZdTAsp7D4xWLs4gDB4T"),
        base_units: "3250000000",
        asset: "native",
    },
    Case {
        name: "derived_sol_wire_tx_approve",
        base: "integrity_sol_transfer_as_unsigned_tx_ok_approve",
        address: "4Nd1mBQtrMJVYVfKf2PJy9NZUZdTAsp7D4xWLs4gDB4T",
        amount: "0.001",
        recipient: Some("4Nd1mBQtrMJVYVfKf2PJy9NZUZdTAsp7D4xWLs4gDB4T"),
        base_units: "1000000",
        asset: "native",
    },
    Case {
        name: "derived_sol_usdc_approve",
        base: "integrity_spl_transfer_checked_ok_approve",
        address: "4Nd1mBQtrMJVYVfKf2PJy9NZUZdTAsp7D4xWLs4gDB4T",
        amount: "12.5",
        recipient: None,
        base_units: "12500000",
        asset: USDC_MINT,
    },
    Case {
        name: "derived_sol_usdc_with_ata_create_approve",
        base: "integrity_spl_transfer_checked_with_ata_create_ok_approve",
        address: "4Nd1mBQtrMJVYVfKf2PJy9NZUZdTAsp7D4xWLs4gDB4T",
        amount: "99.000001",
        recipient: None,
        base_units: "99000001",
        asset: USDC_MINT,
    },
    Case {
        name: "derived_btc_approve",
        base: "integrity_btc_p2wpkh_with_change_approve",
        address: "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq",
        amount: "0.75",
        recipient: Some("bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq"),
        base_units: "75000000",
        asset: "native",
    },
];

fn base_path(c: &Case) -> PathBuf {
    repo().join(format!("tests/fixtures/{}.json", c.base))
}

/// `fixture derive` of every case into `dir`.
fn derive_all(dir: &Path) {
    for c in &CASES {
        let out = dir.join(format!("{}.json", c.name));
        let (address, amount) = if c.base.contains("btc") {
            (
                "extra_info.transaction.destination.utxo_outputs.0.address".to_owned(),
                "extra_info.transaction.destination.utxo_outputs.0.amount".to_owned(),
            )
        } else {
            (
                format!("{ACCOUNT_OUTPUT}.address"),
                format!("{ACCOUNT_OUTPUT}.amount"),
            )
        };
        let o = bin()
            .args(["fixture", "derive"])
            .arg(base_path(c))
            .arg("--set")
            .arg(format!("{address}={}", c.address))
            .arg("--set")
            .arg(format!("{amount}={}", c.amount))
            .args(["--expect", "approve", "--description", c.name, "-o"])
            .arg(&out)
            .output()
            .unwrap();
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(0), "{}: {err}", c.name);
        assert!(
            err.contains("rebuilt the raw transaction for the new description")
                && err.contains("decides as expected")
                && !err.contains("kept the base fixture's"),
            "{}: {err}",
            c.name
        );
    }
}

fn read_json(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

/// The request's embedded documents, objects or strings.
fn doc(fixture: &Value, key: &str) -> Value {
    match &fixture["request"][key] {
        Value::String(s) => serde_json::from_str(s).unwrap(),
        v => v.clone(),
    }
}

/// `input.derived` of a fixture, through `tss-gate eval`.
fn derived(p: &Path) -> Value {
    let o = bin()
        .args(["eval", "--input-only"])
        .arg(p)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let input: Value = serde_json::from_slice(&o.stdout).unwrap();
    input["derived"].clone()
}

fn unhex(s: &str) -> Vec<u8> {
    hex::decode(s.trim_start_matches("0x")).unwrap()
}

/// Solana's associated token account, computed here from its definition.
fn ata(owner: &str, program: &str, mint: &str) -> String {
    let key = |s: &str| bs58::decode(s).into_vec().unwrap();
    let ata_program = key("ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL");
    for bump in (0..=255u8).rev() {
        let mut h = Sha256::new();
        for seed in [key(owner), key(program), key(mint)] {
            h.update(seed);
        }
        h.update([bump]);
        h.update(&ata_program);
        h.update(b"ProgramDerivedAddress");
        let out: [u8; 32] = h.finalize().into();
        if curve25519_dalek::edwards::CompressedEdwardsY(out)
            .decompress()
            .is_none()
        {
            return bs58::encode(out).into_string();
        }
    }
    panic!("no bump");
}

/// Each msg hash recomputed from the new bytes with the chain's own
/// library, not tss-gate's code.
fn check_hashes_independently(c: &Case, fixture: &Value) {
    let extra = doc(fixture, "extra_info");
    let detail = doc(fixture, "request_detail");
    let tx = &extra["transaction"];
    let raw = unhex(tx["raw_tx_info"]["unsigned_raw_tx"].as_str().unwrap());
    let hashes: Vec<String> = detail["msg_hash_list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_str().unwrap().trim_start_matches("0x").to_lowercase())
        .collect();
    match tx["chain_id"].as_str().unwrap() {
        "ETH" => {
            let mut buf = raw.as_slice();
            let decoded = alloy_consensus::EthereumTypedTransaction::<
                alloy_consensus::TxEip4844,
            >::decode_unsigned(&mut buf)
            .unwrap();
            assert!(buf.is_empty(), "{}", c.name);
            let mut again = Vec::new();
            alloy_consensus::SignableTransaction::encode_for_signing(&decoded, &mut again);
            assert_eq!(again, raw, "{}: canonical", c.name);
            assert_eq!(
                hashes,
                [hex::encode(alloy_primitives::keccak256(&raw))],
                "{}",
                c.name
            );
        }
        "TRON" => assert_eq!(hashes, [hex::encode(Sha256::digest(&raw))], "{}", c.name),
        "SOL" => {
            // The message itself; a wire transaction ends with it.
            let [msg] = hashes.as_slice() else {
                panic!("{}: {hashes:?}", c.name)
            };
            assert!(hex::encode(&raw).ends_with(msg.as_str()), "{}", c.name);
        }
        "BTC" => {
            use bitcoin::hashes::Hash as _;
            let btc: bitcoin::Transaction = bitcoin::consensus::deserialize(&raw).unwrap();
            let utxos = tx["raw_tx_info"]["selected_utxos"].as_array().unwrap();
            let mut cache = bitcoin::sighash::SighashCache::new(&btc);
            let mut got = Vec::new();
            for (i, input) in btc.input.iter().enumerate() {
                let u = utxos
                    .iter()
                    .find(|u| {
                        u["tx_hash"] == input.previous_output.txid.to_string()
                            && u["vout_n"] == input.previous_output.vout
                    })
                    .unwrap();
                let script = bitcoin::Address::from_str(u["address"].as_str().unwrap())
                    .unwrap()
                    .assume_checked()
                    .script_pubkey();
                assert!(script.is_p2wpkh(), "{}: this check covers p2wpkh", c.name);
                let value = bitcoin::Amount::from_str_in(
                    u["value"].as_str().unwrap(),
                    bitcoin::Denomination::Bitcoin,
                )
                .unwrap();
                let h = cache
                    .p2wpkh_signature_hash(i, &script, value, bitcoin::EcdsaSighashType::All)
                    .unwrap();
                got.push(hex::encode(h.to_byte_array()));
            }
            assert_eq!(hashes, got, "{}", c.name);
        }
        other => panic!("{other}"),
    }
}

/// Facts of the base's bytes that the new bytes must keep.
const KEPT: [&str; 17] = [
    "family",
    "kind",
    "chain_id",
    "nonce",
    "fees",
    "authorities",
    "signer",
    "expiration",
    "timestamp",
    "ref_block_bytes",
    "ref_block_hash",
    "permission_id",
    "fee_payer",
    "recent_blockhash",
    "num_required_signatures",
    "version",
    "lock_time",
];

#[test]
fn derived_transfers_agree_byte_for_byte_and_tss_gate_approves_them() {
    let t = tempfile::tempdir().unwrap();
    derive_all(t.path());

    // (a) `test` runs them as a node would send them: all approved.
    let o = bin()
        .args([
            "test",
            "--policy-dir",
            "rego",
            "--run",
            "^derived_",
            "--fixtures",
        ])
        .arg(t.path())
        .output()
        .unwrap();
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{}", stderr(&o));
    assert!(
        out.trim_end()
            .ends_with(&format!("{} passed, 0 failed", CASES.len())),
        "{out}"
    );

    for c in &CASES {
        let path = t.path().join(format!("{}.json", c.name));
        let new = read_json(&path);
        let base = read_json(&base_path(c));

        // (b) The new bytes decode to the new recipient and amount...
        let d = derived(&path);
        assert_eq!(d["error"], Value::Null, "{}: {d:#}", c.name);
        assert_eq!(d["msg_hashes_match"], true, "{}: {d:#}", c.name);
        assert_eq!(d["description_agrees"], true, "{}: {d:#}", c.name);
        assert_eq!(d["violations"], serde_json::json!([]), "{}: {d:#}", c.name);
        let recipient = c
            .recipient
            .map(str::to_owned)
            .unwrap_or_else(|| ata(c.address, TOKEN_PROGRAM, USDC_MINT));
        let first = &d["recipients"][0];
        assert_eq!(
            (
                first["address"].as_str(),
                first["amount"].as_str(),
                first["asset"].as_str()
            ),
            (Some(recipient.as_str()), Some(c.base_units), Some(c.asset)),
            "{}: {d:#}",
            c.name
        );

        // ...with everything else the base's bytes said kept.
        let b = derived(&base_path(c));
        for key in KEPT {
            assert_eq!(d.get(key), b.get(key), "{}: `{key}` changed", c.name);
        }
        let strip = |d: &Value| -> Vec<Value> {
            d["inputs"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|i| {
                            let mut i = i.clone();
                            i.as_object_mut().unwrap().remove("sighash");
                            i
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        assert_eq!(strip(&d), strip(&b), "{}: inputs changed", c.name);
        // The signing key binding and source are the base's.
        let (nd, bd) = (doc(&new, "request_detail"), doc(&base, "request_detail"));
        for key in ["root_pub_key", "bip32_path_list", "signature_type"] {
            assert_eq!(nd[key], bd[key], "{}: {key}", c.name);
        }
        let (ne, be) = (doc(&new, "extra_info"), doc(&base, "extra_info"));
        assert_eq!(ne["transaction"]["source"], be["transaction"]["source"]);
        assert_ne!(
            ne["transaction"]["raw_tx_info"]["unsigned_raw_tx"],
            be["transaction"]["raw_tx_info"]["unsigned_raw_tx"],
            "{}",
            c.name
        );

        check_hashes_independently(c, &new);
    }

    // Bitcoin: the change moved so the fee stays, paid to the wallet itself.
    let d = derived(&t.path().join("derived_btc_approve.json"));
    assert_eq!(d["fees"]["total"], "20000", "{d:#}");
    assert_eq!(d["outputs"][1]["value"], "74980000", "{d:#}");
    assert_eq!(
        d["outputs"][1]["address"],
        "bc1qu6vkp3hjdwc7mnxwfl3km5fc5xxf37yl7t4n87"
    );
}

#[test]
fn derived_transfers_decide_the_same_under_real_opa() {
    let t = tempfile::tempdir().unwrap();
    derive_all(t.path());
    // scripts/opa-check.sh fetches OPA when it is missing and runs
    // scripts/opa_check.py, which reads the fixtures from OPA_CHECK_FIXTURES.
    let o = Command::new("bash")
        .arg("scripts/opa-check.sh")
        .current_dir(repo())
        .env("TSS_GATE_BIN", env!("CARGO_BIN_EXE_tss-gate"))
        .env("OPA_CHECK_FIXTURES", t.path())
        .output()
        .unwrap();
    let out = stdout(&o);
    assert!(
        out.contains(&format!(
            "opa: {} fixtures decided identically, 0 differently",
            CASES.len()
        )),
        "{out}{}",
        stderr(&o)
    );
    // The exit status also counts the Rego tests under OPA; the fixtures'
    // line is what this test is about.
    assert!(!out.contains("DIFF"), "{out}");
}

#[test]
fn received_at_ms_and_history_are_the_fixtures_own() {
    let t = tempfile::tempdir().unwrap();
    let base = repo().join("tests/fixtures/integrity_eip1559_eth_usdt_approve.json");
    let history = repo().join("tests/fixtures/velocity_eth_usdt_sixth_transfer_reject.json");
    let derive = |out: &Path, extra: &[&str]| {
        bin()
            .args(["fixture", "derive"])
            .arg(&base)
            .arg("--history")
            .arg(&history)
            .args(["--set", "received_at_ms=1764000000000"])
            .args(extra)
            .arg("-o")
            .arg(out)
            .output()
            .unwrap()
    };
    // Five earlier 9,999.99 transfers: a sixth passes the 50,000 a day.
    let sixth = t.path().join("sixth_reject.json");
    let o = derive(
        &sixth,
        &["--expect", "reject", "--reason", "eth_usdt_wallet_24h"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("decides as expected"), "{}", stderr(&o));
    let f = read_json(&sixth);
    assert_eq!(f["received_at_ms"], 1_764_000_000_000i64, "{f:#}");
    assert_eq!(f["history"][0]["repeat"], 5, "{f:#}");
    assert!(f["request"].get("received_at_ms").is_none(), "{f:#}");
    assert!(f["request"].get("history").is_none(), "{f:#}");

    // Four earlier ones: the fifth fits. `--set` reaches into `history`.
    let fifth = t.path().join("fifth_approve.json");
    let o = derive(
        &fifth,
        &["--set", "history.0.repeat=4", "--expect", "approve"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("decides as expected"), "{}", stderr(&o));

    // `--set history=<json>` and an RFC 3339 time do the same.
    let rows = r#"[{"limit":"eth_usdt_wallet_24h","group":{"wallet":"5b2c1f7e-8d4a-4e39-9c6b-2f1a7d3e9b40","token":"ETH_USDT"},"amount":"9999.99","ago":"20h","repeat":5}]"#;
    let inline = t.path().join("inline_reject.json");
    let o = bin()
        .args(["fixture", "derive"])
        .arg(&base)
        .arg("--set")
        .arg(format!("history={rows}"))
        .args(["--set", "received_at_ms=2025-11-24T16:00:00Z"])
        .args([
            "--expect",
            "reject",
            "--reason",
            "eth_usdt_wallet_24h",
            "-o",
        ])
        .arg(&inline)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("decides as expected"), "{}", stderr(&o));
    assert_eq!(read_json(&inline)["received_at_ms"], 1_764_000_000_000i64);

    // `test` reads them as written.
    let o = bin()
        .args([
            "test",
            "--policy-dir",
            "rego",
            "--run",
            "^(sixth|fifth|inline)_",
            "--fixtures",
        ])
        .arg(t.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(
        stdout(&o).trim_end().ends_with("3 passed, 0 failed"),
        "{}",
        stdout(&o)
    );

    // A malformed value is refused, not written.
    let o = bin()
        .args(["fixture", "derive"])
        .arg(&base)
        .args([
            "--set",
            "history=[{\"limit\":\"x\"}]",
            "--expect",
            "approve",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("history"), "{}", stderr(&o));
}

#[test]
fn a_change_the_bytes_cannot_follow_keeps_them_and_says_so() {
    let raw_of = |p: &Path| {
        doc(&read_json(p), "extra_info")["transaction"]["raw_tx_info"]["unsigned_raw_tx"].clone()
    };
    let t = tempfile::tempdir().unwrap();

    // SOL to SOL_USDC would need other accounts: kept, said, and rejected.
    let base = repo().join("tests/fixtures/integrity_sol_transfer_ok_approve.json");
    let out = t.path().join("switch.json");
    let o = bin()
        .args(["fixture", "derive"])
        .arg(&base)
        .args(["--set", "extra_info.transaction.token_id=SOL_USDC"])
        .args([
            "--expect",
            "reject",
            "--reason",
            "disagrees with the description",
            "-o",
        ])
        .arg(&out)
        .output()
        .unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(
        err.contains("kept the base fixture's unsigned_raw_tx and msg_hash_list")
            && err.contains("does not turn a System transfer into an SPL one")
            && err.contains("decides as expected"),
        "{err}"
    );
    assert_eq!(raw_of(&out), raw_of(&base));

    // --keep-raw-tx: a tampered fixture on purpose, without a warning.
    let base = repo().join("tests/fixtures/integrity_eip1559_eth_approve.json");
    let out = t.path().join("tampered.json");
    let o = bin()
        .args(["fixture", "derive"])
        .arg(&base)
        .args([
            "--keep-raw-tx",
            "--set",
            &format!("{ACCOUNT_OUTPUT}.amount=0.5"),
        ])
        .args([
            "--expect",
            "reject",
            "--reason",
            "amount: raw tx moves",
            "-o",
        ])
        .arg(&out)
        .output()
        .unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(
        !err.contains("rebuilt") && !err.contains("kept the base"),
        "{err}"
    );
    assert_eq!(raw_of(&out), raw_of(&base));
    // The amount is still the decimal string Cobo sends.
    assert_eq!(
        doc(&read_json(&out), "extra_info")["transaction"]["destination"]["account_output"]["amount"],
        "0.5"
    );

    // An amount the token cannot hold: kept, said.
    let o = bin()
        .args(["fixture", "derive"])
        .arg(repo().join("tests/fixtures/integrity_eip1559_eth_usdt_approve.json"))
        .args(["--set", &format!("{ACCOUNT_OUTPUT}.amount=1.1234567")])
        .args(["--expect", "reject", "--reason", "decimal places"])
        .output()
        .unwrap();
    assert!(
        stderr(&o).contains("kept the base fixture's")
            && stderr(&o).contains("more than 6 decimal places"),
        "{}",
        stderr(&o)
    );
}
