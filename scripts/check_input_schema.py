#!/usr/bin/env python3
"""Checks docs/input.schema.json against the input documents tss-gate builds.

For every fixture in tests/fixtures/ it asks a tss-gate binary for the input
document the policies see (`tss-gate eval FIXTURE`, whose `input` includes the
spending-limit facts of the fixture's `history`, and `tss-gate eval
--input-only FIXTURE`), then:

1. validates the document against the schema (JSON Schema draft-07);
2. lists every path the document carries that the schema does not name
   under `properties`, so the schema stays complete for real payloads. A key
   under an object whose `additionalProperties` is a schema (a map keyed by
   free strings, such as `velocity`) is covered by that schema; a node with
   neither `properties` nor such a schema (an opaque value) covers everything
   below it.

The `detail`, `extra` and `transaction` documents of tests/vectors/*.json are
walked for (2) as well, as `input.detail`, `input.extra` and
`input.extra.transaction`.

It also checks that the schema is valid draft-07 and keeps the conventions
code that walks it relies on: every object node with `properties` sets
`additionalProperties: true` and describes each property; a map sets
`additionalProperties` to a schema and has no `properties`; an array has
`items`; `$ref` only points into `#/definitions/`.

Validation uses the `jsonschema` package when it is importable, e.g.

    python3 -m venv /tmp/venv-schema && /tmp/venv-schema/bin/pip install jsonschema
    /tmp/venv-schema/bin/python scripts/check_input_schema.py

and otherwise a built-in validator for the keywords the schema uses.

Exit status: 0 when everything holds, 1 when something does not, 2 on a
usage error (no binary).
"""

import argparse
import collections
import json
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent

# Keywords the schema may use; anything else is a convention error (code
# walking the schema would not know it).
KNOWN_KEYWORDS = {
    "$schema", "$ref", "title", "description", "type", "properties",
    "additionalProperties", "items", "required", "enum", "examples",
    "format", "definitions",
}
JSON_TYPES = {"object", "array", "string", "number", "integer", "boolean", "null"}


# --- schema helpers ------------------------------------------------------------

def types_of(node):
    t = node.get("type")
    if t is None:
        return None
    return {t} if isinstance(t, str) else set(t)


def deref(root, node):
    seen = 0
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"]
        if not ref.startswith("#/definitions/"):
            raise ValueError(f"non-local $ref {ref}")
        node = root.get("definitions", {})[ref[len("#/definitions/"):]]
        seen += 1
        if seen > 32:
            raise ValueError(f"$ref loop at {ref}")
    return node


def lint(root):
    """Convention errors, as `path: problem` strings."""
    problems = []
    if root.get("type") != "object" or not isinstance(root.get("properties"), dict):
        problems.append("$: the root must be `type: object` with `properties`")

    def walk(node, path):
        if not isinstance(node, dict):
            problems.append(f"{path}: not a schema object")
            return
        for k in node:
            if k not in KNOWN_KEYWORDS:
                problems.append(f"{path}: unknown keyword `{k}`")
        if "$ref" in node:
            if not str(node["$ref"]).startswith("#/definitions/"):
                problems.append(f"{path}: $ref must be local (#/definitions/...)")
            return
        t = types_of(node)
        if t is not None and not t <= JSON_TYPES:
            problems.append(f"{path}: bad type {sorted(t)}")
        props = node.get("properties")
        addl = node.get("additionalProperties")
        if props is not None:
            if addl is not True:
                problems.append(f"{path}: an object with `properties` must set `additionalProperties: true`")
            if t is not None and "object" not in t:
                problems.append(f"{path}: `properties` on a non-object type")
            for key, sub in props.items():
                if not isinstance(sub, dict) or not sub.get("description"):
                    problems.append(f"{path}.{key}: no description")
                walk(sub, f"{path}.{key}")
        if isinstance(addl, dict):
            if props is not None:
                problems.append(f"{path}: a map (`additionalProperties` schema) must not list `properties`")
            walk(addl, f"{path}.*")
        elif addl is not None and addl is not True:
            problems.append(f"{path}: `additionalProperties` must be true or a schema")
        if t is not None and "array" in t:
            if not isinstance(node.get("items"), dict):
                problems.append(f"{path}: an array needs an `items` schema")
        if isinstance(node.get("items"), dict):
            walk(node["items"], f"{path}[]")
        for name, sub in node.get("definitions", {}).items():
            walk(sub, f"#/definitions/{name}")

    walk(root, "$")
    return problems


