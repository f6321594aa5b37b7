#!/usr/bin/env python3
"""Generate independent test vectors for tss-gate's `derive` module.

Every raw transaction and signing hash here is produced by third-party
libraries, never by tss-gate itself:
  - EVM: pyrlp serialises the unsigned fields, eth-hash (pycryptodome) gives
    keccak256, and each hash is cross-checked against eth-account's own
    `serializable_unsigned_transaction_from_dict(...).hash()`; ERC-20 calldata
    comes from eth-abi.
  - TRON: google.protobuf (dynamic messages declared below from TRON's
    Tron.proto / balance_contract.proto / smart_contract.proto field numbers)
    serialises `Transaction.raw`; hashlib gives sha256.
  - Solana: solders builds and serialises messages and derives associated
    token accounts.

Re-run:  python3 -m venv .venv && .venv/bin/pip install eth-account eth-utils rlp solders protobuf
         .venv/bin/python tests/vectors/gen_vectors.py
It rewrites evm.json, tron.json and solana.json beside this file.

Each file is {"config": {...data.integrity chains and tokens...}, "cases": [...]}; a case carries
the `detail` and `extra` objects exactly as tss-gate receives them, and an
`expect` object. The Rust test compares every key of `expect` with the same
key of the derived JSON, except these helper keys:
  - `disagreement_contains`: substrings that must each occur in some entry of
    `disagreements`;
  - `error_contains`: a substring of `error` (which must be a string);
  - `derived_is_none`: true when derive must return None.
"""

import hashlib
import json
import os
import struct

import rlp
from eth_abi import encode as abi_encode
from eth_account._utils.legacy_transactions import (
    serializable_unsigned_transaction_from_dict,
)
from eth_hash.auto import keccak
from eth_utils import to_checksum_address

HERE = os.path.dirname(os.path.abspath(__file__))

# ---------------------------------------------------------------- helpers


def hx(b: bytes) -> str:
    return "0x" + b.hex()


def write(name, config, cases):
    path = os.path.join(HERE, name)
    with open(path, "w") as f:
        json.dump({"config": config, "cases": cases}, f, indent=1, sort_keys=True)
        f.write("\n")
    print(f"wrote {path}: {len(cases)} cases")


def keysign(msg_hashes, tx):
    detail = {
        "group_id": "g1",
        "root_pub_key": "03aa",
        "used_node_ids": ["n1", "n2"],
        "bip32_path_list": ["m/44/60/0/0/0"],
        "msg_hash_list": msg_hashes,
        "tweak_list": [],
        "signature_type": 1,
        "tss_protocol": 2,
        "task_id": "t1",
        "biz_task_id": tx.get("transaction_id", "tx1"),
    }
    extra = {"org": {"org_id": "o1"}, "transaction": tx}
    return detail, extra


def address_dest(address, amount):
    return {
        "destination_type": "Address",
        "account_output": {"address": address, "amount": amount, "memo": ""},
    }


def transaction(chain_id, token_id, destination, unsigned_raw_tx):
    return {
        "transaction_id": "tx-" + token_id.lower(),
        "type": "Withdrawal",
        "chain_id": chain_id,
        "token_id": token_id,
        "destination": destination,
        "raw_tx_info": {"used_nonce": 0, "unsigned_raw_tx": unsigned_raw_tx},
    }


# ---------------------------------------------------------------- EVM

ALICE = bytes.fromhex("5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed".lower())
BOB = bytes.fromhex("fB6916095ca1df60bB79Ce92cE3Ea74c37c5d359".lower())
MALLORY = bytes.fromhex("dbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB".lower())
USDT = bytes.fromhex("dAC17F958D2ee523a2206206994597C13D831ec7".lower())
SPENDER = bytes.fromhex("7a250d5630B4cF539739dF2C5dAcb4c659F2488D".lower())

ERC20_TRANSFER = bytes.fromhex("a9059cbb")
ERC20_TRANSFER_FROM = bytes.fromhex("23b872dd")
ERC20_APPROVE = bytes.fromhex("095ea7b3")


def erc20(selector, types, args):
    return selector + abi_encode(types, args)


