//! The signature audit: when the node reports `request.keysign.succeeded`,
//! every signature in its `result` is checked against what tss-gate
//! approved for that request ([`ApprovedSign`], recorded at approval time).
//!
//! What a clean report proves, for each reported signature: its message
//! hash is one tss-gate approved, under the path it was approved with, with
//! no tweak, and the signature verifies under the key tss-gate approved (the
//! child of `root_pub_key` at that path, or the approved Solana source key).
//! A node that signed something else and reported it raises an alarm.
//!
//! What it does not prove: that the node signed nothing else. A signature
//! the node never reports (or a compromised node that reports only approved
//! ones) is invisible here; only the chains can show that. Fewer signatures
//! than approved hashes is not an alarm, since only what was signed matters,
//! and a repeated identical entry is checked again, not flagged.
//!
//! Schemes (`signature_type`):
//! - 1, ECDSA on secp256k1: `signature` is the hex of 64 bytes r||s, 65
//!   bytes r||s||v, or DER. A high S is normalised before verifying
//!   (libsecp256k1 only verifies low S; the high form is mathematically
//!   valid, and chains that care normalise it themselves). A recovery id
//!   (`signature_recovery`, or the 65th byte), when given, must be 0..=3 or
//!   27..=30 (minus 27), and the key it recovers must be the approved key:
//!   a chain like Ethereum takes the signer from it, not from the approval.
//! - 3, Schnorr (BIP340): 64 bytes over the 32-byte hash, verified against
//!   the x-only child key or its BIP86 output key (taproot tweak with an
//!   empty script tree): the node signs taproot key-path spends with the
//!   output key and other BIP340 messages with the key itself, and both are
//!   the approved key's.
//! - 2, EdDSA (Ed25519): `msg_hash` is the hex of the message itself (a
//!   Solana message, not a hash), verified with `verify_strict` (no small
//!   order keys or non-canonical encodings) against the approved source
//!   address. Ed25519 keys cannot be derived publicly from an xpub, so the
//!   key is the transaction's source; a task signing for several keys
//!   would raise `bad_signature` for all but that one (loud, not silent).
//!
//! Alarm codes (a bounded set, [`ALARM_CODES`]): `unauditable`,
//! `malformed`, `signature_type_mismatch`, `hash_not_approved`,
//! `path_mismatch`, `tweak_not_approved`, `bad_signature`. Details name the
//! signature's index and show at most 64 characters of any reported value.

#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

use std::collections::HashMap;
use std::sync::LazyLock;

use bitcoin::bip32::Xpub;
use bitcoin::key::TapTweak;
use bitcoin::secp256k1::ecdsa::{self, RecoverableSignature, RecoveryId};
use bitcoin::secp256k1::{Message, PublicKey, Secp256k1, VerifyOnly, schnorr};
use serde_json::Value;

use super::model::show;
use crate::derive::signer;

pub const SIG_ECDSA: u8 = 1;
pub const SIG_EDDSA: u8 = 2;
pub const SIG_SCHNORR: u8 = 3;

/// Signatures checked per report and hashes per approval: the CPU one
/// event can cost (each is a derivation and a verification).
pub const MAX_SIGNATURES: usize = 1024;
/// Longest Ed25519 message; a Solana transaction is at most 1232 bytes.
pub const MAX_MESSAGE_BYTES: usize = 4096;
/// Longest `bip32_path`, in characters.
const MAX_PATH_CHARS: usize = 128;
/// A DER ECDSA signature is at most 72 bytes.
const MAX_DER_BYTES: usize = 72;
/// A base58 Ed25519 key is 32 to 44 characters.
const MAX_ED25519_KEY_CHARS: usize = 64;

/// Every alarm code [`audit`] raises.
pub const ALARM_CODES: [&str; 7] = [
    "unauditable",
    "malformed",
    "signature_type_mismatch",
    "hash_not_approved",
    "path_mismatch",
    "tweak_not_approved",
    "bad_signature",
];

static SECP: LazyLock<Secp256k1<VerifyOnly>> = LazyLock::new(Secp256k1::verification_only);

/// What tss-gate approved for one KEYSIGN, as recorded with the approval.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ApprovedSign {
    /// 1 ECDSA (secp256k1), 2 EdDSA (Ed25519), 3 Schnorr (BIP340).
    pub signature_type: u8,
    /// The master xpub/tpub the signing keys derive from (types 1 and 3).
    pub root_pub_key: Option<String>,
    /// Type 2: the approved source address, a base58 Ed25519 public key.
    pub ed25519_key: Option<String>,
    /// One per approved hash, in request order.
    pub items: Vec<ApprovedItem>,
}

/// One approved hash and the path of the key approved to sign it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ApprovedItem {
    /// Canonical (`m/44/60/0/0/0`); for type 2 as sent, possibly empty.
    pub bip32_path: String,
    /// Lowercase hex without `0x`.
    pub msg_hash: String,
}

