//! TRON: `unsigned_raw_tx` is the protobuf `Transaction.raw` (what TRON
//! calls `raw_data_hex`); the signing hash is sha256 of those bytes (the
//! txID).
//!
//! The protobuf is read by a minimal hand-written reader for the handful of
//! fields we need, from TRON's `Tron.proto`, `balance_contract.proto` and
//! `smart_contract.proto`. Unknown fields are skipped; a singular field we
//! read that appears twice is an error (protobuf would merge or override,
//! and we refuse to guess which view the node acts on).

use alloy_primitives::U256;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::{Action, AddressEq, Asset, Call, DecodeError, Decoded, Transfer, evm, hex0x};

const TRANSFER_CONTRACT: u64 = 1;
const TRIGGER_SMART_CONTRACT: u64 = 31;

/// One protobuf field value.
enum Wire<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

/// Reads `(field number, value)` pairs; errors on malformed input.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut out: u64 = 0;
        for i in 0..10u32 {
            let (&b, rest) = self
                .buf
                .split_first()
                .ok_or_else(|| DecodeError::new("protobuf: truncated varint"))?;
            self.buf = rest;
            let chunk = u64::from(b & 0x7f);
            if i == 9 && b > 1 {
                return Err(DecodeError::new("protobuf: varint overflow"));
            }
            out |= chunk << (7 * i);
            if b & 0x80 == 0 {
                return Ok(out);
            }
        }
        Err(DecodeError::new("protobuf: varint too long"))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let (head, rest) = self
            .buf
            .split_at_checked(n)
            .ok_or_else(|| DecodeError::new("protobuf: truncated field"))?;
        self.buf = rest;
        Ok(head)
    }

    fn next(&mut self) -> Result<Option<(u64, Wire<'a>)>, DecodeError> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        let field = key >> 3;
        if field == 0 {
            return Err(DecodeError::new("protobuf: field number 0"));
        }
        let wire = match key & 7 {
            0 => Wire::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                Wire::Fixed
            }
            2 => {
                let len = usize::try_from(self.varint()?)
                    .map_err(|_| DecodeError::new("protobuf: length overflow"))?;
                Wire::Bytes(self.take(len)?)
            }
            5 => {
                self.take(4)?;
                Wire::Fixed
            }
            w => {
                return Err(DecodeError::new(format!(
                    "protobuf: unsupported wire type {w}"
                )));
            }
        };
        Ok(Some((field, wire)))
    }
}

/// Collects the fields we read from one message, refusing duplicates of
/// singular ones and wrong wire types.
#[derive(Default)]
struct Msg<'a> {
    varints: Vec<(u64, u64)>,
    bytes: Vec<(u64, &'a [u8])>,
}

impl<'a> Msg<'a> {
    fn parse(buf: &'a [u8], repeated: &[u64]) -> Result<Self, DecodeError> {
        let mut r = Reader { buf };
        let mut m = Msg::default();
        while let Some((field, wire)) = r.next()? {
            let seen = m.varints.iter().any(|(f, _)| *f == field)
                || m.bytes.iter().any(|(f, _)| *f == field);
            if seen && !repeated.contains(&field) {
                return Err(DecodeError::new(format!(
                    "protobuf: field {field} appears twice"
                )));
            }
            match wire {
                Wire::Varint(v) => m.varints.push((field, v)),
                Wire::Bytes(b) => m.bytes.push((field, b)),
                Wire::Fixed => {}
            }
        }
        Ok(m)
    }

    fn varint(&self, field: u64) -> u64 {
        self.varints
            .iter()
            .find(|(f, _)| *f == field)
            .map_or(0, |(_, v)| *v)
    }

    fn int64(&self, field: u64, name: &str) -> Result<u64, DecodeError> {
        let v = self.varint(field);
        if i64::try_from(v).is_err() {
            return Err(DecodeError::new(format!("{name} is negative")));
        }
        Ok(v)
    }

    fn bytes(&self, field: u64) -> &'a [u8] {
        self.bytes
            .iter()
            .find(|(f, _)| *f == field)
            .map_or(&[], |(_, b)| b)
    }

    fn all_bytes(&self, field: u64) -> impl Iterator<Item = &'a [u8]> + '_ {
        self.bytes
            .iter()
            .filter(move |(f, _)| *f == field)
            .map(|(_, b)| *b)
    }

    fn has_varint_as_bytes(&self, fields: &[u64]) -> bool {
        self.bytes.iter().any(|(f, _)| fields.contains(f))
    }
}

/// Base58check of a 21-byte TRON address (0x41 prefix).
pub(crate) fn tron_address(b21: &[u8]) -> Result<String, DecodeError> {
    if b21.len() != 21 || b21.first() != Some(&0x41) {
        return Err(DecodeError::new(format!(
            "not a TRON address: {}",
            hex0x(b21)
        )));
    }
    Ok(base58check(b21))
}

fn base58check(payload: &[u8]) -> String {
    let check = Sha256::digest(Sha256::digest(payload));
    let mut v = payload.to_vec();
    v.extend(check.iter().take(4));
    bs58::encode(v).into_string()
}

