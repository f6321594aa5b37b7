//! `tss-gate eval`: show what the server would do with one request (or
//! fixture) without keys or a network: the input document, the decision,
//! the answer that would be signed and, with `--explain`, which rules fired.
//! Prints one JSON document. Exit 0 when it could evaluate, 1 otherwise.

use std::path::PathBuf;

use clap::Args;
use serde_json::json;

use super::Exit;
use crate::decide::steps;
use crate::input::{self, TokenFacts};
use crate::policy::PolicySet;
use crate::testing::{explain, runner};

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// A fixture or a bare TSSCallbackRequest JSON file (`-` for stdin).
    pub request: PathBuf,
    /// Print only the input document the policies would see.
    #[arg(long)]
    pub input_only: bool,
    /// Say which deny and allow rules fired, with file:line and message.
    #[arg(long)]
    pub explain: bool,
    /// Take the policy directory, entrypoint, data files and time limit
    /// from this config file.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Policy directory; wins over the config's `policy.dir`.
    #[arg(long)]
    pub policy_dir: Option<PathBuf>,
    /// TSS Node key name the request counts as verified by (default: the
    /// fixture's `verified_by`, else `fixture`).
    #[arg(long)]
    pub verified_by: Option<String>,
    /// Receive time in unix ms (default: the fixture's, else now).
    #[arg(long)]
    pub at_ms: Option<i64>,
}

pub fn run(a: EvalArgs) -> Exit {
    super::init_cli_logging();
    match eval(&a) {
        Ok(doc) => match serde_json::to_string_pretty(&doc) {
            Ok(s) => {
                println!("{s}");
                Exit::Ok
            }
            Err(e) => {
                eprintln!("error: {e}");
                Exit::Error
            }
        },
        Err(e) => {
            super::print_error(&e);
            Exit::Error
        }
    }
}

fn eval(a: &EvalArgs) -> anyhow::Result<serde_json::Value> {
    let text = if a.request == std::path::Path::new("-") {
        std::io::read_to_string(std::io::stdin())?
    } else {
        std::fs::read_to_string(&a.request)
            .map_err(|e| anyhow::anyhow!("cannot read `{}`: {e}", a.request.display()))?
    };
    let (wire, request) = crate::fixture::wire_from_text(&a.request, &text)?;
    // A fixture's own evaluation context, when the file is one.
    let doc: serde_json::Value = serde_json::from_str(&text)?;
    let fixture_verified_by = doc
        .get("verified_by")
        .and_then(|v| v.as_str())
        .map(str::to_owned);
    let fixture_at = doc.get("received_at_ms").and_then(|v| v.as_i64());
    let token = TokenFacts {
        key_name: a
            .verified_by
            .clone()
            .or(fixture_verified_by)
            .unwrap_or_else(|| runner::DEFAULT_VERIFIED_BY.to_owned()),
        ..TokenFacts::default()
    };
    let at = a.at_ms.or(fixture_at).unwrap_or_else(crate::clock::now_ms);

    let mut opts = super::test::policy_options(a.config.as_deref(), a.policy_dir.as_deref(), None)?;
    // As in `test`: a busy machine must not change what `eval` shows.
    opts.eval_timeout = opts.eval_timeout.max(std::time::Duration::from_secs(5));
    crate::policy::install_time_limit(opts.eval_timeout);
    let set = PolicySet::load(&opts)?;

    let history: Vec<crate::fixture::HistoryEntry> = doc
        .get("history")
        .map(|h| serde_json::from_value(h.clone()))
        .transpose()
        .map_err(|e| anyhow::anyhow!("`history`: {e}"))?
        .unwrap_or_default();
    let decided =
        runner::decide_fixture(&set, &history, &wire, &token, at, &mut |i| set.evaluate(i))
            .map_err(|e| anyhow::anyhow!("{}: {e}", a.request.display()))?;
    if a.input_only {
        // The document the policies saw, spending-limit facts included.
        return match &decided {
            Ok(d) => Ok(d.input.clone()),
            Err(_) => {
                let parsed = input::parse_request(&wire, input::DEFAULT_MAX_DEPTH)?;
                Ok(steps::input_without_ledger(&set, &parsed, &token, at))
            }
        };
    }
    let answer = runner::answer_of(&request, &decided);
    let (input, decision, failure) = match &decided {
        Ok(d) => (
            Some(d.input.clone()),
            d.decision
                .as_ref()
                .map(|d| json!({"allow": d.allow, "reasons": d.reasons, "codes": d.codes})),
            d.failure.as_ref().map(|f| f.reason()),
        ),
        Err(f) => (None, None, Some(f.reason())),
    };
    let mut out = json!({
        "input": input,
        "decision": decision,
        "failure": failure,
        "answer": answer,
        "policy_revision": set.revision,
    });
    if a.explain
        && let Some(i) = &input
        && let Some(obj) = out.as_object_mut()
    {
        obj.insert(
            "explain".into(),
            serde_json::to_value(explain::explain(&set, i))?,
        );
    }
    Ok(out)
}
