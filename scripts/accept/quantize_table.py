#!/usr/bin/env python3
"""Acceptance (#6): the accuracy-per-byte table of the weight-only presets in examples/recipes/.

For each preset: bits per weight of the linear layers (scales and mins included), artifact bytes,
fidelity against fp32 and batch-1 decode tokens/s (2 threads, 128 tokens):
  SmolLM2-135M (GGUF): perplexity on Pride and Prejudice (llama.cpp protocol, --chunks windows of
                       512), its change vs fp32, mean KL divergence, top-1 agreement;
  MiniLM-L6 (ONNX):    mean and worst cosine of the mean-pooled sentence embeddings of the text_b4
                       reference batch against fp32.
With llama.cpp built (scripts/models/build_llamacpp.sh) and the F32 copy present, also llama.cpp's
decode tokens/s for Q8_0 and Q4_0 of the same model (llama-quantize from the F32 copy).
Writes JSON stamped with the git commit.

    .venv/bin/python scripts/accept/quantize_table.py [--chunks 40]
"""
import argparse
import json
import os
import re
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lib"))
from measure import ROOT, commit, lathe_generate, sh  # noqa: E402


# The presets of #6 (round to nearest, no calibration data needed).
# The -a8 presets add int8 activations (inputs quantized per block of 32 at run time).
WEIGHT_ONLY = ["bf16", "fp16", "int8-weight-only", "int8-g32", "int8-g32-a8", "int4-g32-int8-head", "int4-rtn-g32",
               "int4-rtn-g32-a8", "int4-rtn-g128", "int3-rtn-g128"]


def decode_speed(lathe, artifact, threads=2, tokens=128):
    return sorted(lathe_generate(lathe, artifact, 16, tokens, threads)[1] for _ in range(3))[1]


