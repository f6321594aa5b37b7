//! The chain and token tables (`data.integrity.chains`, `data.integrity.tokens`)
//! as the decoders and binding checks use them, validated once at load.
//!
//! The tables are policy data the operator reads and edits, not code: every
//! fact that binds the signed bytes to the described chain and token (numeric
//! EVM chain id, BIP-44 coin type, native coin, pinned contract or mint,
//! decimals) comes from here. A malformed entry is refused with its key and
//! the reason, so a typo can never silently unbind a chain.

use std::collections::BTreeMap;

use alloy_dyn_abi::Specifier;
use alloy_json_abi::Function;
use serde_json::Value;

/// A chain family this crate can decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Evm,
    Tron,
    Solana,
    Bitcoin,
}

impl Family {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "evm" => Some(Self::Evm),
            "tron" => Some(Self::Tron),
            "solana" => Some(Self::Solana),
            "bitcoin" => Some(Self::Bitcoin),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Evm => "evm",
            Self::Tron => "tron",
            Self::Solana => "solana",
            Self::Bitcoin => "bitcoin",
        }
    }
}

/// One row of `data.integrity.chains`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainInfo {
    pub family: Family,
    /// EVM: the chain id the raw transaction must carry.
    pub evm_chain_id: Option<u64>,
    /// Bitcoin: which address encoding (mainnet or testnet) applies.
    pub btc_testnet: bool,
    /// Token id of the native coin; always a row of `tokens` on this chain.
    pub native_token: String,
    /// BIP-44 coin type every signing path must carry.
    pub coin_type: u32,
    /// Decimals of the native coin, copied from its token row, to state
    /// fees in whole units.
    pub native_decimals: u32,
}

impl ChainInfo {
    /// The address encoding of a Bitcoin chain.
    pub fn btc_network(&self) -> bitcoin::Network {
        if self.btc_testnet {
            bitcoin::Network::Testnet
        } else {
            bitcoin::Network::Bitcoin
        }
    }
}

/// What a token row says the signed bytes must move.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenAsset {
    Native,
    /// Contract (EVM lower-case hex, TRON base58) or SPL mint (base58).
    Pinned(String),
}

/// One row of `data.integrity.tokens`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    pub chain: String,
    pub decimals: u32,
    pub asset: TokenAsset,
}

/// Chain metadata the decoders need, read from policy data at load.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeriveConfig {
    /// Cobo chain id (`ETH`, `TRON`, `SOL`, `BTC`, ...) to its row.
    pub chains: BTreeMap<String, ChainInfo>,
    /// Cobo token id (`ETH`, `ETH_USDT`, ...) to its row.
    pub tokens: BTreeMap<String, TokenInfo>,
    /// `integrity.contracts`: the pinned ABIs contract calls are decoded with.
    pub contracts: Contracts,
}

impl DeriveConfig {
    /// Reads the `integrity` data section. An absent section or table gives
    /// an empty config (every raw transaction then fails to decode: fail
    /// closed); a present but malformed one is an error naming the key.
    pub fn from_integrity(section: Option<&Value>) -> Result<Self, String> {
        let Some(section) = section else {
            return Ok(Self::default());
        };
        let mut cfg = Self::default();
        if let Some(tokens) = table(section, "tokens")? {
            for (id, row) in tokens {
                let t = token_row(row).map_err(|e| format!("integrity.tokens.{id}: {e}"))?;
                cfg.tokens.insert(id.clone(), t);
            }
        }
        if let Some(chains) = table(section, "chains")? {
            for (id, row) in chains {
                let c = chain_row(id, row, &cfg.tokens)
                    .map_err(|e| format!("integrity.chains.{id}: {e}"))?;
                cfg.chains.insert(id.clone(), c);
            }
        }
        for (id, t) in &cfg.tokens {
            let Some(chain) = cfg.chains.get(&t.chain) else {
                return Err(format!(
                    "integrity.tokens.{id}: chain `{}` is not in integrity.chains",
                    t.chain
                ));
            };
            if let TokenAsset::Pinned(p) = &t.asset {
                check_address(chain, p)
                    .map_err(|e| format!("integrity.tokens.{id}: contract or mint {e}"))?;
            }
        }
        cfg.refuse_aliases()?;
        cfg.contracts = Contracts::from_data(section.get("contracts"), &cfg.chains)?;
        Ok(cfg)
    }

