//! Vector-driven tests (tests/vectors/*.json, made by gen_vectors.py with
//! independent libraries) and property tests on malformed input.

use proptest::prelude::*;
use serde_json::{Value, json};

use super::{DeriveConfig, derive};

const VECTOR_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors");

fn load(name: &str) -> (DeriveConfig, Vec<Value>) {
    let path = format!("{VECTOR_DIR}/{name}");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    let doc: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("parse {path}: {e}"));
    let cfg = config_from(&doc["config"]);
    let cases = doc["cases"].as_array().cloned().unwrap_or_default();
    assert!(!cases.is_empty(), "{path} has no cases");
    (cfg, cases)
}

fn config_from(v: &Value) -> DeriveConfig {
    DeriveConfig::from_integrity(Some(v)).unwrap_or_else(|e| panic!("vector config: {e}"))
}

/// Checks one case; returns a list of failures (empty when it passes).
fn check_case(cfg: &DeriveConfig, case: &Value) -> Vec<String> {
    let name = case["name"].as_str().unwrap_or("?");
    let expect = case["expect"].as_object().cloned().unwrap_or_default();
    let got = derive(&case["detail"], &case["extra"], cfg);
    let mut fails = Vec::new();
    if expect.get("derived_is_none") == Some(&Value::Bool(true)) {
        if got.is_some() {
            fails.push(format!("{name}: expected None, got {got:?}"));
        }
        return fails;
    }
    let Some(got) = got else {
        return vec![format!("{name}: derive returned None")];
    };
    // Invariants for every derived object.
    for key in [
        "family",
        "kind",
        "signing_hashes",
        "msg_hashes_match",
        "unmatched_msg_hashes",
        "chain_id",
        "nonce",
        "fees",
        "to",
        "value",
        "token_transfer",
        "recipients",
        "description_agrees",
        "disagreements",
        "error",
    ] {
        if got.get(key).is_none() {
            fails.push(format!("{name}: key `{key}` missing"));
        }
    }
    if !got["error"].is_null()
        && (got["msg_hashes_match"] != json!(false) || got["description_agrees"] != json!(false))
    {
        fails.push(format!("{name}: error without failing both checks: {got}"));
    }
    if got["description_agrees"] == json!(true) && got["disagreements"] != json!([]) {
        fails.push(format!("{name}: agrees but lists disagreements"));
    }
    for (key, want) in &expect {
        match key.as_str() {
            "disagreement_contains" => {
                let all: Vec<String> = got["disagreements"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|s| s.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default();
                for needle in want
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                {
                    if !all.iter().any(|d| d.contains(needle)) {
                        fails.push(format!(
                            "{name}: no disagreement mentions `{needle}`: {all:?}"
                        ));
                    }
                }
            }
            "error_contains" => match got["error"].as_str() {
                Some(e) if e.contains(want.as_str().unwrap_or_default()) => {}
                other => fails.push(format!("{name}: error {other:?} does not contain {want}")),
            },
            _ => {
                if got.get(key) != Some(want) {
                    fails.push(format!(
                        "{name}: `{key}` = {} but expected {want}",
                        got.get(key).unwrap_or(&Value::Null)
                    ));
                }
            }
        }
    }
    fails
}

fn run_file(name: &str) {
    let (cfg, cases) = load(name);
    let fails: Vec<String> = cases.iter().flat_map(|c| check_case(&cfg, c)).collect();
    assert!(
        fails.is_empty(),
        "{} failures in {name}:\n{}",
        fails.len(),
        fails.join("\n")
    );
}

#[test]
fn evm_vectors() {
    run_file("evm.json");
}

#[test]
fn tron_vectors() {
    run_file("tron.json");
}

#[test]
fn solana_vectors() {
    run_file("solana.json");
}

/// The tampered fixtures must really fail: guards against a harness that
/// passes everything.
#[test]
fn tampered_vectors_are_rejected() {
    for file in ["evm.json", "tron.json", "solana.json"] {
        let (cfg, cases) = load(file);
        for c in cases {
            let name = c["name"].as_str().unwrap_or_default().to_owned();
            let tampered = [
                "swapped",
                "raised",
                "hidden",
                "wrong",
                "unknown",
                "garbage",
                "truncated",
                "odd",
                "differs",
                "described_as",
                "trailing",
                "empty",
                "unprovable",
                "extra_unknown",
                "too_precise",
                "signed_legacy",
                "single_byte",
            ];
            if !tampered.iter().any(|t| name.contains(t)) {
                continue;
            }
            let Some(got) = derive(&c["detail"], &c["extra"], &cfg) else {
                panic!("{name}: nothing derived");
            };
            let pass =
                got["msg_hashes_match"] == json!(true) && got["description_agrees"] == json!(true);
            assert!(!pass, "{name}: tampered case passes both checks: {got}");
        }
    }
}

fn evm_cfg() -> DeriveConfig {
    config_from(&json!({
        "chains": {
            "ETH": {"family": "evm", "evm_chain_id": 1, "native_token": "ETH", "coin_type": 60, "max_fee": "1"},
            "TRON": {"family": "tron", "native_token": "TRON", "coin_type": 195, "max_fee": "1"},
            "SOL": {"family": "solana", "native_token": "SOL", "coin_type": 501, "max_fee": "1"}
        },
        "tokens": {
            "ETH": {"chain": "ETH", "decimals": 18, "native": true},
            "TRON": {"chain": "TRON", "decimals": 6, "native": true},
            "SOL": {"chain": "SOL", "decimals": 9, "native": true}
        }
    }))
}

fn extra_with(chain: &str, raw: Value) -> Value {
    json!({"transaction": {"chain_id": chain, "token_id": chain,
        "destination": {"destination_type": "Address", "account_output": {"address": "0x00", "amount": "0"}},
        "raw_tx_info": {"unsigned_raw_tx": raw}}})
}

#[test]
fn nothing_to_derive() {
    let cfg = evm_cfg();
    let detail = json!({"msg_hash_list": []});
    assert!(derive(&detail, &json!({}), &cfg).is_none());
    assert!(derive(&detail, &json!(""), &cfg).is_none());
    assert!(derive(&detail, &json!({"transaction": null}), &cfg).is_none());
    assert!(derive(&detail, &extra_with("ETH", Value::Null), &cfg).is_none());
    assert!(derive(&detail, &extra_with("ETH", json!("")), &cfg).is_none());
}

#[test]
fn non_string_raw_and_unknown_family_are_errors() {
    let cfg = evm_cfg();
    let detail = json!({"msg_hash_list": ["0x00"]});
    let got = derive(&detail, &extra_with("ETH", json!(12)), &cfg).unwrap();
    assert_eq!(got["error"], json!("unsigned_raw_tx is not a string"));
    let got = derive(&detail, &extra_with("WEIRD", json!("0x00")), &cfg).unwrap();
    assert_eq!(
        got["error"],
        json!("chain `WEIRD` is not in data.integrity.chains")
    );
    assert_eq!(got["family"], Value::Null);
    assert_eq!(got["msg_hashes_match"], json!(false));
    let got = derive(&detail, &extra_with("0x", json!("0x")), &cfg).unwrap();
    assert_eq!(got["family"], Value::Null);
}

#[test]
fn non_string_msg_hash_never_matches() {
    let (cfg, cases) = load("evm.json");
    let case = cases
        .iter()
        .find(|c| c["name"] == "eip1559_native_ok")
        .unwrap();
    let mut detail = case["detail"].clone();
    detail["msg_hash_list"]
        .as_array_mut()
        .unwrap()
        .push(json!(5));
    let got = derive(&detail, &case["extra"], &cfg).unwrap();
    assert_eq!(got["msg_hashes_match"], json!(false));
    assert_eq!(got["unmatched_msg_hashes"], json!(["5"]));
    detail["msg_hash_list"] = json!("not a list");
    let got = derive(&detail, &case["extra"], &cfg).unwrap();
    assert_eq!(got["msg_hashes_match"], json!(false));
}

/// Valid raw transactions from the vector files, as bytes, with their family.
fn valid_raws() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for (file, chain) in [
        ("evm.json", "ETH"),
        ("tron.json", "TRON"),
        ("solana.json", "SOL"),
    ] {
        let (_, cases) = load(file);
        for c in cases {
            if c["expect"]["error"] != Value::Null || c["expect"].get("error").is_none() {
                continue;
            }
            let raw = c["extra"]["transaction"]["raw_tx_info"]["unsigned_raw_tx"]
                .as_str()
                .unwrap_or_default();
            let body = raw.trim_start_matches("0x").trim_start_matches("0X");
            if let Ok(b) = alloy_primitives::hex::decode(body) {
                out.push((chain.to_owned(), b));
            }
        }
    }
    assert!(out.len() > 20);
    out
}

