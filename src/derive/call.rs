//! Contract calls: the pinned ABIs of `data.integrity.contracts`, and the
//! call a transaction makes decoded from its signed bytes against them.
//!
//! The ABI comes from the operator, never from the request: a contract is
//! known only when the policy data lists it (chain id -> canonical address ->
//! `{name, functions}`, each function a human-readable Solidity signature),
//! and a call is read only through the pinned function its selector names.
//! Arguments are decoded strictly: the decoded values are encoded again and
//! must reproduce the calldata byte for byte, so dirty padding bits, short or
//! trailing data, out-of-range or non-canonical offsets and any other
//! encoding the chain's ABI decoder would read leniently are errors, never a
//! second reading of the same bytes.
//!
//! The table and its validation at load are `tables`' (`Contracts`); this
//! module owns the facts under `input.derived.call` ([`call_facts`]), including the
//! token approvals a call makes ([`Approval`]) and the cross-check of Cobo's
//! `calldata_info` with the decoded call ([`check_calldata_info`]).

use alloy_dyn_abi::{DynSolType, DynSolValue, JsonAbiExt, Specifier};
use alloy_json_abi::Function;
use alloy_primitives::U256;
use serde_json::{Map, Value, json};

use super::{ChainInfo, DeriveConfig, Family, TokenAsset, amount, hex0x, shorten, tron};

/// A token allowance a call grants, in the token's base units.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Approval {
    /// `approve`, `increaseAllowance` or `permit2_approve`.
    pub kind: &'static str,
    /// The token contract whose balance the spender may move.
    pub token: String,
    pub token_id: Option<String>,
    pub spender: String,
    pub amount: U256,
    pub unlimited: bool,
    pub expiration: Option<String>,
}

/// The call a transaction makes, decoded against the pinned ABIs.
#[derive(Debug, Clone, Default)]
pub(crate) struct DecodedCall {
    pub facts: Map<String, Value>,
    pub approval: Option<Approval>,
    /// Arguments in order, for the `calldata_info` cross-check.
    pub args: Vec<(String, DynSolType, DynSolValue)>,
}

/// Decodes the top-level call (`to`, native `value`, `data`) of a chain
/// `chain_id` transaction. None when there is no call to describe (no
/// target: a contract creation).
pub(crate) fn call_facts(
    chain_id: &str,
    chain: &ChainInfo,
    cfg: &DeriveConfig,
    to: Option<&str>,
    value: &str,
    data: &[u8],
) -> Option<DecodedCall> {
    let to = to?;
    let mut out = DecodedCall::default();
    let f = &mut out.facts;
    for key in [
        "contract_name",
        "function",
        "signature",
        "selector",
        "approval",
        "error",
    ] {
        f.insert(key.to_owned(), Value::Null);
    }
    f.insert("contract".to_owned(), json!(to));
    f.insert("value".to_owned(), json!(value));
    f.insert("args".to_owned(), json!({}));
    f.insert("known_contract".to_owned(), Value::Bool(false));
    f.insert("known_function".to_owned(), Value::Bool(false));
    let selector = data.get(..4).and_then(|s| <[u8; 4]>::try_from(s).ok());
    if let Some(s) = selector {
        f.insert("selector".to_owned(), json!(hex0x(&s)));
    }
    let Some(contract) = cfg.contracts.get(chain_id, to) else {
        return Some(out);
    };
    f.insert("known_contract".to_owned(), Value::Bool(true));
    f.insert("contract_name".to_owned(), json!(contract.name));
    let Some(selector) = selector else {
        if !data.is_empty() {
            f.insert(
                "error".to_owned(),
                json!(format!(
                    "calldata of {} bytes is shorter than a selector",
                    data.len()
                )),
            );
        }
        return Some(out);
    };
    let Some(pinned) = contract.functions.iter().find(|p| p.selector == selector) else {
        return Some(out);
    };
    f.insert("known_function".to_owned(), Value::Bool(true));
    f.insert("function".to_owned(), json!(pinned.function.name));
    f.insert("signature".to_owned(), json!(pinned.signature));
    match decode_strict(&pinned.function, data) {
        Err(e) => {
            f.insert("error".to_owned(), json!(e));
        }
        Ok(values) => {
            let mut args = Map::new();
            for (p, v) in pinned.function.inputs.iter().zip(&values) {
                args.insert(p.name.clone(), render(chain.family, v));
            }
            f.insert("args".to_owned(), Value::Object(args));
            out.args = pinned
                .function
                .inputs
                .iter()
                .zip(values)
                .filter_map(|(p, v)| p.resolve().ok().map(|t| (p.name.clone(), t, v)))
                .collect();
            out.approval = approval(
                chain_id,
                chain.family,
                cfg,
                to,
                &pinned.signature,
                &out.args,
            );
            let approval_json = out.approval.as_ref().map_or(Value::Null, |a| {
                let token = cfg.tokens.get(a.token_id.as_deref().unwrap_or_default());
                json!({
                    "kind": a.kind,
                    "token": a.token,
                    "token_id": a.token_id,
                    "spender": a.spender,
                    "amount": a.amount.to_string(),
                    "amount_units": token.map(|t| amount::from_base_units(&a.amount.to_string(), t.decimals)),
                    "unlimited": a.unlimited,
                    "expiration": a.expiration,
                })
            });
            out.facts.insert("approval".to_owned(), approval_json);
        }
    }
    Some(out)
}

