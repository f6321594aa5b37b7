//! Fixture files: a TSSCallbackRequest exactly as on the wire plus what the
//! policy is expected to answer. `send`, `eval`, `test`, `bench` and the
//! recorder share this format; a bare TSSCallbackRequest also loads.
//!
//! On the wire `request_detail` and `extra_info` are JSON documents inside
//! JSON strings. A fixture may write them as plain objects instead, for
//! people to read and edit; they are then serialised (compact JSON) into
//! strings, as the node sends them. [`derive`] makes a new fixture from an
//! existing one with some fields changed, in that readable form.

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
    parse_fixture(path, &text)
}

/// [`load_fixture`] of text already read; `path` names it in errors.
pub fn parse_fixture(path: &Path, text: &str) -> Result<Fixture, FixtureError> {
    let format = |reason: String| FixtureError::Format {
        path: path.to_owned(),
        reason,
    };
    let file: FixtureFile = serde_json::from_str(text).map_err(|e| format(e.to_string()))?;
    let wire = wire_form(file.request.get()).map_err(format)?;
    let f = Fixture {
        request: lenient_request(&wire).map_err(format)?,
        wire: wire.into_bytes(),
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
    let wire = wire_form(probe.request.map_or(text.trim(), RawValue::get)).map_err(format)?;
    let request = lenient_request(&wire).map_err(format)?;
    Ok((wire.into_bytes(), request))
}

/// The embedded documents a TSS Node sends as JSON strings.
pub const EMBEDDED: [&str; 2] = ["request_detail", "extra_info"];

/// The request text as the node would send it: unchanged when its
/// embedded documents are strings (the exact bytes, repeated keys and
/// all), else re-serialised with each object or array among them turned
/// into its compact JSON string.
fn wire_form(raw: &str) -> Result<String, String> {
    let mut v: serde_json::Value = serde_json::from_str(raw).map_err(|e| e.to_string())?;
    let Some(obj) = v.as_object_mut() else {
        return Ok(raw.to_owned());
    };
    let mut changed = false;
    for key in EMBEDDED {
        if let Some(doc) = obj.get_mut(key).filter(|d| d.is_object() || d.is_array()) {
            *doc = serde_json::Value::String(doc.to_string());
            changed = true;
        }
    }
    if changed {
        Ok(v.to_string())
    } else {
        Ok(raw.to_owned())
    }
}

/// One change [`derive`] makes: set a dotted path to a JSON value, or
/// remove it.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Set(String, serde_json::Value),
    /// Set from command-line text (`--set PATH=TEXT`): JSON, or a string
    /// when it is not valid JSON; a number written over a string stays the
    /// string as written (`amount=2.50` gives `"2.50"`: Cobo's amounts are
    /// decimal strings).
    Text(String, String),
    Unset(String),
}

impl Change {
    /// The value a [`Change::Text`] sets over `current`.
    fn text_value(text: &str, current: Option<&serde_json::Value>) -> serde_json::Value {
        match serde_json::from_str::<serde_json::Value>(text) {
            Ok(serde_json::Value::Number(_)) if current.is_some_and(|c| c.is_string()) => {
                serde_json::Value::String(text.trim().to_owned())
            }
            Ok(v) => v,
            Err(_) => serde_json::Value::String(text.to_owned()),
        }
    }
}

/// Fixture keys beside `request` that a change may set (`--set
/// received_at_ms=...`, `--set history=[...]`); every other path starts
/// at the request.
pub const FIXTURE_KEYS: [&str; 3] = ["received_at_ms", "verified_by", "history"];