fn garbage_must_not_pass(chain: &str, bytes: &[u8], msg: Vec<String>) -> Result<(), TestCaseError> {
    let cfg = evm_cfg();
    let extra = extra_with(chain, json!(alloy_primitives::hex::encode(bytes)));
    let got = derive(&json!({"msg_hash_list": msg}), &extra, &cfg);
    let got = got.ok_or_else(|| TestCaseError::fail("None for non-empty raw"))?;
    // The description (address 0x00, amount 0) can never agree with a real transfer,
    // and a random msg hash can never match.
    prop_assert!(
        !(got["msg_hashes_match"] == json!(true) && got["description_agrees"] == json!(true))
    );
    if !got["error"].is_null() {
        prop_assert_eq!(&got["msg_hashes_match"], &json!(false));
        prop_assert_eq!(&got["description_agrees"], &json!(false));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_bytes_never_panic_or_pass(
        chain in prop::sample::select(vec!["ETH", "TRON", "SOL"]),
        bytes in prop::collection::vec(any::<u8>(), 1..400),
        hash in prop::collection::vec(any::<u8>(), 32),
    ) {
        garbage_must_not_pass(chain, &bytes, vec![alloy_primitives::hex::encode(hash)])?;
    }

    #[test]
    fn truncated_and_flipped_valid_txs_never_panic(idx in any::<prop::sample::Index>(), cut in any::<prop::sample::Index>(),
                                                   flip in any::<prop::sample::Index>(), bit in 0u8..8) {
        let raws = valid_raws();
        let (chain, raw) = idx.get(&raws);
        let n = cut.index(raw.len());
        if n > 0 {
            garbage_must_not_pass(chain, &raw[..n], vec!["00".repeat(32)])?;
        }
        let mut flipped = raw.clone();
        let i = flip.index(flipped.len());
        flipped[i] ^= 1 << bit;
        garbage_must_not_pass(chain, &flipped, vec!["00".repeat(32)])?;
    }
}

#[test]
fn truncations_of_valid_txs_are_errors() {
    // Every strict prefix of a valid EVM/TRON/Solana raw tx must fail to
    // decode (or, for protobuf, at least not pass).
    for (chain, raw) in valid_raws() {
        for n in 1..raw.len() {
            let cfg = evm_cfg();
            let extra = extra_with(&chain, json!(alloy_primitives::hex::encode(&raw[..n])));
            let got = derive(&json!({"msg_hash_list": ["00"]}), &extra, &cfg).unwrap();
            if chain != "TRON" {
                assert!(
                    got["error"].is_string(),
                    "{chain} prefix {n} decoded: {got}"
                );
            }
            assert_eq!(got["msg_hashes_match"], json!(false));
        }
    }
}
