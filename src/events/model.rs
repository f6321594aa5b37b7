//! The TSS Node's event document (TSSEvent, PROTOCOL.md "Events"): strict
//! parsing of the decoded `package_data` into an [`Event`], and the bounded
//! labels (event type, request status, failure reason) that metrics may use.
//!
//! Everything in an event is attacker-influenced: the envelope fields are
//! bounded and checked, every object must have distinct keys (a repeated
//! key would let tss-gate read another value than the node's own parser),
//! and error messages show at most [`SHOWN_CHARS`] characters of input,
//! escaped. What is not interpreted here (`request_detail`, `result`, ...)
//! stays in [`Event::doc`] for the audit and for storage.
//!
//! Decisions:
//! - An event type outside `ping` and `request.{kind}.{phase}` is accepted
//!   as [`EventType::Unknown`], so a newer node's events are stored, not
//!   refused; only its envelope is checked, and its `data.request_id` is
//!   kept when it is a valid one.
//! - A `request.*` event must name its request (`data.request_id`), and the
//!   `data_type`/`request_type` it carries, when present, must be of the
//!   same kind as its event type: a keysign event carrying KeyGen data is
//!   refused rather than applied to the keysign's approval.
//! - `failed_reason` is free text for the logs; it is kept to its first
//!   [`MAX_FAILED_REASON_CHARS`] characters rather than refused, because
//!   refusing a failure event would keep its spending-limit hold.

#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// Longest `event_id`, in characters (printable ASCII only).
pub const MAX_EVENT_ID_CHARS: usize = 128;
/// Longest `node_id`, in characters.
pub const MAX_NODE_ID_CHARS: usize = 256;
/// Longest `event_type`, in characters.
pub const MAX_EVENT_TYPE_CHARS: usize = 128;
/// Longest `data.request_id`, in characters.
pub const MAX_REQUEST_ID_CHARS: usize = 256;
/// `failed_reason` is cut to this many characters.
pub const MAX_FAILED_REASON_CHARS: usize = 1024;
/// How much attacker input an error message shows, in characters.
pub const SHOWN_CHARS: usize = 64;

/// Why an event document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    #[error("event is not valid JSON: {0}")]
    NotJson(String),
    #[error("event is not a JSON object")]
    NotObject,
    /// Already escaped and bounded.
    #[error("duplicate key `{0}` in the event")]
    DuplicateKey(String),
    #[error("`{field}` {why}")]
    Field {
        field: &'static str,
        why: &'static str,
    },
    /// `data` is of another kind than the event type says; both shown
    /// escaped and bounded.
    #[error("event type `{event_type}` carries {field} `{found}`")]
    KindMismatch {
        event_type: String,
        field: &'static str,
        found: String,
    },
}

/// The kind of task an event reports on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    KeyGen,
    KeyReshare,
    KeySign,
    KeyShareSign,
}

impl Kind {
    /// The callback's request type name (`RequestType::name`).
    pub fn request_type_name(self) -> &'static str {
        match self {
            Kind::KeyGen => "KEYGEN",
            Kind::KeyReshare => "KEYRESHARE",
            Kind::KeySign => "KEYSIGN",
            Kind::KeyShareSign => "KEYSHARESIGN",
        }
    }

    /// The callback's numeric `request_type`.
    pub fn request_type_code(self) -> i64 {
        match self {
            Kind::KeyGen => 1,
            Kind::KeySign => 2,
            Kind::KeyReshare => 3,
            Kind::KeyShareSign => 5,
        }
    }

    /// `data.data_type` of this kind.
    pub fn data_type(self) -> &'static str {
        match self {
            Kind::KeyGen => "KeyGen",
            Kind::KeyReshare => "KeyReshare",
            Kind::KeySign => "KeySign",
            Kind::KeyShareSign => "KeyShareSign",
        }
    }

    fn from_event_word(s: &str) -> Option<Kind> {
        match s {
            "keygen" => Some(Kind::KeyGen),
            "keyreshare" => Some(Kind::KeyReshare),
            "keysign" => Some(Kind::KeySign),
            "keysharesign" => Some(Kind::KeyShareSign),
            _ => None,
        }
    }
}

/// Where the task is, by the event type's last word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    Created,
    Updated,
    Failed,
    Succeeded,
}

