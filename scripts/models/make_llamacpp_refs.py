#!/usr/bin/env python3
"""Golden files from llama.cpp for issue #4, written with the binaries of
scripts/models/build_llamacpp.sh (run that first):

1. build/models/llamacpp/smollm2-135m-instruct-f32.gguf: the Q4_1 file with every
   tensor dequantized to F32 by `llama-quantize --allow-requantize ... F32` (not committed; the
   Lathe test compares against it when it exists).
2. test/text/tokenizer_fixed_text_llamacpp.json: llama-tokenize's ids for test/text/tokenizer_fixed_text.txt
   on the Q4_1 GGUF (-f FILE --ids --no-bos --no-escape: the text as it is, no BOS).
3. test/gguf/smollm2_llamacpp_logits.json: PROMPT tokenized by llama-tokenize with its defaults
   (SmolLM2's GGUF says tokenizer.ggml.add_bos_token = false, so no BOS), evaluated by
   llamacpp-logits on the F32 copy in one batch with 1 thread and an f32 KV cache: the top-5 ids
   and logits at every position, and the greedy continuation of 64 tokens ("greedy64").

    .venv/bin/python scripts/models/make_llamacpp_refs.py [--llamacpp build/llamacpp] [--models build/models]
                                                          [--f32 PATH]

Re-running rewrites the golden files; they change only if llama.cpp, the model or this script does.
"""
import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
TEXT = os.path.join(REPO, "test", "text", "tokenizer_fixed_text.txt")
TOKENIZER_GOLDEN = os.path.join(REPO, "test", "text", "tokenizer_fixed_text_llamacpp.json")
LOGITS_GOLDEN = os.path.join(REPO, "test", "gguf", "smollm2_llamacpp_logits.json")
# Chosen so that no position's top-1 leads its runner-up by less than 0.01 (the smallest lead is
# recorded as smallest_top1_margin): a top-1 comparison with a 1e-3 tolerance cannot flip on a near tie.
PROMPT = ("The old lighthouse on Skerry Point was built in 1872 to guard the narrow channel between the islands. "
          "Each night its keeper wrote in his ledger: the weather, the ships that passed, and the oil he burned. "
          "One winter a storm lasted for nine days.")
TOP_K = 5
GREEDY_TOKENS = 64
THREADS = 1


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def run(argv):
    print("$ " + " ".join(argv), flush=True)
    p = subprocess.run(argv, capture_output=True)
    if p.returncode != 0:
        sys.exit(f"make_llamacpp_refs.py: {os.path.basename(argv[0])} exited {p.returncode}:\n"
                 + p.stderr.decode("utf-8", "replace")[-3000:])
    return p.stdout.decode("utf-8"), p.stderr.decode("utf-8", "replace")


def rel(path):
    return os.path.relpath(path, REPO)


def llama_tokenize(tool, model, text, extra):
    with tempfile.NamedTemporaryFile("w", encoding="utf-8", suffix=".txt", delete=False) as f:
        f.write(text)
    try:
        out, _ = run([tool, "-m", model, "-f", f.name, "--ids", "--no-escape", "--log-disable"] + extra)
    finally:
        os.unlink(f.name)
    return json.loads(out.strip().splitlines()[-1])


