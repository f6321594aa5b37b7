//! Issue 7: random, truncated and bit-flipped raw transactions never crash the
//! pipeline and never approve. Runs the shipped policy library through the
//! same `pipeline::decide` the server uses.

use std::path::Path;
use std::sync::OnceLock;

use proptest::prelude::*;
use serde_json::Value;
use tss_gate::input::{TokenFacts, parse_callback_request};
use tss_gate::pipeline;
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
    let mut extra: Value = serde_json::from_str(&req.extra_info).unwrap();
    extra["transaction"]["raw_tx_info"]["unsigned_raw_tx"] = Value::String(raw_hex.to_owned());
    let mut r = req.clone();
    r.extra_info = extra.to_string();
    let parsed = parse_callback_request(&r, 64).unwrap();
    let facts = TokenFacts {
        key_name: "node-a".into(),
        ..Default::default()
    };
    pipeline::decide(policy(), &parsed, &facts, 1_764_000_000_000).response
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
