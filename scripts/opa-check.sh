#!/usr/bin/env bash
# Runs scripts/opa_check.py: the Rego tests and every fixture under real OPA.
#
# OPA is a Go program and no registry this project can reach ships its CLI,
# so we take OPA v1.20.2 as a c-shared library from the PyPI wheel
# opa-golib-python-bindings (the wheel says Python >= 3.14 only because of
# its Python wrapper, which we do not use: opa_check.py talks to the
# library's C ABI with ctypes). The wheel is pinned by version and hash.
set -euo pipefail
cd "$(dirname "$0")/.."

dir=target/opa-check
version=0.4.4
wheel=opa_golib_python_bindings-$version-py3-none-manylinux_2_34_x86_64.whl
sha256=d411c901e14b8c7c3023e23e4a944f4cf429c1d31baf80e959e57d11efbfd24a
bin=${TSS_GATE_BIN:-target/debug/tss-gate}

if [ ! -x "$bin" ]; then
  cargo build --quiet --bin tss-gate
fi
if [ ! -f "$dir/libopabridge.so" ] || [ ! -x "$dir/venv/bin/python" ]; then
  mkdir -p "$dir"
  python3 -m venv "$dir/venv"
  "$dir/venv/bin/pip" install --quiet --disable-pip-version-check pyyaml
  "$dir/venv/bin/pip" download --quiet --disable-pip-version-check --no-deps \
    --only-binary=:all: --python-version 3.14 --platform manylinux_2_34_x86_64 \
    "opa-golib-python-bindings==$version" -d "$dir"
  echo "$sha256  $dir/$wheel" | sha256sum --check --quiet -
  "$dir/venv/bin/python" - "$dir/$wheel" "$dir" <<'EOF'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, open(sys.argv[2] + "/libopabridge.so", "wb") as out:
    out.write(z.read("opa_bindings/libopabridge.so"))
EOF
fi
exec "$dir/venv/bin/python" scripts/opa_check.py --lib "$dir/libopabridge.so" --bin "$bin"
