//! The wire contract of the TSS Node callback protocol v2 (see PROTOCOL.md):
//! request and response documents, request types and status codes.
//! Nothing here touches keys or policies.

use serde::{Deserialize, Serialize};

/// Status codes of a `TSSCallbackResponse`; non-zero means "could not decide".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "i64", try_from = "i64")]
pub enum Status {
    Ok = 0,
    InvalidRequest = 10,
    InvalidToken = 20,
    InternalError = 30,
}

impl From<Status> for i64 {
    fn from(s: Status) -> i64 {
        s as i64
    }
}

impl TryFrom<i64> for Status {
    type Error = String;
    fn try_from(v: i64) -> Result<Self, String> {
        match v {
            0 => Ok(Status::Ok),
            10 => Ok(Status::InvalidRequest),
            20 => Ok(Status::InvalidToken),
            30 => Ok(Status::InternalError),
            other => Err(format!("unknown status `{other}`")),
        }
    }
}

impl Status {
    pub fn code(self) -> i64 {
        self as i64
    }
    /// Bounded label value for metrics.
    pub fn label(self) -> &'static str {
        match self {
            Status::Ok => "0",
            Status::InvalidRequest => "10",
            Status::InvalidToken => "20",
            Status::InternalError => "30",
        }
    }
}

/// The decision carried by a status-0 answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    #[serde(rename = "APPROVE")]
    Approve,
    #[serde(rename = "REJECT")]
    Reject,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Approve => "APPROVE",
            Action::Reject => "REJECT",
        }
    }
}

/// Request types by their wire code. Anything we do not know is `Unknown` and
/// must never be approved by the framework.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestType {
    Ping,
    KeyGen,
    KeySign,
    KeyReshare,
    KeyShareSign,
    Unknown,
}

impl RequestType {
    /// The types that are tasks for the node (all but ping).
    pub const TASKS: [RequestType; 4] = [
        RequestType::KeyGen,
        RequestType::KeySign,
        RequestType::KeyReshare,
        RequestType::KeyShareSign,
    ];

    pub fn from_code(code: i64) -> Self {
        match code {
            0 => RequestType::Ping,
            1 => RequestType::KeyGen,
            2 => RequestType::KeySign,
            3 => RequestType::KeyReshare,
            5 => RequestType::KeyShareSign,
            _ => RequestType::Unknown,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            RequestType::Ping => "PING",
            RequestType::KeyGen => "KEYGEN",
            RequestType::KeySign => "KEYSIGN",
            RequestType::KeyReshare => "KEYRESHARE",
            RequestType::KeyShareSign => "KEYSHARESIGN",
            RequestType::Unknown => "UNKNOWN",
        }
    }
}

/// `TSSCallbackRequest`, the decoded `package_data` of a request token.
/// `request_detail` and `extra_info` stay strings here: they are JSON documents
/// serialised into strings on the wire and are parsed by [`crate::input`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallbackRequest {
    pub request_id: String,
    pub request_type: i64,
    #[serde(default)]
    pub request_detail: String,
    #[serde(default)]
    pub extra_info: String,
}

/// `TSSCallbackResponse`, what we sign back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallbackResponse {
    pub status: Status,
    #[serde(default)]
    pub request_id: String,
    /// Absent in the samples' error answers; we always send one so that a
    /// non-zero status can never be read as an approval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
    #[serde(default)]
    pub error: String,
}

impl CallbackResponse {
    pub fn approve(request_id: &str) -> Self {
        Self {
            status: Status::Ok,
            request_id: request_id.to_owned(),
            action: Some(Action::Approve),
            error: String::new(),
        }
    }

    pub fn reject(request_id: &str, reason: String) -> Self {
        Self {
            status: Status::Ok,
            request_id: request_id.to_owned(),
            action: Some(Action::Reject),
            error: reason,
        }
    }

    /// A could-not-decide answer. The action is REJECT so that a client that
    /// ignores `status` still does not run the task.
    pub fn error(status: Status, request_id: &str, reason: impl Into<String>) -> Self {
        Self {
            status,
            request_id: request_id.to_owned(),
            action: Some(Action::Reject),
            error: reason.into(),
        }
    }

    pub fn is_approval(&self) -> bool {
        self.status == Status::Ok && self.action == Some(Action::Approve)
    }
}

/// Name of the single form field that carries the request token.
pub const FORM_FIELD: &str = "TSS_JWT_MSG";
