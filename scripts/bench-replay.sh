#!/usr/bin/env bash
# Replay speed and memory (issue 16): writes a decision log of N lines
# (default 1,000,000) cycling through real fixture decisions (their input
# documents as `tss-gate eval` builds them, under fresh request ids), then
# times `tss-gate replay` over it with /usr/bin/time -v (peak RSS), for N
# and N/10 lines, and `tss-gate bench --policy` in the same run.
# Needs python3. Files go to $WORK (default /tmp/replaybench), deleted after.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-1000000}
WORK=${WORK:-/tmp/replaybench}
BIN=target/release/tss-gate
cargo build --release --quiet
mkdir -p "$WORK"
trap 'rm -rf "$WORK"' EXIT
FIXTURES="keygen_allowed_approve keygen_unknown_node_reject ping_approve keyreshare_allowed_approve keysign_usdt_under_cap_approve keysign_eth_approve keysign_token_not_allowed_reject integrity_btc_two_input_types_approve"
for f in $FIXTURES; do
  "$BIN" eval "tests/fixtures/$f.json" > "$WORK/$f.eval.json"
done
gen() {
  python3 - "$WORK" "$1" "$2" $FIXTURES <<'PY'
import json, sys
work, n, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
templates = []
for f in sys.argv[4:]:
    e = json.load(open(f"{work}/{f}.eval.json"))
    d = e["decision"]
    line = {"v": 2, "time": "2026-11-28T12:00:00.000Z", "request_id": "", "request_type": e["input"]["request_type"],
            "action": "APPROVE" if d["allow"] and not d["reasons"] else "REJECT", "status": 0,
            "reasons": d["reasons"], "codes": d["codes"], "policy_revision": e["policy_revision"], "key": "node-a",
            "latency_ms": 1.0, "input_schema": 1, "input": e["input"]}
    templates.append(line)
with open(out, "w") as w:
    for i in range(n):
        t = templates[i % len(templates)]
        rid = f"bench-{i:08d}"
        t["request_id"] = rid
        t["input"]["request_id"] = rid
        w.write(json.dumps(t, separators=(",", ":")))
        w.write("\n")
PY
}
for n in "$((N / 10))" "$N"; do
  gen "$n" "$WORK/decisions.log"
  echo "== replay of $n decisions ($(du -h "$WORK/decisions.log" | cut -f1)), $(nproc) cores"
  /usr/bin/time -v "$BIN" replay "$WORK/decisions.log" --policy-dir rego --format json > "$WORK/report.json" 2> "$WORK/time.txt" || true
  python3 -c "import json;r=json.load(open('$WORK/report.json'));print('replayed',r['replayed'],'unchanged',r['unchanged'])"
  grep -E "Elapsed|Maximum resident" "$WORK/time.txt"
  rm -f "$WORK/decisions.log"
done
echo "== tss-gate bench --policy (same run)"
"$BIN" bench --policy --iterations 500 2>&1 | tail -25
