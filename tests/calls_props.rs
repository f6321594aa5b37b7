//! Mutations of the approving contract-call fixture (USDT `approve` to
//! Permit2, `tests/fixtures/calls_usdt_approve_permit2_approve.json`) never
//! approve unless what is signed is still an approval the shipped data
//! allows: the selector, each argument word and its padding, bytes appended
//! or cut, the native value, and every `calldata_info` field. Where the bytes
//! change, the transaction is re-encoded, its signing hash put in
//! `msg_hash_list` and the description's `calldata`/`value` updated to agree,
//! so the hash and description checks alone cannot be what rejects: the call
//! rules must. Runs the shipped policy through `steps::decide`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::sync::OnceLock;

use alloy_consensus::{EthereumTypedTransaction, SignableTransaction, TxEip1559, TxEip4844};
use alloy_primitives::{Bytes, U256, keccak256};
use proptest::prelude::*;
use serde_json::{Value, json};
use tss_gate::decide::steps;
use tss_gate::input::{TokenFacts, parse_callback_request};
use tss_gate::policy::{PolicyOptions, PolicySet};
use tss_gate::protocol::{CallbackRequest, CallbackResponse};

const PERMIT2: [u8; 20] = [
    0x00, 0x00, 0x00, 0x00, 0x00, 0x22, 0xd4, 0x73, 0x03, 0x0f, 0x11, 0x6d, 0xde, 0xe9, 0xf6, 0xb4,
    0x3a, 0xc7, 0x8b, 0xa3,
];
/// The shipped cap: 50,000 USDT (6 decimals).
const CAP: u64 = 50_000_000_000;
const APPROVE: [u8; 4] = [0x09, 0x5e, 0xa7, 0xb3];

fn policy() -> &'static PolicySet {
    static P: OnceLock<PolicySet> = OnceLock::new();
    P.get_or_init(|| {
        PolicySet::load(&PolicyOptions {
            dir: Path::new(env!("CARGO_MANIFEST_DIR")).join("rego"),
            entrypoint: tss_gate::policy::DEFAULT_ENTRYPOINT.into(),
            data_files: vec![],
            eval_timeout: std::time::Duration::from_secs(5),
        })
        .expect("shipped policy loads")
    })
}

/// The fixture's request and its decoded transaction.
fn base() -> &'static (CallbackRequest, TxEip1559) {
    static B: OnceLock<(CallbackRequest, TxEip1559)> = OnceLock::new();
    B.get_or_init(|| {
        let p = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/calls_usdt_approve_permit2_approve.json");
        let req = tss_gate::fixture::load_request(&p).unwrap();
        let extra: Value = serde_json::from_str(&req.extra_info).unwrap();
        let raw = extra["transaction"]["raw_tx_info"]["unsigned_raw_tx"]
            .as_str()
            .unwrap();
        let bytes = hex::decode(raw.trim_start_matches("0x")).unwrap();
        let mut buf = bytes.as_slice();
        let EthereumTypedTransaction::Eip1559(tx) =
            EthereumTypedTransaction::<TxEip4844>::decode_unsigned(&mut buf).unwrap()
        else {
            panic!("the call fixture is not an EIP-1559 transaction");
        };
        (req, tx)
    })
}

fn decide(detail: &Value, extra: &Value) -> CallbackResponse {
    let mut r = base().0.clone();
    r.request_detail = detail.to_string();
    r.extra_info = extra.to_string();
    let parsed = parse_callback_request(&r, 64).unwrap();
    let facts = TokenFacts {
        key_name: "node-a".into(),
        ..Default::default()
    };
    steps::decide(policy(), &parsed, &facts, 1_764_000_000_000).response
}

fn parts() -> (Value, Value) {
    let req = &base().0;
    (
        serde_json::from_str(&req.request_detail).unwrap(),
        serde_json::from_str(&req.extra_info).unwrap(),
    )
}

