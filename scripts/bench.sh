#!/usr/bin/env bash
# Performance run of tss-gate on this machine: builds the release binary,
# generates 2048- and 4096-bit server keys (and a 2048-bit node key) into a
# temp dir, and for each key size starts the server and measures, in one run:
#   ceiling   RS256 signing alone on all cores (tss-gate bench --ceiling)
#   idle      one connection, one request at a time (single-request latency)
#   max       64 keep-alive connections, closed loop, with /ping probed
#   half      open loop at half of max's throughput
#   mem256    256 connections, closed loop, server VmHWM/VmRSS
#   memfull   the same for MEMFULL_DURATION (100s) with 130,000 distinct
#             requests, at the first key size only: long enough to fill the
#             default 100,000-entry retry cache, i.e. steady-state memory
#   over4x    open loop at 4x max's throughput on 256 connections against a
#             server with limits.max_queue=64: every request must be answered
# plus policy evaluation timing (tss-gate bench --policy), then prints a
# summary with each target's ratio. Run it on a quiet machine.
#
# Usage: scripts/bench.sh            (env: DURATION=10s BITS="2048 4096" OUT=dir)
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
BITS=${BITS:-"2048 4096"}
OUT=${OUT:-$(mktemp -d -t tss-gate-bench-XXXXXX)}
mkdir -p "$OUT"
BIN=target/release/tss-gate
SERVER_PID=
# RUST_BACKTRACE=1 in the environment makes anyhow capture a backtrace for
# every error value regorus creates while evaluating (it does so on normal
# paths), which slows policy evaluation 1.5-7x. Measure the server as it
# runs without it; see BENCHMARKS.md.
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
    lscpu | grep -E '^(Model name|CPU\(s\)|Thread|Core|Socket|L2|L3|Flags)' | sed 's/Flags:.*\(avx512ifma\).*/Flags: ... avx512ifma .../'
    uptime
} > "$OUT/machine.txt"

"$BIN" keys generate --bits 2048 --out "$OUT/keys" --name node --force >/dev/null

# start_server BITS MAX_QUEUE: starts the server in the background, sets ADDR and SERVER_PID.
start_server() {
    local bits=$1 queue=$2 cfg="$OUT/tss-gate-$1-$2.yaml"
    cat > "$cfg" <<YAML
callback_server:
  service_name: tss-gate-bench
  endpoint: "127.0.0.1:0"
  token_expire_minutes: 2
  service_private_key_path: $OUT/keys/server-$bits.pem
  tss_node_keys:
    - name: node
      path: $OUT/keys/node.pub.pem
policy:
  dir: $PWD/rego
  watch: false
limits:
  max_queue: $queue
YAML
    : > "$OUT/server-$bits-$queue.out"
    "$BIN" serve --config "$cfg" > "$OUT/server-$bits-$queue.out" 2> "$OUT/server-$bits-$queue.log" &
    SERVER_PID=$!
    for _ in $(seq 1 300); do
        ADDR=$(sed -n 's/^listening on //p' "$OUT/server-$bits-$queue.out")
        [ -n "$ADDR" ] && return 0
        sleep 0.1
    done
    echo "server did not start; see $OUT/server-$bits-$queue.log" >&2
    exit 1
}

stop_server() {
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
}

load() { # NAME ARGS...: a load run against $ADDR, JSON into $OUT/NAME.json
    local name=$1; shift
    echo "== $name: $*" >&2
    "$BIN" bench "http://$ADDR/v2/check" --key "$OUT/keys/node.pem" \
        --server-key "$OUT/keys/server-$bits.pub.pem" --server-pid "$SERVER_PID" \
        --warmup "$WARMUP" --json "$@" > "$OUT/$name.json" || true
}

tput() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['throughput_rps'])" "$1"; }

for bits in $BITS; do
    "$BIN" keys generate --bits "$bits" --out "$OUT/keys" --name "server-$bits" --force >/dev/null
    echo "== ceiling-$bits" >&2
    "$BIN" bench --ceiling --server-key-private "$OUT/keys/server-$bits.pem" -d "$DURATION" --json > "$OUT/ceiling-$bits.json"

    start_server "$bits" 1024
    load "idle-$bits" -c 1 -d 5s
    load "max-$bits" -c 64 -d "$DURATION" --ping
    max=$(tput "$OUT/max-$bits.json")
    half=$(python3 -c "print(round($max / 2, 1))")
    load "half-$bits" -c 64 -d "$DURATION" --rate "$half"
    load "mem256-$bits" -c 256 -d "$DURATION"
    if [ "$bits" = "${BITS%% *}" ] && [ "${MEMFULL_DURATION:-100s}" != 0 ]; then
        load "memfull-$bits" -c 256 -d "${MEMFULL_DURATION:-100s}" --tokens 130000
    fi
    stop_server

    start_server "$bits" 64
    over=$(python3 -c "print(round($max * 4, 1))")
    load "over4x-$bits" -c 256 -d "$DURATION" --rate "$over"
    stop_server
