#!/usr/bin/env python3
"""Writes the spending-limit fixtures (tests/fixtures/velocity_*.json).

Each is the approving ETH_USDT fixture (9,999.99 USDT from wallet
5b2c1f7e-...) with a `history` of earlier approvals that tss-gate test puts in
a scratch ledger; the request text is copied byte for byte. Limits are the
shipped ones in rego/data.yaml. Run from the repository root.
"""
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BASE = ROOT / "tests/fixtures/integrity_eip1559_eth_usdt_approve.json"
WALLET = "5b2c1f7e-8d4a-4e39-9c6b-2f1a7d3e9b40"
OTHER_WALLET = "a71e4c02-3b9f-4d58-8e21-6c0f5a9d2b17"
DEST = "0xd8da6bf26964af9d7eed9e03e53415d37aa96045"
AT = 1764000000000


def usdt(amount, ago, repeat=1, wallet=WALLET):
    return {"limit": "eth_usdt_wallet_24h", "group": {"wallet": wallet, "token": "ETH_USDT"},
            "amount": amount, "ago": ago, "repeat": repeat}


CASES = {
    "velocity_eth_usdt_split_drain_stopped_at_cap_reject": (
        "41 transfers of 999.99 USDT in the last day, then 9,999.99: a drain split under "
        "every per-transaction cap is stopped at the 50,000 daily limit",
        [usdt("999.99", "23h", 21), usdt("999.99", "2h", 20)],
        "REJECT", ["eth_usdt_wallet_24h", "50000"]),
    "velocity_eth_usdt_fifth_transfer_fits_approve": (
        "four earlier 9,999.99 transfers today: the fifth brings the wallet to 49,999.95, under 50,000",
        [usdt("9999.99", "20h", 4)], "APPROVE", []),
    "velocity_eth_usdt_sixth_transfer_reject": (
        "five earlier 9,999.99 transfers today: the sixth would pass 50,000",
        [usdt("9999.99", "20h", 5)], "REJECT", ["eth_usdt_wallet_24h"]),
    "velocity_eth_usdt_exactly_at_cap_approve": (
        "40,000.01 used: this 9,999.99 reaches the 50,000 limit exactly, which is allowed",
        [usdt("40000.01", "1h")], "APPROVE", []),
    "velocity_eth_usdt_one_unit_over_cap_reject": (
        "40,000.010000000000000001 used: this 9,999.99 passes 50,000 by 10^-18",
        [usdt("40000.010000000000000001", "1h")], "REJECT", ["eth_usdt_wallet_24h"]),
    "velocity_eth_usdt_history_outside_window_approve": (
        "five 9,999.99 transfers 25 hours ago are outside the 24h window",
        [usdt("9999.99", "25h", 5)], "APPROVE", []),
    "velocity_eth_usdt_other_wallet_history_approve": (
        "another wallet's transfers do not count against this wallet",
        [usdt("9999.99", "2h", 5, OTHER_WALLET)], "APPROVE", []),
    "velocity_usdt_destination_count_reject": (
        "twenty payments to this address this week: the 21st is over usdt_destination_7d's max_count",
        [{"limit": "usdt_destination_7d", "group": {"destination": DEST, "token": "ETH_USDT"},
          "amount": "1", "ago": "3d", "repeat": 20}], "REJECT", ["usdt_destination_7d"]),
    "velocity_usdt_destination_checksum_case_counts_reject": (
        "history written with the checksummed address counts against the same destination",
        [{"limit": "usdt_destination_7d",
          "group": {"destination": "0xd8dA6BF26964aF9D7eEd9e03E53415D37aA96045", "token": "ETH_USDT"},
          "amount": "95000", "ago": "6d"}], "REJECT", ["usdt_destination_7d"]),
    "velocity_keysign_wallet_rate_reject": (
        "200 signatures from this wallet in the last hour: the 201st is stopped",
        [{"limit": "keysign_wallet_1h", "group": {"wallet": WALLET}, "ago": "30m", "repeat": 200}],
        "REJECT", ["keysign_wallet_1h"]),
}


def main():
    text = BASE.read_text()
    start = text.index('"request": ') + len('"request": ')
    end = text.index(',\n  "expect"')
    request = text[start:end]
    for name, (desc, history, action, reasons) in CASES.items():
        head = {"description": desc}
        tail = {"expect": {"action": action, "status": 0, "reasons": reasons},
                "received_at_ms": AT, "history": history}
        out = json.dumps(head, indent=2)[:-2] + ',\n  "request": ' + request + ",\n"
        out += json.dumps(tail, indent=2)[2:] + "\n"
        json.loads(out)
        (ROOT / "tests/fixtures" / f"{name}.json").write_text(out)


if __name__ == "__main__":
    main()
