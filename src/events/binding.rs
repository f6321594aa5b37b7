//! Which approval an event is about. A request id names an attempt, not a
//! task: the upstream can send another payload, or another kind of task,
//! under an id tss-gate approved, and the node then reports on that attempt
//! under the same id. An event may move an approval (release or keep its
//! spending-limit hold) only when it is about the approved attempt: of the
//! approved kind and, where it carries its request (`data.request_detail`,
//! `data.extra_info`), carrying the approved one.
//!
//! Owns the request digests kept with an approval (inside its `facts`, key
//! [`FACTS_KEY`], so neither store's schema changes and older records read
//! as before) and the comparison of an event against them.
//!
//! Decisions:
//! - A document is compared by the SHA-256 of its canonical form (object
//!   keys sorted, no whitespace, serde_json's spelling of strings and
//!   numbers), so key order and spacing, which the node may change when it
//!   re-serialises the request into the event, do not matter; any value
//!   that differs does.
//! - The approved side is what the policy judged (`input.detail`,
//!   `input.extra`), where an empty string already reads as `{}`. The
//!   event's side reads the same way: an object as is, a string as the
//!   JSON it holds (repeated keys refused), `""` as `{}`. Absent or `null`
//!   means the event does not carry it: nothing to compare. Anything else
//!   cannot be the approved request and is a mismatch.
//! - An approval recorded before these digests existed has none: only its
//!   kind is compared (see docs/events.md).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::model::{self, Event, Kind};
use crate::store::ApprovalRecord;

/// The key of [`RequestDigests`] in an approval's `facts` object.
pub const FACTS_KEY: &str = "request";

/// What the approved request carried, as digests of canonical forms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestDigests {
    /// Hex SHA-256 of the canonical `request_detail`.
    pub request_detail: String,
    /// Hex SHA-256 of the canonical `extra_info`.
    pub extra_info: String,
}

impl RequestDigests {
    /// Of the documents the policy judged (`detail`, `extra`).
    pub fn of(detail: &Value, extra: &Value) -> Self {
        RequestDigests {
            request_detail: digest(detail),
            extra_info: digest(extra),
        }
    }

    /// Of a callback request's two embedded documents, read as the
    /// pipeline reads them. Err when they do not parse (such a request is
    /// never approved).
    pub fn of_request(req: &crate::protocol::CallbackRequest) -> Result<Self, String> {
        let p = crate::input::parse_callback_request(req, crate::input::DEFAULT_MAX_DEPTH)
            .map_err(|e| e.to_string())?;
        Ok(Self::of(&p.detail, &p.extra))
    }
}

/// The canonical text of `v`: object keys sorted, no whitespace.
pub fn canonical(v: &Value) -> String {
    let mut out = String::new();
    write_canonical(v, &mut out);
    out
}

fn write_canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut entries: Vec<(&String, &Value)> = m.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(v, out);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, v) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(v, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// Hex SHA-256 of the canonical text of `v`.
pub fn digest(v: &Value) -> String {
    hex::encode(Sha256::digest(canonical(v).as_bytes()))
}

/// `facts` (a JSON object) with `d` added under [`FACTS_KEY`].
pub fn with_digests(facts: &str, d: &RequestDigests) -> Result<String, String> {
    let mut obj: Map<String, Value> =
        serde_json::from_str(facts).map_err(|e| format!("approval facts: {e}"))?;
    let d = serde_json::to_value(d).map_err(|e| e.to_string())?;
    obj.insert(FACTS_KEY.to_owned(), d);
    serde_json::to_string(&obj).map_err(|e| e.to_string())
}

/// The digests recorded with an approval. Ok(None): a record from before
/// they were kept. Err: facts that cannot be read.
pub fn stored(facts: &str) -> Result<Option<RequestDigests>, String> {
    let v: Value = serde_json::from_str(facts).map_err(|e| e.to_string())?;
    match v.get(FACTS_KEY) {
        None => Ok(None),
        Some(d) => RequestDigests::deserialize(d)
            .map(Some)
            .map_err(|e| e.to_string()),
    }
}

/// What an event says of one of its request's documents.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Carried {
    /// Absent or null: the event does not say.
    Absent,
    Digest(String),
    /// Present, and not a JSON document: cannot be the approved one.
    Unreadable(&'static str),
}

fn carried(v: Option<&Value>) -> Carried {
    match v {
        None | Some(Value::Null) => Carried::Absent,
        Some(o @ Value::Object(_)) => Carried::Digest(digest(o)),
        Some(Value::String(s)) if s.trim().is_empty() => {
            Carried::Digest(digest(&Value::Object(Map::new())))
        }
        Some(Value::String(s)) => match model::parse_embedded(s) {
            Ok(o @ Value::Object(_)) => Carried::Digest(digest(&o)),
            Ok(_) => Carried::Unreadable("is not a JSON object"),
            Err(model::ModelError::DuplicateKey(_)) => Carried::Unreadable("repeats a key"),
            Err(_) => Carried::Unreadable("is not JSON"),
        },
        Some(_) => Carried::Unreadable("is neither an object nor a string"),
    }
}

/// Why an event is not about the approval it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// One of [`MISMATCH_CODES`].
    pub code: &'static str,
    pub detail: String,
}