/// Decodes `data` (selector included) as a call of `f`, and accepts it only
/// if encoding the values again gives the same bytes.
fn decode_strict(f: &Function, data: &[u8]) -> Result<Vec<DynSolValue>, String> {
    let args = data.get(4..).unwrap_or_default();
    let values = f
        .abi_decode_input(args)
        .map_err(|e| format!("calldata does not decode as `{}`: {e}", f.signature()))?;
    let again = f
        .abi_encode_input(&values)
        .map_err(|e| format!("calldata of `{}` does not re-encode: {e}", f.signature()))?;
    // The decoder keeps an out-of-range uintN / intN or the bytes past a
    // bytesN as it read them, and the encoder writes them back unchanged,
    // so the round trip alone would pass them: check each value's range.
    for (p, v) in f.inputs.iter().zip(&values) {
        in_range(v).map_err(|e| format!("argument `{}`: {e}", p.name))?;
    }
    if again != data {
        return Err(format!(
            "calldata is not the canonical encoding of `{}` ({} bytes signed, {} canonical): dirty padding, trailing or missing bytes, or non-canonical offsets",
            f.signature(),
            data.len(),
            again.len()
        ));
    }
    Ok(values)
}

/// Whether every integer fits its type and every `bytesN` word is clean
/// past its N bytes (the ABI's canonical encoding of the value).
fn in_range(v: &DynSolValue) -> Result<(), String> {
    match v {
        DynSolValue::Uint(u, bits) if *bits < 256 && (*u >> *bits) != U256::ZERO => Err(format!(
            "uint{bits} word {u} is out of range (dirty high bits)"
        )),
        DynSolValue::Int(i, bits) if *bits < 256 && *bits > 0 => {
            let top = i.asr(bits - 1);
            if top == alloy_primitives::I256::ZERO || top == alloy_primitives::I256::MINUS_ONE {
                Ok(())
            } else {
                Err(format!(
                    "int{bits} word {i} is out of range (not sign-extended)"
                ))
            }
        }
        DynSolValue::FixedBytes(w, size)
            if w.get(*size..).is_some_and(|t| t.iter().any(|b| *b != 0)) =>
        {
            Err(format!(
                "bytes{size} word has non-zero bytes past its {size}"
            ))
        }
        DynSolValue::Array(xs) | DynSolValue::FixedArray(xs) | DynSolValue::Tuple(xs) => {
            xs.iter().try_for_each(in_range)
        }
        _ => Ok(()),
    }
}

/// An address word as the family prints addresses.
fn address_text(family: Family, a: &alloy_primitives::Address) -> String {
    match family {
        Family::Tron => {
            let mut b21 = [0x41u8; 21];
            if let Some(tail) = b21.get_mut(1..) {
                tail.copy_from_slice(a.as_slice());
            }
            tron::tron_address(&b21).unwrap_or_else(|_| hex0x(a.as_slice()))
        }
        _ => hex0x(a.as_slice()),
    }
}

