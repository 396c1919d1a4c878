"""Weight-only compression end to end: recipes, the compile report, and accuracy on real models.

a. every preset in examples/recipes/ compiles SmolLM2 (GGUF) and writes a report (table on stdout,
   JSON next to the artifact) whose linear-layer bytes shrink by the format's ratio; the artifact
   is smaller than the fp32 one;
b. accuracy on English text (Pride and Prejudice, 3 windows of 256 tokens, llama.cpp protocol) with
   `lathe eval --reference fp32.lathe`: perplexity change and top-1 agreement within fixed bounds per
   preset (int8, bf16 and fp16 nearly lossless; the asymmetric int4 g32 grid matches SmolLM2's own Q4_1
   grid, so it is nearly lossless too; symmetric int4 RTN is lossy but bounded);
c. MiniLM (ONNX) int8, bf16 and fp16: `lathe eval --data` cosine of every output vector against fp32, and
   `--per-layer` gives each of its 37 linear layers' relative output error, worst first;
d. a quantized decoder still decodes incrementally: `run --incremental 1` equals the full run;
   GGUF Q4_1/Q8_0 weights kept natively (--gguf-weights native) compute what the f32 import does
   (KL divergence < 1e-6, identical top-1);
   --calibration (text, token ids): per-channel statistics on all 211 linears in the IR, each compressed
   layer's output error in the report, byte-identical artifacts and equal errors at 1 and 2 threads;
   --calibration-xtx adds Σ xᵀx (symmetric, PSD, diagonal consistent with mean|x| and max|x|);
f. `lathe sensitivity` ranks every linear layer of MiniLM (cosine) and of a GPT-2 LM export (KL
   divergence, calibration from token ids) by the output change compressing it alone causes;
e. recipe errors exit 1 naming the file and line: unknown key, impossible combinations, a method that
   does not exist, a pattern matching no layer, a missing file.
"""
import json
import os
import re
import tempfile

import numpy as np

from lathe_test_util import Checker, parse_args, require_files, run, scratch_dir

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RECIPES = os.path.join(ROOT, "examples", "recipes")
# preset: (max relative perplexity increase, min top-1 agreement, linear-bytes ratio fp32/compressed at least)
BOUNDS = {
    "int8-weight-only": (0.01, 0.95, 3.9),
    "int8-g32": (0.01, 0.96, 3.7),  # measured +0.18 % / 98.0 % on 40 windows of 512
    # int8 activations too (inputs per block of 32 at run time): measured +0.49 % / 96.0 % on 40 windows
    "int8-g32-a8": (0.02, 0.92, 3.7),
    "int4-rtn-g32-a8": (0.60, 0.60, 7.0),  # measured +37.3 % / 61.1 % (int4-rtn-g32: +37.0 % / 61.3 %)
    "bf16": (0.002, 0.98, 1.99),
    "fp16": (0.001, 0.99, 1.99),  # 10 mantissa bits to bf16's 7: measured -0.01 % / 100 % (KLD 2e-6)
    "int4-g32-int8-head": (0.01, 0.95, 5.0),  # and the embedding table in int8 (counted in the totals)
    "int4-rtn-g32": (0.60, 0.60, 7.0),
    "int4-rtn-g128": (1.20, 0.45, 7.5),
    "int3-rtn-g128": (12.0, 0.15, 9.5),  # 3-bit RTN on a 135M model: very lossy, bounded
    # W8A8 (int8 activations too): measured +0.8 % / 91 % (dynamic), +0.03 % / 93 % (SmoothQuant)
    "w8a8-dynamic": (0.03, 0.88, 3.9),
    "w8a8-smoothquant": (0.02, 0.90, 3.9),
}


