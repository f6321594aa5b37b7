//! The JWT envelope of PROTOCOL.md, both directions: RS256 only, `package_data`
//! holding standard base64 of a JSON document, `exp` required. Online signing and
//! verifying use jsonwebtoken's aws-lc-rs backend.
//!
//! Verification tries each configured TSS Node key; the first that verifies the
//! signature names the request. Errors are classified into a fixed set
//! ([`TokenError::reason`]) so that metrics and answers stay bounded.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::keys::{SigningKey, VerifyingKey};

/// Tokens larger than this are refused before any parsing: a real request
/// token is a few KiB; this bound keeps a hostile body from costing base64 and
/// JSON work in proportion to its size.
pub const MAX_TOKEN_BYTES: usize = 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("no `TSS_JWT_MSG` token in the request")]
    Missing,
    #[error("token is not a compact JWT")]
    NotAJwt,
    #[error("token algorithm `{0}` is not allowed; only RS256 is accepted")]
    BadAlgorithm(String),
    #[error("token signature does not verify with any configured TSS Node key")]
    BadSignature,
    #[error("token names key `{0}`, which is not configured")]
    UnknownKey(String),
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet")]
    NotYetValid,
    #[error("token has no `{0}` claim")]
    MissingClaim(String),
    #[error("token claims are malformed: {0}")]
    Malformed(String),
    #[error("answer token is not signed by the expected callback server key")]
    AnswerSignature,
}

impl TokenError {
    /// A stable, bounded label for metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            TokenError::Missing => "missing_token",
            TokenError::NotAJwt => "malformed_token",
            TokenError::BadAlgorithm(_) => "bad_algorithm",
            TokenError::BadSignature | TokenError::AnswerSignature => "bad_signature",
            TokenError::UnknownKey(_) => "unknown_key",
            TokenError::Expired => "expired",
            TokenError::NotYetValid => "not_yet_valid",
            TokenError::MissingClaim(_) => "missing_claim",
            TokenError::Malformed(_) => "malformed_claims",
        }
    }
}

/// Claims of a request token as the TSS Node sends them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RequestClaims {
    #[serde(default)]
    pub package_data: Option<String>,
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
}

/// A request token that verified, with the name of the key that verified it.
#[derive(Debug, Clone)]
pub struct Verified {
    pub key_name: String,
    pub package_data: String,
    pub iss: Option<String>,
    pub iat: Option<u64>,
    pub exp: u64,
}

/// Verifies request tokens against a fixed set of TSS Node keys.
#[derive(Clone)]
pub struct Verifier {
    keys: Vec<VerifyingKey>,
    validation: Validation,
}

#[derive(Deserialize)]
struct RawHeader {
    alg: Option<serde_json::Value>,
    kid: Option<String>,
}

impl Verifier {
    pub fn new(keys: Vec<VerifyingKey>, leeway_secs: u64) -> Self {
        let mut validation = Validation::new(Algorithm::RS256);
        validation.leeway = leeway_secs;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        // The node sets no audience; a token that does is still ours to judge.
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp"]);
        Self { keys, validation }
    }

    pub fn key_names(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|k| k.name.as_str())
    }

    pub fn verify(&self, token: &str) -> Result<Verified, TokenError> {
        let token = token.trim();
        if token.is_empty() {
            return Err(TokenError::Missing);
        }
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::NotAJwt);
        }
        let header = read_header(token)?;
        // Decide the algorithm ourselves before the library sees the token:
        // `none` and HS256 (signed with the public key bytes as the secret) are
        // refused here, whatever the library would do with them.
        match header.alg {
            Some(serde_json::Value::String(ref a)) if a == "RS256" => {}
            Some(serde_json::Value::String(a)) => {
                return Err(TokenError::BadAlgorithm(truncate(&a, 16)));
            }
            _ => return Err(TokenError::BadAlgorithm("missing".into())),
        }
        let candidates: Vec<&VerifyingKey> = match header.kid {
            // A `kid` is optional (the node sends none); when present it must
            // name a configured key, and only that key is tried.
            Some(kid) => {
                let found: Vec<_> = self.keys.iter().filter(|k| k.name == kid).collect();
                if found.is_empty() {
                    return Err(TokenError::UnknownKey(truncate(&kid, 64)));
                }
                found
            }
            None => self.keys.iter().collect(),
        };
        for key in candidates {
            match jsonwebtoken::decode::<RequestClaims>(token, &key.key, &self.validation) {
                Ok(data) => {
                    let claims = data.claims;
                    let package_data = claims
                        .package_data
                        .ok_or_else(|| TokenError::MissingClaim("package_data".into()))?;
                    return Ok(Verified {
                        key_name: key.name.clone(),
                        package_data,
                        iss: claims.iss,
                        iat: claims.iat,
                        exp: claims.exp,
                    });
                }
                Err(e) => match e.kind() {
                    ErrorKind::InvalidSignature => continue,
                    // Anything else happened after this key verified the
                    // signature (or the token is structurally broken), so no
                    // other key can change the outcome.
                    other => return Err(classify(other)),
                },
            }
        }
        Err(TokenError::BadSignature)
    }
}

