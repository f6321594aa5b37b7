//! TEMPORARY stub (replaced by the real module before commit).
#![allow(dead_code, unused_variables)]
use bitcoin::bip32::Xpub;
use bitcoin::secp256k1::PublicKey;
pub(crate) struct Path { pub purpose: u32, pub coin_type: u32 }
pub(crate) fn parse_path(s: &str) -> Result<Path, String> {
    let parts: Vec<&str> = s.split('/').collect();
    let p = parts.get(1).and_then(|x| x.parse().ok()).ok_or("bad")?;
    let c = parts.get(2).and_then(|x| x.parse().ok()).ok_or("bad")?;
    Ok(Path { purpose: p, coin_type: c })
}
pub(crate) fn parse_root(s: &str) -> Result<Xpub, String> { s.parse::<Xpub>().map_err(|e| e.to_string()) }
pub(crate) fn derive(root: &Xpub, path: &Path) -> Result<PublicKey, String> { Err("stub".into()) }
pub(crate) fn evm_address(pk: &PublicKey) -> String { String::new() }
pub(crate) fn tron_address(pk: &PublicKey) -> String { String::new() }
pub(crate) fn btc_address(pk: &PublicKey, purpose: u32, n: bitcoin::Network) -> Result<String, String> { Err("stub".into()) }