def evm_unsigned(kind, f):
    """Serialise unsigned fields with pyrlp; cross-check the hash with eth-account."""
    to = f["to"]
    if kind == "legacy":
        fields = [f["nonce"], f["gasPrice"], f["gas"], to, f["value"], f["data"]]
        raw = rlp.encode(fields)
        acct_dict = {k: f[k] for k in ("nonce", "gasPrice", "gas", "value", "data")}
        acct_dict["to"] = to_checksum_address(to) if to else b""
    elif kind == "legacy_eip155":
        fields = [f["nonce"], f["gasPrice"], f["gas"], to, f["value"], f["data"], f["chainId"], 0, 0]
        raw = rlp.encode(fields)
        acct_dict = {k: f[k] for k in ("nonce", "gasPrice", "gas", "value", "data", "chainId")}
        acct_dict["to"] = to_checksum_address(to) if to else b""
    elif kind in ("eip2930", "eip1559"):
        al = [[a, [s for s in keys]] for a, keys in f.get("accessList", [])]
        if kind == "eip2930":
            fields = [f["chainId"], f["nonce"], f["gasPrice"], f["gas"], to, f["value"], f["data"], al]
            raw = b"\x01" + rlp.encode(fields)
        else:
            fields = [f["chainId"], f["nonce"], f["maxPriorityFeePerGas"], f["maxFeePerGas"], f["gas"],
                      to, f["value"], f["data"], al]
            raw = b"\x02" + rlp.encode(fields)
        acct_dict = {k: f[k] for k in f if k not in ("to", "accessList")}
        acct_dict["type"] = 1 if kind == "eip2930" else 2
        acct_dict["to"] = to_checksum_address(to) if to else b""
        acct_dict["accessList"] = [
            {"address": to_checksum_address(a), "storageKeys": [hx(s) for s in keys]}
            for a, keys in f.get("accessList", [])
        ]
    else:
        raise ValueError(kind)
    h = keccak(raw)
    # eth-account treats a legacy dict without chainId as pre-155.
    other = serializable_unsigned_transaction_from_dict(acct_dict).hash()
    assert h == other, (kind, h.hex(), other.hex())
    return raw, h


def evm_fees(kind, f):
    fees = {"gas_limit": str(f["gas"])}
    if kind == "eip1559":
        fees["max_fee_per_gas"] = str(f["maxFeePerGas"])
        fees["max_priority_fee_per_gas"] = str(f["maxPriorityFeePerGas"])
    else:
        fees["gas_price"] = str(f["gasPrice"])
    return fees


