#!/usr/bin/python3
"""schema_check.py - keeps docs/schemas/definition.json in step with the loader.

Usage: /usr/bin/python3 schema_check.py SAGA_COORDINATOR SOURCE_DIR

Every valid example (sagas/, tests/sagas/, tests/definitions/valid/, tools/recovery/sagas/)
must pass both `saga-coordinator --check` and the schema. Every invalid case of
tests/definitions/invalid/ is judged error by error: each error `--check --format json`
reports must be matched by a schema error at the same JSON path (or listed in
tests/definitions/schema-gaps.json with the rule a schema cannot express), and each schema
error must be matched by a `--check` error at its path (the schema is never stricter than
the loader). A gap listed but no longer needed fails the test too, so the list stays the
exact list of rules only `--check` enforces.

Run by tests/test_schema.c under ctest; needs python3-jsonschema (Debian 12: 4.10, which
knows draft 2020-12). Exits 0 when all holds, 1 otherwise, printing why.
"""
import glob
import json
import os
import subprocess
import sys

try:
    import jsonschema
except ImportError:
    print("schema_check: needs python3-jsonschema (scripts/deps.sh --test installs it)")
    sys.exit(1)

VALID_GLOBS = ["sagas/*.json", "tests/sagas/*.json", "tests/definitions/valid/*.json",
               "tools/recovery/sagas/*.json"]


def split_path(instance, path):
    """The components of a loader path ("steps[2].action.payload.k") in instance: keys may
    hold "." or "[", so at an object the longest key that fits is the one meant."""
    out, rest, value = [], path, instance
    while rest:
        if rest.startswith("."):
            rest = rest[1:]
        if rest.startswith("["):
            end = rest.index("]")
            i = int(rest[1:end])
            out.append(i)
            rest = rest[end + 1:]
            value = value[i] if isinstance(value, list) and i < len(value) else None
            continue
        best = None
        if isinstance(value, dict):
            for k in value:
                if rest.startswith(k) and (len(rest) == len(k) or rest[len(k)] in ".[") \
                        and (best is None or len(k) > len(best)):
                    best = k
        if best is None:  # not in the document (a missing field): cut at the next "." or "["
            cut = min([p for p in (rest.find("."), rest.find("[")) if p > 0] or [len(rest)])
            best = rest[:cut]
        out.append(best)
        rest = rest[len(best):]
        value = value.get(best) if isinstance(value, dict) else None
    return tuple(out)


def schema_paths(err, instance):
    """The loader paths a schema error may stand for."""
    path = tuple(err.absolute_path)
    spath = list(err.absolute_schema_path)
    if "dependentSchemas" in spath:
        # {"minLength": ...} on a "number": the schema flags the type, the loader the keyword.
        kw = spath[spath.index("dependentSchemas") + 1]
        return {path[:-1] + (kw,)}
    if err.validator == "additionalProperties" and isinstance(err.instance, dict):
        known = err.schema.get("properties", {})
        return {path} | {path + (k,) for k in err.instance if k not in known}
    if "propertyNames" in spath:  # the error is about a key: err.instance is the key
        return {path, path + (err.instance,)}
    if err.validator == "uniqueItems" and isinstance(err.instance, list):
        return {path} | {path + (i,) for i in range(len(err.instance))}
    return {path}


def fmt(path):
    s = ""
    for c in path:
        s += "[%d]" % c if isinstance(c, int) else ("." if s else "") + c
    return s or "(the document)"


def check_json(coordinator, target):
    r = subprocess.run([coordinator, "--check", target, "--format", "json"],
                       capture_output=True, text=True, timeout=60)
    if r.returncode not in (0, 1):
        raise RuntimeError("%s --check %s exited %d: %s" % (coordinator, target, r.returncode,
                                                             r.stderr))
    return r.returncode, [json.loads(line) for line in r.stdout.splitlines() if line]


def no_duplicates(pairs):
    """Rejects duplicate object keys, as the loader (jansson's JSON_REJECT_DUPLICATES) and
    editors' JSON parsers do: a document with them is not read at all."""
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError("duplicate object key")
    return dict(pairs)


