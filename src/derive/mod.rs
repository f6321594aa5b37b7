//! Transaction integrity facts derived from the bytes a KEYSIGN task signs.
//!
//! A KEYSIGN request carries two views of one transaction: the hashes the TSS
//! Node will sign (`request_detail.msg_hash_list`) and Cobo's description of
//! it (`extra_info.transaction`, with `raw_tx_info.unsigned_raw_tx`). This
//! module decodes the unsigned raw transaction, recomputes its signing
//! hash(es), bounds the fee, binds the bytes to the described chain, token,
//! signing key and source, and states whether the hashes and the description
//! agree with the bytes. The result is plain JSON placed at `input.derived`,
//! so Rego policies can require, for example, `input.derived.msg_hashes_match`,
//! `input.derived.description_agrees` and an empty `input.derived.violations`.
//!
//! # Layout
//! - `mod.rs` (this file): [`derive`], the output shape, msg-hash matching
//!   and the family-independent agreement checks.
//! - `tables.rs`: [`DeriveConfig`], the chain and token tables of
//!   `data.integrity`, validated at load.
//! - `binding.rs`: chain id, pinned token, BIP-44 coin type, signer address
//!   and source bindings, reported as `violations`.
//! - `signer.rs`: BIP-32 public derivation from `root_pub_key` and the
//!   EVM, TRON and Bitcoin addresses of a key.
//! - `amount.rs`: whole-unit decimal strings to base units, exactly.
//! - `evm.rs`: legacy (pre-155 and EIP-155), EIP-2930 and EIP-1559 through
//!   alloy-consensus; ERC-20 `transfer`/`transferFrom`/`approve` calldata.
//! - `tron.rs`: `Transaction.raw` protobuf; TransferContract and
//!   TriggerSmartContract (TRC-20 calls).
//! - `solana.rs`: legacy and v0 messages; System transfer and SPL Token
//!   `Transfer`/`TransferChecked`, with associated-token-account derivation.
//! - `bitcoin.rs`: unsigned transactions, per-input sighashes (legacy,
//!   BIP143, BIP341 key path) from the described prevouts, outputs and change.
//!
//! # Output (`input.derived`)
//! Every key below is always present (null or empty when it does not apply):
//! ```text
//! family               "evm" | "tron" | "solana" | "bitcoin" | null (unknown chain)
//! kind                 "legacy" | "legacy_eip155" | "eip2930" | "eip1559" | "eip4844" | "eip7702"
//!                      | "tron_transfer" | "tron_trigger_smart_contract" | "tron_contract_<n>"
//!                      | "solana_legacy" | "solana_v0" | "btc" | null (decode error)
//! signing_hashes       ["0x<lowercase hex>"]; for Solana the message bytes themselves
//! msg_hashes_match     true only if msg_hash_list is non-empty and every entry is a signing hash
//! unmatched_msg_hashes entries of msg_hash_list (normalised "0x" + lowercase) that are not
//! chain_id, nonce      decimal strings (EVM) or null
//! fees                 object of decimal strings, per family (see docs/derived.md)
//! to, value            the top-level call target and native value in base units
//! token_transfer       {standard, method, contract, from, recipient, amount} or null
//! recipients           [{address, amount, asset}] value actually moved ("native" or token id)
//! description_agrees   true only if the decoded transfer matches extra.transaction.destination
//! disagreements        human-readable reasons naming both values
//! fee_max              most the bytes can spend on fees, base units (null if unbounded)
//! fee_max_native       the same in whole native units, for the chain's max_fee
//! authorities          accounts the bytes spend from or pay fees with
//! signer               {addresses: [{path, address}], derivable}
//! violations           [{code, msg}] failed bindings (binding.rs)
//! error                null, or a short reason the raw transaction could not be decoded
//! ```
//! Families add keys of their own (`access_list_len`, `from`, `fee_payer`, ...).
//!
//! INVARIANT: when `error` is not null, `msg_hashes_match` and
//! `description_agrees` are both false. Decoding never panics.

#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

mod amount;
mod binding;
mod bitcoin;
pub(crate) mod call;
pub(crate) mod encode;
mod evm;
pub(crate) mod signer;
mod solana;
mod tables;
mod tron;

