#!/usr/bin/env python3
"""GPTQ and AWQ against round-to-nearest on SmolLM2-135M (acceptance for issue #7).

For each setting (int4 g128 sym, int3 g128 sym) and each calibration set (disjoint Austen novels),
compiles GPTQ and AWQ artifacts and measures perplexity on Pride and Prejudice (llama.cpp protocol);
prints the fraction of RTN's perplexity gap to fp32 each method closes, and its spread across the
calibration sets. Writes JSON stamped with the git commit.
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
    ap.add_argument("--out", default=os.path.join(ROOT, "build", "accept", "gptq_awq_table.json"))
    args = ap.parse_args()
    work = os.path.dirname(args.out)
    os.makedirs(work, exist_ok=True)
    gguf = os.path.join(args.models, "real", "smollm2-135m-instruct", "smollm2-135m-instruct-q4_1.gguf")
    corpus = os.path.join(args.models, "corpus", "austen")
    text = os.path.join(corpus, "prideprejudice.txt")

    def ppl(artifact):
        js = os.path.join(work, "eval.json")
        sh([args.lathe, "eval", artifact, "--text", text, "--chunks", str(args.chunks), "--json", js])
        return json.load(open(js))["ppl"]

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
        for method in ("gptq", "awq"):
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
    json.dump({"commit": commit(), "chunks": args.chunks, "calibration": f"{args.samples}x{args.ctx}", "rows": rows},
              open(args.out, "w"), indent=1)
    print("wrote", args.out)


if __name__ == "__main__":
    main()
