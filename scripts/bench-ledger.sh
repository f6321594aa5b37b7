#!/usr/bin/env bash
# Spending-limit overhead (issue 14): one run, same machine, 2048-bit keys.
#   off   the shipped policy without spending limits
#   on    three limits matching every request (wallet+token amount,
#         destination+token amount, wallet count; all 24h, maxima never
#         reached), with ROWS ledger rows (default 1,000,000) inside the
#         window, in the very groups the load hits
# Load: the approving ETH_USDT KEYSIGN fixture under fresh request ids (each
# answer commits three rows and a retry record). Both variants write the
# decision log (input: full), as production does: its fsync and the
# store's run side by side. For each variant, ROUNDS
# alternating rounds of: closed loop, 64 connections (throughput, server
# RSS), then open loop at RATE req/s (latency without queueing: the decision
# p50). Then `tss-gate ledger plan` on the 1M-row store.
#
# Usage: scripts/bench-ledger.sh   (env: DURATION=10s ROWS=1000000 RATE=100 ROUNDS=6 OUT=dir)
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
ROWS=${ROWS:-1000000}
RATE=${RATE:-100}
ROUNDS=${ROUNDS:-6}
OUT=${OUT:-$(mktemp -d -t tss-gate-ledger-bench-XXXXXX)}
mkdir -p "$OUT"
BIN=target/release/tss-gate
SERVER_PID=
export RUST_LIB_BACKTRACE=0

cargo build --release --quiet
cleanup() {
    if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
}
trap cleanup EXIT

{
    echo "date: $(date -u +%FT%TZ)"
    echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    echo "nproc: $(nproc)"
    lscpu | grep -E '^(Model name|CPU\(s\))'
    uptime
} > "$OUT/machine.txt"

"$BIN" keys generate --bits 2048 --out "$OUT/keys" --name node --force >/dev/null
"$BIN" keys generate --bits 2048 --out "$OUT/keys" --name server --force >/dev/null
mkdir -p "$OUT/load"
cp tests/fixtures/integrity_eip1559_eth_usdt_approve.json "$OUT/load/"

# Policy variants: copies of rego/ with data.velocity replaced.
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
    if d.exists():
        shutil.rmtree(d)
    shutil.copytree("rego", d)
    text = (d / "data.yaml").read_text()
    # Drop the shipped `velocity:` block (up to the next top-level key).
    text = re.sub(r"(?ms)^velocity:\n.*?(?=^\S)", "", text)
    (d / "data.yaml").write_text(text + "\n" + block)
PY

write_config() { # NAME
    cat > "$OUT/$1.yaml" <<YAML
callback_server:
  service_name: tss-gate-bench
  endpoint: "127.0.0.1:0"
  token_expire_minutes: 2
  service_private_key_path: $OUT/keys/server.pem
  tss_node_keys:
    - name: node
      path: $OUT/keys/node.pub.pem
policy:
  dir: $OUT/rego-$1
  watch: false
  # The copies replace data.velocity, which the shipped data tests check.
  require_passing_tests: false
state:
  sqlite:
    path: $OUT/state-$1/ledger.sqlite
decision_log:
  path: $OUT/decisions-$1.log
  input: full
YAML
}
write_config off
write_config on

start_server() { # NAME
    : > "$OUT/server-$1.out"
    "$BIN" serve --config "$OUT/$1.yaml" > "$OUT/server-$1.out" 2> "$OUT/server-$1.log" &
    SERVER_PID=$!
    for _ in $(seq 1 600); do
        ADDR=$(sed -n 's/^listening on //p' "$OUT/server-$1.out")
        [ -n "$ADDR" ] && return 0
        sleep 0.1
    done
    echo "server did not start; see $OUT/server-$1.log" >&2
    exit 1
}
stop_server() { kill "$SERVER_PID"; wait "$SERVER_PID" || true; SERVER_PID=; }

