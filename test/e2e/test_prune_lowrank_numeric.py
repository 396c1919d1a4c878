"""Pruning, low-rank and structured pruning against direct numpy implementations, and the N:M runtime
kernels against the dense product of the same pruned weights.

Covers passes/prune/PruneMath.cpp (masks, SparseGPT), passes/prune/NmPack.cpp and Prune.cpp (packing),
passes/prune/StructuredPrune.cpp (channel scores and shape surgery), passes/lowrank/LowRankMath.cpp and
LowRank.cpp (SVD, activation-aware SVD), and the compensation in passes/quantize/QuantizeWeights.cpp.

lathe-opt runs each pass on hand-built IR whose calibration XᵀX comes from random activations with
correlated channels of unequal scales; numpy re-implements each method from its paper (float64):
  magnitude / Wanda (unstructured and 2:4, 4:8): the same mask and values as numpy, exactly;
  SparseGPT (50 % and 2:4): ≥ 97 % of the masks equal numpy's, the output error tr(ΔHΔᵀ) within 2 %
       of numpy's, and below Wanda's and magnitude's;
  SVD: B·A equals numpy's rank-r truncation within 1e-4 (relative); activation-aware SVD (SVD-LLM's
       Cholesky whitening, in numpy) within 1e-3, with a lower output error than plain SVD;
  low-rank compensation of int8: the output error below int8 alone;
  structured FFN (importance, weight-norm): the same kept channels as numpy's scores.
The compiled artifacts then run through the runtime: the N:M f32 and int4 and the unstructured bitmap
kernels against numpy's
product of the dequantized pruned weights at several batch sizes (relative 1e-5), the low-rank and
structured models against numpy's forward pass.
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lathe_test_util import Checker  # noqa: E402


def dense(a):
    return "dense<" + np.array2string(a.astype(np.float32), separator=", ", threshold=10**9, max_line_width=10**9,
                                      floatmode="unique").replace("\n", "") + ">"


def stats(X):
    n = X.shape[1]
    H = (X.T.astype(np.float64) @ X).astype(np.float32)
    return (f"lathe.calibration = {{positions = {X.shape[0]} : i64, mean_abs = {dense(np.abs(X).mean(0))} : tensor<{n}xf32>, "
            f"absmax = {dense(np.abs(X).max(0))} : tensor<{n}xf32>, xtx = {dense(H)} : tensor<{n}x{n}xf32>}}"), H


def linear_module(W, X, bias=None):
    out, n = W.shape
    s, _ = stats(X)
    b = ""
    args = "%x, %w"
    types = f"tensor<?x{n}xf32>, tensor<{out}x{n}xf32>"
    if bias is not None:
        b = f'  %b = lathe.constant {dense(bias)} : tensor<{out}xf32> loc("fc.bias")\n'
        args += ", %b"
        types += f", tensor<{out}xf32>"
    return (f"func.func @f(%x: tensor<?x{n}xf32>) -> tensor<?x{out}xf32> {{\n"
            f'  %w = lathe.constant {dense(W)} : tensor<{out}x{n}xf32> loc("fc")\n{b}'
            f"  %y = lathe.linear {args} {{{s}}} : ({types}) -> tensor<?x{out}xf32> loc(\"fc\")\n"
            f"  return %y : tensor<?x{out}xf32>\n}}\n")


def ffn_module(W1, b1, W2, X2):
    i, h = W1.shape
    s, _ = stats(X2)
    return (f"func.func @f(%x: tensor<?x{h}xf32>) -> tensor<?x{h}xf32> {{\n"
            f'  %w1 = lathe.constant {dense(W1)} : tensor<{i}x{h}xf32> loc("up")\n'
            f'  %b1 = lathe.constant {dense(b1)} : tensor<{i}xf32> loc("up.bias")\n'
            f'  %w2 = lathe.constant {dense(W2)} : tensor<{h}x{i}xf32> loc("down")\n'
            f"  %u = lathe.linear %x, %w1, %b1 : (tensor<?x{h}xf32>, tensor<{i}x{h}xf32>, tensor<{i}xf32>) -> tensor<?x{i}xf32> loc(\"up\")\n"
            f"  %a = lathe.relu %u : (tensor<?x{i}xf32>) -> tensor<?x{i}xf32> loc(\"act\")\n"
            f"  %y = lathe.linear %a, %w2 {{{s}}} : (tensor<?x{i}xf32>, tensor<{h}x{i}xf32>) -> tensor<?x{h}xf32> loc(\"down\")\n"
            f"  return %y : tensor<?x{h}xf32>\n}}\n")


def blobs(text):
    return {m.group(1): bytes.fromhex(m.group(2)[8:]) for m in re.finditer(r'^\s*([\w.]+): "0x([0-9A-F]+)"', text, re.M)}


class Tools:
    def __init__(self, opt, lathe, work):
        self.opt, self.lathe, self.work = opt, lathe, work
        self.count = 0

    def opt_run(self, text, pipeline):
        path = os.path.join(self.work, f"in{self.count}.mlir")
        self.count += 1
        with open(path, "w") as f:
            f.write(text)
        p = subprocess.run([self.opt, path, f"--pass-pipeline=builtin.module(func.func({pipeline}))"], capture_output=True, text=True)
        if p.returncode != 0:
            sys.exit(f"lathe-opt {pipeline} failed: {p.stderr[-3000:]}")
        return p.stdout

    def execute(self, text, x):
        """Compiles IR text to an artifact and runs it on x (the function's one input)."""
        k = self.count
        self.count += 1
        src, art, out = (os.path.join(self.work, f"m{k}{e}") for e in (".mlir", ".lathe", ".out"))
        with open(src, "w") as f:
            f.write(text)
        for cmd in ([self.lathe, "compile", src, "-o", art],
                    [self.lathe, "run", art, "--input", f"input0={self.npy(x, k)}", "--output-dir", out]):
            p = subprocess.run(cmd, capture_output=True, text=True)
            if p.returncode != 0:
                sys.exit(f"{' '.join(cmd)} failed: {p.stderr[-3000:]}")
        return np.load(os.path.join(out, "output0.npy"))

    def npy(self, x, k):
        path = os.path.join(self.work, f"x{k}.npy")
        np.save(path, x.astype(np.float32))
        return path


def weight_of(text, name, shape):
    return np.frombuffer(blobs(text)[name], dtype=np.float32).reshape(shape)


def out_err(W, What, H):
    D = (W - What).astype(np.float64)
    return float(np.sqrt(np.einsum("ij,jk,ik->", D, H.astype(np.float64), D) / np.einsum("ij,jk,ik->", W, H.astype(np.float64), W)))


def lowest_mask(score, remove):
    """Keep mask: the `remove` lowest scores (ties to the lower index) removed, over a flat array."""
    order = np.lexsort((np.arange(score.size), score.ravel()))
    keep = np.ones(score.size, dtype=bool)
    keep[order[:remove]] = False
    return keep.reshape(score.shape)


def nm_mask(score, n, m):
    out, k = score.shape
    keep = np.ones_like(score, dtype=bool)
    for r in range(out):
        for g in range(0, k, m):
            keep[r, g:g + m] = lowest_mask(score[r, g:g + m], m - n)
    return keep


def sparsegpt_np(W, H, sparsity=0.5, nm=None, damp=0.01, block=128):
    W = W.astype(np.float64).copy()
    H = H.astype(np.float64).copy()
    n = W.shape[1]
    dead = np.diag(H) <= 0
    H[dead, dead] = 1
    W[:, dead] = 0
    H[np.diag_indices(n)] += damp * np.mean(np.diag(H))
    U = np.linalg.cholesky(np.linalg.inv(H)).T
    keep = np.ones_like(W, dtype=bool)
    for b0 in range(0, n, block):
        b1 = min(n, b0 + block)
        Wb = W[:, b0:b1].copy()
        E = np.zeros_like(Wb)
        if nm is None:
            sal = (Wb / np.diag(U)[b0:b1]) ** 2
            keep[:, b0:b1] = lowest_mask(sal.T, int(sparsity * sal.size)).T
        for i in range(b1 - b0):
            if nm is not None and i % nm[1] == 0:
                sal = (Wb[:, i:i + nm[1]] / np.diag(U)[b0 + i:b0 + i + nm[1]]) ** 2
                keep[:, b0 + i:b0 + i + nm[1]] = nm_mask(sal, *nm)
            d = U[b0 + i, b0 + i]
            q = np.where(keep[:, b0 + i], Wb[:, i], 0.0)
            E[:, i] = (Wb[:, i] - q) / d
            Wb[:, i] = q
            Wb[:, i + 1:] -= np.outer(E[:, i], U[b0 + i, b0 + i + 1:b1])
        W[:, b0:b1] = Wb
        W[:, b1:] -= E @ U[b0:b1, b1:]
    return np.where(keep, W, 0.0), keep


def truncate(M, r):
    u, s, vt = np.linalg.svd(M, full_matrices=False)
    return (u[:, :r] * s[:r]) @ vt[:r]


def f16(x):
    return np.float16(x).astype(np.float64)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lathe-opt", required=True)
    ap.add_argument("--lathe", required=True)
    args = ap.parse_args()
    c = Checker()
    rng = np.random.default_rng(7)
    out, n = 48, 64
    W = rng.standard_normal((out, n)).astype(np.float32)
    mix = np.eye(n) + 0.3 * rng.standard_normal((n, n))
    X = ((rng.standard_normal((512, n)) @ mix) * np.exp(rng.uniform(-1.5, 1.5, n))).astype(np.float32)
    _, H = stats(X)
    norms = np.sqrt(np.diag(H.astype(np.float64)))
    with tempfile.TemporaryDirectory() as work:
        t = Tools(args.lathe_opt, args.lathe, work)
        text = linear_module(W, X)
        errors = {}
        # --- magnitude and Wanda: exact masks
        for method, pattern in (("magnitude", ""), ("wanda", ""), ("magnitude", "2:4"), ("wanda", "2:4"), ("wanda", "4:8")):
            opts = f"method={method}" + (f" pattern={pattern}" if pattern else " sparsity=0.5")
            got = weight_of(t.opt_run(text, f"lathe-prune{{{opts}}}"), "fc.pruned", (out, n))
            score = np.abs(W.astype(np.float64)) * (norms if method == "wanda" else 1.0)
            score = score.astype(np.float32)
            if pattern:
                nn, m = map(int, pattern.split(":"))
                keep = nm_mask(score, nn, m)
            elif method == "wanda":
                keep = np.stack([lowest_mask(score[r], n // 2) for r in range(out)])
            else:
                keep = lowest_mask(score, out * n // 2)
            want = np.where(keep, W, 0)
            errors[(method, pattern)] = out_err(W, got, H)
            print(f"{method} {pattern or '50%'}: mask {'equal' if np.array_equal(got, want) else 'DIFFERS'}; output error {errors[(method, pattern)]:.4f}")
            c.expect(np.array_equal(got, want), f"{method} {pattern or 'unstructured'}: the pruned weight differs from numpy's")
        # --- SparseGPT
        for pattern in ("", "2:4"):
            opts = "method=sparsegpt" + (f" pattern={pattern}" if pattern else " sparsity=0.5")
            got = weight_of(t.opt_run(text, f"lathe-prune{{{opts}}}"), "fc.pruned", (out, n))
            ref, keep = sparsegpt_np(W, H, nm=(2, 4) if pattern else None)
            same = float(np.mean((got != 0) == keep))
            e_ours, e_ref = out_err(W, got, H), out_err(W, ref, H)
            print(f"sparsegpt {pattern or '50%'}: {100 * same:.1f} % of the mask equals numpy's; output error {e_ours:.4f} "
                  f"vs numpy {e_ref:.4f}, wanda {errors[('wanda', pattern)]:.4f}, magnitude {errors[('magnitude', pattern)]:.4f}")
            c.expect(same >= 0.97, f"sparsegpt {pattern}: only {100 * same:.1f} % of the mask equals numpy's")
            c.expect(abs(e_ours - e_ref) <= 0.02 * e_ref, f"sparsegpt {pattern}: output error {e_ours} vs numpy {e_ref}")
            c.expect(e_ours < errors[("wanda", pattern)] < errors[("magnitude", pattern)],
                     f"sparsegpt {pattern}: output errors not ordered sparsegpt < wanda < magnitude")
            c.expect(np.mean(got == 0) >= 0.5, f"sparsegpt {pattern}: sparsity {np.mean(got == 0)} below 50 %")

        # --- N:M kernels through the runtime: f32 and int4 values, 2:4 and 4:8, several batch sizes
        bias = rng.standard_normal(out).astype(np.float32)
        btext = linear_module(W, X, bias)
        # (int4 g128 on 64 input columns: one group, shorter than 128)
        for pattern, quant, group in (("2:4", "", 0), ("4:8", "", 0), ("2:4", "int4", 32), ("4:8", "int4", 128),
                                      ("unstructured", "", 0)):
            prune = "sparsity=0.5" if pattern == "unstructured" else f"pattern={pattern}"
            pipeline = f"lathe-prune{{method=wanda {prune}}}," + (
                f"lathe-quantize-weights{{format=int4 group-size={group}}}" if quant else "lathe-pack-sparse")
            packed = t.opt_run(btext, pipeline)
            c.expect("lathe.sparse_linear" in packed, f"{pattern} {quant}: no lathe.sparse_linear")
            dense_pruned = weight_of(t.opt_run(btext, f"lathe-prune{{method=wanda {prune}}}"), "fc.pruned", (out, n))
            what = dense_pruned.astype(np.float64)
            if quant:  # int4 over the kept values of each 32-column group: numpy's grid (ggml Q4_0 rules, f16 scale)
                what = np.zeros_like(what)
                for r in range(out):
                    for g in range(0, n, group):
                        cols = np.nonzero(dense_pruned[r, g:g + group])[0] + g
                        v = dense_pruned[r, cols].astype(np.float32)
                        mx = v[np.argmax(np.abs(v))] if v.size else 0.0
                        d = f16(mx / -8.0)
                        q = np.clip(np.floor(v / d + 8 + 0.5), 0, 15) if d != 0 else np.full(v.shape, 8.0)
                        what[r, cols] = d * (q - 8)
            for rows in (1, 3, 17):
                x = rng.standard_normal((rows, n)).astype(np.float32)
                y = t.execute(packed, x)
                ref = x.astype(np.float64) @ what.T + bias
                scale = np.abs(x).astype(np.float64) @ np.abs(what).T + np.abs(bias)
                worst = float(np.max(np.abs(y - ref) / scale))
                c.expect(worst <= 1e-5, f"N:M {pattern} {quant or 'f32'} g{group} rows {rows}: runtime differs from numpy by {worst:.2e}")
            print(f"N:M {pattern} {quant or 'f32'}{f' g{group}' if quant else ''}: runtime equals numpy's product of the "
                  f"pruned weights at 1, 3, 17 rows")

        # --- low-rank: plain SVD against numpy's truncation, activation-aware against SVD-LLM's whitening
        r = 12
        svd = t.opt_run(btext, f"lathe-low-rank{{method=svd rank={r}}}")
        BA = weight_of(svd, "fc.lr_b", (out, r)).astype(np.float64) @ weight_of(svd, "fc.lr_a", (r, n))
        ref = truncate(W.astype(np.float64), r)
        rel = np.linalg.norm(BA - ref) / np.linalg.norm(ref)
        c.expect(rel <= 1e-4, f"svd: B·A differs from numpy's rank-{r} truncation by {rel:.2e}")
        asvd = t.opt_run(btext, f"lathe-low-rank{{method=asvd rank={r} dampening=0.01}}")
        BA2 = weight_of(asvd, "fc.lr_b", (out, r)).astype(np.float64) @ weight_of(asvd, "fc.lr_a", (r, n))
        Hd = H.astype(np.float64) + 0.01 * np.mean(np.diag(H)) * np.eye(n)
        L = np.linalg.cholesky(Hd)
        ref2 = truncate(W.astype(np.float64) @ L, r) @ np.linalg.inv(L)
        rel2 = np.linalg.norm(BA2 - ref2) / np.linalg.norm(ref2)
        e_svd, e_asvd = out_err(W, BA, H), out_err(W, BA2, H)
        print(f"svd r{r}: {rel:.1e} from numpy; asvd r{r}: {rel2:.1e} from numpy's Cholesky whitening; output error "
              f"asvd {e_asvd:.4f} vs svd {e_svd:.4f}")
        c.expect(rel2 <= 1e-3, f"asvd: B·A differs from numpy's whitened truncation by {rel2:.2e}")
        c.expect(e_asvd < e_svd, f"asvd output error {e_asvd} not below plain svd's {e_svd}")
        # the wide case (out > in) takes the other side of the decomposition
        Wt = rng.standard_normal((96, 32)).astype(np.float32)
        Xt = X[:, :32]
        wide = t.opt_run(linear_module(Wt, Xt), f"lathe-low-rank{{method=asvd rank=8}}")
        BA3 = weight_of(wide, "fc.lr_b", (96, 8)).astype(np.float64) @ weight_of(wide, "fc.lr_a", (8, 32))
        Ht = (Xt.T.astype(np.float64) @ Xt)
        Lt = np.linalg.cholesky(Ht + 0.01 * np.mean(np.diag(Ht)) * np.eye(32))
        ref3 = truncate(Wt.astype(np.float64) @ Lt, 8) @ np.linalg.inv(Lt)
        rel3 = np.linalg.norm(BA3 - ref3) / np.linalg.norm(ref3)
        c.expect(rel3 <= 1e-3, f"asvd (out > in): B·A differs from numpy's by {rel3:.2e}")
        for label, ir, what in (("svd", svd, BA), ("asvd", asvd, BA2)):
            x = rng.standard_normal((5, n)).astype(np.float32)
            y = t.execute(ir, x)
            ref = x.astype(np.float64) @ what.T + bias
            rel = float(np.max(np.abs(y - ref)) / np.max(np.abs(ref)))
            c.expect(rel <= 1e-4, f"{label}: the two-linear artifact differs from numpy's (x·Aᵀ)·Bᵀ + b by {rel:.2e}")

        # --- low-rank compensation of int8 per-channel weights
        plain = t.opt_run(btext, "lathe-quantize-weights{format=int8}")
        comp = t.opt_run(btext, "lathe-quantize-weights{format=int8 compensation-rank=4}")
        e_plain = float(re.search(r"output_error_xtx = ([-\d.eE+]+)", plain).group(1)) if "output_error_xtx" in plain else None
        e_comp = float(re.search(r"output_error_xtx = ([-\d.eE+]+)", comp).group(1))
        x = rng.standard_normal((4, n)).astype(np.float32)
        y_plain, y_comp = t.execute(plain, x), t.execute(comp, x)
        ref = x.astype(np.float64) @ W.T.astype(np.float64) + bias
        err_plain = float(np.linalg.norm(y_plain - ref)), float(np.linalg.norm(y_comp - ref))
        print(f"int8 + rank-4 compensation: layer output error {e_comp:.2e} (XᵀX); runtime error "
              f"{err_plain[1]:.3e} vs int8 alone {err_plain[0]:.3e}")
        c.expect(err_plain[1] < err_plain[0], "the compensated int8 layer is not closer to fp32 than int8 alone")

        # --- structured FFN: kept channels from numpy's scores; the artifact against numpy's forward pass
        h, inter = 32, 128
        W1 = rng.standard_normal((inter, h)).astype(np.float32)
        b1 = rng.standard_normal(inter).astype(np.float32)
        W2 = rng.standard_normal((h, inter)).astype(np.float32)
        X1 = ((rng.standard_normal((256, h)) @ (np.eye(h) + 0.2 * rng.standard_normal((h, h))))).astype(np.float32)
        X2 = np.maximum(X1 @ W1.T + b1, 0) * np.exp(rng.uniform(-1, 1, inter)).astype(np.float32)
        X2 = X2.astype(np.float32)
        ffn = ffn_module(W1, b1, W2, X2)
        col = (W2.astype(np.float64) ** 2).sum(0)
        for criterion in ("importance", "weight-norm"):
            ir = t.opt_run(ffn, f"lathe-prune-structured{{ffn=0.5 criterion={criterion}}}")
            if criterion == "importance":
                score = col * np.diag(X2.T.astype(np.float64) @ X2).astype(np.float32)
            else:
                score = np.sqrt((W1.astype(np.float64) ** 2).sum(1) * col)
            keep = np.sort(np.argsort(score, kind="stable")[inter // 2:])
            got_up = weight_of(ir, "up.ffn_kept", (inter // 2, h))
            same = np.array_equal(got_up, W1[keep])
            c.expect(same, f"structured {criterion}: the kept channels differ from numpy's")
            x = rng.standard_normal((6, h)).astype(np.float32)
            y = t.execute(ir, x)
            ref = np.maximum(x.astype(np.float64) @ W1[keep].T + b1[keep], 0) @ W2[:, keep].T
            rel = float(np.max(np.abs(y - ref)) / np.max(np.abs(ref)))
            print(f"structured ffn 50 % {criterion}: kept channels {'equal' if same else 'DIFFER from'} numpy's; "
                  f"the smaller artifact differs from numpy's forward by {rel:.1e}")
            c.expect(rel <= 1e-4, f"structured {criterion}: artifact differs from numpy's smaller FFN by {rel:.2e}")
    sys.exit(c.finish())


if __name__ == "__main__":
    main()
