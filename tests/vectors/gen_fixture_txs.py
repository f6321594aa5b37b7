#!/usr/bin/env python3
"""Give the KEYSIGN fixtures real unsigned transactions bound to their
description, and write the transaction-integrity fixtures
(tests/fixtures/integrity_*.json).

Nothing here comes from tss-gate. Re-run (deterministic; rewrites the
non-BTC keysign_*.json in place and every integrity_*.json):

    python3 -m venv .venv
    .venv/bin/pip install eth-account eth-utils rlp solders protobuf bip_utils ecdsa
    .venv/bin/python tests/vectors/gen_fixture_txs.py

Which library produced what:
- keys and source addresses (fixture_keys.py): root_pub_key is the BIP32 test
  vector 1 master xpub; the key at each path comes from BIP32 CKDpub written
  out over the `ecdsa` curve AND from bip_utils (they must agree); EVM
  addresses are keccak (eth-hash) of the uncompressed key, checked with
  bip_utils' EthAddrEncoder and eth-keys; TRON addresses are base58check(0x41
  || those 20 bytes), checked with bip_utils' TrxAddrEncoder.
- EVM: legacy / EIP-155 / EIP-2930 / EIP-1559 bytes from pyrlp with the hash
  cross-checked against eth-account (gen_vectors.evm_unsigned); EIP-4844 and
  EIP-7702 bytes from pyrlp here (field order in evm_typed below), each hash
  cross-checked against eth-account's TypedTransaction; the EIP-7702
  authorization is signed by eth-account (sign_authorization) with the
  test-vector private key of the source account; ERC-20 calldata from eth-abi.
- TRON: `Transaction.raw` from google.protobuf dynamic messages
  (gen_vectors.tron_messages), sha256 from hashlib.
- Solana: messages, compute-budget instructions and associated token
  accounts from solders (ATAs checked against find_program_address); the
  signing "hash" is the message bytes in hex.

What it writes:
- keysign_*.json (not *btc*): bound to the key: root_pub_key, one path per
  msg hash with the chain's BIP-44 coin type, source.address and
  source_addresses[] = the address that key signs for; value-moving ETH and
  TRON fixtures carry a real transaction paying exactly what they describe,
  and msg_hash_list is its signing hash.
- integrity_*.json: per chain and transaction kind an agreeing fixture that
  must APPROVE and tampered ones that must REJECT for the tampering; then
  the binding attack families integrity_<class>_<variant>_reject.json
  (classes chain, token, rawtx, fee, kind, key), each otherwise a perfectly
  bound approving request so only the attack fires (tests/fixtures/README.md).
"""

import copy
import glob
import hashlib
import json
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import rlp  # noqa: E402
from bip_utils import Bip32Slip10Secp256k1  # noqa: E402
from eth_account import Account  # noqa: E402
from eth_account.typed_transactions import TypedTransaction  # noqa: E402
from eth_hash.auto import keccak  # noqa: E402
from eth_utils import to_checksum_address  # noqa: E402
from solders.compute_budget import set_compute_unit_limit, set_compute_unit_price  # noqa: E402
from solders.hash import Hash  # noqa: E402
from solders.instruction import AccountMeta, Instruction  # noqa: E402
from solders.keypair import Keypair  # noqa: E402
from solders.message import Message, MessageV0, to_bytes_versioned  # noqa: E402
from solders.pubkey import Pubkey  # noqa: E402
from solders.system_program import TransferParams, transfer  # noqa: E402
from solders.token.associated import get_associated_token_address  # noqa: E402

import fixture_keys as keys  # noqa: E402
from gen_vectors import ERC20_TRANSFER, erc20, evm_unsigned, tron_addr, tron_messages  # noqa: E402

FIXTURES = os.path.join(HERE, "..", "fixtures")

# ---------------------------------------------------------------- constants

GWEI = 10**9
# Coin types (data.integrity.chains[*].coin_type) and EVM chain ids.
COIN_TYPE = {"ETH": 60, "BSC_BNB": 60, "MATIC": 60, "SETH": 60, "ARBITRUM_ETH": 60, "BASE_ETH": 60,
             "TRON": 195, "SOL": 501}
EVM_CHAINS = {"ETH", "BSC_BNB", "MATIC", "SETH", "ARBITRUM_ETH", "BASE_ETH"}
DECIMALS = {"ETH": 18, "ETH_USDT": 6, "ETH_USDC": 6, "ETH_PEPE": 18, "BSC_BNB": 18, "TRON": 6,
            "TRON_USDT": 6, "SOL": 9, "SOL_USDC": 6, "ETH_FAKE": 18, "TRON_FAKE": 6}

# The signing accounts: index 0 of the chain's BIP-44 branch.
EVM_PATH = "m/44/60/0/0/0"
TRON_PATH = "m/44/195/0/0/0"
SOL_PATH = "m/44/501/0/0/0"
EVM_SOURCE = keys.evm_address(EVM_PATH)
TRON_SOURCE = keys.tron_address(TRON_PATH)
# Solana (Ed25519, not derivable from the xpub): a fixed on-curve key.
SOL_SOURCE = Pubkey.from_string("9WzDXwBbmkg8ZTbNMqUxvQRAyrZzDsGYdLVL9zYtAWWM")
assert SOL_SOURCE.is_on_curve()
# Another Solana key (a keypair from a fixed seed): the attacker's payer/authority.
SOL_OTHER = Keypair.from_seed(hashlib.sha256(b"tss-gate fixture: another solana key").digest()).pubkey()


def default_source(chain):
    if chain in EVM_CHAINS:
        return EVM_SOURCE
    return {"TRON": TRON_SOURCE, "SOL": str(SOL_SOURCE)}[chain]


def default_path(chain):
    return f"m/44/{COIN_TYPE[chain]}/0/0/0"


# EVM addresses.
MALLORY = "0xdbf03b407c01e7cd3cbea99509d93f8dddc8c6fb"
ETH_DEST = "0xd8dA6BF26964aF9D7eEd9e03E53415D37aA96045"  # allowed (keysign.allowed_destinations.ETH)
USDT = "0xdac17f958d2ee523a2206206994597c13d831ec7"  # data.integrity.tokens.ETH_USDT
CONTRACTS = {
    "ETH_USDT": USDT,
    "ETH_USDC": "0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48",
    "ETH_PEPE": "0x6982508145454ce325ddbe47a25d4ec3d2311933",
}
# Same first and last four bytes as USDT: what a vanity look-alike shows.
USDT_LOOKALIKE = "0xdac17f95" + "00" * 12 + "3d831ec7"

# TRON addresses (all allow-listed in keysign.allowed_destinations.TRON).
TRON_DEST = "TYtYViZFo5xavdy4SixcvuGGbZMwWVV3wL"
TRON_MALLORY = "TW28meJ4JPqGG8GeV9tTykaep8WQhvUNwk"
TRON_USDT = "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t"  # data.integrity.tokens.TRON_USDT
TRON_USDC = "TEkxiTehnzSmSe2XqrBj4w32RUN966rdz8"  # Circle's USDC on TRON: a real, other token
TRON_USDT_LOOKALIKE = tron_addr(keys.tron_bytes(TRON_USDT)[:-1] + b"\x3d")  # last byte changed
assert TRON_USDT_LOOKALIKE.startswith("TR7NHqjeKQxGTCi8q8ZY4pL8otSz") and TRON_USDT_LOOKALIKE != TRON_USDT

# Solana addresses (allow-listed in keysign.allowed_destinations.SOL).
SOL_DEST = Pubkey.from_string("5omQJtDUHA3gMFdHEQg1zZSvcBUVzEEBLxN3L8vUQANy")
SOL_MALLORY = Pubkey.from_string("4Nd1mBQtrMJVYVfKf2PJy9NZUZdTAsp7D4xWLs4gDB4T")
BLOCKHASH = Hash.from_string("EETubP5AKHgjPAhzPAFcb8BAY1hMH639CWCFTqi3hq1k")
TOKEN_PROGRAM = Pubkey.from_string("TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA")
ATA_PROGRAM = Pubkey.from_string("ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL")
USDC_MINT = Pubkey.from_string("EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v")  # the real one
USDT_MINT = Pubkey.from_string("Es9vMFrzaCERmJfrF4H2FYD4KCoNkY11McCe8BenwNYB")  # a real, other token
USDC_LOOKALIKE_MINT = Pubkey.from_string("EPjFWDD5v2dRFSrQCCzL3Ld5UtVzwB6jHkyPfgTRqKPa")  # old fixtures' fake


