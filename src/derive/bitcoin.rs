//! Bitcoin: decodes an unsigned transaction, recomputes the signing hash of
//! every input from the prevouts Cobo describes, and checks the outputs
//! against the description.
//!
//! This module owns everything Bitcoin-specific in transaction integrity:
//! the consensus decoding of `unsigned_raw_tx`, the reading of
//! `raw_tx_info.selected_utxos`, the per-input sighash (legacy, BIP143,
//! BIP341 key path), the facts rendered at `input.derived`, address
//! comparison ([`same_address`]) and the output-by-output agreement check
//! ([`check_description`]).
//!
//! # Inputs and their prevouts
//! A Bitcoin signing hash commits to data that is not in the transaction
//! itself (the spent output's script and, for segwit, its amount), so it is
//! computed from `raw_tx_info.selected_utxos`, one entry per input:
//! `{tx_hash, vout_n, address, value, redeem_script, revealed_script}`.
//!
//! ASSUMPTIONS (Cobo WaaS 2.0 `TransactionSelectedUtxo`; its OpenAPI example
//! is `value: "0.5"`, `token_id: "BTC"`, and every other WaaS 2.0 amount is a
//! whole-unit decimal string):
//! - `value` is a JSON **string** of whole BTC (`"0.5"`, at most 8 decimal
//!   places), converted exactly to satoshis. A JSON number, a sign, an
//!   exponent, a fractional satoshi or more than 21 000 000 BTC is an error.
//!   Misreading satoshis as BTC can only fail closed: segwit and taproot
//!   hashes commit to the amount (the hash then differs from the signed one),
//!   and a legacy input would look 10^8 times larger, raising the fee.
//! - `tx_hash` is the txid as block explorers and Bitcoin Core display it
//!   (byte-reversed relative to the outpoint bytes in the transaction), as
//!   exactly 64 hex digits without `0x`.
//! - `vout_n` is a JSON integer.
//! - `redeem_script` / `revealed_script` are hex (`0x` optional); null or
//!   `""` means absent.
//!
//! Every input must have exactly one entry with its (txid, vout), and every
//! entry must be spent by an input; anything else is an `error`. So is a
//! transaction with trailing bytes, a non-canonical encoding, no inputs or
//! no outputs, an input spent twice, any scriptSig or witness ("signed or
//! partially signed"), more than 100 000 bytes (the standard limit), or
//! more legacy inputs than the legacy hashing budget allows.
//!
//! # Signing hashes, by the prevout's address
//! | address | `script_type` | hash |
//! | --- | --- | --- |
//! | P2PKH | `p2pkh` | legacy, SIGHASH_ALL, script code = the prevout's scriptPubKey |
//! | P2SH whose `redeem_script` is a P2WPKH program hashing to the address | `p2sh_p2wpkh` | BIP143, SIGHASH_ALL |
//! | P2WPKH | `p2wpkh` | BIP143, SIGHASH_ALL |
//! | P2TR, no `revealed_script` | `p2tr` | BIP341 key path, SIGHASH_DEFAULT, all prevouts |
//!
//! Anything else (P2WSH, P2SH of another script, taproot script path, P2A,
//! unknown witness versions, an address of the wrong network) is an `error`
//! naming it. Each hash is `0x` + the 32 digest bytes in the order they come
//! out of the hash function, which is what ECDSA/Schnorr sign (not the
//! byte-reversed `Display` of rust-bitcoin's sha256d types); the BIP143 and
//! BIP341 vectors in the tests pin this.
//!
//! A legacy (P2PKH) signing hash does not commit to the input's amount, so
//! for a transaction whose inputs are all legacy or segwit v0 with at least
//! one legacy input, a lying `value` changes `fees.total` without changing
//! any hash. `input_values_committed` says whether every input amount is
//! committed by some signing hash (all inputs segwit, or any input taproot,
//! whose hash commits to every amount); policies should not trust
//! `fees.total` when it is false.
//!
//! # Facts
//! `kind: "btc"`; `txid` (display order); `version`, `lock_time` (numbers);
//! `inputs` `[{txid, vout, address, value (sat), script_type, sequence,
//! value_committed, sighash}]`; `outputs` `[{address (null for OP_RETURN and
//! non-standard scripts), script (hex), value (sat)}]`; `fees: {total}` (sat,
//! inputs minus outputs; negative is an `error`); `input_values_committed`.
//! `recipients` has one native entry per output, its address or
//! `script:<hex>`. All amounts are decimal strings of satoshis.
//!
//! # Agreement
//! See [`check_description`]. Addresses are compared by the scriptPubKey they
//! denote ([`same_address`]), so bech32 case and encoding do not matter.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;

use bitcoin::address::{AddressType, NetworkUnchecked};
use bitcoin::hashes::Hash as _;
use bitcoin::sighash::{EcdsaSighashType, Prevouts, SighashCache, TapSighashType};
use bitcoin::{Address, Amount, Network, OutPoint, ScriptBuf, Transaction, TxOut, Txid, consensus};
use serde_json::{Map, Value, json};

use super::{Action, AddressEq, Asset, DecodeError, Decoded, Transfer, hex0x, to_base_units};

/// Satoshis per BTC as a decimal exponent.
const BTC_DECIMALS: u32 = 8;

/// Largest unsigned transaction accepted, in bytes: the standard-relay
/// limit is 400 000 weight units (100 000 bytes without witness), and a
/// signed transaction only grows. It also bounds the legacy sighash work,
/// which re-serialises the whole transaction once per input.
const MAX_RAW_TX_BYTES: usize = 100_000;

/// Bytes of legacy sighash preimage hashed per transaction at most (inputs
/// spending P2PKH times the transaction size): about 1 000 legacy inputs in
/// a 40 kB transaction; a standard-size transaction of only legacy inputs
/// would need about 240 MB.
const MAX_LEGACY_HASH_BYTES: usize = 48 * 1024 * 1024;

/// How an input is spent, decided by the address of its prevout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SpendType {
    P2pkh,
    P2shP2wpkh,
    P2wpkh,
    P2tr,
}

impl SpendType {
    fn label(self) -> &'static str {
        match self {
            Self::P2pkh => "p2pkh",
            Self::P2shP2wpkh => "p2sh_p2wpkh",
            Self::P2wpkh => "p2wpkh",
            Self::P2tr => "p2tr",
        }
    }

    /// Whether this input's own signing hash commits to its amount.
    fn commits_to_value(self) -> bool {
        !matches!(self, Self::P2pkh)
    }
}

