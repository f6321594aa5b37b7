//! EVM: decodes the unsigned encoding with alloy-consensus and hashes it.
//!
//! `unsigned_raw_tx` is what gets signed: legacy `rlp([nonce, gasPrice, gas,
//! to, value, data])` (pre-155), `rlp([..., chainId, 0, 0])` (EIP-155), or
//! `type || rlp([...fields without signature])` for typed transactions. The
//! signing hash is keccak256 of those bytes exactly. alloy's decoder is
//! lenient in places (legacy need not be a list; the two EIP-155 sentinels
//! need not be zero), so the decoded transaction is re-encoded for signing
//! and must reproduce the input byte for byte: the facts we report are then
//! exactly the ones the hash commits to.

use alloy_consensus::{EthereumTypedTransaction, SignableTransaction, TxEip4844};
use alloy_primitives::{Address, TxKind, U256, keccak256};
use serde_json::{Value, json};

use super::{Action, AddressEq, Asset, Call, DecodeError, Decoded, TokenTransfer, Transfer, hex0x};

/// `transfer(address,uint256)`.
pub(crate) const SEL_TRANSFER: [u8; 4] = [0xa9, 0x05, 0x9c, 0xbb];
/// `transferFrom(address,address,uint256)`.
pub(crate) const SEL_TRANSFER_FROM: [u8; 4] = [0x23, 0xb8, 0x72, 0xdd];
/// `approve(address,uint256)`.
pub(crate) const SEL_APPROVE: [u8; 4] = [0x09, 0x5e, 0xa7, 0xb3];

/// Decodes an unsigned EVM transaction.
pub(crate) fn decode(bytes: &[u8]) -> Result<Decoded, DecodeError> {
    let mut buf = bytes;
    let tx = EthereumTypedTransaction::<TxEip4844>::decode_unsigned(&mut buf)
        .map_err(|e| DecodeError::new(format!("not an unsigned EVM transaction: {e}")))?;
    if !buf.is_empty() {
        return Err(DecodeError::new(format!(
            "{} trailing bytes after the EVM transaction",
            buf.len()
        )));
    }
    let mut reencoded = Vec::with_capacity(bytes.len());
    tx.encode_for_signing(&mut reencoded);
    if reencoded != bytes {
        return Err(DecodeError::new(
            "not the canonical unsigned EVM encoding (signed, or non-canonical RLP)",
        ));
    }
    let hash = keccak256(bytes);

    let (kind, fields) = fields_of(&tx);
    let mut d = Decoded {
        kind: kind.to_owned(),
        signing_hashes: vec![hex0x(hash.as_slice())],
        address_eq: AddressEq::HexCaseInsensitive,
        ..Decoded::default()
    };
    let to = match fields.to {
        TxKind::Call(a) => Some(addr(&a)),
        TxKind::Create => None,
    };
    let value = fields.value.to_string();
    d.facts.insert(
        "chain_id".into(),
        fields
            .chain_id
            .map_or(Value::Null, |c| json!(c.to_string())),
    );
    d.facts
        .insert("nonce".into(), json!(fields.nonce.to_string()));
    d.facts.insert("fees".into(), Value::Object(fields.fees));
    d.facts.insert("to".into(), json!(to));
    d.facts.insert("value".into(), json!(value));
    d.facts
        .insert("contract_creation".into(), json!(to.is_none()));
    d.facts.insert("input".into(), json!(hex0x(fields.input)));
    d.facts
        .insert("access_list_len".into(), json!(fields.access_list_len));
    d.facts.extend(fields.extra);
    d.max_fee = Some(fields.max_fee);

    let token = to
        .as_ref()
        .and_then(|c| decode_erc20(c, fields.input, "erc20", addr_word));
    d.recipients = recipients_for(to.as_deref(), &fields.value, fields.input, token.as_ref());
    d.action = action_for(to.as_deref(), &fields.value, fields.input, token.as_ref());
    d.token_transfer = token;
    d.call = Some(Call {
        to,
        value,
        data: fields.input.to_vec(),
    });
    Ok(d)
}

/// The parts of any EVM transaction we report.
struct Fields<'a> {
    chain_id: Option<u64>,
    nonce: u64,
    to: TxKind,
    value: U256,
    input: &'a [u8],
    fees: serde_json::Map<String, Value>,
    access_list_len: usize,
    extra: serde_json::Map<String, Value>,
    /// gas_limit x the highest price per gas the sender agreed to (plus
    /// blob gas): the most this transaction can pay, whatever the base fee.
    max_fee: U256,
}