def ata(owner: Pubkey, mint: Pubkey) -> Pubkey:
    a = get_associated_token_address(owner, mint)
    b = Pubkey.find_program_address([bytes(owner), bytes(TOKEN_PROGRAM), bytes(mint)], ATA_PROGRAM)[0]
    assert a == b, (str(a), str(b))
    return a


SOL_DEST_USDC_ATA = ata(SOL_DEST, USDC_MINT)

# ---------------------------------------------------------------- amounts


def base_units(amount: str, decimals: int) -> int:
    """Whole-unit decimal string to base units; extra digits are cut off."""
    whole, _, frac = amount.partition(".")
    frac = (frac + "0" * decimals)[:decimals]
    return int(whole or "0") * 10**decimals + int(frac or "0")


# ---------------------------------------------------------------- EVM


def evm_typed(kind, f):
    """EIP-4844 and EIP-7702 unsigned transactions: type byte || rlp(fields).

    EIP-4844 (type 3): [chain_id, nonce, max_priority_fee_per_gas,
      max_fee_per_gas, gas_limit, to, value, data, access_list,
      max_fee_per_blob_gas, blob_versioned_hashes]
    EIP-7702 (type 4): [chain_id, nonce, max_priority_fee_per_gas,
      max_fee_per_gas, gas_limit, destination, value, data, access_list,
      authorization_list], each authorization [chain_id, address, nonce,
      y_parity, r, s].
    The signing hash is keccak256 of those bytes; eth-account must agree.
    """
    head = [f["chainId"], f["nonce"], f["maxPriorityFeePerGas"], f["maxFeePerGas"], f["gas"], f["to"],
            f["value"], f["data"], []]
    acct = {"chainId": f["chainId"], "nonce": f["nonce"], "maxPriorityFeePerGas": f["maxPriorityFeePerGas"],
            "maxFeePerGas": f["maxFeePerGas"], "gas": f["gas"], "to": to_checksum_address(f["to"]),
            "value": f["value"], "data": f["data"], "accessList": []}
    if kind == "eip4844":
        raw = b"\x03" + rlp.encode(head + [f["maxFeePerBlobGas"], f["blobVersionedHashes"]])
        acct.update(type=3, maxFeePerBlobGas=f["maxFeePerBlobGas"], blobVersionedHashes=f["blobVersionedHashes"])
    elif kind == "eip7702":
        auths = [[a.chain_id, a.address, a.nonce, a.y_parity, a.r, a.s] for a in f["authorizationList"]]
        raw = b"\x04" + rlp.encode(head + [auths])
        acct.update(type=4, authorizationList=f["authorizationList"])
    else:
        raise ValueError(kind)
    h = keccak(raw)
    other = TypedTransaction.from_dict(acct).hash()
    assert h == bytes(other), (kind, h.hex(), bytes(other).hex())
    return raw, h


def evm_tx(kind="eip1559", *, to=ETH_DEST, value=0, data=b"", chain_id=1, gas=None, gas_price=20 * GWEI,
           max_fee=30 * GWEI, prio=1_500_000_000, nonce=17, extra=None):
    """(raw bytes, signing hash) of an unsigned EVM transaction."""
    f = {"nonce": nonce, "gas": gas or (60000 if data else 21000), "to": bytes.fromhex(to[2:].lower()),
         "value": value, "data": data}
    if kind in ("eip1559", "eip4844", "eip7702"):
        f.update(chainId=chain_id, maxFeePerGas=max_fee, maxPriorityFeePerGas=prio)
    else:
        f["gasPrice"] = gas_price
        if kind != "legacy":
            f["chainId"] = chain_id
    f.update(extra or {})
    if kind in ("eip4844", "eip7702"):
        return evm_typed(kind, f)
    return evm_unsigned(kind, f)


def evm_pay(kind, token, to, amount, contract=None, **kw):
    """A transaction paying `amount` of `token` (native, or ERC-20 transfer via `contract`)."""
    units = base_units(amount, DECIMALS[token])
    if contract is None and token not in CONTRACTS:
        return evm_tx(kind, to=to, value=units, **kw)
    data = erc20(ERC20_TRANSFER, ["address", "uint256"], [to_checksum_address(to), units])
    return evm_tx(kind, to=contract or CONTRACTS[token], value=0, data=data, **kw)


def evm_fee(kind):
    return {"fee_type": "EVM_EIP_1559" if kind in ("eip1559", "eip4844", "eip7702") else "EVM_Legacy",
            "token_id": "ETH"}


# ---------------------------------------------------------------- TRON

TRON = tron_messages()


def tron_raw(owner=TRON_SOURCE, *, to=None, amount=0, contract=None, data=b"", fee_limit=0):
    """`Transaction.raw` of a TransferContract (to/amount) or a TriggerSmartContract (contract/data)."""
    c = TRON["Contract"]()
    if contract is None:
        p = TRON["TransferContract"](owner_address=keys.tron_bytes(owner), to_address=keys.tron_bytes(to),
                                     amount=amount)
        c.type, url = 1, "type.googleapis.com/protocol.TransferContract"
    else:
        p = TRON["TriggerSmartContract"](owner_address=keys.tron_bytes(owner),
                                         contract_address=keys.tron_bytes(contract), data=data)
        c.type, url = 31, "type.googleapis.com/protocol.TriggerSmartContract"
    c.parameter.type_url = url
    c.parameter.value = p.SerializeToString()
    r = TRON["raw"](ref_block_bytes=bytes.fromhex("1a2b"), ref_block_hash=bytes.fromhex("0102030405060708"),
                    expiration=1_700_000_060_000, timestamp=1_700_000_000_000)
    if fee_limit:
        r.fee_limit = fee_limit
    r.contract.append(c)
    raw = r.SerializeToString()
    # Decode what was written: the owner is the one intended.
    back = TRON["raw"]()
    back.ParseFromString(raw)
    assert back.SerializeToString() == raw
    return raw, hashlib.sha256(raw).digest()


def tron_pay(token, to, amount, owner=TRON_SOURCE, contract=None, fee_limit=30_000_000):
    units = base_units(amount, DECIMALS[token])
    if contract is None and token == "TRON":
        return tron_raw(owner, to=to, amount=units)
    data = erc20(ERC20_TRANSFER, ["address", "uint256"],
                 [to_checksum_address(keys.tron_bytes(to)[1:]), units])
    return tron_raw(owner, contract=contract or TRON_USDT, data=data, fee_limit=fee_limit)


TRON_FEE = {"fee_type": "Fixed", "token_id": "TRON"}

# ---------------------------------------------------------------- Solana


def sol_message(ixs, payer=SOL_SOURCE, v0=False):
    if v0:
        return to_bytes_versioned(MessageV0.try_compile(payer, ixs, [], BLOCKHASH))
    return bytes(Message.new_with_blockhash(ixs, payer, BLOCKHASH))


def sol_transfer(lamports, to=SOL_DEST, frm=SOL_SOURCE):
    return transfer(TransferParams(from_pubkey=frm, to_pubkey=to, lamports=lamports))


def spl_transfer_checked(units, *, dest_owner=SOL_DEST, owner=SOL_SOURCE, mint=USDC_MINT, decimals=6):
    """SPL TransferChecked (tag 12, u64 amount, u8 decimals): source, mint, destination, owner."""
    return Instruction(TOKEN_PROGRAM, bytes([12]) + struct.pack("<QB", units, decimals), [
        AccountMeta(ata(owner, mint), False, True), AccountMeta(mint, False, False),
        AccountMeta(ata(dest_owner, mint), False, True), AccountMeta(owner, True, False)])


def spl_transfer_unchecked(units, *, dest_owner=SOL_DEST, owner=SOL_SOURCE, mint=USDC_MINT):
    """SPL Transfer (tag 3, u64 amount): source, destination, owner; the mint is not named."""
    return Instruction(TOKEN_PROGRAM, bytes([3]) + struct.pack("<Q", units), [
        AccountMeta(ata(owner, mint), False, True), AccountMeta(ata(dest_owner, mint), False, True),
        AccountMeta(owner, True, False)])


