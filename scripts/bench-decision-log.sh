#!/usr/bin/env bash
# Decision log overhead: throughput of POST /v2/check (an approving KEYSIGN)
# with `decision_log` off and on, alternating runs because the machine is
# shared and noisy. Prints each run and the medians; BENCHMARKS.md records
# the figures.
#
#   scripts/bench-decision-log.sh [RUNS=5] [SECONDS=10] [CONNECTIONS=64]
#
# Needs: a release build (cargo build --release), wrk, python3 with
# `cryptography` (to mint the request token once; no replay check exists yet,
# so one token can be posted over and over).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-5}
SECS=${2:-10}
CONNS=${3:-64}
BIN=${BIN:-target/release/tss-gate}
BITS=${BITS:-2048}
command -v wrk >/dev/null || { echo "wrk is required (apt-get install wrk)" >&2; exit 1; }
[ -x "$BIN" ] || { echo "$BIN missing: cargo build --release" >&2; exit 1; }

W=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$W"' EXIT
"$BIN" keys generate --bits "$BITS" --out "$W/keys" --name callback-server >/dev/null
"$BIN" keys generate --bits "$BITS" --out "$W/keys" --name node >/dev/null

python3 - "$W" tests/fixtures/keysign_eth_approve.json <<'PY'
import base64, json, sys, time
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
w, fixture = sys.argv[1], sys.argv[2]
req = json.load(open(fixture))["request"]
b64u = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
now = int(time.time())
claims = {"package_data": base64.b64encode(json.dumps(req).encode()).decode(),
          "exp": now + 6 * 3600, "iat": now, "iss": "tss-node"}
head = b64u(json.dumps({"alg": "RS256", "typ": "JWT"}).encode())
body = b64u(json.dumps(claims).encode())
key = serialization.load_pem_private_key(open(f"{w}/keys/node.pem", "rb").read(), None)
sig = key.sign(f"{head}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256())
token = f"{head}.{body}.{b64u(sig)}"
open(f"{w}/post.lua", "w").write(
    'wrk.method = "POST"\n'
    'wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"\n'
    f'wrk.body = "TSS_JWT_MSG={token}"\n')
PY

config() { # $1 = name, $2 = extra yaml
  cat > "$W/$1.yaml" <<YAML
callback_server:
  service_name: bench
  endpoint: "127.0.0.1:0"
  service_private_key_path: $W/keys/callback-server.pem
  tss_node_keys:
    - name: node
      path: $W/keys/node.pub.pem
policy:
  dir: $PWD/rego
  watch: false
logging:
  level: warn
$2
YAML
}
config off ""
config on "decision_log:
  path: $W/log/decisions.log
  input: full"

run() { # $1 = off|on → prints requests/s
  rm -rf "$W/log" "$W/$1.out"
  "$BIN" serve --config "$W/$1.yaml" > "$W/$1.out" 2> "$W/$1.err" &
  local pid=$!
  local addr=""
  for _ in $(seq 100); do
    addr=$(sed -n 's/^listening on //p' "$W/$1.out")
    [ -n "$addr" ] && break
    sleep 0.1
  done
  [ -n "$addr" ] || { cat "$W/$1.err" >&2; exit 1; }
  # Warm up, then measure.
  wrk -t2 -c"$CONNS" -d2s -s "$W/post.lua" "http://$addr/v2/check" >/dev/null
  local out
  out=$(wrk -t2 -c"$CONNS" -d"${SECS}s" --latency -s "$W/post.lua" "http://$addr/v2/check")
  kill "$pid"; wait "$pid" 2>/dev/null || true
  if [ "$1" = on ]; then
    local lines
    lines=$(cat "$W"/log/decisions.log* | wc -l)
    echo "$out" | grep -q "Non-2xx" && { echo "non-2xx answers" >&2; exit 1; }
    echo "$(echo "$out" | awk '/Requests\/sec/ {print $2}') p99=$(echo "$out" | awk '$1=="99%" {print $2}') lines=$lines"
  else
    echo "$(echo "$out" | awk '/Requests\/sec/ {print $2}') p99=$(echo "$out" | awk '$1=="99%" {print $2}')"
  fi
}

off=(); on=()
for i in $(seq "$RUNS"); do
  a=$(run off); b=$(run on)
  echo "run $i: off ${a}  on ${b}"
  off+=("${a%% *}"); on+=("${b%% *}")
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
mo=$(median "${off[@]}"); mn=$(median "${on[@]}")
echo "median off: $mo req/s  median on: $mn req/s  on/off: $(awk -v a="$mn" -v b="$mo" 'BEGIN {printf "%.3f", a/b}')"
