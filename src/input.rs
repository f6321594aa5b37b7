//! Turning a verified request into the Rego input document. Everything here is
//! pure: bytes and facts in, data out. Every field is documented in
//! `docs/input.md` and `docs/input.schema.json` (which `check` and `test`
//! use to warn about paths that do not exist); changing a field name here is
//! a breaking change for every policy, and the schema must follow.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::map::Entry;
use serde_json::{Map, Number, Value, json};

use crate::protocol::{CallbackRequest, RequestType};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("package_data is not standard base64")]
    PackageNotBase64,
    #[error("request is not valid JSON: {0}")]
    NotJson(String),
    #[error("request is not a TSSCallbackRequest: {0}")]
    BadShape(String),
    #[error("`{field}` is not a JSON document: {reason}")]
    EmbeddedNotJson { field: &'static str, reason: String },
    #[error("`{0}` must hold a JSON object")]
    EmbeddedNotObject(&'static str),
    #[error("request JSON is nested deeper than {0} levels")]
    TooDeep(usize),
    /// An object repeats a key. serde_json would keep the last occurrence;
    /// the TSS Node's parser may read another, so the policy could judge a
    /// value the node does not use. `key` and `path` are already escaped and
    /// bounded (they are attacker text); `path` is empty at the top level.
    #[error("duplicate key `{key}` in {document}{}", at_path(.path))]
    DuplicateKey {
        document: &'static str,
        key: String,
        path: String,
    },
}

fn at_path(path: &str) -> String {
    if path.is_empty() {
        String::new()
    } else {
        format!(" at {path}")
    }
}

impl RequestError {
    /// Stable, bounded label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            RequestError::PackageNotBase64 => "bad_package_data",
            RequestError::TooDeep(_) => "too_deep",
            RequestError::DuplicateKey { .. } => "duplicate_key",
            _ => "bad_request",
        }
    }
}

/// A request whose embedded documents have been parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedRequest {
    pub request_id: String,
    pub request_type: RequestType,
    pub request_type_code: i64,
    pub detail: Value,
    pub extra: Value,
}

/// What the token told us, for the input document.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TokenFacts {
    pub key_name: String,
    pub iss: Option<String>,
    pub iat: Option<u64>,
    pub exp: Option<u64>,
}

/// Version of the input document's shape (`docs/input.md`), written into
/// each decision-log line so a replay knows what it reads. Bump on a change
/// a policy written for the old shape could misread (a field renamed,
/// retyped or given another meaning); adding a field does not.
pub const INPUT_SCHEMA_VERSION: u32 = 1;

/// Default JSON nesting limit; real requests nest about 8 deep.
pub const DEFAULT_MAX_DEPTH: usize = 64;

/// Decodes `package_data` (standard base64, padding optional) to bytes.
pub fn decode_package(package_data: &str) -> Result<Vec<u8>, RequestError> {
    let s = package_data.trim();
    STANDARD
        .decode(s)
        .or_else(|_| STANDARD_NO_PAD.decode(s))
        .map_err(|_| RequestError::PackageNotBase64)
}

