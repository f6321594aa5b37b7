#!/usr/bin/env python3
"""Second opinion on the KEYSIGN fixtures: decode every raw transaction back
(pyrlp, google.protobuf, solders), re-derive every key (fixture_keys.py), and
predict with a small Python model of the shipped policy and data which deny
rules fire. Written apart from the generator, from the decoding side, so an
encoding slip in gen_fixture_txs.py shows up here. It is NOT tss-gate: only a
model, to catch fixtures whose expectation cannot hold.

    .venv/bin/pip install pyyaml   # plus the generator's packages
    .venv/bin/python tests/vectors/check_fixtures.py [path/to/data.yaml]

It fails when an APPROVE fixture would be denied, when a REJECT fixture's
`expect.reasons` are not all in the predicted messages, or when an attack
fixture (integrity_<class>_...) trips a deny rule of another class than its
own; other extra denials are listed for information.
"""

import glob
import hashlib
import json
import os
import sys
from decimal import Decimal

import rlp
import yaml
from eth_hash.auto import keccak
from solders.message import Message, MessageV0
from solders.pubkey import Pubkey

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import fixture_keys as keys  # noqa: E402
from gen_vectors import tron_addr, tron_messages  # noqa: E402

REPO = os.path.join(HERE, "..", "..")
TRON = tron_messages()
SYSTEM = "11111111111111111111111111111111"
TOKEN_PROGRAM = "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA"
COMPUTE_BUDGET = "ComputeBudget111111111111111111111111111111"
ATA_PROGRAM = Pubkey.from_string("ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL")


def units(amount: str, decimals: int):
    d = Decimal(amount) * (Decimal(10) ** decimals)
    return int(d) if d == int(d) else None


def u(b: bytes) -> int:
    return int.from_bytes(b, "big")


# ---------------------------------------------------------------- decoders -> facts


def erc20_transfer(data: bytes):
    if len(data) == 68 and data[:4] == bytes.fromhex("a9059cbb"):
        return data[16:36], u(data[36:68])
    return None


def decode_evm(raw: bytes):
    f = {"kind": None, "chain_id": None, "auth_chain_ids": []}
    if raw[0] >= 0xC0:
        fields = rlp.decode(raw)
        if len(fields) == 6:
            f["kind"] = "legacy"
        elif len(fields) == 9 and fields[7] == b"" and fields[8] == b"":
            f["kind"], f["chain_id"] = "legacy_eip155", u(fields[6])
        else:
            raise ValueError("not an unsigned legacy tx")
        gas_price, gas, to, value, data = u(fields[1]), u(fields[2]), fields[3], u(fields[4]), fields[5]
        f["fee"] = gas * gas_price
    else:
        t, fields = raw[0], rlp.decode(raw[1:])
        n = {1: 8, 2: 9, 3: 11, 4: 10}[t]
        assert len(fields) == n, "field count"
        f["kind"] = {1: "eip2930", 2: "eip1559", 3: "eip4844", 4: "eip7702"}[t]
        f["chain_id"] = u(fields[0])
        if t == 1:
            gas_price, gas, to, value, data = u(fields[2]), u(fields[3]), fields[4], u(fields[5]), fields[6]
            f["fee"] = gas * gas_price
        else:
            max_fee, gas, to, value, data = u(fields[3]), u(fields[4]), fields[5], u(fields[6]), fields[7]
            f["fee"] = gas * max_fee
            if t == 3:
                f["fee"] += len(fields[10]) * 131072 * u(fields[9])
            if t == 4:
                f["auth_chain_ids"] = [u(a[0]) for a in fields[9]]
    f["hash"] = [keccak(raw).hex()]
    f["transfers"] = []
    tt = erc20_transfer(data)
    if tt:
        f["transfers"].append({"to": "0x" + tt[0].hex(), "amount": tt[1], "asset": "0x" + to.hex()})
    elif data == b"":
        f["transfers"].append({"to": "0x" + to.hex(), "amount": value, "asset": None})
    else:
        f["other"] = "a contract call"
    if tt and value:
        f["other"] = "a token transfer that also moves native coin"
    f["authorities"] = []
    f["eq"] = lambda a, b: a.lower() == b.lower()
    f["native_decimals_fee"] = 18
    return f