def main():
    args = parse_args()
    gguf = os.path.join(args.models, "real", "smollm2-135m-instruct", "smollm2-135m-instruct-q4_1.gguf")
    book = os.path.join(args.models, "corpus", "austen", "prideprejudice.txt")
    minilm = os.path.join(args.models, "real", "all-minilm-l6-v2", "all-minilm-l6-v2.opset17.onnx")
    require_files(gguf, book, minilm)
    c = Checker()
    tmp = scratch_dir("lathe-quant-")
    text = os.path.join(tmp, "text.txt")
    with open(book, "rb") as f:
        data = f.read(20000)
    with open(text, "wb") as f:
        f.write(data[:data.rfind(b"\n") + 1])

    fp32 = os.path.join(tmp, "fp32.lathe")
    rc, _, err = run([args.lathe, "compile", gguf, "-o", fp32])
    c.expect(rc == 0, f"fp32 compile: {err}")
    # The quantization presets (pruning, low-rank, structured and compensation ones: e2e_prune_lowrank).
    presets = sorted(p[:-5] for p in os.listdir(RECIPES) if p.endswith(".yaml") and not re.search(
        r"^(prune|lowrank|structured):|compensation:", open(os.path.join(RECIPES, p)).read(), re.M))
    perplexity = {}
    c.expect(set(BOUNDS) <= set(presets), f"presets {presets} lack some of {sorted(BOUNDS)}")
    for preset in presets:
        out = os.path.join(tmp, preset + ".lathe")
        recipe_text = open(os.path.join(RECIPES, preset + ".yaml")).read()
        # Calibrated methods (GPTQ, AWQ, SmoothQuant) get a small calibration slice of another novel.
        calibration = (["--calibration", os.path.join(args.models, "corpus", "austen", "emma.txt"),
                        "--calibration-samples", "4", "--calibration-ctx", "128"]
                       if re.search(r"method:\s*(gptq|awq)|smoothquant:|mode:\s*static", recipe_text) else [])
        rc, stdout, err = run([args.lathe, "compile", gguf, "--recipe", os.path.join(RECIPES, preset + ".yaml"), "-o", out]
                              + calibration)
        c.expect(rc == 0, f"{preset}: compile failed: {err.strip()[-400:]}")
        if rc != 0:
            continue
        c.expect("compression report" in stdout and "total (compressible layers)" in stdout, f"{preset}: no report table")
        report = json.load(open(out + ".report.json"))
        rows = report["layers"]
        with_table = "embeddings:" in open(os.path.join(RECIPES, preset + ".yaml")).read()
        c.expect(len(rows) == 30 * 7 + 1 + with_table, f"{preset}: {len(rows)} layer rows, expected {211 + with_table}")
        if with_table:
            c.expect(any(r["name"] == "token_embd" and r["method"].startswith("embedding-int8") for r in rows),
                     f"{preset}: the embedding table is not int8")
        before, after = report["totals"]["linear_bytes_before"], report["totals"]["linear_bytes_after"]
        c.expect(os.path.getsize(out) < os.path.getsize(fp32), f"{preset}: artifact not smaller than fp32")
        bound = BOUNDS.get(preset)
        if bound:
            c.expect(before / after >= bound[2], f"{preset}: linear bytes {before} -> {after} (ratio {before / after:.2f} < {bound[2]})")
        js = os.path.join(tmp, preset + ".eval.json")
        rc, stdout, err = run([args.lathe, "eval", out, "--reference", fp32, "--text", text, "--ctx", "256",
                               "--chunks", "3", "--threads", "2", "--json", js])
        c.expect(rc == 0, f"{preset}: eval failed: {err.strip()}")
        if rc != 0:
            continue
        r = json.load(open(js))
        rise = r["ppl"] / r["reference_ppl"] - 1
        print(f"{preset:20s} bits/w {8 * after / (before / 4):6.3f}  ppl {r['ppl']:8.3f} vs {r['reference_ppl']:8.3f} "
              f"({100 * rise:+6.2f} %)  KLD {r['mean_kld']:.4f}  top-1 {100 * r['top1_agreement']:.1f} %")
        perplexity[preset] = r["ppl"]
        perplexity["fp32"] = r["reference_ppl"]
        if bound:
            c.expect(rise <= bound[0], f"{preset}: perplexity +{100 * rise:.2f} % > +{100 * bound[0]:.1f} %")
            c.expect(r["top1_agreement"] >= bound[1], f"{preset}: top-1 agreement {r['top1_agreement']:.3f} < {bound[1]}")

    # GPTQ and AWQ beat round-to-nearest at the same format (and close a real part of its gap).
    for method, rtn in (("int4-gptq-g128", "int4-rtn-g128"), ("int4-awq-g128", "int4-rtn-g128"),
                        ("int3-gptq-g128", "int3-rtn-g128")):
        if method in perplexity and rtn in perplexity:
            closed = (perplexity[rtn] - perplexity[method]) / (perplexity[rtn] - perplexity["fp32"])
            print(f"{method}: ppl {perplexity[method]:.3f} vs {rtn} {perplexity[rtn]:.3f} (gap closed {100 * closed:.0f} %)")
            # int3 on CI's small calibration slice (4×128 tokens) closes less; it must still beat RTN clearly.
            need = 0.25 if method.startswith("int4") else 0.10
            c.expect(closed >= need, f"{method}: closes {100 * closed:.1f} % of {rtn}'s gap (< {100 * need:.0f} %)")
        else:
            c.expect(False, f"{method} or {rtn} was not measured")
    # A calibrated method without calibration data is refused with a clear error.
    rc, _, err = run([args.lathe, "compile", gguf, "--recipe", os.path.join(RECIPES, "int4-gptq-g128.yaml"),
                      "-o", os.path.join(tmp, "nocal.lathe")])
    c.expect(rc != 0 and "--calibration" in err, f"gptq without calibration: rc {rc}, {err.strip()[-200:]}")

    # Sequential calibration (issue #6/#7): stage by stage on the generated Llama (ids as .npy);
    # every layer GPTQ-compressed, its mean output error below round to nearest's on the same data.
    llama = os.path.join(args.models, "generated", "llama-tiny", "llama-tiny.opset17.onnx")
    ids_path = os.path.join(tmp, "llama_ids.npy")
    np.save(ids_path, (np.arange(512, dtype=np.int64) * 37) % 997 + 1)
    mean_error = {}
    for method, extra in (("rtn", []), ("gptq", ["--calibration-sequential"])):
        recipe = os.path.join(tmp, f"llama-{method}.yaml")
        with open(recipe, "w") as f:
            f.write(f"quantize: {{format: int4, group_size: 32, method: {method}}}\n")
        out = os.path.join(tmp, f"llama-{method}.lathe")
        rc, _, err = run([args.lathe, "compile", llama, "--recipe", recipe, "--calibration", ids_path,
                          "--calibration-samples", "4", "--calibration-ctx", "64", "-o", out] + extra)
        c.expect(rc == 0, f"llama {method} {extra}: {err.strip()[-400:]}")
        if rc != 0:
            continue
        layers = json.load(open(out + ".report.json"))["layers"]
        c.expect(all(method in l["method"] for l in layers) and len(layers) == 14, f"llama {method}: layers {layers}")
        mean_error[method] = sum(l["output_error"] for l in layers) / len(layers)
        if extra:
            c.expect("sequential calibration: 3/3 stages compressed" in err, f"no stage progress: {err.strip()[-300:]}")
    if len(mean_error) == 2:
        print(f"llama-tiny int4 g32: mean layer output error rtn {mean_error['rtn']:.4f}, sequential gptq {mean_error['gptq']:.4f}")
        c.expect(mean_error["gptq"] < mean_error["rtn"], f"sequential gptq {mean_error} not below rtn")

    # Calibration: statistics in the IR, per-layer output errors in the report, deterministic.
    calib = os.path.join(args.models, "corpus", "austen", "emma.txt")
    outs = []
    for threads in (1, 2):
        out = os.path.join(tmp, f"calibrated{threads}.lathe")
        rc, stdout, err = run([args.lathe, "compile", gguf, "--recipe", os.path.join(RECIPES, "int4-rtn-g32.yaml"),
                               "--calibration", calib, "--calibration-samples", "2", "--calibration-ctx", "128",
                               "--threads", str(threads), "-o", out])
        c.expect(rc == 0 and "calibration: 2/2 batches" in err, f"--calibration: rc {rc} {err.strip()[-300:]}")
        outs.append(out if rc == 0 else None)
    if outs[0] and outs[1]:
        c.expect(open(outs[0], "rb").read() == open(outs[1], "rb").read(), "calibrated compiles (1 and 2 threads) differ")
        r1, r2 = (json.load(open(o + ".report.json"))["layers"] for o in outs)
        c.expect([l["output_error"] for l in r1] == [l["output_error"] for l in r2], "output errors depend on the thread count")
        layers = json.load(open(outs[0] + ".report.json"))["layers"]
        errors = [l["output_error"] for l in layers]
        c.expect(all(e is not None and 0 < e < 1.5 for e in errors), f"output errors missing or implausible: {errors[:5]}")
    ir = os.path.join(tmp, "calibrated.mlir")
    rc, _, err = run([args.lathe, "compile", gguf, "--calibration", calib, "--calibration-samples", "1",
                      "--calibration-ctx", "64", "--compile-to", "compress", "-o", ir])
    text_ir = open(ir).read() if rc == 0 else ""
    c.expect(rc == 0 and len(re.findall(r"lathe\.calibration = \{(?:abs_hist = dense_resource<[^>]+> : tensor<[^>]+>, )?absmax = dense_resource", text_ir)) == 211 and
             "positions = 64" in text_ir, f"calibration statistics not in the IR: rc {rc} {err.strip()[-200:]}")
    ids = os.path.join(tmp, "calib_ids.npy")
    np.save(ids, np.arange(3, 3 + 300, dtype=np.int64))
    rc, _, err = run([args.lathe, "compile", gguf, "--calibration", ids, "--calibration-ctx", "100", "--compile-to",
                      "compress", "-o", os.path.join(tmp, "ids.mlir")])
    c.expect(rc == 0 and "calibration: 3/3 batches" in err, f"--calibration ids.npy: {err.strip()[-200:]}")
    rc, _, err = run([args.lathe, "compile", gguf, "--calibration", os.path.join(tmp, "nope.txt"), "-o", os.path.join(tmp, "y.lathe")])
    c.expect(rc == 1 and "cannot read calibration text" in err, f"missing calibration file: {err.strip()}")

    # GGUF Q4_1/Q8_0 kept as int4/int8 g32 without a round trip: the same function as the f32 import.
    native = os.path.join(tmp, "native.lathe")
    rc, stdout, err = run([args.lathe, "compile", gguf, "--gguf-weights", "native", "-o", native])
    c.expect(rc == 0 and "gguf-q4_1" in stdout, f"--gguf-weights native: rc {rc} {err.strip()[-300:]}")
    if rc == 0:
        js = os.path.join(tmp, "native.eval.json")
        rc, _, err = run([args.lathe, "eval", native, "--reference", fp32, "--text", text, "--ctx", "256", "--chunks", "3",
                          "--threads", "2", "--json", js])
        r = json.load(open(js)) if rc == 0 else None
        c.expect(r is not None and r["mean_kld"] < 1e-6 and abs(r["ppl"] / r["reference_ppl"] - 1) < 1e-5 and
                 r["top1_agreement"] == 1.0, f"native GGUF weights differ from the f32 import: {r}")
        c.expect(os.path.getsize(native) < 0.45 * os.path.getsize(fp32), "native artifact is not much smaller than fp32")

    # d. incremental decoding of a quantized model.
    q8 = os.path.join(tmp, "int8-weight-only.lathe")
    if os.path.exists(q8):
        ids = np.random.default_rng(3).integers(3, 49152, (1, 24)).astype(np.int64)
        np.save(os.path.join(tmp, "ids.npy"), ids)
        np.save(os.path.join(tmp, "mask.npy"), np.ones_like(ids))
        outs = []
        for extra in ([], ["--incremental", "1"]):
            d = tempfile.mkdtemp(dir=tmp)
            rc, _, err = run([args.lathe, "run", q8, "--input", f"input_ids={tmp}/ids.npy", "--input",
                              f"attention_mask={tmp}/mask.npy", "--output-dir", d] + extra)
            c.expect(rc == 0, f"int8 run {extra}: {err}")
            outs.append(np.load(os.path.join(d, "logits.npy")) if rc == 0 else None)
        if outs[0] is not None and outs[1] is not None:
            # One token at a time (the int8 GEMV) against the whole prompt (the int8
            # panels) sums in other orders: within 1e-5 of the logits' scale.
            diff, scale = np.abs(outs[0] - outs[1]).max(), np.abs(outs[0]).max()
            c.expect(diff <= 1e-5 * scale, f"int8 incremental differs by {diff:.2e} (logits up to {scale:.1f})")

    # c. MiniLM.
    base = os.path.join(tmp, "minilm.lathe")
    rc, _, err = run([args.lathe, "compile", minilm, "-o", base])
    inputs = os.path.join(os.path.dirname(minilm), "text_b4", "inputs")
    for preset, floor in (("int8-weight-only", 0.998), ("bf16", 0.99999), ("fp16", 0.999999)):
        out = os.path.join(tmp, "minilm." + preset + ".lathe")
        rc, _, err = run([args.lathe, "compile", minilm, "--recipe", os.path.join(RECIPES, preset + ".yaml"), "-o", out])
        c.expect(rc == 0, f"minilm {preset}: {err.strip()[-300:]}")
        js = os.path.join(tmp, "minilm." + preset + ".json")
        rc, stdout, err = run([args.lathe, "eval", out, "--reference", base, "--data", inputs, "--per-layer", "--json", js])
        c.expect(rc == 0, f"minilm {preset} eval: {err}")
        if rc == 0:
            layers = json.load(open(js))["per_layer"]
            c.expect(len(layers) == 37 and all(0 <= l["relative_error"] < 0.5 for l in layers) and
                     layers[0]["relative_error"] >= layers[-1]["relative_error"] > 0,
                     f"minilm {preset} --per-layer: {len(layers)} rows, errors {[l['relative_error'] for l in layers][:3]}")
            for o in json.load(open(js))["outputs"]:
                print(f"minilm {preset:18s} {o['name']:18s} cosine mean {o['cosine_mean']:.6f} worst {o['cosine_worst']:.6f}")
                c.expect(o["cosine_mean"] >= floor, f"minilm {preset} {o['name']}: cosine {o['cosine_mean']:.6f} < {floor}")

    # f. sensitivity: one layer compressed at a time, ranked by the output change.
    sens = os.path.join(tmp, "sens.json")
    rc, stdout, err = run([args.lathe, "sensitivity", minilm, "--calibration", inputs, "--format", "int4", "--group-size", "32",
                           "--json", sens])
    rows = json.load(open(sens)) if rc == 0 else []
    # The pooler's dense layer does not feed the first output (last_hidden_state): error 0, ranked last.
    c.expect(rc == 0 and len(rows) == 37 and sum(r["error"] > 0 for r in rows) == 36 and
             rows[-1]["layer"].startswith("/pooler") and all(r["bytes_saved"] > 0 for r in rows) and
             all(rows[i]["error"] >= rows[i + 1]["error"] for i in range(len(rows) - 1)),
             f"sensitivity on MiniLM: rc {rc}, {len(rows)} rows {err.strip()[-200:]}")
    lm = os.path.join(args.models, "generated", "gpt2-lm-tiny", "gpt2-lm-tiny.opset17.onnx")
    ids = os.path.join(tmp, "lm_ids.npy")
    np.save(ids, np.random.default_rng(2).integers(0, 1000, 96).astype(np.int64))
    rc, stdout, err = run([args.lathe, "sensitivity", lm, "--calibration", ids, "--calibration-ctx", "32", "--format", "int8",
                           "--json", sens])
    rows = json.load(open(sens)) if rc == 0 else []
    c.expect(rc == 0 and len(rows) == 13 and "KL divergence" in stdout and "3 windows of 32 tokens" in stdout,
             f"sensitivity on gpt2-lm-tiny: rc {rc}, {len(rows)} rows {err.strip()[-200:]}")
    # With int8 activations too: the same layers, each moving the output more than its weights alone.
    sens8 = os.path.join(tmp, "sens8.json")
    rc, stdout, err = run([args.lathe, "sensitivity", lm, "--calibration", ids, "--calibration-ctx", "32", "--format", "int8",
                           "--int8-activations", "--json", sens8])
    rows8 = json.load(open(sens8)) if rc == 0 else []
    c.expect(rc == 0 and "int8 activations" in stdout and len(rows8) == 13 and
             sum(r["error"] for r in rows8) > sum(r["error"] for r in rows),
             f"sensitivity --int8-activations on gpt2-lm-tiny: rc {rc}, {len(rows8)} rows, total error "
             f"{sum(r['error'] for r in rows8):.3g} vs {sum(r['error'] for r in rows):.3g} {err.strip()[-200:]}")
    rc, _, err = run([args.lathe, "sensitivity", lm, "--calibration", ids, "--format", "bf16", "--int8-activations"])
    c.expect(rc == 1 and "--int8-activations applies to --format int8 or int4, not bf16" in err,
             f"sensitivity --int8-activations with bf16: rc {rc}, {err.strip()}")

    # Σ xᵀx statistics (--calibration-xtx), read back from the IR printed in full by lathe-opt:
    # symmetric, positive semi-definite, diag/positions between mean|x|² and max|x|².
    mlirbc, mlir = os.path.join(tmp, "xtx.mlirbc"), os.path.join(tmp, "xtx.mlir")
    rc, _, err = run([args.lathe, "compile", lm, "--calibration", ids, "--calibration-ctx", "32", "--calibration-xtx",
                      "--compile-to", "compress", "-o", mlirbc])
    rc2, _, err2 = run([os.path.join(os.path.dirname(args.lathe), "lathe-opt"), mlirbc, "-o", mlir])
    c.expect(rc == 0 and rc2 == 0, f"--calibration-xtx: {err.strip()[-200:]} {err2.strip()[-200:]}")
    if rc == 0 and rc2 == 0:
        text_ir = open(mlir).read()
        blobs = {m.group(1).strip('"'): np.frombuffer(bytes.fromhex(m.group(2)[8:]), dtype=np.float32)
                 for m in re.finditer(r'^\s+("?[^\s"]+"?): "0x([0-9A-F]+)"', text_ir, re.M)}
        first = re.search(r"lathe\.calibration = \{(?:abs_hist = dense_resource<[^>]+> : tensor<[^>]+>, )?absmax = dense_resource<([^>]+)>[^}]*mean_abs = dense_resource<([^>]+)>"
                          r"[^}]*positions = (\d+)[^}]*xtx = dense_resource<([^>]+)>", text_ir)
        c.expect(first is not None, "no lathe.calibration with xtx in the IR")
        if first:
            absmax, mean_abs, xtx = (blobs.get(first.group(i)) for i in (1, 2, 4))
            n = int(first.group(3))
            c.expect(n == 96 and absmax is not None and xtx is not None and xtx.size == absmax.size ** 2,
                     f"xtx blob: positions {n}, sizes {None if absmax is None else absmax.size}/{None if xtx is None else xtx.size}")
            if xtx is not None and absmax is not None:
                k = absmax.size
                g = xtx.reshape(k, k).astype(np.float64)
                d = np.diag(g) / n
                c.expect(np.allclose(g, g.T), "xtx is not symmetric")
                c.expect(np.linalg.eigvalsh(g).min() >= -1e-4 * np.abs(g).max(), "xtx is not positive semi-definite")
                c.expect(np.all(d >= mean_abs.astype(np.float64) ** 2 * (1 - 1e-4) - 1e-6) and
                         np.all(d <= absmax.astype(np.float64) ** 2 * (1 + 1e-4) + 1e-6),
                         "diag(xtx)/positions is not between mean|x|² and max|x|²")

    # e. recipe errors.
    def recipe_error(what, body, needle):
        path = os.path.join(tmp, what.replace(" ", "_") + ".yaml")
        with open(path, "w") as f:
            f.write(body)
        rc, _, err = run([args.lathe, "compile", gguf, "--recipe", path, "-o", os.path.join(tmp, "x.lathe")])
        c.expect(rc == 1 and needle in err and path in err, f"{what}: rc {rc}, stderr {err.strip()!r} (expected {needle!r})")

    recipe_error("unknown key", "name: x\nquantize:\n  format: int8\n  bitz: 4\n", "line 4: unknown key 'bitz'")
    recipe_error("int4 group", "quantize:\n  format: int4\n  group_size: 40\n", "line 3: int4 needs a group_size")
    recipe_error("bf16 group", "quantize:\n  format: bf16\n  group_size: 32\n", "line 3: bf16 has no group_size")
    recipe_error("fp16 method", "quantize:\n  format: fp16\n  method: gptq\n", "line 3: fp16 is a storage format")
    recipe_error("int8 asym", "quantize:\n  format: int8\n  symmetric: false\n", "line 3: int8 is always symmetric")
    recipe_error("method", "quantize:\n  format: int4\n  method: magic\n", "line 3: unknown method 'magic'")
    recipe_error("format", "quantize:\n  format: int2\n", "line 2: format 'int2'")
    recipe_error("int3 group", "quantize:\n  format: int3\n  group_size: 48\n", "line 3: int3 needs a group_size")
    recipe_error("no match", "quantize:\n  format: int8\noverrides:\n  - match: \"decoder.*\"\n    skip: true\n",
                 "line 4: pattern 'decoder.*' matches no linear layer")
    recipe_error("skip and quantize", "overrides:\n  - match: output\n    skip: true\n    quantize: {format: int8}\n",
                 "line 2: an override cannot both skip and compress")
    recipe_error("yaml syntax", "quantize: [format: int8\n", "line")
    recipe_error("int8 activations int3", "quantize:\n  format: int3\n  group_size: 32\n  int8_activations: true\n",
                 "line 4: 'int8_activations' applies to int8 and int4 weights")
    recipe_error("int8 activations group", "quantize:\n  format: int8\n  group_size: 48\n  int8_activations: true\n",
                 "line 4: 'int8_activations' needs int8 groups in multiples of 32")
    recipe_error("int8 activations value", "quantize:\n  format: int4\n  int8_activations: maybe\n",
                 "line 3: int8_activations has an invalid value 'maybe'")
    rc, _, err = run([args.lathe, "compile", gguf, "--recipe", os.path.join(tmp, "missing.yaml"), "-o", os.path.join(tmp, "x.lathe")])
    c.expect(rc == 1 and "cannot read" in err, f"missing recipe: {err}")
    c.expect(not os.path.exists(os.path.join(tmp, "x.lathe")), "a failed compile left an artifact")
    c.finish()


if __name__ == "__main__":
    main()