# Create the store's schema, then seed it.
start_server on
stop_server
python3 - "$OUT/state-on/ledger.sqlite" "$ROWS" <<'PY'
import sqlite3, sys, time, json
path, rows = sys.argv[1], int(sys.argv[2])
now = int(time.time() * 1000)
amount = 9999990000000000000000  # 9,999.99 in 10^-18 units
wallet = "5b2c1f7e-8d4a-4e39-9c6b-2f1a7d3e9b40"
dest = "0xd8da6bf26964af9d7eed9e03e53415d37aa96045"
groups = [
    ("bench_wallet_token_24h", json.dumps([wallet, "ETH_USDT"], separators=(",", ":")), f"wallet={wallet},token=ETH_USDT", amount),
    ("bench_destination_24h", json.dumps([dest, "ETH_USDT"], separators=(",", ":")), f"destination={dest},token=ETH_USDT", amount),
    ("bench_wallet_count_24h", json.dumps([wallet], separators=(",", ":")), f"wallet={wallet}", 0),
]
db = sqlite3.connect(path)
db.execute("PRAGMA journal_mode=WAL")
span = 23 * 3600 * 1000
for gi, (limit, key, name, a) in enumerate(groups):
    per = rows // len(groups) + (1 if gi < rows % len(groups) else 0)
    cum = 0
    batch = []
    for i in range(per):
        cum += a
        at = now - span + (i * span) // per
        batch.append((limit, key, i + 1, at, f"seed-{limit}-{i}", name, "ETH_USDT", str(a), str(cum), i + 1, "00" * 32))
    db.executemany("INSERT INTO ledger (limit_id, group_key, seq, at_ms, request_id, group_name, token, amount, cum_amount, cum_count, digest) VALUES (?,?,?,?,?,?,?,?,?,?,?)", batch)
db.commit()
print(db.execute("SELECT count(*) FROM ledger").fetchone()[0], "rows seeded")
PY
"$BIN" ledger plan --config "$OUT/on.yaml" | tee "$OUT/plan.txt"

run() { # NAME ROUND
    start_server "$1"
    "$BIN" bench "http://$ADDR/v2/check" --key "$OUT/keys/node.pem" \
        --server-key "$OUT/keys/server.pub.pem" --fixtures "$OUT/load" \
        -c 64 -d "$DURATION" --server-pid "$SERVER_PID" --json --quiet > "$OUT/max-$1-$2.json"
    "$BIN" bench "http://$ADDR/v2/check" --key "$OUT/keys/node.pem" \
        --server-key "$OUT/keys/server.pub.pem" --fixtures "$OUT/load" \
        -c 16 -d "$DURATION" --rate "$RATE" --json --quiet > "$OUT/rate-$1-$2.json"
    stop_server
}
for r in $(seq 1 "$ROUNDS"); do
    run off "$r"
    run on "$r"
done
"$BIN" ledger show --config "$OUT/on.yaml" | tee "$OUT/ledger-show.txt"

python3 - "$OUT" "$ROUNDS" <<'PY'
import json, sys, statistics
out, rounds = sys.argv[1], int(sys.argv[2])
def load(kind, name):
    return [json.load(open(f"{out}/{kind}-{name}-{r}.json")) for r in range(1, rounds + 1)]
res = {}
for name in ("off", "on"):
    mx, rt = load("max", name), load("rate", name)
    res[name] = {
        "tput": statistics.median(m["throughput_rps"] for m in mx),
        "p50": statistics.median(r["latency"]["p50_us"] for r in rt),
        "p99": statistics.median(r["latency"]["p99_us"] for r in rt),
        "rss": max((m.get("server_memory") or {}).get("vm_rss_kib", 0) for m in mx),
        "hwm": max((m.get("server_memory") or {}).get("vm_hwm_kib", 0) for m in mx),
        "answers": [m["answers"] for m in mx],
        "tputs": [m["throughput_rps"] for m in mx],
        "cpus": [(m.get("server_cpu") or {}).get("us_per_answer", 0) for m in mx],
        "errors": sum(m["error_total"] for m in mx + rt),
    }
for name, r in res.items():
    print(f"{name:4} throughput {r['tput']:8.1f} req/s  p50@rate {r['p50']/1000:7.2f} ms  p99@rate {r['p99']/1000:7.2f} ms  RSS {r['rss']/1024:6.1f} MiB (HWM {r['hwm']/1024:.1f})  errors {r['errors']}  answers {r['answers']}")
on, off = res["on"], res["off"]
pairs = [b / a for a, b in zip(off["tputs"], on["tputs"])]
cpu_pairs = [b / a for a, b in zip(off["cpus"], on["cpus"]) if a > 0]
print(f"throughput on/off {on['tput']/off['tput']:.3f} (target >= 0.90); per round {', '.join(f'{x:.3f}' for x in pairs)}; median of rounds {statistics.median(pairs):.3f}")
if cpu_pairs:
    print(f"server CPU per answer: off {statistics.median(off['cpus']):.0f} us, on {statistics.median(on['cpus']):.0f} us; on/off {statistics.median(on['cpus'])/statistics.median(off['cpus']):.3f}; per round {', '.join(f'{x:.3f}' for x in cpu_pairs)}")
print(f"decision p50 on/off {on['p50']/off['p50']:.3f} (target <= 1.20)")
print(f"steady-state RSS on {on['rss']/1024:.1f} MiB (target <= 64)")
PY
echo "results in $OUT"
