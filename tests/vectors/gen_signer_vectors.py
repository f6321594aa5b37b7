#!/usr/bin/env python3
"""Generate independent vectors for tss-gate's `derive::signer` module.

Each case is a root extended public key, a BIP32 path, the child's
compressed public key and the address it controls, all computed by
third-party libraries, never by tss-gate or the Rust `bitcoin` crate:
  - derivation: bip_utils (Bip32Slip10Secp256k1, public-only), cross-checked
    against the plain-Python CKDpub below (hmac/hashlib and affine
    secp256k1 arithmetic written from the BIP32 text);
  - EVM: eth-keys `PublicKey.to_address()`, cross-checked with bip_utils'
    EthAddrEncoder;
  - TRON: `base58.b58encode_check(0x41 || EVM address bytes)`, cross-checked
    with bip_utils' TrxAddrEncoder;
  - Bitcoin: bip_utils P2PKH / P2SH(-P2WPKH) / P2WPKH / P2TR (BIP86)
    encoders.

Re-run (a venv outside the repository):
    python3 -m venv /work/venv-signer
    /work/venv-signer/bin/pip install bip_utils eth-keys base58
    /work/venv-signer/bin/python tests/vectors/gen_signer_vectors.py
It rewrites signer.json beside this file. Roots: the BIP32 test vector 1
master xpub, and the test vector 2 master re-encoded with tpub version bytes.
"""

import hashlib
import hmac
import json
import os

import base58
from bip_utils import (
    Bip32KeyNetVersions,
    Bip32Slip10Secp256k1,
    CoinsConf,
    EthAddrEncoder,
    P2PKHAddrEncoder,
    P2SHAddrEncoder,
    P2TRAddrEncoder,
    P2WPKHAddrEncoder,
    TrxAddrEncoder,
)
from eth_keys import keys

MAIN_NET = Bip32KeyNetVersions(bytes.fromhex("0488b21e"), bytes.fromhex("0488ade4"))
TEST_NET = Bip32KeyNetVersions(bytes.fromhex("043587cf"), bytes.fromhex("04358394"))

XPUB = "xpub661MyMwAqRbcFtXgS5sYJABqqG9YLmC4Q1Rdap9gSE8NqtwybGhePY2gZ29ESFjqJoCu1Rupje8YtGqsefD265TMg7usUDFdp6W1EGMcet8"
V2_XPUB = "xpub661MyMwAqRbcFW31YEwpkMuc5THy2PSt5bDMsktWQcFF8syAmRUapSCGu8ED9W6oDMSgv6Zz8idoc4a6mr8BDzTJY47LJhkJ8UB7WEGuduB"
TPUB = base58.b58encode_check(
    bytes.fromhex("043587cf") + base58.b58decode_check(V2_XPUB)[4:]
).decode()

XPUB_PATHS = [
    "m/44/60/0/0/0",
    "m/44/60/0/0/7",
    "m/44/60/1/0/0",
    "m/44/195/0/0/0",
    "m/44/0/0/0/1",
    "m/49/0/0/0/2",
    "m/84/0/0/0/3",
    "m/86/0/0/0/4",
    "m/84/1/0/0/0",
]
TPUB_PATHS = [
    "m/84/1/0/0/0",
    "m/44/1/0/0/0",
    "m/49/1/0/0/5",
    "m/86/1/0/0/6",
    "m/44/60/0/0/0",
    "m/44/195/0/0/0",
]

# --- plain-Python BIP32 CKDpub (independent of bip_utils) -------------------
P = 2**256 - 2**32 - 977
N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
G = (
    0x79BE667EF9DCBBAC55A06295CE870B07029BFCDB2DCE28D959F2815B16F81798,
    0x483ADA7726A3C4655DA4FBFC0E1108A8FD17B448A68554199C47D08FFB10D4B8,
)


def ec_add(a, b):
    if a is None:
        return b
    if b is None:
        return a
    if a[0] == b[0] and (a[1] + b[1]) % P == 0:
        return None
    if a == b:
        lam = 3 * a[0] * a[0] * pow(2 * a[1], -1, P) % P
    else:
        lam = (b[1] - a[1]) * pow(b[0] - a[0], -1, P) % P
    x = (lam * lam - a[0] - b[0]) % P
    return (x, (lam * (a[0] - x) - a[1]) % P)


