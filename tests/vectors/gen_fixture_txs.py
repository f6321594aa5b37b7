#!/usr/bin/env python3
"""Give the KEYSIGN fixtures real unsigned transactions, and write the
transaction-integrity fixtures (tests/fixtures/integrity_*.json).

Raw transactions and hashes come from independent libraries (pyrlp, eth-hash,
eth-abi, each hash cross-checked with eth-account by gen_vectors.evm_unsigned),
never from tss-gate. Re-run:

    python3 -m venv .venv && .venv/bin/pip install eth-account eth-utils rlp solders protobuf
    .venv/bin/python tests/vectors/gen_fixture_txs.py

What it does:
- EVM fixtures (chain ETH) whose description is a plain transfer get an
  EIP-1559 transaction that pays exactly what the description says (native ETH,
  or an ERC-20 `transfer` for ETH_USDT), and `msg_hash_list` = its signing hash
  (an empty list stays empty: that fixture tests the empty list).
- Other fixtures lose the placeholder `raw_tx_info` (their chains are not
  decoded by default, or the task is a message signature).
- integrity_*: for each EVM transaction kind (legacy EIP-155, EIP-2930,
  EIP-1559, ERC-20 transfer) one agreeing fixture that must APPROVE and its
  tampered variants that must REJECT with a reason naming the mismatch.
"""

import copy
import glob
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from gen_vectors import ERC20_TRANSFER, USDT, erc20, evm_unsigned, hx  # noqa: E402

FIXTURES = os.path.join(HERE, "..", "fixtures")
MALLORY = "0xdbf03b407c01e7cd3cbea99509d93f8dddc8c6fb"
DECIMALS = {"ETH": 18, "ETH_USDT": 6, "ETH_PEPE": 18}
# ERC-20 contracts by token id (USDT's real address; PEPE's real address).
CONTRACTS = {"ETH_USDT": USDT, "ETH_PEPE": bytes.fromhex("6982508145454ce325ddbe47a25d4ec3d2311933")}


def base_units(amount: str, decimals: int) -> int:
    whole, _, frac = amount.partition(".")
    frac = (frac + "0" * decimals)[:decimals]
    return int(whole or "0") * 10**decimals + int(frac or "0")


def fields(kind, to_hex, value, data, nonce):
    to = bytes.fromhex(to_hex[2:].lower())
    f = {"nonce": nonce, "gas": 60000 if data else 21000, "to": to, "value": value, "data": data}
    if kind == "eip1559":
        f.update(chainId=1, maxFeePerGas=30_000_000_000, maxPriorityFeePerGas=1_500_000_000)
    else:
        f.update(gasPrice=20_000_000_000)
        if kind in ("legacy_eip155", "eip2930"):
            f["chainId"] = 1
    return f


def unsigned_for(kind, token, to_addr, amount, nonce=17):
    """(raw bytes, hash) of a transaction paying `amount` of `token` to `to_addr`."""
    if token == "ETH":
        f = fields(kind, to_addr, base_units(amount, 18), b"", nonce)
    else:
        data = erc20(ERC20_TRANSFER, ["address", "uint256"], [to_addr, base_units(amount, DECIMALS[token])])
        f = fields(kind, "0x" + CONTRACTS[token].hex(), 0, data, nonce)
    return evm_unsigned(kind, f)


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


def refresh_existing():
    for path in sorted(glob.glob(os.path.join(FIXTURES, "keysign_*.json"))):
        fx = load(path)
        detail, extra = parts(fx)
        tx = extra.get("transaction")
        if not tx:
            continue
        dest = tx.get("destination", {})
        if "raw_tx_info" not in tx:
            # Value-moving ETH fixtures must carry their bytes, as the node
            # sends them; others (message signatures, other chains) need none.
            if tx.get("chain_id") == "ETH" and dest.get("destination_type") == "Address":
                tx["raw_tx_info"] = {"used_nonce": 17, "unsigned_raw_tx": ""}
            else:
                continue
        out = dest.get("account_output")
        if tx.get("chain_id") == "ETH" and tx.get("token_id") in DECIMALS and out:
            try:
                raw, h = unsigned_for("eip1559", tx["token_id"], out["address"], out["amount"])
            except (ValueError, KeyError):
                raw = None
            if raw is not None:
                tx["raw_tx_info"]["unsigned_raw_tx"] = raw.hex()
                if detail.get("msg_hash_list"):
                    detail["msg_hash_list"] = [h.hex()]
                store(fx, detail, extra)
                save(path, fx)
                continue
        del tx["raw_tx_info"]
        store(fx, detail, extra)
        save(path, fx)