fn classify(kind: &ErrorKind) -> TokenError {
    match kind {
        ErrorKind::ExpiredSignature => TokenError::Expired,
        ErrorKind::ImmatureSignature => TokenError::NotYetValid,
        ErrorKind::MissingRequiredClaim(c) => TokenError::MissingClaim(truncate(c, 32)),
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
            TokenError::BadAlgorithm("unsupported".into())
        }
        ErrorKind::InvalidToken | ErrorKind::Base64(_) | ErrorKind::Utf8(_) => TokenError::NotAJwt,
        ErrorKind::Json(e) => {
            let msg = e.to_string();
            if msg.contains("missing field `exp`") {
                TokenError::MissingClaim("exp".into())
            } else {
                TokenError::Malformed(truncate(&msg, 120))
            }
        }
        ErrorKind::InvalidClaimFormat(c) => {
            TokenError::Malformed(format!("claim `{}`", truncate(c, 32)))
        }
        _ => TokenError::Malformed("token rejected".into()),
    }
}

fn read_header(token: &str) -> Result<RawHeader, TokenError> {
    let mut parts = token.split('.');
    let (Some(h), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::NotAJwt);
    };
    let bytes = URL_SAFE_NO_PAD
        .decode(h.trim_end_matches('='))
        .map_err(|_| TokenError::NotAJwt)?;
    serde_json::from_slice(&bytes).map_err(|_| TokenError::NotAJwt)
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Claims of a token we sign (answers, and requests when we play the node).
#[derive(Debug, Serialize, Deserialize)]
pub struct SignedClaims {
    pub package_data: String,
    pub exp: u64,
    pub iat: u64,
    pub iss: String,
}

/// Signs `document` (already serialised JSON) into a compact RS256 JWT.
pub fn sign_package(
    document: &[u8],
    key: &SigningKey,
    iss: &str,
    ttl_secs: u64,
) -> Result<String, jsonwebtoken::errors::Error> {
    sign_package_for(
        document,
        key,
        iss,
        i64::try_from(ttl_secs).unwrap_or(i64::MAX),
    )
}

/// [`sign_package`] with a signed lifetime: a negative one makes a token
/// that expired that many seconds ago, which `send` uses to show how a
/// callback server treats stale tokens.
pub fn sign_package_for(
    document: &[u8],
    key: &SigningKey,
    iss: &str,
    ttl_secs: i64,
) -> Result<String, jsonwebtoken::errors::Error> {
    let now = now_secs();
    let claims = SignedClaims {
        package_data: STANDARD.encode(document),
        exp: now.saturating_add_signed(ttl_secs),
        iat: now,
        iss: iss.to_owned(),
    };
    sign_claims(&claims, key)
}

/// RS256-signs `claims` with the pre-parsed key pair. The output is byte for
/// byte what `jsonwebtoken::encode(&Header::new(RS256), claims, &key.key)`
/// gives (PKCS#1 v1.5 signatures are deterministic; a test holds us to it),
/// without re-parsing the private key for every answer.
pub fn sign_claims(
    claims: &SignedClaims,
    key: &SigningKey,
) -> Result<String, jsonwebtoken::errors::Error> {
    use jsonwebtoken::errors::{ErrorKind as K, new_error};
    let header = serde_json::to_vec(&Header::new(Algorithm::RS256))?;
    let body = serde_json::to_vec(claims)?;
    let mut message = URL_SAFE_NO_PAD.encode(header);
    message.push('.');
    message.push_str(&URL_SAFE_NO_PAD.encode(body));
    let mut signature = vec![0u8; key.pair.public_modulus_len()];
    key.pair
        .sign(
            &aws_lc_rs::signature::RSA_PKCS1_SHA256,
            &aws_lc_rs::rand::SystemRandom::new(),
            message.as_bytes(),
            &mut signature,
        )
        .map_err(|_| new_error(K::RsaFailedSigning))?;
    message.push('.');
    message.push_str(&URL_SAFE_NO_PAD.encode(signature));
    Ok(message)
}

/// Verifies an answer token (the node's side): RS256 with the callback
/// server's public key, `exp` required. Accepts the token bare or as a JSON
/// string (the Go sample quotes it). Returns the decoded `package_data` bytes.
pub fn verify_answer(body: &str, key: &VerifyingKey) -> Result<Vec<u8>, TokenError> {
    let token = body.trim();
    let token = token
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(token);
    let header = read_header(token)?;
    match header.alg {
        Some(serde_json::Value::String(ref a)) if a == "RS256" => {}
        _ => return Err(TokenError::BadAlgorithm("answer".into())),
    }
    let mut validation = Validation::new(Algorithm::RS256);
    validation.validate_aud = false;
    validation.set_required_spec_claims(&["exp"]);
    let data =
        jsonwebtoken::decode::<RequestClaims>(token, &key.key, &validation).map_err(|e| match e
            .kind()
        {
            ErrorKind::InvalidSignature => TokenError::AnswerSignature,
            other => classify(other),
        })?;
    let pd = data
        .claims
        .package_data
        .ok_or_else(|| TokenError::MissingClaim("package_data".into()))?;
    STANDARD
        .decode(pd.trim())
        .map_err(|_| TokenError::Malformed("package_data is not base64".into()))
}

#[cfg(test)]
mod sign_tests {
    use super::*;

    #[test]
    fn preparsed_signing_matches_jsonwebtoken_encode_byte_for_byte() {
        let rsa = crate::keys::generate(2048).expect("key");
        let key = crate::keys::signing_key_from(&rsa, std::path::Path::new("t")).expect("key");
        let claims = SignedClaims {
            package_data: STANDARD
                .encode(br#"{"status":0,"request_id":"r-1","action":"APPROVE","error":""}"#),
            exp: 1_900_000_120,
            iat: 1_900_000_000,
            iss: "tss-gate".into(),
        };
        let ours = sign_claims(&claims, &key).expect("sign");
        let theirs = jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &key.key)
            .expect("encode");
        assert_eq!(ours, theirs);
    }
}