/// An ABI address word as a TRON address (0x41 || last 20 bytes).
fn tron_word(word: &[u8]) -> Option<String> {
    let (pad, body) = word.split_at_checked(12)?;
    if pad.iter().any(|b| *b != 0) {
        return None;
    }
    let mut b21 = vec![0x41];
    b21.extend_from_slice(body);
    Some(base58check(&b21))
}

/// Decodes `Transaction.raw`.
/// Bytes a broadcast transaction adds to `raw`: the signature (65) and the
/// protobuf framing and result fields, rounded up.
const TX_OVERHEAD_BYTES: u64 = 134;
/// Sun burned per bandwidth byte when the owner has no free bandwidth.
const SUN_PER_BANDWIDTH_BYTE: u64 = 1_000;
/// Creating a recipient account: 1 TRX plus 0.1 TRX for the new account.
const ACTIVATION_FEE_SUN: u64 = 1_100_000;
/// Burned for a transaction that carries a memo (`data`), the network's
/// `getMemoFee`.
const MEMO_FEE_SUN: u64 = 1_000_000;
/// Burned for a multi-signature transaction (`getMultiSignFee`): a contract
/// that names a permission other than the owner's (id 0) may be one.
const MULTI_SIGN_FEE_SUN: u64 = 1_000_000;

pub(crate) fn decode(bytes: &[u8]) -> Result<Decoded, DecodeError> {
    // raw: ref_block_bytes 1, ref_block_num 3, ref_block_hash 4, expiration 8,
    // auths 9 (repeated), data 10, contract 11 (repeated), scripts 12,
    // timestamp 14, fee_limit 18.
    let raw = Msg::parse(bytes, &[9, 11])?;
    if raw.has_varint_as_bytes(&[3, 8, 14, 18]) {
        return Err(DecodeError::new(
            "protobuf: wrong wire type in Transaction.raw",
        ));
    }
    let contracts: Vec<&[u8]> = raw.all_bytes(11).collect();
    let [contract] = contracts.as_slice() else {
        return Err(DecodeError::new(format!(
            "TRON transaction has {} contracts, expected 1",
            contracts.len()
        )));
    };
    if raw.bytes(1).is_empty() || raw.varint(8) == 0 {
        return Err(DecodeError::new(
            "not a TRON Transaction.raw: no ref_block_bytes or expiration",
        ));
    }
    // Contract: type 1, parameter 2 (Any: type_url 1, value 2), Permission_id 5.
    let c = Msg::parse(contract, &[])?;
    let ctype = c.varint(1);
    let any = Msg::parse(c.bytes(2), &[])?;
    let type_url = std::str::from_utf8(any.bytes(1))
        .map_err(|_| DecodeError::new("Any.type_url is not UTF-8"))?;
    let param = any.bytes(2);

    let hash = Sha256::digest(bytes);
    let mut d = Decoded {
        signing_hashes: vec![hex0x(&hash)],
        address_eq: AddressEq::Exact,
        ..Decoded::default()
    };
    let fee_limit = raw.int64(18, "fee_limit")?;
    d.facts
        .insert("fees".into(), json!({"fee_limit": fee_limit.to_string()}));
    // fee_limit caps the energy burned by a contract call; bandwidth (1,000
    // sun a byte when the account has none staked, signature included) and
    // activating a new recipient (1.1 TRX) are burned outside it.
    let bandwidth = u64::try_from(bytes.len())
        .unwrap_or(u64::MAX)
        .saturating_add(TX_OVERHEAD_BYTES)
        .saturating_mul(SUN_PER_BANDWIDTH_BYTE);
    // fee_limit only bounds the energy of a smart-contract call: a
    // TransferContract burns none, whatever fee_limit it carries.
    let energy = if c.varint(1) == TRANSFER_CONTRACT {
        0
    } else {
        fee_limit
    };
    let memo = if raw.bytes(10).is_empty() {
        0
    } else {
        MEMO_FEE_SUN
    };
    let multi_sign = if c.varint(5) == 0 {
        0
    } else {
        MULTI_SIGN_FEE_SUN
    };
    d.max_fee = Some(
        U256::from(energy)
            .saturating_add(U256::from(bandwidth))
            .saturating_add(U256::from(ACTIVATION_FEE_SUN))
            .saturating_add(U256::from(memo))
            .saturating_add(U256::from(multi_sign)),
    );
    d.facts.insert(
        "expiration".into(),
        json!(raw.int64(8, "expiration")?.to_string()),
    );
    d.facts.insert(
        "timestamp".into(),
        json!(raw.int64(14, "timestamp")?.to_string()),
    );
    d.facts
        .insert("ref_block_bytes".into(), json!(hex0x(raw.bytes(1))));
    d.facts
        .insert("ref_block_hash".into(), json!(hex0x(raw.bytes(4))));
    d.facts.insert("memo".into(), json!(hex0x(raw.bytes(10))));
    d.facts.insert("permission_id".into(), json!(c.varint(5)));
    d.facts.insert("contract_type".into(), json!(ctype));

    match ctype {
        TRANSFER_CONTRACT => {
            expect_type_url(type_url, "protocol.TransferContract")?;
            // TransferContract: owner_address 1, to_address 2, amount 3.
            let p = Msg::parse(param, &[])?;
            let from = tron_address(p.bytes(1))?;
            let to = tron_address(p.bytes(2))?;
            let amount = p.int64(3, "amount")?.to_string();
            d.kind = "tron_transfer".into();
            d.authorities = vec![from.clone()];
            d.facts.insert("from".into(), json!(from));
            d.facts.insert("to".into(), json!(to));
            d.facts.insert("value".into(), json!(amount));
            let t = Transfer {
                recipient: to,
                amount,
                asset: Asset::Native,
                spl: None,
            };
            d.recipients = vec![t.clone()];
            d.action = Action::Transfers(vec![t]);
        }
        TRIGGER_SMART_CONTRACT => {
            expect_type_url(type_url, "protocol.TriggerSmartContract")?;
            // TriggerSmartContract: owner 1, contract 2, call_value 3, data 4,
            // call_token_value 5, token_id 6.
            let p = Msg::parse(param, &[])?;
            let from = tron_address(p.bytes(1))?;
            let contract = tron_address(p.bytes(2))?;
            let call_value = U256::from(p.int64(3, "call_value")?);
            let token_value = p.int64(5, "call_token_value")?;
            let data = p.bytes(4);
            d.kind = "tron_trigger_smart_contract".into();
            d.authorities = vec![from.clone()];
            d.facts.insert("from".into(), json!(from));
            d.facts.insert("to".into(), json!(contract));
            d.facts
                .insert("value".into(), json!(call_value.to_string()));
            d.facts.insert("input".into(), json!(hex0x(data)));
            d.facts
                .insert("call_token_value".into(), json!(token_value.to_string()));
            let token = evm::decode_erc20(&contract, data, "trc20", tron_word);
            d.recipients = evm::recipients_for(Some(&contract), &call_value, data, token.as_ref());
            d.action = if token_value != 0 {
                Action::Other("a contract call that also moves a TRC-10 token".into())
            } else {
                evm::action_for(Some(&contract), &call_value, data, token.as_ref())
            };
            d.token_transfer = token;
            d.call = Some(Call {
                to: Some(contract),
                value: call_value.to_string(),
                data: data.to_vec(),
            });
        }
        other => {
            d.kind = format!("tron_contract_{other}");
            d.action = Action::Other(format!("a TRON contract of type {other}"));
        }
    }
    Ok(d)
}

