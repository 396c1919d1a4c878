#!/usr/bin/env python3
"""`lathe eval`: perplexity protocols on the real SmolLM2 artifact and English text.

a. the artifact compiled from the GGUF embeds the tokenizer (`lathe inspect` names it), and the ids
   `lathe eval --text` scores are those `lathe-tokenize --file` gives for the same file;
b. --protocol llama.cpp and full at two window lengths (ctx 64 and 128): the reported perplexity and
   scored-token count equal an independent numpy computation (float64 log-softmax) over logits from
   `lathe run` on the same windows: second half of each window (positions ctx/2 .. ctx-2) for
   llama.cpp, positions 0 .. ctx-2 for full; relative tolerance PPL_RTOL;
c. --batch 2 gives the perplexity of --batch 1 (BATCH_RTOL), --ids FILE.npy that of --text;
d. errors exit 1 with a message, never a signal: a text shorter than one window, --text on an
   artifact without a tokenizer (MiniLM from ONNX), a model without a logits output (GPT2Model),
   an id outside the vocabulary, a missing file.

Text: the first TEXT_BYTES of Pride and Prejudice from Debian's r-cran-janeaustenr
(scripts/models/fetch_corpus.py). Stdlib + numpy. Exit 77 (skip) without models, unless CI=true.
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))
from lathe_test_util import Checker, parse_args, require_files, run, scratch_dir  # noqa: E402

PPL_RTOL = 1e-5     # same logits, different summation order (double in both)
BATCH_RTOL = 1e-4   # batch 1 vs 2: GEMM blocking differs
TEXT_BYTES = 12000

args = parse_args("--tokenize")
gguf = os.path.join(args.models, "real", "smollm2-135m-instruct", "smollm2-135m-instruct-q4_1.gguf")
book = os.path.join(args.models, "corpus", "austen", "prideprejudice.txt")
require_files(gguf, book)

c = Checker()
tmp = scratch_dir("lathe-eval-")
artifact = os.path.join(tmp, "smollm2.lathe")
rc, out, err = run([args.lathe, "compile", gguf, "-o", artifact])
if rc != 0:
    print(out, err)
    sys.exit(1)
rc, out, _ = run([args.lathe, "inspect", artifact])
c.expect(rc == 0 and "tokenizer         gpt2 (pre-tokenizer smollm), 49152 tokens" in out,
         "inspect names the embedded tokenizer")

text_path = os.path.join(tmp, "text.txt")
with open(book, "rb") as f:
    data = f.read(TEXT_BYTES)
data = data[:data.rfind(b"\n") + 1]  # whole lines, valid UTF-8
with open(text_path, "wb") as f:
    f.write(data)
rc, out, err = run([args.tokenize, gguf, "--file", text_path])
c.expect(rc == 0, f"lathe-tokenize --file: {err}")
ids = np.array([int(x) for x in out.split()], dtype=np.int64)
print(f"text: {len(data)} bytes, {len(ids)} tokens")


def lathe_eval(*extra):
    js = os.path.join(tmp, "eval.json")
    if os.path.exists(js):
        os.remove(js)
    rc, out, err = run([args.lathe, "eval", artifact, "--threads", "2", "--json", js] + list(extra))
    if rc != 0:
        c.expect(False, f"eval {' '.join(extra)} exited {rc}: {err.strip()}")
        return None
    with open(js) as f:
        return json.load(f)


def reference_ppl(ctx, chunks, first):
    windows = ids[:ctx * chunks].reshape(chunks, ctx)
    np.save(os.path.join(tmp, "input_ids.npy"), windows)
    np.save(os.path.join(tmp, "attention_mask.npy"), np.ones_like(windows))
    rc, out, err = run([args.lathe, "run", artifact, "--threads", "2", "--output-dir", tmp,
                        "--input", "input_ids=" + os.path.join(tmp, "input_ids.npy"),
                        "--input", "attention_mask=" + os.path.join(tmp, "attention_mask.npy")])
    assert rc == 0, err
    logits = np.load(os.path.join(tmp, "logits.npy")).astype(np.float64)
    nll = []
    for r in range(chunks):
        for j in range(first, ctx - 1):
            row = logits[r, j]
            m = row.max()
            nll.append(np.log(np.exp(row - m).sum()) + m - row[windows[r, j + 1]])
    return float(np.exp(np.mean(nll))), len(nll)


for ctx in (64, 128):
    chunks = min(4, len(ids) // ctx)
    for protocol, first in (("llama.cpp", ctx // 2), ("full", 0)):
        got = lathe_eval("--text", text_path, "--protocol", protocol, "--ctx", str(ctx), "--chunks", str(chunks))
        if got is None:
            continue
        want, count = reference_ppl(ctx, chunks, first)
        rel = abs(got["ppl"] - want) / want
        print(f"  {protocol:9s} ctx {ctx:3d} x {chunks}: lathe {got['ppl']:.6f}  numpy {want:.6f}  rel {rel:.1e}  "
              f"scored {got['tokens_scored']}")
        c.expect(got["stream_tokens"] == len(ids), f"{protocol} ctx {ctx}: eval tokenized {got['stream_tokens']} tokens, "
                 f"lathe-tokenize {len(ids)}")
        c.expect(got["tokens_scored"] == count, f"{protocol} ctx {ctx}: scored {got['tokens_scored']}, expected {count}")
        c.expect(rel <= PPL_RTOL, f"{protocol} ctx {ctx}: ppl {got['ppl']} vs numpy {want} (rel {rel:.2e} > {PPL_RTOL})")
        c.expect(2 < got["ppl"] < 200, f"{protocol} ctx {ctx}: ppl {got['ppl']} is not a plausible English perplexity")

one = lathe_eval("--text", text_path, "--ctx", "128", "--chunks", "4")
two = lathe_eval("--text", text_path, "--ctx", "128", "--chunks", "4", "--batch", "2")
np.save(os.path.join(tmp, "ids.npy"), ids)
from_ids = lathe_eval("--ids", os.path.join(tmp, "ids.npy"), "--ctx", "128", "--chunks", "4")
if one and two and from_ids:
    c.expect(abs(one["ppl"] - two["ppl"]) / one["ppl"] <= BATCH_RTOL, f"batch 2 ppl {two['ppl']} vs batch 1 {one['ppl']}")
    c.expect(abs(one["ppl"] - from_ids["ppl"]) / one["ppl"] <= PPL_RTOL, f"--ids ppl {from_ids['ppl']} vs --text {one['ppl']}")
all_chunks = lathe_eval("--text", text_path, "--ctx", "256", "--batch", "3")
if all_chunks:
    c.expect(all_chunks["chunks"] == len(ids) // 256, f"without --chunks every whole window: {all_chunks['chunks']}")


def expect_error(what, cmd, needle):
    rc, out, err = run(cmd)
    c.expect(rc == 1 and needle in err, f"{what}: rc {rc}, stderr {err.strip()!r} (expected {needle!r})")


expect_error("window longer than the text", [args.lathe, "eval", artifact, "--text", text_path, "--ctx", "100000"],
             "fewer than one window")
expect_error("missing text", [args.lathe, "eval", artifact, "--text", os.path.join(tmp, "nope.txt")], "cannot read")
np.save(os.path.join(tmp, "bad_ids.npy"), np.array([1, 2, 60000, 3] * 40, dtype=np.int64))
expect_error("id outside the vocabulary", [args.lathe, "eval", artifact, "--ids", os.path.join(tmp, "bad_ids.npy"),
                                           "--ctx", "16"], "outside the model's 49152-entry vocabulary")
minilm = os.path.join(args.models, "real", "all-minilm-l6-v2", "all-minilm-l6-v2.opset17.onnx")
gpt2 = os.path.join(args.models, "generated", "gpt2-tiny", "gpt2-tiny.opset17.onnx")
for name, onnx in (("minilm", minilm), ("gpt2", gpt2)):
    if not os.path.exists(onnx):
        c.expect(False, f"{onnx} missing")
        continue
    rc, out, err = run([args.lathe, "compile", onnx, "-o", os.path.join(tmp, name + ".lathe")])
    c.expect(rc == 0, f"compile {onnx}: {err}")
expect_error("--text without a tokenizer", [args.lathe, "eval", os.path.join(tmp, "minilm.lathe"), "--text", text_path],
             "has no tokenizer")
expect_error("no logits output", [args.lathe, "eval", os.path.join(tmp, "gpt2.lathe"), "--ids",
                                  os.path.join(tmp, "ids.npy"), "--ctx", "16"], "no logits output")
c.finish()