impl ApprovedSign {
    /// Reads what the policy approved from the input document it judged:
    /// `input.detail.{signature_type, root_pub_key, msg_hash_list,
    /// bip32_path_list}` and, for type 2, `input.extra.transaction.source.address`.
    /// Err when the audit could not check the node's signatures later (the
    /// caller then refuses to approve unaudited); the message never echoes
    /// a key.
    pub fn from_input(input: &Value) -> Result<ApprovedSign, String> {
        let detail = input
            .get("detail")
            .filter(|d| d.is_object())
            .ok_or("input.detail is not an object")?;
        let signature_type = match detail.get("signature_type").and_then(Value::as_u64) {
            Some(t @ 1..=3) => t as u8,
            _ => {
                return Err(format!(
                    "signature_type `{}` is not 1, 2 or 3",
                    show(&json_text(detail.get("signature_type")))
                ));
            }
        };
        let hashes = match detail.get("msg_hash_list").and_then(Value::as_array) {
            Some(l) if !l.is_empty() && l.len() <= MAX_SIGNATURES => l,
            _ => {
                return Err(format!(
                    "msg_hash_list is not a list of 1 to {MAX_SIGNATURES} hashes"
                ));
            }
        };
        let paths: &[Value] = match detail.get("bip32_path_list") {
            Some(Value::Array(l)) => l,
            None | Some(Value::Null) if signature_type == SIG_EDDSA => &[],
            _ => return Err("bip32_path_list is not a list".to_owned()),
        };
        if paths.len() != hashes.len() && !(signature_type == SIG_EDDSA && paths.is_empty()) {
            return Err(format!(
                "bip32_path_list has {} entries for {} hashes",
                paths.len(),
                hashes.len()
            ));
        }
        let mut items = Vec::with_capacity(hashes.len());
        for (i, h) in hashes.iter().enumerate() {
            let bytes = h
                .as_str()
                .and_then(decode_hex)
                .ok_or_else(|| format!("msg_hash_list[{i}] {NOT_HEX}"))?;
            check_message_len(signature_type, bytes.len())
                .map_err(|why| format!("msg_hash_list[{i}] {why}"))?;
            let path = match paths.get(i) {
                None => String::new(),
                Some(Value::String(p)) if signature_type == SIG_EDDSA => {
                    if p.chars().count() > MAX_PATH_CHARS {
                        return Err(format!("bip32_path_list[{i}] is too long"));
                    }
                    p.clone()
                }
                Some(Value::String(p)) => signer::parse_path(p)?.to_string(),
                Some(_) => return Err(format!("bip32_path_list[{i}] is not a string")),
            };
            items.push(ApprovedItem {
                bip32_path: path,
                msg_hash: hex::encode(bytes),
            });
        }
        let mut approved = ApprovedSign {
            signature_type,
            root_pub_key: None,
            ed25519_key: None,
            items,
        };
        if signature_type == SIG_EDDSA {
            let addr = input
                .pointer("/extra/transaction/source/address")
                .and_then(Value::as_str)
                .ok_or("extra.transaction.source.address is missing (the Ed25519 key)")?;
            ed25519_key(addr)?;
            approved.ed25519_key = Some(addr.to_owned());
        } else {
            let root = detail
                .get("root_pub_key")
                .and_then(Value::as_str)
                .ok_or("root_pub_key is missing")?;
            signer::parse_root(root)?;
            approved.root_pub_key = Some(root.to_owned());
        }
        Ok(approved)
    }
}

/// The outcome of one audit.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuditReport {
    /// Signature entries looked at.
    pub checked: usize,
    pub alarms: Vec<Alarm>,
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alarm {
    /// One of [`ALARM_CODES`].
    pub code: &'static str,
    /// The entry of `result.signatures`; None for the result as a whole.
    pub index: Option<usize>,
    /// For people: names the values compared, bounded and escaped.
    pub detail: String,
}

impl AuditReport {
    fn alarm(&mut self, code: &'static str, index: Option<usize>, detail: String) {
        self.alarms.push(Alarm {
            code,
            index,
            detail,
        });
    }
}

/// The key the approval names, ready to verify with.
enum Key {
    Secp(Xpub),
    Ed25519(ed25519_dalek::VerifyingKey),
}

