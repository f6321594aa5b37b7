//! Binding a decoded transaction to what the request says it is: the
//! described chain (numeric EVM chain id), token (native coin or the pinned
//! contract / mint), signing key (BIP-44 coin type of every path, the address
//! the key at each path signs for) and source (the account the bytes spend
//! from or pay fees with).
//!
//! The decoders report what the bytes say; this module compares that with the
//! chain and token tables and the request's key fields, and returns each
//! failure as a `{code, msg}` violation. The codes are a fixed set (they
//! become metric labels); the messages name both values compared, with
//! attacker text shortened.
//!
//! Why each check exists, as the compromised upstream would attack:
//! - chain id: a BSC or Sepolia transaction (or a pre-EIP-155 one, valid on
//!   every chain) described as `ETH` would be judged by ETH's rules;
//! - token: a look-alike contract, or a token of another chain, escapes the
//!   caps and allow-lists written for the described token;
//! - key and source: another account of the same root key, or another root
//!   key, under an allowed wallet spends from an account nobody described.

use serde_json::{Value, json};

use super::{
    Action, Asset, ChainInfo, Decoded, DeriveConfig, Family, TokenAsset, bitcoin,
    normalized_msg_hashes, shorten, signer, str_field,
};

/// One failed binding: a stable code and a message naming both values.
pub(crate) type Violation = (&'static str, String);

/// What binding found.
pub(crate) struct Bound {
    pub violations: Vec<Violation>,
    /// `input.derived.signer`: the addresses the request's key signs for.
    pub signer: Value,
    /// Addresses proven to belong to the signing key (Bitcoin change may
    /// only go there).
    pub own: Vec<String>,
}

pub(crate) fn bind(
    d: &Decoded,
    detail: &Value,
    tx: &Value,
    chain: &ChainInfo,
    cfg: &DeriveConfig,
) -> Bound {
    let chain_name = shorten(str_field(tx, "chain_id").unwrap_or_default());
    let mut v: Vec<Violation> = Vec::new();
    if chain.family == Family::Evm {
        bind_evm_chain_id(d, chain, &chain_name, &mut v);
    }
    bind_token(d, tx, &chain_name, cfg, &mut v);
    let source = tx
        .get("source")
        .and_then(|s| s.get("address"))
        .and_then(Value::as_str);
    bind_tweaks(detail, &mut v);
    bind_signature_type(d, detail, chain, &chain_name, &mut v);
    let (signer, own) = bind_signer(d, detail, chain, &chain_name, source, &mut v);
    for a in &d.authorities {
        match source {
            Some(src) if d.address_eq.eq(a, src) => {}
            Some(src) => push(
                &mut v,
                "keysign.source_mismatch",
                format!(
                    "raw tx moves value or pays fees with account {a}, not the source address {}",
                    shorten(src)
                ),
            ),
            None => push(
                &mut v,
                "keysign.source_mismatch",
                format!(
                    "raw tx moves value or pays fees with account {a}, but the description has no source address"
                ),
            ),
        }
    }
    Bound {
        violations: v,
        signer,
        own,
    }
}

fn push(v: &mut Vec<Violation>, code: &'static str, msg: String) {
    if !v.iter().any(|(c, m)| *c == code && *m == msg) {
        v.push((code, msg));
    }
}

fn bind_evm_chain_id(d: &Decoded, chain: &ChainInfo, name: &str, v: &mut Vec<Violation>) {
    let Some(expected) = chain.evm_chain_id else {
        return;
    };
    let code = "keysign.chain_id_mismatch";
    match d.facts.get("chain_id").and_then(Value::as_str) {
        None => push(
            v,
            code,
            format!(
                "raw tx carries no chain id (pre-EIP-155), so it is valid on every EVM chain, not only `{name}` (chain id {expected})"
            ),
        ),
        Some(actual) if actual != expected.to_string() => push(
            v,
            code,
            format!("raw tx is for chain id {actual} but `{name}` is chain id {expected}"),
        ),
        Some(_) => {}
    }
    // An EIP-7702 authorization for chain id 0 (or another chain) is valid
    // beyond the described chain, whatever the envelope says.
    for auth in d
        .facts
        .get("authorizations")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let actual = auth.get("chain_id").and_then(Value::as_str).unwrap_or("?");
        if actual != expected.to_string() {
            push(
                v,
                code,
                format!(
                    "an EIP-7702 authorization is for chain id {actual} but `{name}` is chain id {expected}"
                ),
            );
        }
    }
}

