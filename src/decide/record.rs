//! Recording real traffic as fixtures (`record_dir`, off by default): each
//! verified request is written as a [`crate::fixture::Fixture`] with the
//! decision it got, so `tss-gate test --fixtures DIR` replays it.
//!
//! Only the decoded request and what the token told us (the key name) are
//! written: never the token, its signature or any key. Files are created
//! with `create_new`, named `<unix_ms>-<request_id prefix>-<seq><rand>.json`
//! with the id reduced to `[A-Za-z0-9_-]`, so names are safe and unique.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::decide::steps::Admitted;
use crate::fixture::{Expect, Fixture};
use crate::policy::Decision;
use crate::protocol::{Action, CallbackRequest, CallbackResponse};

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("record_dir `{path}`: {reason}")]
    Dir { path: PathBuf, reason: String },
    #[error("cannot write fixture `{path}`: {reason}")]
    Write { path: PathBuf, reason: String },
    #[error("request cannot be recorded: {0}")]
    Request(String),
}

/// Writes fixtures into one directory; shared by all request handlers.
#[derive(Debug)]
pub struct Recorder {
    dir: PathBuf,
    /// Per-process sequence, so two requests in the same millisecond with
    /// the same id still get distinct names.
    seq: AtomicU64,
}

/// How much of the request_id goes into a file name.
const ID_PREFIX: usize = 40;

impl Recorder {
    /// Creates `dir` if needed; refuses a path that is not a directory.
    pub fn new(dir: &Path) -> Result<Self, RecordError> {
        crate::private_fs::create_dir_all(dir).map_err(|e| RecordError::Dir {
            path: dir.to_owned(),
            reason: e.to_string(),
        })?;
        Ok(Self {
            dir: dir.to_owned(),
            seq: AtomicU64::new(0),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes one verified request with the answer it got.
    pub fn record(
        &self,
        admitted: &Admitted,
        response: &CallbackResponse,
        decision: Option<&Decision>,
        received_at_ms: i64,
    ) -> Result<PathBuf, RecordError> {
        let fixture = fixture_for(admitted, response, decision, received_at_ms)?;
        let mut body =
            serde_json::to_vec_pretty(&fixture).map_err(|e| RecordError::Request(e.to_string()))?;
        body.push(b'\n');
        let id = sanitise(&fixture.request.request_id);
        // A handful of attempts: a collision needs the same ms, id, sequence
        // and random suffix, so more than one retry means something else.
        let mut last = String::new();
        for _ in 0..4 {
            let n = self.seq.fetch_add(1, Ordering::Relaxed);
            let r: u16 = rand::random();
            let path = self
                .dir
                .join(format!("{received_at_ms}-{id}-{n:06}{r:04x}.json"));
            match crate::private_fs::create_new(&path) {
                Ok(mut f) => {
                    return f.write_all(&body).map(|()| path.clone()).map_err(|e| {
                        RecordError::Write {
                            path,
                            reason: e.to_string(),
                        }
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    last = e.to_string();
                }
                Err(e) => {
                    return Err(RecordError::Write {
                        path,
                        reason: e.to_string(),
                    });
                }
            }
        }
        Err(RecordError::Write {
            path: self.dir.clone(),
            reason: last,
        })
    }
}

/// The fixture for one decided request: the request as received, the key
/// that verified it, the receive time, and the answer as the expectation.
pub fn fixture_for(
    admitted: &Admitted,
    response: &CallbackResponse,
    decision: Option<&Decision>,
    received_at_ms: i64,
) -> Result<Fixture, RecordError> {
    let request: CallbackRequest =
        serde_json::from_slice(admitted.raw()).map_err(|e| RecordError::Request(e.to_string()))?;
    let action = response.action.unwrap_or(Action::Reject);
    let reasons = if response.is_approval() {
        Vec::new()
    } else {
        match decision {
            Some(d) if !d.reasons.is_empty() => d.reasons.clone(),
            _ if !response.error.is_empty() => vec![response.error.clone()],
            _ => Vec::new(),
        }
    };
    let received = chrono::DateTime::from_timestamp_millis(received_at_ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default();
    Ok(Fixture {
        description: format!(
            "recorded {received}: {} {} from `{}`",
            admitted.request.request_type.name(),
            action.as_str(),
            admitted.token.key_name
        ),
        request,
        expect: Expect {
            action,
            status: response.status.code(),
            reasons,
        },
        verified_by: Some(admitted.token.key_name.clone()),
        received_at_ms: Some(received_at_ms),
        history: Vec::new(),
        wire: Vec::new(),
    })
}

/// The request_id reduced to a safe file-name fragment.
fn sanitise(id: &str) -> String {
    let s: String = id
        .chars()
        .take(ID_PREFIX)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() { "no-id".into() } else { s }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_become_safe_file_names() {
        assert_eq!(sanitise("../../etc/passwd"), "______etc_passwd");
        assert_eq!(sanitise(""), "no-id");
        assert_eq!(sanitise(&"a".repeat(100)).len(), ID_PREFIX);
        assert_eq!(sanitise("r-1_ok"), "r-1_ok");
    }
}