/// A decoded value as JSON: integers as decimal strings, addresses per
/// family, bytes as `0x` hex, tuples and arrays as arrays.
fn render(family: Family, v: &DynSolValue) -> Value {
    match v {
        DynSolValue::Bool(b) => Value::Bool(*b),
        DynSolValue::Int(i, _) => json!(i.to_string()),
        DynSolValue::Uint(u, _) => json!(u.to_string()),
        DynSolValue::FixedBytes(w, size) => json!(hex0x(w.get(..*size).unwrap_or_default())),
        DynSolValue::Address(a) => json!(address_text(family, a)),
        DynSolValue::Function(f) => json!(hex0x(f.as_slice())),
        DynSolValue::Bytes(b) => json!(hex0x(b)),
        DynSolValue::String(s) => json!(s),
        DynSolValue::Array(xs) | DynSolValue::FixedArray(xs) | DynSolValue::Tuple(xs) => {
            Value::Array(xs.iter().map(|x| render(family, x)).collect())
        }
        // Not produced by decoding human-readable signatures; fail closed
        // by rendering nothing a rule could mistake for a value.
        #[allow(unreachable_patterns)]
        _ => Value::Null,
    }
}

/// Token approvals, recognised by canonical signature (argument positions,
/// not names, carry the meaning).
fn approval(
    chain_id: &str,
    family: Family,
    cfg: &DeriveConfig,
    to: &str,
    signature: &str,
    args: &[(String, DynSolType, DynSolValue)],
) -> Option<Approval> {
    let addr = |i: usize| match args.get(i).map(|a| &a.2) {
        Some(DynSolValue::Address(a)) => Some(address_text(family, a)),
        _ => None,
    };
    let uint = |i: usize| match args.get(i).map(|a| &a.2) {
        Some(DynSolValue::Uint(u, bits)) => Some((*u, *bits)),
        _ => None,
    };
    let (kind, token, spender, (amount, bits), expiration) = match signature {
        "approve(address,uint256)" => ("approve", to.to_owned(), addr(0)?, uint(1)?, None),
        "increaseAllowance(address,uint256)" => {
            ("increaseAllowance", to.to_owned(), addr(0)?, uint(1)?, None)
        }
        "approve(address,address,uint160,uint48)" => (
            "permit2_approve",
            addr(0)?,
            addr(1)?,
            uint(2)?,
            Some(uint(3)?.0.to_string()),
        ),
        _ => return None,
    };
    let max = if bits >= 256 {
        U256::MAX
    } else {
        (U256::from(1u8) << bits) - U256::from(1u8)
    };
    let unlimited = amount == max || amount >= (U256::from(1u8) << 255);
    let token_id = token_id_of(chain_id, cfg, &token);
    Some(Approval {
        kind,
        token,
        token_id,
        spender,
        amount,
        unlimited,
        expiration,
    })
}

/// The token id whose row pins `contract` on `chain_id`.
fn token_id_of(chain_id: &str, cfg: &DeriveConfig, contract: &str) -> Option<String> {
    cfg.tokens
        .iter()
        .find(|(_, t)| t.chain == chain_id && t.asset == TokenAsset::Pinned(contract.to_owned()))
        .map(|(id, _)| id.clone())
}