impl Phase {
    fn from_event_word(s: &str) -> Option<Phase> {
        match s {
            "created" => Some(Phase::Created),
            "updated" => Some(Phase::Updated),
            "failed" => Some(Phase::Failed),
            "succeeded" => Some(Phase::Succeeded),
            _ => None,
        }
    }
}

/// `event_type`, parsed. Anything but the documented spellings (exact
/// case) is `Unknown`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    Ping,
    Request(Kind, Phase),
    Unknown,
}

impl EventType {
    /// Never fails: an undocumented spelling is [`EventType::Unknown`].
    pub fn parse(s: &str) -> EventType {
        if s == "ping" {
            return EventType::Ping;
        }
        let mut words = s.split('.');
        match (words.next(), words.next(), words.next(), words.next()) {
            (Some("request"), Some(k), Some(p), None) => {
                match (Kind::from_event_word(k), Phase::from_event_word(p)) {
                    (Some(k), Some(p)) => EventType::Request(k, p),
                    _ => EventType::Unknown,
                }
            }
            _ => EventType::Unknown,
        }
    }

    /// A metric label from a fixed set of 18: the documented spelling, or
    /// `unknown`.
    pub fn label(&self) -> &'static str {
        use Kind::*;
        use Phase::*;
        match self {
            EventType::Ping => "ping",
            EventType::Unknown => "unknown",
            EventType::Request(kind, phase) => match (kind, phase) {
                (KeyGen, Created) => "request.keygen.created",
                (KeyGen, Updated) => "request.keygen.updated",
                (KeyGen, Failed) => "request.keygen.failed",
                (KeyGen, Succeeded) => "request.keygen.succeeded",
                (KeyReshare, Created) => "request.keyreshare.created",
                (KeyReshare, Updated) => "request.keyreshare.updated",
                (KeyReshare, Failed) => "request.keyreshare.failed",
                (KeyReshare, Succeeded) => "request.keyreshare.succeeded",
                (KeySign, Created) => "request.keysign.created",
                (KeySign, Updated) => "request.keysign.updated",
                (KeySign, Failed) => "request.keysign.failed",
                (KeySign, Succeeded) => "request.keysign.succeeded",
                (KeyShareSign, Created) => "request.keysharesign.created",
                (KeyShareSign, Updated) => "request.keysharesign.updated",
                (KeyShareSign, Failed) => "request.keysharesign.failed",
                (KeyShareSign, Succeeded) => "request.keysharesign.succeeded",
            },
        }
    }
}

/// One accepted event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The node's id of this delivery's event; the same on a redelivery.
    pub event_id: String,
    /// `created_timestamp`, unix milliseconds, as the node wrote it.
    pub created_ms: i64,
    pub node_id: String,
    pub event_type: EventType,
    /// `event_type` as sent, for storage (bounded by
    /// [`MAX_EVENT_TYPE_CHARS`]); never a metric label.
    pub raw_type: String,
    /// `data.request_id`: the callback request this event is about. Always
    /// present for `request.*` events.
    pub request_id: Option<String>,
    /// `data.request_status`.
    pub status: Option<i64>,
    /// `data.failed_reason`, cut to [`MAX_FAILED_REASON_CHARS`]; None when
    /// absent or empty.
    pub failed_reason: Option<String>,
    /// The whole document as parsed.
    pub doc: Value,
}

impl Event {
    /// `data.result`, unless absent or null.
    pub fn result(&self) -> Option<&Value> {
        self.data()?.get("result").filter(|v| !v.is_null())
    }

    /// `data`, when it is an object.
    pub fn data(&self) -> Option<&Value> {
        self.doc.get("data").filter(|v| v.is_object())
    }
}