    /// Two token ids for one asset would let a transfer described under
    /// the second id escape every cap and limit keyed by the first.
    fn refuse_aliases(&self) -> Result<(), String> {
        let mut seen: BTreeMap<(&str, String), &str> = BTreeMap::new();
        for (id, t) in &self.tokens {
            let asset = match &t.asset {
                TokenAsset::Native => "native".to_owned(),
                // EVM contracts compare case-insensitively on chain.
                TokenAsset::Pinned(p) => p.to_ascii_lowercase(),
            };
            if let Some(first) = seen.insert((t.chain.as_str(), asset.clone()), id) {
                return Err(format!(
                    "integrity.tokens.{id}: moves the same asset on chain `{}` as `{first}` ({asset}); one asset has one token id, or limits keyed by one id would not see the other",
                    t.chain
                ));
            }
        }
        Ok(())
    }

    /// Checks every address the policy data lists for a chain
    /// (`keysign.allowed_destinations`, `keysign.treasury_addresses`,
    /// `keysign.allowed_calls`, and per token `keysign.approval_spenders`):
    /// valid for the chain's family and network and written in its
    /// canonical form, since the rules compare addresses as text. Chains
    /// without a row in `integrity.chains` are not checked (they have no
    /// decoder to say what an address is).
    pub fn check_listed_addresses(&self, keysign: Option<&Value>) -> Result<(), String> {
        let Some(keysign) = keysign.and_then(Value::as_object) else {
            return Ok(());
        };
        for table in [
            "allowed_destinations",
            "treasury_addresses",
            "allowed_calls",
        ] {
            let Some(chains) = keysign.get(table).and_then(Value::as_object) else {
                continue;
            };
            for (chain_id, addresses) in chains {
                let (Some(chain), Some(addresses)) =
                    (self.chains.get(chain_id), addresses.as_object())
                else {
                    continue;
                };
                for address in addresses.keys() {
                    check_address(chain, address).map_err(|e| {
                        format!("keysign.{table}.{chain_id}: address `{address}` {e}")
                    })?;
                }
            }
        }
        // Spenders are listed per token; the token's row names the chain.
        if let Some(tokens) = keysign.get("approval_spenders").and_then(Value::as_object) {
            for (token_id, spenders) in tokens {
                let chain = self
                    .tokens
                    .get(token_id)
                    .and_then(|t| self.chains.get(&t.chain));
                let (Some(chain), Some(spenders)) = (chain, spenders.as_object()) else {
                    continue;
                };
                for address in spenders.keys() {
                    check_address(chain, address).map_err(|e| {
                        format!("keysign.approval_spenders.{token_id}: address `{address}` {e}")
                    })?;
                }
            }
        }
        Ok(())
    }
}

/// Whether `text` is an address of `chain` in its canonical spelling; the
/// error completes "address `x` ...".
pub fn check_address(chain: &ChainInfo, text: &str) -> Result<(), String> {
    match chain.family {
        Family::Evm => {
            let hex = text.strip_prefix("0x").unwrap_or_default();
            if hex.len() != 40 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
                return Err("is not 0x and 40 lower-case hex digits".into());
            }
        }
        Family::Tron => {
            let ok = bitcoin::base58::decode_check(text)
                .is_ok_and(|b| b.len() == 21 && b.first() == Some(&0x41));
            if !ok {
                return Err("is not a TRON address (base58check of 0x41 and 20 bytes)".into());
            }
        }
        Family::Solana => {
            let ok = bs58::decode(text)
                .into_vec()
                .is_ok_and(|b| b.len() == 32 && bs58::encode(&b).into_string() == text);
            if !ok {
                return Err("is not a Solana address (base58 of 32 bytes)".into());
            }
        }
        Family::Bitcoin => {
            let network = chain.btc_network();
            let parsed = text
                .parse::<bitcoin::Address<bitcoin::address::NetworkUnchecked>>()
                .map_err(|e| format!("is not a Bitcoin address: {e}"))?
                .require_network(network)
                .map_err(|_| format!("is not an address of {network}"))?;
            let canonical = parsed.to_string();
            if canonical != text {
                return Err(format!("must be written `{canonical}`"));
            }
        }
    }
    Ok(())
}