fn bind_token(
    d: &Decoded,
    tx: &Value,
    chain_name: &str,
    cfg: &DeriveConfig,
    v: &mut Vec<Violation>,
) {
    let token_id = str_field(tx, "token_id").unwrap_or_default();
    // Unknown tokens and tokens of another chain are denied by the policy
    // (integrity.rego reads the same table); here only what the bytes move.
    let Some(token) = cfg.tokens.get(token_id) else {
        return;
    };
    let TokenAsset::Pinned(pinned) = &token.asset else {
        // The native coin: a token call in the bytes would move value that
        // the native coin's caps and allow-lists never see. Except a call
        // described as one (`EVM_Contract`, whose `token_id` is the native
        // coin by Cobo's convention) to a contract whose ABI the operator
        // pinned: the call rules judge what it does (rego calls.rego).
        let pinned_call = str_field(
            tx.get("destination").unwrap_or(&Value::Null),
            "destination_type",
        ) == Some("EVM_Contract")
            && d.call
                .as_ref()
                .and_then(|c| c.to.as_deref())
                .is_some_and(|to| {
                    cfg.contracts
                        .is_pinned(str_field(tx, "chain_id").unwrap_or_default(), to)
                });
        if let Some(t) = d.token_transfer.as_ref().filter(|_| !pinned_call) {
            push(
                v,
                "keysign.token_contract_mismatch",
                format!(
                    "token `{}` is the native coin of chain `{chain_name}`, but the raw transaction calls `{}` of token contract {}",
                    shorten(token_id),
                    t.method,
                    t.contract.as_deref().unwrap_or("(unnamed)")
                ),
            );
        }
        return;
    };
    let token_id = shorten(token_id);
    let code = "keysign.token_contract_mismatch";
    let wrong = |moved: &str| {
        format!(
            "token `{token_id}` on chain `{chain_name}` must move `{pinned}`, but the raw transaction moves `{moved}`"
        )
    };
    let no_mint = format!(
        "an SPL `Transfer` names no mint, so it cannot be proven to move `{token_id}` (mint `{pinned}`)"
    );
    match &d.token_transfer {
        None => push(
            v,
            code,
            match &d.action {
                Action::Other(what) => format!(
                    "token `{token_id}` on chain `{chain_name}` must move `{pinned}`, but the raw transaction makes no token transfer it can read: it is {what}"
                ),
                _ => format!(
                    "token `{token_id}` on chain `{chain_name}` must move `{pinned}`, but the raw transaction makes no token transfer"
                ),
            },
        ),
        Some(t) => match &t.contract {
            None => push(v, code, no_mint.clone()),
            Some(c) if !d.address_eq.eq(c, pinned) => push(v, code, wrong(c)),
            Some(_) => {}
        },
    }
    for r in &d.recipients {
        match &r.asset {
            Asset::Token(c) if !d.address_eq.eq(c, pinned) => push(v, code, wrong(c)),
            Asset::UnknownToken => push(v, code, no_mint.clone()),
            _ => {}
        }
    }
}

/// `signature_type` (1 ECDSA, 2 EdDSA, 3 Schnorr) decides which key share
/// and algorithm the node uses: it must be the one the chain verifies, or the
/// node would sign the hash with another key or scheme than described.
fn bind_signature_type(
    d: &Decoded,
    detail: &Value,
    chain: &ChainInfo,
    chain_name: &str,
    v: &mut Vec<Violation>,
) {
    let expected: u64 = match chain.family {
        Family::Evm | Family::Tron => 1,
        Family::Solana => 2,
        Family::Bitcoin => {
            let types: Vec<&str> = d
                .facts
                .get("inputs")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|i| i.get("script_type").and_then(Value::as_str))
                .collect();
            match (types.iter().all(|t| *t == "p2tr"), types.contains(&"p2tr")) {
                (true, true) => 3,
                (false, false) => 1,
                _ => {
                    push(
                        v,
                        "keysign.signature_type_mismatch",
                        "the raw tx mixes taproot (Schnorr) and ECDSA inputs, which one signature_type cannot sign".into(),
                    );
                    return;
                }
            }
        }
    };
    match detail.get("signature_type") {
        Some(t) if t.as_u64() == Some(expected) => {}
        other => push(
            v,
            "keysign.signature_type_mismatch",
            format!(
                "signature_type is {}, but chain `{chain_name}` verifies signature type {expected} (1 ECDSA, 2 EdDSA, 3 Schnorr)",
                other.map_or_else(|| "missing".to_owned(), |t| shorten(&t.to_string()))
            ),
        ),
    }
}