/// Compares Cobo's `calldata_info` (`address`, `method.{name, sig,
/// selector}`, `params`: a JSON text or array of `[name, type, value]`)
/// with the decoded call. Every field present must agree; returns one
/// sentence per disagreement. Absent `calldata_info` agrees (the calldata
/// itself is compared byte for byte elsewhere).
pub(crate) fn check_calldata_info(info: &Value, call: &DecodedCall, family: Family) -> Vec<String> {
    let mut out = Vec::new();
    let Some(info) = info.as_object() else {
        return vec!["calldata_info is not an object".to_owned()];
    };
    let fact = |k: &str| call.facts.get(k).and_then(Value::as_str);
    let same_address = |a: &str, b: &str| match family {
        Family::Tron => a == b,
        _ => a.eq_ignore_ascii_case(b),
    };
    if let Some(a) = info.get("address").filter(|v| !v.is_null()) {
        match (a.as_str(), fact("contract")) {
            (Some(a), Some(c)) if same_address(a, c) => {}
            _ => out.push(format!(
                "calldata_info.address {} is not the called contract {}",
                shorten(&a.to_string()),
                fact("contract").unwrap_or("(none)")
            )),
        }
    }
    let function = fact("function");
    let Some(function) = function else {
        if info.get("method").is_some() || info.get("params").is_some() {
            out.push(
                "calldata_info describes a method, but the calldata calls no pinned function"
                    .to_owned(),
            );
        }
        return out;
    };
    if let Some(m) = info.get("method").filter(|v| !v.is_null()) {
        let field = |k: &str| m.get(k).filter(|v| !v.is_null());
        if !m.is_object() {
            out.push("calldata_info.method is not an object".to_owned());
        }
        if let Some(n) = field("name")
            && n.as_str() != Some(function)
        {
            out.push(format!(
                "calldata_info.method.name {} is not the called function `{function}`",
                shorten(&n.to_string())
            ));
        }
        if let Some(s) = field("sig") {
            let sig = fact("signature").unwrap_or_default();
            if s.as_str().map(|s| s.replace(' ', "")) != Some(sig.to_owned()) {
                out.push(format!(
                    "calldata_info.method.sig {} is not the called `{sig}`",
                    shorten(&s.to_string())
                ));
            }
        }
        if let Some(s) = field("selector") {
            let sel = fact("selector").unwrap_or_default();
            let given = s.as_str().map(|s| {
                let body = s
                    .strip_prefix("0x")
                    .or_else(|| s.strip_prefix("0X"))
                    .unwrap_or(s);
                format!("0x{}", body.to_ascii_lowercase())
            });
            if given.as_deref() != Some(sel) {
                out.push(format!(
                    "calldata_info.method.selector {} is not the calldata's {sel}",
                    shorten(&s.to_string())
                ));
            }
        }
    }
    if let Some(p) = info.get("params").filter(|v| !v.is_null()) {
        let parsed = match p {
            Value::String(s) => serde_json::from_str::<Value>(s).ok(),
            other => Some(other.clone()),
        };
        match parsed {
            Some(Value::Array(params)) => check_params(&params, &call.args, family, "", &mut out),
            _ => out.push("calldata_info.params is not a JSON array".to_owned()),
        }
    }
    out
}

/// `params` against the decoded arguments, position by position.
fn check_params(
    params: &[Value],
    args: &[(String, DynSolType, DynSolValue)],
    family: Family,
    at: &str,
    out: &mut Vec<String>,
) {
    if params.len() != args.len() {
        out.push(format!(
            "calldata_info.params{at} lists {} parameters but the call has {}",
            params.len(),
            args.len()
        ));
        return;
    }
    for (i, (p, (name, ty, v))) in params.iter().zip(args).enumerate() {
        let triple = p.as_array().filter(|t| t.len() == 3);
        let Some([pn, pt, pv]) = triple.and_then(|t| <&[Value; 3]>::try_from(t.as_slice()).ok())
        else {
            out.push(format!(
                "calldata_info.params{at}[{i}] is not [name, type, value]"
            ));
            continue;
        };
        if !name.is_empty() && pn.as_str() != Some(name.as_str()) {
            out.push(format!(
                "calldata_info.params{at}[{i}] names {} but the pinned parameter is `{name}`",
                shorten(&pn.to_string())
            ));
        }
        let ty_text = ty.sol_type_name();
        let given_ty = pt.as_str().map(|s| s.replace(' ', ""));
        let ty_ok = given_ty.as_deref() == Some(ty_text.as_ref())
            || (matches!(ty, DynSolType::Tuple(_)) && given_ty.as_deref() == Some("tuple"));
        if !ty_ok {
            out.push(format!(
                "calldata_info.params{at}[{i}] has type {} but `{name}` is `{ty_text}`",
                shorten(&pt.to_string())
            ));
            continue;
        }
        if !value_agrees(pv, ty, v, family, &format!("{at}[{i}]"), out) {
            out.push(format!(
                "calldata_info.params{at}[{i}] (`{name}`) says {} but the calldata has {}",
                shorten(&pv.to_string()),
                shorten(&render(family, v).to_string())
            ));
        }
    }
}

