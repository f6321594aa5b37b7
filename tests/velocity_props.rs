//! Spending limits against a request writer who tries to land in a fresh
//! group: the approving ETH_USDT request with its wallet already at the
//! daily cap is mutated the ways an attacker would (address spellings,
//! wallet ids dropped or changed, filtered fields dropped or retyped, the
//! amount respelled) and must never approve. Each case goes through the
//! same path `tss-gate test` uses: the shipped policy, a scratch SQLite
//! ledger holding the history, the store's read-decide-record step.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::sync::OnceLock;

use common::shipped_policy;

use proptest::prelude::*;
use serde_json::{Value, json};
use tss_gate::fixture::HistoryEntry;
use tss_gate::input::TokenFacts;
use tss_gate::policy::PolicySet;
use tss_gate::protocol::CallbackRequest;
use tss_gate::testing::runner::{answer_of, decide_fixture};

const WALLET: &str = "5b2c1f7e-8d4a-4e39-9c6b-2f1a7d3e9b40";
const SOURCE: &str = "0xE3eF19222515A5d6Fa2F4BAE5A66ba71e76805e4";
const AT: i64 = 1_764_000_000_000;

fn policy() -> &'static PolicySet {
    shipped_policy()
}

fn base() -> &'static CallbackRequest {
    static B: OnceLock<CallbackRequest> = OnceLock::new();
    B.get_or_init(|| {
        let p = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/integrity_eip1559_eth_usdt_approve.json");
        tss_gate::fixture::load_request(&p).unwrap()
    })
}

/// The wallet's day: `n` earlier transfers of 9,999.99 from its source
/// address (five reach the cap), as the server records them: under the
/// wallet and under the source.
fn history(n: u32) -> Vec<HistoryEntry> {
    let entry = |limit: &str, group: Value| HistoryEntry {
        limit: limit.into(),
        group: serde_json::from_value(group).unwrap(),
        amount: Some("9999.99".into()),
        ago: "3h".into(),
        repeat: n,
    };
    vec![
        entry(
            "eth_usdt_wallet_24h",
            json!({"wallet": WALLET, "token": "ETH_USDT"}),
        ),
        entry(
            "eth_usdt_source_24h",
            json!({"source": SOURCE, "token": "ETH_USDT"}),
        ),
    ]
}

fn decide(extra: &Value, n: u32) -> tss_gate::protocol::CallbackResponse {
    let mut r = base().clone();
    r.extra_info = extra.to_string();
    let wire = serde_json::to_vec(&r).unwrap();
    let token = TokenFacts {
        key_name: "node-a".into(),
        ..Default::default()
    };
    let set = policy();
    let d = decide_fixture(set, &history(n), &wire, &token, AT, &mut |i| {
        set.evaluate(i)
    })
    .expect("history is well formed");
    answer_of(&r, &d)
}

fn extra() -> Value {
    serde_json::from_str(&base().extra_info).unwrap()
}

#[test]
fn four_earlier_transfers_leave_room_for_this_one_five_do_not() {
    let a = decide(&extra(), 4);
    assert!(a.is_approval(), "{a:?}");
    let a = decide(&extra(), 5);
    assert!(!a.is_approval(), "{a:?}");
    assert!(a.error.contains("eth_usdt_wallet_24h"), "{a:?}");
}

/// One change an attacker could make to land in a group with room.
#[derive(Debug, Clone)]
enum Mutation {
    /// Respell the destination (case, `0x` dropped or `0X`).
    Destination(u8),
    /// Drop one of the three wallet ids, or all of them.
    DropWallet(u8),
    /// Give one of the three wallet ids another (allowed) wallet's id.
    OtherWallet(u8),
    /// Drop or retype a field a limit filters on.
    Filter(u8),
    /// Respell the amount (trailing zeros, leading zeros).
    Amount(u8),
    /// Respell the source address (case, `0x` dropped).
    Source(u8),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (0u8..4).prop_map(Mutation::Destination),
        (0u8..4).prop_map(Mutation::DropWallet),
        (0u8..3).prop_map(Mutation::OtherWallet),
        (0u8..6).prop_map(Mutation::Filter),
        (0u8..3).prop_map(Mutation::Amount),
        (0u8..3).prop_map(Mutation::Source),
    ]
}

fn apply(e: &mut Value, m: &Mutation) {
    let tx = &mut e["transaction"];
    match *m {
        Mutation::Destination(k) => {
            let a = "0xd8dA6BF26964aF9D7eEd9e03E53415D37aA96045";
            let s = match k {
                0 => a.to_ascii_lowercase(),
                1 => a.to_ascii_uppercase().replacen("0X", "0x", 1),
                2 => a.trim_start_matches("0x").to_owned(),
                _ => a.replacen("0x", "0X", 1),
            };
            tx["destination"]["account_output"]["address"] = json!(s);
        }
        Mutation::DropWallet(k) => {
            let drop = |v: &mut Value, key: &str| {
                if let Some(o) = v.as_object_mut() {
                    o.remove(key);
                }
            };
            if k == 0 || k == 3 {
                drop(&mut e["wallet"], "wallet_id");
            }
            let tx = &mut e["transaction"];
            if k == 1 || k == 3 {
                drop(tx, "wallet_id");
            }
            if k == 2 || k == 3 {
                drop(&mut tx["source"], "wallet_id");
            }
        }
        Mutation::OtherWallet(k) => {
            let other = json!("a71e4c02-3b9f-4d58-8e21-6c0f5a9d2b17");
            match k {
                0 => e["wallet"]["wallet_id"] = other,
                1 => e["transaction"]["wallet_id"] = other,
                _ => e["transaction"]["source"]["wallet_id"] = other,
            }
        }
        Mutation::Filter(k) => {
            let (key, retype) = match k {
                0 => ("chain_id", false),
                1 => ("token_id", false),
                2 => ("chain_id", true),
                3 => ("token_id", true),
                4 => ("wallet_id", true),
                _ => ("destination", false),
            };
            if retype {
                tx[key] = json!(1);
            } else if let Some(o) = tx.as_object_mut() {
                o.remove(key);
            }
        }
        Mutation::Source(k) => {
            let s = match k {
                0 => SOURCE.to_ascii_lowercase(),
                1 => SOURCE.trim_start_matches("0x").to_owned(),
                _ => SOURCE.to_ascii_uppercase().replacen("0X", "0x", 1),
            };
            tx["source"]["address"] = json!(s);
        }
        Mutation::Amount(k) => {
            let s = ["9999.990", "09999.99", "9999.99000000000000000000"][k as usize];
            tx["destination"]["account_output"]["amount"] = json!(s);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 160, ..ProptestConfig::default() })]

    #[test]
    fn no_mutation_of_a_capped_request_approves(ms in prop::collection::vec(mutation(), 1..3)) {
        let mut e = extra();
        for m in &ms {
            apply(&mut e, m);
        }
        let a = decide(&e, 5);
        prop_assert!(!a.is_approval(), "{ms:?} approved: {a:?}");
    }
}
