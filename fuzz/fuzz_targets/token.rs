//! The JWT envelope: arbitrary text never verifies and never panics.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tss_gate::token::Verifier;

fn verifier() -> &'static Verifier {
    static V: OnceLock<Verifier> = OnceLock::new();
    V.get_or_init(|| {
        let key = tss_gate::keys::generate(2048).expect("keygen");
        let vk = tss_gate::keys::verifying_key_from(
            "fuzz-node",
            &key.to_public_key(),
            std::path::Path::new("fuzz"),
        );
        Verifier::new(vec![vk], 30)
    })
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // No input the fuzzer can produce is signed by a key generated here.
    assert!(verifier().verify(&text).is_err());
});
