"""GPTQ and AWQ against direct numpy implementations of the algorithms on small matrices.

lathe-opt runs lathe-quantize-weights{method=gptq} and lathe-awq-scale on hand-built IR whose
calibration statistics come from random activations with unequal channel scales; numpy
re-implements each algorithm from the papers (float64) and the results are compared:
  GPTQ (int4 g32 sym, int3 g32 sym, int8 per channel): ≥ 97 % of the dequantized weights equal
       numpy's and the output error tr(ΔHΔᵀ) within 2 % of numpy's; both beat round to nearest.
  AWQ: the same α as numpy's grid search, the folded norm scale g/s within 1e-5 (relative),
       and the search loss within 1e-3 of numpy's.
"""
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


def module(W, X, g=None):
    out, n = W.shape
    H = (X.T @ X).astype(np.float32)
    stats = (f"lathe.calibration = {{positions = {X.shape[0]} : i64, mean_abs = {dense(np.abs(X).mean(0))} : tensor<{n}xf32>, "
             f"absmax = {dense(np.abs(X).max(0))} : tensor<{n}xf32>, xtx = {dense(H)} : tensor<{n}x{n}xf32>}}")
    norm = ""
    src = "%x"
    if g is not None:
        norm = (f'  %g = lathe.constant {dense(g)} : tensor<{n}xf32> loc("norm")\n'
                f'  %n = lathe.rms_norm %x, %g {{epsilon = 1.0e-5 : f64}} : (tensor<?x{n}xf32>, tensor<{n}xf32>) -> tensor<?x{n}xf32> loc("norm")\n')
        src = "%n"
    return (f"func.func @f(%x: tensor<?x{n}xf32>) -> tensor<?x{out}xf32> {{\n{norm}"
            f'  %w = lathe.constant {dense(W)} : tensor<{out}x{n}xf32> loc("fc")\n'
            f"  %y = lathe.linear {src}, %w {{{stats}}} : (tensor<?x{n}xf32>, tensor<{out}x{n}xf32>) -> tensor<?x{out}xf32> loc(\"fc\")\n"
            f"  return %y : tensor<?x{out}xf32>\n}}\n")


def blobs(text):
    return {m.group(1): bytes.fromhex(m.group(2)[8:]) for m in re.finditer(r'^\s*([\w.]+): "0x([0-9A-F]+)"', text, re.M)}


def run_opt(opt, text, pipeline):
    with tempfile.NamedTemporaryFile("w", suffix=".mlir", delete=False) as f:
        f.write(text)
    p = subprocess.run([opt, f.name, f"--pass-pipeline=builtin.module(func.func({pipeline}))"], capture_output=True, text=True)
    os.unlink(f.name)
    if p.returncode != 0:
        sys.exit(f"lathe-opt failed: {p.stderr[-2000:]}")
    return p.stdout


def grid(x, fmt):
    """(scale, min, qmin, qmax) of one group: Grid.h's rules with f16 scales."""
    if fmt == "int8":
        d = float(np.float16(np.abs(x).max() / 127.0))
        return d, 0.0, -127, 127
    middle = 8 if fmt == "int4" else 4
    m = x[np.argmax(np.abs(x))]
    d = float(np.float16(m / -middle))
    return d, -middle * d, 0, 2 * middle - 1


def rnd(x, d, mn, lo, hi, fmt):
    if d == 0:
        return np.full_like(x, mn + (0 if fmt == "int8" else 0))
    q = np.clip(np.floor((x - mn) / d + 0.5), lo, hi)  # half away from zero for the ≥ 0 codes
    if fmt == "int8":
        q = np.clip(np.sign(x / d) * np.floor(np.abs(x / d) + 0.5), lo, hi)
    return d * q + mn


def rtn_np(W, fmt, group):
    out = np.zeros_like(W, dtype=np.float64)
    for r in range(W.shape[0]):
        for c0 in range(0, W.shape[1], group):
            x = W[r, c0:c0 + group].astype(np.float32)
            out[r, c0:c0 + group] = rnd(x, *grid(x, fmt), fmt)
    return out


