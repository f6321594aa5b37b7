//! Which addresses a KEYSIGN's key signs for.
//!
//! A KEYSIGN names the key it signs with by `request_detail.root_pub_key`
//! (a BIP32 extended public key) and one `bip32_path_list` entry per hash.
//! This module owns parsing those two fields, BIP32 public (non-hardened)
//! derivation along each path, and the address each child key controls on
//! EVM, TRON and Bitcoin, so a policy can compare "who signs" with the
//! wallet it expects.
//!
//! Everything here is attacker input: parsing is strict (one spelling per
//! path, only `xpub`/`tpub` roots), errors name the offending input
//! truncated and escaped, and a private key is never echoed.
//!
//! What this does NOT prove: that `root_pub_key` is the organisation's key.
//! Derivation from a root the attacker chose proves nothing, so a policy
//! must pin `root_pub_key` to configured values before trusting these
//! addresses.
//!
//! Decisions:
//! - Roots must be master keys (depth 0, zero parent fingerprint, child
//!   number 0): paths are written `m/...`, and `purpose`/`coin_type` only
//!   mean what BIP44 says when counted from the master.
//! - SLIP-132 versions (`ypub`, `zpub`, ...) are refused, not mapped: the
//!   address type comes from the path's purpose, and a version claiming
//!   another script type would be a second, possibly contradicting, source
//!   of truth. Cobo's MPC root is one key for every chain, sent as `xpub`.
//! - The root's version (`xpub`/`tpub`) never changes derivation or the
//!   address network; Bitcoin's network is the caller's (from trusted chain
//!   configuration). The path's `coin_type` is reported, not enforced, so
//!   policy decides whether e.g. coin type 1 on mainnet is acceptable.
//! - An empty path list is an error: a policy checking "every signer is
//!   allowed" over an empty list would pass vacuously.

use std::collections::HashMap;
use std::fmt;
use std::sync::{LazyLock, Mutex};

use alloy_primitives::{Address as EvmAddress, keccak256};
use bitcoin::bip32::{ChildNumber, Xpub};
use bitcoin::secp256k1::{PublicKey, Secp256k1, VerifyOnly, XOnlyPublicKey};
use bitcoin::{Address, CompressedPublicKey, Network};
#[cfg(test)]
use serde::Serialize;

use super::hex0x;

/// Verification-only context: public derivation and the taproot tweak need
/// no signing tables, and building it once avoids an allocation per request.
static SECP: LazyLock<Secp256k1<VerifyOnly>> = LazyLock::new(Secp256k1::verification_only);

/// Levels below `m`: purpose and coin type at least (BIP44 has 5).
const MIN_LEVELS: usize = 2;
/// Bounds derivation work per path; no scheme in use goes deeper.
const MAX_LEVELS: usize = 10;
/// Paths per request; each costs up to `MAX_LEVELS` EC operations, so this
/// bounds the CPU one request can spend here.
pub(crate) const MAX_PATHS: usize = 1024;
/// An `xpub` is 111 characters; refusing longer input early keeps the
/// quadratic base58 decoder away from large attacker strings.
const MAX_ROOT_CHARS: usize = 120;
/// How much attacker input an error message shows.
const MAX_SHOWN: usize = 80;

/// Extended key version bytes (BIP32, SLIP-132).
const XPUB: [u8; 4] = [0x04, 0x88, 0xb2, 0x1e];
const TPUB: [u8; 4] = [0x04, 0x35, 0x87, 0xcf];
const SLIP132_PUBLIC: [([u8; 4], &str); 8] = [
    ([0x04, 0x9d, 0x7c, 0xb2], "ypub"),
    ([0x04, 0xb2, 0x47, 0x46], "zpub"),
    ([0x02, 0x95, 0xb4, 0x3f], "Ypub"),
    ([0x02, 0xaa, 0x7e, 0xd3], "Zpub"),
    ([0x04, 0x4a, 0x52, 0x62], "upub"),
    ([0x04, 0x5f, 0x1c, 0xf6], "vpub"),
    ([0x02, 0x42, 0x89, 0xef], "Upub"),
    ([0x02, 0x57, 0x54, 0x83], "Vpub"),
];
const PRIVATE: [[u8; 4]; 10] = [
    [0x04, 0x88, 0xad, 0xe4], // xprv
    [0x04, 0x35, 0x83, 0x94], // tprv
    [0x04, 0x9d, 0x78, 0x78], // yprv
    [0x04, 0xb2, 0x43, 0x0c], // zprv
    [0x02, 0x95, 0xb0, 0x05], // Yprv
    [0x02, 0xaa, 0x7a, 0x99], // Zprv
    [0x04, 0x4a, 0x4e, 0x28], // uprv
    [0x04, 0x5f, 0x18, 0xbc], // vprv
    [0x02, 0x42, 0x85, 0xb5], // Uprv
    [0x02, 0x57, 0x50, 0x48], // Vprv
];