/// Decides the fixture with `data` and `value` signed and described
/// (calldata_info removed: it describes the base call).
fn decide_signed(data: &[u8], value: U256) -> CallbackResponse {
    let mut tx = base().1.clone();
    tx.input = Bytes::copy_from_slice(data);
    tx.value = value;
    let unsigned = tx.encoded_for_signing();
    let (mut d, mut e) = parts();
    d["msg_hash_list"] = json!([hex::encode(keccak256(&unsigned))]);
    let t = &mut e["transaction"];
    t["raw_tx_info"]["unsigned_raw_tx"] = json!(format!("0x{}", hex::encode(&unsigned)));
    let dest = t["destination"].as_object_mut().unwrap();
    dest.insert("calldata".into(), json!(format!("0x{}", hex::encode(data))));
    dest.insert("value".into(), json!(wei_to_eth(value)));
    dest.remove("calldata_info");
    decide(&d, &e)
}

/// Wei as a whole-ETH decimal string.
fn wei_to_eth(v: U256) -> String {
    let s = format!("{:0>19}", v.to_string());
    let (int, frac) = s.split_at(s.len() - 18);
    let frac = frac.trim_end_matches('0');
    let int = int.trim_start_matches('0');
    let int = if int.is_empty() { "0" } else { int };
    if frac.is_empty() {
        int.to_owned()
    } else {
        format!("{int}.{frac}")
    }
}

/// What the shipped data allows: `approve(Permit2, <= 50,000 USDT)`,
/// canonically encoded, with no native value.
fn allowed(data: &[u8], value: U256) -> bool {
    if data.len() != 68 || data[..4] != APPROVE || !value.is_zero() {
        return false;
    }
    let spender = &data[4..36];
    let amount = U256::from_be_slice(&data[36..68]);
    spender[..12].iter().all(|b| *b == 0) && spender[12..] == PERMIT2 && amount <= U256::from(CAP)
}

#[derive(Debug, Clone)]
enum ByteMutation {
    Selector([u8; 4]),
    /// Sets byte `pos` of the argument area.
    Byte(usize, u8),
    Append(Vec<u8>),
    Cut(usize),
    Amount(U256),
    Spender([u8; 20]),
    Value(u128),
}

fn amount() -> impl Strategy<Value = U256> {
    prop_oneof![
        (0u64..=CAP).prop_map(U256::from),
        (CAP..u64::MAX).prop_map(U256::from),
        Just(U256::from(CAP)),
        Just(U256::from(CAP + 1)),
        Just(U256::MAX),
        Just(U256::from(1u8) << 255),
        any::<[u8; 32]>().prop_map(U256::from_be_bytes),
    ]
}