def write_json(path, header, arrays):
    """header as one line, then each (key, rows) with one row a line, so diffs read well."""
    parts = [json.dumps(header, ensure_ascii=False)[:-1]]
    for key, rows in arrays:
        body = ",\n".join(json.dumps(r, ensure_ascii=False) for r in rows)
        parts.append(f', "{key}": [\n{body}\n]')
    with open(path, "w", encoding="utf-8") as f:
        f.write("".join(parts) + "}\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--llamacpp", default=os.path.join(REPO, "build", "llamacpp"))
    ap.add_argument("--models", default=os.environ.get("LATHE_MODELS_DIR", os.path.join(REPO, "build", "models")))
    ap.add_argument("--f32", default="", help="where to write the F32 copy (default: MODELS/llamacpp/"
                    "smollm2-135m-instruct-f32.gguf)")
    args = ap.parse_args()
    bin_dir = os.path.join(args.llamacpp, "bin")
    tools = {t: os.path.join(bin_dir, t) for t in ("llama-quantize", "llama-tokenize", "llamacpp-logits")}
    for name, path in tools.items():
        if not os.access(path, os.X_OK):
            sys.exit(f"make_llamacpp_refs.py: {path} is missing; run scripts/models/build_llamacpp.sh")
    version_lines = open(os.path.join(args.llamacpp, "VERSION")).read().split("\n")
    commit = version_lines[1].split("@")[-1].strip()
    sdist_sha = version_lines[0].split("sha256 ")[-1].rstrip(")")
    llama_cpp = {"sdist": "llama-cpp-python==0.3.8 (sdist, vendor/llama.cpp)", "sdist_sha256": sdist_sha,
                 "commit": f"ggerganov/llama.cpp@{commit}"}

    model_dir = os.path.join(args.models, "real", "smollm2-135m-instruct")
    q4 = os.path.join(model_dir, "smollm2-135m-instruct-q4_1.gguf")
    f32 = args.f32 or os.path.join(args.models, "llamacpp", "smollm2-135m-instruct-f32.gguf")
    os.makedirs(os.path.dirname(os.path.abspath(f32)), exist_ok=True)
    if not os.path.exists(q4):
        sys.exit(f"make_llamacpp_refs.py: {q4} is missing; run scripts/models/prepare.sh")
    q4_sha = sha256(q4)

    # 1. The F32 copy (written beside, renamed when complete).
    start = time.time()
    run([tools["llama-quantize"], "--allow-requantize", q4, f32 + ".partial", "F32"])
    os.replace(f32 + ".partial", f32)
    f32_sha = sha256(f32)
    print(f"F32 copy: {f32} ({os.path.getsize(f32) / 2**20:.0f} MiB, sha256 {f32_sha}) in {time.time() - start:.1f} s")

    # 2. Tokenizer golden ids for the fixed text.
    text = open(TEXT, encoding="utf-8").read()
    ids = llama_tokenize(tools["llama-tokenize"], q4, text, ["--no-bos"])
    header = {"generator": "scripts/models/make_llamacpp_refs.py", "llama_cpp": llama_cpp,
              "command": "llama-tokenize -m smollm2-135m-instruct-q4_1.gguf -f tokenizer_fixed_text.txt "
                         "--ids --no-escape --log-disable --no-bos",
              "model": f"smollm2-135m-instruct-q4_1.gguf (sha256 {q4_sha})",
              "text_file": rel(TEXT), "text_sha256": sha256(TEXT), "text_bytes": len(text.encode("utf-8")),
              "n_ids": len(ids)}
    # 32 ids a line.
    write_json(TOKENIZER_GOLDEN, header, [("ids", [ids[i:i + 32] for i in range(0, len(ids), 32)])])
    print(f"{rel(TOKENIZER_GOLDEN)}: {len(ids)} ids for {len(text.encode())} bytes")

    # 3. Golden logits of the prompt on the F32 copy.
    prompt_ids = llama_tokenize(tools["llama-tokenize"], q4, PROMPT, [])
    with tempfile.TemporaryDirectory() as tmp:
        ids_file = os.path.join(tmp, "ids.txt")
        with open(ids_file, "w") as f:
            f.write(",".join(map(str, prompt_ids)))
        npy = os.path.join(tmp, "logits.npy")
        out, err = run([tools["llamacpp-logits"], "-m", f32, "--ids-file", ids_file, "-o", npy,
                        "-t", str(THREADS), "--kv-type", "f32", "--greedy", str(GREEDY_TOKENS)])
        logits = np.load(npy)
    lines = dict(line.split(" ", 1) for line in out.strip().splitlines())
    greedy = json.loads(lines["greedy"])
    greedy_margins = json.loads(lines["greedy_margin"])
    assert logits.shape == (len(prompt_ids), 49152) and len(greedy) == GREEDY_TOKENS
    rows = []
    for position in range(len(prompt_ids)):
        order = np.argsort(-logits[position], kind="stable")[:TOP_K]
        # float() of a float32 prints the shortest decimal that reads back as the same float32 value.
        rows.append({"ids": [int(i) for i in order], "logits": [float(logits[position, i]) for i in order]})
    margins = [r["logits"][0] - r["logits"][1] for r in rows]
    if min(margins) < 0.01:
        sys.exit(f"make_llamacpp_refs.py: position {int(np.argmin(margins))} of PROMPT is a near tie "
                 f"(top-1 leads by {min(margins):.2g}); choose another prompt")
    header = {"generator": "scripts/models/make_llamacpp_refs.py", "llama_cpp": llama_cpp,
              "command": f"llamacpp-logits -m smollm2-135m-instruct-f32.gguf --ids-file IDS -t {THREADS} "
                         f"--kv-type f32 --greedy {GREEDY_TOKENS}",
              "model": f"smollm2-135m-instruct-f32.gguf = llama-quantize --allow-requantize "
                       f"smollm2-135m-instruct-q4_1.gguf (sha256 {q4_sha}) F32",
              "f32_sha256": f32_sha,
              "prompt": PROMPT,
              "prompt_tokenization": "llama-tokenize defaults (tokenizer.ggml.add_bos_token is false: no BOS)",
              "ids": prompt_ids, "top_k": TOP_K, "greedy64": greedy,
              "smallest_top1_margin": float(min(margins)),
              "greedy64_smallest_margin": float(min(greedy_margins)),
              "greedy64_smallest_margin_step": int(np.argmin(greedy_margins))}
    write_json(LOGITS_GOLDEN, header, [("top5", rows)])
    print(f"{rel(LOGITS_GOLDEN)}: {len(prompt_ids)} positions, top-{TOP_K}; greedy {GREEDY_TOKENS}; "
          f"smallest top-1 margin {min(margins):.4f} at position {int(np.argmin(margins))}; "
          f"smallest greedy margin {min(greedy_margins):.4f} at step {int(np.argmin(greedy_margins))}")
    print(err.strip())


if __name__ == "__main__":
    main()
