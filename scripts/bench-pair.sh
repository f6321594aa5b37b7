#!/usr/bin/env bash
# Paired before/after run of two tss-gate binaries (a change's hot-path cost):
# A and B alternate in every round, each against a fresh server and store,
# under two configs: "off" (the shipped policy without spending limits) and
# "on" (three limits on the load's requests); both with the decision log
# (input: full) and the SQLite store. Per measurement: closed loop on 64
# connections (throughput, server CPU per answer), then open loop at 100/s
# on 16 (p50). Prints medians and the per-round ratios B/A.
#
# Usage: scripts/bench-pair.sh BEFORE_BIN AFTER_BIN   (env: ROUNDS=4 DURATION=8s OUT=dir)
set -euo pipefail
A=$(readlink -f "$1"); B=$(readlink -f "$2"); OUT=${OUT:-$(mktemp -d -t tss-gate-pair-XXXXXX)}; ROUNDS=${ROUNDS:-4}; DURATION=${DURATION:-8s}
mkdir -p "$OUT/load"
export RUST_LIB_BACKTRACE=0
cd "$(dirname "$0")/.."
"$A" keys generate --bits 2048 --out "$OUT/keys" --name node --force >/dev/null
"$A" keys generate --bits 2048 --out "$OUT/keys" --name server --force >/dev/null
cp tests/fixtures/integrity_eip1559_eth_usdt_approve.json "$OUT/load/"
python3 - "$OUT" <<'PY'
import shutil, sys, re
from pathlib import Path
out = Path(sys.argv[1])
limits = """velocity:
  limits:
    - id: bench_wallet_token_24h
      match: {token_ids: [ETH_USDT]}
      group_by: [wallet, token]
      window: 24h
      max_amount: "1000000000000000"
    - id: bench_destination_24h
      match: {token_ids: [ETH_USDT]}
      group_by: [destination, token]
      window: 24h
      max_amount: "1000000000000000"
    - id: bench_wallet_count_24h
      group_by: [wallet]
      window: 24h
      max_count: 1000000000
"""
for name, block in [("off", ""), ("on", limits)]:
    d = out / f"rego-{name}"
    shutil.copytree("rego", d)
    text = (d / "data.yaml").read_text()
    text = re.sub(r"(?ms)^velocity:\n.*?(?=^\S)", "", text)
    (d / "data.yaml").write_text(text + "\n" + block)
PY
for v in A B; do for c in off on; do
cat > "$OUT/$v-$c.yaml" <<YAML
callback_server:
  service_name: tss-gate-bench
  endpoint: "127.0.0.1:0"
  token_expire_minutes: 2
  service_private_key_path: $OUT/keys/server.pem
  tss_node_keys:
    - name: node
      path: $OUT/keys/node.pub.pem
policy:
  dir: $OUT/rego-$c
  watch: false
  require_passing_tests: false
state:
  sqlite:
    path: $OUT/state-$v-$c/ledger.sqlite
decision_log:
  path: $OUT/decisions-$v-$c.log
  input: full
YAML
done; done
run() { # BIN V CONFIG ROUND
  : > "$OUT/srv.out"
  "$1" serve --config "$OUT/$2-$3.yaml" > "$OUT/srv.out" 2> "$OUT/srv-$2-$3.log" &
  PID=$!
  for _ in $(seq 1 600); do ADDR=$(sed -n 's/^listening on //p' "$OUT/srv.out"); [ -n "$ADDR" ] && break; sleep 0.1; done
  "$1" bench "http://$ADDR/v2/check" --key "$OUT/keys/node.pem" --server-key "$OUT/keys/server.pub.pem" \
     --fixtures "$OUT/load" -c 64 -d "$DURATION" --server-pid "$PID" --json --quiet > "$OUT/max-$2-$3-$4.json"
  "$1" bench "http://$ADDR/v2/check" --key "$OUT/keys/node.pem" --server-key "$OUT/keys/server.pub.pem" \
     --fixtures "$OUT/load" -c 16 -d "$DURATION" --rate 100 --json --quiet > "$OUT/rate-$2-$3-$4.json"
  kill $PID; wait $PID || true
}
for r in $(seq 1 "$ROUNDS"); do
  for c in off on; do run "$A" A $c $r; run "$B" B $c $r; done
done
python3 - "$OUT" "$ROUNDS" <<'PY'
import json, sys, statistics as st
out, rounds = sys.argv[1], int(sys.argv[2])
def get(kind, v, c, r, key):
    d = json.load(open(f"{out}/{kind}-{v}-{c}-{r}.json"))
    return d
for c in ["off", "on"]:
    tp = {v: [get("max", v, c, r, None)["throughput_rps"] for r in range(1, rounds+1)] for v in "AB"}
    p50 = {v: [get("rate", v, c, r, None)["latency"]["p50_us"]/1000 for r in range(1, rounds+1)] for v in "AB"}
    ratios = [b / a for a, b in zip(tp["A"], tp["B"])]
    pr = [b / a for a, b in zip(p50["A"], p50["B"])]
    print(f"{c}: throughput A {st.median(tp['A']):.0f}/s B {st.median(tp['B']):.0f}/s  B/A per round {['%.3f'%x for x in ratios]} median {st.median(ratios):.3f}")
    print(f"{c}: p50 at 100/s A {st.median(p50['A']):.2f} ms B {st.median(p50['B']):.2f} ms  B/A per round {['%.3f'%x for x in pr]} median {st.median(pr):.3f}")
PY
