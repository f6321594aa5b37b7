//! Rebuilding the unsigned transaction of a KEYSIGN request after its
//! description changed, so that `tss-gate fixture derive` writes a fixture
//! whose bytes and `msg_hash_list` agree with its new destination, amount or
//! token, byte for byte.
//!
//! Only what the description states is re-encoded; everything else the bytes
//! carry (nonce, fees, chain id, blockhash, inputs, unknown protobuf fields,
//! the signing key's own accounts) is kept exactly:
//! - EVM: `to`, `value` and `input` of the decoded transaction (a native
//!   transfer, or ERC-20 `transfer(recipient, amount)` to the pinned
//!   contract), encoded for signing by alloy-consensus as the decoder reads it.
//! - TRON: the one contract's TransferContract (`to_address`, `amount`) or
//!   TriggerSmartContract (`contract_address`, `data`), field by field, other
//!   fields copied as they were.
//! - Solana: the transfer's destination key and amount, in place (same
//!   length, same account order); an SPL transfer pays the associated token
//!   account of the described owner, or the described token account itself
//!   when the base fixture described one, and an associated token account
//!   creation for the old destination moves with it.
//! - Bitcoin: the described outputs replace the ones the old description
//!   matched; change stays (at the new `change_address` if that changed) and
//!   is resized so that the fee stays the same.
//!
//! The hashes come from the decoders ([`super::derive`]), and the result is
//! accepted only if [`super::derive`] then finds the bytes decodable, every
//! msg hash a signing hash and the description agreeing. Anything else (an
//! unknown chain or token, a contract call, a token switch the accounts
//! cannot follow) is [`Follow::Cannot`], and the caller keeps the old bytes:
//! never a fixture whose bytes silently disagree with it.

use std::str::FromStr;

use alloy_consensus::{EthereumTypedTransaction, SignableTransaction, TxEip4844};
use alloy_primitives::{Address, Bytes, TxKind, U256};
use bitcoin::{Amount, Network, ScriptBuf, Transaction, TxOut, consensus};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{
    Action, Decoded, DeriveConfig, Family, TokenAsset, TokenInfo, Transfer, bitcoin as btc, evm,
    shorten, solana, to_base_units, tron,
};

/// Paths of `extra.transaction` whose change the bytes must follow.
const TRIGGERS: [&str; 3] = ["/destination", "/token_id", "/raw_tx_info/selected_utxos"];

/// What [`follow`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum Follow {
    /// Nothing the bytes state changed.
    Unchanged,
    /// The bytes follow the new description.
    Rebuilt {
        /// Hex, with `0x` when the old one had it.
        unsigned_raw_tx: String,
        /// One entry per old entry, in the old order and spelling.
        msg_hash_list: Vec<Value>,
        /// What else changed with them (change resized, fee moved, ...).
        notes: Vec<String>,
    },
    /// The change cannot be followed: why. The old bytes stay.
    Cannot(String),
}

/// Rebuilds `unsigned_raw_tx` and `msg_hash_list` of the new request
/// (`new_detail`, `new_extra`) when its description differs from the old
/// one's in a way the bytes state (destination, token, selected UTXOs).
/// The raw transaction must be the old one's: bytes set by hand are kept.
pub fn follow(
    old_detail: &Value,
    old_extra: &Value,
    new_detail: &Value,
    new_extra: &Value,
    cfg: &DeriveConfig,
) -> Follow {
    let (Some(old_tx), Some(new_tx)) = (old_extra.get("transaction"), new_extra.get("transaction"))
    else {
        return Follow::Unchanged;
    };
    if TRIGGERS
        .iter()
        .all(|p| old_tx.pointer(p) == new_tx.pointer(p))
    {
        return Follow::Unchanged;
    }
    let raw_at = "/raw_tx_info/unsigned_raw_tx";
    let Some(raw) = new_tx
        .pointer(raw_at)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    else {
        return Follow::Unchanged;
    };
    if old_tx.pointer(raw_at) != new_tx.pointer(raw_at) {
        return Follow::Unchanged;
    }
    let old = Side {
        detail: old_detail,
        extra: old_extra,
        tx: old_tx,
    };
    let new = Side {
        detail: new_detail,
        extra: new_extra,
        tx: new_tx,
    };
    match rebuild(raw, &old, &new, cfg) {
        Ok(Some(f)) => f,
        Ok(None) => Follow::Unchanged,
        Err(why) => Follow::Cannot(why),
    }
}