/// A parsed `bip32_path_list` entry: only non-hardened indices, 2 to 10
/// levels. Fields are private so purpose and coin type cannot drift from the
/// indices actually derived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Path {
    children: Vec<ChildNumber>,
}

impl Path {
    /// First level (BIP43 purpose: 44, 49, 84, 86, ...).
    pub(crate) fn purpose(&self) -> u32 {
        self.children.first().map_or(0, |c| u32::from(*c))
    }

    /// Second level (SLIP-44 coin type: 0 BTC, 1 testnet, 60 ETH, 195 TRON).
    pub(crate) fn coin_type(&self) -> u32 {
        self.children.get(1).map_or(0, |c| u32::from(*c))
    }

    /// The indices below `m`.
    pub(crate) fn children(&self) -> &[ChildNumber] {
        &self.children
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("m")?;
        for c in &self.children {
            write!(f, "/{}", u32::from(*c))?;
        }
        Ok(())
    }
}

/// One signing key of a KEYSIGN (the vector tests' view; `binding.rs`
/// derives path by path to report each failure on its own).
#[cfg(test)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct SignerKey {
    /// The path, canonical (equal to the accepted input).
    pub path: String,
    pub purpose: u32,
    pub coin_type: u32,
    /// Compressed SEC1 public key, lowercase hex without `0x` (the usual
    /// spelling for secp256k1 public keys).
    pub pubkey: String,
    /// The address this key controls in the requested family.
    pub address: String,
}

/// Attacker input for an error message: at most [`MAX_SHOWN`] characters,
/// with anything but printable ASCII (and the backtick that quotes it)
/// escaped, so messages cannot carry control or bidi characters into logs.
fn show(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars().take(MAX_SHOWN) {
        if (c.is_ascii_graphic() || c == ' ') && c != '`' {
            out.push(c);
        } else {
            out.extend(c.escape_unicode());
        }
    }
    if s.chars().nth(MAX_SHOWN).is_some() {
        out.push('…');
    }
    out
}

/// Parses `m/a/b/...`: decimal indices below 2^31, no leading zeros, no
/// hardened markers, 2 to 10 levels. Each path has exactly one accepted
/// spelling, so policies can compare path strings exactly.
pub(crate) fn parse_path(s: &str) -> Result<Path, String> {
    let bad = |why: &str| format!("bip32 path `{}`: {why}", show(s));
    let Some(rest) = s.strip_prefix("m/") else {
        return Err(bad("must start with `m/`"));
    };
    let mut children = Vec::new();
    for comp in rest.split('/') {
        if children.len() == MAX_LEVELS {
            return Err(bad("more than 10 levels"));
        }
        children.push(parse_index(comp).map_err(bad)?);
    }
    if children.len() < MIN_LEVELS {
        return Err(bad("fewer than 2 levels (purpose and coin type)"));
    }
    Ok(Path { children })
}

fn parse_index(comp: &str) -> Result<ChildNumber, &'static str> {
    if comp.is_empty() {
        return Err("empty component");
    }
    if comp.ends_with(['\'', 'h', 'H']) {
        return Err("hardened index cannot be derived from a public key");
    }
    if !comp.bytes().all(|b| b.is_ascii_digit()) {
        return Err("component is not a decimal index");
    }
    if comp.len() > 1 && comp.starts_with('0') {
        return Err("index has a leading zero");
    }
    const HARDENED_RANGE: &str = "index is 2^31 or more (the hardened range)";
    // Only digits remain, so the one parse error left is u32 overflow.
    let n: u32 = comp.parse().map_err(|_| HARDENED_RANGE)?;
    ChildNumber::from_normal_idx(n).map_err(|_| HARDENED_RANGE)
}

/// Parses a base58check BIP32 master public key with `xpub` or `tpub`
/// version (see the module doc for what else is refused and why). The
/// input is never echoed: it may be a private key.
pub(crate) fn parse_root(s: &str) -> Result<Xpub, String> {
    if s.is_empty() {
        return Err("root_pub_key is empty".to_owned());
    }
    // Before the length limit: an uncompressed hex key is longer than an xpub.
    if is_bare_hex_pubkey(s) {
        return Err("root_pub_key carries no chain code (a bare public key; \
                    child keys need an extended public key)"
            .to_owned());
    }
    if s.chars().count() > MAX_ROOT_CHARS {
        return Err(format!(
            "root_pub_key is {} characters, too long for an extended public key",
            s.chars().count()
        ));
    }
    let data = bitcoin::base58::decode_check(s).map_err(|e| {
        let why = match e {
            bitcoin::base58::Error::IncorrectChecksum(_) => "checksum mismatch",
            bitcoin::base58::Error::Decode(_) => "invalid base58 character",
            _ => "too short",
        };
        format!("root_pub_key is not base58check: {why}")
    })?;
    if data.len() != 78 {
        return Err(format!(
            "root_pub_key decodes to {} bytes, not the 78 of an extended key",
            data.len()
        ));
    }
    let Some((version, body)) = data.split_first_chunk::<4>() else {
        return Err("root_pub_key is not an extended key".to_owned());
    };
    // Key data starts at byte 45; 0x00 there marks a private key whatever
    // the version claims.
    if PRIVATE.contains(version) || body.get(41) == Some(&0) {
        return Err("root_pub_key is an extended private key; refused (not echoed)".to_owned());
    }
    if let Some((_, name)) = SLIP132_PUBLIC.iter().find(|(v, _)| v == version) {
        return Err(format!(
            "root_pub_key has SLIP-132 version `{name}`; only xpub and tpub are accepted \
             (the address type comes from the path purpose)"
        ));
    }
    if *version != XPUB && *version != TPUB {
        return Err(format!(
            "root_pub_key has unknown extended key version {}",
            hex0x(version)
        ));
    }
    let xpub = Xpub::decode(&data)
        .map_err(|_| "root_pub_key's public key is not a valid secp256k1 point".to_owned())?;
    if xpub.depth != 0 {
        return Err(format!(
            "root_pub_key has depth {}, not a master key (paths are written from m)",
            xpub.depth
        ));
    }
    // BIP32 test vector 5: a master key has no parent and no index.
    if xpub.parent_fingerprint != Default::default() || u32::from(xpub.child_number) != 0 {
        return Err("root_pub_key has depth 0 but a parent fingerprint or child number".to_owned());
    }
    Ok(xpub)
}