def ec_mul(k, pt):
    out = None
    while k:
        if k & 1:
            out = ec_add(out, pt)
        pt = ec_add(pt, pt)
        k >>= 1
    return out


def decompress(b):
    x = int.from_bytes(b[1:], "big")
    y = pow((x * x * x + 7) % P, (P + 1) // 4, P)
    if y % 2 != b[0] % 2:
        y = P - y
    return (x, y)


def compress(pt):
    return bytes([2 + (pt[1] & 1)]) + pt[0].to_bytes(32, "big")


def ckd_pub_path(xkey, path):
    raw = base58.b58decode_check(xkey)
    chain, key = raw[13:45], raw[45:78]
    for comp in path.split("/")[1:]:
        i = int(comp)
        assert i < 2**31
        digest = hmac.new(chain, key + i.to_bytes(4, "big"), hashlib.sha512).digest()
        il = int.from_bytes(digest[:32], "big")
        assert il < N
        child = ec_add(ec_mul(il, G), decompress(key))
        assert child is not None
        key, chain = compress(child), digest[32:]
    return key


# --- addresses ---------------------------------------------------------------
def evm(pub):
    addr = keys.PublicKey(pub.RawUncompressed().ToBytes()[1:]).to_address().lower()
    assert addr == EthAddrEncoder.EncodeKey(pub.RawCompressed().ToBytes()).lower()
    return addr


def tron(pub):
    evm_bytes = keys.PublicKey(pub.RawUncompressed().ToBytes()[1:]).to_canonical_address()
    addr = base58.b58encode_check(b"\x41" + evm_bytes).decode()
    assert addr == TrxAddrEncoder.EncodeKey(pub.RawCompressed().ToBytes())
    return addr


def btc(pub, purpose, conf):
    key = pub.RawCompressed().ToBytes()
    if purpose == 44:
        return P2PKHAddrEncoder.EncodeKey(key, net_ver=conf.ParamByKey("p2pkh_net_ver"))
    if purpose == 49:
        return P2SHAddrEncoder.EncodeKey(key, net_ver=conf.ParamByKey("p2sh_net_ver"))
    if purpose == 84:
        return P2WPKHAddrEncoder.EncodeKey(key, hrp=conf.ParamByKey("p2wpkh_hrp"))
    if purpose == 86:
        return P2TRAddrEncoder.EncodeKey(key, hrp=conf.ParamByKey("p2tr_hrp"))
    raise ValueError(purpose)


def case(root, net_ver, path):
    ctx = Bip32Slip10Secp256k1.FromExtendedKey(root, key_net_ver=net_ver)
    pub = ctx.DerivePath(path).PublicKey()
    pubhex = pub.RawCompressed().ToHex()
    assert bytes.fromhex(pubhex) == ckd_pub_path(root, path), path
    purpose, coin = (int(x) for x in path.split("/")[1:3])
    if coin == 60:
        family, network, address = "evm", None, evm(pub)
    elif coin == 195:
        family, network, address = "tron", None, tron(pub)
    elif coin == 0:
        family, network = "bitcoin", "bitcoin"
        address = btc(pub, purpose, CoinsConf.BitcoinMainNet)
    elif coin == 1:
        family, network = "bitcoin", "testnet"
        address = btc(pub, purpose, CoinsConf.BitcoinTestNet)
    else:
        raise ValueError(path)
    return {
        "root": root,
        "path": path,
        "family": family,
        "network": network,
        "pubkey": pubhex,
        "address": address,
    }


def main():
    cases = [case(XPUB, MAIN_NET, p) for p in XPUB_PATHS]
    cases += [case(TPUB, TEST_NET, p) for p in TPUB_PATHS]
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "signer.json")
    with open(out, "w") as f:
        json.dump({"generator": "gen_signer_vectors.py", "cases": cases}, f, indent=2)
        f.write("\n")
    for c in cases:
        print(c["root"][:4], c["path"], c["address"])


if __name__ == "__main__":
    main()
