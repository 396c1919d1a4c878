"""Helpers shared by the scripts in scripts/models (run them with the venv python).

Conventions used by every generator:
  <model dir>/<name>.opset<N>.onnx          one file per opset variant
  <model dir>/<shape tag>/inputs/<input>.npy   e.g. b2_s16/inputs/input_ids.npy
  <model dir>/<shape tag>/outputs/<output>.npy torch reference outputs
  <model dir>/info.json                     what the step produced (read by write_manifest.py)
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import warnings

import numpy as np

# (batch, sequence) shapes for reference data; the first one is the export shape.
REF_SHAPES = [(2, 16), (1, 7), (3, 33)]
ATOL = 1e-4
RTOL = 1e-4


def shape_tag(batch: int, seq: int) -> str:
    return f"b{batch}_s{seq}"


def quiet_warnings() -> None:
    # torch.onnx tracer warnings are expected for HF models; keep the log readable.
    warnings.filterwarnings("ignore")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def make_text_inputs(rng: np.random.Generator, batch: int, seq: int, vocab: int,
                     with_token_type: bool, pad_id: int | None = None,
                     low: int = 0) -> dict[str, np.ndarray]:
    """Random ids in [low, vocab), attention_mask with right padding in the last row."""
    ids = rng.integers(low, vocab, size=(batch, seq), dtype=np.int64)
    mask = np.ones((batch, seq), dtype=np.int64)
    n_pad = max(1, seq // 4)
    if seq > 1:
        mask[-1, seq - n_pad:] = 0
        if pad_id is not None:
            ids[-1, seq - n_pad:] = pad_id
    feeds = {"input_ids": ids, "attention_mask": mask}
    if with_token_type:
        tt = np.zeros((batch, seq), dtype=np.int64)
        tt[:, seq // 2:] = 1  # segment A / segment B
        feeds["token_type_ids"] = tt
    return feeds


def save_reference(model_dir: str, tag: str, inputs: dict[str, np.ndarray],
                   outputs: dict[str, np.ndarray]) -> str:
    d = os.path.join(model_dir, tag)
    for sub, arrays in (("inputs", inputs), ("outputs", outputs)):
        os.makedirs(os.path.join(d, sub), exist_ok=True)
        for name, arr in arrays.items():
            np.save(os.path.join(d, sub, f"{name}.npy"), np.ascontiguousarray(arr))
    return d


def load_reference(ref_dir: str) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    res = []
    for sub in ("inputs", "outputs"):
        d = os.path.join(ref_dir, sub)
        res.append({f[:-4]: np.load(os.path.join(d, f)) for f in sorted(os.listdir(d)) if f.endswith(".npy")})
    return res[0], res[1]


def ort_session(path: str):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def verify_with_ort(onnx_path: str, ref_dirs: list[str]) -> float:
    """Runs onnx_path with onnxruntime on every reference dir; raises if any output is off.

    Returns the max absolute error over all outputs and reference dirs."""
    sess = ort_session(onnx_path)
    in_names = [i.name for i in sess.get_inputs()]
    out_names = [o.name for o in sess.get_outputs()]
    worst = 0.0
    for rd in ref_dirs:
        inputs, ref = load_reference(rd)
        if set(in_names) != set(inputs):
            raise RuntimeError(f"{onnx_path}: model inputs {in_names} != reference inputs {sorted(inputs)} ({rd})")
        if set(out_names) != set(ref):
            raise RuntimeError(f"{onnx_path}: model outputs {out_names} != reference outputs {sorted(ref)} ({rd})")
        got = dict(zip(out_names, sess.run(out_names, {k: inputs[k] for k in in_names})))
        for name in out_names:
            g, r = got[name], ref[name]
            if g.shape != r.shape:
                raise RuntimeError(f"{onnx_path}: output {name} shape {g.shape} != reference {r.shape} ({rd})")
            if not np.all(np.isfinite(r)):
                raise RuntimeError(f"{rd}: reference output {name} has non-finite values")
            err = np.abs(g.astype(np.float64) - r.astype(np.float64))
            bound = ATOL + RTOL * np.abs(r.astype(np.float64))
            if np.any(err > bound):
                i = np.unravel_index(np.argmax(err - bound), err.shape)
                raise RuntimeError(
                    f"{onnx_path}: output {name} differs from torch reference in {rd}: "
                    f"max abs err {err.max():.3e}, worst at {i}: ort {g[i]!r} vs torch {r[i]!r} "
                    f"(tolerance {ATOL} abs + {RTOL} rel)")
            worst = max(worst, float(err.max()))
    return worst


def minimum_ir_version(opset: int) -> int:
    """Smallest IR version that onnx's release table pairs with this default-domain opset."""
    from onnx import helper
    best = None
    for _rel, ir, op, _ml, *_ in helper.VERSION_TABLE:
        if op >= opset and (best is None or ir < best):
            best = ir
    if best is None:
        raise ValueError(f"no IR version known for opset {opset}")
    return best


def write_info(model_dir: str, info: dict) -> None:
    os.makedirs(model_dir, exist_ok=True)
    with open(os.path.join(model_dir, "info.json"), "w") as f:
        json.dump(info, f, indent=2, sort_keys=True)
        f.write("\n")


def die(msg: str) -> None:
    print(f"ERROR: {msg}", file=sys.stderr)
    sys.exit(1)
