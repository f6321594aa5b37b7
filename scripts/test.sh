#!/usr/bin/env bash
# The one test command (README): installs what the tests need on a fresh
# Debian machine, then runs the whole suite. CI (`.ci/run`) calls this too.
set -euo pipefail
cd "$(dirname "$0")/.."

# A real Prometheus (and promtool) for the observability tests. Debian's
# package; the tests fail, never skip, when it is missing.
if ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  echo "installing Debian's prometheus package (needed by tests/prometheus.rs)"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi

cargo test --all-targets "$@"
# The same Rego tests and every fixture under real OPA (v1.20, as a library):
# the library must decide identically in both engines.
bash scripts/opa-check.sh
# The input document of every fixture validates against the shipped JSON
# Schema (docs/input.schema.json), which names every path they carry.
python3 scripts/check_input_schema.py --bin target/debug/tss-gate
# The shipped policy library through the policy author's own tool: every Rego
# test, every fixture, and the coverage floor. Its last line is the summary.
cargo run --quiet -- test --coverage-min 90