def schema_errors(validator, files):
    """{file: (instance or None, [errors])}; a file that is not JSON gets instance None."""
    out = {}
    for f in files:
        try:
            with open(f, encoding="utf-8") as fh:
                inst = json.load(fh, object_pairs_hook=no_duplicates)
        except ValueError as e:
            out[f] = (None, ["not JSON: %s" % e])
            continue
        out[f] = (inst, list(validator.iter_errors(inst)))
    return out


def main():
    coordinator, root = sys.argv[1], sys.argv[2]
    with open(os.path.join(root, "docs/schemas/definition.json")) as fh:
        schema = json.load(fh)
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    with open(os.path.join(root, "tests/definitions/schema-gaps.json")) as fh:
        gaps = json.load(fh)["cases"]
    problems, used_gaps, rules = [], set(), {}

    valid = sorted(f for g in VALID_GLOBS for f in glob.glob(os.path.join(root, g)))
    for f in valid:
        rel = os.path.relpath(f, root)
        rc, errs = check_json(coordinator, f)
        inst, serrs = schema_errors(validator, [f])[f]
        if rc != 0:
            problems.append("%s: --check rejects a valid example: %s" % (rel, errs))
        for e in serrs:
            problems.append("%s: the schema rejects a valid example at %s: %s" % (
                rel, fmt(getattr(e, "absolute_path", ())), getattr(e, "message", e)))
        print("valid   %-48s check: valid  schema: %s" % (rel, "invalid" if serrs else "valid"))

    inv_root = os.path.join(root, "tests/definitions/invalid")
    for case in sorted(os.listdir(inv_root)):
        d = os.path.join(inv_root, case)
        target = os.path.join(d, "input")
        files = sorted(glob.glob(os.path.join(target, "*.json"))) if os.path.isdir(target) \
            else [os.path.join(d, "input.json")]
        if not os.path.isdir(target):
            target = files[0]
        rc, errs = check_json(coordinator, target)
        if rc != 1:
            problems.append("%s: --check accepts an invalid case" % case)
        per_file = schema_errors(validator, files)
        case_gaps = gaps.get(case, {})
        matched_schema = set()
        gap_lines = 0
        for e in errs:
            line = e["text"].replace(d + "/", "")
            inst, serrs = per_file.get(e["file"], (None, []))
            found = False
            if e["line"] is not None and e["message"].startswith("invalid JSON"):
                found = inst is None  # a syntax error: the schema cannot read it either
                matched_schema.add((e["file"], 0)) if found else None
            elif inst is not None:
                want = split_path(inst, e["path"] or "")
                for i, se in enumerate(serrs):
                    if want in schema_paths(se, inst):
                        found = True
                        matched_schema.add((e["file"], i))
            if found and line in case_gaps:
                problems.append("%s: listed in schema-gaps.json, but the schema catches it: %s"
                                % (case, line))
            elif not found and line not in case_gaps:
                problems.append("%s: --check reports an error the schema misses (fix the "
                                "schema, or list the rule in schema-gaps.json): %s"
                                % (case, line))
            elif not found:
                used_gaps.add((case, line))
                rules.setdefault(case_gaps[line], []).append(case)
                gap_lines += 1
        for f, (inst, serrs) in per_file.items():
            for i, se in enumerate(serrs):
                if (f, i) not in matched_schema and inst is not None:
                    problems.append("%s: the schema rejects what --check does not report: %s "
                                    "at %s: %s" % (case, os.path.relpath(f, d),
                                                   fmt(se.absolute_path), se.message))
        nschema = sum(len(s) for _, s in per_file.values())
        print("invalid %-48s check: %d error(s)  schema: %d error(s)%s" % (
            case, len(errs), nschema, "  (%d only --check can find)" % gap_lines
            if gap_lines else ""))
    for case, lines in gaps.items():
        for line in lines:
            if (case, line) not in used_gaps and not any(p.startswith(case + ":")
                                                         for p in problems):
                problems.append("%s: schema-gaps.json lists an error --check no longer "
                                "reports: %s" % (case, line))

    print("\nRules only `saga-coordinator --check` enforces (the schema cannot express them):")
    for rule, cases in sorted(rules.items()):
        print("  - %s  [%s]" % (rule, ", ".join(sorted(set(cases)))))
    if problems:
        print("\n%d problem(s):" % len(problems))
        for p in problems:
            print("  " + p)
        return 1
    print("\nschema and --check agree on %d valid examples and %d invalid cases" % (
        len(valid), len(os.listdir(inv_root))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
