//! Fixture files: a TSSCallbackRequest exactly as on the wire plus what the
//! policy is expected to answer. `send`, `eval`, `test`, `bench` and the
//! recorder share this format; a bare TSSCallbackRequest also loads.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::protocol::{Action, CallbackRequest};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fixture {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// The request as serde reads it (the last of repeated keys wins): for
    /// its `request_id` and `request_type`. What is sent and decided is
    /// [`Fixture::wire`].
    pub request: CallbackRequest,
    pub expect: Expect,
    /// Name of the TSS Node key the request is treated as verified by.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified_by: Option<String>,
    /// Receive time to evaluate at (unix ms), so time-based rules are repeatable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received_at_ms: Option<i64>,
    /// Spending-limit ledger rows that exist before this request: the
    /// fixture is decided against a scratch ledger holding exactly these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<HistoryEntry>,
    /// The request's JSON text exactly as written in the file, repeated keys
    /// included: the bytes a TSS Node would send. Empty for a fixture built
    /// in memory, where it is `request` serialised ([`Fixture::wire_bytes`]).
    #[serde(skip)]
    pub wire: Vec<u8>,
}

impl Fixture {
    /// The bytes to send or decide: [`Fixture::wire`], or `request`
    /// serialised when the fixture was not read from a file.
    pub fn wire_bytes(&self) -> Vec<u8> {
        if self.wire.is_empty() {
            serde_json::to_vec(&self.request).unwrap_or_default()
        } else {
            self.wire.clone()
        }
    }
}

/// A fixture file as read: the request kept as raw text, so that a request
/// with repeated keys (which must be refused with status 10) can be a
/// fixture at all.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FixtureFile<'a> {
    #[serde(default)]
    description: String,
    #[serde(borrow)]
    request: &'a RawValue,
    expect: Expect,
    #[serde(default)]
    verified_by: Option<String>,
    #[serde(default)]
    received_at_ms: Option<i64>,
    #[serde(default)]
    history: Vec<HistoryEntry>,
}

/// One prior approval's ledger row, as a fixture writes it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HistoryEntry {
    /// The limit id (`data.velocity.limits[].id`).
    pub limit: String,
    /// The group's values, keyed by the limit's `group_by` names.
    #[serde(default)]
    pub group: serde_json::Map<String, serde_json::Value>,
    /// Amount in the token's units (decimal string); absent for counts only.
    #[serde(default)]
    pub amount: Option<String>,
    /// How long before the fixture's receive time (`90m`, `23h`, `6d`).
    pub ago: String,
    /// The same row this many times (a split-transfer drain in one line).
    #[serde(default = "one")]
    pub repeat: u32,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    pub action: Action,
    #[serde(default)]
    pub status: i64,
    /// Substrings that must all appear in the answer's `error`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum FixtureError {
    #[error("cannot read `{path}`: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("`{path}` is neither a fixture nor a TSSCallbackRequest: {reason}")]
    Format { path: PathBuf, reason: String },
    #[error("`{path}`: a fixture that expects REJECT must list at least one reason substring")]
    RejectWithoutReason { path: PathBuf },
}

/// Loads a full fixture (with expectations), validating it.
pub fn load_fixture(path: &Path) -> Result<Fixture, FixtureError> {
    let text = read(path)?;
    let format = |reason: String| FixtureError::Format {
        path: path.to_owned(),
        reason,
    };
    let file: FixtureFile = serde_json::from_str(&text).map_err(|e| format(e.to_string()))?;
    let f = Fixture {
        request: lenient_request(file.request.get()).map_err(format)?,
        wire: file.request.get().as_bytes().to_vec(),
        description: file.description,
        expect: file.expect,
        verified_by: file.verified_by,
        received_at_ms: file.received_at_ms,
        history: file.history,
    };
    if f.expect.action == Action::Reject && f.expect.status == 0 && f.expect.reasons.is_empty() {
        return Err(FixtureError::RejectWithoutReason {
            path: path.to_owned(),
        });
    }
    Ok(f)
}

/// Loads the request from a fixture or from a bare TSSCallbackRequest file
/// (`-` reads stdin).
pub fn load_request(path: &Path) -> Result<CallbackRequest, FixtureError> {
    let text = read(path)?;
    request_from_text(path, &text)
}

/// [`wire_from_text`] of a file (`-` reads stdin).
pub fn load_wire(path: &Path) -> Result<(Vec<u8>, CallbackRequest), FixtureError> {
    let text = read(path)?;
    wire_from_text(path, &text)
}

pub fn request_from_text(path: &Path, text: &str) -> Result<CallbackRequest, FixtureError> {
    wire_from_text(path, text).map(|(_, req)| req)
}

/// The request's exact JSON text (a fixture's `request`, else the whole
/// text) and the request as serde reads it (the last of repeated keys wins).
pub fn wire_from_text(path: &Path, text: &str) -> Result<(Vec<u8>, CallbackRequest), FixtureError> {
    #[derive(Deserialize)]
    struct Probe<'a> {
        #[serde(borrow, default)]
        request: Option<&'a RawValue>,
    }
    let format = |reason: String| FixtureError::Format {
        path: path.to_owned(),
        reason,
    };
    let probe: Probe = serde_json::from_str(text).map_err(|e| format(e.to_string()))?;
    let wire = probe.request.map_or(text.trim(), RawValue::get);
    Ok((
        wire.as_bytes().to_vec(),
        lenient_request(wire).map_err(format)?,
    ))
}

/// Reads a request the way serde_json always has (a repeated key: the last
/// wins), for the fields a fixture's reader needs even when the request
/// itself must be refused.
fn lenient_request(text: &str) -> Result<CallbackRequest, String> {
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    serde_json::from_value(v).map_err(|e| e.to_string())
}

fn read(path: &Path) -> Result<String, FixtureError> {
    let r = if path == Path::new("-") {
        std::io::read_to_string(std::io::stdin())
    } else {
        std::fs::read_to_string(path)
    };
    r.map_err(|e| FixtureError::Read {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

/// Fixture files (`*.json`) directly under `dir`, sorted.
pub fn discover(dir: &Path) -> Result<Vec<PathBuf>, FixtureError> {
    let rd = std::fs::read_dir(dir).map_err(|e| FixtureError::Read {
        path: dir.to_owned(),
        reason: e.to_string(),
    })?;
    let mut out: Vec<PathBuf> = rd
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json") && p.is_file())
        .collect();
    out.sort();
    Ok(out)
}