/// A tweak is added to the key the node signs with. Child keys of BIP-32
/// public derivation are the parent plus a tweak, so a tweak would let the
/// node sign for another account than the path's, which nothing here can
/// bind: only empty tweaks are approved.
fn bind_tweaks(detail: &Value, v: &mut Vec<Violation>) {
    let code = "keysign.tweak_not_allowed";
    match detail.get("tweak_list") {
        None | Some(Value::Null) => {}
        Some(Value::Array(tweaks)) => {
            for (i, t) in tweaks.iter().enumerate() {
                if t.as_str() != Some("") {
                    push(
                        v,
                        code,
                        format!(
                            "tweak_list[{i}] is {}: a tweak changes the key that signs, so the signer cannot be bound to the source",
                            shorten(&t.to_string())
                        ),
                    );
                }
            }
        }
        Some(other) => push(
            v,
            code,
            format!("tweak_list is {}, not a list", shorten(&other.to_string())),
        ),
    }
}

/// Paths, root key and derived addresses; returns `input.derived.signer` and
/// the proven own addresses.
fn bind_signer(
    d: &Decoded,
    detail: &Value,
    chain: &ChainInfo,
    chain_name: &str,
    source: Option<&str>,
    v: &mut Vec<Violation>,
) -> (Value, Vec<String>) {
    let raw_paths: Vec<&Value> = detail
        .get("bip32_path_list")
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    if raw_paths.len() > signer::MAX_PATHS {
        push(
            v,
            "keysign.path_invalid",
            format!(
                "bip32_path_list has {} entries, more than {}",
                raw_paths.len(),
                signer::MAX_PATHS
            ),
        );
        return (json!({"addresses": [], "derivable": false}), Vec::new());
    }
    if raw_paths.is_empty() {
        push(
            v,
            "keysign.signer_unproven",
            "request_detail.bip32_path_list is missing or empty, so the signing key cannot be bound to the source".into(),
        );
    }
    let n_hashes = detail
        .get("msg_hash_list")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    if !raw_paths.is_empty() && raw_paths.len() != n_hashes {
        push(
            v,
            "keysign.path_count_mismatch",
            format!(
                "bip32_path_list has {} paths for {n_hashes} msg hashes: the node signs each hash with the key of its path, so there must be one path per hash",
                raw_paths.len()
            ),
        );
    }
    let mut paths = Vec::new();
    for p in &raw_paths {
        let Some(text) = p.as_str() else {
            push(
                v,
                "keysign.path_invalid",
                format!("bip32 path {} is not a string", shorten(&p.to_string())),
            );
            continue;
        };
        match signer::parse_path(text) {
            // parse_path's error already names the path.
            Err(e) => push(v, "keysign.path_invalid", e),
            Ok(path) => {
                if path.coin_type() != chain.coin_type {
                    push(
                        v,
                        "keysign.path_coin_type_mismatch",
                        format!(
                            "bip32 path `{}` has coin type {} but chain `{chain_name}` uses coin type {}",
                            shorten(text),
                            path.coin_type(),
                            chain.coin_type
                        ),
                    );
                }
                paths.push((text, path));
            }
        }
    }
    // Ed25519 keys of Solana are not derived by BIP-32 public derivation:
    // the source is bound through the fee payer and transfer authorities.
    if chain.family == Family::Solana {
        return (json!({"addresses": [], "derivable": false}), Vec::new());
    }
    let root = match detail.get("root_pub_key").and_then(Value::as_str) {
        None => Err("is missing".to_owned()),
        Some(s) => signer::parse_root(s),
    };
    let root = match root {
        Ok(r) => r,
        Err(e) => {
            push(
                v,
                "keysign.signer_unproven",
                format!("root_pub_key {e}, so the signing key cannot be bound to the source"),
            );
            return (json!({"addresses": [], "derivable": false}), Vec::new());
        }
    };
    let network = chain.btc_network();
    let mut addresses = Vec::new();
    let mut own = Vec::new();
    for (text, path) in &paths {
        let address = signer::derive(&root, path).and_then(|pk| match chain.family {
            Family::Evm => Ok(signer::evm_address(&pk)),
            Family::Tron => Ok(signer::tron_address(&pk)),
            Family::Bitcoin => signer::btc_address(&pk, path.purpose(), network),
            Family::Solana => Err("is not derivable".to_owned()),
        });
        match address {
            Err(e) => push(
                v,
                "keysign.path_invalid",
                format!("bip32 path `{}`: {e}", shorten(text)),
            ),
            Ok(a) => {
                addresses.push(json!({"path": text, "address": a}));
                own.push(a);
            }
        }
    }
    match chain.family {
        Family::Evm | Family::Tron => match source {
            None => push(
                v,
                "keysign.signer_unproven",
                "the description has no source address to bind the signing key to".into(),
            ),
            Some(src) => {
                for (a, (text, _)) in own.iter().zip(&paths) {
                    if !d.address_eq.eq(a, src) {
                        push(
                            v,
                            "keysign.signer_mismatch",
                            format!(
                                "the key at bip32 path `{}` of root_pub_key signs for {a}, not the source address {}",
                                shorten(text),
                                shorten(src)
                            ),
                        );
                    }
                }
            }
        },
        Family::Bitcoin => bind_btc_inputs(d, detail, &paths, &own, source, network, v),
        Family::Solana => {}
    }
    (json!({"addresses": addresses, "derivable": true}), own)
}

