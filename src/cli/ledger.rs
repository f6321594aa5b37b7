//! `tss-gate ledger show|void`: what the spending-limit ledger holds, and
//! releasing the hold of an approval that never executed. Works on the
//! store of the config, also while the server runs (SQLite WAL lets a
//! second connection read and write beside it).

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde_json::json;

use super::Exit;
use crate::config::{Config, Overrides};
use crate::store::{GroupUsage, RETENTION_MS, Store};
use crate::velocity::{Dim, Limit};

#[derive(Debug, Subcommand)]
pub enum LedgerCommand {
    /// Usage per limit and group inside each limit's window.
    Show(ShowArgs),
    /// Release every hold of REQUEST_ID (an approval that never executed).
    Void(VoidArgs),
    /// SQLite's query plan of every query a decision runs (each must use an index).
    Plan(PlanArgs),
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Config file (YAML).
    #[arg(long, default_value = crate::config::DEFAULT_CONFIG)]
    pub config: PathBuf,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// Config file (YAML).
    #[arg(long, default_value = crate::config::DEFAULT_CONFIG)]
    pub config: PathBuf,
    /// List the rows (holds) too, newest last.
    #[arg(long)]
    pub entries: bool,
    /// Only this request's rows.
    #[arg(long)]
    pub request: Option<String>,
    /// One JSON document instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct VoidArgs {
    /// The approved request whose holds to release.
    pub request_id: String,
    /// Why: kept with the rows and written to the decision log.
    #[arg(long)]
    pub reason: String,
    /// Config file (YAML).
    #[arg(long, default_value = crate::config::DEFAULT_CONFIG)]
    pub config: PathBuf,
}

pub fn run(c: LedgerCommand) -> Exit {
    let result = match c {
        LedgerCommand::Show(a) => show(a),
        LedgerCommand::Void(a) => void(a),
        LedgerCommand::Plan(a) => plan(a),
    };
    match result {
        Ok(e) => e,
        Err(e) => {
            super::print_error(&e);
            Exit::Error
        }
    }
}

/// Approvals `ledger show` reads at most, newest first.
const MAX_TASKS: usize = 100_000;

/// The configured store, opened for inspection beside a running server.
fn open(config: &std::path::Path) -> anyhow::Result<(Config, Box<dyn Store>)> {
    let cfg = Config::load(config, &Overrides::default())?;
    let store = crate::runtime::build::open_beside(&cfg, false)?;
    Ok((cfg, store))
}

fn show(a: ShowArgs) -> anyhow::Result<Exit> {
    let (cfg, store) = open(&a.config)?;
    // The windows and maxima are the policy's; without a loadable policy
    // the usage is still shown, over 24 h.
    let limits = crate::policy::PolicySet::load(&cfg.policy_options())
        .map(|p| (*p.velocity).clone())
        .unwrap_or_default();
    let find = |id: &str| limits.limits.iter().find(|l| l.id == id);
    let now = crate::store::now_ms();
    let report = store.report(now, &|id| find(id).map(|l| l.window_ms))?;
    let rows = if a.entries || a.request.is_some() {
        store.entries(a.request.as_deref(), now - RETENTION_MS)?
    } else {
        Vec::new()
    };
    // The task state of each hold, when the node reports events.
    let tasks: std::collections::HashMap<String, crate::store::Approval> = if rows.is_empty() {
        Default::default()
    } else if let Some(id) = &a.request {
        // One request: one lookup, not every approval of the retention.
        store
            .approval(id)?
            .into_iter()
            .map(|t| (t.record.request_id.clone(), t))
            .collect()
    } else {
        store
            .approvals(now - RETENTION_MS, MAX_TASKS)?
            .into_iter()
            .map(|t| (t.record.request_id.clone(), t))
            .collect()
    };
    let task_json = |id: &str| {
        tasks.get(id).map(|t| {
            json!({
                "state": t.state.as_str(),
                "changed_at_ms": t.changed.as_ref().map(|c| c.0),
                "change_reason": t.changed.as_ref().map(|c| c.1.clone()),
            })
        })
    };
    let mut out = std::io::stdout().lock();
    if a.json {
        let groups: Vec<_> = report
            .iter()
            .map(|g| group_json(g, find(&g.limit)))
            .collect();
        let entries: Vec<_> = rows
            .iter()
            .map(|e| {
                json!({
                    "request_id": e.request_id, "limit": e.limit, "group": e.group,
                    "at_ms": e.at_ms, "amount": e.amount.to_string(), "token": e.token,
                    "state": if e.voided.is_some() { "voided" } else { "held" },
                    "void_reason": e.voided.as_ref().map(|v| v.1.clone()),
                    "task": task_json(&e.request_id),
                })
            })
            .collect();
        writeln!(out, "{}", json!({"groups": groups, "entries": entries}))?;
        return Ok(Exit::Ok);
    }
    if report.is_empty() {
        writeln!(out, "ledger is empty ({})", store.location())?;
    }
    for g in &report {
        writeln!(out, "{}", group_line(g, find(&g.limit)))?;
    }
    for e in &rows {
        let at = crate::decision_log::timestamp(e.at_ms);
        let state = match &e.voided {
            Some((t, r)) => format!("voided {} ({r})", crate::decision_log::timestamp(*t)),
            None => "held".to_owned(),
        };
        let state = match tasks.get(&e.request_id) {
            Some(t) => match &t.changed {
                Some((at, why)) => format!(
                    "{state}, task {} {} ({why})",
                    t.state.as_str(),
                    crate::decision_log::timestamp(*at)
                ),
                None => format!("{state}, task {}", t.state.as_str()),
            },
            None => state,
        };
        writeln!(
            out,
            "  {at}  {}  {}  {}  {} {}  {state}",
            e.request_id, e.limit, e.group, e.amount, e.token
        )?;
    }
    Ok(Exit::Ok)
}