fn gas_cost(gas_limit: u64, price: u128) -> U256 {
    U256::from(gas_limit).saturating_mul(U256::from(price))
}

/// Gas per blob (EIP-4844 `GAS_PER_BLOB`).
const GAS_PER_BLOB: u64 = 131_072;

fn fees(pairs: &[(&str, u128)]) -> serde_json::Map<String, Value> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), json!(v.to_string())))
        .collect()
}

fn fields_of(tx: &EthereumTypedTransaction<TxEip4844>) -> (&'static str, Fields<'_>) {
    match tx {
        EthereumTypedTransaction::Legacy(t) => (
            if t.chain_id.is_some() { "legacy_eip155" } else { "legacy" },
            Fields {
                chain_id: t.chain_id,
                nonce: t.nonce,
                to: t.to,
                value: t.value,
                input: &t.input,
                fees: fees(&[("gas_limit", u128::from(t.gas_limit)), ("gas_price", t.gas_price)]),
                access_list_len: 0,
                extra: serde_json::Map::new(),
                max_fee: gas_cost(t.gas_limit, t.gas_price),
            },
        ),
        EthereumTypedTransaction::Eip2930(t) => (
            "eip2930",
            Fields {
                chain_id: Some(t.chain_id),
                nonce: t.nonce,
                to: t.to,
                value: t.value,
                input: &t.input,
                fees: fees(&[("gas_limit", u128::from(t.gas_limit)), ("gas_price", t.gas_price)]),
                access_list_len: t.access_list.len(),
                extra: serde_json::Map::new(),
                max_fee: gas_cost(t.gas_limit, t.gas_price),
            },
        ),
        EthereumTypedTransaction::Eip1559(t) => (
            "eip1559",
            Fields {
                chain_id: Some(t.chain_id),
                nonce: t.nonce,
                to: t.to,
                value: t.value,
                input: &t.input,
                fees: fees(&[
                    ("gas_limit", u128::from(t.gas_limit)),
                    ("max_fee_per_gas", t.max_fee_per_gas),
                    ("max_priority_fee_per_gas", t.max_priority_fee_per_gas),
                ]),
                access_list_len: t.access_list.len(),
                extra: serde_json::Map::new(),
                max_fee: gas_cost(t.gas_limit, t.max_fee_per_gas),
            },
        ),
        EthereumTypedTransaction::Eip4844(t) => (
            "eip4844",
            Fields {
                chain_id: Some(t.chain_id),
                nonce: t.nonce,
                to: TxKind::Call(t.to),
                value: t.value,
                input: &t.input,
                fees: fees(&[
                    ("gas_limit", u128::from(t.gas_limit)),
                    ("max_fee_per_gas", t.max_fee_per_gas),
                    ("max_priority_fee_per_gas", t.max_priority_fee_per_gas),
                    ("max_fee_per_blob_gas", t.max_fee_per_blob_gas),
                ]),
                access_list_len: t.access_list.len(),
                extra: [("blob_count".to_owned(), json!(t.blob_versioned_hashes.len()))].into_iter().collect(),
                max_fee: gas_cost(t.gas_limit, t.max_fee_per_gas).saturating_add(
                    U256::from(t.blob_versioned_hashes.len())
                        .saturating_mul(U256::from(GAS_PER_BLOB))
                        .saturating_mul(U256::from(t.max_fee_per_blob_gas)),
                ),
            },
        ),
        EthereumTypedTransaction::Eip7702(t) => (
            "eip7702",
            Fields {
                chain_id: Some(t.chain_id),
                nonce: t.nonce,
                to: TxKind::Call(t.to),
                value: t.value,
                input: &t.input,
                fees: fees(&[
                    ("gas_limit", u128::from(t.gas_limit)),
                    ("max_fee_per_gas", t.max_fee_per_gas),
                    ("max_priority_fee_per_gas", t.max_priority_fee_per_gas),
                ]),
                access_list_len: t.access_list.len(),
                // Delegations change what the account's code does: always surface them.
                extra: [(
                    "authorizations".to_owned(),
                    Value::Array(
                        t.authorization_list
                            .iter()
                            .map(|a| {
                                json!({"chain_id": a.chain_id().to_string(), "address": addr(a.address()),
                                       "nonce": a.nonce().to_string()})
                            })
                            .collect(),
                    ),
                )]
                .into_iter()
                .collect(),
                max_fee: gas_cost(t.gas_limit, t.max_fee_per_gas),
            },
        ),
    }
}