/// What [`derive_with`] does with the base fixture's raw transaction.
#[derive(Debug, Clone, Copy)]
pub enum RawTx<'a> {
    /// Keep `unsigned_raw_tx` and `msg_hash_list` as they are, whatever
    /// changed (for tampered REJECT fixtures).
    Keep,
    /// Rebuild them with these chain and token tables when the description
    /// changed in a way the bytes state (destination, amount, token,
    /// selected UTXOs); see [`crate::derive::encode`].
    Follow(&'a crate::derive::DeriveConfig),
    /// No tables (the policy did not load: why): a change the bytes must
    /// follow is reported and the bytes are kept.
    Unavailable(&'a str),
}

/// A derived fixture and what the tool has to say about it.
#[derive(Debug, Clone, PartialEq)]
pub struct Derived {
    pub text: String,
    /// One line each: what was rebuilt, or why the bytes were kept.
    pub notes: Vec<String>,
}

/// A new fixture's text from `base` (fixture file text or a bare request):
/// its request with `changes` applied, and `expect`. Paths are dotted and
/// start at the request (`request_id`, `extra_info.transaction.fee`,
/// `request_detail.msg_hash_list.0`); inside `request_detail` and
/// `extra_info` they reach into the embedded documents, which the new
/// fixture writes as objects. The request gets a fresh `request_id`
/// unless a change sets one, so the base and the new fixture can both be
/// sent to one server. The raw transaction is kept as it is.
pub fn derive(
    base: &str,
    changes: &[Change],
    expect: Expect,
    description: &str,
) -> Result<String, String> {
    derive_with(base, changes, expect, description, RawTx::Keep).map(|d| d.text)
}

/// [`derive`], with the fixture's own keys ([`FIXTURE_KEYS`]) settable and
/// the raw transaction treated as `raw` says: with [`RawTx::Follow`], a
/// change of what the bytes state rebuilds `unsigned_raw_tx` and
/// `msg_hash_list` (unless a change sets either itself), or, when the change
/// cannot be followed, keeps them and says why in `notes`.
pub fn derive_with(
    base: &str,
    changes: &[Change],
    expect: Expect,
    description: &str,
    raw: RawTx<'_>,
) -> Result<Derived, String> {
    #[derive(Deserialize)]
    struct Probe {
        request: Option<serde_json::Value>,
    }
    let whole: serde_json::Value = serde_json::from_str(base).map_err(|e| e.to_string())?;
    let (mut request, is_fixture) = match serde_json::from_value::<Probe>(whole.clone()) {
        Ok(Probe { request: Some(r) }) => (r, true),
        _ => (whole.clone(), false),
    };
    let obj = request
        .as_object_mut()
        .ok_or("the request is not a JSON object")?;
    for key in EMBEDDED {
        if let Some(serde_json::Value::String(text)) = obj.get(key) {
            let doc: serde_json::Value = serde_json::from_str(text)
                .map_err(|e| format!("`{key}` is not a JSON document: {e}"))?;
            obj.insert(key.to_owned(), doc);
        }
    }
    let before = request.clone();
    let mut top = serde_json::Value::Object(
        FIXTURE_KEYS
            .iter()
            .filter(|_| is_fixture)
            .filter_map(|k| whole.get(*k).map(|v| ((*k).to_owned(), v.clone())))
            .collect(),
    );
    let mut id_set = false;
    let mut bytes_set = false;
    for c in changes {
        let path = match c {
            Change::Set(p, _) | Change::Text(p, _) | Change::Unset(p) => p.as_str(),
        };
        let first = path.split('.').next().unwrap_or_default();
        let target = if FIXTURE_KEYS.contains(&first) {
            &mut top
        } else {
            &mut request
        };
        bytes_set |= RAW_TX_PATHS.iter().any(|t| overlaps(path, t));
        match c {
            Change::Set(path, value) => {
                id_set |= path == "request_id";
                set_path(target, path, value.clone())?;
            }
            Change::Text(path, text) => {
                id_set |= path == "request_id";
                let value = Change::text_value(text, get_path(target, path));
                set_path(target, path, value)?;
            }
            Change::Unset(path) => unset_path(target, path)?,
        }
    }
    let top = checked_fixture_keys(top)?;
    if !id_set && let Some(id) = request.get("request_id").and_then(|v| v.as_str()) {
        let fresh = format!("{id}-{:08x}", rand::random::<u32>());
        request["request_id"] = serde_json::Value::String(fresh);
    }
    let mut notes = Vec::new();
    if !bytes_set {
        follow_raw_tx(&before, &mut request, raw, &mut notes);
    }
    // Written field by field: a JSON map would sort `expect` first.
    let mut fields: Vec<(&str, serde_json::Value)> = Vec::new();
    if !description.is_empty() {
        fields.push(("description", description.into()));
    }
    fields.push(("request", request));
    fields.push((
        "expect",
        serde_json::to_value(&expect).map_err(|e| e.to_string())?,
    ));
    for key in FIXTURE_KEYS {
        if let Some(v) = top.get(key) {
            fields.push((key, v.clone()));
        }
    }
    let mut text = String::from("{\n");
    for (i, (k, v)) in fields.iter().enumerate() {
        let value = serde_json::to_string_pretty(v).map_err(|e| e.to_string())?;
        text.push_str(&format!("  \"{k}\": {}", value.replace('\n', "\n  ")));
        text.push_str(if i + 1 < fields.len() { ",\n" } else { "\n" });
    }
    text.push_str("}\n");
    Ok(Derived { text, notes })
}

/// Paths whose change is a hand-made raw transaction: derive then leaves
/// the bytes and hashes as set.
const RAW_TX_PATHS: [&str; 2] = [
    "extra_info.transaction.raw_tx_info.unsigned_raw_tx",
    "request_detail.msg_hash_list",
];

/// Whether one dotted path is the other or lies inside it.
fn overlaps(a: &str, b: &str) -> bool {
    let inside = |x: &str, y: &str| x.strip_prefix(y).is_some_and(|rest| rest.starts_with('.'));
    a == b || inside(a, b) || inside(b, a)
}

/// The fixture's own keys after the changes, checked as `test` reads them:
/// `received_at_ms` a unix-ms integer (an RFC 3339 time or a digit string
/// is converted), `verified_by` a string, `history` a list of ledger rows
/// (an empty one is dropped).
fn checked_fixture_keys(
    top: serde_json::Value,
) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    let serde_json::Value::Object(mut top) = top else {
        return Err("the fixture's own keys are not an object".to_owned());
    };
    if let Some(v) = top.get_mut("received_at_ms") {
        let ms = match &*v {
            serde_json::Value::Number(n) => n.as_i64(),
            serde_json::Value::String(s) => s.parse::<i64>().ok().or_else(|| {
                chrono::DateTime::parse_from_rfc3339(s)
                    .ok()
                    .map(|t| t.timestamp_millis())
            }),
            _ => None,
        }
        .ok_or_else(|| {
            format!("received_at_ms: `{v}` is not a unix time in milliseconds or an RFC 3339 time")
        })?;
        *v = ms.into();
    }
    if let Some(v) = top.get("verified_by")
        && !v.is_string()
    {
        return Err(format!("verified_by: `{v}` is not a key name"));
    }
    if let Some(v) = top.get("history") {
        let rows: Vec<HistoryEntry> = serde_json::from_value(v.clone()).map_err(|e| {
            format!("history: {e} (a list of {{limit, group, amount, ago, repeat}})")
        })?;
        if rows.is_empty() {
            top.remove("history");
        }
    }
    Ok(top)
}

