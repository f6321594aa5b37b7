#!/usr/bin/env python3
"""Seeds for the `pipeline` fuzz target, one per fixture: a 0x00 byte (the
target's "sign this request JSON" mode) followed by the fixture's request.
Random bytes almost never form a request the parser accepts, so without
seeds the fuzzer never reaches input building, derivation or the policy.

Usage: python3 scripts/fuzz_seeds.py   (writes fuzz/seeds/pipeline/, not
committed), then
  RUSTC_BOOTSTRAP=1 cargo fuzz run pipeline fuzz/corpus/pipeline fuzz/seeds/pipeline
"""
import json
import pathlib

root = pathlib.Path(__file__).resolve().parent.parent
out = root / "fuzz" / "seeds" / "pipeline"
out.mkdir(parents=True, exist_ok=True)
n = 0
for f in sorted((root / "tests" / "fixtures").glob("*.json")):
    request = json.loads(f.read_text())["request"]
    (out / f.stem).write_bytes(b"\x00" + json.dumps(request, separators=(",", ":")).encode())
    n += 1
print(f"{n} seeds in {out.relative_to(root)}")