/// One `selected_utxos` entry, checked.
#[derive(Debug, Clone)]
struct Prevout {
    address: Address,
    /// Amount and scriptPubKey of the spent output.
    txout: TxOut,
    spend: SpendType,
    /// P2SH-P2WPKH: the redeem script (a P2WPKH program).
    redeem: Option<ScriptBuf>,
}

/// Decodes an unsigned Bitcoin transaction; `tx` is `extra.transaction`,
/// from which `raw_tx_info.selected_utxos` supplies the prevouts.
pub(crate) fn decode(raw: &[u8], tx: &Value, network: Network) -> Result<Decoded, DecodeError> {
    if raw.len() > MAX_RAW_TX_BYTES {
        return Err(DecodeError::new(format!(
            "the raw transaction is {} bytes, more than the {MAX_RAW_TX_BYTES}-byte standard limit",
            raw.len()
        )));
    }
    let (btc, used): (Transaction, usize) = consensus::deserialize_partial(raw)
        .map_err(|e| DecodeError::new(format!("not a Bitcoin transaction: {e}")))?;
    if used != raw.len() {
        return Err(DecodeError::new(format!(
            "{} trailing bytes after the Bitcoin transaction",
            raw.len().saturating_sub(used)
        )));
    }
    if consensus::serialize(&btc) != raw {
        return Err(DecodeError::new(
            "not the canonical serialization of a Bitcoin transaction",
        ));
    }
    if btc.input.is_empty() {
        return Err(DecodeError::new("the transaction has no inputs"));
    }
    if btc.output.is_empty() {
        return Err(DecodeError::new("the transaction has no outputs"));
    }
    let mut spent = BTreeMap::new();
    for (i, input) in btc.input.iter().enumerate() {
        if !input.script_sig.is_empty() || !input.witness.is_empty() {
            return Err(DecodeError::new(format!(
                "input #{i} is signed or partially signed (scriptSig or witness present)"
            )));
        }
        if spent.insert(input.previous_output, i).is_some() {
            return Err(DecodeError::new(format!(
                "input #{i} spends {} a second time",
                input.previous_output
            )));
        }
    }

    let prevouts = prevouts_for(&btc, tx, network)?;
    // A legacy hash re-serialises the whole transaction for each input
    // (quadratic hashing); bound the work an attacker-sized transaction costs.
    let legacy = prevouts
        .iter()
        .filter(|p| p.spend == SpendType::P2pkh)
        .count();
    if legacy.saturating_mul(raw.len()) > MAX_LEGACY_HASH_BYTES {
        return Err(DecodeError::new(format!(
            "{legacy} legacy inputs in a {}-byte transaction exceed the legacy hashing budget",
            raw.len()
        )));
    }
    let txouts: Vec<TxOut> = prevouts.iter().map(|p| p.txout.clone()).collect();
    let hashes = signing_hashes(&btc, &prevouts, &txouts)?;

    let mut total_in: u64 = 0;
    for p in &prevouts {
        total_in = total_in
            .checked_add(p.txout.value.to_sat())
            .filter(|t| *t <= Amount::MAX_MONEY.to_sat())
            .ok_or_else(|| DecodeError::new("the inputs add up to more than 21 000 000 BTC"))?;
    }
    let mut total_out: u64 = 0;
    for o in &btc.output {
        total_out = total_out
            .checked_add(o.value.to_sat())
            .filter(|t| *t <= Amount::MAX_MONEY.to_sat())
            .ok_or_else(|| DecodeError::new("the outputs add up to more than 21 000 000 BTC"))?;
    }
    let fee = total_in.checked_sub(total_out).ok_or_else(|| {
        DecodeError::new(format!(
            "the outputs ({total_out} sat) exceed the inputs ({total_in} sat)"
        ))
    })?;

    // A taproot signing hash commits to every input's amount (BIP341
    // sha_amounts); a segwit v0 hash only to its own.
    let any_taproot = prevouts.iter().any(|p| p.spend == SpendType::P2tr);
    let inputs: Vec<Value> = btc
        .input
        .iter()
        .zip(&prevouts)
        .zip(&hashes)
        .map(|((input, p), h)| {
            json!({
                "txid": input.previous_output.txid.to_string(),
                "vout": input.previous_output.vout,
                "address": p.address.to_string(),
                "value": p.txout.value.to_sat().to_string(),
                "script_type": p.spend.label(),
                "sequence": input.sequence.to_consensus_u32(),
                "value_committed": any_taproot || p.spend.commits_to_value(),
                "sighash": h,
            })
        })
        .collect();
    let values_committed = any_taproot || prevouts.iter().all(|p| p.spend.commits_to_value());

    let mut outputs = Vec::with_capacity(btc.output.len());
    let mut recipients = Vec::with_capacity(btc.output.len());
    for o in &btc.output {
        let address = Address::from_script(&o.script_pubkey, network)
            .ok()
            .map(|a| a.to_string());
        let script = hex_plain(o.script_pubkey.as_bytes());
        let value = o.value.to_sat().to_string();
        recipients.push(Transfer {
            recipient: address
                .clone()
                .unwrap_or_else(|| format!("script:{script}")),
            amount: value.clone(),
            asset: Asset::Native,
            spl: None,
        });
        outputs.push(json!({"address": address, "script": script, "value": value}));
    }

    let mut facts = Map::new();
    facts.insert("txid".into(), json!(btc.compute_txid().to_string()));
    facts.insert("version".into(), json!(btc.version.0));
    facts.insert("lock_time".into(), json!(btc.lock_time.to_consensus_u32()));
    facts.insert("inputs".into(), Value::Array(inputs));
    facts.insert("outputs".into(), Value::Array(outputs));
    facts.insert("fees".into(), json!({"total": fee.to_string()}));
    facts.insert("input_values_committed".into(), json!(values_committed));
    Ok(Decoded {
        kind: "btc".to_owned(),
        signing_hashes: hashes,
        facts,
        action: Action::Transfers(recipients.clone()),
        recipients,
        // Exact is the nearest generic rule; Bitcoin addresses are compared
        // by script through `same_address` in `check_description`.
        address_eq: AddressEq::Exact,
        ..Decoded::default()
    })
}

