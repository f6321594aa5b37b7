//! Request parsing, transaction derivation and input building on arbitrary
//! bytes: no panic, and a parsed request always yields a well-formed input
//! document. Derivation knows the chains of the shipped data (EVM, TRON,
//! Solana), so a raw transaction in the bytes reaches its decoder.
#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tss_gate::derive::DeriveConfig;
use tss_gate::input::{self, TokenFacts};
use tss_gate::policy::{PolicyOptions, PolicySet};

/// The chains the shipped data names (`data.integrity`), read as the server
/// reads them.
fn chains() -> &'static DeriveConfig {
    static C: OnceLock<DeriveConfig> = OnceLock::new();
    C.get_or_init(|| {
        PolicySet::load(&PolicyOptions {
            dir: Path::new(env!("CARGO_MANIFEST_DIR")).join("../rego"),
            entrypoint: tss_gate::policy::DEFAULT_ENTRYPOINT.into(),
            data_files: Vec::new(),
            eval_timeout: std::time::Duration::from_secs(1),
        })
        .expect("shipped policy loads")
        .derive
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