def gen_evm():
    # data.integrity tables (rego/data.yaml shape) for the chains used here.
    config = {
        "chains": {
            "ETH": {"family": "evm", "evm_chain_id": 1, "native_token": "ETH", "coin_type": 60, "max_fee": "0.05"},
            "BSC_BNB": {"family": "evm", "evm_chain_id": 56, "native_token": "BSC_BNB", "coin_type": 60,
                        "max_fee": "0.05"},
            "ARBITRUM_ETH": {"family": "evm", "evm_chain_id": 42161, "native_token": "ARBITRUM_ETH",
                             "coin_type": 60, "max_fee": "0.01"},
        },
        "tokens": {
            "ETH": {"chain": "ETH", "decimals": 18, "native": True},
            "ETH_USDT": {"chain": "ETH", "decimals": 6, "contract": hx(USDT)},
            "BSC_BNB": {"chain": "BSC_BNB", "decimals": 18, "native": True},
            "ARBITRUM_ETH": {"chain": "ARBITRUM_ETH", "decimals": 18, "native": True},
        },
    }
    cases = []

    def case(name, kind, f, chain, token, dest, *, msg=None, raw_hex=None, expect=None, extra_tx=None):
        raw, h = evm_unsigned(kind, f)
        rh = raw_hex(raw) if raw_hex else hx(raw)
        msgs = [hx(h)] if msg is None else msg(h)
        tx = transaction(chain, token, dest, rh)
        if extra_tx:
            tx.update(extra_tx)
        detail, extra = keysign(msgs, tx)
        exp = {
            "family": "evm",
            "kind": kind,
            "signing_hashes": [hx(h)],
            "nonce": str(f["nonce"]),
            "fees": evm_fees(kind, f),
            "to": hx(f["to"]) if f["to"] else None,
            "value": str(f["value"]),
            "error": None,
        }
        if kind != "legacy":
            exp["chain_id"] = str(f["chainId"])
        else:
            exp["chain_id"] = None
        exp.update(expect or {})
        cases.append({"name": name, "detail": detail, "extra": extra, "expect": exp})

    agree = {"msg_hashes_match": True, "unmatched_msg_hashes": [], "description_agrees": True,
             "disagreements": []}

    # 1. EIP-1559 native ETH transfer of 1.5 ETH.
    f1559 = {"chainId": 1, "nonce": 5, "maxPriorityFeePerGas": 1_500_000_000,
             "maxFeePerGas": 30_000_000_000, "gas": 21000, "to": BOB,
             "value": 1_500_000_000_000_000_000, "data": b""}
    case("eip1559_native_ok", "eip1559", f1559, "ETH", "ETH", address_dest(to_checksum_address(BOB), "1.5"),
         expect={**agree, "token_transfer": None,
                 "recipients": [{"address": hx(BOB), "amount": "1500000000000000000", "asset": "native"}]})
    # Same, description in lowercase, raw hex uppercase without 0x, msg hash uppercase without 0x.
    case("eip1559_native_uppercase_hex", "eip1559", f1559, "ETH", "ETH", address_dest(hx(BOB), "1.50"),
         raw_hex=lambda r: r.hex().upper(), msg=lambda h: [h.hex().upper()], expect=agree)
    case("eip1559_native_0X_prefix", "eip1559", f1559, "ETH", "ETH", address_dest(hx(BOB), "1.5"),
         raw_hex=lambda r: "0X" + r.hex(), expect=agree)
    # Tampered: a second msg hash the raw tx does not produce.
    bogus = "0x" + "11" * 32
    case("eip1559_extra_unknown_msg_hash", "eip1559", f1559, "ETH", "ETH", address_dest(hx(BOB), "1.5"),
         msg=lambda h: [hx(h), bogus],
         expect={"msg_hashes_match": False, "unmatched_msg_hashes": [bogus], "description_agrees": True})
    case("eip1559_wrong_msg_hash", "eip1559", f1559, "ETH", "ETH", address_dest(hx(BOB), "1.5"),
         msg=lambda h: [bogus], expect={"msg_hashes_match": False, "unmatched_msg_hashes": [bogus]})
    case("eip1559_empty_msg_hash_list", "eip1559", f1559, "ETH", "ETH", address_dest(hx(BOB), "1.5"),
         msg=lambda h: [], expect={"msg_hashes_match": False, "unmatched_msg_hashes": [],
                                   "description_agrees": True})
    # Tampered: description names another recipient / a higher amount.
    case("eip1559_recipient_swapped", "eip1559", f1559, "ETH", "ETH", address_dest(hx(MALLORY), "1.5"),
         expect={"msg_hashes_match": True, "description_agrees": False,
                 "disagreement_contains": ["recipient", hx(BOB), hx(MALLORY)]})
    case("eip1559_amount_raised", "eip1559", f1559, "ETH", "ETH", address_dest(hx(BOB), "1.6"),
         expect={"msg_hashes_match": True, "description_agrees": False,
                 "disagreement_contains": ["amount", "1500000000000000000", "1600000000000000000"]})
    case("eip1559_amount_too_precise", "eip1559", f1559, "ETH", "ETH",
         address_dest(hx(BOB), "1.5000000000000000001"),
         expect={"description_agrees": False, "disagreement_contains": ["amount"]})
    case("eip1559_unknown_decimals", "eip1559", f1559, "ETH", "ETH_FOO", address_dest(hx(BOB), "1.5"),
         expect={"description_agrees": False, "disagreement_contains": ["ETH_FOO"]})

    # 2. EIP-2930 native transfer with an access list.
    f2930 = {"chainId": 1, "nonce": 7, "gasPrice": 20_000_000_000, "gas": 30000, "to": BOB,
             "value": 250_000_000_000_000_000, "data": b"",
             "accessList": [(USDT, [b"\x00" * 31 + b"\x01"])]}
    case("eip2930_native_ok", "eip2930", f2930, "ETH", "ETH", address_dest(hx(BOB), "0.25"),
         expect={**agree, "access_list_len": 1})

    # 3. Legacy EIP-155 on BSC (chain 56).
    f155 = {"chainId": 56, "nonce": 0, "gasPrice": 5_000_000_000, "gas": 21000, "to": BOB,
            "value": 2 * 10**18, "data": b""}
    case("legacy_eip155_bsc_ok", "legacy_eip155", f155, "BSC_BNB", "BSC_BNB", address_dest(hx(BOB), "2"),
         expect=agree)
    case("legacy_eip155_amount_raised", "legacy_eip155", f155, "BSC_BNB", "BSC_BNB",
         address_dest(hx(BOB), "2.000000000000000001"),
         expect={"description_agrees": False, "disagreement_contains": ["2000000000000000001"]})

    # 4. Legacy pre-155.
    fpre = {"nonce": 300, "gasPrice": 10**9, "gas": 21000, "to": BOB, "value": 12345, "data": b""}
    case("legacy_pre155_ok", "legacy", fpre, "ETH", "ETH", address_dest(hx(BOB), "0.000000000000012345"),
         expect=agree)

    # 5. ERC-20 transfer of 12.5 USDT to BOB (tx goes to the USDT contract).
    calldata = erc20(ERC20_TRANSFER, ["address", "uint256"], [to_checksum_address(BOB), 12_500_000])
    ft = {"chainId": 1, "nonce": 9, "maxPriorityFeePerGas": 10**9, "maxFeePerGas": 40 * 10**9,
          "gas": 65000, "to": USDT, "value": 0, "data": calldata}
    tt_expect = {"standard": "erc20", "method": "transfer", "contract": hx(USDT), "from": None,
                 "recipient": hx(BOB), "amount": "12500000"}
    case("erc20_transfer_ok", "eip1559", ft, "ETH", "ETH_USDT", address_dest(hx(BOB), "12.5"),
         expect={**agree, "token_transfer": tt_expect,
                 "recipients": [{"address": hx(BOB), "amount": "12500000", "asset": hx(USDT)}]})
    # Tampered: description says the money goes to the token contract itself (recipient hidden in calldata).
    case("erc20_recipient_hidden_in_calldata", "eip1559", ft, "ETH", "ETH_USDT",
         address_dest(hx(USDT), "12.5"),
         expect={"description_agrees": False, "token_transfer": tt_expect,
                 "disagreement_contains": ["recipient", hx(BOB), hx(USDT)]})
    case("erc20_recipient_swapped", "eip1559", ft, "ETH", "ETH_USDT", address_dest(hx(MALLORY), "12.5"),
         expect={"description_agrees": False, "disagreement_contains": [hx(BOB), hx(MALLORY)]})
    case("erc20_amount_raised", "eip1559", ft, "ETH", "ETH_USDT", address_dest(hx(BOB), "13"),
         expect={"description_agrees": False, "disagreement_contains": ["12500000", "13000000"]})
    # Description claims a native ETH send, raw tx is a token transfer.
    case("erc20_described_as_native", "eip1559", ft, "ETH", "ETH", address_dest(hx(BOB), "12.5"),
         expect={"description_agrees": False, "disagreement_contains": ["asset"]})

    # 6. transferFrom through an EVM_Contract destination.
    cd_tf = erc20(ERC20_TRANSFER_FROM, ["address", "address", "uint256"],
                  [to_checksum_address(ALICE), to_checksum_address(BOB), 10**30])
    ftf = {"chainId": 1, "nonce": 10, "maxPriorityFeePerGas": 10**9, "maxFeePerGas": 40 * 10**9,
           "gas": 90000, "to": USDT, "value": 0, "data": cd_tf}
    contract_dest = {"destination_type": "EVM_Contract", "address": to_checksum_address(USDT), "value": "0",
                     "calldata": cd_tf.hex()}
    case("erc20_transfer_from_contract_ok", "eip1559", ftf, "ETH", "ETH_USDT", contract_dest,
         expect={**agree, "token_transfer": {"standard": "erc20", "method": "transferFrom", "contract": hx(USDT),
                                             "from": hx(ALICE), "recipient": hx(BOB), "amount": str(10**30)}})
    bad_cd = dict(contract_dest, calldata=hx(erc20(ERC20_TRANSFER_FROM, ["address", "address", "uint256"],
                                                   [to_checksum_address(ALICE), to_checksum_address(MALLORY),
                                                    10**30])))
    case("erc20_transfer_from_calldata_differs", "eip1559", ftf, "ETH", "ETH_USDT", bad_cd,
         expect={"description_agrees": False, "disagreement_contains": ["calldata"]})

    # 7. approve: EVM_Contract (agrees) and Address destination (does not).
    cd_ap = erc20(ERC20_APPROVE, ["address", "uint256"], [to_checksum_address(SPENDER), 2**256 - 1])
    fap = {"chainId": 1, "nonce": 11, "gasPrice": 25 * 10**9, "gas": 50000, "to": USDT, "value": 0,
           "data": cd_ap, "accessList": []}
    ap_dest = {"destination_type": "EVM_Contract", "address": hx(USDT), "value": "0", "calldata": hx(cd_ap)}
    ap_tt = {"standard": "erc20", "method": "approve", "contract": hx(USDT), "from": None,
             "recipient": hx(SPENDER), "amount": str(2**256 - 1)}
    case("erc20_approve_contract_ok", "eip2930", fap, "ETH", "ETH_USDT", ap_dest,
         expect={**agree, "token_transfer": ap_tt, "recipients": []})
    case("erc20_approve_described_as_transfer", "eip2930", fap, "ETH", "ETH_USDT",
         address_dest(hx(SPENDER), "1"),
         expect={"description_agrees": False, "token_transfer": ap_tt, "disagreement_contains": ["approve"]})

    # 8. Generic contract call with native value on Arbitrum.
    cd_call = bytes.fromhex("d0e30db0")  # WETH deposit()
    fcall = {"chainId": 42161, "nonce": 1, "maxPriorityFeePerGas": 0, "maxFeePerGas": 10**8, "gas": 60000,
             "to": SPENDER, "value": 3 * 10**17, "data": cd_call}
    call_dest = {"destination_type": "EVM_Contract", "address": hx(SPENDER), "value": "0.3",
                 "calldata": "0x" + cd_call.hex().upper()}
    case("contract_call_ok", "eip1559", fcall, "ARBITRUM_ETH", "ARBITRUM_ETH", call_dest,
         expect={**agree, "token_transfer": None,
                 "recipients": [{"address": hx(SPENDER), "amount": str(3 * 10**17), "asset": "native"}]})
    case("contract_call_value_raised", "eip1559", fcall, "ARBITRUM_ETH", "ARBITRUM_ETH",
         dict(call_dest, value="0.4"),
         expect={"description_agrees": False, "disagreement_contains": ["value"]})
    case("contract_call_described_as_transfer", "eip1559", fcall, "ARBITRUM_ETH", "ARBITRUM_ETH",
         address_dest(hx(SPENDER), "0.3"),
         expect={"description_agrees": False, "disagreement_contains": ["calldata"]})
    case("unknown_destination_type", "eip1559", f1559, "ETH", "ETH",
         {"destination_type": "CustodialWallet", "wallet_id": "w", "amount": "1.5"},
         expect={"msg_hashes_match": True, "description_agrees": False,
                 "disagreement_contains": ["CustodialWallet"]})

    # Malformed raw transactions: decode errors, never a pass.
    raw1559, h1559 = evm_unsigned("eip1559", f1559)
    # A signed legacy tx (v, r, s non-zero) is not the unsigned encoding.
    signed_like = rlp.encode([0, 5_000_000_000, 21000, BOB, 2 * 10**18, b"", 147, 1, 2])
    bad = [
        ("odd_length_hex", hx(raw1559)[:-1], [hx(h1559)], "hex"),
        ("garbage_hex", "0xzzzz", [hx(h1559)], "hex"),
        ("truncated_eip1559", hx(raw1559[:-3]), [hx(h1559)], ""),
        ("trailing_bytes_eip1559", hx(raw1559 + b"\x00"), [hx(keccak(raw1559 + b"\x00"))], ""),
        ("unknown_type_byte", hx(b"\x05" + raw1559[1:]), [hx(h1559)], ""),
        ("signed_legacy_not_unsigned", hx(signed_like), [hx(keccak(signed_like))], ""),
        ("single_byte", "0x02", [hx(h1559)], ""),
    ]
    for name, rh, msgs, err in bad:
        tx = transaction("ETH", "ETH", address_dest(hx(BOB), "1.5"), rh)
        detail, extra = keysign(msgs, tx)
        cases.append({"name": name, "detail": detail, "extra": extra,
                      "expect": {"family": "evm", "msg_hashes_match": False, "description_agrees": False,
                                 "error_contains": err}})
    # Unknown family.
    tx = transaction("DOGE_CHAIN", "DOGE_CHAIN", address_dest(hx(BOB), "1.5"), hx(raw1559))
    detail, extra = keysign([hx(h1559)], tx)
    cases.append({"name": "unknown_family", "detail": detail, "extra": extra,
                  "expect": {"family": None, "msg_hashes_match": False, "description_agrees": False,
                             "error_contains": "DOGE_CHAIN"}})
    # Nothing to derive.
    tx = transaction("ETH", "ETH", address_dest(hx(BOB), "1.5"), "")
    del tx["raw_tx_info"]
    detail, extra = keysign([hx(h1559)], tx)
    cases.append({"name": "no_raw_tx_info", "detail": detail, "extra": extra,
                  "expect": {"derived_is_none": True}})
    cases.append({"name": "no_transaction", "detail": detail, "extra": {"org": {}},
                  "expect": {"derived_is_none": True}})
    write("evm.json", config, cases)