use alloy_primitives::U256;
use serde_json::{Map, Value, json};

pub use amount::{AmountError, to_base_units};
pub use tables::{ChainInfo, DeriveConfig, Family, TokenAsset, TokenInfo};

/// Returns None when there is nothing to derive (not KEYSIGN / no transaction / no unsigned_raw_tx),
/// else Some(json object) to be placed at input.derived.
pub fn derive(detail: &Value, extra: &Value, cfg: &DeriveConfig) -> Option<Value> {
    let tx = extra.get("transaction").filter(|t| t.is_object())?;
    let raw = tx.get("raw_tx_info")?.get("unsigned_raw_tx")?;
    if raw.is_null() || raw.as_str().is_some_and(str::is_empty) {
        return None;
    }
    let msg_hashes = normalized_msg_hashes(detail);
    let chain_id = str_field(tx, "chain_id").unwrap_or_default();
    let chain = cfg.chains.get(chain_id);

    let decoded = match (chain, raw.as_str()) {
        (_, None) => Err(DecodeError::new("unsigned_raw_tx is not a string")),
        (None, _) => Err(DecodeError::new(format!(
            "chain `{}` is not in data.integrity.chains",
            shorten(chain_id)
        ))),
        (Some(c), Some(raw)) => decode_hex(raw).and_then(|bytes| decode_family(c, &bytes, tx)),
    };
    let family_json = chain.map_or(Value::Null, |c| Value::String(c.family.name().to_owned()));
    Some(match (decoded, chain) {
        (Ok(d), Some(c)) => render(family_json, d, &msg_hashes, detail, tx, c, cfg),
        (Err(e), _) => render_error(family_json, &e, &msg_hashes),
        (Ok(_), None) => render_error(
            family_json,
            &DecodeError::new("chain is not configured"),
            &msg_hashes,
        ),
    })
}

fn decode_family(chain: &ChainInfo, bytes: &[u8], tx: &Value) -> Result<Decoded, DecodeError> {
    match chain.family {
        Family::Evm => evm::decode(bytes),
        Family::Tron => tron::decode(bytes),
        Family::Solana => solana::decode(bytes),
        Family::Bitcoin => bitcoin::decode(bytes, tx, chain.btc_network()).map(|mut d| {
            // The fee of a Bitcoin transaction is exactly inputs - outputs.
            d.max_fee = d
                .facts
                .get("fees")
                .and_then(|f| f.get("total"))
                .and_then(Value::as_str)
                .and_then(|t| t.parse::<u64>().ok())
                .map(U256::from);
            d
        }),
    }
}

/// Attacker text in a message: bounded, so a reason cannot grow without
/// limit or smuggle a page of text into the portal.
pub(crate) fn shorten(s: &str) -> String {
    const MAX: usize = 80;
    if s.chars().count() <= MAX {
        s.to_owned()
    } else {
        let head: String = s.chars().take(MAX).collect();
        format!("{head}...")
    }
}

/// Why the raw transaction could not be decoded; rendered into `error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DecodeError(String);

impl DecodeError {
    pub(crate) fn new(msg: impl Into<String>) -> Self {
        Self(msg.into())
    }
}

/// What a family decoder found, before comparison with the description.
#[derive(Debug, Default)]
pub(crate) struct Decoded {
    /// Value of `kind`.
    pub kind: String,
    /// Signing hashes as "0x" + lowercase hex.
    pub signing_hashes: Vec<String>,
    /// `chain_id`, `nonce`, `fees`, `to`, `value` and family-specific keys.
    pub facts: Map<String, Value>,
    /// Decoded token call (ERC-20/TRC-20/SPL), if any.
    pub token_transfer: Option<TokenTransfer>,
    /// What the transaction does, for the agreement checks.
    pub action: Action,
    /// Every movement of value the transaction makes (rendered as `recipients`).
    pub recipients: Vec<Transfer>,
    /// Top-level call target, native value and calldata (EVM, TRON trigger),
    /// for `EVM_Contract` destinations.
    pub call: Option<Call>,
    /// How addresses of this family compare.
    pub address_eq: AddressEq,
    /// The most the transaction can spend on fees, in base units of the
    /// chain's native coin; None when the decoder cannot bound it.
    pub max_fee: Option<U256>,
    /// Accounts whose authority the transaction uses to move value or pay
    /// (TRON owner, Solana fee payer and transfer authorities), as the
    /// family prints addresses; each must be the described source.
    pub authorities: Vec<String>,
}