/// Every [`Mismatch::code`].
pub const MISMATCH_CODES: [&str; 4] = [
    "request_type_mismatch",
    "request_detail_mismatch",
    "extra_info_mismatch",
    "approval_unreadable",
];

/// Why `ev` (of `kind`) is not about the approved attempt `a`; empty when,
/// as far as the event tells, it is.
pub fn mismatches(kind: Kind, a: &ApprovalRecord, ev: &Event) -> Vec<Mismatch> {
    let want = kind.request_type_name();
    if a.request_type != want {
        return vec![Mismatch {
            code: "request_type_mismatch",
            detail: format!(
                "the event is about a {want}, tss-gate approved a {} under this request id",
                a.request_type
            ),
        }];
    }
    let approved = match stored(&a.facts) {
        Ok(Some(d)) => d,
        Ok(None) => return Vec::new(),
        Err(e) => {
            return vec![Mismatch {
                code: "approval_unreadable",
                detail: format!("the approval's record cannot be read: {}", model::show(&e)),
            }];
        }
    };
    let data = ev.data();
    let mut out = Vec::new();
    for (field, code, want) in [
        (
            "request_detail",
            "request_detail_mismatch",
            &approved.request_detail,
        ),
        ("extra_info", "extra_info_mismatch", &approved.extra_info),
    ] {
        let detail = match carried(data.and_then(|d| d.get(field))) {
            Carried::Absent => continue,
            Carried::Digest(d) if d == *want => continue,
            Carried::Digest(_) => format!("the event's {field} is not the approved request's"),
            Carried::Unreadable(why) => format!("the event's {field} {why}"),
        };
        out.push(Mismatch { code, detail });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(kind: &str, detail: &Value, extra: &Value) -> ApprovalRecord {
        ApprovalRecord {
            request_id: "r".into(),
            request_type: kind.into(),
            at_ms: 1,
            digest: "ab".into(),
            facts: with_digests("{\"x\":1}", &RequestDigests::of(detail, extra)).unwrap(),
        }
    }

    fn event(data: Value) -> Event {
        let doc = json!({
            "event_id": "e", "created_timestamp": 1, "node_id": "n",
            "event_type": "request.keysign.failed", "data": data,
        });
        model::parse(&serde_json::to_vec(&doc).unwrap()).unwrap()
    }

    fn codes(a: &ApprovalRecord, data: Value) -> Vec<&'static str> {
        mismatches(Kind::KeySign, a, &event(data))
            .into_iter()
            .map(|m| m.code)
            .collect()
    }

    #[test]
    fn canonical_form_ignores_key_order_and_spacing_only() {
        let a: Value =
            serde_json::from_str(r#"{"b": [1, {"d": "x", "c": 2}], "a": null}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"a":null,"b":[1,{"c":2,"d":"x"}]}"#).unwrap();
        assert_eq!(canonical(&a), r#"{"a":null,"b":[1,{"c":2,"d":"x"}]}"#);
        assert_eq!(digest(&a), digest(&b));
        for other in [
            json!({"a": null, "b": [{"c": 2, "d": "x"}, 1]}),
            json!({"a": null, "b": [1, {"c": "2", "d": "x"}]}),
            json!({"a": null, "b": [1, {"c": 2, "d": "x"}], "e": 1}),
            json!({"b": [1, {"c": 2, "d": "x"}]}),
        ] {
            assert_ne!(digest(&a), digest(&other), "{other}");
        }
        // Escapes are decoded before comparing.
        let e: Value = serde_json::from_str(r#"{"\u0061":"\u00e9"}"#).unwrap();
        assert_eq!(digest(&e), digest(&json!({"a": "é"})));
    }

    #[test]
    fn the_approved_request_matches_however_it_is_carried() {
        let detail = json!({"msg_hash_list": ["11"], "signature_type": 1});
        let extra = json!({"transaction": {"id": "t"}});
        let a = record("KEYSIGN", &detail, &extra);
        for data in [
            json!({"request_id": "r"}),
            json!({"request_id": "r", "request_detail": null, "extra_info": null}),
            json!({"request_id": "r", "request_detail": detail, "extra_info": extra.to_string()}),
            json!({"request_id": "r", "request_detail": detail.to_string(), "extra_info": extra}),
            json!({"request_id": "r", "request_detail": {"signature_type": 1, "msg_hash_list": ["11"]}}),
        ] {
            assert_eq!(codes(&a, data.clone()), Vec::<&str>::new(), "{data}");
        }
    }

    #[test]
    fn another_request_under_the_id_does_not_match() {
        let detail = json!({"msg_hash_list": ["11"], "signature_type": 1});
        let extra = json!({"transaction": {"id": "t"}});
        let a = record("KEYSIGN", &detail, &extra);
        let other = json!({"msg_hash_list": ["22"], "signature_type": 1});
        let cases = [
            (
                json!({"request_id": "r", "request_detail": other}),
                vec!["request_detail_mismatch"],
            ),
            (
                json!({"request_id": "r", "extra_info": "{\"transaction\":{\"id\":\"u\"}}"}),
                vec!["extra_info_mismatch"],
            ),
            (
                json!({"request_id": "r", "request_detail": {}, "extra_info": ""}),
                vec!["request_detail_mismatch", "extra_info_mismatch"],
            ),
            (
                json!({"request_id": "r", "request_detail": 5}),
                vec!["request_detail_mismatch"],
            ),
            (
                json!({"request_id": "r", "request_detail": "[1]"}),
                vec!["request_detail_mismatch"],
            ),
            (
                json!({"request_id": "r", "extra_info": "{\"transaction\":1,\"transaction\":{\"id\":\"t\"}}"}),
                vec!["extra_info_mismatch"],
            ),
            (
                json!({"request_id": "r", "extra_info": "not json"}),
                vec!["extra_info_mismatch"],
            ),
        ];
        for (data, want) in cases {
            assert_eq!(codes(&a, data.clone()), want, "{data}");
        }
        // Another kind under the id: nothing else is looked at.
        let keygen = record("KEYGEN", &detail, &extra);
        assert_eq!(
            codes(
                &keygen,
                json!({"request_id": "r", "request_detail": detail})
            ),
            vec!["request_type_mismatch"]
        );
    }

    #[test]
    fn older_records_compare_the_kind_and_broken_ones_match_nothing() {
        let mut a = record("KEYSIGN", &json!({}), &json!({}));
        a.facts = "{\"signature_type\":1}".into();
        assert_eq!(stored(&a.facts), Ok(None));
        assert!(codes(&a, json!({"request_id": "r", "request_detail": {"any": 1}})).is_empty());
        a.facts = "{\"request\":{\"request_detail\":5}}".into();
        assert_eq!(
            codes(&a, json!({"request_id": "r"})),
            vec!["approval_unreadable"]
        );
        a.facts = "not json".into();
        assert_eq!(
            codes(&a, json!({"request_id": "r"})),
            vec!["approval_unreadable"]
        );
    }

    #[test]
    fn digests_join_the_facts_and_leave_the_rest_readable() {
        let d = RequestDigests::of(&json!({"a": 1}), &json!({}));
        let f = with_digests("{\"signature_type\":1,\"items\":[]}", &d).unwrap();
        let v: Value = serde_json::from_str(&f).unwrap();
        assert_eq!(v["signature_type"], 1);
        assert_eq!(stored(&f), Ok(Some(d.clone())));
        assert!(with_digests("[]", &d).is_err());
        let req = crate::protocol::CallbackRequest {
            request_id: "r".into(),
            request_type: 1,
            request_detail: "{ \"a\" : 1 }".into(),
            extra_info: String::new(),
        };
        assert_eq!(RequestDigests::of_request(&req), Ok(d));
    }
}