# --- validation ------------------------------------------------------------------

def make_validator(schema):
    """(check_schema errors, validate(doc) -> [messages], engine name)."""
    try:
        import jsonschema  # noqa: PLC0415
    except ImportError:
        return minimal_check_schema(schema), lambda doc: minimal_validate(schema, doc), "built-in"
    meta = []
    try:
        jsonschema.Draft7Validator.check_schema(schema)
    except jsonschema.exceptions.SchemaError as e:
        meta.append(f"not valid draft-07: {e.message} at {'/'.join(map(str, e.absolute_path))}")
    v = jsonschema.Draft7Validator(schema)

    def validate(doc):
        out = []
        for e in sorted(v.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path))):
            where = "input" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in e.absolute_path)
            out.append(f"{where}: {e.message[:200]}")
        return out

    try:
        from importlib.metadata import version  # noqa: PLC0415
        engine = f"jsonschema {version('jsonschema')}"
    except Exception:  # noqa: BLE001
        engine = "jsonschema"
    return meta, validate, engine


def minimal_check_schema(schema):
    problems = []
    if schema.get("$schema", "").rstrip("#") != "http://json-schema.org/draft-07/schema":
        problems.append("`$schema` is not draft-07")
    return problems


def type_ok(t, v):
    return {
        "object": isinstance(v, dict),
        "array": isinstance(v, list),
        "string": isinstance(v, str),
        "boolean": isinstance(v, bool),
        "null": v is None,
        "integer": isinstance(v, int) and not isinstance(v, bool)
        or isinstance(v, float) and v.is_integer(),
        "number": isinstance(v, (int, float)) and not isinstance(v, bool),
    }[t]


def minimal_validate(root, doc):
    out = []

    def walk(node, v, path):
        node = deref(root, node)
        t = types_of(node)
        if t is not None and not any(type_ok(x, v) for x in t):
            out.append(f"{path}: {json.dumps(v)[:60]} is not of type {sorted(t)}")
            return
        if "enum" in node and v not in node["enum"]:
            out.append(f"{path}: {json.dumps(v)[:60]} is not one of {node['enum']}")
        if isinstance(v, dict):
            for r in node.get("required", []):
                if r not in v:
                    out.append(f"{path}: `{r}` is a required property")
            props = node.get("properties", {})
            addl = node.get("additionalProperties", True)
            for k, x in v.items():
                if k in props:
                    walk(props[k], x, f"{path}.{k}")
                elif addl is False:
                    out.append(f"{path}: additional property `{k}`")
                elif isinstance(addl, dict):
                    walk(addl, x, f"{path}.{k}")
        if isinstance(v, list) and isinstance(node.get("items"), dict):
            for n, x in enumerate(v):
                walk(node["items"], x, f"{path}[{n}]")

    walk(root, doc, "input")
    return out


# --- completeness ----------------------------------------------------------------

def leaves(v, path):
    if isinstance(v, dict) and v:
        for k, x in v.items():
            yield from leaves(x, f"{path}.{k}")
    elif isinstance(v, list) and v:
        for x in v:
            yield from leaves(x, f"{path}[]")
    else:
        yield path


def unnamed_paths(root, node, v, path):
    """Leaf paths of `v` the schema does not name. Array indices print as
    `[]`, keys of a map as `*`."""
    node = deref(root, node)
    if isinstance(v, dict):
        props = node.get("properties")
        addl = node.get("additionalProperties")
        for k, x in v.items():
            if props is not None and k in props:
                yield from unnamed_paths(root, props[k], x, f"{path}.{k}")
            elif props is None and isinstance(addl, dict):
                yield from unnamed_paths(root, addl, x, f"{path}.*")
            elif props is not None:
                yield from leaves(x, f"{path}.{k}")
            # else: an opaque value, anything below it is covered
    elif isinstance(v, list) and isinstance(node.get("items"), dict):
        for x in v:
            yield from unnamed_paths(root, node["items"], x, f"{path}[]")


