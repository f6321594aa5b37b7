#!/usr/bin/env python3
"""Write the contract-call fixtures (tests/fixtures/calls_*.json): ETH USDT
`approve` requests described as `EVM_Contract`, the shipped example that
approves and the attacks on it that must reject.

Nothing here comes from tss-gate. Calldata is encoded by eth-abi (and the
selectors by eth-utils' keccak of the signature), the unsigned EIP-1559
transaction by pyrlp, and its signing hash is keccak256 of those bytes,
cross-checked against eth-account's TypedTransaction. The tampered calldata
(dirty high bits, a trailing or missing byte) is eth-abi's with bytes
changed by hand. Re-run (deterministic), outside the repository's tree:

    python3 -m venv /tmp/venv-calls
    /tmp/venv-calls/bin/pip install eth-abi eth-account rlp eth-utils
    /tmp/venv-calls/bin/python tests/vectors/gen_call_fixtures.py

Each fixture is the bound approving ERC-20 fixture
(integrity_eip1559_eth_usdt_approve.json: root key, path, source, wallet)
with its transaction replaced, so only what the fixture is about fires.
"""

import copy
import json
import os

import rlp
from eth_abi import encode
from eth_account.typed_transactions import TypedTransaction
from eth_utils import keccak, to_checksum_address

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "fixtures")
BASE = os.path.join(FIXTURES, "integrity_eip1559_eth_usdt_approve.json")

USDT = "0xdac17f958d2ee523a2206206994597c13d831ec7"
USDC = "0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48"
PERMIT2 = "0x000000000022d473030f116ddee9f6b43ac78ba3"
MALLORY = "0x00000000000000000000000000000000deadbeef"
# Allow-listed as a transfer destination (keysign.allowed_destinations.ETH),
# but not as a spender.
ETH_DEST = "0xd8da6bf26964af9d7eed9e03e53415d37aa96045"
GWEI = 10**9
WALLET = "5b2c1f7e-8d4a-4e39-9c6b-2f1a7d3e9b40"
SOURCE = "0xE3eF19222515A5d6Fa2F4BAE5A66ba71e76805e4"


def selector(sig):
    return keccak(text=sig)[:4]


def approve_data(spender, units):
    return selector("approve(address,uint256)") + encode(["address", "uint256"], [spender, units])


def eip1559(to, data, value=0, nonce=17):
    """(raw, hash): 0x02 || rlp([chainId, nonce, prio, maxFee, gas, to, value, data, accessList])."""
    fields = [1, nonce, 1_500_000_000, 30 * GWEI, 60000, bytes.fromhex(to[2:]), value, data, []]
    raw = b"\x02" + rlp.encode(fields)
    h = keccak(raw)
    other = TypedTransaction.from_dict({
        "type": 2, "chainId": 1, "nonce": nonce, "maxPriorityFeePerGas": 1_500_000_000,
        "maxFeePerGas": 30 * GWEI, "gas": 60000, "to": to_checksum_address(to), "value": value,
        "data": data, "accessList": [],
    }).hash()
    assert h == bytes(other), (h.hex(), bytes(other).hex())
    return raw, h


def info(contract, name, sig, params):
    """Cobo's calldata_info: method {name, sig, selector} and params, a JSON
    text of [name, type, value] triples."""
    return {
        "chain_id": "ETH",
        "address": to_checksum_address(contract),
        "name": "Tether USD",
        "proxy": False,
        "method": {"name": name, "sig": sig, "type": "function", "payable": False,
                   "selector": "0x" + selector(sig).hex()},
        "params": json.dumps(params, separators=(",", ":")),
    }


def approve_info(spender, units, contract=USDT):
    return info(contract, "approve", "approve(address,uint256)",
                [["spender", "address", to_checksum_address(spender)], ["amount", "uint256", str(units)]])


def usdt(amount):
    whole, _, frac = amount.partition(".")
    return int(whole) * 10**6 + int((frac + "000000")[:6] or 0)