/// One request's documents.
struct Side<'a> {
    detail: &'a Value,
    extra: &'a Value,
    tx: &'a Value,
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn rebuild(
    raw: &str,
    old: &Side<'_>,
    new: &Side<'_>,
    cfg: &DeriveConfig,
) -> Result<Option<Follow>, String> {
    let chain_id = str_at(new.tx, "/chain_id");
    let old_chain = str_at(old.tx, "/chain_id");
    if chain_id != old_chain {
        return Err(format!(
            "chain_id changed from `{}` to `{}`; the bytes stay bound to their chain",
            shorten(old_chain),
            shorten(chain_id)
        ));
    }
    let chain = cfg.chains.get(chain_id).ok_or_else(|| {
        format!(
            "chain `{}` is not in data.integrity.chains of the policy",
            shorten(chain_id)
        )
    })?;
    let dest_type = str_at(new.tx, "/destination/destination_type");
    if dest_type != "Address" {
        return Err(format!(
            "destination type `{}` is not a transfer to an address (a contract call's calldata is not rebuilt)",
            shorten(dest_type)
        ));
    }
    let bytes = super::decode_hex(raw).map_err(|e| e.0)?;
    let (new_bytes, mut notes) = match chain.family {
        Family::Evm => (evm_rebuild(&bytes, new.tx, cfg, chain_id)?, Vec::new()),
        Family::Tron => (tron_rebuild(&bytes, new.tx, cfg, chain_id)?, Vec::new()),
        Family::Solana => (
            solana_rebuild(&bytes, old.tx, new.tx, cfg, chain_id)?,
            Vec::new(),
        ),
        Family::Bitcoin => btc_rebuild(&bytes, old.tx, new.tx, chain.btc_network())?,
    };
    let prefix = if raw.starts_with("0x") || raw.starts_with("0X") {
        "0x"
    } else {
        ""
    };
    let new_raw = format!("{prefix}{}", alloy_primitives::hex::encode(&new_bytes));

    let old_hashes = signing_hashes(&super::derive(old.detail, old.extra, cfg));
    let mut extra = new.extra.clone();
    if let Some(slot) = extra.pointer_mut("/transaction/raw_tx_info/unsigned_raw_tx") {
        *slot = Value::String(new_raw.clone());
    }
    let facts = super::derive(new.detail, &extra, cfg)
        .ok_or("the rebuilt transaction was not derived (no raw transaction)")?;
    if let Some(e) = facts.get("error").and_then(Value::as_str) {
        return Err(format!("the rebuilt transaction does not decode: {e}"));
    }
    let new_hashes = signing_hashes(&Some(facts));
    let old_list = old.detail.get("msg_hash_list").and_then(Value::as_array);
    let list = match map_hashes(old_list, &old_hashes, &new_hashes) {
        Some(l) => l,
        None => {
            notes.push(
                "the base fixture's msg_hash_list did not match its bytes; it now lists the new signing hashes in order"
                    .to_owned(),
            );
            new_hashes
                .iter()
                .map(|h| Value::String(spelled_like(None, h)))
                .collect()
        }
    };
    let mut detail = new.detail.clone();
    if let Some(obj) = detail.as_object_mut() {
        obj.insert("msg_hash_list".to_owned(), Value::Array(list.clone()));
    }
    let check = super::derive(&detail, &extra, cfg).unwrap_or(Value::Null);
    let agrees = check.get("description_agrees") == Some(&Value::Bool(true));
    let matches = check.get("msg_hashes_match") == Some(&Value::Bool(true));
    if !agrees || !matches {
        let why: Vec<String> = check
            .get("disagreements")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        return Err(format!(
            "the rebuilt transaction would still disagree with the description: {}",
            if why.is_empty() {
                "its msg hashes do not match".to_owned()
            } else {
                why.join("; ")
            }
        ));
    }
    if new_raw == raw && old_list == Some(&list) {
        return Ok(None);
    }
    Ok(Some(Follow::Rebuilt {
        unsigned_raw_tx: new_raw,
        msg_hash_list: list,
        notes,
    }))
}

