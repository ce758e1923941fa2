#!/usr/bin/env bash
# Regenerates the seed corpora in tests/fuzz-corpus/<target>/ from the repository's own
# data: definitions (sagas/, tests/definitions/, tests/sagas/), their payload templates,
# the input-topic examples of docs/protocol.md, and encoded sagas from gen_saga_corpus.
# Usage: fuzz/seed_corpus.sh   (after fuzz/build.sh; needs python3)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
corpus=$root/tests/fuzz-corpus
bin=${FUZZ_BUILD_DIR:-$root/build-fuzz}
rm -rf "$corpus"/{definition,template,protocol,saga_fields}
mkdir -p "$corpus"/{definition,template,protocol,saga_fields}

python3 - "$root" "$corpus" <<'PY'
import glob, hashlib, json, os, re, sys
root, corpus = sys.argv[1], sys.argv[2]

def put(target, name, data):
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(corpus, target, name), "wb") as f:
        f.write(data)

defs = sorted(glob.glob(f"{root}/sagas/*.json") + glob.glob(f"{root}/tests/sagas/*.json") +
              glob.glob(f"{root}/tests/definitions/*/*/input.json") +
              glob.glob(f"{root}/tests/definitions/*/*/input/*.json") +
              glob.glob(f"{root}/tests/definitions/valid/*.json"))
payloads = {}
for path in defs:
    rel = os.path.relpath(path, root).replace("/", "_")
    raw = open(path, "rb").read()
    put("definition", rel, raw)
    try:
        d = json.loads(raw)
    except ValueError:
        continue
    def walk(v):
        if isinstance(v, dict):
            for k, c in v.items():
                if k == "payload":
                    payloads[json.dumps(c, sort_keys=True)] = c
                walk(c)
        elif isinstance(v, list):
            for c in v:
                walk(c)
    walk(d)
for text in sorted(payloads):
    put("template", "payload-" + hashlib.sha1(text.encode()).hexdigest()[:12], text)
for i, t in enumerate([
        '"{{input.items[0].sku}}-{{saga.id}}"', '{"a":"{{{{literal}}"}',
        '{"x":"{{ input.meta.big ? }}","y":"n={{input.amount}} {{input.meta}}"}',
        '["{{steps.reserve.output.nested.list[1]}}","{{steps.charge.output.id?}}"]',
        '{"own":"{{steps.schedule.output.id}}","name":"{{saga.name}}"}',
        '{"deep":[[[[{"a":"{{input.items[1]}}"}]]]]}', '"{{steps.left.output.id}}"',
        '{"bad":"{{input..x}}","u":"{{unterminated"}', '42', 'null']):
    put("template", f"handwritten-{i:02d}", t)

doc = open(f"{root}/docs/protocol.md").read()
n = 0
for block in re.findall(r"```json\n(.*?)```", doc, re.S):
    for line in block.strip().split("\n{"):
        text = line if line.startswith("{") else "{" + line
        try:
            msg = json.loads(text)
        except ValueError:
            msg = None
        if msg is None:
            # one message spread over several lines
            try:
                msg = json.loads(block)
            except ValueError:
                continue
        if msg.get("type") in ("start", "reply", "abort", "retry", "skip"):
            put("protocol", f"doc-{n:02d}-{msg['type']}", json.dumps(msg))
            n += 1
for i, t in enumerate([
        '{"type":"reply","command_id":"order-1001/charge/action/2","saga_id":"order-1001",'
        '"step":"charge","kind":"action","attempt":2,"status":"failed","error":"declined",'
        '"retryable":true,"meta":{"trace":"abc"}}',
        '{"type":"reply","saga_id":"order-1001","step":"reserve","kind":"compensation",'
        '"attempt":1,"status":"ok","output":{"a":{"b":[1,2,{"c":null}]}}}',
        '{"type":"start","saga":"order-placement","input":{}}',
        '{"type":"start","saga_id":"a:b.c_d-e","saga":"x","version":null,"input":null}',
        '{"type":"skip","saga_id":"order-1001"}']):
    put("protocol", f"handwritten-{i:02d}", t)
PY
"$bin/gen_saga_corpus" "$corpus/saga_fields"
for t in definition template protocol saga_fields; do
  echo "$t: $(ls "$corpus/$t" | wc -l) seeds"
done