/// A decoded token call.
#[derive(Debug, Clone)]
pub(crate) struct TokenTransfer {
    pub standard: &'static str,
    pub method: &'static str,
    pub contract: Option<String>,
    pub from: Option<String>,
    pub recipient: String,
    pub amount: String,
}

/// One movement of value to a recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Transfer {
    pub recipient: String,
    /// Base units, decimal.
    pub amount: String,
    pub asset: Asset,
    /// Solana SPL: token accounts that also count as this recipient when
    /// the description names their owner (see `solana::ata_matches`).
    pub spl: Option<SplDest>,
}

/// The SPL context needed to relate a token account to its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SplDest {
    pub mint: Option<[u8; 32]>,
    pub token_program: [u8; 32],
    pub token_account: [u8; 32],
    /// Decimals carried by `TransferChecked`.
    pub decimals: Option<u8>,
}

/// The asset a transfer moves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Asset {
    Native,
    /// Token contract / mint, as the family prints addresses.
    Token(String),
    /// An SPL token whose mint the instruction does not name.
    UnknownToken,
}

impl Asset {
    fn label(&self) -> String {
        match self {
            Self::Native => "native".to_owned(),
            Self::Token(c) => c.clone(),
            Self::UnknownToken => "unknown_token".to_owned(),
        }
    }
}

/// What the transaction does, reduced to what a description can state.
#[derive(Debug, Default)]
pub(crate) enum Action {
    /// Plain value transfers (native or token).
    Transfers(Vec<Transfer>),
    /// Anything else, described for the disagreement message.
    Other(String),
    #[default]
    Nothing,
}

/// Top-level call (EVM, TRON TriggerSmartContract).
#[derive(Debug, Clone)]
pub(crate) struct Call {
    pub to: Option<String>,
    pub value: String,
    pub data: Vec<u8>,
}

/// How described and decoded addresses compare.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum AddressEq {
    /// Hex addresses: case-insensitive, `0x` optional.
    #[default]
    HexCaseInsensitive,
    /// Base58 addresses: exact.
    Exact,
}

impl AddressEq {
    fn eq(self, a: &str, b: &str) -> bool {
        match self {
            Self::Exact => a == b,
            Self::HexCaseInsensitive => {
                let strip = |s: &str| {
                    s.strip_prefix("0x")
                        .or_else(|| s.strip_prefix("0X"))
                        .unwrap_or(s)
                        .to_ascii_lowercase()
                };
                strip(a) == strip(b)
            }
        }
    }
}

/// Decodes hex with or without `0x`/`0X`, any case.
fn decode_hex(s: &str) -> Result<Vec<u8>, DecodeError> {
    let body = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(s);
    if body.is_empty() {
        return Err(DecodeError::new("unsigned_raw_tx hex is empty"));
    }
    if !body.len().is_multiple_of(2) {
        return Err(DecodeError::new(
            "unsigned_raw_tx is not valid hex: odd length",
        ));
    }
    alloy_primitives::hex::decode(body)
        .map_err(|e| DecodeError::new(format!("unsigned_raw_tx is not valid hex: {e}")))
}

/// `0x` + lowercase hex.
pub(crate) fn hex0x(bytes: &[u8]) -> String {
    format!("0x{}", alloy_primitives::hex::encode(bytes))
}

/// msg_hash_list entries normalised to "0x" + lowercase; non-strings become
/// their JSON text (so they can never match a hash).
fn normalized_msg_hashes(detail: &Value) -> Vec<String> {
    let Some(list) = detail.get("msg_hash_list").and_then(Value::as_array) else {
        return Vec::new();
    };
    list.iter()
        .map(|v| match v.as_str() {
            Some(s) => {
                let body = s
                    .strip_prefix("0x")
                    .or_else(|| s.strip_prefix("0X"))
                    .unwrap_or(s);
                format!("0x{}", body.to_ascii_lowercase())
            }
            None => v.to_string(),
        })
        .collect()
}

