//! Random, truncated and bit-flipped raw transactions never crash the
//! pipeline and never approve; and no mutation of an approving request that
//! changes what is signed, or what it is bound to (chain, token, fee, kind,
//! path, key, source, repeated keys), approves. Runs the shipped policy
//! library through the same `steps::decide` the server uses.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::sync::OnceLock;

use proptest::prelude::*;
use serde_json::{Value, json};
use tss_gate::decide::steps;
use tss_gate::input::{TokenFacts, parse_callback_request};
use tss_gate::policy::{PolicyOptions, PolicySet};
use tss_gate::protocol::CallbackRequest;

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

/// The approving fixture and its real raw transaction bytes.
fn base() -> &'static (CallbackRequest, Vec<u8>) {
    static B: OnceLock<(CallbackRequest, Vec<u8>)> = OnceLock::new();
    B.get_or_init(|| {
        let p =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/keysign_eth_approve.json");
        let req = tss_gate::fixture::load_request(&p).unwrap();
        let extra: Value = serde_json::from_str(&req.extra_info).unwrap();
        let raw = extra["transaction"]["raw_tx_info"]["unsigned_raw_tx"]
            .as_str()
            .unwrap();
        let bytes = hex::decode(raw.trim_start_matches("0x")).unwrap();
        (req, bytes)
    })
}

fn decide_with_raw(raw_hex: &str) -> tss_gate::protocol::CallbackResponse {
    let (req, _) = base();
    let (detail, mut extra) = parts(req);
    extra["transaction"]["raw_tx_info"]["unsigned_raw_tx"] = Value::String(raw_hex.to_owned());
    decide_parts(req, &detail, &extra)
}

#[test]
fn the_untampered_fixture_approves() {
    let (_, bytes) = base();
    let a = decide_with_raw(&hex::encode(bytes));
    assert!(a.is_approval(), "{a:?}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1500))]

    #[test]
    fn random_raw_bytes_never_approve(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let a = decide_with_raw(&hex::encode(&bytes));
        prop_assert!(!a.is_approval() || bytes == base().1, "approved random bytes: {a:?}");
    }

    #[test]
    fn truncated_raw_tx_never_approves(cut in 0usize..10_000) {
        let (_, bytes) = base();
        let n = cut % bytes.len();
        let a = decide_with_raw(&hex::encode(&bytes[..n]));
        prop_assert!(!a.is_approval(), "approved a {n}-byte prefix: {a:?}");
    }

    #[test]
    fn bit_flipped_raw_tx_never_approves(pos in 0usize..10_000, bit in 0u8..8) {
        let (_, bytes) = base();
        let mut b = bytes.clone();
        let i = pos % b.len();
        b[i] ^= 1 << bit;
        let a = decide_with_raw(&hex::encode(&b));
        prop_assert!(!a.is_approval(), "approved with byte {i} bit {bit} flipped: {a:?}");
    }

    #[test]
    fn non_hex_text_never_approves(s in "\\PC{0,80}") {
        let a = decide_with_raw(&s);
        prop_assert!(!a.is_approval(), "approved `{s}`: {a:?}");
    }
}

// ---------------------------------------------------------------------------
// Issue 13: mutations of approving requests that change what is signed, or
// what it is bound to, never approve. Each case starts from a fixture that
// APPROVES and changes one bound fact; where the bytes change, msg_hash_list
// is recomputed so that the hash check alone cannot be what rejects.

use alloy_consensus::{EthereumTypedTransaction, SignableTransaction, TxEip4844, TxLegacy};
use alloy_primitives::{Address, TxKind, U256, keccak256};

/// Every fixture that must APPROVE on a chain with a raw transaction.
fn approving() -> &'static Vec<(String, CallbackRequest)> {
    static A: OnceLock<Vec<(String, CallbackRequest)>> = OnceLock::new();
    A.get_or_init(|| {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let mut out = Vec::new();
        for p in tss_gate::fixture::discover(&dir).unwrap() {
            let f = tss_gate::fixture::load_fixture(&p).unwrap();
            if f.expect.action != tss_gate::protocol::Action::Approve || f.request.request_type != 2
            {
                continue;
            }
            out.push((
                p.file_stem().unwrap().to_string_lossy().into_owned(),
                f.request,
            ));
        }
        assert!(
            out.len() >= 6,
            "too few approving KEYSIGN fixtures: {}",
            out.len()
        );
        out
    })
}

