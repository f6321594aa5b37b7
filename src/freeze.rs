//! The emergency stop: a switch kept in the state store, outside the policy,
//! that rejects every task of the frozen kinds whatever the policy says.
//!
//! A policy change goes through the reload gate (tests, fixtures), which is
//! right for loosening the gate and wrong for stopping it: an emergency stop
//! must work in one step under every setting, and must not depend on the
//! policy it stops being correct. So `tss-gate freeze on|off` writes one row
//! of the store (SQLite or PostgreSQL, the same the server uses, so every
//! instance on a shared database stops together), and each server reads it
//! every [`POLL`] into memory: the decision path reads the switch from
//! memory and never waits on the store for it.
//!
//! This module owns the switch's shape, its reading and writing through
//! the store, the in-memory copy the server decides with, and the answer a
//! frozen request gets. Fail closed: a stored switch that cannot be read is
//! a freeze of every kind.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use serde::{Deserialize, Serialize};

use crate::protocol::RequestType;
use crate::store::{Store, StoreError};

/// The store's control key of the switch.
pub const KEY: &str = "freeze";

/// How often a server reads the switch: a `freeze on` takes effect on every
/// running instance within about this long.
pub const POLL: Duration = Duration::from_millis(100);

/// The deny code of a frozen request (decision log, metrics, answer).
pub const CODE: &str = "gate.frozen";

/// Most characters of an operator's reason kept (it reaches the portal).
const MAX_REASON: usize = 200;

/// Which tasks a freeze stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// KEYSIGN only: no signature leaves.
    Keysign,
    /// Every task but PING (KEYGEN, KEYSIGN, KEYRESHARE, KEYSHARESIGN).
    All,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Keysign => "keysign",
            Self::All => "all",
        }
    }

    /// Whether a request of `t` is stopped. Unknown types are rejected by
    /// the policy anyway; PING keeps answering so health checks still tell
    /// a frozen gate from a dead one.
    pub fn stops(self, t: RequestType) -> bool {
        match self {
            Self::Keysign => t == RequestType::KeySign,
            Self::All => !matches!(t, RequestType::Ping),
        }
    }
}

/// The switch as stored: present means frozen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Freeze {
    pub scope: Scope,
    /// Why, quoted in every frozen answer (one line, bounded).
    pub reason: String,
    /// When it was switched on (unix ms).
    pub since_ms: i64,
    /// Who switched it on, as the command saw it (user@host).
    pub by: String,
}

impl Freeze {
    pub fn new(scope: Scope, reason: &str, since_ms: i64, by: &str) -> Self {
        Self {
            scope,
            reason: bounded(reason),
            since_ms,
            by: bounded(by),
        }
    }

    /// The state a stored value that cannot be read stands for.
    fn unreadable(why: &str) -> Self {
        Self::new(
            Scope::All,
            &format!(
                "the stored freeze switch cannot be read ({why}); fix it with `tss-gate freeze on` or `off`"
            ),
            0,
            "",
        )
    }

    /// The deny message of a frozen request.
    pub fn message(&self, t: RequestType) -> String {
        let what = match self.scope {
            Scope::Keysign => "every KEYSIGN".to_owned(),
            Scope::All => "every task but PING".to_owned(),
        };
        let since = if self.since_ms > 0 {
            format!(" since {}", crate::decision_log::timestamp(self.since_ms))
        } else {
            String::new()
        };
        let reason = if self.reason.is_empty() {
            String::new()
        } else {
            format!(" (reason: {})", self.reason)
        };
        format!(
            "{} is rejected: {what} is frozen by `tss-gate freeze`{since}{reason}",
            t.name()
        )
    }
}

/// One line, at most [`MAX_REASON`] characters: the text reaches logs and
/// the Cobo portal.
fn bounded(s: &str) -> String {
    let one: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let one = one.trim();
    if one.chars().count() <= MAX_REASON {
        one.to_owned()
    } else {
        let mut head: String = one.chars().take(MAX_REASON).collect();
        head.push_str("...");
        head
    }
}

/// The request types a freeze can stop (the `tss_gate_frozen` series).
pub const FROZEN_TYPES: [RequestType; 4] = RequestType::TASKS;

/// Reads the switch and keeps `state`, the metric and the decision log in
/// step with it, every [`POLL`], for as long as the runtime runs. A read
/// that fails keeps the last state (the decisions need the store anyway;
/// its errors are counted by the store's metrics) and is logged once per
/// failing stretch.
pub async fn follow(
    store: Arc<dyn Store>,
    state: Arc<FreezeState>,
    metrics: Arc<crate::metrics::Metrics>,
    log: Option<Arc<crate::decision_log::DecisionLog>>,
) {
    let mut failing = false;
    loop {
        tokio::time::sleep(POLL).await;
        let s = store.clone();
        let read = tokio::task::spawn_blocking(move || read(s.as_ref()))
            .await
            .unwrap_or_else(|e| Err(StoreError::Io(format!("freeze read panicked: {e}"))));
        match read {
            Ok(f) => {
                if failing {
                    tracing::info!("the freeze switch is readable again");
                    failing = false;
                }
                apply(&state, f, &metrics, log.as_deref());
            }
            Err(e) if !failing => {
                tracing::error!("cannot read the freeze switch (keeping the last state): {e}");
                failing = true;
            }
            Err(_) => {}
        }
    }
}