/// Parses a TSSEvent (the decoded `package_data`); see the module doc for
/// what is refused.
pub fn parse(bytes: &[u8]) -> Result<Event, ModelError> {
    let doc = parse_unique(bytes)?;
    let Value::Object(top) = &doc else {
        return Err(ModelError::NotObject);
    };
    let event_id = match top.get("event_id").and_then(Value::as_str) {
        Some(s)
            if !s.is_empty()
                && s.len() <= MAX_EVENT_ID_CHARS
                && s.bytes().all(|b| b.is_ascii_graphic() || b == b' ') =>
        {
            s.to_owned()
        }
        _ => {
            return Err(ModelError::Field {
                field: "event_id",
                why: "must be a non-empty string of at most 128 printable ASCII characters",
            });
        }
    };
    let created_ms = match top.get("created_timestamp").and_then(Value::as_i64) {
        Some(t) if t >= 0 => t,
        _ => {
            return Err(ModelError::Field {
                field: "created_timestamp",
                why: "must be a non-negative integer (unix milliseconds)",
            });
        }
    };
    let node_id = bounded_text(top.get("node_id"), MAX_NODE_ID_CHARS).ok_or(ModelError::Field {
        field: "node_id",
        why: "must be a string of at most 256 characters without control characters",
    })?;
    let raw_type =
        bounded_text(top.get("event_type"), MAX_EVENT_TYPE_CHARS).ok_or(ModelError::Field {
            field: "event_type",
            why: "must be a string of at most 128 characters without control characters",
        })?;
    let event_type = EventType::parse(&raw_type);
    let data = match top.get("data") {
        None | Some(Value::Null) => None,
        Some(Value::Object(d)) => Some(d),
        Some(_) => {
            return Err(ModelError::Field {
                field: "data",
                why: "must be an object when present",
            });
        }
    };
    let mut ev = Event {
        event_id,
        created_ms,
        node_id,
        event_type,
        raw_type,
        request_id: None,
        status: None,
        failed_reason: None,
        doc: Value::Null,
    };
    match (event_type, data) {
        (EventType::Request(kind, _), Some(d)) => {
            ev.request_id = Some(request_id(d.get("request_id")).ok_or(ModelError::Field {
                field: "data.request_id",
                why: "must be a non-empty string of at most 256 characters \
                      without control characters",
            })?);
            check_kind(kind, &ev.raw_type, d)?;
            ev.status = match d.get("request_status") {
                None | Some(Value::Null) => None,
                Some(v) => Some(v.as_i64().ok_or(ModelError::Field {
                    field: "data.request_status",
                    why: "must be an integer",
                })?),
            };
            ev.failed_reason = match d.get("failed_reason") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) if s.is_empty() => None,
                Some(Value::String(s)) => Some(s.chars().take(MAX_FAILED_REASON_CHARS).collect()),
                Some(_) => {
                    return Err(ModelError::Field {
                        field: "data.failed_reason",
                        why: "must be a string",
                    });
                }
            };
        }
        (EventType::Request(..), None) => {
            return Err(ModelError::Field {
                field: "data",
                why: "must be an object for a request event",
            });
        }
        (EventType::Unknown, Some(d)) => ev.request_id = request_id(d.get("request_id")),
        _ => {}
    }
    ev.doc = doc;
    Ok(ev)
}

/// `data_type` and `request_type`, where present, must name `kind`.
fn check_kind(
    kind: Kind,
    raw_type: &str,
    d: &serde_json::Map<String, Value>,
) -> Result<(), ModelError> {
    let mismatch = |field, found: &Value| ModelError::KindMismatch {
        event_type: show(raw_type),
        field,
        found: show(&match found {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        }),
    };
    match d.get("data_type") {
        None | Some(Value::Null) => {}
        Some(v) if v.as_str() == Some(kind.data_type()) => {}
        Some(v) => return Err(mismatch("data_type", v)),
    }
    match d.get("request_type") {
        None | Some(Value::Null) => {}
        Some(v) if v.as_i64() == Some(kind.request_type_code()) => {}
        Some(v) => return Err(mismatch("request_type", v)),
    }
    Ok(())
}

fn request_id(v: Option<&Value>) -> Option<String> {
    bounded_text(v, MAX_REQUEST_ID_CHARS).filter(|s| !s.is_empty())
}

/// A string of at most `max` characters and no control characters (it
/// reaches logs and the store).
fn bounded_text(v: Option<&Value>, max: usize) -> Option<String> {
    let s = v?.as_str()?;
    (s.chars().count() <= max && !s.chars().any(char::is_control)).then(|| s.to_owned())
}