/// The checked prevout of every input, in input order.
fn prevouts_for(
    btc: &Transaction,
    tx: &Value,
    network: Network,
) -> Result<Vec<Prevout>, DecodeError> {
    let list = tx
        .get("raw_tx_info")
        .and_then(|r| r.get("selected_utxos"))
        .and_then(Value::as_array)
        .ok_or_else(|| DecodeError::new("raw_tx_info.selected_utxos is missing or not an array"))?;
    let mut by_outpoint: BTreeMap<OutPoint, Prevout> = BTreeMap::new();
    for (k, entry) in list.iter().enumerate() {
        let (outpoint, prevout) = parse_utxo(k, entry, network)?;
        if by_outpoint.insert(outpoint, prevout).is_some() {
            return Err(DecodeError::new(format!(
                "selected_utxos lists {outpoint} more than once"
            )));
        }
    }
    let mut out = Vec::with_capacity(btc.input.len());
    for (i, input) in btc.input.iter().enumerate() {
        let p = by_outpoint.remove(&input.previous_output).ok_or_else(|| {
            DecodeError::new(format!(
                "input #{i} spends {} but selected_utxos does not describe it",
                input.previous_output
            ))
        })?;
        out.push(p);
    }
    if let Some(extra) = by_outpoint.keys().next() {
        return Err(DecodeError::new(format!(
            "selected_utxos lists {extra}, which no input spends"
        )));
    }
    Ok(out)
}

/// Parses `selected_utxos[k]`.
fn parse_utxo(
    k: usize,
    entry: &Value,
    network: Network,
) -> Result<(OutPoint, Prevout), DecodeError> {
    let err = |what: String| DecodeError::new(format!("selected_utxos[{k}]: {what}"));
    if !entry.is_object() {
        return Err(err("not an object".to_owned()));
    }
    let field = |key: &str| entry.get(key).filter(|v| !v.is_null());
    let tx_hash = field("tx_hash")
        .and_then(Value::as_str)
        .ok_or_else(|| err("tx_hash is missing or not a string".to_owned()))?;
    if tx_hash.len() != 64 || !tx_hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(err(format!("tx_hash `{tx_hash}` is not 64 hex digits")));
    }
    let txid = Txid::from_str(tx_hash).map_err(|e| err(format!("tx_hash `{tx_hash}`: {e}")))?;
    let vout = field("vout_n")
        .and_then(Value::as_u64)
        .and_then(|v| u32::try_from(v).ok())
        .ok_or_else(|| err("vout_n is missing or not a 32-bit unsigned integer".to_owned()))?;
    let address_text = field("address")
        .and_then(Value::as_str)
        .ok_or_else(|| err("address is missing or not a string".to_owned()))?;
    let address = parse_address(address_text, network).map_err(err)?;
    let value_text = field("value")
        .and_then(Value::as_str)
        .ok_or_else(|| err("value is missing or not a string of whole BTC".to_owned()))?;
    let value = btc_to_sat(value_text).map_err(|e| err(format!("value: {e}")))?;
    let redeem = optional_script(entry, "redeem_script").map_err(&err)?;
    let revealed = optional_script(entry, "revealed_script").map_err(&err)?;

    let script_pubkey = address.script_pubkey();
    let spend = match address.address_type() {
        Some(AddressType::P2pkh) => SpendType::P2pkh,
        Some(AddressType::P2wpkh) => SpendType::P2wpkh,
        Some(AddressType::P2tr) => SpendType::P2tr,
        Some(AddressType::P2sh) => {
            // Only P2SH-wrapped P2WPKH is signed for: the redeem script must
            // be a P2WPKH program and hash to the address.
            let Some(r) = redeem.as_ref() else {
                return Err(err(format!(
                    "p2sh address {address_text} has no redeem_script"
                )));
            };
            if !r.is_p2wpkh() {
                return Err(err(format!(
                    "p2sh address {address_text} wraps {}, not a p2wpkh program (unsupported)",
                    hex_plain(r.as_bytes())
                )));
            }
            if ScriptBuf::new_p2sh(&r.script_hash()) != script_pubkey {
                return Err(err(format!(
                    "redeem_script {} does not hash to p2sh address {address_text}",
                    hex_plain(r.as_bytes())
                )));
            }
            SpendType::P2shP2wpkh
        }
        Some(other) => {
            return Err(err(format!(
                "address {address_text} is {other}, which tss-gate does not sign for"
            )));
        }
        None => {
            return Err(err(format!(
                "address {address_text} is of an unknown or non-standard type"
            )));
        }
    };
    if spend != SpendType::P2shP2wpkh && redeem.is_some() {
        return Err(err(format!(
            "a redeem_script is given for {} address {address_text}",
            spend.label()
        )));
    }
    if revealed.is_some() {
        return Err(err(if spend == SpendType::P2tr {
            format!(
                "revealed_script makes {address_text} a taproot script-path spend (unsupported)"
            )
        } else {
            format!(
                "a revealed_script is given for {} address {address_text}",
                spend.label()
            )
        }));
    }
    let prevout = Prevout {
        address,
        txout: TxOut {
            value: Amount::from_sat(value),
            script_pubkey,
        },
        spend,
        redeem,
    };
    Ok((OutPoint { txid, vout }, prevout))
}

/// `redeem_script` / `revealed_script`: hex with optional `0x`; null, absent
/// or `""` is None.
fn optional_script(entry: &Value, key: &str) -> Result<Option<ScriptBuf>, String> {
    match entry.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => {
            let body = s
                .strip_prefix("0x")
                .or_else(|| s.strip_prefix("0X"))
                .unwrap_or(s);
            if body.is_empty() {
                return Ok(None);
            }
            let bytes = alloy_primitives::hex::decode(body)
                .map_err(|e| format!("{key} `{s}` is not hex: {e}"))?;
            Ok(Some(ScriptBuf::from_bytes(bytes)))
        }
        Some(other) => Err(format!("{key} is not a string: {other}")),
    }
}

/// Whole-BTC decimal string to satoshis, at most 21 000 000 BTC.
fn btc_to_sat(text: &str) -> Result<u64, String> {
    let sat = to_base_units(text, BTC_DECIMALS).map_err(|e| e.to_string())?;
    sat.parse::<u64>()
        .ok()
        .filter(|s| *s <= Amount::MAX_MONEY.to_sat())
        .ok_or_else(|| format!("`{text}` BTC is more than 21 000 000 BTC"))
}

/// Parses an address and requires it to belong to `network`.
fn parse_address(text: &str, network: Network) -> Result<Address, String> {
    let unchecked = Address::<NetworkUnchecked>::from_str(text)
        .map_err(|e| format!("address `{text}` is not a Bitcoin address: {e}"))?;
    unchecked
        .require_network(network)
        .map_err(|_| format!("address `{text}` is not an address of {network}"))
}

/// Whether two address strings denote the same scriptPubKey on `network`;
/// false when either does not parse for that network.
pub(crate) fn same_address(a: &str, b: &str, network: Network) -> bool {
    match (parse_address(a, network), parse_address(b, network)) {
        (Ok(a), Ok(b)) => a.script_pubkey() == b.script_pubkey(),
        _ => false,
    }
}

