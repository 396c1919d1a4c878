#!/usr/bin/env python3
"""GPTQ and AWQ against round-to-nearest on SmolLM2-135M (acceptance for issue #7).

For each setting (int4 g128 sym, int3 g128 sym) and each calibration set (disjoint Austen novels),
compiles GPTQ and AWQ artifacts and measures perplexity on Pride and Prejudice (llama.cpp protocol);
prints the fraction of RTN's perplexity gap to fp32 each method closes, and its spread across the
calibration sets. Then the same for MiniLM-L6 at int4 g32: the gap is 1 - mean cosine of the
mean-pooled embeddings against fp32, on sentences of Pride and Prejudice, with calibration batches
tokenized from the same three novels (MiniLM's tokenizer.json, through the `tokenizers` package of the
project's venv). Writes JSON stamped with the git commit.
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from measure import ROOT, commit, sh  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lathe", default=os.path.join(ROOT, "build", "bin", "lathe"))
    ap.add_argument("--models", default=os.path.join(ROOT, "build", "models"))
    ap.add_argument("--chunks", type=int, default=10)
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--ctx", type=int, default=256)
    ap.add_argument("--sets", default="emma,mansfieldpark,persuasion")
    ap.add_argument("--formats", default="int4,int3")
    ap.add_argument("--methods", default="gptq,awq")
    ap.add_argument("--skip-minilm", action="store_true", help="only the SmolLM2 rows")
    ap.add_argument("--skip-smollm2", action="store_true", help="only the MiniLM rows")
    ap.add_argument("--minilm-sentences", type=int, default=32, help="calibration and evaluation sentences per set")
    ap.add_argument("--out", default=os.path.join(ROOT, "build", "accept", "gptq_awq_table.json"))
    args = ap.parse_args()
    work = os.path.dirname(args.out)
    os.makedirs(work, exist_ok=True)
    gguf = os.path.join(args.models, "real", "smollm2-135m-instruct", "smollm2-135m-instruct-q4_1.gguf")
    corpus = os.path.join(args.models, "corpus", "austen")
    text = os.path.join(corpus, "prideprejudice.txt")

    rows = [] if args.skip_smollm2 else smollm2_rows(args, work, gguf, corpus, text)
    if not args.skip_minilm:
        rows += minilm_rows(args, work, corpus, text)
    json.dump({"commit": commit(), "chunks": args.chunks, "calibration": f"{args.samples}x{args.ctx}", "rows": rows},
              open(args.out, "w"), indent=1)
    print("wrote", args.out)


def perplexity(lathe, artifact, text, chunks, work):
    """`lathe eval` perplexity of an LM artifact on `chunks` windows of `text` (llama.cpp protocol)."""
    js = os.path.join(work, "eval.json")
    sh([lathe, "eval", artifact, "--text", text, "--chunks", str(chunks), "--json", js])
    return json.load(open(js))["ppl"]


def smollm2_rows(args, work, gguf, corpus, text):
    def ppl(artifact):
        return perplexity(args.lathe, artifact, text, args.chunks, work)

    fp32 = os.path.join(work, "smollm2.fp32.lathe")
    sh([args.lathe, "compile", gguf, "-o", fp32])
    base = ppl(fp32)
    rows = []
    for fmt in args.formats.split(","):
        recipe = os.path.join(work, f"{fmt}-rtn.yaml")
        with open(recipe, "w") as f:
            f.write(f"quantize: {{format: {fmt}, group_size: 128, symmetric: true, method: rtn}}\n")
        art = os.path.join(work, f"smollm2.{fmt}.rtn.lathe")
        sh([args.lathe, "compile", gguf, "--recipe", recipe, "-o", art])
        rtn = ppl(art)
        for method in args.methods.split(","):
            closed = []
            for cal in args.sets.split(","):
                recipe = os.path.join(work, f"{fmt}-{method}.yaml")
                with open(recipe, "w") as f:
                    f.write(f"quantize: {{format: {fmt}, group_size: 128, symmetric: true, method: {method}}}\n")
                art = os.path.join(work, f"smollm2.{fmt}.{method}.{cal}.lathe")
                t0 = time.time()
                sh([args.lathe, "compile", gguf, "--recipe", recipe, "--calibration", os.path.join(corpus, cal + ".txt"),
                    "--calibration-samples", str(args.samples), "--calibration-ctx", str(args.ctx), "-o", art])
                seconds = time.time() - t0
                p = ppl(art)
                closed.append((rtn - p) / (rtn - base))
                rows.append({"format": fmt, "method": method, "calibration": cal, "ppl": p, "rtn_ppl": rtn, "fp32_ppl": base,
                             "gap_closed": closed[-1], "compile_s": seconds})
                print(f"{fmt} g128 {method:5s} cal {cal:14s} ppl {p:8.3f} (rtn {rtn:8.3f}, fp32 {base:7.3f}) "
                      f"gap closed {100 * closed[-1]:5.1f} %  compile {seconds:5.0f} s", flush=True)
            spread = max(closed) - min(closed)
            print(f"{fmt} g128 {method}: gap closed mean {100 * sum(closed) / len(closed):.1f} %, "
                  f"min {100 * min(closed):.1f} %, spread {100 * spread:.1f} %", flush=True)
    return rows


def sentences(path, count, skip=200):
    """`count` sentences of 8+ words from a novel, after its first `skip` lines (front matter)."""
    import re
    body = " ".join(open(path, encoding="utf-8").read().split("\n")[skip:])
    out = [s.strip() for s in re.split(r"(?<=[.!?])\s+", body) if len(s.split()) >= 8]
    step = max(1, len(out) // count)
    return out[::step][:count]


def minilm_batch(tokenizer_json, texts, seq, out_dir):
    """Writes input_ids/attention_mask/token_type_ids .npy for `texts`, padded or cut to `seq` tokens."""
    import subprocess
    venv_python = os.path.join(ROOT, ".venv", "bin", "python")
    code = ("import json, sys, numpy as np\n"
            "from tokenizers import Tokenizer\n"
            "tok = Tokenizer.from_file(sys.argv[1]); seq = int(sys.argv[2]); out = sys.argv[3]\n"
            "tok.enable_truncation(seq); tok.enable_padding(length=seq)\n"
            "enc = tok.encode_batch(json.load(sys.stdin))\n"
            "np.save(out + '/input_ids.npy', np.array([e.ids for e in enc], dtype=np.int64))\n"
            "np.save(out + '/attention_mask.npy', np.array([e.attention_mask for e in enc], dtype=np.int64))\n"
            "np.save(out + '/token_type_ids.npy', np.array([e.type_ids for e in enc], dtype=np.int64))\n")
    os.makedirs(out_dir, exist_ok=True)
    p = subprocess.run([venv_python, "-c", code, tokenizer_json, str(seq), out_dir], input=json.dumps(texts), text=True,
                       capture_output=True)
    if p.returncode != 0:
        sys.exit(f"tokenizing for MiniLM failed:\n{p.stderr[-2000:]}")


def minilm_embeddings(lathe, artifact, inputs_dir, out_dir):
    """Mean-pooled (over real tokens) last_hidden_state of `artifact` run on the batch in `inputs_dir`."""
    import numpy as np
    cmd = [lathe, "run", artifact, "--output-dir", out_dir]
    for f in ("input_ids", "attention_mask", "token_type_ids"):
        cmd += ["--input", f"{f}={os.path.join(inputs_dir, f + '.npy')}"]
    sh(cmd)
    h = np.load(os.path.join(out_dir, "last_hidden_state.npy")).astype(np.float64)
    mask = np.load(os.path.join(inputs_dir, "attention_mask.npy")).astype(np.float64)
    return (h * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)


def minilm_rows(args, work, corpus, text):
    import numpy as np
    model_dir = os.path.join(args.models, "real", "all-minilm-l6-v2")
    onnx = os.path.join(model_dir, "all-minilm-l6-v2.opset17.onnx")
    tok = os.path.join(model_dir, "tokenizer.json")
    evald = os.path.join(work, "minilm.eval.inputs")
    minilm_batch(tok, sentences(text, args.minilm_sentences), 64, evald)

    def embeddings(artifact):
        return minilm_embeddings(args.lathe, artifact, evald, os.path.join(work, "minilm.out"))

    def cosine(a, b):
        return float(((a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))).mean())

    fp32 = os.path.join(work, "minilm.fp32.lathe")
    sh([args.lathe, "compile", onnx, "-o", fp32])
    base = embeddings(fp32)
    recipe = os.path.join(work, "minilm-int4-rtn.yaml")
    with open(recipe, "w") as f:
        f.write("quantize: {format: int4, group_size: 32, symmetric: true, method: rtn}\n")
    art = os.path.join(work, "minilm.int4.rtn.lathe")
    sh([args.lathe, "compile", onnx, "--recipe", recipe, "-o", art])
    rtn = 1 - cosine(embeddings(art), base)
    rows = []
    for method in args.methods.split(","):
        closed = []
        for cal in args.sets.split(","):
            cald = os.path.join(work, f"minilm.cal.{cal}")
            minilm_batch(tok, sentences(os.path.join(corpus, cal + ".txt"), args.minilm_sentences), 64, cald)
            recipe = os.path.join(work, f"minilm-int4-{method}.yaml")
            with open(recipe, "w") as f:
                f.write(f"quantize: {{format: int4, group_size: 32, symmetric: true, method: {method}}}\n")
            art = os.path.join(work, f"minilm.int4.{method}.{cal}.lathe")
            t0 = time.time()
            sh([args.lathe, "compile", onnx, "--recipe", recipe, "--calibration", cald, "-o", art])
            seconds = time.time() - t0
            gap = 1 - cosine(embeddings(art), base)
            closed.append((rtn - gap) / rtn)
            rows.append({"model": "minilm", "format": "int4", "group_size": 32, "method": method, "calibration": cal,
                         "cos_gap": gap, "rtn_cos_gap": rtn, "gap_closed": closed[-1], "compile_s": seconds})
            print(f"MiniLM int4 g32 {method:5s} cal {cal:14s} 1-cos {gap:.6f} (rtn {rtn:.6f}) "
                  f"gap closed {100 * closed[-1]:5.1f} %  compile {seconds:4.0f} s", flush=True)
        print(f"MiniLM int4 g32 {method}: gap closed mean {100 * sum(closed) / len(closed):.1f} %, "
              f"min {100 * min(closed):.1f} %, spread {100 * (max(closed) - min(closed)):.1f} %", flush=True)
    return rows


if __name__ == "__main__":
    main()