/// Keys every derived object carries; decoders and binding add to them.
fn base_object(family: Value) -> Map<String, Value> {
    let mut out = Map::new();
    for key in [
        "chain_id",
        "nonce",
        "to",
        "value",
        "kind",
        "token_transfer",
        "fee_max",
        "fee_max_native",
        "call",
        "error",
    ] {
        out.insert(key.to_owned(), Value::Null);
    }
    out.insert("fees".to_owned(), json!({}));
    out.insert("family".to_owned(), family);
    out.insert("signing_hashes".to_owned(), json!([]));
    out.insert("recipients".to_owned(), json!([]));
    out.insert("authorities".to_owned(), json!([]));
    out.insert(
        "signer".to_owned(),
        json!({"addresses": [], "derivable": false}),
    );
    out.insert("violations".to_owned(), json!([]));
    out
}

fn render_error(family: Value, e: &DecodeError, msg_hashes: &[String]) -> Value {
    let mut out = base_object(family);
    out.insert("msg_hashes_match".to_owned(), Value::Bool(false));
    out.insert("unmatched_msg_hashes".to_owned(), json!(msg_hashes));
    out.insert("description_agrees".to_owned(), Value::Bool(false));
    out.insert(
        "disagreements".to_owned(),
        json!(["the raw transaction could not be decoded, so the description cannot be checked"]),
    );
    out.insert("error".to_owned(), Value::String(e.0.clone()));
    Value::Object(out)
}

fn render(
    family: Value,
    d: Decoded,
    msg_hashes: &[String],
    detail: &Value,
    tx: &Value,
    chain: &ChainInfo,
    cfg: &DeriveConfig,
) -> Value {
    let unmatched: Vec<&String> = msg_hashes
        .iter()
        .filter(|h| !d.signing_hashes.contains(h))
        .collect();
    let msg_hashes_match = !msg_hashes.is_empty() && unmatched.is_empty();
    let mut bound = binding::bind(&d, detail, tx, chain, cfg);
    let disagreements = check_description(&d, tx, chain, cfg, &bound.own);
    // The call the bytes make, read through the pinned ABIs; only calldata
    // makes a call (a plain native transfer has none).
    let chain_id = str_field(tx, "chain_id").unwrap_or_default();
    let decoded_call = d
        .call
        .as_ref()
        .filter(|c| !c.data.is_empty())
        .and_then(|c| call::call_facts(chain_id, chain, cfg, c.to.as_deref(), &c.value, &c.data));
    bound
        .violations
        .extend(check_calldata_info(tx, decoded_call.as_ref(), chain.family));
    let recipients: Vec<Value> = d
        .recipients
        .iter()
        .map(|t| json!({"address": t.recipient, "amount": t.amount, "asset": t.asset.label()}))
        .collect();
    let token_transfer = d.token_transfer.as_ref().map_or(Value::Null, |t| {
        json!({"standard": t.standard, "method": t.method, "contract": t.contract, "from": t.from,
               "recipient": t.recipient, "amount": t.amount})
    });
    let mut out = base_object(family);
    out.extend(d.facts);
    if let Some(fee) = d.max_fee {
        out.insert("fee_max".to_owned(), json!(fee.to_string()));
        out.insert(
            "fee_max_native".to_owned(),
            json!(amount::from_base_units(
                &fee.to_string(),
                chain.native_decimals
            )),
        );
    }
    out.insert("kind".to_owned(), Value::String(d.kind));
    out.insert("signing_hashes".to_owned(), json!(d.signing_hashes));
    out.insert("msg_hashes_match".to_owned(), Value::Bool(msg_hashes_match));
    out.insert("unmatched_msg_hashes".to_owned(), json!(unmatched));
    out.insert("token_transfer".to_owned(), token_transfer);
    out.insert("recipients".to_owned(), Value::Array(recipients));
    out.insert("authorities".to_owned(), json!(d.authorities));
    out.insert(
        "call".to_owned(),
        decoded_call.map_or(Value::Null, |c| Value::Object(c.facts)),
    );
    out.insert(
        "description_agrees".to_owned(),
        Value::Bool(disagreements.is_empty()),
    );
    out.insert("disagreements".to_owned(), json!(disagreements));
    out.insert("signer".to_owned(), bound.signer);
    out.insert(
        "violations".to_owned(),
        Value::Array(
            bound
                .violations
                .into_iter()
                .map(|(code, msg)| json!({"code": code, "msg": msg}))
                .collect(),
        ),
    );
    out.insert("error".to_owned(), Value::Null);
    Value::Object(out)
}