/// Rebuilds the request's raw transaction after the changes from
/// `before`, as `raw` says, noting what happened.
fn follow_raw_tx(
    before: &serde_json::Value,
    request: &mut serde_json::Value,
    raw: RawTx<'_>,
    notes: &mut Vec<String>,
) {
    use crate::derive::encode::{Follow, follow};
    let empty = crate::derive::DeriveConfig::default();
    let (cfg, unavailable) = match raw {
        RawTx::Keep => return,
        RawTx::Follow(cfg) => (cfg, None),
        RawTx::Unavailable(why) => (&empty, Some(why)),
    };
    let doc = |r: &serde_json::Value, k: &str| r.get(k).cloned().unwrap_or_default();
    let outcome = follow(
        &doc(before, "request_detail"),
        &doc(before, "extra_info"),
        &doc(request, "request_detail"),
        &doc(request, "extra_info"),
        cfg,
    );
    match outcome {
        Follow::Unchanged => {}
        Follow::Rebuilt {
            unsigned_raw_tx,
            msg_hash_list,
            notes: more,
        } => {
            let n = msg_hash_list.len();
            if let Some(slot) =
                request.pointer_mut("/extra_info/transaction/raw_tx_info/unsigned_raw_tx")
            {
                *slot = unsigned_raw_tx.into();
            }
            if let Some(detail) = request
                .get_mut("request_detail")
                .and_then(|d| d.as_object_mut())
            {
                detail.insert("msg_hash_list".to_owned(), msg_hash_list.into());
            }
            notes.push(format!(
                "rebuilt the raw transaction for the new description: unsigned_raw_tx and msg_hash_list ({n} hash{}) recomputed",
                if n == 1 { "" } else { "es" }
            ));
            notes.extend(more);
        }
        Follow::Cannot(why) => {
            let why = unavailable.map_or(why, |u| {
                format!("the policy's chain tables are unavailable ({u})")
            });
            notes.push(format!(
                "warning: kept the base fixture's unsigned_raw_tx and msg_hash_list, which do not follow the change: {why}; the new fixture's bytes disagree with its description (--keep-raw-tx keeps them without this warning)"
            ));
        }
    }
}