/// A bounded label of a `request_status`: its documented name, `none`
/// when absent, `other` for an undocumented code.
pub fn status_label(status: Option<i64>) -> &'static str {
    match status {
        None => "none",
        Some(100) => "undefined",
        Some(110) => "scheduling",
        Some(120) => "initializing",
        Some(130) => "approving",
        Some(140) => "processing",
        Some(160) => "declined",
        Some(170) => "failed",
        Some(180) => "canceled",
        Some(190) => "completed",
        Some(_) => "other",
    }
}

/// Every value [`failed_reason_code`] returns.
pub const FAILED_REASON_CODES: [&str; 5] = ["declined", "canceled", "timeout", "network", "other"];

/// A bounded reason code of a task that did not complete, for metrics.
/// The node's status decides first (160 declined, 180 canceled); then the
/// first of these keyword classes found in `failed_reason`,
/// case-insensitively, in this order (so "connection refused" is a network
/// failure and "canceled after timeout" a timeout):
/// - `timeout`: timeout, timed out, deadline, expire
/// - `network`: network, connect (also disconnect, connection), unreachable, offline
/// - `declined`: declin, reject, refus, denied, deny
/// - `canceled`: cancel
///
/// and `other` for anything else, including no reason at all. The free
/// text itself only goes to the logs.
pub fn failed_reason_code(ev: &Event) -> &'static str {
    match ev.status {
        Some(160) => return "declined",
        Some(180) => return "canceled",
        _ => {}
    }
    const CLASSES: [(&str, &[&str]); 4] = [
        ("timeout", &["timeout", "timed out", "deadline", "expire"]),
        ("network", &["network", "connect", "unreachable", "offline"]),
        ("declined", &["declin", "reject", "refus", "denied", "deny"]),
        ("canceled", &["cancel"]),
    ];
    let Some(reason) = &ev.failed_reason else {
        return "other";
    };
    let reason = reason.to_lowercase();
    CLASSES
        .iter()
        .find(|(_, words)| words.iter().any(|w| reason.contains(w)))
        .map_or("other", |(code, _)| code)
}

/// Attacker text for an error message: at most [`SHOWN_CHARS`] characters,
/// printable ASCII kept (except `` ` ``, `"` and `\`, which could fake the
/// message's quoting), everything else as `\u{..}`.
pub(crate) fn show(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars().take(SHOWN_CHARS) {
        if (c.is_ascii_graphic() || c == ' ') && !matches!(c, '`' | '"' | '\\') {
            out.push(c);
        } else {
            out.extend(c.escape_unicode());
        }
    }
    if s.chars().nth(SHOWN_CHARS).is_some() {
        out.push('…');
    }
    out
}

// --- refusing repeated keys ---------------------------------------------------
// `input.rs` builds its documents with a path-reporting variant of this; an
// event only needs to know whether any object repeats a key (compared by
// decoded text), so this pass checks and the document is parsed by
// serde_json afterwards.

/// A JSON document embedded in an event as a string (`data.extra_info`),
/// with every object's keys distinct, as the event itself.
pub(crate) fn parse_embedded(text: &str) -> Result<Value, ModelError> {
    parse_unique(text.as_bytes())
}

fn parse_unique(bytes: &[u8]) -> Result<Value, ModelError> {
    let found = std::cell::RefCell::new(None::<String>);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let checked = NoRepeats(&found)
        .deserialize(&mut de)
        .and_then(|()| de.end());
    match (checked, found.into_inner()) {
        (Err(_), Some(key)) => Err(ModelError::DuplicateKey(show(&key))),
        (Err(e), None) => Err(ModelError::NotJson(show(&e.to_string()))),
        (Ok(()), _) => {
            serde_json::from_slice(bytes).map_err(|e| ModelError::NotJson(show(&e.to_string())))
        }
    }
}

#[derive(Clone, Copy)]
struct NoRepeats<'a>(&'a std::cell::RefCell<Option<String>>);