fn decide_parts(
    req: &CallbackRequest,
    detail: &Value,
    extra: &Value,
) -> tss_gate::protocol::CallbackResponse {
    let mut r = req.clone();
    r.request_detail = detail.to_string();
    r.extra_info = extra.to_string();
    let parsed = parse_callback_request(&r, 64).unwrap();
    let facts = TokenFacts {
        key_name: "node-a".into(),
        ..Default::default()
    };
    steps::decide(policy(), &parsed, &facts, 1_764_000_000_000).response
}

fn parts(req: &CallbackRequest) -> (Value, Value) {
    (
        serde_json::from_str(&req.request_detail).unwrap(),
        serde_json::from_str(&req.extra_info).unwrap(),
    )
}

#[test]
fn every_approving_keysign_fixture_approves_as_the_base_of_the_mutations() {
    for (name, req) in approving() {
        let (d, e) = parts(req);
        let a = decide_parts(req, &d, &e);
        assert!(a.is_approval(), "{name}: {a:?}");
    }
}

/// One change to the description or the key fields of an approving request.
#[derive(Debug, Clone)]
enum DescMutation {
    ChainId(String),
    TokenId(String),
    SourceAddress(String),
    PathIndex(usize, u32),
    PathCoinType(u32),
    ExtraPath,
    RootKey,
    DropRawTx(u8),
}

fn desc_mutation() -> impl Strategy<Value = DescMutation> {
    let chains = prop::sample::select(vec![
        "ETH",
        "SETH",
        "BSC_BNB",
        "TBSC_BNB",
        "MATIC",
        "ARBITRUM_ETH",
        "BASE_ETH",
        "OPT_ETH",
        "AVAXC",
        "TRON",
        "SOL",
        "BTC",
        "XTN",
        "DOGE",
        "eth",
        "",
    ]);
    let tokens = prop::sample::select(vec![
        "ETH",
        "ETH_USDT",
        "ETH_USDC",
        "ETH_PEPE",
        "TRON",
        "TRON_USDT",
        "SOL",
        "SOL_USDC",
        "BTC",
        "BSC_BNB",
        "MATIC",
        "XTN",
        "ETH_FAKE",
        "eth_usdt",
    ]);
    prop_oneof![
        chains.prop_map(|c| DescMutation::ChainId(c.to_owned())),
        tokens.prop_map(|t| DescMutation::TokenId(t.to_owned())),
        "[0-9a-zA-Z]{20,44}".prop_map(DescMutation::SourceAddress),
        (2usize..5, 1u32..1000).prop_map(|(i, v)| DescMutation::PathIndex(i, v)),
        (0u32..1000).prop_map(DescMutation::PathCoinType),
        Just(DescMutation::ExtraPath),
        Just(DescMutation::RootKey),
        (0u8..4).prop_map(DescMutation::DropRawTx),
    ]
}

/// BIP-32 test vector 2's master key: a valid key that is not the wallet's.
const OTHER_ROOT: &str = "xpub661MyMwAqRbcFW31YEwpkMuc5THy2PSt5bDMsktWQcFF8syAmRUapSCGu8ED9W6oDMSgv6Zz8idoc4a6mr8BDzTJY47LJhkJ8UB7WEGuduB";

/// Applies `m`; returns false when the mutation is the identity for this
/// request (then approving is right).
fn apply_desc(m: &DescMutation, detail: &mut Value, extra: &mut Value) -> bool {
    let tx = &mut extra["transaction"];
    match m {
        DescMutation::ChainId(c) => {
            if tx["chain_id"] == *c {
                return false;
            }
            tx["chain_id"] = json!(c);
        }
        DescMutation::TokenId(t) => {
            if tx["token_id"] == *t {
                return false;
            }
            tx["token_id"] = json!(t);
        }
        DescMutation::SourceAddress(a) => {
            let old = tx["source"]["address"].as_str().unwrap_or_default();
            if old.eq_ignore_ascii_case(a) {
                return false;
            }
            tx["source"]["address"] = json!(a);
        }
        // Solana's Ed25519 keys are not BIP-32 derivable, so which account
        // a path denotes cannot be proven (SECURITY.md, "out of reach"): the
        // fee payer and authorities bind the source, and a signature by
        // another path's key does not verify for them.
        DescMutation::PathIndex(..) if tx["chain_id"] == "SOL" => return false,
        DescMutation::PathIndex(level, v) => {
            let p = detail["bip32_path_list"][0].as_str().unwrap().to_owned();
            let mut parts: Vec<String> = p.split('/').map(str::to_owned).collect();
            let Some(slot) = parts.get_mut(*level + 1) else {
                return false;
            };
            if *slot == v.to_string() {
                return false;
            }
            *slot = v.to_string();
            detail["bip32_path_list"][0] = json!(parts.join("/"));
        }
        DescMutation::PathCoinType(c) => {
            let p = detail["bip32_path_list"][0].as_str().unwrap().to_owned();
            let mut parts: Vec<String> = p.split('/').map(str::to_owned).collect();
            if parts[2] == c.to_string() {
                return false;
            }
            parts[2] = c.to_string();
            detail["bip32_path_list"][0] = json!(parts.join("/"));
        }
        DescMutation::ExtraPath => {
            let first = detail["bip32_path_list"][0].clone();
            detail["bip32_path_list"]
                .as_array_mut()
                .unwrap()
                .push(first);
        }
        DescMutation::RootKey => detail["root_pub_key"] = json!(OTHER_ROOT),
        DescMutation::DropRawTx(how) => {
            let info = &mut tx["raw_tx_info"];
            match how {
                0 => info["unsigned_raw_tx"] = Value::Null,
                1 => info["unsigned_raw_tx"] = json!(""),
                2 => {
                    info.as_object_mut().unwrap().remove("unsigned_raw_tx");
                }
                _ => {
                    tx.as_object_mut().unwrap().remove("raw_tx_info");
                }
            }
        }
    }
    true
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn description_and_key_mutations_never_approve(pick in any::<prop::sample::Index>(), m in desc_mutation()) {
        let all = approving();
        let (name, req) = &all[pick.index(all.len())];
        let (mut d, mut e) = parts(req);
        if apply_desc(&m, &mut d, &mut e) {
            let a = decide_parts(req, &d, &e);
            prop_assert!(!a.is_approval(), "{name} approved after {m:?}: {a:?}");
        }
    }
}

