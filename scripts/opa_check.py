"""The shipped Rego library under real OPA.

tss-gate evaluates policies with regorus; operators and reviewers run
`opa test` and `opa eval` on the same files. The two engines disagree on
some corners of Rego (see rego/README.md, "Portability"), and a corner where
OPA leaves a deny undefined is an approval under OPA. This script loads
rego/ and its data into OPA itself (v1, the Go engine, through the c-shared
bridge that scripts/opa-check.sh fetches) and checks:

1. every `test_*` rule of every *_test.rego passes under OPA, and
2. for every fixture, OPA's `data.tss.decision` on the input document that
   tss-gate builds (`tss-gate eval`) is identical to tss-gate's own decision.

Exit status 0 only when both hold. Usage:
    opa_check.py --lib libopabridge.so --bin target/debug/tss-gate [--fixtures DIR]

`--fixtures` (default: $OPA_CHECK_FIXTURES, else tests/fixtures) checks the
fixtures of another directory, e.g. ones `tss-gate fixture derive` wrote:
    OPA_CHECK_FIXTURES=/tmp/new TSS_GATE_BIN=target/debug/tss-gate bash scripts/opa-check.sh
"""

import argparse
import ctypes
import json
import os
import pathlib
import re
import subprocess
import sys

import yaml


class OpaError(Exception):
    pass


class Opa:
    """One OPA engine instance behind the bridge's C ABI: every call returns
    a malloc'd JSON envelope {"result": ..., "error": {...}} that we free."""

    def __init__(self, lib_path):
        u64, s, i = ctypes.c_uint64, ctypes.c_char_p, ctypes.c_int
        lib = ctypes.CDLL(str(lib_path))
        lib.OpaNew.restype = u64
        lib.OpaNew.argtypes = []
        lib.OpaFreeString.restype = None
        lib.OpaFreeString.argtypes = [ctypes.c_void_p]
        for name, argtypes in {
            "OpaAddPolicy": [u64, s, s],
            "OpaAddData": [u64, s, s],
            "OpaEvalQuery": [u64, s, s, i, i],
        }.items():
            fn = getattr(lib, name)
            # void* rather than char*, so ctypes hands us the pointer to free.
            fn.restype = ctypes.c_void_p
            fn.argtypes = argtypes
        self.lib = lib
        self.handle = lib.OpaNew()

    def _call(self, fn, *args):
        ptr = fn(self.handle, *args)
        if not ptr:
            raise OpaError("the bridge returned NULL")
        try:
            envelope = json.loads(ctypes.string_at(ptr))
        finally:
            self.lib.OpaFreeString(ptr)
        err = envelope.get("error")
        if err:
            raise OpaError(f"{err.get('code')}: {err.get('message')}")
        return envelope.get("result")

    def add_policy(self, name, text):
        self._call(self.lib.OpaAddPolicy, name.encode(), text.encode())

    def add_data(self, value):
        self._call(self.lib.OpaAddData, b"", json.dumps(value).encode())

    def query(self, query, input_doc=None):
        raw_input = b"" if input_doc is None else json.dumps(input_doc).encode()
        return self._call(self.lib.OpaEvalQuery, query.encode(), raw_input, 0, 0) or []

    def value_of(self, ref, input_doc=None):
        """The value of `ref`, or None when it is undefined."""
        rows = self.query(f"__v := {ref}", input_doc)
        return rows[0]["bindings"]["__v"] if rows else None


def load(opa, root):
    tests = []
    for path in sorted((root / "rego").rglob("*.rego")):
        text = path.read_text()
        opa.add_policy(str(path.relative_to(root)), text)
        if path.name.endswith("_test.rego"):
            package = re.search(r"^package\s+([\w.]+)", text, re.M).group(1)
            for name in re.findall(r"^(test_\w+)\b", text, re.M):
                tests.append(f"data.{package}.{name}")
    for path in sorted((root / "rego").rglob("*.yaml")) + sorted((root / "rego").rglob("*.json")):
        doc = yaml.safe_load(path.read_text()) if path.suffix == ".yaml" else json.loads(path.read_text())
        # Data files below rego/ nest at their directory, as tss-gate loads them.
        for part in reversed(path.parent.relative_to(root / "rego").parts):
            doc = {part: doc}
        opa.add_data(doc)
    return sorted(set(tests))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lib", required=True)
    ap.add_argument("--bin", required=True)
    ap.add_argument("--root", default=pathlib.Path(__file__).resolve().parent.parent, type=pathlib.Path)
    ap.add_argument("--fixtures", default=os.environ.get("OPA_CHECK_FIXTURES") or None, type=pathlib.Path,
                    help="fixture directory (default: $OPA_CHECK_FIXTURES, else ROOT/tests/fixtures)")
    args = ap.parse_args()

    opa = Opa(args.lib)
    tests = load(opa, args.root)
    failed = 0
    for test in tests:
        try:
            ok = opa.value_of(test) is True
        except OpaError as e:
            ok = False
            print(f"ERROR {test}: {e}")
        if not ok:
            failed += 1
            print(f"FAIL  {test} (under OPA)")
    print(f"opa: {len(tests) - failed} Rego tests passed, {failed} failed")

    fixture_dir = args.fixtures or args.root / "tests" / "fixtures"
    fixtures = sorted(fixture_dir.resolve().glob("*.json"))
    differ = 0
    undecided = 0
    for fixture in fixtures:
        out = subprocess.run([args.bin, "eval", str(fixture)], capture_output=True, text=True, cwd=args.root)
        ours = json.loads(out.stdout)
        if ours["input"] is None:
            # Refused before any policy runs (status 10: a malformed request,
            # e.g. a repeated JSON key): no input document, nothing for OPA
            # to decide. tss-gate must not have a decision either.
            undecided += 1
            if ours["decision"] is not None or ours["answer"]["status"] == 0:
                differ += 1
                print(f"DIFF  {fixture.name}: no input document but a decision {json.dumps(ours['decision'])}")
            continue
        theirs = opa.value_of("data.tss.decision", ours["input"])
        if theirs != ours["decision"]:
            differ += 1
            print(f"DIFF  {fixture.name}\n  tss-gate: {json.dumps(ours['decision'])}\n  opa:      {json.dumps(theirs)}")
    print(
        f"opa: {len(fixtures) - differ - undecided} fixtures decided identically, {differ} differently"
        f" ({undecided} refused before evaluation)"
    )
    if not tests or not fixtures:
        print("opa: nothing was checked")
        return 1
    return 1 if failed or differ else 0


if __name__ == "__main__":
    sys.exit(main())