impl<'de> DeserializeSeed<'de> for NoRepeats<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for NoRepeats<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any valid JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(self)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            map.next_value_seed(self)?;
            if seen.contains(&key) {
                *self.0.borrow_mut() = Some(key);
                return Err(de::Error::custom("duplicate key"));
            }
            seen.insert(key);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    const KINDS: [(&str, Kind, &str, i64); 4] = [
        ("keygen", Kind::KeyGen, "KeyGen", 1),
        ("keysign", Kind::KeySign, "KeySign", 2),
        ("keyreshare", Kind::KeyReshare, "KeyReshare", 3),
        ("keysharesign", Kind::KeyShareSign, "KeyShareSign", 5),
    ];
    const PHASES: [(&str, Phase); 4] = [
        ("created", Phase::Created),
        ("updated", Phase::Updated),
        ("failed", Phase::Failed),
        ("succeeded", Phase::Succeeded),
    ];

    fn event(event_type: &str, data: Value) -> Value {
        json!({
            "event_id": "ev-1",
            "created_timestamp": 1_760_000_000_000_i64,
            "node_id": "coboAbc",
            "event_type": event_type,
            "data": data,
        })
    }

    fn keysign_data() -> Value {
        json!({
            "data_type": "KeySign",
            "request_id": "req-1",
            "request_type": 2,
            "request_status": 190,
            "extra_info": "{}",
            "failed_reason": "",
            "request_detail": {},
            "result": {"signatures": [], "signature_type": 1, "tss_protocol": 1},
        })
    }

    fn parse_value(v: &Value) -> Result<Event, ModelError> {
        parse(&serde_json::to_vec(v).unwrap())
    }

    fn field_err(v: &Value) -> &'static str {
        match parse_value(v) {
            Err(ModelError::Field { field, .. }) => field,
            other => panic!("expected a field error, got {other:?}"),
        }
    }

    #[test]
    fn every_documented_event_type_parses_to_its_enum_and_label() {
        for (kw, kind, data_type, code) in KINDS {
            for (pw, phase) in PHASES {
                let raw = format!("request.{kw}.{pw}");
                let data = json!({"data_type": data_type, "request_id": "r", "request_type": code});
                let ev = parse_value(&event(&raw, data)).unwrap();
                assert_eq!(ev.event_type, EventType::Request(kind, phase));
                assert_eq!(ev.event_type.label(), raw);
                assert_eq!(ev.raw_type, raw);
                assert_eq!(ev.request_id.as_deref(), Some("r"));
            }
        }
        let ping =
            json!({"event_id": "p", "created_timestamp": 1, "node_id": "n", "event_type": "ping"});
        let ev = parse_value(&ping).unwrap();
        assert_eq!(
            (ev.event_type, ev.event_type.label()),
            (EventType::Ping, "ping")
        );
        assert_eq!(ev.request_id, None);
        let ev = parse_value(&event("ping", Value::Null)).unwrap();
        assert_eq!(ev.event_type, EventType::Ping);
    }

    #[test]
    fn keeps_the_fields_and_the_document() {
        let doc = event("request.keysign.succeeded", keysign_data());
        let ev = parse_value(&doc).unwrap();
        assert_eq!(ev.event_id, "ev-1");
        assert_eq!(ev.created_ms, 1_760_000_000_000);
        assert_eq!(ev.node_id, "coboAbc");
        assert_eq!(ev.status, Some(190));
        assert_eq!(ev.failed_reason, None);
        assert_eq!(ev.doc, doc);
        assert_eq!(ev.result().unwrap()["signature_type"], 1);
        let mut no_result = keysign_data();
        no_result["result"] = Value::Null;
        let ev = parse_value(&event("request.keysign.failed", no_result)).unwrap();
        assert_eq!(ev.result(), None);
    }

    #[test]
    fn repeated_keys_are_refused_at_any_depth() {
        let top = br#"{"event_id":"a","event_id":"b","created_timestamp":1,"node_id":"n","event_type":"ping"}"#;
        assert_eq!(parse(top), Err(ModelError::DuplicateKey("event_id".into())));
        let nested = br#"{"event_id":"a","created_timestamp":1,"node_id":"n",
            "event_type":"request.keysign.succeeded",
            "data":{"request_id":"r","result":{"signatures":[{"msg_hash":"aa","msg_hash":"bb"}]}}}"#;
        assert_eq!(
            parse(nested),
            Err(ModelError::DuplicateKey("msg_hash".into()))
        );
        // Compared as decoded text.
        let escaped = br#"{"node_id":"n","node_\u0069d":"m","event_id":"a","created_timestamp":1,"event_type":"ping"}"#;
        assert!(matches!(parse(escaped), Err(ModelError::DuplicateKey(_))));
        // The same key in sibling objects is fine.
        let siblings = br#"{"event_id":"a","created_timestamp":1,"node_id":"n","event_type":"x",
            "data":{"l":[{"k":1},{"k":2}]}}"#;
        assert!(parse(siblings).is_ok());
    }

    #[test]
    fn request_events_must_name_their_request() {
        let mut data = keysign_data();
        data.as_object_mut().unwrap().remove("request_id");
        assert_eq!(
            field_err(&event("request.keysign.succeeded", data)),
            "data.request_id"
        );
        for bad in [json!(""), json!(7), json!("x".repeat(257)), json!("a\nb")] {
            let mut data = keysign_data();
            data["request_id"] = bad;
            assert_eq!(
                field_err(&event("request.keysign.failed", data)),
                "data.request_id"
            );
        }
        assert_eq!(
            field_err(&event("request.keygen.created", Value::Null)),
            "data"
        );
        let mut doc = event("request.keygen.created", Value::Null);
        doc.as_object_mut().unwrap().remove("data");
        assert_eq!(field_err(&doc), "data");
        assert_eq!(field_err(&event("ping", json!([1]))), "data");
    }

    #[test]
    fn data_of_another_kind_is_refused() {
        let mut data = keysign_data();
        data["data_type"] = json!("KeyGen");
        let err = parse_value(&event("request.keysign.succeeded", data)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "event type `request.keysign.succeeded` carries data_type `KeyGen`"
        );
        let mut data = keysign_data();
        data["request_type"] = json!(1);
        assert!(matches!(
            parse_value(&event("request.keysign.succeeded", data)),
            Err(ModelError::KindMismatch {
                field: "request_type",
                ..
            })
        ));
        let mut data = keysign_data();
        data["request_type"] = json!("2");
        assert!(parse_value(&event("request.keysign.succeeded", data)).is_err());
        // Absent kind fields are not a mismatch.
        let data = json!({"request_id": "r"});
        assert!(parse_value(&event("request.keysign.updated", data)).is_ok());
    }

    #[test]
    fn unknown_types_are_accepted_as_unknown() {
        for t in [
            "request.keysign.exploded",
            "request.keymint.created",
            "Request.keysign.created",
            "request.keysign.created.more",
            "pong",
            "",
        ] {
            let ev =
                parse_value(&event(t, json!({"request_id": "r", "data_type": "KeyGen"}))).unwrap();
            assert_eq!(ev.event_type, EventType::Unknown, "{t}");
            assert_eq!(ev.event_type.label(), "unknown");
            assert_eq!(ev.raw_type, t);
            assert_eq!(ev.request_id.as_deref(), Some("r"));
        }
        // An unknown event's uninterpreted request_id is dropped, not refused.
        let ev = parse_value(&event("x", json!({"request_id": 5}))).unwrap();
        assert_eq!(ev.request_id, None);
    }

    #[test]
    fn envelope_fields_are_bounded_and_typed() {
        let with = |k: &str, v: Value| {
            let mut d = event("ping", Value::Null);
            d[k] = v;
            d
        };
        let cases = [
            ("event_id", json!("e".repeat(129))),
            ("event_id", json!("")),
            ("event_id", json!("tab\there")),
            ("event_id", json!("é")),
            ("event_id", json!(1)),
            ("created_timestamp", json!(1.5)),
            ("created_timestamp", json!("1")),
            ("created_timestamp", json!(-1)),
            ("node_id", json!("n".repeat(257))),
            ("node_id", json!("a\u{1b}[31m")),
            ("node_id", Value::Null),
            ("event_type", json!("t".repeat(129))),
            ("event_type", json!(["ping"])),
        ];
        for (k, v) in cases {
            assert_eq!(field_err(&with(k, v.clone())), k, "{k} = {v}");
        }
        assert!(parse_value(&with("event_id", json!("e".repeat(128)))).is_ok());
        assert!(parse_value(&with("node_id", json!("ü".repeat(256)))).is_ok());
        let mut missing = event("ping", Value::Null);
        missing.as_object_mut().unwrap().remove("node_id");
        assert_eq!(field_err(&missing), "node_id");
        assert_eq!(parse(b"[1]"), Err(ModelError::NotObject));
        assert!(matches!(parse(b"{\"a\":"), Err(ModelError::NotJson(_))));
        assert!(matches!(parse(b"{} {}"), Err(ModelError::NotJson(_))));
    }

    #[test]
    fn status_and_failed_reason_are_typed_and_bounded() {
        let mut data = keysign_data();
        data["request_status"] = json!("190");
        assert_eq!(
            field_err(&event("request.keysign.failed", data)),
            "data.request_status"
        );
        let mut data = keysign_data();
        data["failed_reason"] = json!({"why": 1});
        assert_eq!(
            field_err(&event("request.keysign.failed", data)),
            "data.failed_reason"
        );
        let mut data = keysign_data();
        data["failed_reason"] = json!("x".repeat(5000));
        let ev = parse_value(&event("request.keysign.failed", data)).unwrap();
        assert_eq!(ev.failed_reason.unwrap().len(), MAX_FAILED_REASON_CHARS);
    }

    #[test]
    fn error_messages_show_little_input_escaped() {
        let key = format!("k\u{202e}`{}", "x".repeat(10_000));
        let doc = format!(
            r#"{{"{key}":1,"{key}":2,"event_id":"a","created_timestamp":1,"node_id":"n","event_type":"ping"}}"#
        );
        let msg = parse(doc.as_bytes()).unwrap_err().to_string();
        assert!(msg.len() < 200, "{msg}");
        assert!(msg.contains("\\u{202e}\\u{60}"), "{msg}");
        let mut data = keysign_data();
        data["data_type"] = json!("y".repeat(10_000));
        let msg = parse_value(&event("request.keysign.created", data))
            .unwrap_err()
            .to_string();
        assert!(msg.len() < 200, "{msg}");
    }

    #[test]
    fn status_labels_are_bounded() {
        let known = [
            "none",
            "undefined",
            "scheduling",
            "initializing",
            "approving",
            "processing",
            "declined",
            "failed",
            "canceled",
            "completed",
            "other",
        ];
        for s in [
            None,
            Some(100),
            Some(140),
            Some(160),
            Some(170),
            Some(180),
            Some(190),
        ] {
            assert!(known.contains(&status_label(s)));
        }
        assert_eq!(status_label(Some(150)), "other");
        assert_eq!(status_label(Some(-1)), "other");
        assert_eq!(status_label(Some(170)), "failed");
    }

    #[test]
    fn failed_reason_codes() {
        let ev = |status: Option<i64>, reason: Option<&str>| {
            let mut e = parse_value(&event("request.keysign.failed", keysign_data())).unwrap();
            e.status = status;
            e.failed_reason = reason.map(str::to_owned);
            failed_reason_code(&e)
        };
        assert_eq!(ev(Some(160), Some("network down")), "declined");
        assert_eq!(ev(Some(180), None), "canceled");
        assert_eq!(ev(Some(170), Some("context deadline exceeded")), "timeout");
        assert_eq!(ev(Some(170), Some("Request Timed Out")), "timeout");
        assert_eq!(
            ev(Some(170), Some("dial tcp: connection refused")),
            "network"
        );
        assert_eq!(ev(Some(170), Some("node offline")), "network");
        assert_eq!(
            ev(Some(170), Some("rejected by callback server")),
            "declined"
        );
        assert_eq!(ev(Some(170), Some("task canceled by user")), "canceled");
        assert_eq!(ev(Some(170), Some("mta round 3 failed")), "other");
        assert_eq!(ev(Some(170), None), "other");
    }

    proptest! {
        #[test]
        fn labels_stay_in_their_fixed_sets(t in ".{0,40}", status in any::<i64>(), reason in ".{0,80}") {
            let mut all = vec!["ping".to_owned(), "unknown".to_owned()];
            for (kw, _, _, _) in KINDS {
                for (pw, _) in PHASES {
                    all.push(format!("request.{kw}.{pw}"));
                }
            }
            let label = EventType::parse(&t).label();
            prop_assert!(all.iter().any(|l| l == label));
            let data = json!({"request_id": "r", "request_status": status, "failed_reason": reason});
            if let Ok(ev) = parse_value(&event("request.keysign.failed", data)) {
                prop_assert!(FAILED_REASON_CODES.contains(&failed_reason_code(&ev)));
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse(&bytes);
        }
    }
}