/// One signing hash per input, in input order.
fn signing_hashes(
    btc: &Transaction,
    prevouts: &[Prevout],
    txouts: &[TxOut],
) -> Result<Vec<String>, DecodeError> {
    let mut cache = SighashCache::new(btc);
    prevouts
        .iter()
        .enumerate()
        .map(|(i, p)| input_sighash(&mut cache, i, p, txouts).map(|h| hex0x(&h)))
        .collect()
}

/// The digest input `i` signs, as the 32 bytes the hash function produced.
fn input_sighash(
    cache: &mut SighashCache<&Transaction>,
    i: usize,
    p: &Prevout,
    txouts: &[TxOut],
) -> Result<[u8; 32], DecodeError> {
    let fail =
        |e: String| DecodeError::new(format!("input #{i}: cannot compute the signing hash: {e}"));
    match p.spend {
        SpendType::P2pkh => cache
            .legacy_signature_hash(i, &p.txout.script_pubkey, EcdsaSighashType::All.to_u32())
            .map(|h| h.to_byte_array())
            .map_err(|e| fail(e.to_string())),
        SpendType::P2wpkh => cache
            .p2wpkh_signature_hash(
                i,
                &p.txout.script_pubkey,
                p.txout.value,
                EcdsaSighashType::All,
            )
            .map(|h| h.to_byte_array())
            .map_err(|e| fail(e.to_string())),
        SpendType::P2shP2wpkh => {
            let redeem = p
                .redeem
                .as_ref()
                .ok_or_else(|| fail("no redeem script".to_owned()))?;
            cache
                .p2wpkh_signature_hash(i, redeem, p.txout.value, EcdsaSighashType::All)
                .map(|h| h.to_byte_array())
                .map_err(|e| fail(e.to_string()))
        }
        SpendType::P2tr => cache
            .taproot_key_spend_signature_hash(i, &Prevouts::All(txouts), TapSighashType::Default)
            .map(|h| h.to_byte_array())
            .map_err(|e| fail(e.to_string())),
    }
}

/// Lowercase hex without `0x` (scripts, as Bitcoin tools print them).
fn hex_plain(bytes: &[u8]) -> String {
    alloy_primitives::hex::encode(bytes)
}

/// A decoded output, read back from the facts `decode` wrote.
struct TxOutput {
    script: ScriptBuf,
    address: Option<String>,
    value: u64,
}

fn decoded_outputs(d: &Decoded) -> Option<Vec<TxOutput>> {
    d.facts
        .get("outputs")?
        .as_array()?
        .iter()
        .map(|o| {
            Some(TxOutput {
                script: ScriptBuf::from_bytes(
                    alloy_primitives::hex::decode(o.get("script")?.as_str()?).ok()?,
                ),
                address: o.get("address").and_then(Value::as_str).map(str::to_owned),
                value: o.get("value")?.as_str()?.parse().ok()?,
            })
        })
        .collect()
}

