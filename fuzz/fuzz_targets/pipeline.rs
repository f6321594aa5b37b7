//! The server's decider with the shipped policy. The first byte picks the
//! mode: 0 treats the rest as request JSON and signs it with the configured
//! node key (so the policy sees arbitrary, validly signed requests); anything
//! else posts the rest as the raw token. Properties: no panic; nothing
//! unsigned is approved; every answer signs and verifies.
#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tss_gate::keys::{SigningKey, VerifyingKey};
use tss_gate::decide::{Decider, Gate};
use tss_gate::policy::{PolicyOptions, PolicySet};
use tss_gate::protocol::{CallbackResponse, Status};

struct World {
    decider: Decider,
    node: SigningKey,
    server_public: VerifyingKey,
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let here = Path::new("fuzz");
        let server = tss_gate::keys::generate(2048).expect("keygen");
        let node = tss_gate::keys::generate(2048).expect("keygen");
        let gate = Gate {
            verifier: tss_gate::token::Verifier::new(
                vec![tss_gate::keys::verifying_key_from(
                    "fuzz-node",
                    &node.to_public_key(),
                    here,
                )],
                30,
            ),
            signer: tss_gate::keys::signing_key_from(&server, here).expect("signing key"),
            service_name: "tss-gate-fuzz".into(),
            token_ttl_secs: 120,
            max_json_depth: tss_gate::input::DEFAULT_MAX_DEPTH,
        };
        let policy = PolicySet::load(&PolicyOptions {
            dir: Path::new(env!("CARGO_MANIFEST_DIR")).join("../rego"),
            entrypoint: tss_gate::policy::DEFAULT_ENTRYPOINT.into(),
            data_files: Vec::new(),
            eval_timeout: std::time::Duration::from_secs(1),
        })
        .expect("shipped policy loads");
        let mut decider = Decider::new(
            gate,
            policy,
            std::sync::Arc::new(tss_gate::metrics::Metrics::new()),
        );
        // Every input decided afresh: a remembered id would turn the next
        // input under it into a replay mismatch.
        decider.retry = tss_gate::decide::retry::RetryCache::new(false, std::time::Duration::ZERO, 0);
        World {
            decider,
            node: tss_gate::keys::signing_key_from(&node, here).expect("signing key"),
            server_public: tss_gate::keys::verifying_key_from(
                "server",
                &server.to_public_key(),
                here,
            ),
        }
    })
}

fn assert_signed(w: &World, resp: &CallbackResponse) {
    let token = w.decider.sign(resp).expect("sign");
    let bytes = tss_gate::token::verify_answer(&token, &w.server_public).expect("verifies");
    let back: CallbackResponse = serde_json::from_slice(&bytes).expect("answer JSON");
    assert_eq!(&back, resp);
}

fuzz_target!(|data: &[u8]| {
    let w = world();
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode == 0 {
        let token = tss_gate::token::sign_package(rest, &w.node, "tss-node", 120).expect("sign");
        let p = w.decider.decide_blocking(&token, tss_gate::clock::now_ms());
        assert_ne!(p.response.status, Status::InvalidToken);
        if p.response.is_approval() {
            assert!(p.decision.as_ref().is_some_and(|d| d.approves()));
        }
        assert_signed(w, &p.response);
    } else {
        let token = String::from_utf8_lossy(rest);
        let p = w.decider.decide_blocking(&token, tss_gate::clock::now_ms());
        assert!(!p.response.is_approval());
        assert_eq!(p.response.status, Status::InvalidToken);
        assert_signed(w, &p.response);
    }
});