fn signing_hashes(facts: &Option<Value>) -> Vec<String> {
    facts
        .as_ref()
        .and_then(|f| f.get("signing_hashes"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// `hash` ("0x" + lowercase) spelled as `like` was: with or without `0x`
/// (without when there is no old entry, as the node sends them).
fn spelled_like(like: Option<&str>, hash: &str) -> String {
    let bare = hash.strip_prefix("0x").unwrap_or(hash);
    match like {
        Some(l) if l.starts_with("0x") || l.starts_with("0X") => format!("0x{bare}"),
        _ => bare.to_owned(),
    }
}

/// Each old entry replaced by the new hash at its place among the signing
/// hashes (so the `bip32_path_list` pairing holds); None when an old entry
/// is not a signing hash of the old bytes.
fn map_hashes(
    old_list: Option<&Vec<Value>>,
    old_hashes: &[String],
    new_hashes: &[String],
) -> Option<Vec<Value>> {
    let list = old_list.filter(|l| !l.is_empty())?;
    if old_hashes.len() != new_hashes.len() {
        return None;
    }
    list.iter()
        .map(|v| {
            let s = v.as_str()?;
            let body = s
                .strip_prefix("0x")
                .or_else(|| s.strip_prefix("0X"))
                .unwrap_or(s);
            let norm = format!("0x{}", body.to_ascii_lowercase());
            let i = old_hashes.iter().position(|h| *h == norm)?;
            new_hashes
                .get(i)
                .map(|h| Value::String(spelled_like(Some(s), h)))
        })
        .collect()
}

/// The one plain transfer the old bytes make, or why there is none to
/// re-target.
fn plain_transfer(d: &Decoded) -> Result<&Transfer, String> {
    match &d.action {
        Action::Transfers(ts) => match ts.as_slice() {
            [t] => Ok(t),
            more => Err(format!(
                "the raw transaction makes {} transfers; derive re-targets one",
                more.len()
            )),
        },
        Action::Other(what) => Err(format!(
            "the raw transaction is {what}, not a plain transfer derive can re-target"
        )),
        Action::Nothing => Err("the raw transaction moves no value".to_owned()),
    }
}

/// `destination.account_output`'s address and amount.
fn account_output(tx: &Value) -> Result<(&str, &str), String> {
    let out = tx
        .pointer("/destination/account_output")
        .filter(|v| v.is_object())
        .ok_or("the description has no destination.account_output")?;
    let field = |k: &str| {
        out.get(k)
            .and_then(Value::as_str)
            .ok_or_else(|| format!("destination.account_output.{k} is not a string"))
    };
    Ok((field("address")?, field("amount")?))
}

/// The described token's row, which must be on `chain_id`.
fn token_of<'c>(
    tx: &Value,
    cfg: &'c DeriveConfig,
    chain_id: &str,
) -> Result<&'c TokenInfo, String> {
    let id = str_at(tx, "/token_id");
    let t = cfg
        .tokens
        .get(id)
        .ok_or_else(|| format!("token `{}` is not in data.integrity.tokens", shorten(id)))?;
    if t.chain != chain_id {
        return Err(format!(
            "token `{}` belongs to chain `{}`, not `{}`",
            shorten(id),
            t.chain,
            shorten(chain_id)
        ));
    }
    Ok(t)
}

/// The described amount in the token's base units.
fn base_units(amount: &str, token: &TokenInfo) -> Result<String, String> {
    to_base_units(amount, token.decimals).map_err(|e| format!("amount: {e}"))
}

fn u64_units(amount: &str, token: &TokenInfo) -> Result<u64, String> {
    let base = base_units(amount, token)?;
    base.parse::<u64>()
        .map_err(|_| format!("amount `{amount}` ({base} base units) does not fit the transaction"))
}

/// ERC-20 / TRC-20 `transfer(recipient, amount)` calldata; `recipient` is
/// the 20-byte address.
fn transfer_calldata(recipient: &[u8], amount: U256) -> Vec<u8> {
    let mut data = evm::SEL_TRANSFER.to_vec();
    data.extend_from_slice(&[0u8; 12]);
    data.extend_from_slice(recipient);
    data.extend_from_slice(&amount.to_be_bytes::<32>());
    data
}

/// A token `transfer` must be exactly selector + two words: anything more
/// is not a plain transfer to re-encode.
fn exact_token_call(d: &Decoded) -> Result<(), String> {
    if d.token_transfer.is_some() && d.call.as_ref().map(|c| c.data.len()) != Some(4 + 64) {
        return Err(
            "the token transfer's calldata carries bytes beyond its two arguments".to_owned(),
        );
    }
    Ok(())
}

fn evm_rebuild(
    bytes: &[u8],
    new_tx: &Value,
    cfg: &DeriveConfig,
    chain_id: &str,
) -> Result<Vec<u8>, String> {
    let d = evm::decode(bytes).map_err(|e| e.0)?;
    plain_transfer(&d)?;
    exact_token_call(&d)?;
    let (to_text, amount_text) = account_output(new_tx)?;
    let token = token_of(new_tx, cfg, chain_id)?;
    let amount = U256::from_str_radix(&base_units(amount_text, token)?, 10)
        .map_err(|e| format!("amount `{amount_text}`: {e}"))?;
    let evm_address = |s: &str| {
        Address::from_str(s).map_err(|_| format!("`{}` is not an EVM address", shorten(s)))
    };
    let recipient = evm_address(to_text)?;
    let (to, value, input) = match &token.asset {
        TokenAsset::Native => (recipient, amount, Bytes::new()),
        TokenAsset::Pinned(contract) => (
            evm_address(contract)?,
            U256::ZERO,
            Bytes::from(transfer_calldata(recipient.as_slice(), amount)),
        ),
    };
    let mut buf = bytes;
    let mut tx = EthereumTypedTransaction::<TxEip4844>::decode_unsigned(&mut buf)
        .map_err(|e| format!("not an unsigned EVM transaction: {e}"))?;
    match &mut tx {
        EthereumTypedTransaction::Legacy(t) => {
            (t.to, t.value, t.input) = (TxKind::Call(to), value, input);
        }
        EthereumTypedTransaction::Eip2930(t) => {
            (t.to, t.value, t.input) = (TxKind::Call(to), value, input);
        }
        EthereumTypedTransaction::Eip1559(t) => {
            (t.to, t.value, t.input) = (TxKind::Call(to), value, input);
        }
        EthereumTypedTransaction::Eip4844(t) => (t.to, t.value, t.input) = (to, value, input),
        EthereumTypedTransaction::Eip7702(t) => (t.to, t.value, t.input) = (to, value, input),
    }
    let mut out = Vec::with_capacity(bytes.len());
    tx.encode_for_signing(&mut out);
    Ok(out)
}

/// One protobuf field as it appears in a message.
struct PbField<'a> {
    num: u64,
    wire: u64,
    /// Varint bytes, fixed bytes, or the length-delimited payload.
    payload: &'a [u8],
    /// The whole field: key, length and payload.
    record: &'a [u8],
}

fn pb_varint(buf: &mut &[u8]) -> Result<u64, String> {
    let mut out: u64 = 0;
    for i in 0..10u32 {
        let (&b, rest) = buf.split_first().ok_or("protobuf: truncated varint")?;
        *buf = rest;
        out |= u64::from(b & 0x7f).checked_shl(7 * i).unwrap_or(0);
        if b & 0x80 == 0 {
            return Ok(out);
        }
    }
    Err("protobuf: varint too long".to_owned())
}

fn pb_take<'a>(buf: &mut &'a [u8], n: usize) -> Result<&'a [u8], String> {
    let (head, rest) = buf.split_at_checked(n).ok_or("protobuf: truncated field")?;
    *buf = rest;
    Ok(head)
}