fn expect_type_url(type_url: &str, name: &str) -> Result<(), DecodeError> {
    if type_url.rsplit('/').next() == Some(name) {
        Ok(())
    } else {
        Err(DecodeError::new(format!(
            "contract parameter type `{type_url}` does not match `{name}`"
        )))
    }
}

#[cfg(test)]
mod fee_tests {
    use super::*;

    /// A TRX TransferContract (the shipped approving fixture's bytes).
    const TRANSFER: &str = "0a021a2b2208010203040506070840e0a499ffbc315a67080112630a2d747970652e676f6f676c65617069732e636f6d2f70726f746f636f6c2e5472616e73666572436f6e747261637412320a154105ed2cafaf0553501ae5f91474396351e9b7aed4121541fb6916095ca1df60bb79ce92ce3ea74c37c5d35918e0c65b7080d095ffbc31";
    /// The same with Permission_id 2 in the contract and a memo.
    const WITH_MEMO_AND_PERMISSION: &str = "0a021a2b2208010203040506070840e0a499ffbc315a69080112630a2d747970652e676f6f676c65617069732e636f6d2f70726f746f636f6c2e5472616e73666572436f6e747261637412320a154105ed2cafaf0553501ae5f91474396351e9b7aed4121541fb6916095ca1df60bb79ce92ce3ea74c37c5d35918e0c65b28027080d095ffbc31520a696e766f696365203432";

    fn fee(hex: &str) -> U256 {
        let bytes = alloy_primitives::hex::decode(hex).unwrap();
        decode(&bytes).unwrap().max_fee.unwrap()
    }

    #[test]
    fn memo_and_multi_sign_fees_are_counted_and_a_transfer_burns_no_energy() {
        let plain = alloy_primitives::hex::decode(TRANSFER).unwrap().len() as u64;
        assert_eq!(fee(TRANSFER), U256::from((plain + 134) * 1_000 + 1_100_000));
        // 147 bytes; 1 TRX memo fee, 1 TRX multi-signature fee.
        assert_eq!(fee(WITH_MEMO_AND_PERMISSION), U256::from(3_381_000u64));
        // fee_limit (field 18) of 1,000 TRX on a TransferContract: no energy.
        let with_limit = format!("{TRANSFER}9001{}", "8094ebdc03");
        let n = (with_limit.len() / 2) as u64;
        assert_eq!(fee(&with_limit), U256::from((n + 134) * 1_000 + 1_100_000));
    }
}
