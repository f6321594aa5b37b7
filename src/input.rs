//! Turning a verified request into the Rego input document. Everything here is
//! pure: bytes and facts in, data out. The schema is documented in
//! `rego/README.md`; changing a field name here is a breaking change for every
//! policy.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use serde_json::{Map, Value, json};

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
}

impl RequestError {
    /// Stable, bounded label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            RequestError::PackageNotBase64 => "bad_package_data",
            RequestError::TooDeep(_) => "too_deep",
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
pub fn parse_request(bytes: &[u8], max_depth: usize) -> Result<ParsedRequest, RequestError> {
    check_depth(bytes, max_depth)?;
    let req: CallbackRequest = serde_json::from_slice(bytes).map_err(|e| {
        if e.is_data() {
            RequestError::BadShape(e.to_string())
        } else {
            RequestError::NotJson(e.to_string())
        }
    })?;
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
    match serde_json::from_str::<Value>(s) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err(RequestError::EmbeddedNotObject(field)),
        Err(e) => Err(RequestError::EmbeddedNotJson {
            field,
            reason: e.to_string(),
        }),
    }
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

    #[test]
    fn package_data_accepts_padded_and_unpadded_base64() {
        assert_eq!(decode_package("eyJhIjoxfQ==").unwrap(), b"{\"a\":1}");
        assert_eq!(decode_package("eyJhIjoxfQ").unwrap(), b"{\"a\":1}");
        assert_eq!(decode_package("***"), Err(RequestError::PackageNotBase64));
    }
}