def ata_create(owner, *, payer=SOL_SOURCE, mint=USDC_MINT, idempotent=True):
    """Associated Token Account CreateIdempotent (1) / Create (no data): funding account, associated
    token account, owner, mint, system program, token program (spl-associated-token-account)."""
    system = Pubkey.from_string("11111111111111111111111111111111")
    return Instruction(ATA_PROGRAM, bytes([1]) if idempotent else b"", [
        AccountMeta(payer, True, True), AccountMeta(ata(owner, mint), False, True),
        AccountMeta(owner, False, False), AccountMeta(mint, False, False),
        AccountMeta(system, False, False), AccountMeta(TOKEN_PROGRAM, False, False)])


def sol_signed_count(msg: bytes) -> int:
    """Solana fee: 5000 lamports per required signature (first header byte of a legacy message)."""
    return msg[1] if msg[0] & 0x80 else msg[0]


SOL_FEE = {"fee_type": "Fixed", "token_id": "SOL"}

# ---------------------------------------------------------------- fixture plumbing


def load(path):
    with open(path) as fh:
        return json.load(fh)


def save(path, fixture):
    with open(path, "w") as fh:
        json.dump(fixture, fh, indent=2)
        fh.write("\n")


def parts(fx):
    r = fx["request"]
    return json.loads(r["request_detail"]), json.loads(r["extra_info"]) if r["extra_info"] else {}


def store(fx, detail, extra):
    fx["request"]["request_detail"] = json.dumps(detail, separators=(",", ":"))
    fx["request"]["extra_info"] = json.dumps(extra, separators=(",", ":"))


def bind(detail, extra, chain, *, paths=None, source=None, root=keys.ROOT_XPUB):
    """Binds the key fields to `chain`: root key, one path per msg hash, source addresses."""
    source = source or default_source(chain)
    if paths is None:
        paths = [default_path(chain)] * max(1, len(detail.get("msg_hash_list") or []))
    detail["root_pub_key"] = root
    detail["bip32_path_list"] = paths
    extra["source_addresses"] = [{"address": source, "chain_id": chain, "path": paths[0],
                                  "encoding": "ENCODING_PLAIN", "root_pubkey": keys.ROOT_XPUB}]
    tx = extra.get("transaction")
    if tx:
        tx["source"]["address"] = source


# ---------------------------------------------------------------- existing keysign fixtures


def refresh_existing():
    for path in sorted(glob.glob(os.path.join(FIXTURES, "keysign_*.json"))):
        if "btc" in os.path.basename(path):
            continue  # Bitcoin fixtures belong to another generator.
        fx = load(path)
        detail, extra = parts(fx)
        tx = extra.get("transaction")
        chain = tx["chain_id"] if tx else extra["source_addresses"][0]["chain_id"]
        if not tx:
            bind(detail, extra, chain)
            store(fx, detail, extra)
            save(path, fx)
            continue
        dest = tx.get("destination", {})
        out = dest.get("account_output")
        token = tx.get("token_id")
        raw = None
        if dest.get("destination_type") == "Address" and out:
            if chain == "ETH" and token in DECIMALS:
                raw, h = evm_pay("eip1559", token, out["address"], out["amount"])
                raw = raw.hex()
            elif chain == "TRON" and token in ("TRON", "TRON_USDT"):
                raw, h = tron_pay(token, out["address"], out["amount"])
                raw = raw.hex()
                tx["fee"] = dict(TRON_FEE)
        if raw is not None:
            tx.setdefault("raw_tx_info", {"used_nonce": 17})
            tx["raw_tx_info"]["unsigned_raw_tx"] = raw
            if detail.get("msg_hash_list"):  # an empty list stays empty: that fixture tests it
                detail["msg_hash_list"] = [h.hex()]
        else:
            tx.pop("raw_tx_info", None)  # message signatures: nothing to decode
        bind(detail, extra, chain, paths=[default_path(chain)])
        store(fx, detail, extra)
        save(path, fx)


# ---------------------------------------------------------------- integrity fixtures

WRITTEN = []


def emit(name, desc, action, reasons, *, base, chain, token, dest, amount, raw, hashes, fee,
         raw_hex=None, paths=None, source=None, root=keys.ROOT_XPUB, signature_type=None, mutate=None):
    """Writes integrity_<name>.json: `base` with the transaction, key and expectation replaced.

    raw: the unsigned bytes (None: no raw_tx_info at all); hashes: msg_hash_list.
    """
    assert name.endswith("_approve") == (action == "APPROVE") and (action == "APPROVE") == (not reasons)
    fx = copy.deepcopy(base)
    detail, extra = parts(fx)
    tx = extra["transaction"]
    tx.update(chain_id=chain, token_id=token, asset_id=token, description=desc, fee=fee)
    tx["destination"] = {"destination_type": "Address", "account_output": {"address": dest, "amount": amount},
                         "force_internal": False, "force_external": False}
    tx.pop("raw_tx_info", None)
    if raw is not None:
        tx["raw_tx_info"] = {"used_nonce": 17, "unsigned_raw_tx": raw_hex if raw_hex is not None else raw.hex()}
    detail["msg_hash_list"] = hashes
    if signature_type is not None:
        detail["signature_type"] = signature_type
    bind(detail, extra, chain, paths=paths, source=source, root=root)
    if mutate:
        mutate(detail, extra)
    fx["description"] = desc
    fx["request"]["request_id"] = f"integrity-{name}"
    fx["expect"] = {"action": action, "status": 0, "reasons": reasons}
    store(fx, detail, extra)
    save(os.path.join(FIXTURES, f"integrity_{name}.json"), fx)
    WRITTEN.append((name, action, reasons))


def evm_emit(name, desc, action, reasons, kind, raw_h, *, base, token="ETH", dest=ETH_DEST, amount="0.75",
             chain="ETH", hashes=None, **kw):
    raw, h = raw_h
    emit(name, desc, action, reasons, base=base, chain=chain, token=token, dest=dest, amount=amount,
         raw=raw, raw_hex="0x" + raw.hex(), hashes=hashes if hashes is not None else [h.hex()],
         fee=evm_fee(kind), **kw)


def tron_emit(name, desc, action, reasons, raw_h, *, base, token="TRON", dest=TRON_DEST, amount="1.5",
              hashes=None, chain="TRON", **kw):
    raw, h = raw_h
    emit(name, desc, action, reasons, base=base, chain=chain, token=token, dest=dest, amount=amount, raw=raw,
         hashes=hashes if hashes is not None else [h.hex()], fee=TRON_FEE, **kw)


def sol_emit(name, desc, action, reasons, msg, *, base, token="SOL", dest=str(SOL_DEST), amount="1.5",
             hashes=None, chain="SOL", **kw):
    emit(name, desc, action, reasons, base=base, chain=chain, token=token, dest=dest, amount=amount, raw=msg,
         hashes=hashes if hashes is not None else [msg.hex()], fee=SOL_FEE, signature_type=2, **kw)