fn pb_fields(buf: &[u8]) -> Result<Vec<PbField<'_>>, String> {
    let mut out = Vec::new();
    let mut rest = buf;
    while !rest.is_empty() {
        let start = rest;
        let key = pb_varint(&mut rest)?;
        let (num, wire) = (key >> 3, key & 7);
        let payload = match wire {
            0 => {
                let before = rest;
                pb_varint(&mut rest)?;
                before
                    .get(..before.len().saturating_sub(rest.len()))
                    .unwrap_or_default()
            }
            1 => pb_take(&mut rest, 8)?,
            2 => {
                let n = usize::try_from(pb_varint(&mut rest)?)
                    .map_err(|_| "protobuf: length overflow".to_owned())?;
                pb_take(&mut rest, n)?
            }
            5 => pb_take(&mut rest, 4)?,
            w => return Err(format!("protobuf: unsupported wire type {w}")),
        };
        let record = start
            .get(..start.len().saturating_sub(rest.len()))
            .unwrap_or_default();
        out.push(PbField {
            num,
            wire,
            payload,
            record,
        });
    }
    Ok(out)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let low = u8::try_from(v & 0x7f).unwrap_or_default();
        v >>= 7;
        if v == 0 {
            out.push(low);
            return;
        }
        out.push(low | 0x80);
    }
}

/// A length-delimited field.
fn pb_bytes(num: u64, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + 4);
    put_varint(&mut out, (num << 3) | 2);
    put_varint(&mut out, u64::try_from(bytes.len()).unwrap_or(u64::MAX));
    out.extend_from_slice(bytes);
    out
}

/// A varint field; proto3 omits a zero.
fn pb_uint(num: u64, v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    if v != 0 {
        put_varint(&mut out, num << 3);
        put_varint(&mut out, v);
    }
    out
}

/// `buf` with each field named in `replace` written as given (at its first
/// place; an empty record removes it), fields absent from `buf` appended,
/// every other field copied byte for byte.
fn pb_rewrite(buf: &[u8], replace: &[(u64, Vec<u8>)]) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(buf.len() + 64);
    let mut done: Vec<u64> = Vec::new();
    for f in pb_fields(buf)? {
        match replace.iter().find(|(n, _)| *n == f.num) {
            Some((n, record)) => {
                if !done.contains(n) {
                    out.extend_from_slice(record);
                    done.push(*n);
                }
            }
            None => out.extend_from_slice(f.record),
        }
    }
    for (n, record) in replace {
        if !done.contains(n) {
            out.extend_from_slice(record);
        }
    }
    Ok(out)
}

fn pb_find<'a>(fields: &'a [PbField<'a>], num: u64, what: &str) -> Result<&'a PbField<'a>, String> {
    fields
        .iter()
        .find(|f| f.num == num && f.wire == 2)
        .ok_or_else(|| format!("the TRON transaction has no {what}"))
}

/// A base58check TRON address as its 21 bytes (0x41 prefix).
fn tron_bytes(text: &str) -> Result<Vec<u8>, String> {
    let bad = || format!("`{}` is not a TRON address", shorten(text));
    let v = bs58::decode(text).into_vec().map_err(|_| bad())?;
    let (payload, check) = v.split_at_checked(21).ok_or_else(bad)?;
    let sum = Sha256::digest(Sha256::digest(payload));
    if check.len() != 4 || sum.get(..4) != Some(check) || payload.first() != Some(&0x41) {
        return Err(bad());
    }
    Ok(payload.to_vec())
}

const TRANSFER_CONTRACT: u64 = 1;
const TRIGGER_SMART_CONTRACT: u64 = 31;

fn tron_rebuild(
    bytes: &[u8],
    new_tx: &Value,
    cfg: &DeriveConfig,
    chain_id: &str,
) -> Result<Vec<u8>, String> {
    let d = tron::decode(bytes).map_err(|e| e.0)?;
    plain_transfer(&d)?;
    exact_token_call(&d)?;
    let was_transfer = d.kind == "tron_transfer";
    let (to_text, amount_text) = account_output(new_tx)?;
    let token = token_of(new_tx, cfg, chain_id)?;
    let amount = u64_units(amount_text, token)?;
    if i64::try_from(amount).is_err() {
        return Err(format!("amount `{amount_text}` does not fit TRON's int64"));
    }
    let recipient = tron_bytes(to_text)?;

    let raw = pb_fields(bytes)?;
    let contract = pb_find(&raw, 11, "contract")?;
    let contract_fields = pb_fields(contract.payload)?;
    let any = pb_find(&contract_fields, 2, "contract parameter")?;
    let any_fields = pb_fields(any.payload)?;
    let old_param = pb_find(&any_fields, 2, "contract parameter value")?.payload;
    let owner = pb_fields(old_param)?
        .iter()
        .find(|f| f.num == 1 && f.wire == 2)
        .map(|f| f.payload.to_vec())
        .ok_or("the TRON contract has no owner_address")?;

    let (ctype, url, param) = match &token.asset {
        // TransferContract: owner_address 1, to_address 2, amount 3.
        TokenAsset::Native => {
            let fields = [(2, pb_bytes(2, &recipient)), (3, pb_uint(3, amount))];
            let param = if was_transfer {
                pb_rewrite(old_param, &fields)?
            } else {
                pb_rewrite(&pb_bytes(1, &owner), &fields)?
            };
            (TRANSFER_CONTRACT, "protocol.TransferContract", param)
        }
        // TriggerSmartContract: owner 1, contract 2, call_value 3, data 4.
        TokenAsset::Pinned(c) => {
            let contract_address = tron_bytes(c)?;
            let data =
                transfer_calldata(recipient.get(1..).unwrap_or_default(), U256::from(amount));
            let fields = [(2, pb_bytes(2, &contract_address)), (4, pb_bytes(4, &data))];
            let param = if was_transfer {
                pb_rewrite(&pb_bytes(1, &owner), &fields)?
            } else {
                pb_rewrite(old_param, &fields)?
            };
            (
                TRIGGER_SMART_CONTRACT,
                "protocol.TriggerSmartContract",
                param,
            )
        }
    };
    let switched = was_transfer != (ctype == TRANSFER_CONTRACT);
    let mut any_fields = vec![(2, pb_bytes(2, &param))];
    let mut contract_fields = Vec::new();
    if switched {
        any_fields.push((
            1,
            pb_bytes(1, format!("type.googleapis.com/{url}").as_bytes()),
        ));
        contract_fields.push((1, pb_uint(1, ctype)));
    }
    let any_new = pb_rewrite(any.payload, &any_fields)?;
    contract_fields.push((2, pb_bytes(2, &any_new)));
    let contract_new = pb_rewrite(contract.payload, &contract_fields)?;
    pb_rewrite(bytes, &[(11, pb_bytes(11, &contract_new))])
}

