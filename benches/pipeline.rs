//! Criterion benches of each pipeline stage, in the order a request meets
//! them: token verify, package decode, input build, policy evaluation (each
//! fixture), transaction derivation (each approving KEYSIGN fixture), decision
//! signing, and the whole pipeline without HTTP, with and without signing.
//!
//! After the criterion groups, it prints the ratio derivation cost / pipeline
//! without signing for each approving KEYSIGN fixture, every chain and asset
//! (the derivation budget is < 5%).
//!
//! `cargo bench --bench pipeline` measures; `cargo test --all-targets` runs
//! each bench once (criterion's test mode) and the ratio loop once, so the
//! benches stay compiled and working.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion};
use tss_gate::decide::steps::{self, Gate};
use tss_gate::decide::{Answer, Decider};
use tss_gate::input::{self, TokenFacts};
use tss_gate::keys::{self, SigningKey};
use tss_gate::policy::{PolicyOptions, PolicySet};
use tss_gate::protocol::{CallbackRequest, CallbackResponse};
use tss_gate::token::Verifier;

const REPO: &str = env!("CARGO_MANIFEST_DIR");

struct Setup {
    gate: Gate,
    node: SigningKey,
    policy: PolicySet,
    /// The server's decision path (no store, no log, the retry cache off so
    /// every iteration decides afresh).
    decider: Decider,
    /// (fixture name, request) for every fixture.
    fixtures: Vec<(String, CallbackRequest)>,
}

fn setup() -> Setup {
    let server = keys::generate(2048).expect("server key");
    let node = keys::generate(2048).expect("node key");
    let gate = Gate {
        verifier: Verifier::new(
            vec![keys::verifying_key_from(
                "node-a",
                &node.to_public_key(),
                Path::new("bench"),
            )],
            60,
        ),
        signer: keys::signing_key_from(&server, Path::new("bench")).expect("signer"),
        service_name: "tss-gate-bench".into(),
        token_ttl_secs: 120,
        max_json_depth: 64,
    };
    let load = || {
        PolicySet::load(&PolicyOptions {
            dir: Path::new(REPO).join("rego"),
            entrypoint: tss_gate::policy::DEFAULT_ENTRYPOINT.into(),
            data_files: Vec::new(),
            eval_timeout: Duration::from_secs(1),
        })
        .expect("policy")
    };
    let policy = load();
    let mut decider = Decider::new(
        gate.clone(),
        load(),
        std::sync::Arc::new(tss_gate::metrics::Metrics::new()),
    );
    decider.retry = tss_gate::decide::retry::RetryCache::new(false, Duration::ZERO, 0);
    let fixtures = tss_gate::fixture::discover(&Path::new(REPO).join("tests/fixtures"))
        .expect("fixtures")
        .into_iter()
        .map(|p| {
            let name = p.file_stem().expect("name").to_string_lossy().into_owned();
            (name, tss_gate::fixture::load_request(&p).expect("fixture"))
        })
        .collect();
    Setup {
        node: keys::signing_key_from(&node, Path::new("bench")).expect("node signer"),
        gate,
        policy,
        decider,
        fixtures,
    }
}

fn mint(s: &Setup, req: &CallbackRequest) -> String {
    let doc = serde_json::to_vec(req).expect("json");
    tss_gate::token::sign_package(&doc, &s.node, "tss-node", 3_600).expect("sign")
}

fn facts() -> TokenFacts {
    TokenFacts {
        key_name: "node-a".into(),
        iss: Some("tss-node".into()),
        iat: None,
        exp: None,
    }
}

fn quick<'a>(
    c: &'a mut Criterion,
    name: &str,
) -> criterion::BenchmarkGroup<'a, criterion::measurement::WallTime> {
    let mut g = c.benchmark_group(name);
    g.warm_up_time(Duration::from_millis(300));
    g.measurement_time(Duration::from_secs(1));
    g.sample_size(20);
    g
}