/// The approving ETH transfer, decoded, to re-encode with one field changed.
fn base_eth() -> (CallbackRequest, alloy_consensus::TxEip1559) {
    let (req, bytes) = base();
    let mut buf = bytes.as_slice();
    let EthereumTypedTransaction::Eip1559(tx) =
        EthereumTypedTransaction::<TxEip4844>::decode_unsigned(&mut buf).unwrap()
    else {
        panic!("keysign_eth_approve is not an EIP-1559 transaction");
    };
    (req.clone(), tx)
}

/// Decides the ETH fixture with `unsigned` as its raw tx and its own
/// signing hash in msg_hash_list.
fn decide_signed_bytes(unsigned: &[u8]) -> tss_gate::protocol::CallbackResponse {
    let (req, _) = base();
    let (mut d, mut e) = parts(req);
    e["transaction"]["raw_tx_info"]["unsigned_raw_tx"] = json!(hex::encode(unsigned));
    d["msg_hash_list"] = json!([hex::encode(keccak256(unsigned))]);
    decide_parts(req, &d, &e)
}

#[derive(Debug, Clone)]
enum ByteMutation {
    ChainId(u64),
    Legacy {
        chain_id: Option<u64>,
    },
    Fee {
        gas_limit: u64,
        max_fee_per_gas: u128,
    },
    To([u8; 20]),
    Value(u128),
}

fn byte_mutation() -> impl Strategy<Value = ByteMutation> {
    prop_oneof![
        prop_oneof![
            Just(0u64),
            Just(56),
            Just(137),
            Just(11_155_111),
            Just(42_161),
            2u64..u64::MAX
        ]
        .prop_map(ByteMutation::ChainId),
        prop_oneof![Just(None), Just(Some(0u64)), Just(Some(56)), Just(Some(1))]
            .prop_map(|chain_id| ByteMutation::Legacy { chain_id }),
        (21_000u64..30_000_000, 1u128..10_000_000_000_000).prop_map(
            |(gas_limit, max_fee_per_gas)| ByteMutation::Fee {
                gas_limit,
                max_fee_per_gas
            }
        ),
        any::<[u8; 20]>().prop_map(ByteMutation::To),
        any::<u128>().prop_map(ByteMutation::Value),
    ]
}