/// Best-effort `request_id` of a request that failed to parse, so that even an
/// error answer can echo it.
pub fn salvage_request_id(bytes: &[u8]) -> String {
    serde_json::from_slice::<Value>(bytes)
        .ok()
        .and_then(|v| {
            v.get("request_id")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .map(|id| id.chars().take(128).collect())
        .unwrap_or_default()
}

/// Parses the TSSCallbackRequest bytes and its two embedded JSON strings.
/// Every object, at any depth, of the request and of both embedded documents
/// must have distinct keys ([`RequestError::DuplicateKey`]).
pub fn parse_request(bytes: &[u8], max_depth: usize) -> Result<ParsedRequest, RequestError> {
    check_depth(bytes, max_depth)?;
    let doc = parse_unique("request", bytes).map_err(|e| match e {
        Unique::Duplicate(d) => d,
        Unique::Json(e) => RequestError::NotJson(e.to_string()),
    })?;
    let req: CallbackRequest =
        serde_json::from_value(doc).map_err(|e| RequestError::BadShape(e.to_string()))?;
    parse_callback_request(&req, max_depth)
}

/// Parses the embedded documents of an already-decoded request.
pub fn parse_callback_request(
    req: &CallbackRequest,
    max_depth: usize,
) -> Result<ParsedRequest, RequestError> {
    let detail = parse_embedded("request_detail", &req.request_detail, max_depth)?;
    let extra = parse_embedded("extra_info", &req.extra_info, max_depth)?;
    Ok(ParsedRequest {
        request_id: req.request_id.clone(),
        request_type: RequestType::from_code(req.request_type),
        request_type_code: req.request_type,
        detail,
        extra,
    })
}

fn parse_embedded(field: &'static str, s: &str, max_depth: usize) -> Result<Value, RequestError> {
    if s.trim().is_empty() {
        // PING carries empty strings; an absent document is an empty object so
        // that policies can always write `input.detail.x` without a type error.
        return Ok(Value::Object(Map::new()));
    }
    check_depth(s.as_bytes(), max_depth)?;
    match parse_unique_str(field, s) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err(RequestError::EmbeddedNotObject(field)),
        Err(Unique::Duplicate(d)) => Err(d),
        Err(Unique::Json(e)) => Err(RequestError::EmbeddedNotJson {
            field,
            reason: e.to_string(),
        }),
    }
}

// --- one-pass parsing that refuses repeated keys -----------------------------

#[derive(Debug)]
enum Unique {
    Duplicate(RequestError),
    Json(serde_json::Error),
}

/// Where a repeated key was found. The seed that finds it records the key;
/// every enclosing object or array adds its own key or index while the
/// error unwinds, so the path costs nothing on the success path.
#[derive(Default)]
struct Dup {
    key: String,
    /// Innermost segment first.
    path: Vec<Seg>,
}

enum Seg {
    Key(String),
    Index(usize),
}

/// Parses `bytes` as one JSON document into a [`Value`], exactly as
/// `serde_json::from_slice::<Value>` does, except that an object with a
/// repeated key (compared by decoded text, so `"a"` and `"\u0061"` are the
/// same key) is an error instead of keeping the last occurrence.
fn parse_unique(document: &'static str, bytes: &[u8]) -> Result<Value, Unique> {
    parse_unique_from(document, serde_json::Deserializer::from_slice(bytes))
}

/// [`parse_unique`] of text already known to be UTF-8 (an embedded
/// document): serde_json then skips validating each string again.
fn parse_unique_str(document: &'static str, text: &str) -> Result<Value, Unique> {
    parse_unique_from(document, serde_json::Deserializer::from_str(text))
}

fn parse_unique_from<'de, R: serde_json::de::Read<'de>>(
    document: &'static str,
    mut de: serde_json::Deserializer<R>,
) -> Result<Value, Unique> {
    let found = std::cell::RefCell::new(None::<Dup>);
    let parsed = UniqueValue(&found)
        .deserialize(&mut de)
        .and_then(|v| de.end().map(|()| v));
    match (parsed, found.into_inner()) {
        (Err(_), Some(dup)) => Err(Unique::Duplicate(RequestError::DuplicateKey {
            document,
            key: show_key(&dup.key),
            path: show_path(&dup.path),
        })),
        (Err(e), None) => Err(Unique::Json(e)),
        (Ok(v), _) => Ok(v),
    }
}

/// The seed and visitor that build a [`Value`] and refuse repeated keys.
#[derive(Clone, Copy)]
struct UniqueValue<'a>(&'a std::cell::RefCell<Option<Dup>>);

impl UniqueValue<'_> {
    /// Adds an enclosing segment to the path of a duplicate found below;
    /// a syntax error below leaves nothing to add to.
    fn enclose(self, seg: impl FnOnce() -> Seg) {
        if let Some(d) = self.0.borrow_mut().as_mut() {
            d.path.push(seg());
        }
    }
}

impl<'de> DeserializeSeed<'de> for UniqueValue<'_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for UniqueValue<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any valid JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        self.deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        loop {
            match seq.next_element_seed(self) {
                Ok(Some(v)) => items.push(v),
                Ok(None) => return Ok(Value::Array(items)),
                Err(e) => {
                    let i = items.len();
                    self.enclose(|| Seg::Index(i));
                    return Err(e);
                }
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut obj = Map::new();
        // Keys decode (escapes resolved) before they are compared.
        while let Some(key) = map.next_key::<String>()? {
            let value = match map.next_value_seed(self) {
                Ok(v) => v,
                Err(e) => {
                    self.enclose(|| Seg::Key(key));
                    return Err(e);
                }
            };
            match obj.entry(key) {
                Entry::Vacant(slot) => {
                    slot.insert(value);
                }
                Entry::Occupied(slot) => {
                    *self.0.borrow_mut() = Some(Dup {
                        key: slot.key().clone(),
                        path: Vec::new(),
                    });
                    return Err(de::Error::custom("duplicate key"));
                }
            }
        }
        Ok(Value::Object(obj))
    }
}