# ---------------------------------------------------------------- TRON

def tron_messages():
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
    from google.protobuf.descriptor_pb2 import FieldDescriptorProto as F

    fdp = descriptor_pb2.FileDescriptorProto(name="tron_min.proto", package="protocol", syntax="proto3")

    def msg(name, fields):
        m = fdp.message_type.add(name=name)
        for fname, num, typ, label, tname in fields:
            f = m.field.add(name=fname, number=num, type=typ, label=label)
            if tname:
                f.type_name = tname
        return m

    O, R = F.LABEL_OPTIONAL, F.LABEL_REPEATED
    msg("Any", [("type_url", 1, F.TYPE_STRING, O, None), ("value", 2, F.TYPE_BYTES, O, None)])
    msg("Contract", [("type", 1, F.TYPE_INT32, O, None), ("parameter", 2, F.TYPE_MESSAGE, O, ".protocol.Any"),
                     ("provider", 3, F.TYPE_BYTES, O, None), ("ContractName", 4, F.TYPE_BYTES, O, None),
                     ("Permission_id", 5, F.TYPE_INT32, O, None)])
    msg("raw", [("ref_block_bytes", 1, F.TYPE_BYTES, O, None), ("ref_block_num", 3, F.TYPE_INT64, O, None),
                ("ref_block_hash", 4, F.TYPE_BYTES, O, None), ("expiration", 8, F.TYPE_INT64, O, None),
                ("data", 10, F.TYPE_BYTES, O, None),
                ("contract", 11, F.TYPE_MESSAGE, R, ".protocol.Contract"),
                ("scripts", 12, F.TYPE_BYTES, O, None), ("timestamp", 14, F.TYPE_INT64, O, None),
                ("fee_limit", 18, F.TYPE_INT64, O, None)])
    msg("TransferContract", [("owner_address", 1, F.TYPE_BYTES, O, None), ("to_address", 2, F.TYPE_BYTES, O, None),
                             ("amount", 3, F.TYPE_INT64, O, None)])
    msg("TriggerSmartContract", [("owner_address", 1, F.TYPE_BYTES, O, None),
                                 ("contract_address", 2, F.TYPE_BYTES, O, None),
                                 ("call_value", 3, F.TYPE_INT64, O, None), ("data", 4, F.TYPE_BYTES, O, None),
                                 ("call_token_value", 5, F.TYPE_INT64, O, None),
                                 ("token_id", 6, F.TYPE_INT64, O, None)])
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    get = lambda n: message_factory.GetMessageClass(pool.FindMessageTypeByName("protocol." + n))
    return {n: get(n) for n in ("Any", "Contract", "raw", "TransferContract", "TriggerSmartContract")}