/// Whether the amounts of a group's rows are all of one token, so that
/// their sum means something: the limit groups by token or matches one
/// token (every limit with a `max_amount` does). A count-only limit
/// grouped otherwise counts requests in any tokens: 1 ETH and 1 USDT are
/// not "2". For a limit no longer configured: whether the group names its
/// token.
fn one_token(g: &GroupUsage, l: Option<&Limit>) -> bool {
    match l {
        Some(l) => {
            l.max_amount.is_some()
                || l.group_by.contains(&Dim::Token)
                || l.token_ids.as_ref().is_some_and(|t| t.len() == 1)
        }
        None => g.group.split(',').any(|p| p.starts_with("token=")),
    }
}

/// One group of `ledger show`: `LIMIT  GROUP  last WINDOW: amount USED [of
/// MAX], requests N [of MAX]`, without the amount when it would add
/// different tokens up.
fn group_line(g: &GroupUsage, l: Option<&Limit>) -> String {
    let window = l
        .map(|l| l.window.as_str())
        .unwrap_or("24h (limit no longer configured)");
    let amount = match (l.and_then(|l| l.max_amount), one_token(g, l)) {
        (Some(max), _) => format!("amount {} of {}, ", g.usage.amount, max),
        (None, true) => format!("amount {}, ", g.usage.amount),
        (None, false) => String::new(),
    };
    let count = match l.and_then(|l| l.max_count) {
        Some(max) => format!("{} of {}", g.usage.count, max),
        None => g.usage.count.to_string(),
    };
    format!(
        "{}  {}  last {window}: {amount}requests {count}",
        g.limit, g.group
    )
}

/// One group of `ledger show --json`; `used_amount` is null when it would
/// add different tokens up (as a fact's is without `max_amount`).
fn group_json(g: &GroupUsage, l: Option<&Limit>) -> serde_json::Value {
    json!({
        "limit": g.limit,
        "group": g.group,
        "window": l.map(|l| l.window.clone()),
        "used_amount": one_token(g, l).then(|| g.usage.amount.to_string()),
        "used_count": g.usage.count,
        "max_amount": l.and_then(|l| l.max_amount).map(|m| m.to_string()),
        "max_count": l.and_then(|l| l.max_count),
        "held": g.held,
    })
}

fn void(a: VoidArgs) -> anyhow::Result<Exit> {
    if a.reason.trim().is_empty() {
        anyhow::bail!("--reason must say why the hold is released");
    }
    let (cfg, store) = open(&a.config)?;
    let now = crate::store::now_ms();
    let released = store.entries(Some(&a.request_id), now - RETENTION_MS)?;
    let n = store.void(&a.request_id, now, &a.reason)?;
    if n == 0 {
        eprintln!(
            "error: request `{}` holds nothing in the ledger (unknown, or already voided)",
            a.request_id
        );
        return Ok(Exit::Error);
    }
    let line = json!({
        "v": crate::decision_log::EVENT_VERSION,
        "time": crate::decision_log::timestamp(now),
        "event": "ledger_void",
        "request_id": a.request_id,
        "reasons": [a.reason],
        "released": released.iter().filter(|e| e.voided.is_none()).map(|e| json!({
            "limit": e.limit, "group": e.group, "amount": e.amount.to_string(), "token": e.token,
        })).collect::<Vec<_>>(),
    });
    if let Some(path) = &cfg.decision_log.path {
        crate::decision_log::append_external(path, &line)?;
    }
    println!("released {n} hold(s) of request `{}`", a.request_id);
    Ok(Exit::Ok)
}