def emit(name, desc, action, reasons, *, data, contract=USDT, value=0, value_text="0",
         calldata_info=None, history=None, nonce=17):
    base = json.load(open(BASE))
    detail = json.loads(base["request"]["request_detail"])
    extra = json.loads(base["request"]["extra_info"])
    raw, h = eip1559(contract, data, value, nonce)
    detail["msg_hash_list"] = [h.hex()]
    tx = extra["transaction"]
    tx.update({"type": "ContractCall", "token_id": "ETH", "asset_id": "ETH", "description": desc})
    dest = {"destination_type": "EVM_Contract", "address": to_checksum_address(contract),
            "value": value_text, "calldata": "0x" + data.hex()}
    if calldata_info is not None:
        dest["calldata_info"] = calldata_info
    tx["destination"] = dest
    tx["raw_tx_info"] = {"used_nonce": nonce, "unsigned_raw_tx": "0x" + raw.hex()}
    fx = {
        "description": desc,
        "request": {
            "request_id": f"calls-{name}",
            "request_type": 2,
            "request_detail": json.dumps(detail, separators=(",", ":")),
            "extra_info": json.dumps(extra, separators=(",", ":")),
        },
        "expect": {"action": action, "status": 0, "reasons": reasons},
    }
    if history is not None:
        fx["received_at_ms"] = 1764000000000
        fx["history"] = history
    with open(os.path.join(FIXTURES, f"calls_{name}.json"), "w") as f:
        json.dump(fx, f, indent=2)
        f.write("\n")