def pooled(hidden, mask):
    m = mask[..., None].astype(np.float64)
    return (hidden * m).sum(1) / m.sum(1)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lathe", default=os.path.join(ROOT, "build", "bin", "lathe"))
    ap.add_argument("--models", default=os.path.join(ROOT, "build", "models"))
    ap.add_argument("--llamacpp-bin", default=os.path.join(ROOT, "build", "llamacpp", "bin"))
    ap.add_argument("--chunks", type=int, default=40)
    ap.add_argument("--out", default=os.path.join(ROOT, "build", "accept", "quantize_table.json"))
    ap.add_argument("--presets", default=",".join(WEIGHT_ONLY),
                    help="comma-separated presets of examples/recipes/ (default: the weight-only ones, no calibration)")
    args = ap.parse_args()
    work = os.path.dirname(args.out)
    os.makedirs(work, exist_ok=True)
    gguf = os.path.join(args.models, "real", "smollm2-135m-instruct", "smollm2-135m-instruct-q4_1.gguf")
    minilm = os.path.join(args.models, "real", "all-minilm-l6-v2", "all-minilm-l6-v2.opset17.onnx")
    text = os.path.join(args.models, "corpus", "austen", "prideprejudice.txt")
    ref_inputs = os.path.join(os.path.dirname(minilm), "text_b4", "inputs")
    presets = [p for p in args.presets.split(",") if p]
    for p in presets:
        if not os.path.exists(os.path.join(ROOT, "examples", "recipes", p + ".yaml")):
            sys.exit(f"quantize_table: no preset examples/recipes/{p}.yaml")
    fp32 = os.path.join(work, "smollm2.fp32.lathe")
    sh([args.lathe, "compile", gguf, "-o", fp32])
    mini_fp32 = os.path.join(work, "minilm.fp32.lathe")
    sh([args.lathe, "compile", minilm, "-o", mini_fp32])
    mask = np.load(os.path.join(ref_inputs, "attention_mask.npy"))

    def minilm_embeddings(artifact):
        d = os.path.join(work, "minilm.out")
        cmd = [args.lathe, "run", artifact, "--output-dir", d]
        for f in sorted(os.listdir(ref_inputs)):
            cmd += ["--input", f"{f[:-4]}={os.path.join(ref_inputs, f)}"]
        sh(cmd)
        return pooled(np.load(os.path.join(d, "last_hidden_state.npy")).astype(np.float64), mask)

    base_emb = minilm_embeddings(mini_fp32)
    rows = []
    fp32_speed = decode_speed(args.lathe, fp32)
    ppl_json = os.path.join(work, "eval.json")
    sh([args.lathe, "eval", fp32, "--text", text, "--chunks", str(args.chunks), "--json", ppl_json])
    fp32_ppl = json.load(open(ppl_json))["ppl"]
    rows.append({"preset": "fp32", "bits_per_weight": 32.0, "artifact_bytes": os.path.getsize(fp32), "ppl": fp32_ppl,
                 "ppl_change": 0.0, "kld": 0.0, "top1": 1.0, "decode_tps": fp32_speed,
                 "minilm_bytes": os.path.getsize(mini_fp32), "minilm_cos_mean": 1.0, "minilm_cos_worst": 1.0})
    for preset in presets:
        recipe = os.path.join(ROOT, "examples", "recipes", preset + ".yaml")
        art = os.path.join(work, f"smollm2.{preset}.lathe")
        sh([args.lathe, "compile", gguf, "--recipe", recipe, "-o", art])
        report = json.load(open(art + ".report.json"))
        before, after = report["totals"]["linear_bytes_before"], report["totals"]["linear_bytes_after"]
        sh([args.lathe, "eval", art, "--reference", fp32, "--text", text, "--chunks", str(args.chunks), "--json", ppl_json])
        e = json.load(open(ppl_json))
        mart = os.path.join(work, f"minilm.{preset}.lathe")
        # A preset written for GGUF names (an override on "output") does not apply to MiniLM: n/a.
        applies = subprocess.run([args.lathe, "compile", minilm, "--recipe", recipe, "-o", mart],
                                 capture_output=True, text=True).returncode == 0
        if applies:
            emb = minilm_embeddings(mart)
            cos = (emb * base_emb).sum(1) / np.linalg.norm(emb, axis=1) / np.linalg.norm(base_emb, axis=1)
        else:
            cos = np.array([np.nan])
        rows.append({"preset": preset, "bits_per_weight": 8 * after / (before / 4), "artifact_bytes": os.path.getsize(art),
                     "ppl": e["ppl"], "ppl_change": e["ppl"] / e["reference_ppl"] - 1, "kld": e["mean_kld"],
                     "top1": e["top1_agreement"], "decode_tps": decode_speed(args.lathe, art),
                     "minilm_bytes": os.path.getsize(mart) if applies else None, "minilm_cos_mean": float(cos.mean()),
                     "minilm_cos_worst": float(cos.min())})
    llama = {}
    f32gguf = os.path.join(args.models, "llamacpp", "smollm2-135m-instruct-f32.gguf")
    quantize, bench = os.path.join(args.llamacpp_bin, "llama-quantize"), os.path.join(args.llamacpp_bin, "llama-bench")
    if os.path.exists(f32gguf) and os.path.exists(bench):
        for qtype in ("Q8_0", "Q4_0"):
            out = os.path.join(work, f"smollm2-{qtype.lower()}.gguf")
            if not os.path.exists(out):
                sh([quantize, "--allow-requantize", f32gguf, out, qtype])
            res = json.loads(sh([bench, "-m", out, "-p", "0", "-n", "128", "-t", "2", "-r", "3", "-o", "json"]).stdout)
            llama[qtype] = res[0]["avg_ts"]
    json.dump({"commit": commit(), "chunks": args.chunks, "rows": rows, "llamacpp_decode_tps": llama}, open(args.out, "w"), indent=2)
    print(f"SmolLM2-135M: {args.chunks} windows of 512 (llama.cpp protocol); decode: 2 threads, 128 tokens; MiniLM: pooled cosine")
    print(f"{'preset':20s} {'bits/w':>7s} {'MiB':>8s} {'ppl':>8s} {'Δppl':>8s} {'KLD':>7s} {'top-1':>7s} {'tok/s':>7s} "
          f"{'MiniLM MiB':>10s} {'cos mean':>9s} {'cos worst':>9s}")
    for r in rows:
        print(f"{r['preset']:20s} {r['bits_per_weight']:7.3f} {r['artifact_bytes'] / 2**20:8.1f} {r['ppl']:8.3f} "
              f"{100 * r['ppl_change']:+7.2f}% {r['kld']:7.4f} {100 * r['top1']:6.1f}% {r['decode_tps']:7.1f} "
              f"{(r['minilm_bytes'] or 0) / 2**20:10.1f} {r['minilm_cos_mean']:9.6f} {r['minilm_cos_worst']:9.6f}")
    for q, tps in llama.items():
        print(f"llama.cpp {q}: decode {tps:.1f} tokens/s (2 threads)")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