def evm_integrity(eth, usdt):
    """The EVM agreeing / tampered fixtures (kinds x ETH and ETH_USDT)."""
    for token, amount in (("ETH", "0.75"), ("ETH_USDT", "9999.99")):
        kinds = ("legacy_eip155", "eip2930", "eip1559") if token == "ETH" else ("eip1559", "legacy_eip155")
        base = eth if token == "ETH" else usdt
        for kind in kinds:
            tag = f"{kind}_{token.lower()}"
            ok = evm_pay(kind, token, ETH_DEST, amount)
            # The EIP-2930 approval writes source.address lower-case: EVM
            # addresses compare case-insensitively.
            src = EVM_SOURCE.lower() if kind == "eip2930" else None
            evm_emit(f"{tag}_approve", f"{kind} {token} transfer whose bytes, hash, chain, token, key and "
                     "description agree", "APPROVE", [], kind, ok, base=base, token=token, amount=amount,
                     source=src)
            evm_emit(f"{tag}_wrong_hash_reject", f"{kind} {token}: msg_hash_list holds a hash of other bytes",
                     "REJECT", ["msg_hash_list", "0x" + "ab" * 32], kind, ok, base=base, token=token,
                     amount=amount, hashes=["0x" + "ab" * 32])
            evm_emit(f"{tag}_recipient_swapped_reject", f"{kind} {token}: the signed bytes pay another "
                     "address than described", "REJECT", [MALLORY], kind,
                     evm_pay(kind, token, MALLORY, amount), base=base, token=token, amount=amount)
            bigger = str(int(amount.split(".")[0]) + 1000) + ("." + amount.split(".")[1] if "." in amount else "")
            evm_emit(f"{tag}_amount_raised_reject", f"{kind} {token}: the signed bytes move more than described",
                     "REJECT", [str(base_units(bigger, DECIMALS[token]))], kind,
                     evm_pay(kind, token, ETH_DEST, bigger), base=base, token=token, amount=amount)
    evm_emit("erc20_recipient_hidden_in_calldata_reject", "ERC-20 transfer described to an allow-listed "
             "address; the calldata pays another one", "REJECT", [MALLORY], "eip1559",
             evm_pay("eip1559", "ETH_USDT", MALLORY, "9999.99"), base=usdt, token="ETH_USDT", amount="9999.99")
    ok = evm_pay("eip1559", "ETH", ETH_DEST, "0.75")
    emit("raw_tx_missing_reject", "ETH KEYSIGN without raw_tx_info, so nothing proves what is signed",
         "REJECT", ["unsigned_raw_tx"], base=eth, chain="ETH", token="ETH", dest=ETH_DEST, amount="0.75",
         raw=None, hashes=[ok[1].hex()], fee=evm_fee("eip1559"))
    emit("raw_tx_garbage_reject", "unsigned_raw_tx that does not decode", "REJECT", ["cannot be decoded"],
         base=eth, chain="ETH", token="ETH", dest=ETH_DEST, amount="0.75", raw=b"\x02\xde\xad\xbe\xef",
         raw_hex="0x02deadbeef", hashes=[ok[1].hex()], fee=evm_fee("eip1559"))


def tron_integrity(eth):
    trx = tron_pay("TRON", TRON_DEST, "1.5")
    tron_emit("tron_trx_transfer_ok_approve", "TRX transfer from the derived TRON account whose bytes, hash "
              "and description agree", "APPROVE", [], trx, base=eth)
    tron_emit("tron_trx_recipient_swapped_reject", "TRX transfer: the signed bytes pay another address than "
              "described", "REJECT", ["recipient"], trx, base=eth, dest=TRON_MALLORY)
    tron_emit("tron_trx_amount_raised_reject", "TRX transfer: the description states another amount than "
              "the signed bytes move", "REJECT", ["amount"], trx, base=eth, amount="2")
    tron_emit("tron_trx_wrong_msg_hash_reject", "TRX transfer: msg_hash_list holds a hash of other bytes",
              "REJECT", ["msg_hash_list"], trx, base=eth, hashes=["22" * 32])
    usdt = tron_pay("TRON_USDT", TRON_DEST, "25")
    tron_emit("tron_trc20_transfer_ok_approve", "TRC-20 USDT transfer through the pinned contract from the "
              "derived TRON account; bytes, hash and description agree", "APPROVE", [], usdt, base=eth,
              token="TRON_USDT", amount="25")
    tron_emit("tron_trc20_recipient_hidden_reject", "TRC-20 transfer described as paying the USDT contract; "
              "the calldata pays another address", "REJECT", ["recipient"], usdt, base=eth, token="TRON_USDT",
              dest=TRON_USDT, amount="25")
    tron_emit("tron_trc20_amount_raised_reject", "TRC-20 transfer: the description states another amount "
              "than the calldata moves", "REJECT", ["amount"], usdt, base=eth, token="TRON_USDT",
              amount="25.000001")
    raw = trx[0]
    for name, rh, what in (("tron_truncated", raw[:-4].hex(), "a TRON raw tx cut short"),
                           ("tron_garbage", "ff" * 12, "bytes that are no TRON transaction"),
                           ("tron_odd_hex", raw.hex()[:-1], "an odd number of hex digits")):
        emit(f"{name}_reject", f"unsigned_raw_tx is {what}", "REJECT", ["cannot be decoded"], base=eth,
             chain="TRON", token="TRON", dest=TRON_DEST, amount="1.5", raw=raw, raw_hex=rh,
             hashes=[trx[1].hex()], fee=TRON_FEE)


def sol_integrity(eth):
    m = sol_message([sol_transfer(1_500_000_000)])
    sol_emit("sol_transfer_ok_approve", "SOL transfer paid and signed by the source account; message and "
             "description agree", "APPROVE", [], m, base=eth)
    emit("sol_transfer_as_unsigned_tx_ok_approve", "SOL transfer sent as an unsigned wire transaction "
         "(empty signature slot + message); msg_hash_list is the message", "APPROVE", [], base=eth, chain="SOL",
         token="SOL", dest=str(SOL_DEST), amount="1.5", raw=m, raw_hex=(b"\x01" + b"\x00" * 64 + m).hex(),
         hashes=[m.hex()], fee=SOL_FEE, signature_type=2)
    sol_emit("sol_transfer_recipient_swapped_reject", "SOL transfer: the description names another recipient "
             "than the message pays", "REJECT", ["recipient"], m, base=eth, dest=str(SOL_MALLORY))
    sol_emit("sol_transfer_amount_raised_reject", "SOL transfer: the description states another amount than "
             "the message moves", "REJECT", ["amount"], m, base=eth, amount="1.6")
    sol_emit("sol_wrong_msg_hash_reject", "SOL transfer: msg_hash_list holds the sha256 of the message, not "
             "the message", "REJECT", ["msg_hash_list"], m, base=eth, hashes=[hashlib.sha256(m).hexdigest()])
    sol_emit("sol_transfer_v0_ok_approve", "SOL transfer as a v0 message; message and description agree",
             "APPROVE", [], sol_message([sol_transfer(1_500_000_000)], v0=True), base=eth)
    budget = [set_compute_unit_limit(200_000), set_compute_unit_price(50_000)]
    pm = sol_message(budget + [sol_transfer(1_500_000_000)])
    sol_emit("sol_transfer_priority_fee_ok_approve", "SOL transfer with a modest priority fee (200,000 CU at "
             "50,000 micro-lamports = 0.00001 SOL), well under the fee cap", "APPROVE", [], pm, base=eth)

    spl = sol_message([spl_transfer_checked(2_500_000)])
    sol_emit("spl_transfer_checked_ok_approve", "SPL TransferChecked of the pinned USDC mint from the source's "
             "token account to the destination's associated token account", "APPROVE", [], spl, base=eth,
             token="SOL_USDC", amount="2.5")
    sol_emit("spl_transfer_checked_recipient_swapped_reject", "SPL TransferChecked: the description names "
             "another owner than the token account paid", "REJECT", ["recipient"], spl, base=eth,
             token="SOL_USDC", dest=str(SOL_MALLORY), amount="2.5")
    sol_emit("spl_transfer_checked_amount_raised_reject", "SPL TransferChecked: the description states another "
             "amount than the message moves", "REJECT", ["amount"], spl, base=eth, token="SOL_USDC", amount="3")
    sol_emit("spl_transfer_checked_with_ata_create_ok_approve", "SPL TransferChecked of USDC after creating "
             "the destination's associated token account (CreateIdempotent, paid by the source)", "APPROVE", [],
             sol_message([ata_create(SOL_DEST), spl_transfer_checked(2_500_000)]), base=eth, token="SOL_USDC",
             amount="2.5")
    sol_emit("spl_ata_create_for_another_owner_reject", "SPL TransferChecked of USDC, plus the creation of a "
             "token account for another owner: its rent leaves the source for an account the attacker can close",
             "REJECT", ["no transfer here pays"],
             sol_message([ata_create(SOL_DEST), ata_create(SOL_MALLORY), spl_transfer_checked(2_500_000)]),
             base=eth, token="SOL_USDC", amount="2.5")
    sol_emit("sol_ata_create_beside_native_transfer_reject", "SOL transfer plus the creation of a USDC token "
             "account for another owner (rent drained to an account the attacker can close)", "REJECT",
             ["no transfer here pays"], sol_message([ata_create(SOL_MALLORY, idempotent=False),
                                                      sol_transfer(1_500_000_000)]), base=eth)
    sol_emit("spl_ata_create_paid_by_other_reject", "SPL TransferChecked of USDC after an associated token "
             "account creation funded by another key than the source", "REJECT", ["source address"],
             sol_message([ata_create(SOL_DEST, payer=SOL_OTHER), spl_transfer_checked(2_500_000)]), base=eth,
             token="SOL_USDC", amount="2.5")
    tacc = sol_message([spl_transfer_checked(7_000_000)])
    sol_emit("spl_transfer_to_token_account_ok_approve", "SPL TransferChecked of the pinned USDC mint, "
             "described by the destination token account itself", "APPROVE", [], tacc, base=eth,
             token="SOL_USDC", dest=str(SOL_DEST_USDC_ATA), amount="7")
    unchecked = sol_message([spl_transfer_unchecked(7_000_000)])
    sol_emit("spl_transfer_owner_unprovable_reject", "SPL Transfer (no mint) described by the owner wallet: "
             "the token account cannot be proven to be that owner's", "REJECT", ["raw transaction disagrees"],
             unchecked, base=eth, token="SOL_USDC", amount="7")
    for name, rh, what in (("sol_truncated", m[:-5].hex(), "a Solana message cut short"),
                           ("sol_garbage", "00" * 3, "three zero bytes"),
                           ("sol_trailing", (m + b"\x00").hex(), "a Solana message with a trailing byte")):
        emit(f"{name}_reject", f"unsigned_raw_tx is {what}", "REJECT", ["cannot be decoded"], base=eth,
             chain="SOL", token="SOL", dest=str(SOL_DEST), amount="1.5", raw=m, raw_hex=rh, hashes=[m.hex()],
             fee=SOL_FEE, signature_type=2)