/// The cap of the shipped data for ETH: 0.05 ETH.
const ETH_FEE_CAP_WEI: u128 = 50_000_000_000_000_000;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn re_signed_byte_mutations_never_approve(m in byte_mutation()) {
        let (_, base_tx) = base_eth();
        let mut tx = base_tx.clone();
        let bytes = match &m {
            ByteMutation::ChainId(c) => {
                tx.chain_id = *c;
                tx.encoded_for_signing()
            }
            ByteMutation::Legacy { chain_id } => TxLegacy {
                chain_id: *chain_id,
                nonce: tx.nonce,
                gas_price: tx.max_fee_per_gas,
                gas_limit: tx.gas_limit,
                to: tx.to,
                value: tx.value,
                input: tx.input.clone(),
            }
            .encoded_for_signing(),
            ByteMutation::Fee { gas_limit, max_fee_per_gas } => {
                tx.gas_limit = *gas_limit;
                tx.max_fee_per_gas = *max_fee_per_gas;
                tx.max_priority_fee_per_gas = tx.max_priority_fee_per_gas.min(*max_fee_per_gas);
                tx.encoded_for_signing()
            }
            ByteMutation::To(a) => {
                tx.to = TxKind::Call(Address::from(*a));
                tx.encoded_for_signing()
            }
            ByteMutation::Value(v) => {
                tx.value = U256::from(*v);
                tx.encoded_for_signing()
            }
        };
        // What may legitimately approve: the same transaction, a legacy
        // EIP-155 copy on chain 1, or a fee change that stays under the cap.
        let harmless = match &m {
            ByteMutation::ChainId(c) => *c == base_tx.chain_id,
            ByteMutation::Legacy { chain_id } => *chain_id == Some(base_tx.chain_id),
            ByteMutation::Fee { gas_limit, max_fee_per_gas } => {
                u128::from(*gas_limit).saturating_mul(*max_fee_per_gas) <= ETH_FEE_CAP_WEI
            }
            ByteMutation::To(a) => Address::from(*a) == base_tx.to.to().copied().unwrap_or_default(),
            ByteMutation::Value(v) => U256::from(*v) == base_tx.value,
        };
        let a = decide_signed_bytes(&bytes);
        if harmless {
            prop_assert!(a.is_approval(), "a harmless {m:?} was rejected: {a:?}");
        } else {
            prop_assert!(!a.is_approval(), "approved after {m:?}: {a:?}");
        }
    }
}

/// JSON text of `v` with the object at `target` (a path of keys and array
/// indexes) carrying a second `"<key>": <dup>` before its own pairs: the
/// shape a node parser that keeps the first occurrence would read
/// differently from one that keeps the last.
fn with_duplicate(
    v: &Value,
    target: &[String],
    key: &str,
    dup: &Value,
    here: &mut Vec<String>,
) -> String {
    match v {
        Value::Object(m) => {
            let mut parts = Vec::new();
            if here.as_slice() == target {
                parts.push(format!("{}:{}", json!(key), dup));
            }
            for (k, x) in m {
                here.push(k.clone());
                parts.push(format!(
                    "{}:{}",
                    json!(k),
                    with_duplicate(x, target, key, dup, here)
                ));
                here.pop();
            }
            format!("{{{}}}", parts.join(","))
        }
        Value::Array(a) => {
            let mut parts = Vec::new();
            for (i, x) in a.iter().enumerate() {
                here.push(i.to_string());
                parts.push(with_duplicate(x, target, key, dup, here));
                here.pop();
            }
            format!("[{}]", parts.join(","))
        }
        other => other.to_string(),
    }
}

/// Every (object path, key) of a document.
fn object_keys(v: &Value, here: &mut Vec<String>, out: &mut Vec<(Vec<String>, String)>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                out.push((here.clone(), k.clone()));
                here.push(k.clone());
                object_keys(x, here, out);
                here.pop();
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                here.push(i.to_string());
                object_keys(x, here, out);
                here.pop();
            }
        }
        _ => {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1500))]

    /// A repeated key anywhere in request_detail or extra_info of an
    /// approving request is refused before any policy sees it.
    #[test]
    fn duplicate_keys_never_approve(
        pick in any::<prop::sample::Index>(),
        which in any::<prop::sample::Index>(),
        in_detail in any::<bool>(),
        dup in prop_oneof![Just(json!("attacker")), Just(json!(0)), Just(json!(null)), Just(json!({}))],
    ) {
        let all = approving();
        let (name, req) = &all[pick.index(all.len())];
        let (d, e) = parts(req);
        let doc = if in_detail { &d } else { &e };
        let mut keys = Vec::new();
        object_keys(doc, &mut Vec::new(), &mut keys);
        let (path, key) = &keys[which.index(keys.len())];
        let text = with_duplicate(doc, path, key, &dup, &mut Vec::new());
        let mut r = req.clone();
        if in_detail {
            r.request_detail = text;
        } else {
            r.extra_info = text;
        }
        let err = parse_callback_request(&r, 64).expect_err("a repeated key must not parse");
        prop_assert!(err.to_string().contains("duplicate key"), "{name}: {err}");
        let bytes = serde_json::to_vec(&r).unwrap();
        let err = tss_gate::input::parse_request(&bytes, 64).expect_err("nor through the wire path");
        prop_assert!(err.to_string().contains("duplicate key"), "{name}: {err}");
    }
}