/// Checks every signature of a KEYSIGN `result` against `approved`; see
/// the module doc for the rules.
pub fn audit(approved: &ApprovedSign, result: &Value) -> AuditReport {
    let mut report = AuditReport::default();
    // The record is read back from the store: checked again, never trusted
    // to be what `from_input` wrote.
    let key = match load_key(approved) {
        Ok(k) => k,
        Err(why) => {
            report.alarm("unauditable", None, why);
            return report;
        }
    };
    if approved.items.len() > MAX_SIGNATURES {
        report.alarm(
            "unauditable",
            None,
            format!("the approval lists more than {MAX_SIGNATURES} hashes"),
        );
        return report;
    }
    let mut by_hash: HashMap<Vec<u8>, Vec<&str>> = HashMap::new();
    for (i, item) in approved.items.iter().enumerate() {
        match decode_hex(&item.msg_hash) {
            Some(h) => by_hash.entry(h).or_default().push(&item.bip32_path),
            None => {
                report.alarm(
                    "unauditable",
                    None,
                    format!("the approval's hash {i} is not hex"),
                );
                return report;
            }
        }
    }
    let Some(result) = result.as_object() else {
        report.alarm("malformed", None, "result is not an object".to_owned());
        return report;
    };
    match result.get("signature_type") {
        None | Some(Value::Null) => {}
        Some(v) => match v.as_u64() {
            Some(t) if t == u64::from(approved.signature_type) => {}
            Some(t) => report.alarm(
                "signature_type_mismatch",
                None,
                format!(
                    "result.signature_type is {t}, tss-gate approved {}",
                    approved.signature_type
                ),
            ),
            None => report.alarm(
                "malformed",
                None,
                format!(
                    "result.signature_type `{}` is not an integer",
                    show(&v.to_string())
                ),
            ),
        },
    }
    let sigs = match result.get("signatures").and_then(Value::as_array) {
        Some(s) if !s.is_empty() && s.len() <= MAX_SIGNATURES => s,
        _ => {
            report.alarm(
                "malformed",
                None,
                format!("result.signatures is not a list of 1 to {MAX_SIGNATURES} entries"),
            );
            return report;
        }
    };
    let mut derived: HashMap<String, Result<PublicKey, String>> = HashMap::new();
    for (i, entry) in sigs.iter().enumerate() {
        report.checked += 1;
        let entry = match Entry::parse(approved.signature_type, entry) {
            Ok(e) => e,
            Err(why) => {
                report.alarm("malformed", Some(i), format!("signature {i}: {why}"));
                continue;
            }
        };
        let Some(paths) = by_hash.get(&entry.msg) else {
            report.alarm(
                "hash_not_approved",
                Some(i),
                format!(
                    "signature {i}: msg_hash `{}` is not one tss-gate approved",
                    show(&hex::encode(&entry.msg))
                ),
            );
            continue;
        };
        // The approved path(s) of this hash: the entry's own if it is one,
        // else every one, and the label is wrong. An Ed25519 approval made
        // without paths took no position on the label (its key is fixed).
        let any_label = approved.signature_type == SIG_EDDSA && paths.contains(&"");
        let candidates: Vec<&str> = if any_label || paths.contains(&entry.path.as_str()) {
            vec![entry.path.as_str()]
        } else {
            report.alarm(
                "path_mismatch",
                Some(i),
                format!(
                    "signature {i}: msg_hash was approved for path `{}`, the node reports `{}`",
                    show(paths.first().copied().unwrap_or_default()),
                    show(&entry.path)
                ),
            );
            paths.clone()
        };
        if entry.tweaked {
            report.alarm(
                "tweak_not_approved",
                Some(i),
                format!("signature {i}: signed with a tweak; tss-gate approves none"),
            );
            // A tweaked key is not the approved key: nothing to verify against.
            continue;
        }
        let mut verdict = Ok(());
        for path in candidates {
            verdict = verify(&key, path, &entry, &mut derived);
            if verdict.is_ok() {
                break;
            }
        }
        match verdict {
            Ok(()) => {}
            Err(Fail::Unauditable(why)) => {
                report.alarm("unauditable", Some(i), format!("signature {i}: {why}"));
            }
            Err(Fail::Bad(why)) => {
                report.alarm("bad_signature", Some(i), format!("signature {i}: {why}"));
            }
        }
    }
    report
}

/// Why a signature was not accepted.
enum Fail {
    /// The approval's fault: its key cannot be derived at the path.
    Unauditable(String),
    /// The signature's fault.
    Bad(String),
}

fn load_key(a: &ApprovedSign) -> Result<Key, String> {
    match a.signature_type {
        SIG_ECDSA | SIG_SCHNORR => {
            let root = a
                .root_pub_key
                .as_deref()
                .ok_or("the approval has no root_pub_key")?;
            signer::parse_root(root)
                .map(Key::Secp)
                .map_err(|e| format!("the approval's {e}"))
        }
        SIG_EDDSA => {
            let k = a
                .ed25519_key
                .as_deref()
                .ok_or("the approval has no Ed25519 key")?;
            ed25519_key(k).map(Key::Ed25519)
        }
        t => Err(format!(
            "the approval's signature_type {t} is not 1, 2 or 3"
        )),
    }
}

/// A base58 Ed25519 public key (a Solana address).
fn ed25519_key(s: &str) -> Result<ed25519_dalek::VerifyingKey, String> {
    let bad = || {
        format!(
            "Ed25519 key `{}` is not a base58 32-byte public key",
            show(s)
        )
    };
    if s.len() > MAX_ED25519_KEY_CHARS {
        return Err(bad());
    }
    let bytes = bs58::decode(s).into_vec().map_err(|_| bad())?;
    let bytes: [u8; 32] = bytes.try_into().map_err(|_| bad())?;
    ed25519_dalek::VerifyingKey::from_bytes(&bytes).map_err(|_| bad())
}

/// One `result.signatures` entry, read.
struct Entry {
    /// Signature type 3 (BIP340) rather than 1 (ECDSA), for secp256k1 keys.
    schnorr: bool,
    path: String,
    msg: Vec<u8>,
    tweaked: bool,
    /// ECDSA: r||s or r||s||v (DER is converted); otherwise the 64 bytes.
    sig: Vec<u8>,
    /// `signature_recovery` as a recovery id; Some(Err) when given but not
    /// one of the accepted values.
    recovery: Option<Result<u8, String>>,
}