fn byte_mutation() -> impl Strategy<Value = ByteMutation> {
    prop_oneof![
        prop_oneof![
            Just([0xa9, 0x05, 0x9c, 0xbb]),
            Just([0x23, 0xb8, 0x72, 0xdd]),
            Just([0x39, 0x50, 0x93, 0x51]),
            any::<[u8; 4]>()
        ]
        .prop_map(ByteMutation::Selector),
        (0usize..64, any::<u8>()).prop_map(|(p, b)| ByteMutation::Byte(p, b)),
        proptest::collection::vec(any::<u8>(), 1..70).prop_map(ByteMutation::Append),
        (1usize..68).prop_map(ByteMutation::Cut),
        amount().prop_map(ByteMutation::Amount),
        prop_oneof![Just(PERMIT2), any::<[u8; 20]>()].prop_map(ByteMutation::Spender),
        prop_oneof![Just(0u128), Just(1), any::<u128>()].prop_map(ByteMutation::Value),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn call_byte_mutations_approve_only_what_the_data_allows(m in byte_mutation()) {
        let tx = &base().1;
        let mut data = tx.input.to_vec();
        let mut value = tx.value;
        match &m {
            ByteMutation::Selector(s) => data[..4].copy_from_slice(s),
            ByteMutation::Byte(p, b) => data[4 + p] = *b,
            ByteMutation::Append(extra) => data.extend_from_slice(extra),
            ByteMutation::Cut(n) => data.truncate(data.len() - n),
            ByteMutation::Amount(a) => data[36..68].copy_from_slice(&a.to_be_bytes::<32>()),
            ByteMutation::Spender(s) => data[16..36].copy_from_slice(s),
            ByteMutation::Value(v) => value = U256::from(*v),
        }
        let a = decide_signed(&data, value);
        if allowed(&data, value) {
            prop_assert!(a.is_approval(), "an allowed approve was rejected after {m:?}: {a:?}");
        } else {
            prop_assert!(!a.is_approval(), "approved after {m:?}: {a:?}");
        }
    }
}

#[derive(Debug, Clone)]
enum InfoMutation {
    /// Sets a `calldata_info` field (a JSON pointer) to a value.
    Set(&'static str, Value),
    /// Replaces the params text.
    Params(String),
}

fn info_mutation() -> impl Strategy<Value = InfoMutation> {
    let words = prop_oneof![
        Just("transfer".to_owned()),
        Just("approve ".to_owned()),
        Just("Approve".to_owned()),
        "[a-zA-Z]{1,12}"
    ];
    prop_oneof![
        words
            .clone()
            .prop_map(|w| InfoMutation::Set("/method/name", json!(w))),
        prop_oneof![
            Just("transfer(address,uint256)".to_owned()),
            Just("approve(address,uint128)".to_owned()),
            "[a-z]{1,8}\\(address,uint256\\)"
        ]
        .prop_map(|s| InfoMutation::Set("/method/sig", json!(s))),
        any::<[u8; 4]>()
            .prop_filter("another selector", |s| *s != APPROVE)
            .prop_map(|s| InfoMutation::Set("/method/selector", json!(format!("0x{}", hex::encode(s))))),
        any::<[u8; 20]>()
            .prop_map(|a| InfoMutation::Set("/address", json!(format!("0x{}", hex::encode(a))))),
        (any::<[u8; 20]>(), 0u64..u64::MAX).prop_map(|(s, n)| InfoMutation::Params(format!(
            r#"[["spender","address","0x{}"],["amount","uint256","{n}"]]"#,
            hex::encode(s)
        ))),
        (0u64..u64::MAX).prop_map(|n| InfoMutation::Params(format!(
            r#"[["spender","address","0x000000000022D473030F116dDEE9F6B43aC78BA3"],["amount","uint256","{n}"]]"#
        ))),
        words.prop_map(|w| InfoMutation::Params(format!(
            r#"[["{w}","address","0x000000000022D473030F116dDEE9F6B43aC78BA3"],["amount","uint256","25000000000"]]"#
        ))),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1500))]

    #[test]
    fn calldata_info_that_disagrees_never_approves(m in info_mutation()) {
        let (d, mut e) = parts();
        let info = &mut e["transaction"]["destination"]["calldata_info"];
        let before = info.clone();
        match &m {
            InfoMutation::Set(ptr, v) => *info.pointer_mut(ptr).unwrap() = v.clone(),
            InfoMutation::Params(p) => info["params"] = json!(p),
        }
        // What the signed call is, as calldata_info may truthfully say it.
        let truthful = |i: &Value| {
            let params: Value = serde_json::from_str(i["params"].as_str().unwrap()).unwrap_or(Value::Null);
            i["method"]["name"] == "approve"
                && i["method"]["sig"] == "approve(address,uint256)"
                && i["method"]["selector"].as_str().is_some_and(|s| s.eq_ignore_ascii_case("0x095ea7b3"))
                && i["address"].as_str().is_some_and(|a| a.eq_ignore_ascii_case("0xdac17f958d2ee523a2206206994597c13d831ec7"))
                && params[0][0] == "spender"
                && params[0][2].as_str().is_some_and(|a| a.eq_ignore_ascii_case("0x000000000022d473030f116ddee9f6b43ac78ba3"))
                && params[1][0] == "amount"
                && params[1][2] == "25000000000"
        };
        prop_assert!(truthful(&before));
        let now_truthful = truthful(info);
        let a = decide(&d, &e);
        if now_truthful {
            prop_assert!(a.is_approval(), "a truthful {m:?} was rejected: {a:?}");
        } else {
            prop_assert!(!a.is_approval(), "approved with {m:?}: {a:?}");
        }
    }
}

#[test]
fn the_base_and_its_re_signed_copy_approve() {
    let (d, e) = parts();
    assert!(decide(&d, &e).is_approval());
    let tx = &base().1;
    assert!(decide_signed(&tx.input, tx.value).is_approval());
}
