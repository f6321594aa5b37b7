//! Signing as a TSS Node would, for tests of the event audit: one seed gives
//! a BIP32 master key (its `xpub` is the `root_pub_key` of a KEYSIGN) and an
//! Ed25519 key (its base58 public key is the Solana source address), and
//! [`NodeKey::sign`] returns a `result.signatures` entry the way the node
//! reports it. Included by path from test crates and from the audit's unit
//! tests, so it uses only regular and dev dependencies.
#![allow(dead_code)]

use bitcoin::NetworkKind;
use bitcoin::bip32::{DerivationPath, Xpriv, Xpub};
use bitcoin::key::{Keypair, TapTweak};
use bitcoin::secp256k1::{All, Message, PublicKey, Secp256k1, SecretKey};
use ed25519_dalek::Signer as _;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

pub const ECDSA: u8 = 1;
pub const EDDSA: u8 = 2;
pub const SCHNORR: u8 = 3;

/// A node's signing keys, from a seed.
pub struct NodeKey {
    secp: Secp256k1<All>,
    master: Xpriv,
    ed: ed25519_dalek::SigningKey,
}

impl NodeKey {
    pub fn from_seed(seed: &[u8]) -> NodeKey {
        let secp = Secp256k1::new();
        let master = Xpriv::new_master(NetworkKind::Main, seed).expect("master key from seed");
        // A separate key from the same seed: Ed25519 keys are not BIP32 children.
        let ed_seed: [u8; 32] = Sha256::new()
            .chain_update(b"node_sign ed25519")
            .chain_update(seed)
            .finalize()
            .into();
        NodeKey {
            secp,
            master,
            ed: ed25519_dalek::SigningKey::from_bytes(&ed_seed),
        }
    }

    /// The master `xpub`, as a KEYSIGN's `request_detail.root_pub_key`.
    pub fn root_pub_key(&self) -> String {
        Xpub::from_priv(&self.secp, &self.master).to_string()
    }

    /// The Ed25519 public key in base58, as a Solana source address.
    pub fn ed25519_address(&self) -> String {
        bs58::encode(self.ed.verifying_key().to_bytes()).into_string()
    }

    /// The private key at `path` (`m/44/60/0/0/0`).
    pub fn child_secret(&self, path: &str) -> SecretKey {
        let path: DerivationPath = path.parse().expect("bip32 path");
        self.master
            .derive_priv(&self.secp, &path)
            .expect("private derivation")
            .private_key
    }

    pub fn child_public(&self, path: &str) -> PublicKey {
        PublicKey::from_secret_key(&self.secp, &self.child_secret(path))
    }

    /// Compact r||s (low S, as libsecp256k1 signs) and the recovery id.
    pub fn sign_ecdsa(&self, path: &str, hash: &[u8; 32]) -> ([u8; 64], u8) {
        let msg = Message::from_digest(*hash);
        let sig = self
            .secp
            .sign_ecdsa_recoverable(&msg, &self.child_secret(path));
        let (recid, compact) = sig.serialize_compact();
        let recid = u8::try_from(recid.to_i32()).expect("recovery id 0..=3");
        (compact, recid)
    }

    /// BIP340 over `hash`, with the BIP86 output key (taproot tweak with no
    /// script tree) when `tweaked`, else with the untweaked child key.
    pub fn sign_schnorr(&self, path: &str, hash: &[u8; 32], tweaked: bool) -> [u8; 64] {
        let kp = Keypair::from_secret_key(&self.secp, &self.child_secret(path));
        let kp = if tweaked {
            kp.tap_tweak(&self.secp, None).to_keypair()
        } else {
            kp
        };
        let sig = self
            .secp
            .sign_schnorr_no_aux_rand(&Message::from_digest(*hash), &kp);
        *sig.as_ref()
    }

    pub fn sign_ed25519(&self, message: &[u8]) -> [u8; 64] {
        self.ed.sign(message).to_bytes()
    }

    /// One `result.signatures` entry as the node reports it: ECDSA compact
    /// hex and recovery id `"00"`..`"03"`; Schnorr with the BIP86 output key
    /// (the node signs taproot key-path spends); Ed25519 over the message
    /// bytes `msg_hash_hex` spells. Hex in lowercase without `0x`.
    pub fn sign(&self, path: &str, msg_hash_hex: &str, signature_type: u8) -> Value {
        let msg = hex::decode(msg_hash_hex.trim_start_matches("0x")).expect("msg hash hex");
        let hash32 = || <[u8; 32]>::try_from(msg.as_slice()).expect("a 32-byte hash");
        let (signature, recovery) = match signature_type {
            ECDSA => {
                let (sig, recid) = self.sign_ecdsa(path, &hash32());
                (hex::encode(sig), format!("{recid:02x}"))
            }
            SCHNORR => (
                hex::encode(self.sign_schnorr(path, &hash32(), true)),
                String::new(),
            ),
            EDDSA => (hex::encode(self.sign_ed25519(&msg)), String::new()),
            other => panic!("unknown signature type {other}"),
        };
        json!({
            "bip32_path": path,
            "msg_hash": hex::encode(&msg),
            "tweak": "",
            "signature": signature,
            "signature_recovery": recovery,
        })
    }
}

/// A KEYSIGN event's `data.result`.
pub fn keysign_result(signatures: Vec<Value>, signature_type: u8) -> Value {
    json!({
        "signatures": signatures,
        "signature_type": signature_type,
        "tss_protocol": 1,
    })
}

/// The part of a KEYSIGN input document `ApprovedSign::from_input` reads:
/// `detail` with the key, hashes and paths, and for Ed25519 the source
/// address in `extra.transaction.source`.
pub fn keysign_input(node: &NodeKey, signature_type: u8, items: &[(&str, &str)]) -> Value {
    let paths: Vec<&str> = items.iter().map(|(p, _)| *p).collect();
    let hashes: Vec<&str> = items.iter().map(|(_, h)| *h).collect();
    json!({
        "request_type": "KEYSIGN",
        "detail": {
            "root_pub_key": node.root_pub_key(),
            "msg_hash_list": hashes,
            "bip32_path_list": paths,
            "tweak_list": [],
            "signature_type": signature_type,
            "tss_protocol": 1,
        },
        "extra": {
            "transaction": {"source": {"address": node.ed25519_address()}},
        },
    })
}

/// A 32-byte hash, as lowercase hex, to sign in tests.
pub fn test_hash(label: &str) -> String {
    hex::encode(Sha256::digest(label.as_bytes()))
}