/// Lowercase `0x` hex address.
fn addr(a: &Address) -> String {
    hex0x(a.as_slice())
}

/// A 32-byte ABI word holding an address; None if its upper 12 bytes are
/// not zero (the token would revert on such calldata).
fn addr_word(word: &[u8]) -> Option<String> {
    let (pad, body) = word.split_at_checked(12)?;
    if pad.iter().any(|b| *b != 0) || body.len() != 20 {
        return None;
    }
    Some(hex0x(body))
}

/// Decodes ERC-20 (or TRC-20, same ABI) `transfer`, `transferFrom` and
/// `approve` calldata sent to `contract`. Extra bytes after the arguments
/// are ignored, as Solidity's decoder ignores them. `fmt_addr` renders an
/// address word in the family's format.
pub(crate) fn decode_erc20(
    contract: &str,
    input: &[u8],
    standard: &'static str,
    fmt_addr: impl Fn(&[u8]) -> Option<String>,
) -> Option<TokenTransfer> {
    let (selector, args) = input.split_at_checked(4)?;
    let word = |i: usize| args.get(i * 32..(i + 1) * 32);
    let amount = |i: usize| word(i).map(|w| U256::from_be_slice(w).to_string());
    let (method, from, recipient, amount) = match selector {
        s if s == SEL_TRANSFER => ("transfer", None, fmt_addr(word(0)?)?, amount(1)?),
        s if s == SEL_APPROVE => ("approve", None, fmt_addr(word(0)?)?, amount(1)?),
        s if s == SEL_TRANSFER_FROM => (
            "transferFrom",
            Some(fmt_addr(word(0)?)?),
            fmt_addr(word(1)?)?,
            amount(2)?,
        ),
        _ => return None,
    };
    Some(TokenTransfer {
        standard,
        method,
        contract: Some(contract.to_owned()),
        from,
        recipient,
        amount,
    })
}

/// What the transaction does, for the agreement checks.
pub(crate) fn action_for(
    to: Option<&str>,
    value: &U256,
    input: &[u8],
    token: Option<&TokenTransfer>,
) -> Action {
    let Some(to) = to else {
        return Action::Other("a contract creation".to_owned());
    };
    match token {
        Some(t) if t.method == "transfer" && value.is_zero() => Action::Transfers(vec![Transfer {
            recipient: t.recipient.clone(),
            amount: t.amount.clone(),
            asset: Asset::Token(to.to_owned()),
            spl: None,
        }]),
        Some(t) if t.method == "transfer" => Action::Other(format!(
            "a token transfer that also sends {value} native base units to the token contract"
        )),
        Some(t) => Action::Other(format!(
            "a token `{}` call (calldata is not a plain transfer)",
            t.method
        )),
        None if input.is_empty() => Action::Transfers(vec![Transfer {
            recipient: to.to_owned(),
            amount: value.to_string(),
            asset: Asset::Native,
            spl: None,
        }]),
        None => match erc20_method(input) {
            // The selector is a token method, but decode_erc20 refused the
            // arguments: say that, not "some contract call".
            Some(m) => Action::Other(format!(
                "a token `{m}` call whose arguments are not clean ABI words (an address word with non-zero upper bytes, or arguments cut short)"
            )),
            None => Action::Other(format!(
                "a contract call with calldata selector {}",
                input.get(..4).map_or_else(|| hex0x(input), hex0x)
            )),
        },
    }
}

fn erc20_method(input: &[u8]) -> Option<&'static str> {
    match input.get(..4)? {
        s if s == SEL_TRANSFER => Some("transfer"),
        s if s == SEL_TRANSFER_FROM => Some("transferFrom"),
        s if s == SEL_APPROVE => Some("approve"),
        _ => None,
    }
}

/// Every movement of value: native value to `to` (or a plain transfer of
/// zero), plus the token movement of `transfer`/`transferFrom`.
pub(crate) fn recipients_for(
    to: Option<&str>,
    value: &U256,
    input: &[u8],
    token: Option<&TokenTransfer>,
) -> Vec<Transfer> {
    let mut out = Vec::new();
    if let Some(to) = to {
        if !value.is_zero() || input.is_empty() {
            out.push(Transfer {
                recipient: to.to_owned(),
                amount: value.to_string(),
                asset: Asset::Native,
                spl: None,
            });
        }
        if let Some(t) = token.filter(|t| t.method != "approve") {
            out.push(Transfer {
                recipient: t.recipient.clone(),
                amount: t.amount.clone(),
                asset: Asset::Token(to.to_owned()),
                spl: None,
            });
        }
    }
    out
}
