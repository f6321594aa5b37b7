#!/usr/bin/env bash
# Several instances on one PostgreSQL (issue 15): one run, same machine,
# 2048-bit keys, three spending limits matching every KEYSIGN (maxima never
# reached), the approving ETH_USDT KEYSIGN under fresh request ids (each
# answer commits three ledger rows and a retry record), decision log on.
#   sqlite   one instance, the embedded store
#   pg1      one instance on PostgreSQL
#   pg2      two instances on the same PostgreSQL, each loaded by its own
#            `tss-gate bench` with half the connections (throughputs add up)
# For each: closed loop with 64 connections in all (throughput), then open
# loop at RATE req/s in all (latency without queueing: p50, p99), then the
# store's share of a decision's time from /metrics
# (tss_gate_store_duration_seconds vs tss_gate_request_duration_seconds).
# The PostgreSQL cluster is a throwaway one in OUT (initdb as the postgres
# user when run as root), fsync on.
#
# Usage: scripts/bench-postgres.sh   (env: DURATION=10s RATE=100 ROUNDS=2 OUT=dir)
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
RATE=${RATE:-100}
ROUNDS=${ROUNDS:-2}
OUT=${OUT:-$(mktemp -d -t tss-gate-pg-bench-XXXXXX)}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
BIN=$PWD/target/release/tss-gate
PIDS=()
export RUST_LIB_BACKTRACE=0

PGBIN=$(pg_config --bindir 2>/dev/null || ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
PGPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

cargo build --release --quiet
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
    as_pg "$PGBIN/pg_ctl" -D "$OUT/pg/data" stop -m fast >/dev/null 2>&1 || true
}
trap cleanup EXIT

{
    echo "date: $(date -u +%FT%TZ)"
    echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    echo "nproc: $(nproc)"
    lscpu | grep -E '^(Model name|CPU\(s\))'
    "$PGBIN/postgres" --version
    uptime
} > "$OUT/machine.txt"

# The cluster.
mkdir -p "$OUT/pg"
[ "$(id -u)" = 0 ] && chown postgres "$OUT/pg"
PGPASS=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
echo "$PGPASS" > "$OUT/pg-password"; chmod 600 "$OUT/pg-password"
as_pg "$PGBIN/initdb" -D "$OUT/pg/data" -U admin --auth-local=trust --auth-host=trust --no-sync >/dev/null
as_pg "$PGBIN/pg_ctl" -D "$OUT/pg/data" -l "$OUT/pg/log" -w start \
    -o "-p $PGPORT -k $OUT/pg -c listen_addresses=127.0.0.1 -c max_connections=200 -c shared_buffers=128MB" >/dev/null
psql -h "$OUT/pg" -p "$PGPORT" -U admin -d postgres -qc "CREATE ROLE tss_gate LOGIN PASSWORD '$PGPASS'" >/dev/null
psql -h "$OUT/pg" -p "$PGPORT" -U admin -d postgres -qc "CREATE DATABASE tss_gate OWNER tss_gate" >/dev/null

"$BIN" keys generate --bits 2048 --out "$OUT/keys" --name node --force >/dev/null
"$BIN" keys generate --bits 2048 --out "$OUT/keys" --name server --force >/dev/null
mkdir -p "$OUT/load"
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
d = out / "rego"
if d.exists():
    shutil.rmtree(d)
shutil.copytree("rego", d)
text = (d / "data.yaml").read_text()
text = re.sub(r"(?ms)^velocity:\n.*?(?=^\S)", "", text)
(d / "data.yaml").write_text(text + "\n" + limits)
PY

write_config() { # NAME STATE-YAML
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
  dir: $OUT/rego
  watch: false
  require_passing_tests: false
decision_log:
  path: $OUT/decisions-$1.log
  input: full
$2
YAML
}
write_config sqlite "state:
  sqlite:
    path: $OUT/state-sqlite/ledger.sqlite"
PGSTATE="state:
  backend: postgres
  postgres:
    url: postgres://tss_gate@127.0.0.1:$PGPORT/tss_gate
    password_file: $OUT/pg-password
    pool_size: 32"
write_config pg-a "$PGSTATE"
write_config pg-b "$PGSTATE"

