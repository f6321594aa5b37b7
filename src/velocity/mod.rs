//! Spending limits over time (`data.velocity.limits`): owns the limit table
//! (parsed and validated once per policy load), which limits and groups a
//! request falls under, and the `input.velocity` facts built from a group's
//! usage. The usage itself, and recording approvals, belong to
//! [`crate::store`]; this module never touches storage, but for the
//! utilisation gauge's refresher ([`gauge`]), which asks the store for each
//! limit's fullest group off the decision path.
//!
//! Every group value comes from the request, so every one is attacker text:
//! group keys are built injectively (JSON of the values), addresses are
//! normalised so case variants of one address are one group, and a request
//! whose group cannot be determined gets a fact with `error` set, which the
//! shipped library denies.

pub mod amount;
pub mod gauge;
pub mod limits;

pub use amount::Amount;
pub use limits::{Dim, Limit, Limits, Matched};

use serde_json::{Map, Value, json};

/// A group's usage inside a limit's window, before this request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub amount: Amount,
    pub count: u64,
}

/// One ledger row an approval adds: its amount counts against the group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub limit: String,
    pub group_key: String,
    /// `Amount::ZERO` for a count-only limit.
    pub amount: Amount,
    pub token: String,
}

/// The decision time and the facts of every matched group, in the shape
/// documented in rego/README.md ("Spending limits").
pub fn facts(limits: &Limits, matched: &[Matched], usages: &[Usage], now_ms: i64) -> Value {
    let mut out = Map::new();
    for (m, u) in matched.iter().zip(usages) {
        let l = &limits.limits[m.limit];
        let fact = fact(l, m, u, now_ms);
        let slot = out
            .entry(l.id.clone())
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(a) = slot {
            a.push(fact);
        }
    }
    Value::Object(out)
}

/// Whether a fact says the request must not pass (for metrics).
pub fn exceeded(fact: &Value) -> bool {
    fact.get("exceeded")
        .and_then(Value::as_bool)
        .unwrap_or(true)
}

/// Whether the request, with these usages of its groups, stays within
/// every limit it matched: exactly what the facts' `exceeded` flags say,
/// without building them.
pub fn within(limits: &Limits, matched: &[Matched], usages: &[Usage]) -> bool {
    matched
        .iter()
        .zip(usages)
        .all(|(m, u)| !Flags::of(&limits.limits[m.limit], m, u).exceeded())
}

/// The arithmetic behind a fact's flags (one place for facts and `within`).
struct Flags {
    total_count: u64,
    total_amount: Option<Amount>,
    amount_exceeded: bool,
    count_exceeded: bool,
    group_error: bool,
}

impl Flags {
    fn of(l: &Limit, m: &Matched, u: &Usage) -> Flags {
        let total_count = u.count.saturating_add(1);
        let total_amount = m.amount.and_then(|a| a.checked_add(u.amount));
        Flags {
            total_count,
            total_amount,
            count_exceeded: l.max_count.is_some_and(|max| total_count > max),
            amount_exceeded: match l.max_amount {
                // No amount to add, or a sum past 2^256: cannot be shown to fit.
                Some(max) => total_amount.is_none_or(|t| t > max),
                None => false,
            },
            group_error: m.error.is_some(),
        }
    }

    fn exceeded(&self) -> bool {
        self.amount_exceeded || self.count_exceeded || self.group_error
    }
}

fn fact(l: &Limit, m: &Matched, u: &Usage, now_ms: i64) -> Value {
    let since = now_ms.saturating_sub(l.window_ms);
    let flags = Flags::of(l, m, u);
    let Flags {
        total_count,
        total_amount,
        amount_exceeded,
        count_exceeded,
        ..
    } = flags;
    let mut utilization: f64 = 0.0;
    if let (Some(max), Some(t)) = (l.max_amount, total_amount) {
        utilization = utilization.max(t.ratio(max));
    }
    if let Some(max) = l.max_count {
        utilization = utilization.max(if max == 0 {
            f64::INFINITY
        } else {
            total_count as f64 / max as f64
        });
    }
    let amount_text = |a: Option<Amount>| match (l.max_amount, a) {
        (Some(_), Some(a)) => json!(a.to_string()),
        _ => Value::Null,
    };
    let mut f = json!({
        "limit": l.id,
        "window": l.window,
        "window_ms": l.window_ms,
        "since_ms": since,
        "group": m.group,
        "group_key": m.display,
        "token": l.max_amount.map(|_| m.token.clone()),
        "used_amount": amount_text(Some(u.amount)),
        "used_count": u.count,
        "amount": amount_text(m.amount),
        "count": 1,
        "total_amount": amount_text(total_amount),
        "total_count": total_count,
        "max_amount": l.max_amount.map(|a| a.to_string()),
        "max_count": l.max_count,
        "amount_exceeded": amount_exceeded || flags.group_error,
        "count_exceeded": count_exceeded,
        "exceeded": flags.exceeded(),
        "utilization": if utilization.is_finite() { json!(utilization) } else { json!(1e9) },
    });
    if let (Some(e), Some(o)) = (&m.error, f.as_object_mut()) {
        o.insert("error".into(), json!(e));
    }
    f
}

/// Ledger rows an approval of `matched` adds.
pub fn rows(limits: &Limits, matched: &[Matched]) -> Vec<Row> {
    matched
        .iter()
        .filter(|m| m.error.is_none())
        .map(|m| Row {
            limit: limits.limits[m.limit].id.clone(),
            group_key: m.key.clone(),
            amount: m.amount.unwrap_or(Amount::ZERO),
            token: m.token.clone(),
        })
        .collect()
}
