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
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi

# A real PostgreSQL server for the database tests: tests/common/pg.rs starts a
# throwaway cluster per test (never a shared one) and looks for the server
# programs exactly here: `pg_config --bindir`, /usr/lib/postgresql/*/bin, PATH.
# As root it runs them as the `postgres` user, which the package creates.
# Debian's package; the tests fail, never skip, when it is missing. Installing
# it may start Debian's own cluster on port 5432: harmless, the tests never
# use it.
pg_server_found() {
  local d pg_ctl
  pg_ctl="$(command -v pg_ctl 2>/dev/null || true)"
  for d in "$(pg_config --bindir 2>/dev/null || true)" /usr/lib/postgresql/*/bin \
    "${pg_ctl:+$(dirname "$(readlink -f "$pg_ctl")")}"; do
    if [ -n "$d" ] && [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && [ -x "$d/postgres" ] &&
      { [ -x "$d/psql" ] || command -v psql >/dev/null 2>&1; }; then
      return 0
    fi
  done
  return 1
}
if ! pg_server_found || { [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; }; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  echo "installing Debian's postgresql package (needed by tests/common/pg.rs)"
  $SUDO apt-get update -qq
  # `env`: sudo would drop a plain DEBIAN_FRONTEND=... prefix.
  $SUDO env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends postgresql >/dev/null
  if ! pg_server_found; then
    echo "postgresql installed, but initdb/pg_ctl/postgres are still not found" >&2
    exit 1
  fi
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