/// Puts a switch just read into force: state, metric, log line.
pub fn apply(
    state: &FreezeState,
    f: Option<Freeze>,
    metrics: &crate::metrics::Metrics,
    log: Option<&crate::decision_log::DecisionLog>,
) {
    let Some(_before) = state.set(f.clone()) else {
        return;
    };
    for t in FROZEN_TYPES {
        let on = f.as_ref().is_some_and(|f| f.scope.stops(t));
        metrics
            .frozen
            .with_label_values(&[t.name()])
            .set(i64::from(on));
    }
    let now = crate::clock::now_ms();
    let line = match &f {
        Some(f) => {
            tracing::warn!(
                scope = f.scope.as_str(),
                reason = %f.reason,
                by = %f.by,
                "FROZEN: tss-gate freeze is on; matching requests are rejected"
            );
            serde_json::json!({
                "v": crate::decision_log::EVENT_VERSION,
                "event": "freeze_on",
                "time": crate::decision_log::timestamp(now),
                "scope": f.scope.as_str(),
                "reason": f.reason,
                "since": crate::decision_log::timestamp(f.since_ms),
                "by": f.by,
            })
        }
        None => {
            tracing::warn!("tss-gate freeze is off; requests are decided by the policy again");
            serde_json::json!({
                "v": crate::decision_log::EVENT_VERSION,
                "event": "freeze_off",
                "time": crate::decision_log::timestamp(now),
            })
        }
    };
    if let Some(log) = log {
        let mut bytes = serde_json::to_vec(&line).unwrap_or_default();
        bytes.push(b'\n');
        if let Err(e) = log.append_nowait(bytes) {
            tracing::error!("decision log: the freeze line was not written: {e}");
        }
    }
}

/// Reads the switch from the store. A value that does not parse is a
/// freeze of every kind (fail closed).
pub fn read(store: &dyn Store) -> Result<Option<Freeze>, StoreError> {
    Ok(store.control(KEY)?.map(|text| parse(&text)))
}

/// Parses a stored value; see [`read`].
pub fn parse(text: &str) -> Freeze {
    serde_json::from_str::<Freeze>(text).unwrap_or_else(|e| Freeze::unreadable(&e.to_string()))
}

/// Writes the switch (None switches it off).
pub fn write(store: &dyn Store, f: Option<&Freeze>, now_ms: i64) -> Result<(), StoreError> {
    let text = f.map(|f| serde_json::to_string(f).unwrap_or_default());
    store.set_control(KEY, text.as_deref(), now_ms)
}

/// What a server decides with: the last switch it read.
#[derive(Debug, Default)]
pub struct FreezeState {
    current: ArcSwapOption<Freeze>,
}

impl FreezeState {
    pub fn get(&self) -> Option<Arc<Freeze>> {
        self.current.load_full()
    }

    /// Stores what was read; returns the previous value when it changed.
    pub fn set(&self, f: Option<Freeze>) -> Option<Option<Arc<Freeze>>> {
        let before = self.current.load_full();
        if before.as_deref() == f.as_ref() {
            return None;
        }
        self.current.store(f.map(Arc::new));
        Some(before)
    }

    /// The freeze that stops a request of `t`, if any.
    pub fn stopping(&self, t: RequestType) -> Option<Arc<Freeze>> {
        self.get().filter(|f| f.scope.stops(t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_stop_what_they_say() {
        assert!(Scope::Keysign.stops(RequestType::KeySign));
        for t in [
            RequestType::Ping,
            RequestType::KeyGen,
            RequestType::KeyReshare,
            RequestType::KeyShareSign,
        ] {
            assert!(!Scope::Keysign.stops(t));
        }
        for t in [
            RequestType::KeyGen,
            RequestType::KeySign,
            RequestType::KeyReshare,
            RequestType::KeyShareSign,
            RequestType::Unknown,
        ] {
            assert!(Scope::All.stops(t));
        }
        assert!(!Scope::All.stops(RequestType::Ping));
    }

    #[test]
    fn an_unreadable_switch_freezes_everything() {
        for text in [
            "",
            "{",
            "true",
            r#"{"scope":"some"}"#,
            r#"{"scope":"keysign","reason":"x","since_ms":1,"by":"a","extra":1}"#,
        ] {
            let f = parse(text);
            assert_eq!(f.scope, Scope::All, "{text}");
            assert!(f.reason.contains("cannot be read"), "{text}");
        }
        let f = Freeze::new(Scope::Keysign, "incident 7", 1_700_000_000_000, "ops@host");
        assert_eq!(parse(&serde_json::to_string(&f).unwrap()), f);
    }

    #[test]
    fn the_reason_is_one_bounded_line() {
        let f = Freeze::new(Scope::Keysign, "line one\nline two\u{7}", 0, "");
        assert_eq!(f.reason, "line one line two");
        let long = "x".repeat(500);
        assert_eq!(
            Freeze::new(Scope::All, &long, 0, "").reason.chars().count(),
            MAX_REASON + 3
        );
        let m = Freeze::new(Scope::Keysign, "incident 7", 1_700_000_000_000, "ops")
            .message(RequestType::KeySign);
        assert_eq!(
            m,
            "KEYSIGN is rejected: every KEYSIGN is frozen by `tss-gate freeze` since 2023-11-14T22:13:20.000Z (reason: incident 7)"
        );
    }

    #[test]
    fn state_reports_changes_only() {
        let s = FreezeState::default();
        assert!(s.set(None).is_none());
        let f = Freeze::new(Scope::Keysign, "r", 1, "");
        assert_eq!(s.set(Some(f.clone())), Some(None));
        assert!(s.set(Some(f.clone())).is_none());
        assert!(s.stopping(RequestType::KeySign).is_some());
        assert!(s.stopping(RequestType::KeyGen).is_none());
        assert!(s.set(None).is_some());
        assert!(s.stopping(RequestType::KeySign).is_none());
    }
}