/// Bitcoin: the node signs hash *i* with the key of path *i*, and that hash
/// spends input *i*. So input *i* must be the address path *i*'s key
/// controls, and `msg_hash_list[i]` must be input *i*'s sighash: otherwise a
/// description of the wallet's own inputs could carry a signature for
/// another input's script.
fn bind_btc_inputs(
    d: &Decoded,
    detail: &Value,
    paths: &[(&str, signer::Path)],
    own: &[String],
    source: Option<&str>,
    network: ::bitcoin::Network,
    v: &mut Vec<Violation>,
) {
    let inputs: &[Value] = d
        .facts
        .get("inputs")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice);
    // Counted as listed: a path that does not parse is reported on its own
    // and must not make the list look shorter than it is.
    let listed = detail
        .get("bip32_path_list")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    if inputs.len() != listed {
        push(
            v,
            "keysign.path_count_mismatch",
            format!(
                "raw tx has {} inputs but bip32_path_list has {listed} paths: one path per input",
                inputs.len(),
            ),
        );
    }
    let hashes = normalized_msg_hashes(detail);
    for (i, input) in inputs.iter().enumerate() {
        let spends = input
            .get("address")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if let (Some((text, _)), Some(key_addr)) = (paths.get(i), own.get(i))
            && !bitcoin::same_address(key_addr, spends, network)
        {
            push(
                v,
                "keysign.signer_mismatch",
                format!(
                    "input #{i} spends from {spends}, but the key at bip32 path `{}` signs for {key_addr}",
                    shorten(text)
                ),
            );
        }
        let sighash = input
            .get("sighash")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if hashes.get(i).is_some_and(|h| h != sighash) {
            push(
                v,
                "keysign.signer_mismatch",
                format!(
                    "msg_hash_list[{i}] is not the sighash of input #{i} ({sighash}), which path #{i} must sign"
                ),
            );
        }
    }
    match source {
        Some(src) if own.iter().any(|a| bitcoin::same_address(a, src, network)) => {}
        Some(src) => push(
            v,
            "keysign.signer_mismatch",
            format!(
                "the source address {} is not an address of the signing paths' keys",
                shorten(src)
            ),
        ),
        None => push(
            v,
            "keysign.signer_unproven",
            "the description has no source address to bind the signing key to".into(),
        ),
    }
    // A legacy sighash does not commit to the amount spent: with such inputs
    // a lowered `value` would hide fee that no hash reveals.
    if d.facts.get("input_values_committed") != Some(&Value::Bool(true)) {
        push(
            v,
            "keysign.fee_unprovable",
            "legacy (P2PKH) inputs do not commit to their amounts, so the fee cannot be proven; spend them with a segwit or taproot input".into(),
        );
    }
}
