#!/usr/bin/env python3
"""Seeds for the `pipeline` and `request` fuzz targets, one per fixture:
for `pipeline` a 0x00 byte (the target's "sign this request JSON" mode)
followed by the fixture's request, for `request` the request alone. Random
bytes almost never form a request the parser accepts, so without seeds the
fuzzers never reach input building, derivation or the policy.

Usage: python3 scripts/fuzz_seeds.py   (writes fuzz/seeds/{pipeline,request}/,
not committed), then
  RUSTC_BOOTSTRAP=1 cargo fuzz run pipeline fuzz/corpus/pipeline fuzz/seeds/pipeline
"""
import json
import pathlib

root = pathlib.Path(__file__).resolve().parent.parent
seeds = root / "fuzz" / "seeds"
for target in ("pipeline", "request"):
    (seeds / target).mkdir(parents=True, exist_ok=True)
n = 0
for f in sorted((root / "tests" / "fixtures").glob("*.json")):
    request = json.dumps(json.loads(f.read_text())["request"], separators=(",", ":")).encode()
    (seeds / "pipeline" / f.stem).write_bytes(b"\x00" + request)
    (seeds / "request" / f.stem).write_bytes(request)
    n += 1
print(f"{n} seeds each in {(seeds / 'pipeline').relative_to(root)} and {(seeds / 'request').relative_to(root)}")