def chain_attacks(eth, usdt):
    """Chain not bound: the raw tx's EVM chain id is not the described chain's."""
    r = ["chain id"]
    evm_emit("chain_bsc_as_eth_reject", "an EIP-155 transaction for BSC (chain id 56) described as ETH",
             "REJECT", r, "legacy_eip155", evm_pay("legacy_eip155", "ETH", ETH_DEST, "0.75", chain_id=56),
             base=eth)
    evm_emit("chain_polygon_as_eth_reject", "an EIP-1559 transaction for Polygon (chain id 137) described as "
             "ETH", "REJECT", r, "eip1559", evm_pay("eip1559", "ETH", ETH_DEST, "0.75", chain_id=137), base=eth)
    evm_emit("chain_sepolia_as_eth_reject", "an EIP-2930 transaction for Sepolia (chain id 11155111) described "
             "as ETH", "REJECT", r, "eip2930",
             evm_pay("eip2930", "ETH", ETH_DEST, "0.75", chain_id=11155111), base=eth)
    evm_emit("chain_bsc_usdt_as_eth_usdt_reject", "an ERC-20 transfer through USDT's address on BSC (chain id "
             "56) described as ETH_USDT on ETH", "REJECT", r, "eip1559",
             evm_pay("eip1559", "ETH_USDT", ETH_DEST, "9999.99", chain_id=56), base=usdt, token="ETH_USDT",
             amount="9999.99")
    evm_emit("chain_pre155_as_eth_reject", "a pre-EIP-155 legacy transaction (no chain id: valid on every EVM "
             "chain) described as ETH", "REJECT", r, "legacy", evm_pay("legacy", "ETH", ETH_DEST, "0.75"),
             base=eth)
    evm_emit("chain_zero_as_eth_reject", "an EIP-1559 transaction with chain id 0 described as ETH", "REJECT",
             r, "eip1559", evm_pay("eip1559", "ETH", ETH_DEST, "0.75", chain_id=0), base=eth)
    evm_emit("chain_eth_as_bsc_reject", "an ETH mainnet transaction (chain id 1) described as BSC_BNB on BSC",
             "REJECT", r, "eip1559", evm_pay("eip1559", "BSC_BNB", ETH_DEST, "0.75", chain_id=1), base=eth,
             chain="BSC_BNB", token="BSC_BNB", dest=ETH_DEST.lower())


def token_attacks(eth, usdt):
    """Token not bound: a token of another chain, an unknown token, or not the pinned contract/mint."""
    r = ["belongs to chain"]
    evm_emit("token_sol_usdc_on_eth_reject", "token SOL_USDC on chain ETH: an ERC-20 (ETH_USDC contract) "
             "transfer described with a Solana token id", "REJECT", r, "eip1559",
             evm_pay("eip1559", "SOL_USDC", ETH_DEST, "25", contract=CONTRACTS["ETH_USDC"]), base=usdt,
             token="SOL_USDC", amount="25")
    evm_emit("token_tron_on_eth_reject", "token TRON on chain ETH: a native ETH transfer described in TRX",
             "REJECT", r, "eip1559", evm_pay("eip1559", "TRON", ETH_DEST, "1.5"), base=eth, token="TRON",
             amount="1.5")
    evm_emit("token_tron_usdt_on_eth_reject", "token TRON_USDT on chain ETH: an ETH_USDT transfer described "
             "with the TRON USDT token id", "REJECT", r, "eip1559",
             evm_pay("eip1559", "TRON_USDT", ETH_DEST, "25", contract=USDT), base=usdt, token="TRON_USDT",
             amount="25")
    evm_emit("token_sol_on_eth_reject", "token SOL on chain ETH: a native ETH transfer described in SOL",
             "REJECT", r, "eip1559", evm_pay("eip1559", "SOL", ETH_DEST, "1.5"), base=eth, token="SOL",
             amount="1.5")
    sol_emit("token_eth_on_sol_reject", "token ETH on chain SOL: a SOL transfer (1 SOL) described as "
             "0.000000001 ETH", "REJECT", r, sol_message([sol_transfer(1_000_000_000)]), base=eth, token="ETH",
             amount="0.000000001")
    tron_emit("token_eth_usdt_on_tron_reject", "token ETH_USDT on chain TRON: a TRC-20 USDT transfer described "
              "with the Ethereum USDT token id", "REJECT", r, tron_pay("ETH_USDT", TRON_DEST, "25",
                                                                      contract=TRON_USDT),
              base=eth, token="ETH_USDT", amount="25")
    r = ["is not in data.integrity.tokens"]
    evm_emit("token_unknown_eth_fake_reject", "token ETH_FAKE (in no table) on chain ETH for a native ETH "
             "transfer", "REJECT", r, "eip1559", evm_pay("eip1559", "ETH", ETH_DEST, "0.75"), base=eth,
             token="ETH_FAKE")
    tron_emit("token_unknown_tron_fake_reject", "token TRON_FAKE (in no table) on chain TRON for a TRX "
              "transfer", "REJECT", r, tron_pay("TRON", TRON_DEST, "1.5"), base=eth, token="TRON_FAKE")
    r = ["must move"]
    evm_emit("token_erc20_lookalike_contract_reject", "an ERC-20 transfer through a look-alike contract "
             f"({USDT_LOOKALIKE}) described as ETH_USDT", "REJECT", r, "eip1559",
             evm_pay("eip1559", "ETH_USDT", ETH_DEST, "9999.99", contract=USDT_LOOKALIKE), base=usdt,
             token="ETH_USDT", amount="9999.99")
    evm_emit("token_erc20_usdc_as_usdt_reject", "an ERC-20 transfer of USDC (the real ETH_USDC contract) "
             "described as ETH_USDT", "REJECT", r, "eip1559",
             evm_pay("eip1559", "ETH_USDT", ETH_DEST, "9999.99", contract=CONTRACTS["ETH_USDC"]), base=usdt,
             token="ETH_USDT", amount="9999.99")
    evm_emit("token_erc20_native_as_usdt_reject", "a native ETH transfer (9999990000 wei) described as "
             "9999.99 ETH_USDT: no token transfer at all", "REJECT", r, "eip1559",
             evm_tx("eip1559", to=ETH_DEST, value=base_units("9999.99", 6)), base=usdt, token="ETH_USDT",
             amount="9999.99")
    tron_emit("token_trc20_other_contract_reject", f"a TRC-20 transfer through another contract ({TRON_USDC}, "
              "USDC) described as TRON_USDT", "REJECT", r,
              tron_pay("TRON_USDT", TRON_DEST, "25", contract=TRON_USDC), base=eth, token="TRON_USDT", amount="25")
    tron_emit("token_trc20_lookalike_contract_reject", "a TRC-20 transfer through a look-alike contract "
              f"({TRON_USDT_LOOKALIKE}) described as TRON_USDT", "REJECT", r,
              tron_pay("TRON_USDT", TRON_DEST, "25", contract=TRON_USDT_LOOKALIKE), base=eth, token="TRON_USDT",
              amount="25")
    tron_emit("token_trx_as_tron_usdt_reject", "a native TRX transfer of 25 TRX described as 25 TRON_USDT: no "
              "token transfer at all", "REJECT", r, tron_raw(to=TRON_DEST, amount=25_000_000), base=eth,
              token="TRON_USDT", amount="25")
    sol_emit("token_spl_other_mint_reject", f"an SPL TransferChecked of another mint ({USDT_MINT}, USDT) "
             "described as SOL_USDC", "REJECT", r, sol_message([spl_transfer_checked(2_500_000, mint=USDT_MINT)]),
             base=eth, token="SOL_USDC", amount="2.5")
    sol_emit("token_spl_lookalike_mint_reject", f"an SPL TransferChecked of a look-alike mint "
             f"({USDC_LOOKALIKE_MINT}) described as SOL_USDC", "REJECT", r,
             sol_message([spl_transfer_checked(2_500_000, mint=USDC_LOOKALIKE_MINT)]), base=eth,
             token="SOL_USDC", amount="2.5")
    sol_emit("token_spl_native_as_usdc_reject", "a native SOL transfer (0.0025 SOL) described as 2.5 SOL_USDC: "
             "no token transfer at all", "REJECT", r, sol_message([sol_transfer(2_500_000)]), base=eth,
             token="SOL_USDC", amount="2.5")
    r = ["names no mint"]
    sol_emit("token_spl_transfer_no_mint_to_token_account_reject", "an SPL Transfer (tag 3, names no mint) "
             "described as SOL_USDC to the destination's USDC token account", "REJECT", r,
             sol_message([spl_transfer_unchecked(7_000_000)]), base=eth, token="SOL_USDC",
             dest=str(SOL_DEST_USDC_ATA), amount="7")
    sol_emit("token_spl_transfer_no_mint_to_owner_reject", "an SPL Transfer (tag 3, names no mint) described "
             "as SOL_USDC to the owner wallet", "REJECT", r, sol_message([spl_transfer_unchecked(7_000_000)]),
             base=eth, token="SOL_USDC", amount="7")