fn segments(path: &str) -> Result<Vec<&str>, String> {
    let segs: Vec<&str> = path.split('.').collect();
    if segs.iter().any(|s| s.is_empty()) {
        return Err(format!("`{path}` is not a dotted path"));
    }
    Ok(segs)
}

/// Sets `path`, creating objects on the way; an array index must exist
/// (or be its length, to append).
fn set_path(
    root: &mut serde_json::Value,
    path: &str,
    value: serde_json::Value,
) -> Result<(), String> {
    let segs = segments(path)?;
    let mut cur = root;
    for (i, seg) in segs.iter().enumerate() {
        let last = i + 1 == segs.len();
        cur = match cur {
            serde_json::Value::Array(a) => {
                let n: usize = seg
                    .parse()
                    .map_err(|_| format!("`{path}`: `{seg}` is not an array index"))?;
                if n == a.len() {
                    a.push(serde_json::Value::Null);
                }
                a.get_mut(n)
                    .ok_or_else(|| format!("`{path}`: index {n} is past the array's end"))?
            }
            serde_json::Value::Object(o) => o
                .entry((*seg).to_owned())
                .or_insert(serde_json::Value::Object(Default::default())),
            other => {
                if last {
                    return Err(format!("`{path}`: its parent is not an object or array"));
                }
                *other = serde_json::Value::Object(Default::default());
                other
                    .as_object_mut()
                    .map(|o| {
                        o.entry((*seg).to_owned())
                            .or_insert(serde_json::Value::Object(Default::default()))
                    })
                    .ok_or_else(|| format!("`{path}`: cannot create `{seg}`"))?
            }
        };
        if last {
            *cur = value;
            return Ok(());
        }
    }
    Ok(())
}

/// The value at `path`, if there is one.
fn get_path<'a>(root: &'a serde_json::Value, path: &str) -> Option<&'a serde_json::Value> {
    path.split('.').try_fold(root, |cur, seg| match cur {
        serde_json::Value::Object(o) => o.get(seg),
        serde_json::Value::Array(a) => seg.parse::<usize>().ok().and_then(|n| a.get(n)),
        _ => None,
    })
}

