#!/usr/bin/env python3
"""W8A8 and SmoothQuant accuracy on the real models (acceptance for issue #8).

MiniLM-L6: 1 - cosine of the mean-pooled embeddings against fp32 on sentences of Pride and Prejudice
(at --seq tokens), for every activation-quantization variant, with and without SmoothQuant
(calibration: sentences of Emma, tokenized with MiniLM's tokenizer.json). SmolLM2-135M: perplexity on
Pride and Prejudice (llama.cpp protocol, --chunks of 512 tokens) against fp32, calibration from Emma.
Also the bytes of each artifact. Writes JSON stamped with the git commit; speed is scripts/bench/w8a8.py.
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from measure import ROOT, commit, sh  # noqa: E402
from gptq_awq_table import minilm_batch, minilm_embeddings, perplexity, sentences  # noqa: E402

# name -> the recipe's quantize mapping (YAML flow style)
VARIANTS = {
    "w8a8-dynamic": "{format: w8a8, activations: {mode: dynamic}}",
    "w8a8-static-tensor-minmax": "{format: w8a8, activations: {mode: static}}",
    "w8a8-static-tensor-p99.99": "{format: w8a8, activations: {mode: static, calibration: percentile, percentile: 99.99}}",
    "w8a8-static-channel": "{format: w8a8, activations: {mode: static, granularity: channel}}",
    "smoothquant-0.5+w8a8-dynamic": "{format: w8a8, smoothquant: {alpha: 0.5}, activations: {mode: dynamic}}",
    "smoothquant-0.5+w8a8-static-tensor-minmax": "{format: w8a8, smoothquant: {alpha: 0.5}, activations: {mode: static}}",
    "smoothquant-0.8+w8a8-static-tensor-minmax": "{format: w8a8, smoothquant: {alpha: 0.8}, activations: {mode: static}}",
}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lathe", default=os.path.join(ROOT, "build", "bin", "lathe"))
    ap.add_argument("--models", default=os.path.join(ROOT, "build", "models"))
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--sentences", type=int, default=32)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--chunks", type=int, default=10)
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--ctx", type=int, default=256)
    ap.add_argument("--skip-smollm2", action="store_true")
    ap.add_argument("--skip-minilm", action="store_true")
    ap.add_argument("--out", default=os.path.join(ROOT, "build", "accept", "w8a8_table.json"))
    args = ap.parse_args()
    work = os.path.join(os.path.dirname(args.out), "w8a8")
    os.makedirs(work, exist_ok=True)
    corpus = os.path.join(args.models, "corpus", "austen")
    variants = args.variants.split(",")
    for v in variants:
        if v not in VARIANTS:
            sys.exit(f"unknown variant '{v}' (known: {', '.join(VARIANTS)})")
    rows = []
    if not args.skip_minilm:
        rows += minilm_rows(args, work, corpus, variants)
    if not args.skip_smollm2:
        rows += smollm2_rows(args, work, corpus, variants)
    json.dump({"commit": commit(), "seq": args.seq, "chunks": args.chunks, "rows": rows}, open(args.out, "w"), indent=1)
    print("wrote", args.out)


def recipe_file(work, name):
    path = os.path.join(work, name + ".yaml")
    with open(path, "w") as f:
        f.write(f"name: {name}\nquantize: {VARIANTS[name]}\n")
    return path


def minilm_rows(args, work, corpus, variants):
    import numpy as np
    model_dir = os.path.join(args.models, "real", "all-minilm-l6-v2")
    onnx = os.path.join(model_dir, "all-minilm-l6-v2.opset17.onnx")
    tok = os.path.join(model_dir, "tokenizer.json")
    evald = os.path.join(work, "minilm.eval")
    minilm_batch(tok, sentences(os.path.join(corpus, "prideprejudice.txt"), args.sentences), args.seq, evald)
    cald = os.path.join(work, "minilm.cal.emma")
    minilm_batch(tok, sentences(os.path.join(corpus, "emma.txt"), args.sentences), args.seq, cald)

    def embeddings(artifact):
        return minilm_embeddings(args.lathe, artifact, evald, os.path.join(work, "minilm.out"))

    fp32 = os.path.join(work, "minilm.fp32.lathe")
    sh([args.lathe, "compile", onnx, "-o", fp32])
    base = embeddings(fp32)
    rows = []
    for v in variants:
        art = os.path.join(work, f"minilm.{v}.lathe")
        sh([args.lathe, "compile", onnx, "--recipe", recipe_file(work, v), "--calibration", cald, "-o", art])
        e = embeddings(art)
        cos = (e * base).sum(1) / (np.linalg.norm(e, axis=1) * np.linalg.norm(base, axis=1))
        rows.append({"model": "minilm", "variant": v, "cosine_mean": float(cos.mean()), "cosine_min": float(cos.min()),
                     "bytes": os.path.getsize(art), "fp32_bytes": os.path.getsize(fp32)})
        print(f"MiniLM {v:45s} cosine mean {cos.mean():.5f} min {cos.min():.5f}  "
              f"{os.path.getsize(art) / 2**20:6.1f} MiB (fp32 {os.path.getsize(fp32) / 2**20:.1f})", flush=True)
    return rows


def smollm2_rows(args, work, corpus, variants):
    gguf = os.path.join(args.models, "real", "smollm2-135m-instruct", "smollm2-135m-instruct-q4_1.gguf")
    text = os.path.join(corpus, "prideprejudice.txt")

    def ppl(artifact):
        return perplexity(args.lathe, artifact, text, args.chunks, work)

    fp32 = os.path.join(work, "smollm2.fp32.lathe")
    sh([args.lathe, "compile", gguf, "-o", fp32])
    base = ppl(fp32)
    print(f"SmolLM2 fp32 ppl {base:.3f}", flush=True)
    rows = []
    for v in variants:
        if "channel" in v:
            continue  # per-channel static scales fold into every weight column; same machinery as MiniLM's row
        art = os.path.join(work, f"smollm2.{v}.lathe")
        sh([args.lathe, "compile", gguf, "--recipe", recipe_file(work, v), "--calibration", os.path.join(corpus, "emma.txt"),
            "--calibration-samples", str(args.samples), "--calibration-ctx", str(args.ctx), "-o", art])
        p = ppl(art)
        rows.append({"model": "smollm2", "variant": v, "ppl": p, "fp32_ppl": base, "increase": p / base - 1,
                     "bytes": os.path.getsize(art), "fp32_bytes": os.path.getsize(fp32)})
        print(f"SmolLM2 {v:45s} ppl {p:.3f} ({100 * (p / base - 1):+.2f} % vs fp32 {base:.3f})", flush=True)
    return rows


if __name__ == "__main__":
    main()
