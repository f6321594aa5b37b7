//! Issue 6 acceptance, fuzzing in `cargo test`: property tests over the
//! envelope, request parsing, input building and the whole pipeline with the
//! shipped policy. Properties: nothing panics; nothing that is not validly
//! signed by a configured TSS Node key is ever approved; every outcome is a
//! well-formed answer that signs and verifies. The same entry points have
//! cargo-fuzz targets in `fuzz/`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::{Arc, OnceLock};

use common::*;
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::{Map, Value};
use tss_gate::decide::Decider;
use tss_gate::decide::retry::RetryCache;
use tss_gate::decide::steps::{self, Gate};
use tss_gate::input::{self, TokenFacts};
use tss_gate::metrics::Metrics;
use tss_gate::policy::{PolicyOptions, PolicySet};
use tss_gate::protocol::{CallbackRequest, CallbackResponse, Status};
use tss_gate::token::Verifier;

fn gate() -> &'static Gate {
    static G: OnceLock<Gate> = OnceLock::new();
    G.get_or_init(|| {
        let k = test_keys();
        Gate {
            verifier: Verifier::new(
                vec![verifying("node-a", &k.node), verifying("node-b", &k.node_b)],
                30,
            ),
            signer: signing(&k.server),
            service_name: "tss-gate-props".into(),
            token_ttl_secs: 120,
            max_json_depth: input::DEFAULT_MAX_DEPTH,
        }
    })
}

fn policy() -> &'static PolicySet {
    static P: OnceLock<PolicySet> = OnceLock::new();
    P.get_or_init(|| {
        PolicySet::load(&PolicyOptions {
            dir: repo().join("rego"),
            entrypoint: tss_gate::policy::DEFAULT_ENTRYPOINT.into(),
            data_files: Vec::new(),
            eval_timeout: std::time::Duration::from_secs(10),
        })
        .expect("shipped policy loads")
    })
}

/// The server's decider over the same keys and policy; its retry cache
/// off, so each case is decided afresh.
fn decider() -> &'static Decider {
    static D: OnceLock<Decider> = OnceLock::new();
    D.get_or_init(|| {
        let set = PolicySet::load(&PolicyOptions {
            dir: repo().join("rego"),
            entrypoint: tss_gate::policy::DEFAULT_ENTRYPOINT.into(),
            data_files: Vec::new(),
            eval_timeout: std::time::Duration::from_secs(10),
        })
        .expect("shipped policy loads");
        let mut d = Decider::new(gate().clone(), set, Arc::new(Metrics::new()));
        d.retry = RetryCache::new(false, std::time::Duration::ZERO, 0);
        d
    })
}

fn fixtures() -> &'static Vec<CallbackRequest> {
    static F: OnceLock<Vec<CallbackRequest>> = OnceLock::new();
    F.get_or_init(|| {
        fixture_paths()
            .iter()
            .map(|p| tss_gate::fixture::load_request(p).unwrap())
            .collect()
    })
}

/// Valid tokens of a few fixtures, signed by node-a (minted once).
fn valid_tokens() -> &'static Vec<String> {
    static T: OnceLock<Vec<String>> = OnceLock::new();
    T.get_or_init(|| {
        fixtures()
            .iter()
            .take(6)
            .map(|r| mint(r, &test_keys().node))
            .collect()
    })
}

/// Signs `resp` as the server does and checks that it verifies back to
/// exactly `resp` with the server's public key: a well-formed signed answer.
/// RSA signing dominates the runtime, so callers sign a sample (see
/// [`sampled`]) plus every approval.
fn assert_signs_and_verifies(resp: &CallbackResponse) {
    let token = steps::sign(gate(), resp).expect("sign");
    let back = verify_answer(&token);
    assert_eq!(&back, resp);
}

/// True for one case in `every`, deterministically.
fn sampled(every: usize) -> bool {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        .is_multiple_of(every)
}

// --- strategies --------------------------------------------------------------

/// Object keys: the field names the derivers and policies look at, and noise.
fn arb_key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "transaction", "raw_tx_info", "unsigned_raw_tx", "destination", "destination_type",
            "account_output", "utxo_outputs", "address", "amount", "chain_id", "token_id",
            "wallet", "wallet_id", "source", "msg_hash_list", "threshold", "node_ids",
            "used_node_ids", "new_node_ids", "new_threshold", "root_pub_key", "calldata",
            "value", "fee", "details", "request_id", "allow", "reasons",
        ])
        .prop_map(str::to_owned),
        1 => "[a-z_]{1,10}",
    ]
}