fn unset_path(root: &mut serde_json::Value, path: &str) -> Result<(), String> {
    let segs = segments(path)?;
    let (last, parents) = segs.split_last().ok_or("empty path")?;
    let mut cur = root;
    for seg in parents {
        cur = match cur {
            serde_json::Value::Object(o) => o.get_mut(*seg),
            serde_json::Value::Array(a) => seg.parse::<usize>().ok().and_then(|n| a.get_mut(n)),
            _ => None,
        }
        .ok_or_else(|| format!("`{path}`: `{seg}` does not exist"))?;
    }
    let removed = match cur {
        serde_json::Value::Object(o) => o.remove(*last).is_some(),
        serde_json::Value::Array(a) => match last.parse::<usize>() {
            Ok(n) if n < a.len() => {
                a.remove(n);
                true
            }
            _ => false,
        },
        _ => false,
    };
    if removed {
        Ok(())
    } else {
        Err(format!("`{path}` does not exist"))
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"{"description": "d", "request": {"request_id": "r-1", "request_type": 2,
        "request_detail": "{\"msg_hash_list\":[\"aa\"]}",
        "extra_info": "{\"transaction\":{\"fee\":{\"gas\":\"1\"},\"to\":[\"x\",\"y\"]}}"},
        "expect": {"action": "APPROVE"}, "received_at_ms": 5,
        "history": [{"limit": "l", "ago": "1h"}]}"#;

    #[test]
    fn embedded_objects_become_the_strings_a_node_sends() {
        let objects = r#"{"request": {"request_id": "r-1", "request_type": 2,
            "request_detail": {"msg_hash_list": ["aa"]},
            "extra_info": {"transaction": {"to": ["x", "y"], "fee": {"gas": "1"}}}},
            "expect": {"action": "APPROVE"}}"#;
        let f = parse_fixture(Path::new("f.json"), objects).unwrap();
        assert_eq!(f.request.request_detail, r#"{"msg_hash_list":["aa"]}"#);
        assert_eq!(
            f.request.extra_info,
            r#"{"transaction":{"fee":{"gas":"1"},"to":["x","y"]}}"#
        );
        let strings = parse_fixture(Path::new("f.json"), BASE).unwrap();
        assert_eq!(f.request, strings.request);
        // String form: the exact bytes, untouched.
        assert!(
            String::from_utf8(strings.wire)
                .unwrap()
                .contains("\"request_type\": 2,\n")
        );
        // A number where a document belongs is not a document: refused.
        let bad = BASE.replace(
            r#""request_detail": "{\"msg_hash_list\":[\"aa\"]}""#,
            r#""request_detail": 7"#,
        );
        assert!(parse_fixture(Path::new("f.json"), &bad).is_err());
    }

    #[test]
    fn derive_changes_paths_inside_embedded_documents_and_keeps_the_rest() {
        let reject = Expect {
            action: Action::Reject,
            status: 0,
            reasons: vec!["fee".into()],
        };
        let text = derive(
            BASE,
            &[
                Change::Set("extra_info.transaction.fee.gas".into(), "9".into()),
                Change::Set("extra_info.transaction.to.2".into(), "z".into()),
                Change::Unset("extra_info.transaction.to.0".into()),
                Change::Set("request_detail.new.deep".into(), serde_json::json!(true)),
            ],
            reject.clone(),
            "more gas",
        )
        .unwrap();
        assert!(
            text.starts_with("{\n  \"description\": \"more gas\",\n  \"request\": {"),
            "{text}"
        );
        let f = parse_fixture(Path::new("new.json"), &text).unwrap();
        let extra: serde_json::Value = serde_json::from_str(&f.request.extra_info).unwrap();
        assert_eq!(extra["transaction"]["fee"]["gas"], "9");
        assert_eq!(extra["transaction"]["to"], serde_json::json!(["y", "z"]));
        let detail: serde_json::Value = serde_json::from_str(&f.request.request_detail).unwrap();
        assert_eq!(detail["new"]["deep"], true);
        assert_eq!(detail["msg_hash_list"], serde_json::json!(["aa"]));
        assert!(f.request.request_id.starts_with("r-1-") && f.request.request_id.len() == 12);
        assert_eq!(f.expect.reasons, reject.reasons);
        assert_eq!(f.received_at_ms, Some(5));
        assert_eq!(f.history.len(), 1);

        let keep = derive(
            BASE,
            &[Change::Set("request_id".into(), "mine".into())],
            reject.clone(),
            "",
        )
        .unwrap();
        assert_eq!(
            parse_fixture(Path::new("k.json"), &keep)
                .unwrap()
                .request
                .request_id,
            "mine"
        );
        for bad in [
            Change::Unset("extra_info.nope".into()),
            Change::Set("extra_info.transaction.to.9".into(), "q".into()),
            Change::Set("a..b".into(), "q".into()),
        ] {
            assert!(
                derive(BASE, std::slice::from_ref(&bad), reject.clone(), "").is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn derive_sets_the_fixtures_own_keys_and_reads_values_as_typed() {
        let approve = Expect {
            action: Action::Approve,
            status: 0,
            reasons: vec![],
        };
        let rows = serde_json::json!([{"limit": "l2", "group": {"wallet": "w"}, "amount": "5",
            "ago": "20h", "repeat": 3}]);
        let text = derive(
            BASE,
            &[
                Change::Text("received_at_ms".into(), "1764000000000".into()),
                Change::Set("history".into(), rows.clone()),
                Change::Text("history.0.ago".into(), "2h".into()),
                Change::Text("verified_by".into(), "node-1".into()),
                // A number over a string stays the string as written.
                Change::Text("extra_info.transaction.fee.gas".into(), "2.50".into()),
                Change::Text("extra_info.transaction.fee.new".into(), "7".into()),
            ],
            approve.clone(),
            "",
        )
        .unwrap();
        let f = parse_fixture(Path::new("n.json"), &text).unwrap();
        assert_eq!(f.received_at_ms, Some(1_764_000_000_000));
        assert_eq!(f.verified_by.as_deref(), Some("node-1"));
        assert_eq!(f.history.len(), 1);
        assert_eq!((f.history[0].ago.as_str(), f.history[0].repeat), ("2h", 3));
        let extra: serde_json::Value = serde_json::from_str(&f.request.extra_info).unwrap();
        assert_eq!(extra["transaction"]["fee"]["gas"], "2.50");
        assert_eq!(extra["transaction"]["fee"]["new"], 7);
        // The request itself did not get the fixture's keys.
        let req: serde_json::Value = serde_json::from_slice(&f.wire).unwrap();
        assert!(req.get("received_at_ms").is_none() && req.get("history").is_none());
        // Fixture keys keep their place after `expect`.
        let at = |k: &str| text.find(&format!("\n  \"{k}\"")).unwrap();
        assert!(at("expect") < at("verified_by") && at("received_at_ms") < at("history"));

        let rfc = derive(
            BASE,
            &[
                Change::Text("received_at_ms".into(), "2025-11-24T16:00:00Z".into()),
                Change::Unset("history".into()),
            ],
            approve.clone(),
            "",
        )
        .unwrap();
        let f = parse_fixture(Path::new("r.json"), &rfc).unwrap();
        assert_eq!(f.received_at_ms, Some(1_764_000_000_000));
        assert!(f.history.is_empty() && !rfc.contains("history"));
        for bad in [
            Change::Text("received_at_ms".into(), "yesterday".into()),
            Change::Set("history".into(), serde_json::json!([{"limit": "l"}])),
            Change::Set(
                "history".into(),
                serde_json::json!({"limit": "l", "ago": "1h"}),
            ),
            Change::Set("verified_by".into(), serde_json::json!(3)),
        ] {
            let err = derive(BASE, std::slice::from_ref(&bad), approve.clone(), "").unwrap_err();
            assert!(
                err.starts_with("received_at_ms")
                    || err.starts_with("history")
                    || err.starts_with("verified_by"),
                "{bad:?}: {err}"
            );
        }
    }

    #[test]
    fn raw_tx_paths_set_by_hand_are_left_as_set() {
        for (a, b, want) in [
            (
                "request_detail.msg_hash_list",
                "request_detail.msg_hash_list",
                true,
            ),
            (
                "request_detail.msg_hash_list.0",
                "request_detail.msg_hash_list",
                true,
            ),
            (
                "extra_info",
                "extra_info.transaction.raw_tx_info.unsigned_raw_tx",
                true,
            ),
            (
                "request_detail.msg_hash_lists",
                "request_detail.msg_hash_list",
                false,
            ),
            (
                "extra_info.transaction.destination",
                "extra_info.transaction.raw_tx_info",
                false,
            ),
        ] {
            assert_eq!(overlaps(a, b), want, "{a} {b}");
        }
    }
}
