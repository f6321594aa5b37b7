//! Request parsing, transaction derivation and input building on arbitrary
//! bytes: no panic, and a parsed request always yields a well-formed input
//! document. Derivation knows the shipped chains (EVM, TRON, Solana), so a
//! raw transaction in the bytes reaches its decoder.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tss_gate::derive::DeriveConfig;
use tss_gate::input::{self, TokenFacts};

fn chains() -> &'static DeriveConfig {
    static C: OnceLock<DeriveConfig> = OnceLock::new();
    C.get_or_init(|| {
        let mut c = DeriveConfig::default();
        for (chain, family, decimals) in [
            ("ETH", "evm", 18),
            ("ETH_USDT", "evm", 6),
            ("TRON", "tron", 6),
            ("TRON_USDT", "tron", 6),
            ("SOL", "solana", 9),
            ("SOL_USDC", "solana", 6),
        ] {
            if !chain.contains('_') {
                c.chain_families.insert(chain.into(), family.into());
            }
            c.token_decimals.insert(chain.into(), decimals);
        }
        c
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(p) = input::parse_request(data, input::DEFAULT_MAX_DEPTH) else {
        return;
    };
    assert!(p.detail.is_object() && p.extra.is_object());
    let facts = TokenFacts {
        key_name: "fuzz-node".into(),
        ..TokenFacts::default()
    };
    let derived = tss_gate::derive::derive(&p.detail, &p.extra, chains());
    let doc = input::build_input(&p, &facts, 1_764_000_000_000, derived);
    assert_eq!(
        doc["request_id"],
        serde_json::Value::String(p.request_id.clone())
    );
});