fn table<'a>(
    section: &'a Value,
    key: &str,
) -> Result<Option<&'a serde_json::Map<String, Value>>, String> {
    match section.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) => Ok(Some(m)),
        Some(_) => Err(format!("integrity.{key}: must be a map")),
    }
}

fn field<'a>(row: &'a Value, key: &str) -> Option<&'a Value> {
    row.get(key).filter(|v| !v.is_null())
}

fn u32_field(row: &Value, key: &str) -> Result<u32, String> {
    let v = field(row, key).ok_or_else(|| format!("`{key}` is missing"))?;
    v.as_u64()
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| format!("`{key}` must be a non-negative integer, not {v}"))
}

fn str_field<'a>(row: &'a Value, key: &str) -> Result<&'a str, String> {
    let v = field(row, key).ok_or_else(|| format!("`{key}` is missing"))?;
    v.as_str()
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| format!("`{key}` must be a non-empty string, not {v}"))
}

const TOKEN_KEYS: &[&str] = &["chain", "decimals", "native", "contract", "mint"];
const CHAIN_KEYS: &[&str] = &[
    "family",
    "evm_chain_id",
    "network",
    "native_token",
    "coin_type",
    "max_fee",
];

fn known_keys(row: &Value, keys: &[&str]) -> Result<(), String> {
    let obj = row.as_object().ok_or("must be a map")?;
    match obj.keys().find(|k| !keys.contains(&k.as_str())) {
        Some(k) => Err(format!("unknown key `{k}` (known: {})", keys.join(", "))),
        None => Ok(()),
    }
}

fn token_row(row: &Value) -> Result<TokenInfo, String> {
    known_keys(row, TOKEN_KEYS)?;
    let chain = str_field(row, "chain")?.to_owned();
    let decimals = u32_field(row, "decimals")?;
    if decimals > 77 {
        return Err(format!("`decimals` {decimals} is more than any chain uses"));
    }
    let native = match field(row, "native") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(v) => return Err(format!("`native` must be true or false, not {v}")),
    };
    let pinned = match (field(row, "contract"), field(row, "mint")) {
        (Some(_), Some(_)) => return Err("give `contract` or `mint`, not both".into()),
        (Some(_), None) => Some(str_field(row, "contract")?),
        (None, Some(_)) => Some(str_field(row, "mint")?),
        (None, None) => None,
    };
    let asset = match (native, pinned) {
        (true, None) => TokenAsset::Native,
        (false, Some(p)) => TokenAsset::Pinned(p.to_owned()),
        (true, Some(_)) => return Err("a native token pins no contract or mint".into()),
        // Fail closed at load: an unpinned token would let any contract
        // call pass for it.
        (false, None) => {
            return Err("pins no contract or mint and is not `native: true`".into());
        }
    };
    Ok(TokenInfo {
        chain,
        decimals,
        asset,
    })
}