fn arb_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON numbers are finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,24}".prop_map(Value::String),
        // Decimal amounts, hex (hashes, calldata, raw transactions), chains.
        "-?[0-9]{1,40}(\\.[0-9]{0,30})?".prop_map(Value::String),
        "(0x)?[0-9a-fA-F]{0,300}".prop_map(Value::String),
        prop::sample::select(vec![
            "ETH",
            "BTC",
            "TRON",
            "SOL",
            "ETH_USDT",
            "Address",
            "EVM_Contract",
            ""
        ])
        .prop_map(|s| Value::String(s.to_owned())),
    ]
}

fn arb_json() -> impl Strategy<Value = Value> {
    arb_leaf().prop_recursive(5, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(arb_key(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Every JSON pointer in `v`, parents before children.
fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
    out.push(at.clone());
    match v {
        Value::Object(m) => {
            for (k, c) in m {
                let k = k.replace('~', "~0").replace('/', "~1");
                pointers(c, format!("{at}/{k}"), out);
            }
        }
        Value::Array(a) => {
            for (i, c) in a.iter().enumerate() {
                pointers(c, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

/// Replaces the value at a chosen place by `with` (or removes it when the
/// place is an object member and `with` is None).
fn mutate(v: &mut Value, place: &Index, with: Option<Value>) {
    let mut ps = Vec::new();
    pointers(v, String::new(), &mut ps);
    let p = place.get(&ps).clone();
    match with {
        Some(new) => {
            if let Some(slot) = v.pointer_mut(&p) {
                *slot = new;
            }
        }
        None => {
            let Some((parent, key)) = p.rsplit_once('/') else {
                return;
            };
            if let Some(Value::Object(m)) = v.pointer_mut(parent) {
                m.remove(&key.replace("~1", "/").replace("~0", "~"));
            }
        }
    }
}

fn embedded(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or(Value::Object(Map::new()))
}

/// Requests near the real ones: a fixture with some of its detail and extra
/// fields replaced or removed, and sometimes its type changed.
fn arb_near_request() -> impl Strategy<Value = CallbackRequest> {
    (
        any::<Index>(),
        prop::collection::vec(
            (any::<Index>(), prop::option::weighted(0.8, arb_json())),
            0..4,
        ),
        prop::collection::vec(
            (any::<Index>(), prop::option::weighted(0.8, arb_json())),
            0..4,
        ),
        prop::option::weighted(0.15, -2i64..8),
    )
        .prop_map(|(which, dm, em, ty)| {
            let mut r = which.get(fixtures()).clone();
            let (mut d, mut e) = (embedded(&r.request_detail), embedded(&r.extra_info));
            for (place, with) in dm {
                mutate(&mut d, &place, with);
            }
            for (place, with) in em {
                mutate(&mut e, &place, with);
            }
            r.request_detail = d.to_string();
            r.extra_info = e.to_string();
            if let Some(t) = ty {
                r.request_type = t;
            }
            r
        })
}

/// Requests of any shape the wire type allows.
fn arb_any_request() -> impl Strategy<Value = CallbackRequest> {
    (
        ".{0,40}",
        any::<i64>(),
        prop_oneof![arb_json().prop_map(|v| v.to_string()), ".{0,40}"],
        prop_oneof![arb_json().prop_map(|v| v.to_string()), ".{0,40}"],
    )
        .prop_map(
            |(request_id, request_type, request_detail, extra_info)| CallbackRequest {
                request_id,
                request_type,
                request_detail,
                extra_info,
            },
        )
}

#[derive(Debug, Clone)]
enum Mutation {
    Truncate(Index),
    FlipBit(Index, u8),
    Insert(Index, u8),
    Remove(Index, Index),
}

fn arb_mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<Index>().prop_map(Mutation::Truncate),
        (any::<Index>(), 0u8..8).prop_map(|(i, b)| Mutation::FlipBit(i, b)),
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Mutation::Remove(a, b)),
    ]
}

fn apply(token: &str, muts: &[Mutation]) -> String {
    let mut b = token.as_bytes().to_vec();
    for m in muts {
        if b.is_empty() {
            break;
        }
        match m {
            Mutation::Truncate(i) => b.truncate(i.index(b.len())),
            Mutation::FlipBit(i, bit) => {
                let at = i.index(b.len());
                b[at] ^= 1 << bit;
            }
            Mutation::Insert(i, byte) => b.insert(i.index(b.len() + 1), *byte),
            Mutation::Remove(i, j) => {
                let (x, y) = (i.index(b.len()), j.index(b.len()));
                b.drain(x.min(y)..x.max(y));
            }
        }
    }
    String::from_utf8_lossy(&b).into_owned()
}

/// Strings shaped like compact JWTs, and anything at all.
fn arb_token_text() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,200}",
        "[A-Za-z0-9_=-]{0,60}\\.[A-Za-z0-9_=-]{0,300}\\.[A-Za-z0-9_=-]{0,400}",
        // A real RS256 header with junk after it.
        "[A-Za-z0-9_-]{0,300}\\.[A-Za-z0-9_-]{0,400}"
            .prop_map(|rest| format!("eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.{rest}")),
    ]
}

// --- properties --------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    /// The envelope: arbitrary text never verifies, and never panics.
    #[test]
    fn arbitrary_text_never_verifies(t in arb_token_text()) {
        prop_assert!(gate().verifier.verify(&t).is_err());
    }

    /// The envelope: a truncated, bit-flipped, extended or cut valid token
    /// verifies only if the edits cancelled out.
    #[test]
    fn damaged_tokens_never_verify(
        which in any::<Index>(),
        muts in prop::collection::vec(arb_mutation(), 1..4),
    ) {
        let orig = which.get(valid_tokens());
        let damaged = apply(orig, &muts);
        if damaged.trim() != orig.as_str() {
            prop_assert!(gate().verifier.verify(&damaged).is_err(), "{damaged}");
        }
    }

    /// Request parsing on arbitrary bytes: no panic, and what parses has
    /// object documents.
    #[test]
    fn arbitrary_bytes_parse_or_fail_cleanly(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(p) = input::parse_request(&bytes, input::DEFAULT_MAX_DEPTH) {
            prop_assert!(p.detail.is_object() && p.extra.is_object());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    /// Request parsing and input building on arbitrary JSON (top level and
    /// embedded): no panic; a parsed request yields a well-formed input.
    #[test]
    fn arbitrary_json_builds_a_well_formed_input(
        top in arb_json(),
        req in prop_oneof![arb_any_request(), arb_near_request()],
    ) {
        let _ = input::parse_request(top.to_string().as_bytes(), input::DEFAULT_MAX_DEPTH);
        let bytes = serde_json::to_vec(&req).unwrap();
        if let Ok(p) = input::parse_request(&bytes, input::DEFAULT_MAX_DEPTH) {
            let facts = TokenFacts { key_name: "node-a".into(), ..TokenFacts::default() };
            let doc = steps::build_input(policy(), &p, &facts, 1_764_000_000_000);
            prop_assert_eq!(&doc["request_id"], &Value::String(req.request_id.clone()));
            prop_assert_eq!(&doc["request_type_code"], &Value::from(req.request_type));
            prop_assert!(doc["detail"].is_object() && doc["extra"].is_object());
            prop_assert_eq!(&doc["verified_by"], "node-a");
        }
    }

    /// The pipeline on anything that is not validly signed: a signed status
    /// 20, never an approval.
    #[test]
    fn the_pipeline_never_approves_an_unsigned_request(
        t in prop_oneof![
            arb_token_text(),
            (any::<Index>(), prop::collection::vec(arb_mutation(), 1..4))
                .prop_map(|(w, m)| apply(w.get::<String>(valid_tokens()), &m)),
        ],
    ) {
        let p = decider().decide_blocking(&t, tss_gate::clock::now_ms());
        if valid_tokens().iter().any(|v| v == t.trim()) {
            return Ok(());
        }
        prop_assert!(!p.response.is_approval(), "{t}");
        prop_assert_eq!(p.response.status, Status::InvalidToken);
        prop_assert!(p.failure.is_some() && p.decision.is_none());
        prop_assert!(!p.response.error.is_empty());
        if sampled(8) {
            assert_signs_and_verifies(&p.response);
        }
    }
}

proptest! {
    // Each case signs a request (an RSA private-key operation) and
    // evaluates the policy.
    #![proptest_config(ProptestConfig::with_cases(3000))]

    /// The pipeline on validly signed requests of any shape: a well-formed
    /// signed answer echoing the request_id; status 0, 10 or 30 (never 20);
    /// an approval only from a policy decision that approves, never for an
    /// unknown request type.
    #[test]
    fn the_pipeline_answers_every_signed_request_well_formed(
        req in prop_oneof![1 => arb_any_request(), 3 => arb_near_request()],
    ) {
        let token = mint(&req, &test_keys().node);
        let p = decider().decide_blocking(&token, tss_gate::clock::now_ms());
        let r = &p.response;
        prop_assert_ne!(r.status, Status::InvalidToken, "{:?}", r);
        if r.status == Status::Ok {
            prop_assert_eq!(&r.request_id, &req.request_id);
            prop_assert!(r.action.is_some());
        } else {
            prop_assert!(!r.error.is_empty());
        }
        if r.is_approval() {
            prop_assert!(r.error.is_empty());
            prop_assert!(![4, 6, 7, -1, -2].contains(&req.request_type) && (0..=5).contains(&req.request_type));
            let d = p.decision.as_ref();
            prop_assert!(d.is_some_and(|d| d.approves()), "{:?}", p.decision);
        }
        if r.is_approval() || sampled(4) {
            assert_signs_and_verifies(r);
        }
    }
}