def gptq_np(W, H, fmt, group, damp=0.01, block=128):
    W = W.astype(np.float64).copy()
    H = H.astype(np.float64).copy()
    n = W.shape[1]
    H += damp * np.mean(np.diag(H)) * np.eye(n)
    U = np.linalg.cholesky(np.linalg.inv(H)).T
    static = group > block or block % group
    grids = {}
    if static:
        for r in range(W.shape[0]):
            for c0 in range(0, n, group):
                grids[(r, c0 // group)] = grid(W[r, c0:c0 + group].astype(np.float32), fmt)
    Q = np.zeros_like(W)
    for i1 in range(0, n, block):
        i2 = min(i1 + block, n)
        W1 = W[:, i1:i2].copy()
        E = np.zeros_like(W1)
        for i in range(i2 - i1):
            col = i1 + i
            if not static and col % group == 0:
                for r in range(W.shape[0]):
                    grids[(r, col // group)] = grid(W1[r, i:i + group].astype(np.float32), fmt)
            q = np.array([rnd(np.float32(W1[r, i]), *grids[(r, col // group)], fmt) for r in range(W.shape[0])])
            Q[:, col] = q
            E[:, i] = (W1[:, i] - q) / U[i1 + i, i1 + i]
            W1[:, i:] -= np.outer(E[:, i], U[i1 + i, i1:i2][i:])
        W[:, i2:] -= E @ U[i1:i2, i2:]
    return Q


def dequant(b, fmt, out, n, group):
    scales = np.frombuffer(b["fc.scales"], dtype=np.float16).astype(np.float64).reshape(out, -1)
    d = np.repeat(scales, group, axis=1)[:, :n]
    if fmt == "int8":
        return d * np.frombuffer(b["fc.q"], dtype=np.int8).reshape(out, n)
    raw = np.frombuffer(b["fc.q"], dtype=np.uint8)
    codes = np.zeros((out, n))
    for r in range(out):
        for c in range(n):
            t = c % 32
            if fmt == "int4":
                byte = raw[r * (n // 2) + (c // 32) * 16 + t % 16]
                codes[r, c] = byte & 15 if t < 16 else byte >> 4
            else:
                blk = raw[r * (n // 32) * 12 + (c // 32) * 12:][:12]
                codes[r, c] = ((blk[t % 8] >> (2 * (t // 8))) & 3) | (((blk[8 + t // 8] >> (t % 8)) & 1) << 2)
    middle = 8 if fmt == "int4" else 4
    return d * (codes - middle)


def awq_np(W, X, fmt, group, n_grid=20):
    H = (X.T @ X).astype(np.float32).astype(np.float64)
    mean_abs = np.abs(X).mean(0).astype(np.float32)
    # Duo scaling: mean over rows of |w| / (its group's max |w|), per input channel.
    aw = np.abs(W.astype(np.float64)).reshape(W.shape[0], -1, group)
    w_mean = (aw / aw.max(2, keepdims=True)).reshape(W.shape).mean(0)
    best = None
    for duo in (False, True):
        for k in range(n_grid):
            a = k / n_grid
            v = np.power(mean_abs.astype(np.float64), a)
            if duo:
                v = v / (np.power(w_mean, 1 - a) + 1e-4)
            s = np.maximum(v.astype(np.float32), np.float32(1e-4))
            s = (s / np.sqrt(s.max() * s.min())).astype(np.float32)
            D = W - rtn_np((W * s).astype(np.float32), fmt, group) / s
            loss = float(((D @ H) * D).sum())
            if best is None or loss < best[1]:
                best = (a, loss, s, duo)
    return best


def main():
    opt = sys.argv[sys.argv.index("--lathe-opt") + 1]
    c = Checker()
    rng = np.random.default_rng(7)
    n, out = 64, 12
    X = (rng.standard_normal((256, n)) * np.linspace(0.2, 3.0, n) + 0.3 * rng.standard_normal((256, 1))).astype(np.float32)
    W = rng.standard_normal((out, n)).astype(np.float32)
    H = (X.T @ X).astype(np.float32)

    def out_err(What):
        D = W.astype(np.float64) - What
        return float(((D @ H.astype(np.float64)) * D).sum())

    for fmt, group, extra in (("int4", 32, ""), ("int3", 32, ""), ("int8", 0, "")):
        g = group or n
        text = run_opt(opt, module(W, X), f"lathe-quantize-weights{{format={fmt} group-size={group} method=gptq{extra}}}")
        ours = dequant(blobs(text), fmt, out, n, g)
        ref = gptq_np(W, H, fmt, g)
        rtn = rtn_np(W, fmt, g)
        same = float(np.mean(np.isclose(ours, ref, rtol=0, atol=1e-6)))
        e_ours, e_ref, e_rtn = out_err(ours), out_err(ref), out_err(rtn)
        print(f"gptq {fmt} g{g}: {100 * same:.1f} % weights equal numpy's; output error {e_ours:.4g} vs numpy {e_ref:.4g}, "
              f"rtn {e_rtn:.4g}")
        c.expect(same >= 0.97, f"gptq {fmt}: only {100 * same:.1f} % of the weights equal numpy's")
        c.expect(abs(e_ours - e_ref) <= 0.02 * e_ref, f"gptq {fmt}: output error {e_ours} vs numpy {e_ref}")
        c.expect(e_ours < e_rtn, f"gptq {fmt}: output error {e_ours} not below rtn {e_rtn}")

    gnorm = (1.0 + 0.1 * rng.standard_normal(n)).astype(np.float32)
    for fmt, group in (("int4", 32), ("int3", 32)):
        text = run_opt(opt, module(W, X, gnorm), f"lathe-awq-scale{{format={fmt} group-size={group}}}")
        alpha = float(re.search(r"alpha = ([-\d.e+]+)", text).group(1))
        loss = float(re.search(r"loss = ([-\d.e+]+)", text).group(1))
        a, l_ref, s, duo = awq_np(W, X, fmt, group)
        ours_duo = re.search(r"duo = (true|false)", text).group(1) == "true"
        folded = np.frombuffer(blobs(text)["norm.awq"], dtype=np.float32)
        print(f"awq {fmt} g{group}: alpha {alpha} duo {ours_duo} vs numpy {a} duo {duo}; loss {loss:.6g} vs {l_ref:.6g}")
        c.expect(abs(alpha - a) < 1e-9 and ours_duo == duo, f"awq {fmt}: alpha {alpha} duo {ours_duo} vs numpy {a} duo {duo}")
        c.expect(abs(loss - l_ref) <= 1e-3 * l_ref, f"awq {fmt}: loss {loss} vs numpy {l_ref}")
        c.expect(np.allclose(folded, gnorm / s, rtol=1e-5), f"awq {fmt}: folded norm scale differs from g/s")
    sys.exit(c.finish())


if __name__ == "__main__":
    main()