/// Longest key text shown, in characters of the key.
const SHOWN_KEY_CHARS: usize = 40;
/// Longest path shown, in bytes; longer paths keep their innermost end.
const SHOWN_PATH_BYTES: usize = 160;

/// Attacker text for a message: printable ASCII stays (except `` ` ``, `"`
/// and `\`, which could fake the message's own quoting), everything else
/// becomes `\u{..}`; at most [`SHOWN_KEY_CHARS`] characters, then `…`.
fn show_key(key: &str) -> String {
    let mut out = String::new();
    for (n, c) in key.chars().enumerate() {
        if n == SHOWN_KEY_CHARS {
            out.push('…');
            break;
        }
        match c {
            ' '..='~' if !matches!(c, '`' | '"' | '\\') => out.push(c),
            _ => out.push_str(&format!("\\u{{{:x}}}", u32::from(c))),
        }
    }
    out
}

/// `a.b[2].c`; a key that is not a plain name is shown as `["…"]`.
fn show_path(innermost_first: &[Seg]) -> String {
    let mut out = String::new();
    for seg in innermost_first.iter().rev() {
        match seg {
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
            Seg::Key(k) if is_plain_name(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Seg::Key(k) => out.push_str(&format!("[\"{}\"]", show_key(k))),
        }
    }
    if out.len() > SHOWN_PATH_BYTES {
        let mut cut = out.len() - SHOWN_PATH_BYTES;
        while !out.is_char_boundary(cut) {
            cut += 1;
        }
        out = format!("…{}", &out[cut..]);
    }
    out
}

fn is_plain_name(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= SHOWN_KEY_CHARS
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Counts bracket nesting without parsing, outside strings. Refusing deep
/// documents up front keeps recursion in every later consumer (serde, regorus)
/// bounded.
fn check_depth(bytes: &[u8], max_depth: usize) -> Result<(), RequestError> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in bytes {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max_depth {
                    return Err(RequestError::TooDeep(max_depth));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// Builds the Rego input document. `derived` holds facts computed from the
/// signed bytes (see `docs/derived.md`); `None` leaves `input.derived` absent.
pub fn build_input(
    req: &ParsedRequest,
    token: &TokenFacts,
    received_at_ms: i64,
    derived: Option<Value>,
) -> Value {
    let mut tok = Map::new();
    if let Some(iss) = &token.iss {
        tok.insert("iss".into(), json!(iss));
    }
    if let Some(iat) = token.iat {
        tok.insert("iat".into(), json!(iat));
    }
    if let Some(exp) = token.exp {
        tok.insert("exp".into(), json!(exp));
    }
    let received_at = chrono::DateTime::from_timestamp_millis(received_at_ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default();
    let mut doc = json!({
        "request_id": req.request_id,
        "request_type": req.request_type.name(),
        "request_type_code": req.request_type_code,
        "detail": req.detail,
        "extra": req.extra,
        "verified_by": token.key_name,
        "token": Value::Object(tok),
        "received_at_ms": received_at_ms,
        "received_at": received_at,
        // The server's decision time: the receive time unless a spending
        // limit matched, then the time its usage was read (same clock).
        "decided_at_ms": received_at_ms,
    });
    if let (Some(d), Some(obj)) = (derived, doc.as_object_mut()) {
        obj.insert("derived".into(), d);
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(t: i64, detail: &str, extra: &str) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "request_id": "r-1", "request_type": t,
            "request_detail": detail, "extra_info": extra
        }))
        .unwrap()
    }

    #[test]
    fn builds_the_documented_shape() {
        let p = parse_request(
            &req(
                2,
                r#"{"msg_hash_list":["ab"],"new_field":1}"#,
                r#"{"org":{"name":"x"}}"#,
            ),
            64,
        )
        .unwrap();
        let facts = TokenFacts {
            key_name: "node-a".into(),
            iss: Some("tss".into()),
            iat: None,
            exp: Some(10),
        };
        let doc = build_input(&p, &facts, 1_764_000_000_123, None);
        assert_eq!(doc["request_type"], "KEYSIGN");
        assert_eq!(doc["request_type_code"], 2);
        assert_eq!(
            doc["detail"]["new_field"], 1,
            "unknown fields must pass through"
        );
        assert_eq!(doc["extra"]["org"]["name"], "x");
        assert_eq!(doc["verified_by"], "node-a");
        assert_eq!(doc["token"], json!({"iss": "tss", "exp": 10}));
        assert_eq!(doc["received_at"], "2025-11-24T16:00:00.123Z");
        assert!(doc.get("derived").is_none());
    }

    #[test]
    fn unknown_and_unassigned_types_are_unknown() {
        for code in [4, 6, -1, 99] {
            let p = parse_request(&req(code, "", ""), 64).unwrap();
            assert_eq!(p.request_type, RequestType::Unknown);
            assert_eq!(p.detail, json!({}));
        }
    }

    #[test]
    fn embedded_documents_must_be_json_objects() {
        assert!(matches!(
            parse_request(&req(2, "not json", ""), 64),
            Err(RequestError::EmbeddedNotJson {
                field: "request_detail",
                ..
            })
        ));
        assert_eq!(
            parse_request(&req(2, "{}", "[1]"), 64),
            Err(RequestError::EmbeddedNotObject("extra_info"))
        );
        assert!(matches!(
            parse_request(b"{\"request_id\":1}", 64),
            Err(RequestError::BadShape(_))
        ));
        assert!(matches!(
            parse_request(b"{", 64),
            Err(RequestError::NotJson(_))
        ));
    }

    #[test]
    fn depth_is_bounded_outside_strings_only() {
        let deep = format!("{}{}", "[".repeat(70), "]".repeat(70));
        assert_eq!(
            parse_request(&req(2, &deep, ""), 64),
            Err(RequestError::TooDeep(64))
        );
        let in_string = format!(r#"{{"a":"{}"}}"#, "[".repeat(200));
        assert!(parse_request(&req(2, &in_string, ""), 64).is_ok());
    }

    fn dup_err(bytes: &[u8]) -> String {
        match parse_request(bytes, 64) {
            Err(e @ RequestError::DuplicateKey { .. }) => {
                assert_eq!(e.reason(), "duplicate_key");
                e.to_string()
            }
            other => panic!("expected a duplicate key error, got {other:?}"),
        }
    }

    #[test]
    fn a_duplicate_top_level_key_is_refused() {
        assert_eq!(
            dup_err(br#"{"request_id":"a","request_type":2,"request_id":"b","request_detail":"","extra_info":""}"#),
            "duplicate key `request_id` in request"
        );
        // Unknown fields too: serde's derive would only notice known ones.
        assert_eq!(
            dup_err(br#"{"request_id":"a","request_type":0,"x":1,"x":1}"#),
            "duplicate key `x` in request"
        );
    }

    #[test]
    fn duplicates_in_embedded_documents_name_document_and_path() {
        let extra = r#"{"transaction":{"destination":{"account_output":{"address":"0x1","amount":"1","amount":"100"}}}}"#;
        assert_eq!(
            dup_err(&req(2, "{}", extra)),
            "duplicate key `amount` in extra_info at transaction.destination.account_output"
        );
        let detail = r#"{"threshold":2,"node_ids":["A"],"threshold":3}"#;
        assert_eq!(
            dup_err(&req(1, detail, "")),
            "duplicate key `threshold` in request_detail"
        );
    }

    #[test]
    fn duplicates_inside_arrays_are_found_and_located() {
        let extra = r#"{"transaction":{"destination":{"utxo_outputs":[{"address":"a","amount":"1"},{"address":"b","address":"c","amount":"2"}]}}}"#;
        assert_eq!(
            dup_err(&req(2, "{}", extra)),
            "duplicate key `address` in extra_info at transaction.destination.utxo_outputs[1]"
        );
        assert_eq!(
            dup_err(&req(2, r#"{"l":[[1,{"k":1,"k":1}]]}"#, "")),
            "duplicate key `k` in request_detail at l[0][1]"
        );
    }

    #[test]
    fn keys_compare_by_decoded_text() {
        // `\u0061` is `a`: a parser that compares raw bytes would see two keys.
        assert_eq!(
            dup_err(&req(2, r#"{"a":1,"\u0061":2}"#, "")),
            "duplicate key `a` in request_detail"
        );
        assert_eq!(
            dup_err(br#"{"request_id":"a","request_type":0,"request\u005fid":"b"}"#),
            "duplicate key `request_id` in request"
        );
    }

    #[test]
    fn the_same_key_in_sibling_objects_is_not_a_duplicate() {
        let extra = r#"{"o":[{"amount":"1","address":"a"},{"amount":"1","address":"a"}],"p":{"amount":"1"},"q":{"amount":"1"},"amount":"1"}"#;
        let p = parse_request(&req(2, r#"{"a":{"a":{"a":1}}}"#, extra), 64).unwrap();
        assert_eq!(p.extra["o"][1]["amount"], "1");
        assert_eq!(p.detail["a"]["a"]["a"], 1);
    }

    #[test]
    fn the_parse_matches_serde_json_value() {
        let doc = r#"{"n":[1,-2,3.5,1e300,18446744073709551615,-9223372036854775808,0.1],"s":"x\u00e9\n","b":[true,false,null],"o":{},"e":[],"$serde_json::private::RawValue":"{}"}"#;
        let ours = parse_unique("request_detail", doc.as_bytes()).unwrap();
        let theirs: Value = serde_json::from_str(doc).unwrap_or(Value::Null);
        // The key serde_json's own visitor treats as a raw-value token is an
        // ordinary key here.
        assert_eq!(ours["$serde_json::private::RawValue"], "{}");
        let mut ours_without = ours.clone();
        ours_without
            .as_object_mut()
            .unwrap()
            .remove("$serde_json::private::RawValue");
        assert_eq!(ours_without["n"], theirs["n"]);
        assert_eq!(ours_without["s"], "x\u{e9}\n");
        assert_eq!(ours_without["b"], json!([true, false, null]));
        assert!(matches!(
            parse_unique("request", b"{} x"),
            Err(Unique::Json(_))
        ));
        // serde_json's own visitor (with its `raw_value` feature on) reads an
        // object whose FIRST key is that token as the JSON text of its value,
        // `{"threshold":2}` here; the TSS Node sees one odd key, and so do we.
        let raw = r#"{"$serde_json::private::RawValue":"{\"threshold\":2}"}"#;
        let ours = parse_unique("request_detail", raw.as_bytes()).unwrap();
        assert_eq!(
            ours,
            json!({"$serde_json::private::RawValue": "{\"threshold\":2}"})
        );
    }

    #[test]
    fn the_shown_key_and_path_are_escaped_and_bounded() {
        let key = format!("`)\\u0001\\u00e9{}", "k".repeat(60));
        let doc = format!(r#"{{"x.y":{{"ok":{{"{key}":1,"{key}":2}}}}}}"#);
        let msg = dup_err(&req(2, &doc, ""));
        assert!(
            msg.starts_with("duplicate key `\\u{60})\\u{1}\\u{e9}kkk"),
            "{msg}"
        );
        assert_eq!(
            msg.matches('`').count(),
            2,
            "only the message's own quotes: {msg}"
        );
        assert!(msg.ends_with(r#"in request_detail at ["x.y"].ok"#), "{msg}");
        let long_key = "k".repeat(10_000);
        let deep = format!(
            "{}{{\"{long_key}\":1,\"{long_key}\":1}}{}",
            r#"{"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa":"#.repeat(60),
            "}".repeat(60)
        );
        let msg = dup_err(&req(2, &deep, ""));
        assert!(msg.len() < 300, "bounded: {} bytes", msg.len());
        assert!(msg.contains("…"), "{msg}");
    }

    #[test]
    fn a_syntax_error_is_still_not_json() {
        assert!(matches!(
            parse_request(&req(2, r#"{"a":1,"a"}"#, ""), 64),
            Err(RequestError::EmbeddedNotJson { .. })
        ));
        assert!(matches!(
            parse_request(br#"{"request_id":"a","request_id""#, 64),
            Err(RequestError::NotJson(_))
        ));
    }

    #[test]
    fn package_data_accepts_padded_and_unpadded_base64() {
        assert_eq!(decode_package("eyJhIjoxfQ==").unwrap(), b"{\"a\":1}");
        assert_eq!(decode_package("eyJhIjoxfQ").unwrap(), b"{\"a\":1}");
        assert_eq!(decode_package("***"), Err(RequestError::PackageNotBase64));
    }
}