/// `destination.calldata_info` of an `EVM_Contract` description against
/// the decoded call: each disagreement is a `keysign.calldata_info_mismatch`
/// violation (Cobo's portal shows this text to approvers, so a lie in it is
/// an attack of its own, apart from the calldata bytes).
fn check_calldata_info(
    tx: &Value,
    decoded: Option<&call::DecodedCall>,
    family: Family,
) -> Vec<binding::Violation> {
    let dest = tx.get("destination").unwrap_or(&Value::Null);
    let info = dest.get("calldata_info").filter(|v| !v.is_null());
    let (Some("EVM_Contract"), Some(info)) = (str_field(dest, "destination_type"), info) else {
        return Vec::new();
    };
    let msgs = match decoded {
        Some(c) => call::check_calldata_info(info, c, family),
        None => vec![
            "calldata_info describes a call, but the raw transaction carries no calldata"
                .to_owned(),
        ],
    };
    msgs.into_iter()
        .map(|m| ("keysign.calldata_info_mismatch", m))
        .collect()
}

fn str_field<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// Compares the decoded transaction with `extra.transaction.destination`.
/// Returns the disagreements; empty means the description agrees.
fn check_description(
    d: &Decoded,
    tx: &Value,
    chain: &ChainInfo,
    cfg: &DeriveConfig,
    own: &[String],
) -> Vec<String> {
    let Some(dest) = tx.get("destination").filter(|v| v.is_object()) else {
        return vec!["the description has no destination".to_owned()];
    };
    let dest_type = str_field(dest, "destination_type").unwrap_or_default();
    match dest_type {
        "Address" if chain.family == Family::Bitcoin => {
            bitcoin::check_description(d, tx, own, chain.btc_network())
        }
        "Address" => check_address_destination(d, dest, tx, cfg),
        "EVM_Contract" => check_evm_contract(d, dest, tx, chain, cfg),
        other => vec![format!(
            "destination type `{}` cannot be checked against the raw transaction",
            shorten(other)
        )],
    }
}

fn check_address_destination(
    d: &Decoded,
    dest: &Value,
    tx: &Value,
    cfg: &DeriveConfig,
) -> Vec<String> {
    let mut out = Vec::new();
    let Some(output) = dest.get("account_output").filter(|v| v.is_object()) else {
        return vec![
            "the description has no account_output (UTXO outputs are not checked)".to_owned(),
        ];
    };
    let transfer = match &d.action {
        Action::Transfers(ts) if ts.len() == 1 => ts.first(),
        Action::Transfers(ts) => {
            return vec![format!(
                "raw tx makes {} transfers but the description names one recipient",
                ts.len()
            )];
        }
        Action::Other(what) => {
            return vec![format!(
                "raw tx is {what}, not the transfer the description states"
            )];
        }
        Action::Nothing => {
            return vec!["raw tx moves no value but the description states a transfer".to_owned()];
        }
    };
    let Some(t) = transfer else {
        return vec!["raw tx moves no value but the description states a transfer".to_owned()];
    };
    let token_id = str_field(tx, "token_id").unwrap_or_default();
    let token = cfg.tokens.get(token_id);
    // Whether the token is the native coin comes from the token table, not
    // from the id's spelling; binding.rs reports an unknown token.
    match (&t.asset, token.map(|t| &t.asset)) {
        (Asset::Native, Some(TokenAsset::Pinned(_))) => out.push(format!(
            "asset: raw tx moves the native coin but the description names token `{}`",
            shorten(token_id)
        )),
        (Asset::Token(_) | Asset::UnknownToken, Some(TokenAsset::Native)) => out.push(format!(
            "asset: raw tx moves token {} but the description names the native coin `{}`",
            t.asset.label(),
            shorten(token_id)
        )),
        (_, None) => out.push(format!(
            "asset: token `{}` is not in data.integrity.tokens, so the asset moved cannot be checked",
            shorten(token_id)
        )),
        _ => {}
    }

    match str_field(output, "address") {
        None => out.push("recipient: the description has no destination address".to_owned()),
        Some(addr) => {
            let same = d.address_eq.eq(&t.recipient, addr)
                || t.spl
                    .as_ref()
                    .is_some_and(|spl| solana::ata_matches(spl, addr));
            if !same {
                out.push(format!(
                    "recipient: raw tx pays {} but the description says {}",
                    t.recipient,
                    shorten(addr)
                ));
            }
        }
    }

    let decimals = token.map(|t| t.decimals);
    if let (Some(spl_dec), Some(dec)) = (t.spl.as_ref().and_then(|s| s.decimals), decimals)
        && u32::from(spl_dec) != dec
    {
        out.push(format!(
            "decimals: raw tx states {spl_dec} decimals but `{token_id}` has {dec}"
        ));
    }
    match (str_field(output, "amount"), decimals) {
        (None, _) => out.push("amount: the description has no amount".to_owned()),
        (Some(_), None) => out.push(format!(
            "amount: no decimals configured for token `{}`",
            shorten(token_id)
        )),
        (Some(a), Some(dec)) => match to_base_units(a, dec) {
            Err(e) => out.push(format!("amount: {e}")),
            Ok(base) if base != amount::normalize(&t.amount) => out.push(format!(
                "amount: raw tx moves {} base units but the description says {a} {} = {base} base units",
                t.amount,
                shorten(token_id)
            )),
            Ok(_) => {}
        },
    }
    out
}