def schema_at(root, dotted):
    node = root
    for seg in dotted.split(".")[1:]:
        node = deref(root, node)["properties"][seg]
    return node


# --- inputs ------------------------------------------------------------------------

def input_of(binary, fixture, input_only):
    cmd = [binary, "eval"] + (["--input-only"] if input_only else []) + [str(fixture)]
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=120)
    if p.returncode != 0:
        return None, (p.stderr.strip().splitlines() or ["exit %d" % p.returncode])[-1]
    doc = json.loads(p.stdout)
    if input_only:
        return doc, None
    if doc.get("input") is None:
        return None, f"refused before any policy ran (failure `{doc.get('failure')}`)"
    return doc["input"], None


def vector_docs(vectors_dir):
    """(name, dotted schema path, document) for every vector request part."""
    for f in sorted(pathlib.Path(vectors_dir).glob("*.json")):
        data = json.loads(f.read_text())
        cases = data.get("cases") if isinstance(data, dict) else None
        if not isinstance(cases, list):
            continue
        for n, case in enumerate(cases):
            if not isinstance(case, dict):
                continue
            name = f"{f.name}#{case.get('name', n)}"
            for key, where in (("detail", "input.detail"), ("extra", "input.extra"),
                               ("transaction", "input.extra.transaction")):
                if isinstance(case.get(key), dict):
                    yield name, where, case[key]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", default=os.environ.get("TSS_GATE_BIN", str(ROOT / "target/debug/tss-gate")),
                    help="tss-gate binary (default: $TSS_GATE_BIN, else target/debug/tss-gate)")
    ap.add_argument("--schema", default=str(ROOT / "docs/input.schema.json"))
    ap.add_argument("--fixtures", default=str(ROOT / "tests/fixtures"))
    ap.add_argument("--vectors", default=str(ROOT / "tests/vectors"),
                    help="directory of derive test vectors walked for unnamed paths ('' to skip)")
    ap.add_argument("--mode", choices=["both", "full", "input-only"], default="both",
                    help="which `eval` output to check (default: both)")
    ap.add_argument("-v", "--verbose", action="store_true", help="name every fixture")
    a = ap.parse_args()

    if not os.access(a.bin, os.X_OK):
        print(f"error: no tss-gate binary at {a.bin} (build it, or pass --bin / TSS_GATE_BIN)", file=sys.stderr)
        return 2
    schema = json.loads(pathlib.Path(a.schema).read_text())
    meta, validate, engine = make_validator(schema)
    problems = meta + lint(schema)
    for p in problems:
        print(f"SCHEMA {p}")

    modes = {"both": [False, True], "full": [False], "input-only": [True]}[a.mode]
    fixtures = sorted(pathlib.Path(a.fixtures).glob("*.json"))
    validated, failed, skipped = 0, 0, []
    unnamed = collections.defaultdict(list)  # path -> [where]
    for fx in fixtures:
        for input_only in modes:
            label = f"{fx.name}{' (--input-only)' if input_only else ''}"
            doc, why = input_of(a.bin, fx, input_only)
            if doc is None:
                skipped.append(f"{label}: {why}")
                continue
            errs = validate(doc)
            if errs:
                failed += 1
                print(f"FAIL {label}")
                for e in errs[:20]:
                    print(f"  {e}")
            else:
                validated += 1
                if a.verbose:
                    print(f"ok   {label}")
            for p in unnamed_paths(schema, schema, doc, "input"):
                unnamed[p].append(label)

    if a.vectors:
        for name, where, doc in vector_docs(a.vectors):
            for p in unnamed_paths(schema, schema_at(schema, where), doc, where):
                unnamed[p].append(name)

    for s in skipped:
        print(f"skip {s}")
    for p in sorted(unnamed):
        seen = unnamed[p]
        print(f"UNNAMED {p}  ({len(seen)}x, e.g. {seen[0]})")

    docs = validated + failed
    print(f"schema: {a.schema} ({engine}); {len(problems)} schema problem(s)")
    print(f"inputs: {docs} checked from {len(fixtures)} fixtures, {len(skipped)} without an input document")
    print(f"unnamed paths: {len(unnamed)}")
    print(f"{validated} passed, {failed} failed")
    return 0 if not (problems or failed or unnamed) else 1


if __name__ == "__main__":
    sys.exit(main())