def rawtx_attacks(eth):
    """No raw tx: nothing proves what is signed (the hash is that of a real, agreeing tx)."""
    cases = {"ETH": (evm_pay("eip1559", "ETH", ETH_DEST, "0.75")[1].hex(), "ETH", ETH_DEST, "0.75",
                     evm_fee("eip1559"), None),
             "TRON": (tron_pay("TRON", TRON_DEST, "1.5")[1].hex(), "TRON", TRON_DEST, "1.5", TRON_FEE, None),
             "SOL": (sol_message([sol_transfer(1_500_000_000)]).hex(), "SOL", str(SOL_DEST), "1.5", SOL_FEE, 2)}
    variants = {
        "unsigned_missing": ("raw_tx_info without an unsigned_raw_tx key", {"used_nonce": 17}),
        "empty": ("unsigned_raw_tx is an empty string", {"used_nonce": 17, "unsigned_raw_tx": ""}),
        "null": ("unsigned_raw_tx is null", {"used_nonce": 17, "unsigned_raw_tx": None}),
        "no_info": ("no raw_tx_info at all", None),
    }
    for chain, (h, token, dest, amount, fee, sig) in cases.items():
        for v, (what, info) in variants.items():
            if chain == "ETH" and v == "no_info":
                continue  # integrity_raw_tx_missing_reject
            def put(detail, extra, info=info):
                if info is None:
                    extra["transaction"].pop("raw_tx_info", None)
                else:
                    extra["transaction"]["raw_tx_info"] = copy.deepcopy(info)
            emit(f"rawtx_{chain.lower()}_{v}_reject", f"{chain} KEYSIGN whose {what}", "REJECT",
                 ["unsigned_raw_tx"], base=eth, chain=chain, token=token, dest=dest, amount=amount, raw=None,
                 hashes=[h], fee=fee, signature_type=sig, mutate=put)