fn check_evm_contract(
    d: &Decoded,
    dest: &Value,
    tx: &Value,
    chain: &ChainInfo,
    cfg: &DeriveConfig,
) -> Vec<String> {
    let Some(call) = &d.call else {
        return vec![format!(
            "raw tx of kind `{}` is not a contract call",
            d.kind
        )];
    };
    let mut out = Vec::new();
    // A call that sends native value, or that the call rules judge (its
    // contract is pinned), is described in the native coin: `value` is in
    // its units, and what the call moves of a token is judged from the
    // decoded calldata. Naming a token would put the native value outside
    // the native coin's caps and limits by the description's word.
    let token_id = str_field(tx, "token_id").unwrap_or_default();
    let chain_id = str_field(tx, "chain_id").unwrap_or_default();
    let governed = call.value != "0"
        || call
            .to
            .as_deref()
            .is_some_and(|to| cfg.contracts.is_pinned(chain_id, to));
    if governed && token_id != chain.native_token {
        out.push(format!(
            "token: a call that sends native value or calls a pinned contract is described in the chain's native coin `{}`, not `{}`",
            chain.native_token,
            shorten(token_id)
        ));
    }
    match (str_field(dest, "address"), &call.to) {
        (None, _) => out.push("to: the description has no contract address".to_owned()),
        (Some(a), None) => out.push(format!(
            "to: raw tx creates a contract but the description calls {}",
            shorten(a)
        )),
        (Some(a), Some(to)) if !d.address_eq.eq(to, a) => {
            out.push(format!(
                "to: raw tx calls {to} but the description says {}",
                shorten(a)
            ));
        }
        _ => {}
    }
    // `value` is in whole units of the chain's native coin.
    let described_value = str_field(dest, "value").unwrap_or("0");
    match to_base_units(described_value, chain.native_decimals) {
        Err(e) => out.push(format!("value: {e}")),
        Ok(base) if base != call.value => out.push(format!(
            "value: raw tx sends {} base units but the description says {} = {base}",
            call.value,
            shorten(described_value)
        )),
        Ok(_) => {}
    }
    let described_data = str_field(dest, "calldata").unwrap_or_default();
    let body = described_data
        .strip_prefix("0x")
        .or_else(|| described_data.strip_prefix("0X"))
        .unwrap_or(described_data);
    match alloy_primitives::hex::decode(body) {
        Ok(bytes) if bytes == call.data => {}
        Ok(_) => out.push(format!(
            "calldata: raw tx carries {} but the description says 0x{}",
            hex0x(&call.data),
            body.to_ascii_lowercase()
        )),
        Err(_) => out.push(format!(
            "calldata: the description's calldata `{}` is not hex",
            shorten(described_data)
        )),
    }
    out
}

#[cfg(test)]
mod tests;