def integrity():
    eth = load(os.path.join(FIXTURES, "keysign_eth_approve.json"))
    usdt = load(os.path.join(FIXTURES, "keysign_usdt_under_cap_approve.json"))
    for old in glob.glob(os.path.join(FIXTURES, "integrity_*.json")):
        os.remove(old)
    n = 0

    def emit(name, base, kind, desc, raw, h, msg_hashes, action, reasons):
        nonlocal n
        n += 1
        fx = copy.deepcopy(base)
        detail, extra = parts(fx)
        tx = extra["transaction"]
        tx["raw_tx_info"]["unsigned_raw_tx"] = "0x" + raw.hex() if raw is not None else None
        if raw is None:
            del tx["raw_tx_info"]
        detail["msg_hash_list"] = msg_hashes if msg_hashes is not None else [h.hex()]
        fx["description"] = desc
        fx["request"]["request_id"] = f"integrity-{n:02d}-{name}"
        fx["expect"] = {"action": action, "status": 0, "reasons": reasons}
        store(fx, detail, extra)
        save(os.path.join(FIXTURES, f"integrity_{name}.json"), fx)

    for base, token in ((eth, "ETH"), (usdt, "ETH_USDT")):
        _, extra = parts(base)
        out = extra["transaction"]["destination"]["account_output"]
        to, amount = out["address"], out["amount"]
        kinds = ("legacy_eip155", "eip2930", "eip1559") if token == "ETH" else ("eip1559", "legacy_eip155")
        for kind in kinds:
            tag = f"{kind}_{token.lower()}"
            raw, h = unsigned_for(kind, token, to, amount)
            emit(f"{tag}_approve", base, kind,
                 f"{kind} {token} transfer whose bytes, hash and description agree", raw, h, None,
                 "APPROVE", [])
            emit(f"{tag}_wrong_hash_reject", base, kind,
                 f"{kind} {token}: msg_hash_list holds a hash of other bytes", raw, h,
                 ["0x" + "ab" * 32], "REJECT", ["msg_hash_list", "0x" + "ab" * 32])
            raw2, h2 = unsigned_for(kind, token, MALLORY, amount)
            emit(f"{tag}_recipient_swapped_reject", base, kind,
                 f"{kind} {token}: the signed bytes pay another address than described", raw2, h2,
                 None, "REJECT", [MALLORY])
            bigger = str(int(amount.split(".")[0]) + 1000) + ("." + amount.split(".")[1] if "." in amount else "")
            raw3, h3 = unsigned_for(kind, token, to, bigger)
            emit(f"{tag}_amount_raised_reject", base, kind,
                 f"{kind} {token}: the signed bytes move more than described", raw3, h3, None,
                 "REJECT", [str(base_units(bigger, DECIMALS[token]))])
    # ERC-20 recipient hidden in calldata: the description names the USDT
    # contract as destination, calldata pays Mallory.
    _, extra = parts(usdt)
    out = extra["transaction"]["destination"]["account_output"]
    raw, h = unsigned_for("eip1559", "ETH_USDT", MALLORY, out["amount"])
    hidden = copy.deepcopy(usdt)
    d, e = parts(hidden)
    e["transaction"]["destination"]["account_output"]["address"] = out["address"]
    store(hidden, d, e)
    emit("erc20_recipient_hidden_in_calldata_reject", hidden, "eip1559",
         "ERC-20 transfer described to an allow-listed address; the calldata pays another one",
         raw, h, None, "REJECT", [MALLORY])
    emit("raw_tx_missing_reject", eth, "eip1559",
         "ETH KEYSIGN without unsigned_raw_tx on a chain where data requires it", None, None,
         [eth_hash_of(eth)], "REJECT", ["unsigned_raw_tx"])
    emit("raw_tx_garbage_reject", eth, "eip1559",
         "unsigned_raw_tx that does not decode", bytes.fromhex("02deadbeef"), None,
         [eth_hash_of(eth)], "REJECT", ["cannot be decoded"])
    print(f"wrote {n} integrity fixtures")


def from_vectors():
    """TRON and Solana integrity fixtures from the independent vectors."""
    eth = load(os.path.join(FIXTURES, "keysign_eth_approve.json"))
    reasons_by_suffix = {
        "recipient_swapped": ["recipient"],
        "recipient_hidden": ["recipient"],
        "amount_raised": ["amount"],
        "wrong_msg_hash": ["msg_hash_list"],
        "owner_unprovable": ["raw transaction disagrees"],
        "truncated": ["cannot be decoded"],
        "garbage": ["cannot be decoded"],
        "odd_hex": ["cannot be decoded"],
        "trailing": ["cannot be decoded"],
    }
    n = 0
    for family in ("tron", "solana"):
        cases = load(os.path.join(HERE, f"{family}.json"))["cases"]
        for c in cases:
            name = c["name"]
            if name.endswith("_ok"):
                action, reasons = "APPROVE", []
            else:
                suffix = next((k for k in reasons_by_suffix if name.endswith(k)), None)
                if suffix is None:
                    continue
                action, reasons = "REJECT", reasons_by_suffix[suffix]
            fx = copy.deepcopy(eth)
            detail, extra = parts(fx)
            vtx = c["extra"]["transaction"]
            tx = extra["transaction"]
            for key in ("chain_id", "token_id", "destination", "raw_tx_info"):
                tx[key] = vtx[key]
            tx["asset_id"] = vtx["token_id"]
            detail["msg_hash_list"] = c["detail"]["msg_hash_list"]
            detail["signature_type"] = 2 if family == "solana" else 1
            fx["description"] = f"{family} vector `{name}` ({'agrees' if action == 'APPROVE' else 'tampered'})"
            n += 1
            fx["request"]["request_id"] = f"integrity-{family}-{n:02d}"
            fx["expect"] = {"action": action, "status": 0, "reasons": reasons}
            store(fx, detail, extra)
            save(os.path.join(FIXTURES, f"integrity_{name}_{action.lower()}.json"), fx)
    print(f"wrote {n} TRON/Solana integrity fixtures")


def eth_hash_of(fx):
    detail, _ = parts(fx)
    return detail["msg_hash_list"][0]


if __name__ == "__main__":
    refresh_existing()
    integrity()
    from_vectors()