impl Entry {
    fn parse(signature_type: u8, v: &Value) -> Result<Entry, String> {
        let v = v.as_object().ok_or("not an object")?;
        let text = |field: &str| -> Result<Option<&str>, String> {
            match v.get(field) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.as_str())),
                Some(_) => Err(format!("{field} is not a string")),
            }
        };
        let path = text("bip32_path")?.ok_or("bip32_path is missing")?;
        if path.chars().count() > MAX_PATH_CHARS {
            return Err(format!("bip32_path `{}` is too long", show(path)));
        }
        let msg_hex = text("msg_hash")?.ok_or("msg_hash is missing")?;
        let msg =
            decode_hex(msg_hex).ok_or_else(|| format!("msg_hash `{}` {NOT_HEX}", show(msg_hex)))?;
        check_message_len(signature_type, msg.len()).map_err(|why| format!("msg_hash {why}"))?;
        let tweaked = !text("tweak")?.unwrap_or_default().is_empty();
        let sig_hex = text("signature")?.ok_or("signature is missing")?;
        let sig = decode_hex(sig_hex)
            .ok_or_else(|| format!("signature `{}` {NOT_HEX}", show(sig_hex)))?;
        let sig = match (signature_type, sig.len()) {
            (SIG_ECDSA, 64 | 65) | (SIG_EDDSA | SIG_SCHNORR, 64) => sig,
            // DER, read here so that every later ECDSA signature is r||s[||v].
            (SIG_ECDSA, 8..=MAX_DER_BYTES) => ecdsa::Signature::from_der(&sig)
                .map_err(|_| "signature is neither r||s, r||s||v nor DER")?
                .serialize_compact()
                .to_vec(),
            (_, n) => {
                return Err(format!(
                    "signature is {n} bytes, wrong for signature_type {signature_type}"
                ));
            }
        };
        // Only ECDSA has a recovery id; other schemes' field is not read.
        let recovery = match v.get("signature_recovery") {
            _ if signature_type != SIG_ECDSA => None,
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.is_empty() => None,
            Some(Value::String(s)) => Some(recovery_from_text(s)?),
            Some(Value::Number(n)) => {
                Some(n.as_u64().and_then(|n| u8::try_from(n).ok()).map_or_else(
                    || Err(format!("recovery id {n} is out of range")),
                    recovery_id,
                ))
            }
            Some(_) => return Err("signature_recovery is not a string or integer".to_owned()),
        };
        Ok(Entry {
            schnorr: signature_type == SIG_SCHNORR,
            path: path.to_owned(),
            msg,
            tweaked,
            sig,
            recovery,
        })
    }
}

/// `signature_recovery` as text: one byte in hex (`"01"`, `"1b"`), like
/// every other byte field, or a decimal 27..=30 (`"27"`), which read as
/// hex would be no recovery id at all, so the two readings never disagree.
/// Err (outer) when it is not a number; Ok(Err) when it is one out of range.
fn recovery_from_text(s: &str) -> Result<Result<u8, String>, String> {
    let body = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(s);
    if body.is_empty() || body.len() > 2 || !body.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "signature_recovery `{}` is not a recovery id",
            show(s)
        ));
    }
    let hex = u8::from_str_radix(body, 16).map_err(|_| "signature_recovery is not hex")?;
    Ok(match (recovery_id(hex), body.parse::<u8>()) {
        (Ok(id), _) => Ok(id),
        (Err(_), Ok(dec @ 27..=30)) => Ok(dec - 27),
        (Err(e), _) => Err(e),
    })
}

fn recovery_id(v: u8) -> Result<u8, String> {
    match v {
        0..=3 => Ok(v),
        27..=30 => Ok(v - 27),
        _ => Err(format!("recovery id {v} is not 0..=3 or 27..=30")),
    }
}

fn check_message_len(signature_type: u8, len: usize) -> Result<(), String> {
    match signature_type {
        SIG_EDDSA if (1..=MAX_MESSAGE_BYTES).contains(&len) => Ok(()),
        SIG_EDDSA => Err(format!(
            "is {len} bytes, not a message of 1 to {MAX_MESSAGE_BYTES}"
        )),
        _ if len == 32 => Ok(()),
        _ => Err(format!("is {len} bytes, not a 32-byte hash")),
    }
}

const NOT_HEX: &str = "is not hex of 1 to 4096 whole bytes";

/// Hex, `0x` optional, either case; None unless 1 to
/// [`MAX_MESSAGE_BYTES`] whole bytes.
fn decode_hex(s: &str) -> Option<Vec<u8>> {
    let body = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(s);
    if body.is_empty() || body.len() > 2 * MAX_MESSAGE_BYTES {
        return None;
    }
    hex::decode(body).ok()
}

fn json_text(v: Option<&Value>) -> String {
    v.map_or_else(|| "absent".to_owned(), Value::to_string)
}

/// Verifies `e` under the approved key at `path`; derived keys are kept
/// in `derived` for the other entries of the report.
fn verify(
    key: &Key,
    path: &str,
    e: &Entry,
    derived: &mut HashMap<String, Result<PublicKey, String>>,
) -> Result<(), Fail> {
    let root = match key {
        Key::Ed25519(k) => return verify_ed25519(k, e).map_err(Fail::Bad),
        Key::Secp(root) => root,
    };
    let pk = derived
        .entry(path.to_owned())
        .or_insert_with(|| {
            signer::parse_path(path)
                .and_then(|p| signer::derive(root, &p))
                .map_err(|why| {
                    format!(
                        "the approved key at `{}` cannot be derived: {why}",
                        show(path)
                    )
                })
        })
        .clone()
        .map_err(Fail::Unauditable)?;
    let msg = Message::from_digest_slice(&e.msg)
        .map_err(|_| Fail::Bad("msg_hash is not 32 bytes".to_owned()))?;
    if e.schnorr {
        verify_schnorr(&pk, &msg, e).map_err(Fail::Bad)
    } else {
        verify_ecdsa(&pk, &msg, e).map_err(Fail::Bad)
    }
}

