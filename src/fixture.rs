//! Fixture files: a TSSCallbackRequest exactly as on the wire plus what the
//! policy is expected to answer. `send`, `eval`, `test`, `bench` and the
//! recorder share this format; a bare TSSCallbackRequest also loads.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::protocol::{Action, CallbackRequest};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fixture {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    pub request: CallbackRequest,
    pub expect: Expect,
    /// Name of the TSS Node key the request is treated as verified by.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified_by: Option<String>,
    /// Receive time to evaluate at (unix ms), so time-based rules are repeatable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received_at_ms: Option<i64>,
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
    let f: Fixture = serde_json::from_str(&text).map_err(|e| FixtureError::Format {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
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

pub fn request_from_text(path: &Path, text: &str) -> Result<CallbackRequest, FixtureError> {
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| FixtureError::Format {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    let req = v.get("request").cloned().unwrap_or(v);
    serde_json::from_value(req).map_err(|e| FixtureError::Format {
        path: path.to_owned(),
        reason: e.to_string(),
    })
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