/// 33-byte compressed or 65-byte uncompressed SEC1 key in hex.
fn is_bare_hex_pubkey(s: &str) -> bool {
    let body = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(s);
    let hex = body.bytes().all(|b| b.is_ascii_hexdigit());
    let lower = body.to_ascii_lowercase();
    hex && ((body.len() == 66 && (lower.starts_with("02") || lower.starts_with("03")))
        || (body.len() == 130 && lower.starts_with("04")))
}

/// Non-hardened public derivation of `path` from `root`.
///
/// Each level costs an EC point multiplication (~20 µs), and a request
/// repeats the same few wallet paths, so derived keys are memoised by
/// (root key, path): the parent of the path too, so a new address index of
/// a known account costs one level. The memo is a pure function of its key
/// (no request can put a wrong entry in it) and is bounded.
pub(crate) fn derive(root: &Xpub, path: &Path) -> Result<PublicKey, String> {
    let children = path.children();
    let root_bytes = root.encode();
    if let Some(x) = memo_get(&root_bytes, children) {
        return Ok(x.public_key);
    }
    let x = match children.split_last() {
        Some((last, parent_path)) => {
            let parent = match memo_get(&root_bytes, parent_path) {
                Some(p) => p,
                None => {
                    let p = derive_xpub(root, parent_path)?;
                    memo_put(&root_bytes, parent_path, p);
                    p
                }
            };
            derive_xpub(&parent, std::slice::from_ref(last))?
        }
        None => *root,
    };
    memo_put(&root_bytes, children, x);
    Ok(x.public_key)
}

/// Derived keys held at most; past it the memo starts over (a few hundred
/// KiB, and real traffic uses far fewer wallet paths).
const MEMO_MAX: usize = 4096;

type MemoKey = ([u8; 78], Vec<ChildNumber>);

static MEMO: LazyLock<Mutex<HashMap<MemoKey, Xpub>>> = LazyLock::new(Mutex::default);

fn memo_get(root: &[u8; 78], children: &[ChildNumber]) -> Option<Xpub> {
    // A poisoned memo only loses its speed-up, never its correctness.
    let memo = MEMO.lock().ok()?;
    memo.get(&(*root, children.to_vec())).copied()
}

fn memo_put(root: &[u8; 78], children: &[ChildNumber], x: Xpub) {
    if let Ok(mut memo) = MEMO.lock() {
        if memo.len() >= MEMO_MAX {
            memo.clear();
        }
        memo.insert((*root, children.to_vec()), x);
    }
}

/// CKDpub along `children`. BIP32's "invalid child, try the next index"
/// (probability below 2^-127) is an error here: the signer's key is then
/// unknown, and unknown fails closed.
fn derive_xpub(root: &Xpub, children: &[ChildNumber]) -> Result<Xpub, String> {
    root.derive_pub(&SECP, &children)
        .map_err(|e| format!("public derivation failed: {e}"))
}

/// EVM address: `0x` + lowercase hex of the last 20 bytes of
/// keccak256(uncompressed key without its 0x04 prefix).
pub(crate) fn evm_address(pk: &PublicKey) -> String {
    hex0x(evm_bytes(pk).as_slice())
}

fn evm_bytes(pk: &PublicKey) -> EvmAddress {
    let [_, xy @ ..] = pk.serialize_uncompressed();
    EvmAddress::from_word(keccak256(xy))
}

/// TRON address: base58check of 0x41 || the EVM address bytes.
pub(crate) fn tron_address(pk: &PublicKey) -> String {
    let mut b21 = vec![0x41];
    b21.extend_from_slice(evm_bytes(pk).as_slice());
    bitcoin::base58::encode_check(&b21)
}