def decode_tron(raw: bytes):
    r = TRON["raw"]()
    r.ParseFromString(raw)
    assert r.SerializeToString() == raw, "not canonical"
    assert len(r.contract) == 1
    c = r.contract[0]
    f = {"hash": [hashlib.sha256(raw).hexdigest()], "transfers": [], "eq": lambda a, b: a == b}
    f["fee"] = r.fee_limit + (len(raw) + 134) * 1000 + 1_100_000
    f["native_decimals_fee"] = 6
    if c.type == 1:
        p = TRON["TransferContract"]()
        p.ParseFromString(c.parameter.value)
        f["transfers"].append({"to": tron_addr(p.to_address), "amount": p.amount, "asset": None})
    elif c.type == 31:
        p = TRON["TriggerSmartContract"]()
        p.ParseFromString(c.parameter.value)
        tt = erc20_transfer(p.data)
        assert tt and not p.call_value
        f["transfers"].append({"to": tron_addr(b"\x41" + tt[0]), "amount": tt[1],
                               "asset": tron_addr(p.contract_address)})
    else:
        raise ValueError("contract type")
    f["authorities"] = [tron_addr(p.owner_address)]
    return f


def decode_sol(raw: bytes):
    if len(raw) > 65 and raw[0] == 1 and raw[1:65] == b"\x00" * 64:
        raw = raw[65:]
    if raw[0] & 0x80:
        assert raw[0] == 0x80
        m = MessageV0.from_bytes(raw[1:])
        assert bytes([0x80]) + bytes(m) == raw, "not canonical"
    else:
        m = Message.from_bytes(raw)
        assert bytes(m) == raw, "not canonical"
    keys_ = [str(k) for k in m.account_keys]
    f = {"hash": [raw.hex()], "transfers": [], "eq": lambda a, b: a == b, "native_decimals_fee": 9}
    f["authorities"] = [keys_[0]]
    limit, price, n_other = None, 0, 0
    for ix in m.instructions:
        prog = keys_[ix.program_id_index]
        acc = [keys_[i] for i in bytes(ix.accounts)]
        d = bytes(ix.data)
        if prog == COMPUTE_BUDGET:
            if d[0] == 2:
                limit = int.from_bytes(d[1:5], "little")
            elif d[0] == 3:
                price = int.from_bytes(d[1:9], "little")
            continue
        n_other += 1
        if prog == SYSTEM and d[:4] == b"\x02\x00\x00\x00" and len(d) == 12:
            f["transfers"].append({"to": acc[1], "amount": int.from_bytes(d[4:12], "little"), "asset": None})
            f["authorities"].append(acc[0])
        elif prog == TOKEN_PROGRAM and d[0] == 12 and len(d) == 10:
            f["transfers"].append({"to": acc[2], "amount": int.from_bytes(d[1:9], "little"), "asset": acc[1],
                                   "decimals": d[9]})
            f["authorities"].append(acc[3])
        elif prog == TOKEN_PROGRAM and d[0] == 3 and len(d) == 9:
            f["transfers"].append({"to": acc[1], "amount": int.from_bytes(d[1:9], "little"), "asset": "?"})
            f["authorities"].append(acc[2])
        else:
            f["other"] = "an unknown instruction"
    units_ = min(limit if limit is not None else n_other * 200_000, 1_400_000)
    f["fee"] = 5000 * m.header.num_required_signatures + -(-units_ * price // 10**6)
    return f


# ---------------------------------------------------------------- the model


def predict(detail, extra, data):
    """[(class, message)] of the deny rules the model expects to fire."""
    ks, integ = data["keysign"], data["integrity"]
    out = []
    tx = extra.get("transaction")
    if not isinstance(tx, dict):
        return [("keysign", "extra_info.transaction is missing")]
    hashes = detail.get("msg_hash_list") or []
    if not hashes:
        out.append(("keysign", "request_detail.msg_hash_list is missing or empty"))
    chain, token = tx.get("chain_id"), tx.get("token_id")
    wallets = {extra.get("wallet", {}).get("wallet_id"), tx.get("wallet_id"), tx.get("source", {}).get("wallet_id")}
    for w in wallets - {None}:
        if w not in ks["allowed_wallet_ids"]:
            out.append(("keysign", f"wallet `{w}` is not in the allowed wallet list"))
    if token not in ks["allowed_token_ids"]:
        out.append(("keysign", f"token `{token}` is not in the allowed token list"))
    dest = tx.get("destination") or {}
    if dest.get("destination_type") not in ks["allowed_destination_types"]:
        out.append(("keysign", f"destination type `{dest.get('destination_type')}` is not in the allowed "
                               "destination types"))
    ao = dest.get("account_output") or {}
    lc = chain in ks["lowercase_address_chains"]
    addr = ao.get("address")
    norm = (lambda a: a.lower()) if lc else (lambda a: a)
    if addr is not None and not ks["allowed_destinations"].get(chain, {}).get(norm(addr)):
        out.append(("keysign", f"destination address `{addr}` on chain `{chain}` is not in the allowed "
                               "destination list"))
    amount = ao.get("amount")
    cap = ks["max_amount_per_tx"].get(token)
    if cap is not None and amount is not None and Decimal(amount) > Decimal(cap):
        out.append(("keysign", f"amount `{amount}` of token `{token}` exceeds the per-transaction cap `{cap}`"))
    uc = ks["usdt_cap"]
    if token in uc["token_ids"] and amount is not None and Decimal(amount) > Decimal(uc["max_amount"]) and \
            not ks["treasury_addresses"].get(chain, {}).get(norm(addr)):
        out.append(("keysign", f"USDT amount `{amount}` of token `{token}` exceeds the `{uc['max_amount']}` "
                               "per-transaction cap"))
    # Integrity.
    if chain in integ.get("unverified_chains", []):
        return out
    cinfo = integ["chains"].get(chain)
    tinfo = integ["tokens"].get(token)
    if cinfo is None:
        out.append(("chain", f"chain `{chain}` is not in data.integrity.chains"))
    if tinfo is None:
        out.append(("token", f"token `{token}` is not in data.integrity.tokens"))
    elif tinfo["chain"] != chain:
        out.append(("token", f"token `{token}` belongs to chain `{tinfo['chain']}`, not to the described chain "
                             f"`{chain}`"))
    raw_hex = (tx.get("raw_tx_info") or {}).get("unsigned_raw_tx")
    if not isinstance(raw_hex, str) or raw_hex == "":
        out.append(("rawtx", f"chain `{chain}` requires `unsigned_raw_tx`"))
        return out
    if cinfo is None:
        return out
    try:
        body = raw_hex[2:] if raw_hex[:2] in ("0x", "0X") else raw_hex
        raw = bytes.fromhex(body)
        fam = cinfo["family"]
        f = {"evm": decode_evm, "tron": decode_tron, "solana": decode_sol}[fam](raw)
    except Exception as e:  # noqa: BLE001
        out.append(("decode", f"`unsigned_raw_tx` on chain `{chain}` cannot be decoded: {e!r}"))
        return out
    norm_h = lambda h: (h[2:] if h[:2] in ("0x", "0X") else h).lower()  # noqa: E731
    unmatched = [h for h in hashes if norm_h(h) not in f["hash"]]
    if unmatched or not hashes:
        out.append(("hash", f"msg_hash_list entries [{', '.join(unmatched)}] are not signing hashes"))
    # Description.
    eq = f["eq"]
    if f.get("other"):
        out.append(("desc", f"raw transaction disagrees with the description: raw tx is {f['other']}"))
    elif len(f["transfers"]) != 1:
        out.append(("desc", "raw transaction disagrees with the description: transfers"))
    else:
        t = f["transfers"][0]
        if tinfo is not None:
            if t["asset"] is None and not tinfo.get("native"):
                out.append(("desc", "raw transaction disagrees with the description: asset: native coin"))
            if t["asset"] is not None and tinfo.get("native"):
                out.append(("desc", "raw transaction disagrees with the description: asset: token"))
        same = addr is not None and eq(t["to"], addr)
        if not same and fam == "solana" and t["asset"] not in (None, "?") and addr is not None:
            ata = Pubkey.find_program_address([bytes(Pubkey.from_string(addr)),
                                               bytes(Pubkey.from_string(TOKEN_PROGRAM)),
                                               bytes(Pubkey.from_string(t["asset"]))], ATA_PROGRAM)[0]
            same = str(ata) == t["to"]
        if not same:
            out.append(("desc", f"raw transaction disagrees with the description: recipient: raw tx pays "
                                f"{t['to']} but the description says {addr}"))
        if tinfo is not None:
            if "decimals" in t and t["decimals"] != tinfo["decimals"]:
                out.append(("desc", "raw transaction disagrees with the description: decimals"))
            want = units(amount, tinfo["decimals"]) if amount is not None else None
            if want != t["amount"]:
                out.append(("desc", f"raw transaction disagrees with the description: amount: raw tx moves "
                                    f"{t['amount']} base units but the description says {amount} {token} = "
                                    f"{want} base units"))
    # Bindings.
    if fam == "evm":
        if f["chain_id"] is None:
            out.append(("chain", "raw tx carries no chain id (pre-EIP-155)"))
        elif f["chain_id"] != cinfo["evm_chain_id"]:
            out.append(("chain", f"raw tx is for chain id {f['chain_id']} but `{chain}` is chain id "
                                 f"{cinfo['evm_chain_id']}"))
        for a in f["auth_chain_ids"]:
            if a != cinfo["evm_chain_id"]:
                out.append(("chain", f"an EIP-7702 authorization is for chain id {a}"))
        if f["kind"] not in integ["evm_tx_kinds"]:
            out.append(("kind", f"EVM transaction kind `{f['kind']}` is not admitted"))
    if tinfo is not None and not tinfo.get("native"):
        pinned = tinfo.get("contract") or tinfo.get("mint")
        moved = [t["asset"] for t in f["transfers"] if t["asset"] is not None]
        if not moved:
            out.append(("token", f"token `{token}` on chain `{chain}` must move `{pinned}`, but the raw "
                                 "transaction makes no token transfer"))
        for a in moved:
            if a == "?":
                out.append(("token", "an SPL `Transfer` names no mint"))
            elif not eq(a, pinned):
                out.append(("token", f"token `{token}` on chain `{chain}` must move `{pinned}`, but the raw "
                                     f"transaction moves `{a}`"))
    paths = detail.get("bip32_path_list") or []
    if len(paths) != len(hashes):
        out.append(("key", f"bip32_path_list has {len(paths)} paths for {len(hashes)} msg hashes: there must "
                           "be one path per hash"))
    source = (tx.get("source") or {}).get("address")
    for p in paths:
        coin = int(p.split("/")[2])
        if coin != cinfo["coin_type"]:
            out.append(("key", f"bip32 path `{p}` has coin type {coin} but chain `{chain}` uses coin type "
                               f"{cinfo['coin_type']}"))
        if fam in ("evm", "tron"):
            a = (keys.evm_address if fam == "evm" else keys.tron_address)(p, detail["root_pub_key"])
            if not eq(a, source):
                out.append(("key", f"the key at bip32 path `{p}` of root_pub_key signs for {a}, not the source "
                                   f"address {source}"))
    for a in dict.fromkeys(f["authorities"]):
        if not eq(a, source):
            out.append(("key", f"raw tx moves value or pays fees with account {a}, not the source address "
                               f"{source}"))
    cap_units = Decimal(cinfo["max_fee"]) * (Decimal(10) ** f["native_decimals_fee"])
    if f["fee"] > cap_units:
        whole = Decimal(f["fee"]) / (Decimal(10) ** f["native_decimals_fee"])
        out.append(("fee", f"the transaction may spend up to {whole} {cinfo['native_token']} on fees, over the "
                           f"cap {cinfo['max_fee']} for chain `{chain}`"))
    return out


# Attacks that by their nature also trip a second binding class (both named in expect.reasons or
# documented): a pre-EIP-155 tx is also a non-admitted kind; a chain-0 EIP-7702 authorization is a
# non-admitted kind AND an unbound chain id.
ALSO = {"integrity_chain_pre155_as_eth_reject": {"kind"},
        "integrity_kind_eip7702_any_chain_authorization_reject": {"chain"}}

CLASS_OF_PREFIX = {"chain": "chain", "token": "token", "rawtx": "rawtx", "fee": "fee", "kind": "kind",
                   "key": "key"}


def main():
    data_path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(REPO, "rego", "data.yaml")
    with open(data_path) as fh:
        data = yaml.safe_load(fh)
    if "chains" not in data.get("integrity", {}):
        sys.exit(f"{data_path} has no integrity.chains / integrity.tokens (the binding tables): pass a data.yaml "
                 "that has them")
    bad = 0
    for path in sorted(glob.glob(os.path.join(REPO, "tests", "fixtures", "*.json"))):
        name = os.path.basename(path)[:-5]
        with open(path) as fh:
            fx = json.load(fh)
        if fx["request"]["request_type"] != 2 or "btc" in name:
            continue
        r = fx["request"]
        detail = json.loads(r["request_detail"])
        extra = json.loads(r["extra_info"]) if r["extra_info"] else {}
        got = predict(detail, extra, data)
        msgs = "; ".join(m for _, m in got)
        classes = sorted({c for c, _ in got})
        exp = fx["expect"]
        problem = None
        if exp["action"] == "APPROVE" and got:
            problem = "approve fixture would be denied"
        elif exp["action"] == "REJECT":
            if not got:
                problem = "reject fixture would be approved"
            missing = [x for x in exp["reasons"] if x not in msgs]
            if missing:
                problem = f"reasons not predicted: {missing}"
            parts = name.split("_")
            if parts[0] == "integrity" and parts[1] in CLASS_OF_PREFIX:
                own = CLASS_OF_PREFIX[parts[1]]
                foreign = [c for c in classes
                           if c not in {own, "keysign", "desc", "hash"} | ALSO.get(name, set())]
                if foreign:
                    problem = (problem or "") + f" other binding classes fire: {foreign}"
        flag = "FAIL" if problem else "ok  "
        if problem:
            bad += 1
        print(f"{flag} {name}: {exp['action']} predicted {classes}{' -- ' + problem if problem else ''}")
        if problem or "-v" in sys.argv:
            for c, m in got:
                print(f"       [{c}] {m}")
    print(f"{bad} problem(s)")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