/// Offsets of a Solana message inside `unsigned_raw_tx`.
struct SolLayout {
    signers: usize,
    keys_at: usize,
    n_keys: usize,
    ixs: Vec<SolIx>,
}

struct SolIx {
    program: usize,
    accounts: Vec<usize>,
    data_at: usize,
    data_len: usize,
}

impl SolLayout {
    fn key(&self, b: &[u8], i: usize) -> Option<[u8; 32]> {
        if i >= self.n_keys {
            return None;
        }
        let at = self.keys_at.checked_add(i.checked_mul(32)?)?;
        <[u8; 32]>::try_from(b.get(at..at.checked_add(32)?)?).ok()
    }

    fn key_at(&self, i: usize) -> Option<std::ops::Range<usize>> {
        let at = self.keys_at.checked_add(i.checked_mul(32)?)?;
        Some(at..at.checked_add(32)?)
    }
}

fn sol_shortvec(b: &[u8], p: &mut usize) -> Option<usize> {
    let mut v: usize = 0;
    for i in 0..3 {
        let byte = *b.get(*p)?;
        *p = p.checked_add(1)?;
        v |= usize::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

fn sol_parse(b: &[u8], start: usize) -> Option<SolLayout> {
    let mut p = start;
    let first = *b.get(p)?;
    p = p.checked_add(1)?;
    let v0 = first & 0x80 != 0;
    let signers = if v0 {
        let s = *b.get(p)?;
        p = p.checked_add(1)?;
        s
    } else {
        first
    };
    p = p.checked_add(2)?;
    let n_keys = sol_shortvec(b, &mut p)?;
    let keys_at = p;
    p = p.checked_add(n_keys.checked_mul(32)?)?.checked_add(32)?;
    let n_ix = sol_shortvec(b, &mut p)?;
    let mut ixs = Vec::new();
    for _ in 0..n_ix {
        let program = usize::from(*b.get(p)?);
        p = p.checked_add(1)?;
        let n_acc = sol_shortvec(b, &mut p)?;
        let accounts = b
            .get(p..p.checked_add(n_acc)?)?
            .iter()
            .map(|a| usize::from(*a))
            .collect();
        p = p.checked_add(n_acc)?;
        let data_len = sol_shortvec(b, &mut p)?;
        let data_at = p;
        p = p.checked_add(data_len)?;
        ixs.push(SolIx {
            program,
            accounts,
            data_at,
            data_len,
        });
    }
    if v0 {
        let n = sol_shortvec(b, &mut p)?;
        for _ in 0..n {
            p = p.checked_add(32)?;
            let w = sol_shortvec(b, &mut p)?;
            p = p.checked_add(w)?;
            let r = sol_shortvec(b, &mut p)?;
            p = p.checked_add(r)?;
        }
    }
    (p == b.len()).then_some(SolLayout {
        signers: usize::from(signers),
        keys_at,
        n_keys,
        ixs,
    })
}

/// A bare message, or an unsigned wire transaction around one (as the
/// decoder accepts them).
fn sol_layout(b: &[u8]) -> Option<SolLayout> {
    sol_parse(b, 0).or_else(|| {
        let mut p = 0;
        let n = sol_shortvec(b, &mut p)?;
        sol_parse(b, p.checked_add(n.checked_mul(64)?)?)
    })
}

fn sol_key(text: &str) -> Result<[u8; 32], String> {
    bs58::decode(text)
        .into_vec()
        .ok()
        .and_then(|v| <[u8; 32]>::try_from(v.as_slice()).ok())
        .ok_or_else(|| format!("`{}` is not a Solana address", shorten(text)))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum SolTransfer {
    System,
    Spl,
    SplChecked,
}

/// One account key to replace: its index, the new key, and the
/// (instruction, position) pairs allowed to name it.
struct KeySwap {
    index: usize,
    key: [u8; 32],
    uses: Vec<(usize, usize)>,
}

fn solana_rebuild(
    bytes: &[u8],
    old_tx: &Value,
    new_tx: &Value,
    cfg: &DeriveConfig,
    chain_id: &str,
) -> Result<Vec<u8>, String> {
    let d = solana::decode(bytes).map_err(|e| e.0)?;
    let moved = plain_transfer(&d)?;
    let (to_text, amount_text) = account_output(new_tx)?;
    let token = token_of(new_tx, cfg, chain_id)?;
    let amount = u64_units(amount_text, token)?;
    let lay = sol_layout(bytes).ok_or("the Solana message could not be laid out")?;
    let key = |i: usize| lay.key(bytes, i);

    let kinds: Vec<(usize, &SolIx, SolTransfer)> = lay
        .ixs
        .iter()
        .enumerate()
        .filter_map(|(j, ix)| {
            let program = key(ix.program)?;
            let tag = bytes.get(ix.data_at).copied();
            let kind = if solana::is_system_program(&program) {
                SolTransfer::System
            } else if solana::is_token_program(&program) && tag == Some(3) {
                SolTransfer::Spl
            } else if solana::is_token_program(&program) && tag == Some(12) {
                SolTransfer::SplChecked
            } else {
                return None;
            };
            Some((j, ix, kind))
        })
        .collect();
    let [(j, ix, kind)] = kinds.as_slice() else {
        return Err(format!(
            "the message has {} transfer instructions; derive re-targets one",
            kinds.len()
        ));
    };
    let (j, kind) = (*j, *kind);
    let token_id = str_at(new_tx, "/token_id");
    let mut swaps = Vec::new();
    let amount_at = match (kind, &token.asset) {
        (SolTransfer::System, TokenAsset::Native) => {
            let dest = *ix.accounts.get(1).ok_or("the transfer has no destination")?;
            swaps.push(KeySwap {
                index: dest,
                key: sol_key(to_text)?,
                uses: vec![(j, 1)],
            });
            ix.data_at.checked_add(4)
        }
        (SolTransfer::Spl | SolTransfer::SplChecked, TokenAsset::Pinned(mint_text)) => {
            let mint = sol_key(mint_text)?;
            let checked = kind == SolTransfer::SplChecked;
            if checked && ix.accounts.get(1).and_then(|m| key(*m)) != Some(mint) {
                return Err(format!(
                    "the token transfer moves another mint than `{}`'s; derive does not switch SPL tokens (the accounts differ)",
                    shorten(token_id)
                ));
            }
            let pos = if checked { 2 } else { 1 };
            let dest = *ix.accounts.get(pos).ok_or("the transfer has no destination")?;
            let old_dest = key(dest).ok_or("the transfer's destination is not in the message")?;
            let program = key(ix.program).ok_or("the token program is not in the message")?;
            let old_described = account_output(old_tx).ok().and_then(|(a, _)| sol_key(a).ok());
            if old_described == Some(old_dest) {
                // The base described the token account itself: so does this one.
                swaps.push(KeySwap {
                    index: dest,
                    key: sol_key(to_text)?,
                    uses: vec![(j, pos)],
                });
            } else {
                let owner = sol_key(to_text)?;
                let ata = solana::associated_token_account(&owner, &program, &mint)
                    .ok_or("no associated token account address exists for that owner")?;
                let mut uses = vec![(j, pos)];
                // An associated token account created for the old destination
                // is created for the new owner instead.
                for (cj, c) in lay.ixs.iter().enumerate() {
                    let is_create = key(c.program).is_some_and(|p| solana::is_ata_program(&p));
                    if is_create && c.accounts.get(1) == Some(&dest) {
                        if c.accounts.get(3).and_then(|m| key(*m)) != Some(mint) {
                            return Err("the token account creation names another mint".to_owned());
                        }
                        let owner_index = *c
                            .accounts
                            .get(2)
                            .ok_or("the token account creation names no owner")?;
                        uses.push((cj, 1));
                        swaps.push(KeySwap {
                            index: owner_index,
                            key: owner,
                            uses: vec![(cj, 2)],
                        });
                    }
                }
                swaps.push(KeySwap {
                    index: dest,
                    key: ata,
                    uses,
                });
            }
            ix.data_at.checked_add(1)
        }
        (SolTransfer::System, TokenAsset::Pinned(_)) => {
            return Err(format!(
                "the message moves SOL but the description names token `{}`; derive does not turn a System transfer into an SPL one (the accounts differ)",
                shorten(token_id)
            ));
        }
        (_, TokenAsset::Native) => {
            return Err(format!(
                "the message moves an SPL token ({}) but the description names the native coin; derive does not turn an SPL transfer into a System one",
                moved.asset.label()
            ));
        }
    }
    .ok_or("the transfer's data is out of range")?;

    let mut out = bytes.to_vec();
    for s in &swaps {
        if s.index >= lay.n_keys {
            return Err("the transfer names an account from an address lookup table".to_owned());
        }
        if s.index < lay.signers {
            return Err(format!(
                "account #{} is a signer of the message; derive keeps the signing accounts",
                s.index
            ));
        }
        for (jj, other) in lay.ixs.iter().enumerate() {
            if other.program == s.index {
                return Err(format!("account #{} is also a program", s.index));
            }
            for (p, a) in other.accounts.iter().enumerate() {
                if *a == s.index && !s.uses.contains(&(jj, p)) {
                    return Err(format!(
                        "account #{} is also named by instruction #{jj}, which derive does not rewrite",
                        s.index
                    ));
                }
            }
        }
        let unchanged = key(s.index) == Some(s.key);
        if !unchanged && (0..lay.n_keys).any(|i| key(i) == Some(s.key)) {
            return Err(format!(
                "{} is already an account of the message",
                bs58::encode(s.key).into_string()
            ));
        }
        let range = lay.key_at(s.index).ok_or("account out of range")?;
        out.get_mut(range)
            .ok_or("account out of range")?
            .copy_from_slice(&s.key);
    }
    let end = amount_at.checked_add(8).ok_or("out of range")?;
    if end > ix.data_at.saturating_add(ix.data_len) {
        return Err("the transfer's data is too short".to_owned());
    }
    out.get_mut(amount_at..end)
        .ok_or("the transfer's data is out of range")?
        .copy_from_slice(&amount.to_le_bytes());
    Ok(out)
}

fn btc_script(text: &str, network: Network) -> Result<ScriptBuf, String> {
    bitcoin::Address::<bitcoin::address::NetworkUnchecked>::from_str(text)
        .map_err(|e| format!("`{}` is not a Bitcoin address: {e}", shorten(text)))?
        .require_network(network)
        .map(|a| a.script_pubkey())
        .map_err(|_| format!("`{}` is not an address of {network}", shorten(text)))
}

fn btc_sat(text: &str) -> Result<u64, String> {
    to_base_units(text, 8)
        .map_err(|e| e.to_string())?
        .parse::<u64>()
        .ok()
        .filter(|s| *s <= Amount::MAX_MONEY.to_sat())
        .ok_or_else(|| format!("`{}` BTC is more than 21 000 000 BTC", shorten(text)))
}

/// The described outputs (`utxo_outputs`, or one `account_output`).
fn btc_described(tx: &Value, network: Network) -> Result<Vec<(ScriptBuf, u64)>, String> {
    let present = |k: &str| {
        tx.get("destination")
            .and_then(|d| d.get(k))
            .filter(|v| !v.is_null())
    };
    let items: Vec<&Value> = match (present("utxo_outputs"), present("account_output")) {
        (Some(_), Some(_)) => {
            return Err("the description names both utxo_outputs and account_output".to_owned());
        }
        (Some(list), None) => list
            .as_array()
            .ok_or("utxo_outputs is not a list")?
            .iter()
            .collect(),
        (None, Some(one)) => vec![one],
        (None, None) => return Err("the description names no outputs".to_owned()),
    };
    items
        .iter()
        .enumerate()
        .map(|(k, item)| {
            let field = |f: &str| {
                item.get(f)
                    .and_then(Value::as_str)
                    .ok_or_else(|| format!("described output #{k}: {f} is not a string"))
            };
            let script = btc_script(field("address")?, network)?;
            let sat =
                btc_sat(field("amount")?).map_err(|e| format!("described output #{k}: {e}"))?;
            Ok((script, sat))
        })
        .collect()
}

fn btc_change(tx: &Value, network: Network) -> Result<Option<ScriptBuf>, String> {
    match tx
        .pointer("/destination/change_address")
        .and_then(Value::as_str)
    {
        None | Some("") => Ok(None),
        Some(a) => btc_script(a, network).map(Some),
    }
}

fn btc_inputs_total(tx: &Value) -> Result<u64, String> {
    let list = tx
        .pointer("/raw_tx_info/selected_utxos")
        .and_then(Value::as_array)
        .ok_or("raw_tx_info.selected_utxos is missing or not an array")?;
    let mut total: u64 = 0;
    for (k, u) in list.iter().enumerate() {
        let v = u
            .get("value")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("selected_utxos[{k}].value is not a string"))?;
        total = total
            .checked_add(btc_sat(v).map_err(|e| format!("selected_utxos[{k}]: {e}"))?)
            .ok_or("the inputs overflow")?;
    }
    Ok(total)
}

fn btc_rebuild(
    bytes: &[u8],
    old_tx: &Value,
    new_tx: &Value,
    network: Network,
) -> Result<(Vec<u8>, Vec<String>), String> {
    let old = btc::decode(bytes, old_tx, network)
        .map_err(|e| format!("the base fixture's transaction does not decode: {}", e.0))?;
    let old_fee: u64 = old
        .facts
        .get("fees")
        .and_then(|f| f.get("total"))
        .and_then(Value::as_str)
        .and_then(|t| t.parse().ok())
        .ok_or("the base fixture's fee is unknown")?;
    let mut tx: Transaction =
        consensus::deserialize(bytes).map_err(|e| format!("not a Bitcoin transaction: {e}"))?;
    let old_desc = btc_described(old_tx, network)?;
    let new_desc = btc_described(new_tx, network)?;

    // Which raw output each old described output is (the rest is change).
    let mut role: Vec<Option<usize>> = vec![None; tx.output.len()];
    for (k, (script, sat)) in old_desc.iter().enumerate() {
        let slot =
            tx.output.iter().zip(role.iter_mut()).find(|(o, r)| {
                r.is_none() && o.script_pubkey == *script && o.value.to_sat() == *sat
            });
        match slot {
            Some((_, r)) => *r = Some(k),
            None => {
                return Err(format!(
                    "the base fixture's described output #{k} is not an output of its raw tx, so its change cannot be told apart"
                ));
            }
        }
    }
    let (old_change, new_change) = (btc_change(old_tx, network)?, btc_change(new_tx, network)?);
    let mut outs: Vec<TxOut> = Vec::with_capacity(new_desc.len() + 1);
    let mut change_at = None;
    for (o, r) in tx.output.iter().zip(&role) {
        match r {
            Some(k) => {
                if let Some((script, sat)) = new_desc.get(*k) {
                    outs.push(TxOut {
                        value: Amount::from_sat(*sat),
                        script_pubkey: script.clone(),
                    });
                }
            }
            None => {
                let mut change = o.clone();
                if let (Some(from), Some(to)) = (&old_change, &new_change)
                    && change.script_pubkey == *from
                {
                    change.script_pubkey = to.clone();
                }
                change_at = Some(outs.len());
                outs.push(change);
            }
        }
    }
    for (script, sat) in new_desc.iter().skip(old_desc.len()) {
        outs.push(TxOut {
            value: Amount::from_sat(*sat),
            script_pubkey: script.clone(),
        });
    }
    let total_in = btc_inputs_total(new_tx)?;
    let mut notes = Vec::new();
    let sum = |outs: &[TxOut], skip: Option<usize>| -> Result<u64, String> {
        outs.iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != skip)
            .try_fold(0u64, |a, (_, o)| a.checked_add(o.value.to_sat()))
            .ok_or_else(|| "the outputs overflow".to_owned())
    };
    let paid = sum(&outs, change_at)?;
    match change_at {
        Some(i) => {
            let change = total_in
                .checked_sub(paid)
                .and_then(|r| r.checked_sub(old_fee))
                .ok_or_else(|| {
                    format!(
                        "the inputs ({total_in} sat) do not cover the outputs ({paid} sat) and the fee ({old_fee} sat); raise selected_utxos or lower the amount"
                    )
                })?;
            let before = outs.get(i).map(|o| o.value.to_sat());
            if change == 0 {
                outs.remove(i);
                notes.push(format!(
                    "the change output is gone (the fee of {old_fee} sat takes the rest)"
                ));
            } else if let Some(o) = outs.get_mut(i) {
                o.value = Amount::from_sat(change);
                if before != Some(change) {
                    notes.push(format!(
                        "change resized to {change} sat to keep the fee at {old_fee} sat"
                    ));
                }
            }
        }
        None => {
            let fee = total_in.checked_sub(paid).ok_or_else(|| {
                format!("the outputs ({paid} sat) exceed the inputs ({total_in} sat)")
            })?;
            if fee != old_fee {
                notes.push(format!(
                    "no change output: the fee is now {fee} sat (was {old_fee} sat)"
                ));
            }
        }
    }
    if outs.is_empty() {
        return Err("the transaction would have no outputs".to_owned());
    }
    tx.output = outs;
    Ok((consensus::serialize(&tx), notes))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn protobuf_rewrite_keeps_other_fields_and_appends_missing_ones() {
        let msg = [pb_bytes(1, b"ab"), pb_uint(3, 7), pb_bytes(9, b"z")].concat();
        let out = pb_rewrite(&msg, &[(3, pb_uint(3, 300)), (4, pb_bytes(4, b"q"))]).unwrap();
        assert_eq!(
            out,
            [
                pb_bytes(1, b"ab"),
                pb_uint(3, 300),
                pb_bytes(9, b"z"),
                pb_bytes(4, b"q")
            ]
            .concat()
        );
        // A zero varint is omitted, as proto3 writes it.
        let out = pb_rewrite(&msg, &[(3, pb_uint(3, 0))]).unwrap();
        assert_eq!(out, [pb_bytes(1, b"ab"), pb_bytes(9, b"z")].concat());
        assert!(pb_fields(&[0x0a, 0x05, 1]).is_err());
    }

    #[test]
    fn hashes_keep_their_place_and_spelling() {
        let old = vec![json!("BB"), json!("0xaa")];
        let got = map_hashes(
            Some(&old),
            &["0xaa".into(), "0xbb".into()],
            &["0x11".into(), "0x22".into()],
        );
        assert_eq!(got, Some(vec![json!("22"), json!("0x11")]));
        assert_eq!(
            map_hashes(Some(&vec![json!("cc")]), &["0xaa".into()], &["0x11".into()]),
            None
        );
    }

    #[test]
    fn an_unchanged_description_changes_nothing() {
        let extra = json!({"transaction": {"chain_id": "ETH", "destination": {"x": 1},
            "raw_tx_info": {"unsigned_raw_tx": "0x00"}}});
        let detail = json!({});
        let cfg = DeriveConfig::default();
        assert_eq!(
            follow(&detail, &extra, &detail, &extra, &cfg),
            Follow::Unchanged
        );
        let mut moved = extra.clone();
        moved["transaction"]["destination"]["x"] = json!(2);
        match follow(&detail, &extra, &detail, &moved, &cfg) {
            Follow::Cannot(why) => assert!(why.contains("not in data.integrity.chains"), "{why}"),
            other => panic!("{other:?}"),
        }
        // Bytes set by hand are theirs.
        let mut set = moved.clone();
        set["transaction"]["raw_tx_info"]["unsigned_raw_tx"] = json!("0x01");
        assert_eq!(
            follow(&detail, &extra, &detail, &set, &cfg),
            Follow::Unchanged
        );
    }
}
