//! `tss-gate check`: load the config, keys and policies exactly as `serve`
//! does (through [`crate::runtime::build::load_all`]) without listening, and report
//! what is wrong. Exit 0 when `serve` would start, 1 when it would refuse.
//! Its warnings ([`crate::testing::runner::warnings`]) never refuse, and
//! are printed on a refusal too whenever the policy set itself loads.

use std::path::PathBuf;

use clap::Args;

use super::Exit;
use crate::config::{Config, Overrides};

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Config file (YAML).
    #[arg(long, default_value = crate::config::DEFAULT_CONFIG)]
    pub config: PathBuf,
    /// Policy directory; wins over the config's `policy.dir`.
    #[arg(long)]
    pub policy_dir: Option<PathBuf>,
}

pub fn run(a: CheckArgs) -> Exit {
    super::init_cli_logging();
    let overrides = Overrides {
        policy_dir: a.policy_dir.clone(),
        ..Overrides::default()
    };
    let cfg = match Config::load(&a.config, &overrides) {
        Ok(c) => c,
        Err(e) => {
            super::print_error(&e.into());
            return Exit::Error;
        }
    };
    match crate::runtime::build::load_all(&cfg) {
        Ok(loaded) => {
            let keys: Vec<&str> = loaded.gate.verifier.key_names().collect();
            println!("config `{}`: ok", a.config.display());
            println!("  tss node keys: {}", keys.join(", "));
            println!(
                "  policy: {} files from `{}`, entrypoint `{}`, revision {}",
                loaded.policy.files.len(),
                cfg.policy.dir.display(),
                loaded.policy.entrypoint,
                loaded.policy.revision
            );
            // Warnings, not refusals: regorus (what serves) fires these
            // rules; the policies only behave differently under OPA.
            let findings = crate::testing::runner::warnings(&loaded.policy);
            for f in &findings {
                eprintln!("warning: {f}");
            }
            println!("  warnings: {}", findings.len());
            if let Some(ev) = &loaded.events {
                let names: Vec<&str> = ev.key_names().collect();
                println!("  node event keys: {}", names.join(", "));
            }
            // A broken shadow set never stops `serve` (it serves without
            // shadow until a good one loads), so here it is a warning.
            if let Some((opts, gate)) = crate::runtime::gate::shadow_options(&cfg) {
                match crate::runtime::gate::load_checked(&opts, &gate) {
                    Ok(s) => println!(
                        "  shadow policy: {} files from `{}`, revision {}",
                        s.files.len(),
                        opts.dir.display(),
                        s.revision
                    ),
                    Err(e) => {
                        for line in crate::error_text(&anyhow::Error::from(e)).lines() {
                            eprintln!("warning: shadow policy: {line}");
                        }
                        println!("  shadow policy: refused (serve would run without shadow)");
                    }
                }
            }
            Exit::Ok
        }
        Err(e) => {
            super::print_error(&e);
            // A set refused for its failing tests (or for its keys) still
            // loads on its own, and its warnings are often why the tests
            // fail (a data key that landed elsewhere, a rule never reached).
            if let Ok(set) = crate::policy::PolicySet::load(&cfg.policy_options()) {
                let findings = crate::testing::runner::warnings(&set);
                for f in &findings {
                    eprintln!("warning: {f}");
                }
                if !findings.is_empty() {
                    eprintln!(
                        "{} warnings beside the errors above; they may explain them",
                        findings.len()
                    );
                }
            }
            Exit::Error
        }
    }
}