def fee_attacks(eth, usdt):
    """Fees over data.integrity.chains[*].max_fee (ETH 0.05, TRON 150, SOL 0.01)."""
    r = ["on fees"]
    mf = -(-1000 * 10**18 // 21000)  # per-gas price making 21,000 gas cost (just over) 1,000 ETH
    assert 21000 * mf >= 1000 * 10**18
    evm_emit("fee_eth_max_fee_1000_eth_reject", "a 21,000-gas ETH transfer whose max_fee_per_gas lets it pay "
             "1,000 ETH in fees", "REJECT", r, "eip1559",
             evm_pay("eip1559", "ETH", ETH_DEST, "0.75", max_fee=mf), base=eth)
    assert 25000 * 4000 * GWEI == 10**17
    evm_emit("fee_eth_legacy_gas_price_reject", "an EIP-155 ETH transfer whose gas price (4,000 gwei x 25,000 "
             "gas) pays 0.1 ETH in fees", "REJECT", r, "legacy_eip155",
             evm_pay("legacy_eip155", "ETH", ETH_DEST, "0.75", gas=25000, gas_price=4000 * GWEI), base=eth)
    evm_emit("fee_eth_gas_limit_inflated_reject", "an ETH transfer with a 30,000,000 gas limit at 30 gwei (0.9 "
             "ETH of fees)", "REJECT", r, "eip1559", evm_pay("eip1559", "ETH", ETH_DEST, "0.75", gas=30_000_000),
             base=eth)
    evm_emit("fee_erc20_usdt_over_cap_reject", "an EIP-2930 ERC-20 USDT transfer paying 65,000 gas x 1,000 "
             "gwei = 0.065 ETH in fees, just over the 0.05 cap", "REJECT", r, "eip2930",
             evm_pay("eip2930", "ETH_USDT", ETH_DEST, "9999.99", gas=65000, gas_price=1000 * GWEI), base=usdt,
             token="ETH_USDT", amount="9999.99")
    assert 1_400_000 * 10**12 // 10**6 == 1400 * 10**9
    sol_emit("fee_sol_priority_1400_sol_reject", "a SOL transfer whose compute-unit price (10^12 micro-lamports "
             "x 1,400,000 CU) makes a 1,400 SOL priority fee", "REJECT", r,
             sol_message([set_compute_unit_limit(1_400_000), set_compute_unit_price(10**12),
                          sol_transfer(1_500_000_000)]), base=eth)
    sol_emit("fee_sol_priority_over_cap_reject", "a SOL transfer whose priority fee (200,000 CU x 10^8 "
             "micro-lamports = 0.02 SOL) is over the 0.01 SOL cap", "REJECT", r,
             sol_message([set_compute_unit_limit(200_000), set_compute_unit_price(10**8),
                          sol_transfer(1_500_000_000)]), base=eth)
    sol_emit("fee_sol_price_without_limit_reject", "a SOL transfer setting only a compute-unit price (10^11 "
             "micro-lamports x the default 200,000 CU = 20 SOL)", "REJECT", r,
             sol_message([set_compute_unit_price(10**11), sol_transfer(1_500_000_000)]), base=eth)
    tron_emit("fee_tron_trc20_fee_limit_15000_trx_reject", "a TRC-20 USDT transfer with a 15,000 TRX fee_limit",
              "REJECT", r, tron_pay("TRON_USDT", TRON_DEST, "25", fee_limit=15_000 * 10**6), base=eth,
              token="TRON_USDT", amount="25")
    tron_emit("fee_tron_trc20_fee_limit_1000_trx_reject", "a TRC-20 USDT transfer with a 1,000 TRX fee_limit "
              "(cap 150 TRX)", "REJECT", r, tron_pay("TRON_USDT", TRON_DEST, "25", fee_limit=1_000 * 10**6),
              base=eth, token="TRON_USDT", amount="25")


def kind_attacks(eth):
    """EVM kinds outside data.integrity.evm_tx_kinds, each otherwise a plain bound ETH transfer."""
    value = base_units("0.75", 18)
    blob = evm_tx("eip4844", value=value, extra={
        "maxFeePerBlobGas": GWEI,
        # A versioned hash: 0x01 (KZG) || 31 bytes of sha256 of a commitment.
        "blobVersionedHashes": [b"\x01" + hashlib.sha256(b"tss-gate fixture blob").digest()[1:]]})
    evm_emit("kind_eip4844_blob_reject", "a type-3 blob (EIP-4844) transaction paying 0.75 ETH to an allowed "
             "address on chain id 1", "REJECT", ["is not admitted"], "eip4844", blob, base=eth)
    # The authority is the source account itself (its private key is public:
    # BIP32 test vector 1), delegating its code to Mallory's contract; the
    # authorization nonce is the transaction nonce + 1, as for a self-sponsored one.
    priv = Bip32Slip10Secp256k1.FromSeed(keys.TV1_SEED).DerivePath(EVM_PATH).PrivateKey().Raw().ToBytes()
    authority = Account.from_key(priv)
    assert authority.address == EVM_SOURCE

    def auth(chain_id):
        a = authority.sign_authorization({"chainId": chain_id, "address": to_checksum_address(MALLORY),
                                          "nonce": 18})
        return evm_tx("eip7702", value=value, gas=60000, extra={"authorizationList": [a]})
    evm_emit("kind_eip7702_set_code_reject", "a type-4 set-code (EIP-7702) transaction paying 0.75 ETH whose "
             "authorization (chain id 1) delegates the source account's code", "REJECT", ["is not admitted"],
             "eip7702", auth(1), base=eth)
    evm_emit("kind_eip7702_any_chain_authorization_reject", "a type-4 set-code (EIP-7702) transaction whose "
             "authorization has chain id 0 (valid on every chain)", "REJECT", ["is not admitted", "chain id"],
             "eip7702", auth(0), base=eth)


def key_attacks(eth, usdt):
    """Key/source not bound: coin type, derived address, raw-tx owner/payer, path count."""
    ok_eth = evm_pay("eip1559", "ETH", ETH_DEST, "0.75")
    ok_trx = tron_pay("TRON", TRON_DEST, "1.5")
    ok_sol = sol_message([sol_transfer(1_500_000_000)])
    # Coin type: the source IS the address of the path's key, so only the coin type is wrong.
    evm_emit("key_bitcoin_coin_type_on_eth_reject", "ETH transfer signed with path m/44/0/0/0/0 (Bitcoin coin type)",
             "REJECT", ["coin type"], "eip1559", ok_eth, base=eth, paths=["m/44/0/0/0/0"],
             source=keys.evm_address("m/44/0/0/0/0"))
    eth_key_on_tron = keys.tron_address(EVM_PATH)
    tron_emit("key_eth_coin_type_on_tron_reject", "TRX transfer signed with path m/44/60/0/0/0 (Ethereum coin "
              "type) from that key's TRON account", "REJECT", ["coin type"],
              tron_pay("TRON", TRON_DEST, "1.5", owner=eth_key_on_tron), base=eth, paths=[EVM_PATH],
              source=eth_key_on_tron)
    sol_emit("key_eth_coin_type_on_sol_reject", "SOL transfer signed with path m/44/60/0/0/0 (Ethereum coin "
             "type)", "REJECT", ["coin type"], ok_sol, base=eth, paths=[EVM_PATH])
    # The key the node signs with is not the source's.
    evm_emit("key_other_index_eth_reject", "ETH transfer signed with m/44/60/0/0/5 (another account of the same "
             "key) while source.address is account 0", "REJECT", ["signs for"], "eip1559", ok_eth, base=eth,
             paths=["m/44/60/0/0/5"])
    tron_emit("key_other_index_tron_reject", "TRX transfer from account 0 signed with m/44/195/0/0/5 (another "
              "account of the same key)", "REJECT", ["signs for"], ok_trx, base=eth, paths=["m/44/195/0/0/5"])
    evm_emit("key_other_root_eth_reject", "ETH transfer whose root_pub_key is another key (BIP32 test vector 2) "
             "with the same source and path", "REJECT", ["signs for"], "eip1559", ok_eth, base=eth,
             root=keys.OTHER_ROOT_XPUB)
    tron_emit("key_other_root_tron_reject", "TRX transfer whose root_pub_key is another key (BIP32 test vector "
              "2) with the same source and path", "REJECT", ["signs for"], ok_trx, base=eth,
              root=keys.OTHER_ROOT_XPUB)
    other_evm = keys.evm_address("m/44/60/0/0/1")

    def other_source_path(detail, extra):
        extra["source_addresses"][0]["path"] = "m/44/60/0/0/1"
    evm_emit("key_source_other_address_eth_reject", "ETH transfer described from account 1 of the allowed "
             "wallet but signed with account 0's key", "REJECT", ["signs for", "source address"], "eip1559",
             ok_eth, base=eth, source=other_evm, mutate=other_source_path)
    # The raw tx spends from / pays fees with another account than the source.
    tron_emit("key_tron_owner_other_account_reject", "TRX transfer whose owner_address is account 1 while "
              "source and path are account 0", "REJECT", ["source address"],
              tron_pay("TRON", TRON_DEST, "1.5", owner=keys.tron_address("m/44/195/0/0/1")), base=eth)
    tron_emit("key_tron_trc20_owner_other_account_reject", "TRC-20 USDT transfer whose owner_address is "
              "account 1 while source and path are account 0", "REJECT", ["source address"],
              tron_pay("TRON_USDT", TRON_DEST, "25", owner=keys.tron_address("m/44/195/0/0/1")), base=eth,
              token="TRON_USDT", amount="25")
    sol_emit("key_sol_fee_payer_other_reject", f"SOL transfer from the source whose fee payer is another key "
             f"({SOL_OTHER})", "REJECT", ["source address"],
             sol_message([sol_transfer(1_500_000_000)], payer=SOL_OTHER), base=eth)
    sol_emit("key_sol_transfer_from_other_reject", "SOL transfer paid for by the source but moving another "
             f"key's lamports ({SOL_OTHER})", "REJECT", ["source address"],
             sol_message([sol_transfer(1_500_000_000, frm=SOL_OTHER)]), base=eth)
    sol_emit("key_spl_owner_other_reject", "SPL TransferChecked of USDC paid for by the source but from "
             f"another owner's token account ({SOL_OTHER})", "REJECT", ["source address"],
             sol_message([spl_transfer_checked(2_500_000, owner=SOL_OTHER)]), base=eth, token="SOL_USDC",
             amount="2.5")
    # One path per msg hash.
    evm_emit("key_two_paths_one_hash_eth_reject", "ETH transfer with one msg hash but two bip32 paths",
             "REJECT", ["one path per"], "eip1559", ok_eth, base=eth, paths=[EVM_PATH, EVM_PATH])
    evm_emit("key_one_path_two_hashes_eth_reject", "ETH transfer whose msg_hash_list names its hash twice "
             "with one bip32 path", "REJECT", ["one path per"], "eip1559", ok_eth, base=eth,
             hashes=[ok_eth[1].hex()] * 2, paths=[EVM_PATH])
    tron_emit("key_two_paths_one_hash_tron_reject", "TRX transfer with one msg hash but two bip32 paths",
              "REJECT", ["one path per"], ok_trx, base=eth, paths=[TRON_PATH, TRON_PATH])
    sol_emit("key_two_paths_one_hash_sol_reject", "SOL transfer with one message but two bip32 paths", "REJECT",
             ["one path per"], ok_sol, base=eth, paths=[SOL_PATH, SOL_PATH])


# ---------------------------------------------------------------- self-check


def self_check():
    """Re-reads every written fixture and recomputes what it claims."""
    ids = set()
    for path in sorted(glob.glob(os.path.join(FIXTURES, "*.json"))):
        name = os.path.basename(path)
        fx = load(path)
        rid = fx["request"]["request_id"]
        assert rid not in ids, f"{name}: duplicate request_id {rid}"
        ids.add(rid)
        if fx["request"]["request_type"] != 2 or "btc" in name:
            continue
        assert fx["expect"]["action"] == ("APPROVE" if name.endswith("_approve.json") else "REJECT"), name
        detail, extra = parts(fx)
        tx = extra.get("transaction")
        if not tx:
            continue
        chain = tx["chain_id"]
        is_attack = any(name.startswith(f"integrity_{c}_") for c in ("chain", "token", "rawtx", "fee", "kind", "key"))
        raw_hex = (tx.get("raw_tx_info") or {}).get("unsigned_raw_tx")
        if fx["expect"]["action"] == "APPROVE" or (is_attack and not name.startswith("integrity_key_")):
            # Bound: one path per hash, right coin type, source = derived.
            paths = detail["bip32_path_list"]
            assert detail["root_pub_key"] == keys.ROOT_XPUB, name
            assert paths == [default_path(chain)] * len(detail["msg_hash_list"]), name
            src = tx["source"]["address"]
            if chain in EVM_CHAINS:
                assert src.lower() == keys.evm_address(paths[0]).lower(), name
            elif chain == "TRON":
                assert src == keys.tron_address(paths[0]), name
            else:
                assert src == str(SOL_SOURCE), name
            assert extra["source_addresses"][0]["address"] == src, name
        if not raw_hex or "garbage" in name or "truncated" in name or "odd_hex" in name or "trailing" in name:
            continue
        body = raw_hex[2:] if raw_hex.startswith("0x") else raw_hex
        raw = bytes.fromhex(body)
        hashes = detail["msg_hash_list"]
        if chain in EVM_CHAINS:
            h = keccak(raw).hex()
            if raw[0] >= 0xc0:  # legacy: rlp list
                fields = rlp.decode(raw)
                to, data = fields[3], fields[5]
            else:
                fields = rlp.decode(raw[1:])
                to, data = fields[5], fields[7]
                if raw[0] == 1:
                    to, data = fields[4], fields[6]
            if fx["expect"]["action"] == "APPROVE":
                assert hashes == [h], name
                assert raw[0] in (1, 2) or len(fields) == 9, name  # admitted kinds only
                cid = int.from_bytes(fields[0] if raw[0] < 0xc0 else fields[6], "big")
                assert cid == 1, name
                token = tx["token_id"]
                if token in CONTRACTS:
                    assert "0x" + to.hex() == CONTRACTS[token] and data[:4] == ERC20_TRANSFER, name
                    assert "0x" + data[16:36].hex() == tx["destination"]["account_output"]["address"].lower(), name
                else:
                    assert "0x" + to.hex() == tx["destination"]["account_output"]["address"].lower(), name
        elif chain == "TRON":
            h = hashlib.sha256(raw).hexdigest()
            r = TRON["raw"]()
            r.ParseFromString(raw)
            c = r.contract[0]
            cls = TRON["TransferContract"] if c.type == 1 else TRON["TriggerSmartContract"]
            p = cls()
            p.ParseFromString(c.parameter.value)
            if fx["expect"]["action"] == "APPROVE":
                assert hashes == [h], name
                assert tron_addr(p.owner_address) == tx["source"]["address"], name
                assert r.fee_limit <= 100 * 10**6, name
                if c.type == 31:
                    assert tron_addr(p.contract_address) == TRON_USDT, name
        else:
            if raw[0] == 1 and len(raw) > 65 and raw[1:65] == b"\x00" * 64:
                raw = raw[65:]
            if fx["expect"]["action"] == "APPROVE":
                assert hashes == [raw.hex()], name
                msg = (MessageV0 if raw[0] & 0x80 else Message).from_bytes(raw[1:] if raw[0] & 0x80 else raw)
                assert str(msg.account_keys[0]) == str(SOL_SOURCE), name
                for ix in msg.instructions:
                    prog = str(msg.account_keys[ix.program_id_index])
                    if prog == str(TOKEN_PROGRAM):
                        assert ix.data[0] == 12, name  # TransferChecked only
                        assert msg.account_keys[ix.accounts[1]] == USDC_MINT, name
                        assert msg.account_keys[ix.accounts[3]] == SOL_SOURCE, name
                    elif prog == "11111111111111111111111111111111":
                        assert msg.account_keys[ix.accounts[0]] == SOL_SOURCE, name
    print(f"self-check: {len(ids)} fixtures, request ids unique")


def description_variants():
    """Fixtures that are an approving fixture with one request field changed (the signed bytes stay
    the approving fixture's): tweaks, signature types, a token call described as the native coin.
    Runs after the approving fixtures exist; the BTC ones read gen_btc_vectors.py's output."""
    def variant(src, dst, desc, reasons, detail=None, extra=None):
        fx = load(os.path.join(FIXTURES, src))
        r = fx["request"]
        d, e = json.loads(r["request_detail"]), json.loads(r["extra_info"])
        if detail:
            detail(d)
        if extra:
            extra(e)
        r["request_detail"] = json.dumps(d, separators=(",", ":"))
        r["extra_info"] = json.dumps(e, separators=(",", ":"))
        r["request_id"] = "integrity-" + dst[len("integrity_"):-len(".json")]
        fx["description"] = desc
        fx["expect"] = {"action": "REJECT", "status": 0, "reasons": reasons}
        save(os.path.join(FIXTURES, dst), fx)
        WRITTEN.append(dst)

    def setter(key, value):
        return lambda d: d.__setitem__(key, value)

    tweak = "7b" * 32
    variant("keysign_eth_approve.json", "integrity_key_tweak_eth_reject.json",
            "ETH transfer otherwise bound, with a non-empty tweak: the node would sign with another key than "
            "the path's", ["a tweak changes the key that signs"], detail=setter("tweak_list", [tweak]))
    variant("integrity_tron_trx_transfer_ok_approve.json", "integrity_key_tweak_tron_reject.json",
            "TRON transfer otherwise bound, with a non-empty tweak", ["a tweak changes the key that signs"],
            detail=setter("tweak_list", ["01"]))
    variant("integrity_btc_p2wpkh_with_change_approve.json", "integrity_key_tweak_btc_reject.json",
            "BTC spend otherwise bound, with a non-empty tweak for its input",
            ["a tweak changes the key that signs"], detail=setter("tweak_list", [tweak]))

    def native(e):
        e["transaction"]["token_id"] = "ETH"
        e["transaction"]["asset_id"] = "ETH"
    variant("integrity_eip1559_eth_usdt_approve.json", "integrity_token_native_described_erc20_call_reject.json",
            "ERC-20 USDT transfer described as the native coin ETH: the token call escapes the ETH caps",
            ["is the native coin of chain `ETH`"], extra=native)
    variant("keysign_eth_approve.json", "integrity_key_eddsa_on_eth_reject.json",
            "ETH transfer otherwise bound, signed as EdDSA (signature_type 2): another key share and scheme "
            "than ETH verifies", ["verifies signature type 1"], detail=setter("signature_type", 2))
    variant("integrity_tron_trx_transfer_ok_approve.json", "integrity_key_schnorr_on_tron_reject.json",
            "TRON transfer otherwise bound, signed as Schnorr (signature_type 3)", ["verifies signature type 1"],
            detail=setter("signature_type", 3))
    variant("integrity_sol_transfer_ok_approve.json", "integrity_key_ecdsa_on_sol_reject.json",
            "Solana transfer otherwise bound, signed as ECDSA (signature_type 1)", ["verifies signature type 2"],
            detail=setter("signature_type", 1))
    variant("integrity_btc_p2wpkh_with_change_approve.json", "integrity_key_schnorr_on_btc_p2wpkh_reject.json",
            "BTC P2WPKH spend otherwise bound, signed as Schnorr (signature_type 3)",
            ["verifies signature type 1"], detail=setter("signature_type", 3))
    variant("keysign_eth_approve.json", "integrity_key_signature_type_missing_reject.json",
            "ETH transfer otherwise bound, without a signature_type", ["signature_type is missing"],
            detail=lambda d: d.pop("signature_type"))


def main():
    refresh_existing()
    eth = load(os.path.join(FIXTURES, "keysign_eth_approve.json"))
    usdt = load(os.path.join(FIXTURES, "keysign_usdt_under_cap_approve.json"))
    for old in glob.glob(os.path.join(FIXTURES, "integrity_*.json")):
        if "btc" not in os.path.basename(old):  # Bitcoin fixtures belong to another generator
            os.remove(old)
    evm_integrity(eth, usdt)
    tron_integrity(eth)
    sol_integrity(eth)
    chain_attacks(eth, usdt)
    token_attacks(eth, usdt)
    rawtx_attacks(eth)
    fee_attacks(eth, usdt)
    kind_attacks(eth)
    key_attacks(eth, usdt)
    description_variants()
    print(f"wrote {len(WRITTEN)} integrity fixtures")
    self_check()
    print(f"EVM source ({EVM_PATH}): {EVM_SOURCE}")
    print(f"TRON source ({TRON_PATH}): {TRON_SOURCE}")
    print(f"SOL source ({SOL_PATH}, fixed key): {SOL_SOURCE}; USDC ATA of {SOL_DEST}: {SOL_DEST_USDC_ATA}")


if __name__ == "__main__":
    main()