fn chain_row(
    id: &str,
    row: &Value,
    tokens: &BTreeMap<String, TokenInfo>,
) -> Result<ChainInfo, String> {
    known_keys(row, CHAIN_KEYS)?;
    let family_text = str_field(row, "family")?;
    let family = Family::parse(family_text).ok_or_else(|| {
        format!("unknown family `{family_text}` (known: evm, tron, solana, bitcoin)")
    })?;
    let evm_chain_id = match (family, field(row, "evm_chain_id")) {
        (Family::Evm, Some(v)) => match v.as_u64() {
            Some(n) if n > 0 => Some(n),
            _ => {
                return Err(format!(
                    "`evm_chain_id` must be a positive integer, not {v}"
                ));
            }
        },
        (Family::Evm, None) => return Err("an evm chain needs `evm_chain_id`".into()),
        (_, Some(_)) => return Err("`evm_chain_id` applies to evm chains only".into()),
        (_, None) => None,
    };
    let btc_testnet = match (family, field(row, "network")) {
        (Family::Bitcoin, Some(v)) => match v.as_str() {
            Some("bitcoin") => false,
            Some("testnet") => true,
            _ => return Err(format!("`network` must be bitcoin or testnet, not {v}")),
        },
        (Family::Bitcoin, None) => return Err("a bitcoin chain needs `network`".into()),
        (_, Some(_)) => return Err("`network` applies to bitcoin chains only".into()),
        (_, None) => false,
    };
    let native_token = str_field(row, "native_token")?.to_owned();
    let native = tokens
        .get(&native_token)
        .ok_or_else(|| format!("native token `{native_token}` is not in integrity.tokens"))?;
    if native.chain != id || native.asset != TokenAsset::Native {
        return Err(format!(
            "native token `{native_token}` must be a `native: true` token of chain `{id}`"
        ));
    }
    let coin_type = u32_field(row, "coin_type")?;
    if coin_type >= 1 << 31 {
        return Err(format!("`coin_type` {coin_type} is not a BIP-44 coin type"));
    }
    // The cap itself is compared in Rego; here it only has to exist, so
    // that no chain is left without a fee bound by omission.
    let max_fee = str_field(row, "max_fee")?;
    if super::to_base_units(max_fee, native.decimals).is_err() {
        return Err(format!(
            "`max_fee` `{max_fee}` is not a decimal string with at most {} decimals",
            native.decimals
        ));
    }
    Ok(ChainInfo {
        family,
        evm_chain_id,
        btc_testnet,
        native_token,
        coin_type,
        native_decimals: native.decimals,
    })
}

/// One pinned function of a contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinnedFunction {
    /// The function as parsed from the data (names and types).
    pub function: Function,
    /// Canonical signature, `approve(address,uint256)`.
    pub signature: String,
    pub selector: [u8; 4],
}

/// One row of `data.integrity.contracts.<chain>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContractInfo {
    pub name: String,
    pub functions: Vec<PinnedFunction>,
}

/// `data.integrity.contracts`: Cobo chain id -> canonical address -> row.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Contracts {
    pub by_chain: BTreeMap<String, BTreeMap<String, ContractInfo>>,
}

const CONTRACT_KEYS: &[&str] = &["name", "functions"];

impl Contracts {
    /// Reads and validates `integrity.contracts` against the chain table.
    /// An absent table is empty (every call is then to an unknown contract:
    /// fail closed); a malformed one is an error naming chain, address and
    /// the reason, as `integrity.contracts.<chain>: contract `<address>`: ...`.
    pub fn from_data(
        section: Option<&Value>,
        chains: &BTreeMap<String, ChainInfo>,
    ) -> Result<Self, String> {
        let mut out = Self::default();
        let table = match section {
            None | Some(Value::Null) => return Ok(out),
            Some(Value::Object(m)) => m,
            Some(_) => return Err("integrity.contracts: must be a map of chain ids".into()),
        };
        for (chain_id, rows) in table {
            let at = format!("integrity.contracts.{chain_id}");
            let Some(chain) = chains.get(chain_id) else {
                return Err(format!(
                    "{at}: chain `{chain_id}` is not in integrity.chains"
                ));
            };
            if !matches!(chain.family, Family::Evm | Family::Tron) {
                return Err(format!(
                    "{at}: chain `{chain_id}` is a {} chain; contracts are decoded on evm and tron chains only",
                    chain.family.name()
                ));
            }
            let Some(rows) = rows.as_object() else {
                return Err(format!("{at}: must be a map of contract addresses"));
            };
            let mut contracts = BTreeMap::new();
            for (address, row) in rows {
                check_address(chain, address)
                    .map_err(|e| format!("{at}: contract `{address}` {e}"))?;
                let info =
                    contract_row(row).map_err(|e| format!("{at}: contract `{address}`: {e}"))?;
                // Canonical spelling is enforced above, so one contract has
                // one key; a repeated key is refused by the data parser.
                if contracts.insert(address.clone(), info).is_some() {
                    return Err(format!("{at}: contract `{address}` is listed twice"));
                }
            }
            out.by_chain.insert(chain_id.clone(), contracts);
        }
        Ok(out)
    }