ADDRS=()
start_server() { # CONFIG-NAME
    : > "$OUT/server-$1.out"
    "$BIN" serve --config "$OUT/$1.yaml" > "$OUT/server-$1.out" 2> "$OUT/server-$1.log" &
    PIDS+=($!)
    for _ in $(seq 1 600); do
        local a
        a=$(sed -n 's/^listening on //p' "$OUT/server-$1.out")
        if [ -n "$a" ]; then ADDRS+=("$a"); return 0; fi
        sleep 0.1
    done
    echo "server did not start; see $OUT/server-$1.log" >&2
    exit 1
}
stop_servers() {
    for p in "${PIDS[@]}"; do kill "$p"; wait "$p" || true; done
    PIDS=(); ADDRS=()
}
load() { # OUTFILE-PREFIX CONNS-EACH [RATE-EACH]
    local i=0 pids=()
    for a in "${ADDRS[@]}"; do
        local extra=()
        [ -n "${3:-}" ] && extra=(--rate "$3")
        "$BIN" bench "http://$a/v2/check" --key "$OUT/keys/node.pem" \
            --server-key "$OUT/keys/server.pub.pem" --fixtures "$OUT/load" \
            -c "$2" -d "$DURATION" --server-pid "${PIDS[$i]}" --json --quiet "${extra[@]}" > "$1-$i.json" &
        pids+=($!); i=$((i + 1))
    done
    for p in "${pids[@]}"; do wait "$p" || true; done
}
scrape() { # OUTFILE
    local i=0
    for a in "${ADDRS[@]}"; do curl -s "http://$a/metrics" > "$1-$i.prom"; i=$((i + 1)); done
}

run() { # VARIANT ROUND
    case $1 in
        sqlite) start_server sqlite ;;
        pg1) start_server pg-a ;;
        pg2) start_server pg-a; start_server pg-b ;;
    esac
    local n=${#ADDRS[@]}
    load "$OUT/max-$1-$2" $((64 / n))
    load "$OUT/rate-$1-$2" $((16 / n)) $((RATE / n))
    scrape "$OUT/metrics-$1-$2"
    stop_servers
}
for r in $(seq 1 "$ROUNDS"); do
    run sqlite "$r"
    run pg1 "$r"
    run pg2 "$r"
done
"$BIN" ledger plan --config "$OUT/pg-a.yaml" > "$OUT/plan-pg.txt" || true

python3 - "$OUT" "$ROUNDS" <<'PY'
import json, sys, statistics, glob, re
out, rounds = sys.argv[1], int(sys.argv[2])
def files(kind, name, r):
    return sorted(glob.glob(f"{out}/{kind}-{name}-{r}-*.json"))
def prom_sum(path, metric):
    total = 0.0
    for line in open(path):
        if line.startswith(metric + " ") or line.startswith(metric + "{"):
            total += float(line.rsplit(" ", 1)[1])
    return total
res = {}
for name in ("sqlite", "pg1", "pg2"):
    tputs, p50s, p99s, errors, shares, answers = [], [], [], 0, [], []
    for r in range(1, rounds + 1):
        mx = [json.load(open(f)) for f in files("max", name, r)]
        rt = [json.load(open(f)) for f in files("rate", name, r)]
        tputs.append(sum(m["throughput_rps"] for m in mx))
        p50s.append(max(x["latency"]["p50_us"] for x in rt))
        p99s.append(max(x["latency"]["p99_us"] for x in rt))
        errors += sum(x["error_total"] for x in mx + rt)
        answers.append([m["answers"] for m in mx])
        store = req = 0.0
        for f in glob.glob(f"{out}/metrics-{name}-{r}-*.prom"):
            store += prom_sum(f, "tss_gate_store_duration_seconds_sum")
            req += prom_sum(f, "tss_gate_request_duration_seconds_sum")
        shares.append(store / req if req else 0.0)
    res[name] = dict(tput=statistics.median(tputs), p50=statistics.median(p50s),
                     p99=statistics.median(p99s), errors=errors, share=statistics.median(shares),
                     answers=answers)
for name, r in res.items():
    print(f"{name:6} throughput {r['tput']:8.1f} req/s  p50@rate {r['p50']/1000:7.2f} ms  p99@rate {r['p99']/1000:7.2f} ms  store share {100*r['share']:5.1f} %  errors {r['errors']}")
s = res["sqlite"]
for name in ("pg1", "pg2"):
    print(f"{name}/sqlite throughput {res[name]['tput']/s['tput']:.3f}  p99 {res[name]['p99']/s['p99']:.3f}")
PY
echo "results in $OUT"