/// Bitcoin address for BIP44 (P2PKH), BIP49 (P2SH-P2WPKH), BIP84 (P2WPKH)
/// or BIP86 (P2TR key path, no script tree) purposes.
pub(crate) fn btc_address(
    pk: &PublicKey,
    purpose: u32,
    network: Network,
) -> Result<String, String> {
    let cpk = CompressedPublicKey(*pk);
    let addr = match purpose {
        44 => Address::p2pkh(cpk, network),
        49 => Address::p2shwpkh(&cpk, network),
        84 => Address::p2wpkh(&cpk, network),
        86 => Address::p2tr(&SECP, XOnlyPublicKey::from(*pk), None, network),
        other => {
            return Err(format!(
                "purpose {other} has no Bitcoin address type (44, 49, 84 or 86)"
            ));
        }
    };
    Ok(addr.to_string())
}

/// Address family of [`signer_addresses`].
#[cfg(test)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Evm,
    Tron,
    Bitcoin(Network),
}

/// Derives every path of `paths` from `root` and the address each key
/// controls in `family` (`evm`, `tron` or `bitcoin`; Bitcoin needs
/// `network`, which the others ignore). Any bad path fails the whole list:
/// a signer we cannot name is not one a policy can allow.
#[cfg(test)]
pub(crate) fn signer_addresses(
    root: &str,
    paths: &[&str],
    family: &str,
    network: Option<Network>,
) -> Result<Vec<SignerKey>, String> {
    let family = match (family, network) {
        ("evm", _) => Family::Evm,
        ("tron", _) => Family::Tron,
        ("bitcoin", Some(n)) => Family::Bitcoin(n),
        ("bitcoin", None) => return Err("bitcoin addresses need a network".to_owned()),
        (other, _) => return Err(format!("unknown signer family `{}`", show(other))),
    };
    if paths.is_empty() {
        return Err("bip32_path_list is empty".to_owned());
    }
    if paths.len() > MAX_PATHS {
        return Err(format!(
            "bip32_path_list has {} entries, more than {MAX_PATHS}",
            paths.len()
        ));
    }
    let root = parse_root(root)?;
    paths
        .iter()
        .map(|p| {
            let path = parse_path(p)?;
            let pk = derive(&root, &path)?;
            let address = match family {
                Family::Evm => evm_address(&pk),
                Family::Tron => tron_address(&pk),
                Family::Bitcoin(n) => btc_address(&pk, path.purpose(), n)?,
            };
            Ok(SignerKey {
                path: path.to_string(),
                purpose: path.purpose(),
                coin_type: path.coin_type(),
                pubkey: alloy_primitives::hex::encode(pk.serialize()),
                address,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    const V1_MASTER: &str = "xpub661MyMwAqRbcFtXgS5sYJABqqG9YLmC4Q1Rdap9gSE8NqtwybGhePY2gZ29ESFjqJoCu1Rupje8YtGqsefD265TMg7usUDFdp6W1EGMcet8";

    fn normal(i: u32) -> ChildNumber {
        ChildNumber::from_normal_idx(i).unwrap()
    }

    /// BIP32 test vectors: the steps that are non-hardened, so reproducible
    /// from the parent's xpub alone. (parent xpub, children, child xpub).
    #[test]
    fn bip32_vectors_public_steps() {
        let steps: &[(&str, &[u32], &str)] = &[
            // Vector 1: m/0H -> m/0H/1.
            (
                "xpub68Gmy5EdvgibQVfPdqkBBCHxA5htiqg55crXYuXoQRKfDBFA1WEjWgP6LHhwBZeNK1VTsfTFUHCdrfp1bgwQ9xv5ski8PX9rL2dZXvgGDnw",
                &[1],
                "xpub6ASuArnXKPbfEwhqN6e3mwBcDTgzisQN1wXN9BJcM47sSikHjJf3UFHKkNAWbWMiGj7Wf5uMash7SyYq527Hqck2AxYysAA7xmALppuCkwQ",
            ),
            // Vector 1: m/0H/1/2H -> m/0H/1/2H/2/1000000000 (two levels).
            (
                "xpub6D4BDPcP2GT577Vvch3R8wDkScZWzQzMMUm3PWbmWvVJrZwQY4VUNgqFJPMM3No2dFDFGTsxxpG5uJh7n7epu4trkrX7x7DogT5Uv6fcLW5",
                &[2, 1_000_000_000],
                "xpub6H1LXWLaKsWFhvm6RVpEL9P4KfRZSW7abD2ttkWP3SSQvnyA8FSVqNTEcYFgJS2UaFcxupHiYkro49S8yGasTvXEYBVPamhGW6cFJodrTHy",
            ),
            // Vector 1: m/0H/1/2H/2 -> .../1000000000.
            (
                "xpub6FHa3pjLCk84BayeJxFW2SP4XRrFd1JYnxeLeU8EqN3vDfZmbqBqaGJAyiLjTAwm6ZLRQUMv1ZACTj37sR62cfN7fe5JnJ7dh8zL4fiyLHV",
                &[1_000_000_000],
                "xpub6H1LXWLaKsWFhvm6RVpEL9P4KfRZSW7abD2ttkWP3SSQvnyA8FSVqNTEcYFgJS2UaFcxupHiYkro49S8yGasTvXEYBVPamhGW6cFJodrTHy",
            ),
            // Vector 2: m -> m/0.
            (
                "xpub661MyMwAqRbcFW31YEwpkMuc5THy2PSt5bDMsktWQcFF8syAmRUapSCGu8ED9W6oDMSgv6Zz8idoc4a6mr8BDzTJY47LJhkJ8UB7WEGuduB",
                &[0],
                "xpub69H7F5d8KSRgmmdJg2KhpAK8SR3DjMwAdkxj3ZuxV27CprR9LgpeyGmXUbC6wb7ERfvrnKZjXoUmmDznezpbZb7ap6r1D3tgFxHmwMkQTPH",
            ),
            // Vector 2: m/0/2147483647H -> .../1.
            (
                "xpub6ASAVgeehLbnwdqV6UKMHVzgqAG8Gr6riv3Fxxpj8ksbH9ebxaEyBLZ85ySDhKiLDBrQSARLq1uNRts8RuJiHjaDMBU4Zn9h8LZNnBC5y4a",
                &[1],
                "xpub6DF8uhdarytz3FWdA8TvFSvvAh8dP3283MY7p2V4SeE2wyWmG5mg5EwVvmdMVCQcoNJxGoWaU9DCWh89LojfZ537wTfunKau47EL2dhHKon",
            ),
            // Vector 2: m/0/2147483647H/1/2147483646H -> .../2.
            (
                "xpub6ERApfZwUNrhLCkDtcHTcxd75RbzS1ed54G1LkBUHQVHQKqhMkhgbmJbZRkrgZw4koxb5JaHWkY4ALHY2grBGRjaDMzQLcgJvLJuZZvRcEL",
                &[2],
                "xpub6FnCn6nSzZAw5Tw7cgR9bi15UV96gLZhjDstkXXxvCLsUXBGXPdSnLFbdpq8p9HmGsApME5hQTZ3emM2rnY5agb9rXpVGyy3bdW6EEgAtqt",
            ),
        ];
        for (parent, idx, want) in steps {
            let parent = Xpub::from_str(parent).unwrap();
            let children: Vec<_> = idx.iter().map(|i| normal(*i)).collect();
            let got = derive_xpub(&parent, &children).unwrap();
            assert_eq!(got.to_string(), *want);
            assert_eq!(got.public_key, Xpub::from_str(want).unwrap().public_key);
        }
    }

    /// Vector 2's m -> m/0 through the public API (a master root, so
    /// parse_root accepts it); m/0/0 checked against m/0's own derivation.
    #[test]
    fn derive_from_master_matches_stepwise() {
        let v2 = "xpub661MyMwAqRbcFW31YEwpkMuc5THy2PSt5bDMsktWQcFF8syAmRUapSCGu8ED9W6oDMSgv6Zz8idoc4a6mr8BDzTJY47LJhkJ8UB7WEGuduB";
        let m0 = "xpub69H7F5d8KSRgmmdJg2KhpAK8SR3DjMwAdkxj3ZuxV27CprR9LgpeyGmXUbC6wb7ERfvrnKZjXoUmmDznezpbZb7ap6r1D3tgFxHmwMkQTPH";
        let root = parse_root(v2).unwrap();
        let direct = derive(&root, &parse_path("m/0/5").unwrap()).unwrap();
        let via = derive_xpub(&Xpub::from_str(m0).unwrap(), &[normal(5)]).unwrap();
        assert_eq!(direct, via.public_key);
    }

    /// The memo gives what uncached derivation gives, whatever order paths
    /// (parents, siblings, repeats) arrive in.
    #[test]
    fn memoised_derivation_equals_direct_derivation() {
        let root = parse_root(V1_MASTER).unwrap();
        let paths = [
            "m/44/60/0/0/3",
            "m/44/60/0/0",
            "m/44/60/0/0/3",
            "m/44/60/0/0/4",
            "m/44/60/0/1/4",
            "m/44/60/0",
            "m/44/195/0/0/0",
            "m/44/60/0/0/3",
            "m/84/0/0/0/3",
            "m/44/60",
        ];
        for p in paths {
            let path = parse_path(p).unwrap();
            let direct = root.derive_pub(&SECP, &path.children()).unwrap().public_key;
            assert_eq!(derive(&root, &path).unwrap(), direct, "{p}");
        }
    }

    #[derive(serde::Deserialize)]
    struct Case {
        root: String,
        path: String,
        family: String,
        network: Option<String>,
        pubkey: String,
        address: String,
    }

    fn network(n: Option<&str>) -> Option<Network> {
        n.map(|n| match n {
            "bitcoin" => Network::Bitcoin,
            "testnet" => Network::Testnet,
            other => panic!("unknown network {other}"),
        })
    }

    /// tests/vectors/signer.json, made by gen_signer_vectors.py with
    /// bip_utils, eth-keys and base58 (independent of this crate's deps).
    #[test]
    fn independent_vectors() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/signer.json");
        let text = std::fs::read_to_string(path).unwrap();
        let file: serde_json::Value = serde_json::from_str(&text).unwrap();
        let cases: Vec<Case> = serde_json::from_value(file["cases"].clone()).unwrap();
        assert!(cases.len() >= 10, "too few vectors");
        for c in &cases {
            let got = signer_addresses(
                &c.root,
                &[&c.path],
                &c.family,
                network(c.network.as_deref()),
            )
            .unwrap_or_else(|e| panic!("{} {}: {e}", c.root, c.path));
            let [k] = got.as_slice() else {
                panic!("one key expected")
            };
            assert_eq!(k.path, c.path);
            assert_eq!(k.pubkey, c.pubkey, "{} {}", c.root, c.path);
            assert_eq!(k.address, c.address, "{} {}", c.root, c.path);
        }
        // Several paths in one call keep their order.
        let evm: Vec<&Case> = cases
            .iter()
            .filter(|c| c.family == "evm" && c.root == V1_MASTER)
            .collect();
        assert!(evm.len() >= 3);
        let paths: Vec<&str> = evm.iter().map(|c| c.path.as_str()).collect();
        let got = signer_addresses(V1_MASTER, &paths, "evm", None).unwrap();
        let addrs: Vec<&str> = got.iter().map(|k| k.address.as_str()).collect();
        let want: Vec<&str> = evm.iter().map(|c| c.address.as_str()).collect();
        assert_eq!(addrs, want);
    }

    #[test]
    fn signer_key_fields() {
        let got = signer_addresses(
            V1_MASTER,
            &["m/84/0/0/0/3"],
            "bitcoin",
            Some(Network::Bitcoin),
        )
        .unwrap();
        let [k] = got.as_slice() else { panic!() };
        assert_eq!((k.purpose, k.coin_type), (84, 0));
        assert_eq!(k.pubkey.len(), 66);
        assert!(k.address.starts_with("bc1q"));
        let json = serde_json::to_value(k).unwrap();
        for key in ["path", "purpose", "coin_type", "pubkey", "address"] {
            assert!(json.get(key).is_some(), "{key}");
        }
    }

    #[test]
    fn path_accepts_canonical_forms() {
        let p = parse_path("m/44/60/0/0/0").unwrap();
        assert_eq!((p.purpose(), p.coin_type()), (44, 60));
        assert_eq!(p.children().len(), 5);
        assert_eq!(p.to_string(), "m/44/60/0/0/0");
        assert!(parse_path("m/0/2147483647").is_ok());
        assert!(parse_path("m/1/2/3/4/5/6/7/8/9/10").is_ok());
    }

    #[test]
    fn path_rejections() {
        let cases: &[(&str, &str)] = &[
            (
                "m/44'/60/0/0/0",
                "hardened index cannot be derived from a public key",
            ),
            (
                "m/44/60h/0",
                "hardened index cannot be derived from a public key",
            ),
            (
                "m/44/60/0H",
                "hardened index cannot be derived from a public key",
            ),
            ("m/44/2147483648", "hardened range"),
            ("m/44/4294967295", "hardened range"),
            ("m/44/99999999999999999999", "hardened range"),
            ("m/44//0", "empty component"),
            ("m/44/60/", "empty component"),
            ("m/", "empty component"),
            ("m", "must start with `m/`"),
            ("", "must start with `m/`"),
            ("44/60/0", "must start with `m/`"),
            ("M/44/60", "must start with `m/`"),
            ("/m/44/60", "must start with `m/`"),
            (" m/44/60", "must start with `m/`"),
            ("m/44/060", "leading zero"),
            ("m/44/00", "leading zero"),
            ("m/44/ 60", "not a decimal index"),
            ("m/44/60 ", "not a decimal index"),
            ("m/44/+60", "not a decimal index"),
            ("m/44/-1", "not a decimal index"),
            ("m/44/0x3c", "not a decimal index"),
            ("m/44/６０", "not a decimal index"),
            ("m/44", "fewer than 2 levels"),
            ("m/1/2/3/4/5/6/7/8/9/10/11", "more than 10 levels"),
        ];
        for (input, why) in cases {
            let err = parse_path(input).unwrap_err();
            assert!(err.contains(why), "{input:?}: {err}");
            assert!(err.starts_with("bip32 path `"), "{err}");
        }
    }

    #[test]
    fn error_messages_truncate_and_escape_input() {
        let long = format!("m/{}", "1/".repeat(200));
        let err = parse_path(&long).unwrap_err();
        assert!(err.len() < 200, "{err}");
        assert!(err.contains('…'));
        let err = parse_path("m/44/\n\u{202e}`x").unwrap_err();
        assert!(!err.contains('\n') && !err.contains('\u{202e}'), "{err}");
        assert!(err.contains("\\u{a}") && err.contains("\\u{60}"), "{err}");
    }

    #[test]
    fn root_accepts_xpub_and_tpub() {
        let x = parse_root(V1_MASTER).unwrap();
        // The same key and chain code re-encoded with tpub version bytes.
        let mut data = bitcoin::base58::decode_check(V1_MASTER).unwrap();
        data[..4].copy_from_slice(&TPUB);
        let tpub = bitcoin::base58::encode_check(&data);
        assert!(tpub.starts_with("tpub"));
        let t = parse_root(&tpub).unwrap();
        assert_eq!((x.public_key, x.chain_code), (t.public_key, t.chain_code));
    }

    /// Re-encodes V1_MASTER's payload after `edit`.
    fn reencoded(edit: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut data = bitcoin::base58::decode_check(V1_MASTER).unwrap();
        edit(&mut data);
        bitcoin::base58::encode_check(&data)
    }

    #[test]
    fn root_rejections() {
        let xprv = "xprv9s21ZrQH143K3QTDL4LXw2F7HEK3wJUD2nW2nRk4stbPy6cq3jPPqjiChkVvvNKmPGJxWUtg6LnF5kejMRNNU3TGtRBeJgk33yuGBxrMPHi";
        let bare = "0339a36013301597daef41fbe593a02cc513d0b55527ec2df1050e2e8ff49c85c2";
        let mut bad_sum = V1_MASTER.to_owned();
        bad_sum.pop();
        bad_sum.push('9');
        let cases: Vec<(String, &str)> = vec![
            (xprv.to_owned(), "extended private key"),
            (bare.to_owned(), "carries no chain code"),
            (format!("0x{bare}"), "carries no chain code"),
            (bare.to_uppercase(), "carries no chain code"),
            (format!("04{}", "ab".repeat(64)), "carries no chain code"),
            (bad_sum, "checksum mismatch"),
            ("".to_owned(), "empty"),
            ("garbage".to_owned(), "not base58check"),
            ("0OIl".to_owned(), "invalid base58 character"),
            (format!(" {V1_MASTER}"), "not base58check"),
            (format!("{V1_MASTER}\n"), "not base58check"),
            ("x".repeat(10_000), "too long"),
            (bitcoin::base58::encode_check(&[1, 2, 3]), "decodes to 3 bytes"),
            (reencoded(|d| d[..4].copy_from_slice(&[0x04, 0xb2, 0x47, 0x46])), "`zpub`"),
            (reencoded(|d| d[..4].copy_from_slice(&[0x04, 0x9d, 0x7c, 0xb2])), "`ypub`"),
            (reencoded(|d| d[..4].copy_from_slice(&[1, 2, 3, 4])), "unknown extended key version"),
            (reencoded(|d| d[4] = 1), "depth 1"),
            (reencoded(|d| d[5] = 1), "parent fingerprint"),
            (reencoded(|d| d[12] = 1), "child number"),
            (reencoded(|d| d[45] = 0x04), "not a valid secp256k1 point"),
            (reencoded(|d| d.push(0)), "79 bytes"),
            // BIP32 test vector 5 (invalid keys).
            ("xpub661MyMwAqRbcEYS8w7XLSVeEsBXy79zSzH1J8vCdxAZningWLdN3zgtU6LBpB85b3D2yc8sfvZU521AAwdZafEz7mnzBBsz4wKY5fTtTQBm".to_owned(), "private"),
            ("xprv9s21ZrQH143K24Mfq5zL5MhWK9hUhhGbd45hLXo2Pq2oqzMMo63oStZzFGTQQD3dC4H2D5GBj7vWvSQaaBv5cxi9gafk7NF3pnBju6dwKvH".to_owned(), "private"),
            ("xpub661MyMwAqRbcEYS8w7XLSVeEsBXy79zSzH1J8vCdxAZningWLdN3zgtU6Txnt3siSujt9RCVYsx4qHZGc62TG4McvMGcAUjeuwZdduYEvFn".to_owned(), "not a valid secp256k1 point"),
            ("xpub661MyMwAqRbcEYS8w7XLSVeEsBXy79zSzH1J8vCdxAZningWLdN3zgtU6N8ZMMXctdiCjxTNq964yKkwrkBJJwpzZS4HS2fxvyYUA4q2Xe4".to_owned(), "not a valid secp256k1 point"),
            ("xpub661no6RGEX3uJkY4bNnPcw4URcQTrSibUZ4NqJEw5eBkv7ovTwgiT91XX27VbEXGENhYRCf7hyEbWrR3FewATdCEebj6znwMfQkhRYHRLpJ".to_owned(), "parent fingerprint"),
            ("xpub661MyMwAuDcm6CRQ5N4qiHKrJ39Xe1R1NyfouMKTTWcguwVcfrZJaNvhpebzGerh7gucBvzEQWRugZDuDXjNDRmXzSZe4c7mnTK97pTvGS8".to_owned(), "child number"),
            // Unknown version with private key data: refused as private.
            ("DMwo58pR1QLEFihHiXPVykYB6fJmsTeHvyTp7hRThAtCX8CvYzgPcn8XnmdfHGMQzT7ayAmfo4z3gY5KfbrZWZ6St24UVf2Qgo6oujFktLHdHY4".to_owned(), "private"),
            ("DMwo58pR1QLEFihHiXPVykYB6fJmsTeHvyTp7hRThAtCX8CvYzgPcn8XnmdfHPmHJiEDXkTiJTVV9rHEBUem2mwVbbNfvT2MTcAqj3nesx8uBf9".to_owned(), "unknown extended key version"),
            ("xprv9s21ZrQH143K24Mfq5zL5MhWK9hUhhGbd45hLXo2Pq2oqzMMo63oStZzF93Y5wvzdUayhgkkFoicQZcP3y52uPPxFnfoLZB21Teqt1VvEHx".to_owned(), "private"),
            ("xpub661MyMwAqRbcEYS8w7XLSVeEsBXy79zSzH1J8vCdxAZningWLdN3zgtU6Q5JXayek4PRsn35jii4veMimro1xefsM58PgBMrvdYre8QyULY".to_owned(), "not a valid secp256k1 point"),
            ("xprv9s21ZrQH143K3QTDL4LXw2F7HEK3wJUD2nW2nRk4stbPy6cq3jPPqjiChkVvvNKmPGJxWUtg6LnF5kejMRNNU3TGtRBeJgk33yuGBxrMPHL".to_owned(), "checksum mismatch"),
        ];
        for (input, why) in &cases {
            let err = parse_root(input).unwrap_err();
            assert!(err.contains(why), "{input:?}: {err}");
            // The root is never echoed, whatever it is.
            assert!(
                input.len() < 12 || !err.contains(&input[..12]),
                "echoed: {err}"
            );
        }
    }

    #[test]
    fn signer_addresses_rejections() {
        let p = &["m/44/60/0/0/0"][..];
        let err = |r: Result<Vec<SignerKey>, String>| r.unwrap_err();
        assert!(err(signer_addresses(V1_MASTER, &[], "evm", None)).contains("empty"));
        let many = vec!["m/44/60/0/0/0"; MAX_PATHS + 1];
        assert!(err(signer_addresses(V1_MASTER, &many, "evm", None)).contains("more than"));
        assert!(
            err(signer_addresses(V1_MASTER, p, "solana", None)).contains("unknown signer family")
        );
        assert!(err(signer_addresses(V1_MASTER, p, "bitcoin", None)).contains("network"));
        assert!(
            err(signer_addresses(
                V1_MASTER,
                &["m/45/0/0"],
                "bitcoin",
                Some(Network::Bitcoin)
            ))
            .contains("purpose 45")
        );
        // One bad path fails the whole list.
        let mixed = &["m/44/60/0/0/0", "m/44/60/0'/0/0"][..];
        assert!(err(signer_addresses(V1_MASTER, mixed, "evm", None)).contains("hardened"));
        let xprv = "xprv9s21ZrQH143K3QTDL4LXw2F7HEK3wJUD2nW2nRk4stbPy6cq3jPPqjiChkVvvNKmPGJxWUtg6LnF5kejMRNNU3TGtRBeJgk33yuGBxrMPHi";
        let e = err(signer_addresses(xprv, p, "evm", None));
        assert!(e.contains("private") && !e.contains("xprv9s"), "{e}");
    }

    #[test]
    fn btc_purposes_and_networks() {
        let root = parse_root(V1_MASTER).unwrap();
        let pk = derive(&root, &parse_path("m/84/1/0/0/0").unwrap()).unwrap();
        for (purpose, main, test) in [
            (44, "1", "m"),
            (49, "3", "2"),
            (84, "bc1q", "tb1q"),
            (86, "bc1p", "tb1p"),
        ] {
            assert!(
                btc_address(&pk, purpose, Network::Bitcoin)
                    .unwrap()
                    .starts_with(main)
            );
            let t = btc_address(&pk, purpose, Network::Testnet).unwrap();
            assert!(
                t.starts_with(test) || (purpose == 44 && t.starts_with('n')),
                "{t}"
            );
        }
        assert!(btc_address(&pk, 0, Network::Bitcoin).is_err());
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_strings_never_panic(s in ".{0,200}") {
            let _ = parse_path(&s);
            let _ = parse_root(&s);
            let _ = signer_addresses(&s, &[s.as_str()], "evm", None);
            let _ = signer_addresses(V1_MASTER, &[s.as_str()], "bitcoin", Some(Network::Bitcoin));
        }

        #[test]
        fn path_like_strings_never_panic(s in "m(/[0-9'hH]{0,11}){0,12}") {
            if let Ok(p) = parse_path(&s) {
                // Accepted paths are canonical and derivable.
                proptest::prop_assert_eq!(p.to_string(), s);
                let root = parse_root(V1_MASTER).unwrap();
                proptest::prop_assert!(derive(&root, &p).is_ok());
            }
        }

        #[test]
        fn base58_strings_never_panic(s in "[1-9A-HJ-NP-Za-km-z]{100,115}") {
            let _ = parse_root(&s);
        }
    }
}
