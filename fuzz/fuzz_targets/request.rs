//! Request parsing and input building on arbitrary bytes: no panic, and a
//! parsed request always yields a well-formed input document.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tss_gate::input::{self, TokenFacts};

fuzz_target!(|data: &[u8]| {
    let Ok(p) = input::parse_request(data, input::DEFAULT_MAX_DEPTH) else {
        return;
    };
    assert!(p.detail.is_object() && p.extra.is_object());
    let facts = TokenFacts {
        key_name: "fuzz-node".into(),
        ..TokenFacts::default()
    };
    let derived = tss_gate::derive::derive(&p.detail, &p.extra, &Default::default());
    let doc = input::build_input(&p, &facts, 1_764_000_000_000, derived);
    assert_eq!(
        doc["request_id"],
        serde_json::Value::String(p.request_id.clone())
    );
});