fn verify_ecdsa(pk: &PublicKey, msg: &Message, e: &Entry) -> Result<(), String> {
    // Entry::parse made it r||s or r||s||v.
    let (rs, v) = e.sig.split_at(e.sig.len().min(64));
    let compact: [u8; 64] = rs.try_into().map_err(|_| "not r||s")?;
    let v = v.first().copied();
    let mut sig = ecdsa::Signature::from_compact(&compact)
        .map_err(|_| "r or s is not a valid scalar".to_owned())?;
    sig.normalize_s();
    SECP.verify_ecdsa(msg, &sig, pk)
        .map_err(|_| "the ECDSA signature does not verify under the approved key".to_owned())?;
    let from_v = v.map(recovery_id).transpose()?;
    let from_field = e.recovery.clone().transpose()?;
    let recid = match (from_v, from_field) {
        (Some(a), Some(b)) if a != b => {
            return Err(format!(
                "the signature's recovery byte says {a}, signature_recovery says {b}"
            ));
        }
        (a, b) => a.or(b),
    };
    let Some(recid) = recid else {
        return Ok(());
    };
    let recovered = RecoveryId::from_i32(i32::from(recid))
        .and_then(|id| RecoverableSignature::from_compact(&compact, id))
        .and_then(|rs| SECP.recover_ecdsa(msg, &rs));
    match recovered {
        Ok(k) if k == *pk => Ok(()),
        _ => Err(format!(
            "recovery id {recid} does not recover the approved key"
        )),
    }
}

fn verify_schnorr(pk: &PublicKey, msg: &Message, e: &Entry) -> Result<(), String> {
    let sig =
        schnorr::Signature::from_slice(&e.sig).map_err(|_| "not a BIP340 signature".to_owned())?;
    let (internal, _) = pk.x_only_public_key();
    let (output, _) = internal.tap_tweak(&SECP, None);
    if SECP.verify_schnorr(&sig, msg, &internal).is_ok()
        || SECP
            .verify_schnorr(&sig, msg, &output.to_x_only_public_key())
            .is_ok()
    {
        Ok(())
    } else {
        Err(
            "the Schnorr signature verifies under neither the approved key \
             nor its BIP86 output key"
                .to_owned(),
        )
    }
}

fn verify_ed25519(k: &ed25519_dalek::VerifyingKey, e: &Entry) -> Result<(), String> {
    let sig: [u8; 64] = e.sig.as_slice().try_into().map_err(|_| "not 64 bytes")?;
    k.verify_strict(&e.msg, &ed25519_dalek::Signature::from_bytes(&sig))
        .map_err(|_| "the Ed25519 signature does not verify under the approved key".to_owned())
}