B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def b58encode(b: bytes) -> str:
    n = int.from_bytes(b, "big")
    out = ""
    while n:
        n, r = divmod(n, 58)
        out = B58[r] + out
    return "1" * (len(b) - len(b.lstrip(b"\0"))) + out


def tron_addr(b21: bytes) -> str:
    chk = hashlib.sha256(hashlib.sha256(b21).digest()).digest()[:4]
    return b58encode(b21 + chk)


def gen_tron():
    M = tron_messages()
    config = {
        "chains": {"TRON": {"family": "tron", "native_token": "TRON", "coin_type": 195, "max_fee": "150"}},
        "tokens": {"TRON": {"chain": "TRON", "decimals": 6, "native": True},
                   "TRON_USDT": {"chain": "TRON", "decimals": 6, "contract": "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t"}},
    }
    owner = b"\x41" + ALICE
    to = b"\x41" + BOB
    mallory = b"\x41" + MALLORY
    usdt = bytes.fromhex("41a614f803b6fd780986a42c78ec9c7f77e6ded13c")  # TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t
    assert tron_addr(usdt) == "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t"

    def raw_with(ctype, type_url, param, fee_limit=0):
        c = M["Contract"](type=ctype)
        c.parameter.type_url = type_url
        c.parameter.value = param.SerializeToString()
        r = M["raw"](ref_block_bytes=bytes.fromhex("1a2b"), ref_block_hash=bytes.fromhex("0102030405060708"),
                     expiration=1_700_000_060_000, timestamp=1_700_000_000_000)
        if fee_limit:
            r.fee_limit = fee_limit
        r.contract.append(c)
        return r.SerializeToString()

    cases = []

    def case(name, raw, token, dest, expect, msgs=None):
        h = hashlib.sha256(raw).digest()
        tx = transaction("TRON", token, dest, raw.hex())
        detail, extra = keysign([h.hex()] if msgs is None else msgs, tx)
        exp = {"family": "tron", "signing_hashes": [hx(h)], "error": None}
        exp.update(expect)
        cases.append({"name": name, "detail": detail, "extra": extra, "expect": exp})

    tc = M["TransferContract"](owner_address=owner, to_address=to, amount=1_500_000)
    raw_trx = raw_with(1, "type.googleapis.com/protocol.TransferContract", tc)
    agree = {"msg_hashes_match": True, "unmatched_msg_hashes": [], "description_agrees": True, "disagreements": []}
    case("tron_trx_transfer_ok", raw_trx, "TRON", address_dest(tron_addr(to), "1.5"),
         {**agree, "kind": "tron_transfer", "to": tron_addr(to), "value": "1500000", "from": tron_addr(owner),
          "token_transfer": None, "expiration": "1700000060000",
          "recipients": [{"address": tron_addr(to), "amount": "1500000", "asset": "native"}]})
    case("tron_trx_recipient_swapped", raw_trx, "TRON", address_dest(tron_addr(mallory), "1.5"),
         {"description_agrees": False, "disagreement_contains": [tron_addr(to), tron_addr(mallory)]})
    case("tron_trx_amount_raised", raw_trx, "TRON", address_dest(tron_addr(to), "2"),
         {"description_agrees": False, "disagreement_contains": ["1500000", "2000000"]})
    case("tron_trx_wrong_msg_hash", raw_trx, "TRON", address_dest(tron_addr(to), "1.5"),
         {"msg_hashes_match": False, "unmatched_msg_hashes": ["0x" + "22" * 32]}, msgs=["22" * 32])

    data = erc20(ERC20_TRANSFER, ["address", "uint256"], [to_checksum_address(BOB), 25_000_000])
    trig = M["TriggerSmartContract"](owner_address=owner, contract_address=usdt, data=data)
    raw_usdt = raw_with(31, "type.googleapis.com/protocol.TriggerSmartContract", trig, fee_limit=30_000_000)
    tt = {"standard": "trc20", "method": "transfer", "contract": tron_addr(usdt), "from": None,
          "recipient": tron_addr(to), "amount": "25000000"}
    case("tron_trc20_transfer_ok", raw_usdt, "TRON_USDT", address_dest(tron_addr(to), "25"),
         {**agree, "kind": "tron_trigger_smart_contract", "to": tron_addr(usdt), "value": "0",
          "token_transfer": tt, "fees": {"fee_limit": "30000000"},
          "recipients": [{"address": tron_addr(to), "amount": "25000000", "asset": tron_addr(usdt)}]})
    case("tron_trc20_recipient_hidden", raw_usdt, "TRON_USDT", address_dest(tron_addr(usdt), "25"),
         {"description_agrees": False, "disagreement_contains": [tron_addr(to), tron_addr(usdt)]})
    case("tron_trc20_amount_raised", raw_usdt, "TRON_USDT", address_dest(tron_addr(to), "25.000001"),
         {"description_agrees": False, "disagreement_contains": ["25000001"]})

    for name, rh in [("tron_truncated", raw_trx[:-4].hex()), ("tron_garbage", "ff" * 12),
                     ("tron_odd_hex", raw_trx.hex()[:-1])]:
        tx = transaction("TRON", "TRON", address_dest(tron_addr(to), "1.5"), rh)
        detail, extra = keysign([hashlib.sha256(raw_trx).hexdigest()], tx)
        cases.append({"name": name, "detail": detail, "extra": extra,
                      "expect": {"family": "tron", "msg_hashes_match": False, "description_agrees": False,
                                 "error_contains": ""}})
    write("tron.json", config, cases)


