#!/usr/bin/env bash
# The event endpoint's cost on the answer path (issue 18): one run, same
# machine, 2048-bit keys.
#   off   no `event_server`
#   on    `event_server` configured: every approval of a task is recorded in
#         the state store (one more durable SQLite commit, batched with the
#         writer's others) before its answer leaves
# Both use the shipped policy without its spending limits (the load repeats
# one wallet's transfer; the limits would stop it) and write the decision
# log (input: full). Load: the approving ETH_USDT KEYSIGN fixture (raw
# transaction derivation, the whole rule library) under fresh request ids.
# For each variant, ROUNDS alternating rounds of: closed loop, 64
# connections (throughput, server CPU per answer), then open loop at RATE
# req/s (latency without queueing). After each round the server's
# store time for `record_approval` is read from /metrics.
#
# Usage: scripts/bench-events.sh   (env: DURATION=10s RATE=100 ROUNDS=3 OUT=dir)
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
RATE=${RATE:-100}
ROUNDS=${ROUNDS:-3}
OUT=${OUT:-$(mktemp -d -t tss-gate-events-bench-XXXXXX)}
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
    echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown) (+ working tree)"
    echo "nproc: $(nproc)"
    lscpu | grep -E '^(Model name|CPU\(s\))'
    uptime
} > "$OUT/machine.txt"

"$BIN" keys generate --bits 2048 --out "$OUT/keys" --name node --force >/dev/null
"$BIN" keys generate --bits 2048 --out "$OUT/keys" --name server --force >/dev/null
"$BIN" keys generate --bits 2048 --out "$OUT/keys" --name node-event --force >/dev/null
mkdir -p "$OUT/load"
cp tests/fixtures/integrity_eip1559_eth_usdt_approve.json "$OUT/load/"

# The live set: rego/ without `velocity:`.
python3 - "$OUT" <<'PY'
import shutil, sys, re
from pathlib import Path
out = Path(sys.argv[1])
for name in ("live",):
    d = out / f"rego-{name}"
    if d.exists():
        shutil.rmtree(d)
    shutil.copytree("rego", d)
    text = (d / "data.yaml").read_text()
    text = re.sub(r"(?ms)^velocity:\n.*?(?=^\S)", "", text)
    (d / "data.yaml").write_text(text)
PY

write_config() { # NAME [EVENT_SECTION]
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
  dir: $OUT/rego-live
  watch: false
  # The copies drop data.velocity, which the shipped data tests check.
  require_passing_tests: false
state:
  sqlite:
    path: $OUT/state-$1/ledger.sqlite
decision_log:
  path: $OUT/decisions-$1.log
  input: full
${2:-}
YAML
}
write_config off
write_config on "event_server:
  endpoint: \"127.0.0.1:0\"
  client_public_key_path: $OUT/keys/node-event.pub.pem"

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

run() { # NAME ROUND
    rm -rf "$OUT/state-$1"
    start_server "$1"
    "$BIN" bench "http://$ADDR/v2/check" --key "$OUT/keys/node.pem" \
        --server-key "$OUT/keys/server.pub.pem" --fixtures "$OUT/load" \
        -c 64 -d "$DURATION" --server-pid "$SERVER_PID" --json --quiet > "$OUT/max-$1-$2.json"
    sleep 1
    "$BIN" bench "http://$ADDR/v2/check" --key "$OUT/keys/node.pem" \
        --server-key "$OUT/keys/server.pub.pem" --fixtures "$OUT/load" \
        -c 16 -d "$DURATION" --rate "$RATE" --server-pid "$SERVER_PID" --json --quiet > "$OUT/rate-$1-$2.json"
    sleep 1
    curl -s "http://$ADDR/metrics" | grep '^tss_gate_store_duration_seconds_\(sum\|count\)' > "$OUT/store-$1-$2.txt" || true
    stop_server
}
for r in $(seq 1 "$ROUNDS"); do
    run off "$r"
    run on "$r"
done

python3 - "$OUT" "$ROUNDS" <<'PY'
import json, sys, statistics
out, rounds = sys.argv[1], int(sys.argv[2])
def load(kind, name):
    return [json.load(open(f"{out}/{kind}-{name}-{r}.json")) for r in range(1, rounds + 1)]
res = {}
for name in ("off", "on"):
    mx, rt = load("max", name), load("rate", name)
    cpu = lambda runs: statistics.median((m.get("server_cpu") or {}).get("us_per_answer", 0) for m in runs)
    res[name] = {
        "tput": statistics.median(m["throughput_rps"] for m in mx),
        "tputs": [round(m["throughput_rps"], 1) for m in mx],
        "p50max": statistics.median(m["latency"]["p50_us"] for m in mx),
        "cpu_max": cpu(mx),
        "p50": statistics.median(r["latency"]["p50_us"] for r in rt),
        "p99": statistics.median(r["latency"]["p99_us"] for r in rt),
        "cpu_rate": cpu(rt),
        "errors": sum(m["error_total"] for m in mx + rt),
    }
for name, r in res.items():
    print(f"{name:4} throughput {r['tput']:8.1f} req/s {r['tputs']}  p50@max {r['p50max']/1000:6.2f} ms  CPU/answer@max {r['cpu_max']:7.0f} us  "
          f"p50@rate {r['p50']/1000:6.2f} ms  p99@rate {r['p99']/1000:6.2f} ms  CPU/answer@rate {r['cpu_rate']:7.0f} us  errors {r['errors']}")
on, off = res["on"], res["off"]
print(f"throughput on/off {on['tput']/off['tput']:.3f}")
print(f"p50 at max load on/off {on['p50max']/off['p50max']:.3f}")
print(f"p50 at rate on/off {on['p50']/off['p50']:.3f}, p99 {on['p99']/off['p99']:.3f}")
print(f"server CPU per answer at rate on/off {on['cpu_rate']/off['cpu_rate']:.3f}")
for r in range(1, rounds + 1):
    print(f"round {r} (on) store:", open(f"{out}/store-on-{r}.txt").read().strip().replace("\n", "; "))
PY
echo "results in $OUT"