fn plan(a: PlanArgs) -> anyhow::Result<Exit> {
    let (_, store) = open(&a.config)?;
    let plans = store.plans()?;
    if let Some(rows) = plans.rows {
        println!("ledger rows: {rows}");
    }
    for q in &plans.queries {
        match q.name {
            Some(name) => println!("{name}:\n  {}\n  plan: {}", q.query, q.plan.join(" | ")),
            None => println!("{}\n{}\n", q.query, q.plan.join("\n")),
        }
    }
    Ok(Exit::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::velocity::{Amount, Limits, Usage};

    fn limit(v: serde_json::Value) -> Limit {
        Limits::from_data(Some(&json!({ "limits": [v] })))
            .unwrap()
            .limits
            .remove(0)
    }

    fn group(limit: &str, group: &str, amount: &str, count: u64) -> GroupUsage {
        GroupUsage {
            limit: limit.into(),
            group: group.into(),
            usage: Usage {
                amount: Amount::parse(amount).unwrap(),
                count,
            },
            held: count,
        }
    }

    #[test]
    fn a_count_only_limit_over_several_tokens_shows_no_summed_amount() {
        // 1 ETH and 1 USDT of one wallet: two requests, not "amount 2".
        let l = limit(json!({"id": "w", "window": "1h", "group_by": ["wallet"], "max_count": 5}));
        let g = group("w", "wallet=w1", "2", 2);
        assert_eq!(
            group_line(&g, Some(&l)),
            "w  wallet=w1  last 1h: requests 2 of 5"
        );
        let j = group_json(&g, Some(&l));
        assert_eq!(j["used_amount"], serde_json::Value::Null, "{j}");
        assert_eq!(j["used_count"], 2);
        assert_eq!(j["max_count"], 5);
    }

    #[test]
    fn amounts_of_one_token_are_shown() {
        // Grouped by token: each group is one token's.
        let l = limit(
            json!({"id": "t", "window": "1h", "group_by": ["wallet", "token"], "max_count": 5}),
        );
        let g = group("t", "wallet=w1,token=ETH", "1.5", 2);
        assert_eq!(
            group_line(&g, Some(&l)),
            "t  wallet=w1,token=ETH  last 1h: amount 1.5, requests 2 of 5"
        );
        assert_eq!(group_json(&g, Some(&l))["used_amount"], "1.5");
        // One token matched.
        let l = limit(
            json!({"id": "o", "window": "1h", "match": {"token_ids": ["ETH"]}, "max_count": 5}),
        );
        let g = group("o", "all", "1.5", 2);
        assert_eq!(
            group_line(&g, Some(&l)),
            "o  all  last 1h: amount 1.5, requests 2 of 5"
        );
        // A cap on the amount, with or without one on the count.
        let l = limit(
            json!({"id": "a", "window": "24h", "group_by": ["wallet", "token"], "max_amount": "50000"}),
        );
        let g = group("a", "wallet=w1,token=ETH_USDT", "49999.95", 5);
        assert_eq!(
            group_line(&g, Some(&l)),
            "a  wallet=w1,token=ETH_USDT  last 24h: amount 49999.95 of 50000, requests 5"
        );
        let j = group_json(&g, Some(&l));
        assert_eq!(
            (&j["used_amount"], &j["max_amount"]),
            (&json!("49999.95"), &json!("50000"))
        );
    }

    #[test]
    fn a_limit_no_longer_configured_shows_an_amount_only_for_a_token_group() {
        let g = group("old", "wallet=w1", "2", 2);
        assert_eq!(
            group_line(&g, None),
            "old  wallet=w1  last 24h (limit no longer configured): requests 2"
        );
        let g = group("old", "wallet=w1,token=ETH", "2", 2);
        assert_eq!(
            group_line(&g, None),
            "old  wallet=w1,token=ETH  last 24h (limit no longer configured): amount 2, requests 2"
        );
    }
}