/// Compares the decoded outputs with `tx.destination` (an `Address`
/// destination with `utxo_outputs` `[{address, amount}]` or one
/// `account_output` `{address, amount}`, amounts in whole BTC). `own` are
/// the wallet's own addresses, proven by the caller from the signing key.
///
/// Every described output must be matched by a distinct raw output with the
/// same scriptPubKey and exactly the same amount; every raw output left over
/// must pay one of `own` (change). An OP_RETURN or other address-less output
/// can never be described, so it always disagrees. The description also
/// disagrees when it names no output, names both `utxo_outputs` and
/// `account_output` (we refuse to guess which one Cobo means), has an
/// address of another network or an amount that is not an exact whole-BTC
/// string, or when `token_id != chain_id` (not the native coin). Returns the
/// disagreements, each naming both sides; empty means the description
/// agrees.
pub(crate) fn check_description(
    d: &Decoded,
    tx: &Value,
    own: &[String],
    network: Network,
) -> Vec<String> {
    let Some(dest) = tx.get("destination").filter(|v| v.is_object()) else {
        return vec!["the description has no destination".to_owned()];
    };
    let dest_type = dest
        .get("destination_type")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if dest_type != "Address" {
        return vec![format!(
            "destination type `{dest_type}` cannot be checked against the raw transaction"
        )];
    }
    let mut out = Vec::new();
    let str_of = |key: &str| tx.get(key).and_then(Value::as_str).unwrap_or_default();
    let (token_id, chain_id) = (str_of("token_id"), str_of("chain_id"));
    // Cobo's convention: the native coin has token_id == chain_id.
    if token_id.is_empty() || token_id != chain_id {
        out.push(format!(
            "asset: raw tx moves native {chain_id} but the description names token `{token_id}`"
        ));
    }

    let present = |key: &str| dest.get(key).filter(|v| !v.is_null());
    let described: Vec<&Value> = match (present("utxo_outputs"), present("account_output")) {
        (Some(_), Some(_)) => {
            out.push("the description names both utxo_outputs and account_output".to_owned());
            return out;
        }
        (Some(list), None) => match list.as_array() {
            Some(items) => items.iter().collect(),
            None => {
                out.push("utxo_outputs is not a list".to_owned());
                return out;
            }
        },
        (None, Some(one)) => vec![one],
        (None, None) => {
            out.push("the description names no outputs".to_owned());
            return out;
        }
    };
    if described.is_empty() {
        out.push("the description names no outputs".to_owned());
        return out;
    }
    let Some(outputs) = decoded_outputs(d) else {
        out.push("the decoded transaction carries no outputs to compare".to_owned());
        return out;
    };

    // Raw outputs not yet matched, by (script, value); outputs equal in
    // both are interchangeable, so taking any free one finds a complete
    // matching whenever one exists. Indexed so that a large transaction and
    // a long description do not multiply.
    let mut free: BTreeMap<(ScriptBuf, u64), Vec<usize>> = BTreeMap::new();
    let mut paid_to: BTreeMap<ScriptBuf, Vec<u64>> = BTreeMap::new();
    for (i, o) in outputs.iter().enumerate().rev() {
        free.entry((o.script.clone(), o.value)).or_default().push(i);
        paid_to.entry(o.script.clone()).or_default().push(o.value);
    }
    let mut used = vec![false; outputs.len()];
    for (k, item) in described.iter().enumerate() {
        let address = item.get("address").and_then(Value::as_str);
        let amount = item.get("amount").and_then(Value::as_str);
        let (Some(address), Some(amount)) = (address, amount) else {
            out.push(format!(
                "described output #{k}: address and amount must both be strings, got {item}"
            ));
            continue;
        };
        let script = match parse_address(address, network) {
            Ok(a) => a.script_pubkey(),
            Err(e) => {
                out.push(format!("described output #{k}: {e}"));
                continue;
            }
        };
        let sat = match btc_to_sat(amount) {
            Ok(s) => s,
            Err(e) => {
                out.push(format!("described output #{k}: amount {e}"));
                continue;
            }
        };
        let slot = free
            .get_mut(&(script.clone(), sat))
            .and_then(Vec::pop)
            .and_then(|i| used.get_mut(i));
        match slot {
            Some(u) => *u = true,
            None => {
                let seen = match paid_to.get(&script) {
                    None => "no output of the raw tx pays that address".to_owned(),
                    Some(values) => format!(
                        "the raw tx pays that address {} instead (each already matched or different)",
                        values
                            .iter()
                            .rev()
                            .map(|v| format!("{v} sat"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                };
                out.push(format!(
                    "described output #{k}: the description pays {amount} BTC = {sat} sat to {address} but {seen}"
                ));
            }
        }
    }

    let own_scripts: BTreeSet<ScriptBuf> = own
        .iter()
        .filter_map(|a| parse_address(a, network).ok())
        .map(|a| a.script_pubkey())
        .collect();
    // A change address the description names narrows change to that one
    // address: a second "own" output beside it would move value between the
    // wallet's addresses that nobody described.
    let change = match present("change_address").map(|c| (c, c.as_str())) {
        None | Some((_, Some(""))) => None,
        Some((_, Some(a))) => match parse_address(a, network) {
            Ok(addr) => {
                let script = addr.script_pubkey();
                if !own_scripts.contains(&script) {
                    out.push(format!(
                        "change_address {} is not an address of the signing paths' keys",
                        super::shorten(a)
                    ));
                }
                Some(script)
            }
            Err(e) => {
                out.push(format!("change_address: {e}"));
                None
            }
        },
        Some((c, None)) => {
            out.push(format!("change_address is not a string: {c}"));
            None
        }
    };
    for (i, (o, matched)) in outputs.iter().zip(&used).enumerate() {
        if *matched
            || (own_scripts.contains(&o.script) && change.as_ref().is_none_or(|c| *c == o.script))
        {
            continue;
        }
        if change.is_some() && own_scripts.contains(&o.script) {
            out.push(format!(
                "output #{i}: raw tx pays {} sat as change to {}, not to the described change_address",
                o.value,
                o.address.as_deref().unwrap_or("a non-address script")
            ));
            continue;
        }
        out.push(match &o.address {
            Some(a) => format!(
                "output #{i}: raw tx pays {} sat to {a} which the description does not name and is not the wallet's own address",
                o.value
            ),
            None => format!(
                "output #{i}: raw tx pays {} sat to non-address script {} (OP_RETURN or non-standard) which the description does not name",
                o.value,
                hex_plain(o.script.as_bytes())
            ),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    //! Official BIP143/BIP341 vectors, the independent vectors of
    //! tests/vectors/bitcoin.json (gen_btc_vectors.py: embit and
    //! python-bitcoin-utils), and property tests on malformed bytes.

    use proptest::prelude::*;
    use serde_json::{Value, json};

    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        alloy_primitives::hex::decode(s).unwrap()
    }

    fn btc_string(sat: u64) -> String {
        let s = format!("{}.{:08}", sat / 100_000_000, sat % 100_000_000);
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    }

    /// `extra.transaction` with the given selected_utxos and described outputs.
    fn tx_json(selected: Value, outputs: Value) -> Value {
        json!({
            "chain_id": "BTC", "token_id": "BTC",
            "destination": {"destination_type": "Address", "utxo_outputs": outputs},
            "raw_tx_info": {"selected_utxos": selected},
        })
    }

    /// The txid of an outpoint as `tx_hash` shows it (display order).
    fn display_txid(internal_hex: &str) -> String {
        let mut b = hex(internal_hex);
        b.reverse();
        alloy_primitives::hex::encode(b)
    }

    // BIP143 "Native P2WPKH": the second input (a P2WPKH program, 6 BTC).
    // The first input is P2PK, which decode() refuses, so this goes through
    // the per-input hash that decode() uses.
    #[test]
    fn bip143_native_p2wpkh() {
        let raw = hex(
            "0100000002fff7f7881a8099afa6940d42d1e7f6362bec38171ea3edf433541db4e4ad969f0000000000eeffffffef51e1b804cc89d182d279655c3aa89e815b1b309fe287d9b2b55d57b90ec68a0100000000ffffffff02202cb206000000001976a9148280b37df378db99f66f85c95a783a76ac7a6d5988ac9093510d000000001976a9143bde42dbee7e4dbe6a21b2d50ce2f0167faa815988ac11000000",
        );
        let btc: Transaction = consensus::deserialize(&raw).unwrap();
        let spk = ScriptBuf::from_bytes(hex("00141d0f172a0ecb48aee1be1f2687d2963ae33f71a1"));
        let p = Prevout {
            address: Address::from_script(&spk, Network::Bitcoin).unwrap(),
            txout: TxOut {
                value: Amount::from_sat(600_000_000),
                script_pubkey: spk,
            },
            spend: SpendType::P2wpkh,
            redeem: None,
        };
        let mut cache = SighashCache::new(&btc);
        let h = input_sighash(&mut cache, 1, &p, &[]).unwrap();
        assert_eq!(
            hex0x(&h),
            "0xc37af31116d1b27caf68aae9e3ac82f1477929014d5b917657d0eb49478cb670"
        );
    }

    // BIP143 "P2SH-P2WPKH", end to end through decode(): also pins the
    // tx_hash byte order and the redeem-script checks.
    #[test]
    fn bip143_p2sh_p2wpkh_through_decode() {
        let raw = hex(
            "0100000001db6b1b20aa0fd7b23880be2ecbd4a98130974cf4748fb66092ac4d3ceb1a54770100000000feffffff02b8b4eb0b000000001976a914a457b684d7f0d539a46a45bbc043f35b59d0d96388ac0008af2f000000001976a914fd270b1ee6abcaea97fea7ad0402e8bd8ad6d77c88ac92040000",
        );
        let spk = ScriptBuf::from_bytes(hex("a9144733f37cf4db86fbc2efed2500b4f4e49f31202387"));
        let address = Address::from_script(&spk, Network::Bitcoin)
            .unwrap()
            .to_string();
        let out0 = Address::from_script(
            &ScriptBuf::from_bytes(hex("76a914a457b684d7f0d539a46a45bbc043f35b59d0d96388ac")),
            Network::Bitcoin,
        )
        .unwrap()
        .to_string();
        let out1 = Address::from_script(
            &ScriptBuf::from_bytes(hex("76a914fd270b1ee6abcaea97fea7ad0402e8bd8ad6d77c88ac")),
            Network::Bitcoin,
        )
        .unwrap()
        .to_string();
        let tx = tx_json(
            json!([{
                "tx_hash": display_txid("db6b1b20aa0fd7b23880be2ecbd4a98130974cf4748fb66092ac4d3ceb1a5477"),
                "vout_n": 1, "address": address, "value": "10",
                "redeem_script": "0x001479091972186c449eb1ded22b78e40d009bdf0089", "revealed_script": "",
            }]),
            json!([{"address": out0, "amount": "1.999966"}, {"address": out1, "amount": "8"}]),
        );
        let d = decode(&raw, &tx, Network::Bitcoin).unwrap();
        assert_eq!(
            d.signing_hashes,
            ["0x64f3b0f4dd2bb3aa1ce8566d220cc74dda9df97d8490cc81d89d735c92e59fb6"]
        );
        assert_eq!(d.facts["inputs"][0]["script_type"], "p2sh_p2wpkh");
        assert_eq!(d.facts["fees"]["total"], "3400");
        assert_eq!(d.facts["lock_time"], 1170);
        assert!(check_description(&d, &tx, &[], Network::Bitcoin).is_empty());

        // The outpoint bytes as they sit in the transaction are not tx_hash.
        let mut swapped = tx.clone();
        swapped["raw_tx_info"]["selected_utxos"][0]["tx_hash"] =
            json!("db6b1b20aa0fd7b23880be2ecbd4a98130974cf4748fb66092ac4d3ceb1a5477");
        let e = decode(&raw, &swapped, Network::Bitcoin).unwrap_err();
        assert!(e.0.contains("does not describe"), "{e:?}");
    }

    const BIP341_TX: &str = "02000000097de20cbff686da83a54981d2b9bab3586f4ca7e48f57f5b55963115f3b334e9c010000000000000000d7b7cab57b1393ace2d064f4d4a2cb8af6def61273e127517d44759b6dafdd990000000000fffffffff8e1f583384333689228c5d28eac13366be082dc57441760d957275419a418420000000000fffffffff0689180aa63b30cb162a73c6d2a38b7eeda2a83ece74310fda0843ad604853b0100000000feffffffaa5202bdf6d8ccd2ee0f0202afbbb7461d9264a25e5bfd3c5a52ee1239e0ba6c0000000000feffffff956149bdc66faa968eb2be2d2faa29718acbfe3941215893a2a3446d32acd050000000000000000000e664b9773b88c09c32cb70a2a3e4da0ced63b7ba3b22f848531bbb1d5d5f4c94010000000000000000e9aa6b8e6c9de67619e6a3924ae25696bb7b694bb677a632a74ef7eadfd4eabf0000000000ffffffffa778eb6a263dc090464cd125c466b5a99667720b1c110468831d058aa1b82af10100000000ffffffff0200ca9a3b000000001976a91406afd46bcdfd22ef94ac122aa11f241244a37ecc88ac807840cb0000000020ac9a87f5594be208f8532db38cff670c450ed2fea8fcdefcc9a663f78bab962b0065cd1d";

    /// bip-0341/wallet-test-vectors.json `keyPathSpending[0].given.utxosSpent`.
    const BIP341_UTXOS: [(&str, u64); 9] = [
        (
            "512053a1f6e454df1aa2776a2814a721372d6258050de330b3c6d10ee8f4e0dda343",
            420_000_000,
        ),
        (
            "5120147c9c57132f6e7ecddba9800bb0c4449251c92a1e60371ee77557b6620f3ea3",
            462_000_000,
        ),
        (
            "76a914751e76e8199196d454941c45d1b3a323f1433bd688ac",
            294_000_000,
        ),
        (
            "5120e4d810fd50586274face62b8a807eb9719cef49c04177cc6b76a9a4251d5450e",
            504_000_000,
        ),
        (
            "512091b64d5324723a985170e4dc5a0f84c041804f2cd12660fa5dec09fc21783605",
            630_000_000,
        ),
        ("00147dd65592d0ab2fe0d0257d571abf032cd9db93dc", 378_000_000),
        (
            "512075169f4001aa68f15bbed28b218df1d0a62cbbcf1188c6665110c293c907b831",
            672_000_000,
        ),
        (
            "5120712447206d7a5238acc7ff53fbe94a3b64539ad291c7cdbc490b7577e4b17df5",
            546_000_000,
        ),
        (
            "512077e30a5522dd9f894c3f8b8bd4c4b2cf82ca7da8a3ea6a239655c39c050ab220",
            588_000_000,
        ),
    ];

    // BIP341 keyPathSpending: input 4 uses SIGHASH_DEFAULT, which is what
    // decode() computes for every P2TR input (all nine prevouts, including
    // the P2PKH and P2WPKH ones, go into sha_amounts/sha_scriptpubkeys).
    #[test]
    fn bip341_key_path_default_through_decode() {
        let raw = hex(BIP341_TX);
        let btc: Transaction = consensus::deserialize(&raw).unwrap();
        let selected: Vec<Value> = btc
            .input
            .iter()
            .zip(BIP341_UTXOS)
            .map(|(input, (spk, sat))| {
                let spk = ScriptBuf::from_bytes(hex(spk));
                json!({
                    "tx_hash": input.previous_output.txid.to_string(),
                    "vout_n": input.previous_output.vout,
                    "address": Address::from_script(&spk, Network::Bitcoin).unwrap().to_string(),
                    "value": btc_string(sat),
                })
            })
            .collect();
        let tx = tx_json(Value::Array(selected), json!([]));
        let d = decode(&raw, &tx, Network::Bitcoin).unwrap();
        assert_eq!(d.signing_hashes.len(), 9);
        assert_eq!(
            d.signing_hashes[4],
            "0x4f900a0bae3f1446fd48490c2958b5a023228f01661cda3496a11da502a7f7ef"
        );
        assert_eq!(d.facts["inputs"][2]["script_type"], "p2pkh");
        assert_eq!(d.facts["inputs"][5]["script_type"], "p2wpkh");
        assert_eq!(d.facts["input_values_committed"], true);
        assert_eq!(d.facts["fees"]["total"], "84000000");
        // The second output is a non-standard script: no address.
        assert_eq!(d.facts["outputs"][1]["address"], Value::Null);
        assert!(d.recipients[1].recipient.starts_with("script:ac9a87f5"));
    }

    // The other keyPathSpending hash types, through the crate, with the
    // same byte order (`to_byte_array`) decode() renders.
    #[test]
    fn bip341_key_path_other_hash_types_through_the_crate() {
        let raw = hex(BIP341_TX);
        let btc: Transaction = consensus::deserialize(&raw).unwrap();
        let txouts: Vec<TxOut> = BIP341_UTXOS
            .iter()
            .map(|(spk, sat)| TxOut {
                value: Amount::from_sat(*sat),
                script_pubkey: ScriptBuf::from_bytes(hex(spk)),
            })
            .collect();
        let mut cache = SighashCache::new(&btc);
        for (index, hash_type, expected) in [
            (
                0usize,
                3u8,
                "2514a6272f85cfa0f45eb907fcb0d121b808ed37c6ea160a5a9046ed5526d555",
            ),
            (
                1,
                131,
                "325a644af47e8a5a2591cda0ab0723978537318f10e6a63d4eed783b96a71a4d",
            ),
            (
                3,
                1,
                "bf013ea93474aa67815b1b6cc441d23b64fa310911d991e713cd34c7f5d46669",
            ),
            (
                4,
                0,
                "4f900a0bae3f1446fd48490c2958b5a023228f01661cda3496a11da502a7f7ef",
            ),
            (
                6,
                2,
                "15f25c298eb5cdc7eb1d638dd2d45c97c4c59dcaec6679cfc16ad84f30876b85",
            ),
            (
                7,
                130,
                "cd292de50313804dabe4685e83f923d2969577191a3e1d2882220dca88cbeb10",
            ),
            (
                8,
                129,
                "cccb739eca6c13a8a89e6e5cd317ffe55669bbda23f2fd37b0f18755e008edd2",
            ),
        ] {
            let ty = TapSighashType::from_consensus_u8(hash_type).unwrap();
            let h = cache
                .taproot_key_spend_signature_hash(index, &Prevouts::All(&txouts), ty)
                .unwrap();
            assert_eq!(
                hex0x(&h.to_byte_array()),
                format!("0x{expected}"),
                "input {index}"
            );
        }
    }

    fn network_of(case: &Value) -> Network {
        match case["network"].as_str() {
            Some("bitcoin") => Network::Bitcoin,
            Some("testnet") => Network::Testnet,
            other => panic!("unknown network {other:?}"),
        }
    }

    fn strings(v: &Value) -> Vec<String> {
        v.as_array()
            .map(|a| a.iter().map(|s| s.as_str().unwrap().to_owned()).collect())
            .unwrap_or_default()
    }

    /// Checks one case of tests/vectors/bitcoin.json; returns the failures.
    fn check_case(case: &Value) -> Vec<String> {
        let name = case["name"].as_str().unwrap();
        let network = network_of(case);
        let tx = &case["transaction"];
        let raw_hex = tx["raw_tx_info"]["unsigned_raw_tx"].as_str().unwrap();
        let raw = hex(raw_hex.strip_prefix("0x").unwrap());
        let expect = &case["expect"];
        let mut fails = Vec::new();
        let d = match (decode(&raw, tx, network), expect["error"].as_str()) {
            (Err(e), Some(sub)) => {
                if !e.0.contains(sub) {
                    fails.push(format!("{name}: error `{}` lacks `{sub}`", e.0));
                }
                return fails;
            }
            (Ok(_), Some(sub)) => return vec![format!("{name}: decoded, expected error `{sub}`")],
            (Err(e), None) => return vec![format!("{name}: unexpected error `{}`", e.0)],
            (Ok(d), None) => d,
        };
        if let Some(want) = expect.get("signing_hashes")
            && d.signing_hashes != strings(want)
        {
            fails.push(format!("{name}: hashes {:?} != {want}", d.signing_hashes));
        }
        for h in strings(&expect["signing_hashes_not"]) {
            if d.signing_hashes.contains(&h) {
                fails.push(format!("{name}: {h} must not be a signing hash"));
            }
        }
        for (key, equal) in [
            ("signing_hashes_at", true),
            ("signing_hashes_not_at", false),
        ] {
            for (i, h) in expect[key].as_object().into_iter().flatten() {
                let i: usize = i.parse().unwrap();
                if (d.signing_hashes.get(i).map(String::as_str) == h.as_str()) != equal {
                    fails.push(format!(
                        "{name}: {key}[{i}] {h} vs {:?}",
                        d.signing_hashes.get(i)
                    ));
                }
            }
        }
        // Each input's facts carry its own hash and the described prevout.
        for (i, h) in d.signing_hashes.iter().enumerate() {
            if d.facts["inputs"][i]["sighash"] != json!(h) {
                fails.push(format!("{name}: inputs[{i}].sighash"));
            }
            let sel = &tx["raw_tx_info"]["selected_utxos"];
            let described = sel.as_array().unwrap().iter().find(|u| {
                u["tx_hash"] == d.facts["inputs"][i]["txid"]
                    && u["vout_n"] == d.facts["inputs"][i]["vout"]
            });
            if described.is_none_or(|u| {
                !same_address(
                    u["address"].as_str().unwrap(),
                    d.facts["inputs"][i]["address"].as_str().unwrap(),
                    network,
                )
            }) {
                fails.push(format!("{name}: inputs[{i}] is not its selected_utxo"));
            }
        }
        if let Some(fee) = expect.get("fee").filter(|f| !f.is_null())
            && &d.facts["fees"]["total"] != fee
        {
            fails.push(format!("{name}: fee {} != {fee}", d.facts["fees"]["total"]));
        }
        if let Some(c) = expect.get("input_values_committed")
            && &d.facts["input_values_committed"] != c
        {
            fails.push(format!(
                "{name}: input_values_committed {}",
                d.facts["input_values_committed"]
            ));
        }
        let own = strings(&case["own"]);
        let dis = check_description(&d, tx, &own, network);
        if expect["agrees"] == json!(true) && !dis.is_empty() {
            fails.push(format!("{name}: expected agreement, got {dis:?}"));
        }
        if let Some(subs) = expect.get("disagreements") {
            if dis.is_empty() {
                fails.push(format!("{name}: expected disagreements, got none"));
            }
            let all = dis.join("\n");
            for s in strings(subs) {
                if !all.contains(&s) {
                    fails.push(format!("{name}: disagreements {dis:?} lack `{s}`"));
                }
            }
        }
        if case["bip32_path_list"].as_array().map(Vec::len) != Some(d.signing_hashes.len()) {
            fails.push(format!("{name}: one bip32 path per input"));
        }
        fails
    }

    fn vectors() -> Vec<Value> {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/bitcoin.json");
        let doc: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        doc["cases"].as_array().cloned().unwrap()
    }

    #[test]
    fn independent_vectors() {
        let cases = vectors();
        assert!(cases.len() >= 40, "{} cases", cases.len());
        let fails: Vec<String> = cases.iter().flat_map(check_case).collect();
        assert!(fails.is_empty(), "{}", fails.join("\n"));
        // Every script type and both expectations kinds are covered.
        let names: Vec<&str> = cases.iter().map(|c| c["name"].as_str().unwrap()).collect();
        for n in [
            "p2pkh_ok",
            "p2sh_p2wpkh_ok",
            "p2wpkh_ok",
            "p2tr_ok",
            "mixed_ok",
            "testnet_p2wpkh_ok",
        ] {
            assert!(names.contains(&n), "{n}");
        }
    }

    #[test]
    fn same_address_compares_scripts() {
        let a = "bc1qxy2kgdygjrsqtzq2n0yrf2493p83kkfjhx0wlh";
        assert!(same_address(a, a, Network::Bitcoin));
        assert!(same_address(a, &a.to_uppercase(), Network::Bitcoin));
        assert!(!same_address(
            a,
            "bc1QXY2KGDYGJRSQTZQ2N0YRF2493P83KKFJHX0WLH",
            Network::Bitcoin
        ));
        assert!(!same_address(
            a,
            "3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLy",
            Network::Bitcoin
        ));
        assert!(!same_address(a, a, Network::Testnet));
        assert!(!same_address("", "", Network::Bitcoin));
        assert!(!same_address(
            "not an address",
            "not an address",
            Network::Bitcoin
        ));
        let t = "tb1q5u4qa8a87vrcsyc885t06lxr4msyllcvcknmfl";
        assert!(same_address(t, &t.to_uppercase(), Network::Testnet));
        assert!(!same_address(t, t, Network::Bitcoin));
    }

    #[test]
    fn oversized_and_empty_input_is_an_error() {
        let tx = tx_json(json!([]), json!([]));
        assert!(decode(&[], &tx, Network::Bitcoin).is_err());
        let big = vec![0u8; MAX_RAW_TX_BYTES + 1];
        let e = decode(&big, &tx, Network::Bitcoin).unwrap_err();
        assert!(e.0.contains("standard limit"), "{e:?}");
    }

    // Quadratic legacy hashing is bounded: 1 300 P2PKH inputs (a 53 kB
    // transaction) are refused before any hash is computed.
    #[test]
    fn legacy_hashing_budget() {
        let address = "1GKzyzJ5sFraibXEucjFvtDU26a3TrWLGF";
        let spk = parse_address(address, Network::Bitcoin)
            .unwrap()
            .script_pubkey();
        let make = |n: u32| {
            let input: Vec<bitcoin::TxIn> = (0..n)
                .map(|i| bitcoin::TxIn {
                    previous_output: OutPoint {
                        txid: Txid::from_byte_array([7; 32]),
                        vout: i,
                    },
                    ..Default::default()
                })
                .collect();
            let btc = Transaction {
                version: bitcoin::transaction::Version::TWO,
                lock_time: bitcoin::absolute::LockTime::ZERO,
                input,
                output: vec![TxOut {
                    value: Amount::from_sat(1_000),
                    script_pubkey: spk.clone(),
                }],
            };
            let selected: Vec<Value> = (0..n)
                .map(|i| {
                    json!({"tx_hash": Txid::from_byte_array([7; 32]).to_string(), "vout_n": i,
                           "address": address, "value": "0.00001"})
                })
                .collect();
            (
                consensus::serialize(&btc),
                tx_json(Value::Array(selected), json!([])),
            )
        };
        let (raw, tx) = make(1_300);
        let e = decode(&raw, &tx, Network::Bitcoin).unwrap_err();
        assert!(e.0.contains("legacy hashing budget"), "{e:?}");
        let (raw, tx) = make(20);
        assert_eq!(
            decode(&raw, &tx, Network::Bitcoin)
                .unwrap()
                .signing_hashes
                .len(),
            20
        );
    }

    #[test]
    fn selected_utxos_must_be_a_list() {
        let case = vectors()
            .into_iter()
            .find(|c| c["name"] == "p2wpkh_ok")
            .unwrap();
        let raw = hex(case["transaction"]["raw_tx_info"]["unsigned_raw_tx"]
            .as_str()
            .unwrap()
            .strip_prefix("0x")
            .unwrap());
        for bad in [json!(null), json!({}), json!("[]"), json!([1]), json!([[]])] {
            let mut tx = case["transaction"].clone();
            tx["raw_tx_info"]["selected_utxos"] = bad.clone();
            assert!(decode(&raw, &tx, Network::Bitcoin).is_err(), "{bad}");
        }
    }

    /// Valid transactions with their descriptions, for mutation.
    fn seeds() -> Vec<(Vec<u8>, Value)> {
        vectors()
            .into_iter()
            .filter(|c| c["name"] == "mixed_ok" || c["name"] == "p2wpkh_ok")
            .map(|c| {
                let raw = hex(c["transaction"]["raw_tx_info"]["unsigned_raw_tx"]
                    .as_str()
                    .unwrap()
                    .strip_prefix("0x")
                    .unwrap());
                (raw, c["transaction"].clone())
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let (_, tx) = seeds().remove(0);
            let _ = decode(&bytes, &tx, Network::Bitcoin);
        }

        #[test]
        fn truncations_and_bit_flips_never_panic(seed in 0usize..2, cut in any::<prop::sample::Index>(),
                                                  flip in any::<prop::sample::Index>(), bit in 0u8..8) {
            let seeds = seeds();
            let (raw, tx) = &seeds[seed % seeds.len()];
            let truncated = &raw[..cut.index(raw.len())];
            prop_assert!(decode(truncated, tx, Network::Bitcoin).is_err());
            let mut flipped = raw.clone();
            flipped[flip.index(raw.len())] ^= 1 << bit;
            if let Ok(d) = decode(&flipped, tx, Network::Bitcoin) {
                // Whatever decodes still yields one hash per input and a checked description.
                prop_assert_eq!(d.signing_hashes.len(), d.facts["inputs"].as_array().map_or(0, Vec::len));
                let _ = check_description(&d, tx, &[], Network::Bitcoin);
            }
        }
    }
}