/// The integration tests' node signer, so both sign exactly alike.
#[cfg(test)]
#[path = "../../tests/common/node_sign.rs"]
mod node_sign;

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::U256;
    use proptest::prelude::*;
    use serde_json::json;

    use super::node_sign::{
        ECDSA, EDDSA, NodeKey, SCHNORR, keysign_input, keysign_result, test_hash,
    };

    const P0: &str = "m/44/60/0/0/0";
    const P1: &str = "m/44/60/0/0/1";
    const OTHER_PATH: &str = "m/44/60/0/0/7";
    const SCHEMES: [u8; 3] = [ECDSA, EDDSA, SCHNORR];

    fn node() -> &'static NodeKey {
        static NODE: LazyLock<NodeKey> =
            LazyLock::new(|| NodeKey::from_seed(b"audit test seed 0001"));
        &NODE
    }

    fn stranger() -> &'static NodeKey {
        static NODE: LazyLock<NodeKey> =
            LazyLock::new(|| NodeKey::from_seed(b"another node seed 02"));
        &NODE
    }

    /// Two approved messages: 32-byte hashes, or for Ed25519 messages of
    /// other lengths (Solana signs the message itself).
    fn messages(t: u8) -> [String; 2] {
        if t == EDDSA {
            [
                hex::encode([7u8; 150]),
                hex::encode(b"second solana message"),
            ]
        } else {
            [test_hash("first"), test_hash("second")]
        }
    }

    fn approved(t: u8) -> ApprovedSign {
        let [m0, m1] = messages(t);
        ApprovedSign::from_input(&keysign_input(node(), t, &[(P0, &m0), (P1, &m1)])).unwrap()
    }

    fn valid(t: u8) -> Vec<Value> {
        let [m0, m1] = messages(t);
        vec![node().sign(P0, &m0, t), node().sign(P1, &m1, t)]
    }

    fn codes(t: u8, sigs: Vec<Value>) -> Vec<&'static str> {
        let r = audit(&approved(t), &keysign_result(sigs, t));
        r.alarms.iter().map(|a| a.code).collect()
    }

    fn flip_bit(hex_str: &str, byte: usize) -> String {
        let mut b = hex::decode(hex_str).unwrap();
        b[byte] ^= 0x10;
        hex::encode(b)
    }

    /// s -> n - s: the other, high-S, form of the same ECDSA signature.
    fn high_s(compact: &[u8; 64]) -> [u8; 64] {
        let n = U256::from_str_radix(
            "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141",
            16,
        )
        .unwrap();
        let s = U256::from_be_slice(&compact[32..]);
        let mut out = *compact;
        out[32..].copy_from_slice(&(n - s).to_be_bytes::<32>());
        out
    }

    #[test]
    fn alarm_codes_are_metric_labels() {
        for c in ALARM_CODES {
            assert!(crate::events::metrics::ALARM_CODES.contains(&c), "{c}");
        }
    }

    #[test]
    fn valid_signatures_raise_nothing() {
        for t in SCHEMES {
            let r = audit(&approved(t), &keysign_result(valid(t), t));
            assert_eq!(r.alarms, vec![], "scheme {t}");
            assert_eq!(r.checked, 2);
        }
    }

    #[test]
    fn fewer_or_repeated_signatures_are_fine() {
        for t in SCHEMES {
            let v = valid(t);
            assert_eq!(codes(t, vec![v[1].clone()]), Vec::<&str>::new());
            assert_eq!(
                codes(t, vec![v[0].clone(), v[0].clone(), v[1].clone()]),
                Vec::<&str>::new()
            );
        }
    }

    #[test]
    fn a_tampered_signature_is_bad() {
        for t in SCHEMES {
            for byte in [0, 20, 40, 63] {
                let mut sigs = valid(t);
                let s = sigs[1]["signature"].as_str().unwrap().to_owned();
                sigs[1]["signature"] = json!(flip_bit(&s, byte));
                let r = audit(&approved(t), &keysign_result(sigs, t));
                assert_eq!(r.alarms.len(), 1, "scheme {t} byte {byte}: {:?}", r.alarms);
                assert_eq!(
                    (r.alarms[0].code, r.alarms[0].index),
                    ("bad_signature", Some(1))
                );
            }
        }
    }

    #[test]
    fn a_foreign_hash_is_not_approved() {
        for t in SCHEMES {
            let foreign = if t == EDDSA {
                hex::encode(b"drain the wallet")
            } else {
                test_hash("foreign")
            };
            let mut sigs = valid(t);
            sigs.push(node().sign(P0, &foreign, t));
            let r = audit(&approved(t), &keysign_result(sigs, t));
            assert_eq!(r.alarms.len(), 1);
            assert_eq!(
                (r.alarms[0].code, r.alarms[0].index),
                ("hash_not_approved", Some(2))
            );
            assert!(
                r.alarms[0].detail.contains("signature 2"),
                "{}",
                r.alarms[0].detail
            );
        }
    }

    #[test]
    fn a_signature_by_another_key_is_bad() {
        for t in [ECDSA, SCHNORR] {
            let [m0, _] = messages(t);
            let mut entry = node().sign(OTHER_PATH, &m0, t);
            entry["bip32_path"] = json!(P0);
            assert_eq!(codes(t, vec![entry]), vec!["bad_signature"], "scheme {t}");
            let entry = stranger().sign(P0, &m0, t);
            assert_eq!(codes(t, vec![entry]), vec!["bad_signature"], "scheme {t}");
        }
        let [m0, _] = messages(EDDSA);
        let entry = stranger().sign(P0, &m0, EDDSA);
        assert_eq!(codes(EDDSA, vec![entry]), vec!["bad_signature"]);
    }

    #[test]
    fn a_swapped_path_label_is_a_path_mismatch() {
        for t in SCHEMES {
            let mut sigs = valid(t);
            sigs[0]["bip32_path"] = json!(P1);
            let r = audit(&approved(t), &keysign_result(sigs, t));
            assert_eq!(r.alarms.len(), 1, "scheme {t}: {:?}", r.alarms);
            assert_eq!(
                (r.alarms[0].code, r.alarms[0].index),
                ("path_mismatch", Some(0))
            );
            assert!(r.alarms[0].detail.contains(P0) && r.alarms[0].detail.contains(P1));
        }
        // Signed at the other path and labelled so: the label is wrong and
        // the signature is not the approved key's.
        let [m0, _] = messages(ECDSA);
        assert_eq!(
            codes(ECDSA, vec![node().sign(P1, &m0, ECDSA)]),
            vec!["path_mismatch", "bad_signature"]
        );
    }

    #[test]
    fn malformed_entries_and_results() {
        for t in SCHEMES {
            let good = valid(t).remove(0);
            let mut edits: Vec<(&str, Value)> = vec![
                ("signature", json!("zz")),
                ("signature", json!("abc")),
                ("signature", json!("")),
                ("signature", json!(hex::encode([1u8; 63]))),
                ("signature", json!(hex::encode([1u8; 73]))),
                ("signature", json!(5)),
                ("signature", Value::Null),
                ("msg_hash", json!("0x")),
                ("msg_hash", json!("nothex")),
                ("bip32_path", Value::Null),
                ("bip32_path", json!("m/".repeat(100))),
                ("tweak", json!(1)),
            ];
            if t == ECDSA {
                edits.push(("signature_recovery", json!("zz")));
                edits.push(("signature_recovery", json!("123")));
                edits.push(("signature_recovery", json!([0])));
            } else {
                let mut e = good.clone();
                e["signature_recovery"] = json!("not for this scheme");
                assert_eq!(codes(t, vec![e]), Vec::<&str>::new());
            }
            for (field, value) in edits {
                let mut e = good.clone();
                e[field] = value.clone();
                let c = codes(t, vec![e]);
                assert_eq!(c, vec!["malformed"], "scheme {t}: {field} = {value}");
            }
            if t != EDDSA {
                let mut e = good.clone();
                e["msg_hash"] = json!(hex::encode([1u8; 31]));
                assert_eq!(codes(t, vec![e]), vec!["malformed"]);
            }
            let a = approved(t);
            for result in [
                json!("signatures"),
                json!({}),
                json!({"signatures": []}),
                json!({"signatures": {}}),
                json!({"signatures": vec![good.clone(); MAX_SIGNATURES + 1]}),
            ] {
                let r = audit(&a, &result);
                assert_eq!(r.alarms.len(), 1);
                assert_eq!((r.alarms[0].code, r.alarms[0].index), ("malformed", None));
            }
            let r = audit(&a, &json!({"signatures": [good.clone(), 7]}));
            assert_eq!(r.checked, 2);
            assert_eq!(
                (r.alarms[0].code, r.alarms[0].index),
                ("malformed", Some(1))
            );
        }
        let long = "f".repeat(100_000);
        let mut e = valid(ECDSA).remove(0);
        e["signature"] = json!(long);
        let r = audit(&approved(ECDSA), &keysign_result(vec![e], ECDSA));
        assert!(r.alarms[0].detail.len() < 200, "{}", r.alarms[0].detail);
    }

    #[test]
    fn hashes_compare_as_bytes() {
        let mut sigs = valid(ECDSA);
        let h = sigs[0]["msg_hash"].as_str().unwrap().to_uppercase();
        sigs[0]["msg_hash"] = json!(format!("0x{h}"));
        assert_eq!(codes(ECDSA, sigs), Vec::<&str>::new());
    }

    #[test]
    fn signature_type_and_tweak_must_be_approved() {
        for t in SCHEMES {
            let other = if t == ECDSA { SCHNORR } else { ECDSA };
            let r = audit(&approved(t), &keysign_result(valid(t), other));
            let c: Vec<_> = r.alarms.iter().map(|a| a.code).collect();
            assert_eq!(c, vec!["signature_type_mismatch"]);
            let mut sigs = valid(t);
            sigs[1]["tweak"] = json!("00ff");
            assert_eq!(codes(t, sigs), vec!["tweak_not_approved"]);
        }
        let mut result = keysign_result(valid(ECDSA), ECDSA);
        result["signature_type"] = json!("1");
        let r = audit(&approved(ECDSA), &result);
        assert_eq!(r.alarms[0].code, "malformed");
        result.as_object_mut().unwrap().remove("signature_type");
        assert_eq!(audit(&approved(ECDSA), &result).alarms, vec![]);
    }

    #[test]
    fn ecdsa_encodings_and_recovery_ids() {
        let h = test_hash("first");
        let hash: [u8; 32] = hex::decode(&h).unwrap().try_into().unwrap();
        let (compact, recid) = node().sign_ecdsa(P0, &hash);
        let entry = |sig: Vec<u8>, rec: Value| json!({"bip32_path": P0, "msg_hash": h, "tweak": "", "signature": hex::encode(sig), "signature_recovery": rec});
        let der = ecdsa::Signature::from_compact(&compact)
            .unwrap()
            .serialize_der()
            .to_vec();
        let high = high_s(&compact);
        let with_v = |v: u8| {
            let mut s = compact.to_vec();
            s.push(v);
            s
        };
        let ok: Vec<(Vec<u8>, Value)> = vec![
            (compact.to_vec(), json!("")),
            (compact.to_vec(), Value::Null),
            (compact.to_vec(), json!(format!("{recid:02x}"))),
            (compact.to_vec(), json!(format!("0x{recid}"))),
            (compact.to_vec(), json!(recid)),
            (compact.to_vec(), json!(recid + 27)),
            (compact.to_vec(), json!(format!("{:x}", recid + 27))),
            (compact.to_vec(), json!(format!("{}", recid + 27))),
            (der.clone(), json!("")),
            (der, json!(format!("{recid:02x}"))),
            (with_v(recid), json!("")),
            (with_v(recid + 27), json!(format!("{recid:02x}"))),
            // High S verifies once normalised; its recovery id has the other parity.
            (high.to_vec(), json!("")),
            (high.to_vec(), json!(format!("{:02x}", recid ^ 1))),
        ];
        for (sig, rec) in ok {
            let c = codes(ECDSA, vec![entry(sig.clone(), rec.clone())]);
            assert_eq!(c, Vec::<&str>::new(), "{} / {rec}", hex::encode(&sig));
        }
        let bad: Vec<(Vec<u8>, Value)> = vec![
            (compact.to_vec(), json!(format!("{:02x}", recid ^ 1))),
            (compact.to_vec(), json!(recid ^ 1)),
            (compact.to_vec(), json!("05")),
            (compact.to_vec(), json!(4)),
            (compact.to_vec(), json!(300)),
            (high.to_vec(), json!(format!("{recid:02x}"))),
            (with_v(recid ^ 1), json!("")),
            (with_v(9), json!("")),
            (with_v(recid), json!(format!("{:02x}", recid ^ 1))),
            ([0xffu8; 64].to_vec(), json!("")),
        ];
        for (sig, rec) in bad {
            let c = codes(ECDSA, vec![entry(sig.clone(), rec.clone())]);
            assert_eq!(c, vec!["bad_signature"], "{} / {rec}", hex::encode(&sig));
        }
    }

    #[test]
    fn schnorr_verifies_under_the_key_or_its_bip86_output_key() {
        let h = test_hash("first");
        let hash: [u8; 32] = hex::decode(&h).unwrap().try_into().unwrap();
        let entry = |sig: [u8; 64]| json!({"bip32_path": P0, "msg_hash": h, "tweak": "", "signature": hex::encode(sig), "signature_recovery": ""});
        for tweaked in [false, true] {
            let own = node().sign_schnorr(P0, &hash, tweaked);
            assert_eq!(codes(SCHNORR, vec![entry(own)]), Vec::<&str>::new());
            let foreign = stranger().sign_schnorr(P0, &hash, tweaked);
            assert_eq!(codes(SCHNORR, vec![entry(foreign)]), vec!["bad_signature"]);
            let other_path = node().sign_schnorr(OTHER_PATH, &hash, tweaked);
            assert_eq!(
                codes(SCHNORR, vec![entry(other_path)]),
                vec!["bad_signature"]
            );
        }
    }

    #[test]
    fn an_unusable_approval_is_unauditable() {
        let mut a = approved(ECDSA);
        a.root_pub_key = Some("xpub-garbage".into());
        let r = audit(&a, &keysign_result(valid(ECDSA), ECDSA));
        assert_eq!(r.alarms.len(), 1);
        assert_eq!(r.alarms[0].code, "unauditable");
        let mut a = approved(EDDSA);
        a.ed25519_key = None;
        assert_eq!(audit(&a, &json!({})).alarms[0].code, "unauditable");
        let mut a = approved(ECDSA);
        a.signature_type = 9;
        assert_eq!(audit(&a, &json!({})).alarms[0].code, "unauditable");
        let mut a = approved(SCHNORR);
        a.items[0].bip32_path = "m/44'/0".into();
        let mut sigs = valid(SCHNORR);
        sigs[0]["bip32_path"] = json!("m/44'/0");
        let r = audit(&a, &keysign_result(sigs, SCHNORR));
        assert_eq!(r.alarms.len(), 1);
        assert_eq!(
            (r.alarms[0].code, r.alarms[0].index),
            ("unauditable", Some(0))
        );
    }

    #[test]
    fn from_input_records_what_was_approved() {
        let h = test_hash("first");
        let input = keysign_input(node(), ECDSA, &[(P0, &format!("0X{}", h.to_uppercase()))]);
        let a = ApprovedSign::from_input(&input).unwrap();
        assert_eq!(
            a,
            ApprovedSign {
                signature_type: 1,
                root_pub_key: Some(node().root_pub_key()),
                ed25519_key: None,
                items: vec![ApprovedItem {
                    bip32_path: P0.into(),
                    msg_hash: h.clone()
                }],
            }
        );
        let back: ApprovedSign = serde_json::from_str(&serde_json::to_string(&a).unwrap()).unwrap();
        assert_eq!(back, a);
        let e = approved(EDDSA);
        assert_eq!(e.ed25519_key, Some(node().ed25519_address()));
        assert_eq!(e.root_pub_key, None);
        // Ed25519 paths are labels only and may be absent.
        let mut input = keysign_input(node(), EDDSA, &[("m/44'/501'/0'", "abcd")]);
        assert_eq!(
            ApprovedSign::from_input(&input).unwrap().items[0].bip32_path,
            "m/44'/501'/0'"
        );
        input["detail"]
            .as_object_mut()
            .unwrap()
            .remove("bip32_path_list");
        let a = ApprovedSign::from_input(&input).unwrap();
        assert_eq!(a.items[0].bip32_path, "");
        let r = audit(
            &a,
            &keysign_result(vec![node().sign("m/x", "abcd", EDDSA)], EDDSA),
        );
        assert_eq!(r.alarms, vec![]);
    }

    #[test]
    fn from_input_refuses_what_cannot_be_audited() {
        let h = test_hash("first");
        let base = || keysign_input(node(), ECDSA, &[(P0, &h)]);
        let xprv = "xprv9s21ZrQH143K3QTDL4LXw2F7HEK3wJUD2nW2nRk4stbPy6cq3jPPqjiChkVvvNKmPGJxWUtg6LnF5kejMRNNU3TGtRBeJgk33yuGBxrMPHi";
        let edits: Vec<(&str, Value)> = vec![
            ("/detail/signature_type", json!(4)),
            ("/detail/signature_type", json!("1")),
            ("/detail/msg_hash_list", json!([])),
            ("/detail/msg_hash_list", json!(["xyz"])),
            ("/detail/msg_hash_list", json!([hex::encode([1u8; 31])])),
            ("/detail/msg_hash_list", json!([h, h])),
            (
                "/detail/msg_hash_list",
                json!(vec![h.clone(); MAX_SIGNATURES + 1]),
            ),
            ("/detail/bip32_path_list", json!(["m/44'/60'/0'/0/0"])),
            ("/detail/bip32_path_list", json!([7])),
            ("/detail/bip32_path_list", Value::Null),
            ("/detail/root_pub_key", json!(xprv)),
            ("/detail/root_pub_key", Value::Null),
            ("/detail", json!("x")),
        ];
        for (ptr, v) in edits {
            let mut input = base();
            *input.pointer_mut(ptr).unwrap() = v.clone();
            let err = ApprovedSign::from_input(&input).unwrap_err();
            assert!(!err.contains("xprv9s21"), "{err}");
            assert!(err.len() < 300, "{err}");
        }
        let mut input = keysign_input(node(), EDDSA, &[(P0, "abcd")]);
        *input
            .pointer_mut("/extra/transaction/source/address")
            .unwrap() = json!("0xdeadbeef");
        assert!(ApprovedSign::from_input(&input).is_err());
        input["extra"] = json!({});
        assert!(ApprovedSign::from_input(&input).is_err());
        let mut input = keysign_input(node(), EDDSA, &[(P0, &"ab".repeat(MAX_MESSAGE_BYTES + 1))]);
        assert!(ApprovedSign::from_input(&input).is_err());
        input["detail"]["msg_hash_list"] = json!(["ab"]);
        assert!(ApprovedSign::from_input(&input).is_ok());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(96))]

        /// Any single changed byte of a valid entry's signature or message
        /// raises an alarm, in every scheme.
        #[test]
        fn any_changed_byte_raises_an_alarm(
            scheme in 0usize..3,
            in_signature in any::<bool>(),
            pos in any::<prop::sample::Index>(),
            xor in 1u8..=255,
        ) {
            let t = SCHEMES[scheme];
            let mut sigs = valid(t);
            let field = if in_signature { "signature" } else { "msg_hash" };
            let mut bytes = hex::decode(sigs[0][field].as_str().unwrap()).unwrap();
            let i = pos.index(bytes.len());
            bytes[i] ^= xor;
            sigs[0][field] = json!(hex::encode(bytes));
            let r = audit(&approved(t), &keysign_result(sigs, t));
            prop_assert!(r.alarms.iter().any(|a| a.index == Some(0)), "{:?}", r.alarms);
            prop_assert!(r.alarms.iter().all(|a| a.index == Some(0)));
        }
    }
}