# ---------------------------------------------------------------- Solana

def gen_solana():
    from solders.hash import Hash
    from solders.instruction import AccountMeta, Instruction
    from solders.message import Message, MessageV0, to_bytes_versioned
    from solders.pubkey import Pubkey
    from solders.system_program import TransferParams, transfer

    # The mint here is a stand-in, not USDC's: these vectors test decoding.
    config = {
        "chains": {"SOL": {"family": "solana", "native_token": "SOL", "coin_type": 501, "max_fee": "0.01"}},
        "tokens": {"SOL": {"chain": "SOL", "decimals": 9, "native": True},
                   "SOL_USDC": {"chain": "SOL", "decimals": 6, "mint": "EPjFWDD5v2dRFSrQCCzL3Ld5UtVzwB6jHkyPfgTRqKPa"}},
    }
    payer = Pubkey.from_string("9WzDXwBbmkg8ZTbNMqUxvQRAyrZzDsGYdLVL9zYtAWWM")
    dest = Pubkey.from_string("5omQJtDUHA3gMFdHEQg1zZSvcBUVzEEBLxN3L8vUQANy")
    mallory = Pubkey.from_string("4Nd1mBQtrMJVYVfKf2PJy9NZUZdTAsp7D4xWLs4gDB4T")
    blockhash = Hash.from_string("EETubP5AKHgjPAhzPAFcb8BAY1hMH639CWCFTqi3hq1k")
    token_prog = Pubkey.from_string("TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA")
    ata_prog = Pubkey.from_string("ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL")
    usdc = Pubkey.from_string("EPjFWDD5v2dRFSrQCCzL3Ld5UtVzwB6jHkyPfgTRqKPa")

    def ata(owner, mint):
        return Pubkey.find_program_address([bytes(owner), bytes(token_prog), bytes(mint)], ata_prog)[0]

    cases = []
    agree = {"msg_hashes_match": True, "unmatched_msg_hashes": [], "description_agrees": True, "disagreements": []}

    def case(name, msg_bytes, token, d, expect, msgs=None, as_tx=False):
        rh = msg_bytes
        if as_tx:
            # Unsigned wire transaction: shortvec(1) || 64 zero bytes || message.
            rh = b"\x01" + b"\x00" * 64 + msg_bytes
        tx = transaction("SOL", token, d, rh.hex())
        detail, extra = keysign([msg_bytes.hex()] if msgs is None else msgs, tx)
        detail["signature_type"] = 2
        detail["tss_protocol"] = 3
        exp = {"family": "solana", "signing_hashes": [hx(msg_bytes)], "error": None}
        exp.update(expect)
        cases.append({"name": name, "detail": detail, "extra": extra, "expect": exp})

    ix = transfer(TransferParams(from_pubkey=payer, to_pubkey=dest, lamports=1_500_000_000))
    m_legacy = bytes(Message.new_with_blockhash([ix], payer, blockhash))
    sol_exp = {**agree, "kind": "solana_legacy", "token_transfer": None, "fee_payer": str(payer),
               "recent_blockhash": str(blockhash),
               "recipients": [{"address": str(dest), "amount": "1500000000", "asset": "native"}]}
    case("sol_transfer_ok", m_legacy, "SOL", address_dest(str(dest), "1.5"), sol_exp)
    case("sol_transfer_as_unsigned_tx_ok", m_legacy, "SOL", address_dest(str(dest), "1.5"), sol_exp, as_tx=True)
    case("sol_transfer_recipient_swapped", m_legacy, "SOL", address_dest(str(mallory), "1.5"),
         {"description_agrees": False, "disagreement_contains": [str(dest), str(mallory)]})
    case("sol_transfer_amount_raised", m_legacy, "SOL", address_dest(str(dest), "1.6"),
         {"description_agrees": False, "disagreement_contains": ["1500000000", "1600000000"]})
    case("sol_wrong_msg_hash", m_legacy, "SOL", address_dest(str(dest), "1.5"),
         {"msg_hashes_match": False}, msgs=[hashlib.sha256(m_legacy).hexdigest()])

    m_v0 = to_bytes_versioned(MessageV0.try_compile(payer, [ix], [], blockhash))
    case("sol_transfer_v0_ok", m_v0, "SOL", address_dest(str(dest), "1.5"),
         {**agree, "kind": "solana_v0",
          "recipients": [{"address": str(dest), "amount": "1500000000", "asset": "native"}]})

    src_ata, dst_ata = ata(payer, usdc), ata(dest, usdc)
    # SPL TransferChecked: tag 12, u64 amount, u8 decimals; accounts source, mint, destination, owner.
    tc_ix = Instruction(token_prog, bytes([12]) + struct.pack("<QB", 2_500_000, 6), [
        AccountMeta(src_ata, False, True), AccountMeta(usdc, False, False),
        AccountMeta(dst_ata, False, True), AccountMeta(payer, True, False)])
    m_spl = bytes(Message.new_with_blockhash([tc_ix], payer, blockhash))
    spl_tt = {"standard": "spl", "method": "transferChecked", "contract": str(usdc), "from": str(src_ata),
              "recipient": str(dst_ata), "amount": "2500000"}
    case("spl_transfer_checked_ok", m_spl, "SOL_USDC", address_dest(str(dest), "2.5"),
         {**agree, "token_transfer": spl_tt,
          "recipients": [{"address": str(dst_ata), "amount": "2500000", "asset": str(usdc)}]})
    case("spl_transfer_checked_recipient_swapped", m_spl, "SOL_USDC", address_dest(str(mallory), "2.5"),
         {"description_agrees": False, "disagreement_contains": [str(dst_ata)]})
    case("spl_transfer_checked_amount_raised", m_spl, "SOL_USDC", address_dest(str(dest), "3"),
         {"description_agrees": False, "disagreement_contains": ["2500000", "3000000"]})

    # SPL Transfer (tag 3): accounts source, destination, owner; mint not in the instruction.
    t_ix = Instruction(token_prog, bytes([3]) + struct.pack("<Q", 7_000_000), [
        AccountMeta(src_ata, False, True), AccountMeta(dst_ata, False, True), AccountMeta(payer, True, False)])
    m_spl2 = bytes(Message.new_with_blockhash([t_ix], payer, blockhash))
    case("spl_transfer_to_token_account_ok", m_spl2, "SOL_USDC", address_dest(str(dst_ata), "7"),
         {**agree, "token_transfer": {"standard": "spl", "method": "transfer", "contract": None,
                                      "from": str(src_ata), "recipient": str(dst_ata), "amount": "7000000"}})
    case("spl_transfer_owner_unprovable", m_spl2, "SOL_USDC", address_dest(str(dest), "7"),
         {"description_agrees": False, "disagreement_contains": [str(dst_ata)]})

    for name, rh in [("sol_truncated", m_legacy[:-5].hex()), ("sol_garbage", "00" * 3),
                     ("sol_trailing", (m_legacy + b"\x00").hex())]:
        tx = transaction("SOL", "SOL", address_dest(str(dest), "1.5"), rh)
        detail, extra = keysign([m_legacy.hex()], tx)
        cases.append({"name": name, "detail": detail, "extra": extra,
                      "expect": {"family": "solana", "msg_hashes_match": False, "description_agrees": False,
                                 "error_contains": ""}})
    write("solana.json", config, cases)


if __name__ == "__main__":
    gen_evm()
    gen_tron()
    gen_solana()