    /// Whether `address` (as the family prints it) is a pinned contract.
    pub fn is_pinned(&self, chain_id: &str, address: &str) -> bool {
        self.get(chain_id, address).is_some()
    }

    pub(crate) fn get(&self, chain_id: &str, address: &str) -> Option<&ContractInfo> {
        self.by_chain.get(chain_id)?.get(address)
    }
}

fn contract_row(row: &Value) -> Result<ContractInfo, String> {
    let obj = row
        .as_object()
        .ok_or("must be a map with `name` and `functions`")?;
    if let Some(k) = obj.keys().find(|k| !CONTRACT_KEYS.contains(&k.as_str())) {
        return Err(format!(
            "unknown key `{k}` (known: {})",
            CONTRACT_KEYS.join(", ")
        ));
    }
    let name = obj
        .get("name")
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
        .ok_or("`name` must be a non-empty string")?
        .to_owned();
    let list = obj
        .get("functions")
        .and_then(Value::as_array)
        .filter(|l| !l.is_empty())
        .ok_or("`functions` must be a non-empty list of Solidity signatures")?;
    let mut functions: Vec<PinnedFunction> = Vec::new();
    for entry in list {
        let text = entry
            .as_str()
            .ok_or_else(|| format!("function {entry} is not a string"))?;
        let f = pinned_function(text).map_err(|e| format!("function `{text}`: {e}"))?;
        if let Some(other) = functions
            .iter()
            .find(|g| g.function.name == f.function.name || g.selector == f.selector)
        {
            return Err(format!(
                "function `{text}`: `{}` is pinned already (`{}`); one function per name and selector, so a policy naming it means one thing",
                other.function.name, other.signature
            ));
        }
        functions.push(f);
    }
    Ok(ContractInfo { name, functions })
}