def main():
    ok = usdt("25000")
    good = approve_data(PERMIT2, ok)
    emit("usdt_approve_permit2_approve",
         "USDT approve of 25,000 to Uniswap Permit2, described as an EVM_Contract call with calldata_info",
         "APPROVE", [], data=good, calldata_info=approve_info(PERMIT2, ok))
    emit("usdt_approve_permit2_at_cap_no_info_approve",
         "USDT approve of exactly the 50,000 cap to Permit2, without calldata_info",
         "APPROVE", [], data=approve_data(PERMIT2, usdt("50000")))

    # Another spender.
    for tag, spender in (("mallory", MALLORY), ("allowed_destination", ETH_DEST)):
        emit(f"usdt_approve_spender_{tag}_reject",
             f"USDT approve of 25,000 to {spender}, not an allowed spender",
             "REJECT", ["keysign.approval_spenders"], data=approve_data(spender, ok),
             calldata_info=approve_info(spender, ok))

    # Unlimited.
    for tag, units in (("max", 2**256 - 1), ("2_255", 2**255)):
        emit(f"usdt_approve_unlimited_{tag}_reject", f"USDT approve of {units} (unlimited) to Permit2",
             "REJECT", ["approves an unlimited amount"], data=approve_data(PERMIT2, units),
             calldata_info=approve_info(PERMIT2, units))

    # Over the cap.
    for tag, amount in (("by_one_unit", "50000.000001"), ("million", "1000000")):
        units = usdt(amount)
        emit(f"usdt_approve_over_cap_{tag}_reject", f"USDT approve of {amount} to Permit2, over the 50,000 cap",
             "REJECT", ["`ETH_USDT` to 0x000000000022d473030f116ddee9f6b43ac78ba3, above its cap of"], data=approve_data(PERMIT2, units),
             calldata_info=approve_info(PERMIT2, units))

    # Non-canonical calldata: the ABI decoder of the token would read these
    # (USDT's Solidity masks the address word, ignores trailing bytes).
    dirty = bytearray(good)
    dirty[4] = 0x01  # the spender word's top byte: Permit2 in its low 20 bytes
    emit("usdt_approve_dirty_spender_word_reject",
         "USDT approve whose spender word has a non-zero high byte over Permit2's address",
         "REJECT", ["is not the canonical encoding"], data=bytes(dirty))
    dirty_amount = bytearray(approve_data(PERMIT2, ok))
    emit("usdt_approve_trailing_byte_reject", "USDT approve to Permit2 with one byte after the arguments",
         "REJECT", ["is not the canonical encoding"], data=bytes(dirty_amount) + b"\x00")
    emit("usdt_approve_trailing_word_reject", "USDT approve to Permit2 with a whole word appended",
         "REJECT", ["is not the canonical encoding"], data=good + encode(["address"], [MALLORY]))
    emit("usdt_approve_short_reject", "USDT approve to Permit2 with its last byte cut",
         "REJECT", ["does not decode"], data=good[:-1])

    # calldata_info lying about the method or the params.
    lie = approve_info(PERMIT2, ok)
    lie["method"]["name"] = "transfer"
    emit("usdt_approve_info_method_name_lie_reject", "USDT approve described by calldata_info as `transfer`",
         "REJECT", ["calldata_info.method.name"], data=good, calldata_info=lie)
    lie = approve_info(PERMIT2, ok)
    lie["method"]["sig"] = "transfer(address,uint256)"
    lie["method"]["selector"] = "0xa9059cbb"
    emit("usdt_approve_info_sig_lie_reject", "USDT approve described by calldata_info as transfer(address,uint256)",
         "REJECT", ["calldata_info.method.sig", "calldata_info.method.selector"], data=good, calldata_info=lie)
    lie = approve_info(PERMIT2, usdt("1000"))
    emit("usdt_approve_info_amount_lie_reject", "USDT approve of 25,000 whose calldata_info says 1,000",
         "REJECT", ["calldata_info.params[1]"], data=good, calldata_info=lie)
    lie = approve_info(ETH_DEST, ok)
    emit("usdt_approve_info_spender_lie_reject",
         "USDT approve to Permit2 whose calldata_info names another spender",
         "REJECT", ["calldata_info.params[0]"], data=good, calldata_info=lie)

    # Unknown selector on a known contract; known selector on an unknown one.
    transfer = selector("transfer(address,uint256)") + encode(["address", "uint256"], [MALLORY, ok])
    emit("usdt_transfer_as_contract_call_reject",
         "USDT transfer to an unlisted address, described as an EVM_Contract call (not a pinned function)",
         "REJECT", ["is not a function pinned for"], data=transfer,
         calldata_info=info(USDT, "transfer", "transfer(address,uint256)",
                            [["to", "address", to_checksum_address(MALLORY)], ["amount", "uint256", str(ok)]]))
    transfer_from = selector("transferFrom(address,address,uint256)") + encode(
        ["address", "address", "uint256"], [ETH_DEST, MALLORY, ok])
    emit("usdt_transfer_from_as_contract_call_reject", "USDT transferFrom from another owner as an EVM_Contract call",
         "REJECT", ["is not a function pinned for"], data=transfer_from)
    emit("usdc_approve_unknown_contract_reject", "approve to Permit2 on USDC, a contract not pinned",
         "REJECT", ["is not in data.integrity.contracts"], data=good, contract=USDC,
         calldata_info=approve_info(PERMIT2, ok, USDC))
    emit("lookalike_approve_unknown_contract_reject", "approve to Permit2 on a look-alike of USDT's address",
         "REJECT", ["is not in data.integrity.contracts"], data=good,
         contract="0xdac17f958d2ee523a2206206994597c13d831ec8")

    # Native value sent with the token call (described, so only the rule fires).
    emit("usdt_approve_with_value_reject", "USDT approve to Permit2 that also sends 0.01 ETH to the token",
         "REJECT", ["the approval call also sends"], data=good, value=10**16, value_text="0.01",
         calldata_info=approve_info(PERMIT2, ok))

    # Spending limits: an approval counts as a transfer of its token.
    emit("usdt_approve_after_transfers_over_day_reject",
         "USDT approve of 25,000 after 40,000 USDT sent today: the approval counts against eth_usdt_wallet_24h",
         "REJECT", ["eth_usdt_wallet_24h"], data=good, calldata_info=approve_info(PERMIT2, ok),
         history=[{"limit": "eth_usdt_wallet_24h", "group": {"wallet": WALLET, "token": "ETH_USDT"},
                   "amount": "40000", "ago": "3h"}])
    emit("usdt_approve_split_over_day_reject",
         "a USDT approve of 25,000 after two approvals of 15,000 from the same source today: split approvals add up",
         "REJECT", ["eth_usdt_source_24h"], data=good, calldata_info=approve_info(PERMIT2, ok),
         history=[{"limit": "eth_usdt_source_24h", "group": {"source": SOURCE.lower(), "token": "ETH_USDT"},
                   "amount": "15000", "ago": "2h", "repeat": 2}])


if __name__ == "__main__":
    main()