done

echo "== policy" >&2
"$BIN" bench --policy --json > "$OUT/policy.json"

python3 - "$OUT" "$BITS" <<'PY'
import json, sys, os
out, bits = sys.argv[1], sys.argv[2].split()
def j(n):
    p = os.path.join(out, n + ".json")
    return json.load(open(p)) if os.path.exists(p) and os.path.getsize(p) else {}
def ok(b): return "PASS" if b else "MISS"
print(open(os.path.join(out, "machine.txt")).read())
for b in bits:
    c, idle, mx, half, mem, over = (j(f"{n}-{b}") for n in ("ceiling", "idle", "max", "half", "mem256", "over4x"))
    ceil = c.get("signatures_per_s", 0)
    tp = mx.get("throughput_rps", 0)
    ratio = tp / ceil if ceil else 0
    need = 0.85 if b == "4096" else 0.70
    print(f"--- {b}-bit server key ---")
    print(f"ceiling            {ceil:.0f} sig/s ({c.get('threads')} threads, {c.get('per_thread_per_s', 0):.0f}/thread)")
    print(f"max throughput     {tp:.0f} req/s = {ratio:.1%} of ceiling (target >= {need:.0%}) {ok(ratio >= need)}; errors {mx.get('error_total')}, answers {mx.get('answers')}")
    print(f"  latency          p50 {mx.get('latency',{}).get('p50_us')}us p99 {mx.get('latency',{}).get('p99_us')}us max {mx.get('latency',{}).get('max_us')}us")
    ping = mx.get("ping") or {}
    print(f"/ping under load   p50 {ping.get('p50_us')}us p99 {ping.get('p99_us')}us max {ping.get('max_us')}us (target p99 <= 5000us) {ok((ping.get('p99_us') or 1e9) <= 5000)}")
    il = idle.get("latency", {}).get("p50_us", 0)
    hl = half.get("latency", {}).get("p99_us", 0)
    print(f"idle single req    p50 {il}us (p99 {idle.get('latency',{}).get('p99_us')}us)")
    ip99 = idle.get("latency", {}).get("p99_us", 0)
    print(f"half rate {half.get('rate_offered')} req/s  p99 {hl}us = {hl / il if il else 0:.2f}x idle p50 (target <= 3x) {ok(il and hl <= 3 * il)}; {hl / ip99 if ip99 else 0:.2f}x idle p99; throughput {half.get('throughput_rps')} errors {half.get('error_total')}")
    m = mem.get("server_memory") or {}
    hwm = m.get("vm_hwm_kib", 0) / 1024
    print(f"256 conns          {mem.get('throughput_rps')} req/s, errors {mem.get('error_total')}; VmHWM {hwm:.1f} MiB, VmRSS max {m.get('vm_rss_max_sampled_kib',0)/1024:.1f} MiB (target <= 64 MiB) {ok(0 < hwm <= 64)}")
    full = j(f"memfull-{b}")
    if full:
        fm = full.get("server_memory") or {}
        fh = fm.get("vm_hwm_kib", 0) / 1024
        print(f"256 conns, full    {full.get('completed')} requests in {full.get('duration_s')}s (retry cache full at 100,000): VmHWM {fh:.1f} MiB (target <= 64 MiB) {ok(0 < fh <= 64)}")
    a = over.get("answers", {})
    total = over.get("sent", 0)
    answered = sum(a.values())
    print(f"4x offered         {over.get('rate_offered')} req/s on 256 conns, max_queue 64: sent {total}, answered {answered} {a}, errors {over.get('errors')} {ok(total and answered == total and not over.get('error_total'))}")
    print(f"  latency          p50 {over.get('latency',{}).get('p50_us')}us p99 {over.get('latency',{}).get('p99_us')}us max {over.get('latency',{}).get('max_us')}us (from scheduled time)")
p = j("policy")
if p:
    print("--- policy evaluation ---")
    print(f"worst KEYSIGN p99  {p['worst_p99_us']}us (target <= 50us) {ok(p['worst_p99_us'] <= 50)}")
    print(f"100k allow-list    p99 {p['worst_p99_large_us']}us = {p['large_ratio']:.2f}x (target <= 2x) {ok(p['large_ratio'] <= 2)}; load {p['load_large_ms']:.0f} ms (target <= 1000 ms) {ok(p['load_large_ms'] <= 1000)}")
print(f"\nraw JSON and logs: {out}")
PY
