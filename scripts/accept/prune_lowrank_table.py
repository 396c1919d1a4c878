#!/usr/bin/env python3
"""Pruning and low-rank decomposition on the real models (acceptance for issue #9).

Tables, each row compiled with `lathe compile --recipe` and measured against fp32:
  1. Unstructured 50 % and 2:4: magnitude, then Wanda and SparseGPT with each of three calibration
     sets (disjoint Austen novels); the fraction of magnitude's gap to fp32 each closes, with its
     spread. SmolLM2-135M: perplexity on Pride and Prejudice (llama.cpp protocol); MiniLM-L6: 1 − mean
     cosine of the mean-pooled embeddings on sentences of Pride and Prejudice.
  2. Structured: 25 % of MiniLM's FFN channels removed by calibrated importance, weight norms and at
     random (three seeds): cosine, artifact bytes, and latency (`lathe bench`, batch 1 and 8, seq 128,
     interleaved repeats, median) against fp32.
  3. SVD with 20 % fewer linear parameters: plain against activation-aware, perplexity (SmolLM2) and
     cosine (MiniLM); batch-1 decode tokens/s of the low-rank SmolLM2 against fp32.
  4. Low-rank compensation: SmolLM2 int4 g128 plus a rank-r correction of each layer's error, with r
     chosen per layer shape so that it costs no more bytes than going to g64, against int4 g64.
  5. N:M speed in the model: batch-1 decode tokens/s of 2:4 (f32 values) and 2:4 + int4 against fp32
     and int4 g128, with the bytes each reads.
SmolLM2's output head stays dense in every pruning row (as Wanda and SparseGPT leave the LM head).
Writes JSON stamped with the git commit.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from measure import ROOT, commit, lathe_generate, sh  # noqa: E402
from gptq_awq_table import minilm_batch, minilm_embeddings, perplexity, sentences  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lathe", default=os.path.join(ROOT, "build", "bin", "lathe"))
    ap.add_argument("--models", default=os.path.join(ROOT, "build", "models"))
    ap.add_argument("--chunks", type=int, default=8, help="perplexity windows of 512 tokens")
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--ctx", type=int, default=256)
    ap.add_argument("--sets", default="emma,mansfieldpark,persuasion")
    ap.add_argument("--sections", default="prune,structured,lowrank,compensation,speed")
    ap.add_argument("--skip-smollm2", action="store_true")
    ap.add_argument("--skip-minilm", action="store_true", help="only SmolLM2's rows (structured is MiniLM's)")
    ap.add_argument("--minilm-sentences", type=int, default=32)
    ap.add_argument("--out", default=os.path.join(ROOT, "build", "accept", "prune_lowrank_table.json"))
    args = ap.parse_args()
    work = os.path.join(os.path.dirname(args.out), "prune_lowrank")
    os.makedirs(work, exist_ok=True)
    corpus = os.path.join(args.models, "corpus", "austen")
    m = Models(args, work, corpus)
    sections = args.sections.split(",")
    result = {"commit": commit(), "chunks": args.chunks, "calibration": f"{args.samples}x{args.ctx}"}
    if "prune" in sections:
        result["prune"] = prune_rows(m, args)
    if "structured" in sections and not args.skip_minilm:
        result["structured"] = structured_rows(m)
    if "lowrank" in sections:
        result["lowrank"] = lowrank_rows(m, args)
    if "compensation" in sections and not args.skip_smollm2:
        result["compensation"] = compensation_rows(m)
    if "speed" in sections and not args.skip_smollm2:
        result["speed"] = speed_rows(m)
    json.dump(result, open(args.out, "w"), indent=1)
    print("wrote", args.out)


class Models:
    """Compiles recipes for both models and measures fidelity; artifacts are cached by name."""

    def __init__(self, args, work, corpus):
        self.args, self.work, self.corpus = args, work, corpus
        self.gguf = os.path.join(args.models, "real", "smollm2-135m-instruct", "smollm2-135m-instruct-q4_1.gguf")
        mdir = os.path.join(args.models, "real", "all-minilm-l6-v2")
        self.onnx = os.path.join(mdir, "all-minilm-l6-v2.opset17.onnx")
        self.tok = os.path.join(mdir, "tokenizer.json")
        self.text = os.path.join(corpus, "prideprejudice.txt")
        self.evald = os.path.join(work, "minilm.eval")
        minilm_batch(self.tok, sentences(self.text, args.minilm_sentences), 64, self.evald)
        self.fp32 = {"smollm2": self.compile("smollm2", "fp32", None), "minilm": self.compile("minilm", "fp32", None)}
        self.base_ppl = self.ppl(self.fp32["smollm2"]) if not args.skip_smollm2 else None
        self.base_emb = self.embeddings(self.fp32["minilm"])

    def calibration(self, model, cal):
        if model == "smollm2":
            return ["--calibration", os.path.join(self.corpus, cal + ".txt"), "--calibration-samples", str(self.args.samples),
                    "--calibration-ctx", str(self.args.ctx)]
        d = os.path.join(self.work, f"minilm.cal.{cal}")
        if not os.path.isdir(d):
            minilm_batch(self.tok, sentences(os.path.join(self.corpus, cal + ".txt"), self.args.minilm_sentences), 64, d)
        return ["--calibration", d]

    def compile(self, model, name, recipe_text, cal=None):
        art = os.path.join(self.work, f"{model}.{name}{'.' + cal if cal else ''}.lathe")
        cmd = [self.args.lathe, "compile", self.gguf if model == "smollm2" else self.onnx, "-o", art]
        if recipe_text:
            recipe = os.path.join(self.work, f"{model}.{name}.yaml")
            with open(recipe, "w") as f:
                f.write(recipe_text)
            cmd += ["--recipe", recipe]
        if cal:
            cmd += self.calibration(model, cal)
        t0 = time.time()
        sh(cmd)
        self.last_compile_s = time.time() - t0
        return art

    def ppl(self, art):
        return perplexity(self.args.lathe, art, self.text, self.args.chunks, self.work)

    def embeddings(self, art):
        return minilm_embeddings(self.args.lathe, art, self.evald, os.path.join(self.work, "minilm.out"))

    def cos_gap(self, art):
        import numpy as np
        a, b = self.embeddings(art), self.base_emb
        return 1.0 - float(((a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))).mean())

    def fidelity(self, model, art):
        """Perplexity (SmolLM2) or 1 − cosine (MiniLM); lower is better for both."""
        return self.ppl(art) if model == "smollm2" else self.cos_gap(art)

    def gap(self, model, value):
        return value - self.base_ppl if model == "smollm2" else value


def recipe(section, skip_head):
    text = section
    if skip_head:
        text += "overrides:\n  - match: output\n    skip: true\n"
    return text


def prune_rows(m, args):
    rows = []
    models = ([] if args.skip_minilm else ["minilm"]) + ([] if args.skip_smollm2 else ["smollm2"])
    for model in models:
        for label, spec in (("50%", "sparsity: 0.5"), ("2:4", 'pattern: "2:4"')):
            mag_art = m.compile(model, f"magnitude.{label.replace(':', '-').replace('%', '')}",
                                recipe(f"prune:\n  method: magnitude\n  {spec}\n", model == "smollm2"))
            mag = m.fidelity(model, mag_art)
            rows.append({"model": model, "pattern": label, "method": "magnitude", "value": mag})
            print(f"{model} {label} magnitude: {mag:.6g}", flush=True)
            for method in ("wanda", "sparsegpt"):
                closed = []
                for cal in args.sets.split(","):
                    art = m.compile(model, f"{method}.{label.replace(':', '-').replace('%', '')}",
                                    recipe(f"prune:\n  method: {method}\n  {spec}\n", model == "smollm2"), cal)
                    seconds = m.last_compile_s
                    v = m.fidelity(model, art)
                    closed.append((m.gap(model, mag) - m.gap(model, v)) / m.gap(model, mag))
                    rows.append({"model": model, "pattern": label, "method": method, "calibration": cal, "value": v,
                                 "magnitude": mag, "gap_closed": closed[-1], "compile_s": seconds})
                    print(f"{model} {label} {method:9s} cal {cal:13s} {v:.6g} (magnitude {mag:.6g}) gap closed "
                          f"{100 * closed[-1]:5.1f} %  compile {seconds:4.0f} s", flush=True)
                spread = max(closed) - min(closed)
                ok = min(closed) >= 0.25 and statistics.mean(closed) - 0.25 > spread
                print(f"{model} {label} {method}: gap closed mean {100 * statistics.mean(closed):.1f} %, min "
                      f"{100 * min(closed):.1f} %, spread {100 * spread:.1f} %  {'PASS' if ok else 'FAIL'}", flush=True)
    if m.base_ppl is not None:
        print(f"(SmolLM2 fp32 perplexity {m.base_ppl:.4f}; MiniLM rows are 1 − cosine)")
    return rows


def bench_latency(lathe, artifacts, batch, seq=128, threads=2, rounds=5):
    """Median of per-round median latencies (ms), the artifacts interleaved round by round."""
    import re
    times = {a: [] for a in artifacts}
    for _ in range(rounds):
        for a in artifacts:
            p = sh([lathe, "bench", a, "--batch", str(batch), "--seq", str(seq), "--threads", str(threads),
                    "--iterations", "10", "--warmup", "2"])
            times[a].append(float(re.search(r"median ([\d.]+) ms", p.stdout + p.stderr).group(1)))
    return {a: statistics.median(v) for a, v in times.items()}


def structured_rows(m):
    rows = []
    arts = {"fp32": m.fp32["minilm"]}
    gaps = {}
    for criterion, seeds in (("importance", [0]), ("weight-norm", [0]), ("random", [0, 1, 2])):
        values = []
        for seed in seeds:
            name = f"structured.{criterion}.{seed}"
            art = m.compile("minilm", name, f"structured:\n  ffn: 0.25\n  criterion: {criterion}\n  seed: {seed}\n",
                            "emma" if criterion == "importance" else None)
            values.append(m.cos_gap(art))
            arts[f"{criterion}.{seed}"] = art
        gaps[criterion] = statistics.mean(values)
        rows.append({"criterion": criterion, "cos_gap": gaps[criterion], "seeds": len(seeds), "per_seed": values,
                     "bytes": os.path.getsize(arts[f"{criterion}.0"])})
        print(f"MiniLM FFN −25 % {criterion:11s}: 1 − cosine {gaps[criterion]:.6f}"
              f"{' (mean of 3 seeds)' if len(seeds) > 1 else ''}, artifact {os.path.getsize(arts[f'{criterion}.0']) / 2**20:.2f} MiB "
              f"(fp32 {os.path.getsize(arts['fp32']) / 2**20:.2f} MiB)", flush=True)
    ok = gaps["importance"] < gaps["weight-norm"] and gaps["importance"] < gaps["random"]
    print(f"importance beats weight-norm and random: {'PASS' if ok else 'FAIL'}")
    for batch in (1, 8):
        lat = bench_latency(m.args.lathe, [arts["fp32"], arts["importance.0"]], batch)
        drop = 1 - lat[arts["importance.0"]] / lat[arts["fp32"]]
        rows.append({"latency_batch": batch, "fp32_ms": lat[arts["fp32"]], "pruned_ms": lat[arts["importance.0"]], "drop": drop})
        print(f"MiniLM seq 128 batch {batch}, 2 threads: fp32 {lat[arts['fp32']]:.2f} ms, FFN −25 % "
              f"{lat[arts['importance.0']]:.2f} ms: latency −{100 * drop:.1f} %  {'PASS' if drop >= 0.15 else 'FAIL'}",
              flush=True)
    return rows


def decode_speed(lathe, art, threads=2, tokens=128):
    return sorted(lathe_generate(lathe, art, 16, tokens, threads)[1] for _ in range(3))[1]


def lowrank_rows(m, args):
    rows = []
    for model in ([] if args.skip_minilm else ["minilm"]) + ([] if args.skip_smollm2 else ["smollm2"]):
        values = {}
        for method in ("svd", "asvd"):
            art = m.compile(model, f"lowrank.{method}", recipe(f"lowrank:\n  method: {method}\n  param_ratio: 0.2\n", False),
                            "emma" if method == "asvd" else None)
            values[method] = m.fidelity(model, art)
            rows.append({"model": model, "method": method, "value": values[method], "bytes": os.path.getsize(art)})
            print(f"{model} low-rank −20 % {method}: {values[method]:.6g}  artifact {os.path.getsize(art) / 2**20:.1f} MiB",
                  flush=True)
            if model == "smollm2" and method == "svd":
                fp, lr = decode_speed(m.args.lathe, m.fp32["smollm2"]), decode_speed(m.args.lathe, art)
                rows.append({"model": model, "decode_fp32_tps": fp, "decode_lowrank_tps": lr})
                print(f"SmolLM2 batch-1 decode (2 threads): fp32 {fp:.1f} tokens/s, low-rank −20 % {lr:.1f} tokens/s "
                      f"({lr / fp:.2f}x)  {'PASS' if lr > fp else 'FAIL'}", flush=True)
        print(f"{model}: activation-aware beats plain SVD: {'PASS' if values['asvd'] < values['svd'] else 'FAIL'}")
    return rows


def compensation_rows(m):
    # Equal bytes: g128 → g64 adds out·in/128 f16 scales per layer (2 bytes each, out·in/64 bytes); a rank-r
    # bf16 correction costs 2·r·(out + in) bytes, so r = ⌊out·in / (128·(out + in))⌋ per layer shape.
    shapes = {"*attn_q": (576, 576), "*attn_output": (576, 576), "*attn_k": (192, 576), "*attn_v": (192, 576),
              "*ffn_gate": (1536, 576), "*ffn_up": (1536, 576), "*ffn_down": (576, 1536), "output": (49152, 576)}
    rules = ""
    for pattern, (o, i) in shapes.items():
        r = o * i // (128 * (o + i))
        rules += (f"  - match: \"{pattern}\"\n    quantize: {{format: int4, group_size: 128, symmetric: true, method: rtn, "
                  f"compensation: {{rank: {r}}}}}\n")
    rows = []
    variants = (("int4-g128", "quantize: {format: int4, group_size: 128, symmetric: true, method: rtn}\n", None),
                ("int4-g64", "quantize: {format: int4, group_size: 64, symmetric: true, method: rtn}\n", None),
                ("int4-g128+comp", "overrides:\n" + rules, "emma"),
                ("int4-g128+comp-plain", "overrides:\n" + rules, None))
    for name, text, cal in variants:
        art = m.compile("smollm2", name, text, cal)
        report = json.load(open(art + ".report.json"))
        linear = report["totals"]["linear_bytes_after"]
        p = m.ppl(art)
        rows.append({"variant": name, "ppl": p, "linear_bytes": linear, "calibration": cal})
        print(f"SmolLM2 {name:22s} perplexity {p:.4f} (fp32 {m.base_ppl:.4f}), linear bytes {linear / 2**20:.2f} MiB",
              flush=True)
    comp, g64 = rows[2], rows[1]
    fewer = comp["linear_bytes"] <= g64["linear_bytes"]
    print(f"low-rank compensation at {'≤' if fewer else 'MORE than'} g64's bytes {'beats' if comp['ppl'] < g64['ppl'] else 'does NOT beat'} "
          f"g64 ({comp['ppl']:.4f} vs {g64['ppl']:.4f}; {comp['linear_bytes']} vs {g64['linear_bytes']} bytes)")
    return rows


def speed_rows(m):
    rows = []
    head = "overrides:\n  - match: output\n    skip: true\n"
    variants = (("fp32", None), ("2:4 f32", 'prune:\n  method: magnitude\n  pattern: "2:4"\n' + head),
                ("int4 g128", "quantize: {format: int4, group_size: 128, symmetric: true, method: rtn}\n" + head),
                ("2:4 + int4 g128", 'prune:\n  method: magnitude\n  pattern: "2:4"\n'
                                   "quantize: {format: int4, group_size: 128, symmetric: true, method: rtn}\n" + head))
    for name, text in variants:
        art = m.fp32["smollm2"] if text is None else m.compile("smollm2", "speed." + name.replace(" ", "").replace(":", "-").replace("+", "_"), text)
        tps = decode_speed(m.args.lathe, art)
        linear = None
        if text is not None:
            linear = json.load(open(art + ".report.json"))["totals"]["linear_bytes_after"]
        rows.append({"variant": name, "decode_tps": tps, "linear_bytes": linear, "artifact_bytes": os.path.getsize(art)})
        print(f"SmolLM2 decode {name:16s} {tps:7.1f} tokens/s  artifact {os.path.getsize(art) / 2**20:7.1f} MiB"
              + (f", linear weights {linear / 2**20:.1f} MiB" if linear else ""), flush=True)
    return rows


if __name__ == "__main__":
    main()