fn stages(c: &mut Criterion, s: &Setup) {
    let (name, req) = s
        .fixtures
        .iter()
        .find(|(n, _)| n == "keysign_eth_approve")
        .or(s.fixtures.first())
        .expect("a fixture");
    let token = mint(s, req);
    let verified = s.gate.verifier.verify(&token).expect("verifies");

    let mut g = quick(c, "token_verify");
    g.bench_function(name.as_str(), |b| b.iter(|| s.gate.verifier.verify(&token)));
    g.finish();

    let mut g = quick(c, "package_decode");
    g.bench_function(name.as_str(), |b| {
        b.iter(|| {
            let raw = input::decode_package(&verified.package_data).expect("base64");
            input::parse_request(&raw, 64)
        })
    });
    g.finish();

    let mut g = quick(c, "input_build");
    for (name, req) in &s.fixtures {
        let Ok(parsed) = input::parse_callback_request(req, 64) else {
            continue;
        };
        g.bench_with_input(BenchmarkId::from_parameter(name), &parsed, |b, p| {
            b.iter(|| steps::build_input(&s.policy, p, &facts(), 1_764_000_000_000))
        });
    }
    g.finish();

    let mut g = quick(c, "policy_eval");
    for (name, req) in &s.fixtures {
        let Ok(parsed) = input::parse_callback_request(req, 64) else {
            continue;
        };
        let doc = steps::build_input(&s.policy, &parsed, &facts(), 1_764_000_000_000);
        g.bench_with_input(BenchmarkId::from_parameter(name), &doc, |b, d| {
            b.iter(|| s.policy.evaluate(d))
        });
    }
    g.finish();

    let mut g = quick(c, "decision_sign");
    let answer = CallbackResponse::approve("c3a1e6f2-4b7d-4e8a-9f10-2d3c4b5a6e7f");
    g.bench_function("rs256_2048", |b| b.iter(|| steps::sign(&s.gate, &answer)));
    // What `steps::sign` replaced: jsonwebtoken's `encode`, which parses
    // and validates the private key DER on every call.
    let claims = tss_gate::token::SignedClaims {
        package_data: "eyJzdGF0dXMiOjB9".into(),
        exp: 1_900_000_120,
        iat: 1_900_000_000,
        iss: "tss-gate".into(),
    };
    let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    g.bench_function("rs256_2048_jsonwebtoken_encode", |b| {
        b.iter(|| jsonwebtoken::encode(&header, &claims, &s.gate.signer.key))
    });
    g.finish();

    let mut g = quick(c, "pipeline");
    g.bench_function(name.as_str(), |b| {
        b.iter(|| {
            let a = s.decider.decide_blocking(&token, 1_764_000_000_000);
            s.decider.sign(&a.response)
        })
    });
    g.finish();

    let mut g = quick(c, "derive");
    for (name, req) in approving_keysign(s) {
        let parsed = input::parse_callback_request(req, 64).expect("fixture parses");
        g.bench_with_input(BenchmarkId::from_parameter(name), &parsed, |b, p| {
            b.iter(|| tss_gate::derive::derive(&p.detail, &p.extra, &s.policy.derive))
        });
    }
    g.finish();

    let mut g = quick(c, "pipeline_without_signing");
    for (name, req) in approving_keysign(s) {
        let token = mint(s, req);
        g.bench_with_input(BenchmarkId::from_parameter(name), &token, |b, t| {
            b.iter(|| without_signing(&s.decider, t))
        });
    }
    g.finish();
}

/// The approving KEYSIGN fixtures: one real, bound request per chain and
/// asset, whose derivation runs every decoder and binding to the end.
fn approving_keysign(s: &Setup) -> impl Iterator<Item = &(String, CallbackRequest)> {
    s.fixtures
        .iter()
        .filter(|(name, req)| req.request_type == 2 && name.ends_with("_approve"))
}

/// Verify, decode, derive, build the input, evaluate, map to an answer:
/// the server's decider without its transport.
fn without_signing(decider: &Decider, token: &str) -> Answer {
    decider.decide_blocking(token, 1_764_000_000_000)
}

/// Mean time of `f` over `n` runs.
fn mean(n: u32, mut f: impl FnMut()) -> Duration {
    let t = Instant::now();
    for _ in 0..n {
        f();
    }
    t.elapsed() / n.max(1)
}

/// Derivation cost (decoding, hashing, key derivation and bindings) as a
/// share of the pipeline without signing, for every approving KEYSIGN
/// fixture of the shipped library: one real request per chain and asset.
fn derive_ratio(s: &Setup, measuring: bool) {
    let n = if measuring { 2_000 } else { 1 };
    println!("\nderive / pipeline_without_signing (budget < 5%):");
    let mut worst: f64 = 0.0;
    for (name, req) in approving_keysign(s) {
        let parsed = input::parse_callback_request(req, 64).expect("fixture parses");
        let token = mint(s, req);
        let d = mean(n, || {
            std::hint::black_box(tss_gate::derive::derive(
                &parsed.detail,
                &parsed.extra,
                &s.policy.derive,
            ));
        });
        let p = mean(n, || {
            std::hint::black_box(without_signing(&s.decider, &token));
        });
        let ratio = d.as_secs_f64() / p.as_secs_f64().max(1e-12);
        worst = worst.max(ratio);
        println!(
            "  {name:<52} derive {d:>10.2?}  pipeline {p:>10.2?}  {:5.2}%",
            ratio * 100.0
        );
    }
    println!("  worst {:.2}%", worst * 100.0);
}

fn main() {
    // Criterion's test mode (`cargo test --all-targets`) passes no `--bench`.
    let measuring = std::env::args().any(|a| a == "--bench");
    let s = setup();
    let mut c = Criterion::default().configure_from_args();
    stages(&mut c, &s);
    c.final_summary();
    derive_ratio(&s, measuring);
}
