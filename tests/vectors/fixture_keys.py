"""Keys and addresses the bound KEYSIGN fixtures use, each computed twice.

The fixtures' root_pub_key is the BIP32 test vector 1 master xpub. tss-gate
derives the key at every `bip32_path_list` entry (non-hardened BIP32 public
derivation) and requires the address it signs for to be
`transaction.source.address`. This module computes those addresses with two
independent implementations and refuses to answer when they disagree:

  1. BIP32 CKDpub written out here (hmac/hashlib) over the pure-Python
     `ecdsa` curve arithmetic; EVM address = keccak256 (eth-hash) of the
     uncompressed point, last 20 bytes; TRON = base58check(0x41 || those 20
     bytes) with the base58 coder of gen_vectors.py;
  2. bip_utils (Bip32Slip10Secp256k1 public derivation, EthAddrEncoder,
     TrxAddrEncoder), whose EVM address is also checked with eth-keys.

Solana keys are Ed25519 and are not derived from the xpub (tss-gate binds the
Solana source through the fee payer and transfer authorities instead); the
ones here are fixed public keys or solders keypairs from fixed seeds.
"""

import hashlib
import hmac

import ecdsa
from bip_utils import Bip32Slip10Secp256k1, EthAddrEncoder, TrxAddrEncoder
from eth_hash.auto import keccak
from eth_keys import keys as eth_keys_keys
from eth_utils import to_checksum_address

from gen_vectors import B58, tron_addr

# BIP32 test vector 1 master (seed 000102030405060708090a0b0c0d0e0f).
ROOT_XPUB = ("xpub661MyMwAqRbcFtXgS5sYJABqqG9YLmC4Q1Rdap9gSE8NqtwybGhePY2gZ29ESFjqJoCu1Rupje8YtGqs"
             "efD265TMg7usUDFdp6W1EGMcet8")
# BIP32 test vector 2 master (seed fffcf9f6...484542): another key entirely.
OTHER_ROOT_XPUB = ("xpub661MyMwAqRbcFW31YEwpkMuc5THy2PSt5bDMsktWQcFF8syAmRUapSCGu8ED9W6oDMSgv6Zz8idoc4"
                   "a6mr8BDzTJY47LJhkJ8UB7WEGuduB")
TV1_SEED = bytes.fromhex("000102030405060708090a0b0c0d0e0f")
TV2_SEED = bytes.fromhex("fffcf9f6f3f0edeae7e4e1dedbd8d5d2cfccc9c6c3c0bdbab7b4b1aeaba8a5a29f9c999693908d8a"
                         "8784817e7b7875726f6c696663605d5a5754514e4b484542")

_CURVE = ecdsa.SECP256k1
_G = _CURVE.generator
_N = _CURVE.order


def _b58decode_check(s: str) -> bytes:
    n = 0
    for c in s:
        n = n * 58 + B58.index(c)
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    raw = b"\0" * (len(s) - len(s.lstrip("1"))) + raw
    body, chk = raw[:-4], raw[-4:]
    assert hashlib.sha256(hashlib.sha256(body).digest()).digest()[:4] == chk, "bad checksum"
    return body


def _point(compressed: bytes):
    return ecdsa.VerifyingKey.from_string(compressed, curve=_CURVE).pubkey.point


def _compress(p) -> bytes:
    return bytes([2 + (p.y() & 1)]) + p.x().to_bytes(32, "big")


def _uncompressed64(p) -> bytes:
    return p.x().to_bytes(32, "big") + p.y().to_bytes(32, "big")


def _parse_path(path: str):
    parts = path.split("/")
    assert parts[0] == "m", path
    idx = [int(x) for x in parts[1:]]
    assert all(0 <= i < 2**31 for i in idx), "non-hardened paths only"
    return idx


def _ckd_pub_own(xpub: str, path: str):
    """BIP32 CKDpub, written out: returns the child point."""
    raw = _b58decode_check(xpub)
    assert len(raw) == 78 and raw[:4] == bytes.fromhex("0488b21e"), "mainnet xpub"
    chain, key = raw[13:45], raw[45:78]
    point = _point(key)
    for i in _parse_path(path):
        data = _compress(point) + i.to_bytes(4, "big")
        digest = hmac.new(chain, data, hashlib.sha512).digest()
        il, chain = int.from_bytes(digest[:32], "big"), digest[32:]
        assert il < _N
        point = _G * il + point
    return point


def _bip_utils_pub(xpub: str, path: str) -> bytes:
    ctx = Bip32Slip10Secp256k1.FromExtendedKey(xpub)
    for i in _parse_path(path):
        ctx = ctx.ChildKey(i)
    return ctx.PublicKey().RawCompressed().ToBytes()


def pubkey(path: str, xpub: str = ROOT_XPUB) -> bytes:
    """Compressed public key at `path`, agreed by both implementations."""
    own = _compress(_ckd_pub_own(xpub, path))
    other = _bip_utils_pub(xpub, path)
    assert own == other, (path, own.hex(), other.hex())
    return own


def evm_address(path: str, xpub: str = ROOT_XPUB) -> str:
    """EIP-55 checksummed EVM address of the key at `path`."""
    p = _ckd_pub_own(xpub, path)
    own = to_checksum_address(keccak(_uncompressed64(p))[-20:])
    assert _compress(p) == pubkey(path, xpub)
    via_bip_utils = EthAddrEncoder.EncodeKey(pubkey(path, xpub))
    via_eth_keys = eth_keys_keys.PublicKey(_uncompressed64(p)).to_checksum_address()
    assert own == via_bip_utils == via_eth_keys, (own, via_bip_utils, via_eth_keys)
    return own


def tron_address(path: str, xpub: str = ROOT_XPUB) -> str:
    """TRON base58check address of the key at `path`."""
    p = _ckd_pub_own(xpub, path)
    own = tron_addr(b"\x41" + keccak(_uncompressed64(p))[-20:])
    via_bip_utils = TrxAddrEncoder.EncodeKey(pubkey(path, xpub))
    assert own == via_bip_utils, (own, via_bip_utils)
    return own


def tron_bytes(address: str) -> bytes:
    """The 21 bytes (0x41 || 20) of a TRON base58check address."""
    body = _b58decode_check(address)
    assert len(body) == 21 and body[0] == 0x41, address
    return body


def self_check():
    # The xpubs are the BIP32 test vector masters (bip_utils from the seeds).
    assert Bip32Slip10Secp256k1.FromSeed(TV1_SEED).PublicKey().ToExtended() == ROOT_XPUB
    assert Bip32Slip10Secp256k1.FromSeed(TV2_SEED).PublicKey().ToExtended() == OTHER_ROOT_XPUB
    # BIP32 test vector 2 publishes m/0 (non-hardened): its xpub's key.
    tv2_m0 = Bip32Slip10Secp256k1.FromExtendedKey(
        "xpub69H7F5d8KSRgmmdJg2KhpAK8SR3DjMwAdkxj3ZuxV27CprR9LgpeyGmXUbC6wb7ERfvrnKZjXoUmmDznezpbZb7ap6r1D3tgFxHmwMkQTPH"
    ).PublicKey().RawCompressed().ToBytes()
    assert pubkey("m/0", OTHER_ROOT_XPUB) == tv2_m0
    # Private derivation from the seed gives the same public keys.
    priv = Bip32Slip10Secp256k1.FromSeed(TV1_SEED)
    for path in ("m/44/60/0/0/0", "m/44/195/0/0/0"):
        assert priv.DerivePath(path).PublicKey().RawCompressed().ToBytes() == pubkey(path)


self_check()