/// Parses `function name(type name, ...)`: every parameter type must be a
/// real ABI type and every top-level parameter named (the facts key the
/// arguments by name), each name once.
fn pinned_function(text: &str) -> Result<PinnedFunction, String> {
    if !text.trim_start().starts_with("function ") {
        return Err("must start with `function `".into());
    }
    let function = Function::parse(text).map_err(|e| {
        format!(
            "is not a Solidity function signature ({})",
            e.to_string().lines().next().unwrap_or_default()
        )
    })?;
    let mut names: Vec<&str> = Vec::new();
    for p in &function.inputs {
        p.resolve()
            .map_err(|e| format!("parameter type `{}` is not an ABI type ({e})", p.ty))?;
        if p.name.is_empty() {
            return Err(format!(
                "parameter of type `{}` has no name (the facts key arguments by name)",
                p.ty
            ));
        }
        if names.contains(&p.name.as_str()) {
            return Err(format!("parameter name `{}` is used twice", p.name));
        }
        names.push(&p.name);
    }
    Ok(PinnedFunction {
        signature: function.signature(),
        selector: function.selector().0,
        function,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn good() -> Value {
        json!({
            "chains": {
                "ETH": {"family": "evm", "evm_chain_id": 1, "native_token": "ETH", "coin_type": 60, "max_fee": "0.05"},
                "BTC": {"family": "bitcoin", "network": "bitcoin", "native_token": "BTC", "coin_type": 0, "max_fee": "0.01"}
            },
            "tokens": {
                "ETH": {"chain": "ETH", "decimals": 18, "native": true},
                "ETH_USDT": {"chain": "ETH", "decimals": 6, "contract": "0xdac17f958d2ee523a2206206994597c13d831ec7"},
                "BTC": {"chain": "BTC", "decimals": 8, "native": true}
            }
        })
    }

    #[test]
    fn reads_the_tables() {
        let cfg = DeriveConfig::from_integrity(Some(&good())).unwrap();
        assert_eq!(cfg.chains["ETH"].evm_chain_id, Some(1));
        assert_eq!(cfg.chains["ETH"].native_decimals, 18);
        assert!(!cfg.chains["BTC"].btc_testnet);
        assert_eq!(
            cfg.tokens["ETH_USDT"].asset,
            TokenAsset::Pinned("0xdac17f958d2ee523a2206206994597c13d831ec7".into())
        );
        assert_eq!(
            DeriveConfig::from_integrity(None).unwrap(),
            DeriveConfig::default()
        );
    }

    #[test]
    fn refuses_what_would_unbind_a_chain_naming_the_key() {
        let cases: &[(&str, Value, &str)] = &[
            (
                "/chains/ETH/evm_chain_id",
                json!(0),
                "integrity.chains.ETH: `evm_chain_id`",
            ),
            (
                "/chains/ETH/evm_chain_id",
                json!(null),
                "needs `evm_chain_id`",
            ),
            ("/chains/ETH/family", json!("evmm"), "unknown family `evmm`"),
            (
                "/chains/ETH/max_fee",
                json!(0.05),
                "`max_fee` must be a non-empty string",
            ),
            ("/chains/ETH/max_fee", json!("1e3"), "`max_fee` `1e3`"),
            (
                "/chains/ETH/native_token",
                json!("ETH_USDT"),
                "must be a `native: true` token",
            ),
            ("/chains/BTC/network", json!("regtest"), "`network` must be"),
            ("/chains/ETH/coin_typ", json!(60), "unknown key `coin_typ`"),
            (
                "/tokens/ETH_USDT/contract",
                json!(null),
                "integrity.tokens.ETH_USDT: pins no contract",
            ),
            (
                "/tokens/ETH_USDT/chain",
                json!("BSC_BNB"),
                "chain `BSC_BNB` is not in integrity.chains",
            ),
            (
                "/tokens/ETH_USDT/decimals",
                json!("6"),
                "`decimals` must be",
            ),
            (
                "/tokens/ETH/contract",
                json!("0xdead"),
                "a native token pins",
            ),
        ];
        for (ptr, v, want) in cases {
            let mut doc = good();
            let (parent, key) = ptr.rsplit_once('/').unwrap();
            let obj = doc.pointer_mut(parent).unwrap().as_object_mut().unwrap();
            obj.insert(key.into(), v.clone());
            let err = DeriveConfig::from_integrity(Some(&doc)).unwrap_err();
            assert!(err.contains(want), "{ptr} = {v}: `{err}` lacks `{want}`");
        }
    }

    #[test]
    fn refuses_two_ids_for_one_asset() {
        for (id, row, first) in [
            (
                "ETH_USDT2",
                json!({"chain": "ETH", "decimals": 6, "contract": "0xdac17f958d2ee523a2206206994597c13d831ec7"}),
                "ETH_USDT",
            ),
            (
                "ETH2",
                json!({"chain": "ETH", "decimals": 18, "native": true}),
                "ETH",
            ),
        ] {
            let mut v = good();
            v["tokens"][id] = row;
            let e = DeriveConfig::from_integrity(Some(&v)).unwrap_err();
            assert!(
                e.contains("moves the same asset") && e.contains(&format!("`{first}`")),
                "{e}"
            );
        }
        // The same contract on two chains is two assets.
        let mut v = good();
        v["chains"]["BSC"] = json!({"family": "evm", "evm_chain_id": 56, "native_token": "BNB", "coin_type": 60, "max_fee": "0.05"});
        v["tokens"]["BNB"] = json!({"chain": "BSC", "decimals": 18, "native": true});
        v["tokens"]["BSC_USDT"] = json!({"chain": "BSC", "decimals": 6, "contract": "0xdac17f958d2ee523a2206206994597c13d831ec7"});
        DeriveConfig::from_integrity(Some(&v)).unwrap();
    }

    #[test]
    fn refuses_a_pinned_contract_that_is_no_address_of_its_chain() {
        let mut v = good();
        v["tokens"]["ETH_USDT"]["contract"] = json!("0xDAC17F958D2EE523A2206206994597C13D831EC7");
        let e = DeriveConfig::from_integrity(Some(&v)).unwrap_err();
        assert!(
            e.starts_with("integrity.tokens.ETH_USDT: contract or mint"),
            "{e}"
        );
    }

    #[test]
    fn listed_addresses_must_be_canonical_addresses_of_their_chain() {
        let mut v = good();
        v["chains"]["TRON"] =
            json!({"family": "tron", "native_token": "TRON", "coin_type": 195, "max_fee": "1"});
        v["tokens"]["TRON"] = json!({"chain": "TRON", "decimals": 6, "native": true});
        v["chains"]["SOL"] =
            json!({"family": "solana", "native_token": "SOL", "coin_type": 501, "max_fee": "1"});
        v["tokens"]["SOL"] = json!({"chain": "SOL", "decimals": 9, "native": true});
        let cfg = DeriveConfig::from_integrity(Some(&v)).unwrap();
        let listed = |chain: &str, a: &str| {
            cfg.check_listed_addresses(Some(&json!({"allowed_destinations": {chain: {a: true}}})))
        };
        for (chain, good) in [
            ("BTC", "bc1qxy2kgdygjrsqtzq2n0yrf2493p83kkfjhx0wlh"),
            ("BTC", "3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLy"),
            ("ETH", "0x4bbeeb066ed09b7aed07bf39eee0460dfa261520"),
            ("TRON", "TXYZopYRdj2D9XRtbG411XZZ3kM5VkAeBf"),
            ("SOL", "5omQJtDUHA3gMFdHEQg1zZSvcBUVzEEBLxN3L8vUQANy"),
            ("UNVERIFIED", "anything"),
        ] {
            listed(chain, good).unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        for (chain, bad, why) in [
            (
                "BTC",
                "bc1q9h7garjunbfqzq6ssrnwrcu4ejqdqzvyhfn9ja",
                "is not a Bitcoin address",
            ),
            (
                "BTC",
                "BC1QXY2KGDYGJRSQTZQ2N0YRF2493P83KKFJHX0WLH",
                "must be written `bc1qxy2kgdygjrsqtzq2n0yrf2493p83kkfjhx0wlh`",
            ),
            (
                "BTC",
                "tb1qw508d6qejxtdg4y5r3zarvary0c5xw7kxpjzsx",
                "is not an address of bitcoin",
            ),
            (
                "BTC",
                "3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLz",
                "is not a Bitcoin address",
            ),
            (
                "ETH",
                "0x4BBEEB066ED09B7AED07BF39EEE0460DFA261520",
                "lower-case hex",
            ),
            (
                "ETH",
                "0x4bbeeb066ed09b7aed07bf39eee0460dfa26152",
                "lower-case hex",
            ),
            (
                "TRON",
                "TXYZopYRdj2D9XRtbG411XZZ3kM5VkAeBg",
                "is not a TRON address",
            ),
            (
                "TRON",
                "1BoatSLRHtKNngkdXEeobR76b53LETtpyT",
                "is not a TRON address",
            ),
            (
                "SOL",
                "5omQJtDUHA3gMFdHEQg1zZSvcBUVzEEBLxN3L8vUQ",
                "is not a Solana address",
            ),
            (
                "SOL",
                "0omQJtDUHA3gMFdHEQg1zZSvcBUVzEEBLxN3L8vUQANy",
                "is not a Solana address",
            ),
        ] {
            let e = listed(chain, bad).expect_err(bad);
            assert!(
                e.starts_with(&format!(
                    "keysign.allowed_destinations.{chain}: address `{bad}`"
                )) && e.contains(why),
                "{bad}: {e}"
            );
        }
        let e = cfg
            .check_listed_addresses(Some(
                &json!({"treasury_addresses": {"ETH": {"0xABC": true}}}),
            ))
            .unwrap_err();
        assert!(e.starts_with("keysign.treasury_addresses.ETH"), "{e}");
    }
}