/// Whether a described parameter value is the decoded one. Integers may be
/// written as decimal strings or JSON integers, addresses in any hex case
/// (EVM), bytes in any hex case; tuples are nested `[name, type, value]`
/// lists, arrays lists of values.
fn value_agrees(
    given: &Value,
    ty: &DynSolType,
    v: &DynSolValue,
    family: Family,
    at: &str,
    out: &mut Vec<String>,
) -> bool {
    let text = match given {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) if n.is_u64() || n.is_i64() => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    };
    match (ty, v) {
        (DynSolType::Tuple(types), DynSolValue::Tuple(values)) => {
            let Some(inner) = given.as_array() else {
                return false;
            };
            let args: Vec<(String, DynSolType, DynSolValue)> = types
                .iter()
                .zip(values)
                .map(|(t, v)| (String::new(), t.clone(), v.clone()))
                .collect();
            let before = out.len();
            check_params(inner, &args, family, at, out);
            out.len() == before
        }
        (
            DynSolType::Array(t) | DynSolType::FixedArray(t, _),
            DynSolValue::Array(values) | DynSolValue::FixedArray(values),
        ) => {
            let Some(inner) = given.as_array() else {
                return false;
            };
            inner.len() == values.len()
                && inner
                    .iter()
                    .zip(values)
                    .enumerate()
                    .all(|(i, (g, v))| value_agrees(g, t, v, family, &format!("{at}[{i}]"), out))
        }
        (_, DynSolValue::Address(_)) => {
            let Some(text) = text else { return false };
            let want = render(family, v);
            let want = want.as_str().unwrap_or_default();
            match family {
                Family::Tron => text == want,
                _ => text.eq_ignore_ascii_case(want),
            }
        }
        (_, DynSolValue::Bool(b)) => text.as_deref() == Some(if *b { "true" } else { "false" }),
        (_, DynSolValue::Uint(..) | DynSolValue::Int(..) | DynSolValue::String(_)) => {
            text.as_deref() == render(family, v).as_str()
        }
        (_, DynSolValue::Bytes(_) | DynSolValue::FixedBytes(..) | DynSolValue::Function(_)) => {
            let Some(text) = text else { return false };
            let body = text
                .strip_prefix("0x")
                .unwrap_or(&text)
                .to_ascii_lowercase();
            render(family, v).as_str() == Some(&format!("0x{body}"))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::derive::tables::Contracts;
    use std::collections::BTreeMap;

    fn chains() -> BTreeMap<String, ChainInfo> {
        let cfg = DeriveConfig::from_integrity(Some(&json!({
            "chains": {
                "ETH": {"family": "evm", "evm_chain_id": 1, "native_token": "ETH", "coin_type": 60, "max_fee": "0.05"},
                "BTC": {"family": "bitcoin", "network": "bitcoin", "native_token": "BTC", "coin_type": 0, "max_fee": "0.01"}
            },
            "tokens": {
                "ETH": {"chain": "ETH", "decimals": 18, "native": true},
                "BTC": {"chain": "BTC", "decimals": 8, "native": true}
            }
        })))
        .unwrap();
        cfg.chains
    }

    const USDT: &str = "0xdac17f958d2ee523a2206206994597c13d831ec7";

    fn table(functions: Value) -> Value {
        json!({"ETH": {USDT: {"name": "Tether USD", "functions": functions}}})
    }

    #[test]
    fn reads_pinned_functions() {
        let c = Contracts::from_data(
            Some(&table(json!([
                "function approve(address spender, uint256 amount)",
                "function f(bytes data, (address, uint256[]) pair)"
            ]))),
            &chains(),
        )
        .unwrap();
        let row = c.get("ETH", USDT).unwrap();
        assert_eq!(row.functions[0].signature, "approve(address,uint256)");
        assert_eq!(row.functions[0].selector, [0x09, 0x5e, 0xa7, 0xb3]);
        assert_eq!(row.functions[1].signature, "f(bytes,(address,uint256[]))");
    }

    #[test]
    fn refuses_bad_tables_naming_chain_contract_and_reason() {
        let cases: Vec<(Value, &str)> = vec![
            (
                table(json!(["approve(address spender, uint256 amount)"])),
                "must start with `function `",
            ),
            (
                table(json!(["function approve(address spender, uint257 amount)"])),
                "`uint257` is not an ABI type",
            ),
            (
                table(json!(["function approve(address, uint256 amount)"])),
                "has no name",
            ),
            (
                table(json!(["function approve(address a, uint256 a)"])),
                "used twice",
            ),
            (
                table(json!(["function approve(address spender uint256 amount)"])),
                "is not a Solidity function signature",
            ),
            (
                table(json!([
                    "function approve(address spender, uint256 amount)",
                    "function approve(address spender, uint256 amount, bytes data)"
                ])),
                "is pinned already",
            ),
            (table(json!([])), "`functions` must be a non-empty list"),
            (table(json!([7])), "is not a string"),
            (
                json!({"ETH": {USDT: {"name": "x", "functions": ["function a()"], "abi": 1}}}),
                "unknown key `abi`",
            ),
            (
                json!({"ETH": {USDT: {"functions": ["function a()"]}}}),
                "`name` must be",
            ),
            (
                json!({"ETH": {"0xDAC17F958D2EE523A2206206994597C13D831EC7": {"name": "x", "functions": ["function a()"]}}}),
                "lower-case hex",
            ),
            (
                json!({"BSC": {USDT: {"name": "x", "functions": ["function a()"]}}}),
                "chain `BSC` is not in integrity.chains",
            ),
            (
                json!({"BTC": {USDT: {"name": "x", "functions": ["function a()"]}}}),
                "evm and tron chains only",
            ),
            (json!(["x"]), "must be a map"),
        ];
        for (doc, want) in cases {
            let e = Contracts::from_data(Some(&doc), &chains()).unwrap_err();
            assert!(e.starts_with("integrity.contracts"), "{e}");
            assert!(e.contains(want), "`{e}` lacks `{want}`");
        }
    }

    fn cfg() -> DeriveConfig {
        let mut cfg = DeriveConfig::default();
        cfg.chains = chains();
        cfg.contracts = Contracts::from_data(
            Some(&table(json!([
                "function approve(address spender, uint256 amount)",
                "function pack(bytes data, uint8 small)",
                "function g(int8 a, bytes4 b)"
            ]))),
            &cfg.chains,
        )
        .unwrap();
        cfg
    }

    fn calldata(hex: &str) -> Vec<u8> {
        alloy_primitives::hex::decode(hex).unwrap()
    }

    const APPROVE: &str = "095ea7b3000000000000000000000000000000000022d473030f116ddee9f6b43ac78ba3000000000000000000000000000000000000000000000000000000174876e800";

    #[test]
    fn decodes_a_pinned_call_and_its_approval() {
        let cfg = cfg();
        let c = call_facts(
            "ETH",
            &cfg.chains["ETH"],
            &cfg,
            Some(USDT),
            "0",
            &calldata(APPROVE),
        )
        .unwrap();
        assert_eq!(c.facts["function"], "approve");
        assert_eq!(c.facts["selector"], "0x095ea7b3");
        assert_eq!(
            c.facts["args"]["spender"],
            "0x000000000022d473030f116ddee9f6b43ac78ba3"
        );
        assert_eq!(c.facts["args"]["amount"], "100000000000");
        assert_eq!(c.facts["error"], Value::Null);
        let a = c.approval.unwrap();
        assert!(!a.unlimited);
        assert_eq!(a.amount, U256::from(100_000_000_000u64));
    }

    #[test]
    fn refuses_every_non_canonical_encoding() {
        let cfg = cfg();
        let chain = &cfg.chains["ETH"];
        let good = calldata(APPROVE);
        let mut dirty = good.clone();
        dirty[4] = 1; // a high byte of the address word
        let mut trailing = good.clone();
        trailing.push(0);
        let short = good[..good.len() - 1].to_vec();
        for (what, data) in [("dirty", dirty), ("trailing", trailing), ("short", short)] {
            let c = call_facts("ETH", chain, &cfg, Some(USDT), "0", &data).unwrap();
            assert!(c.facts["error"].is_string(), "{what}: {:?}", c.facts);
            assert!(c.approval.is_none(), "{what}");
        }
        // pack(bytes, uint8): a dirty uint8 and an offset that is not the canonical one.
        let f = &cfg.contracts.get("ETH", USDT).unwrap().functions[1];
        let enc = f
            .function
            .abi_encode_input(&[
                DynSolValue::Bytes(vec![1, 2, 3]),
                DynSolValue::Uint(U256::from(5u8), 8),
            ])
            .unwrap();
        let c = call_facts("ETH", chain, &cfg, Some(USDT), "0", &enc).unwrap();
        assert_eq!(c.facts["args"]["data"], "0x010203");
        let mut high = enc.clone();
        high[4 + 62] = 1;
        let mut offset = enc.clone();
        offset[4 + 31] = 0x60;
        offset.extend([0u8; 32]);
        // g(int8, bytes4): -1 sign-extended is fine; a half-extended int8
        // or a bytes4 with a fifth byte is not.
        let g = |a: &str, b: &str| {
            calldata(&format!(
                "{}{a}{b}",
                alloy_primitives::hex::encode(
                    cfg.contracts.get("ETH", USDT).unwrap().functions[2].selector
                )
            ))
        };
        let ok = g(&"ff".repeat(32), &format!("01020304{}", "00".repeat(28)));
        let c = call_facts("ETH", chain, &cfg, Some(USDT), "0", &ok).unwrap();
        assert_eq!(
            (c.facts["args"]["a"].clone(), c.facts["args"]["b"].clone()),
            (json!("-1"), json!("0x01020304"))
        );
        let half = g(
            &format!("00{}", "ff".repeat(31)),
            &format!("01020304{}", "00".repeat(28)),
        );
        let fifth = g(&"ff".repeat(32), &format!("0102030405{}", "00".repeat(27)));
        for data in [high, offset, half, fifth] {
            let c = call_facts("ETH", chain, &cfg, Some(USDT), "0", &data).unwrap();
            assert!(c.facts["error"].is_string(), "{:?}", c.facts);
        }
    }

    #[test]
    fn unknown_contract_and_unknown_selector_are_facts() {
        let cfg = cfg();
        let chain = &cfg.chains["ETH"];
        let other = "0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48";
        let c = call_facts("ETH", chain, &cfg, Some(other), "0", &calldata(APPROVE)).unwrap();
        assert_eq!(c.facts["known_contract"], false);
        assert_eq!(c.facts["selector"], "0x095ea7b3");
        let mut data = calldata(APPROVE);
        data[0] = 0xa9;
        let c = call_facts("ETH", chain, &cfg, Some(USDT), "0", &data).unwrap();
        assert_eq!(
            (
                c.facts["known_contract"].clone(),
                c.facts["known_function"].clone()
            ),
            (json!(true), json!(false))
        );
        assert!(call_facts("ETH", chain, &cfg, None, "0", &data).is_none());
    }

    #[test]
    fn unlimited_is_the_type_max_or_at_least_two_to_the_255() {
        let cfg = cfg();
        let chain = &cfg.chains["ETH"];
        for (amount, unlimited) in [
            ("ff".repeat(32), true),
            (format!("80{}", "00".repeat(31)), true),
            (format!("7f{}", "ff".repeat(31)), false),
        ] {
            let data = calldata(&format!("{}{amount}", &APPROVE[..8 + 64]));
            let c = call_facts("ETH", chain, &cfg, Some(USDT), "0", &data).unwrap();
            assert_eq!(c.approval.unwrap().unlimited, unlimited, "{amount}");
        }
    }

    #[test]
    fn tron_calls_print_addresses_in_base58_and_look_up_tokens_by_base58() {
        let cfg = DeriveConfig::from_integrity(Some(&json!({
            "chains": {"TRON": {"family": "tron", "native_token": "TRON", "coin_type": 195, "max_fee": "100"}},
            "tokens": {
                "TRON": {"chain": "TRON", "decimals": 6, "native": true},
                "TRON_USDT": {"chain": "TRON", "decimals": 6, "contract": "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t"}
            },
            "contracts": {"TRON": {"TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t": {
                "name": "Tether USD", "functions": ["function approve(address spender, uint256 amount)"]
            }}}
        })))
        .unwrap();
        // Spender word: the 20 bytes of TXYZopYRdj2D9XRtbG411XZZ3kM5VkAeBf.
        let b21 = bitcoin::base58::decode_check("TXYZopYRdj2D9XRtbG411XZZ3kM5VkAeBf").unwrap();
        let data = calldata(&format!(
            "095ea7b3{:0>64}{:064x}",
            alloy_primitives::hex::encode(&b21[1..]),
            1_500_000u64
        ));
        let c = call_facts(
            "TRON",
            &cfg.chains["TRON"],
            &cfg,
            Some("TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t"),
            "0",
            &data,
        )
        .unwrap();
        assert_eq!(
            c.facts["args"]["spender"],
            "TXYZopYRdj2D9XRtbG411XZZ3kM5VkAeBf"
        );
        let a = c.approval.unwrap();
        assert_eq!(
            (a.token_id.as_deref(), a.spender.as_str()),
            (Some("TRON_USDT"), "TXYZopYRdj2D9XRtbG411XZZ3kM5VkAeBf")
        );
        assert_eq!(c.facts["approval"]["amount_units"], "1.5");
        // A hex spelling of the contract is no pinned TRON contract.
        let e = DeriveConfig::from_integrity(Some(&json!({
            "chains": {"TRON": {"family": "tron", "native_token": "TRON", "coin_type": 195, "max_fee": "100"}},
            "tokens": {"TRON": {"chain": "TRON", "decimals": 6, "native": true}},
            "contracts": {"TRON": {"0xa614f803b6fd780986a42c78ec9c7f77e6ded13c": {"name": "x", "functions": ["function a()"]}}}
        })))
        .unwrap_err();
        assert!(e.contains("is not a TRON address"), "{e}");
    }

    #[test]
    fn calldata_info_must_agree() {
        let cfg = cfg();
        let c = call_facts(
            "ETH",
            &cfg.chains["ETH"],
            &cfg,
            Some(USDT),
            "0",
            &calldata(APPROVE),
        )
        .unwrap();
        let spender = "0x000000000022D473030F116dDEE9F6B43aC78BA3";
        let good = json!({
            "address": "0xdAC17F958D2ee523a2206206994597C13D831ec7",
            "method": {"name": "approve", "sig": "approve(address,uint256)", "selector": "0x095EA7B3"},
            "params": format!(r#"[["spender","address","{spender}"],["amount","uint256","100000000000"]]"#),
        });
        assert_eq!(
            check_calldata_info(&good, &c, Family::Evm),
            Vec::<String>::new()
        );
        for (ptr, v, want) in [
            ("/method/name", json!("transfer"), "method.name"),
            (
                "/method/sig",
                json!("transfer(address,uint256)"),
                "method.sig",
            ),
            ("/method/selector", json!("0xa9059cbb"), "method.selector"),
            ("/address", json!(spender), "calldata_info.address"),
            (
                "/params",
                json!(
                    r#"[["spender","address","0x0000000000000000000000000000000000000001"],["amount","uint256","100000000000"]]"#
                ),
                "params[0]",
            ),
            (
                "/params",
                json!(
                    r#"[["spender","address","0x000000000022d473030f116ddee9f6b43ac78ba3"],["amount","uint256","1"]]"#
                ),
                "params[1]",
            ),
            (
                "/params",
                json!(r#"[["spender","address","0x000000000022d473030f116ddee9f6b43ac78ba3"]]"#),
                "lists 1 parameters",
            ),
            (
                "/params",
                json!(
                    r#"[["to","address","0x000000000022d473030f116ddee9f6b43ac78ba3"],["amount","uint256","100000000000"]]"#
                ),
                "names",
            ),
            ("/params", json!("not json"), "not a JSON array"),
        ] {
            let mut info = good.clone();
            *info.pointer_mut(ptr).unwrap() = v;
            let out = check_calldata_info(&info, &c, Family::Evm);
            assert!(out.iter().any(|m| m.contains(want)), "{ptr}: {out:?}");
        }
    }
}
