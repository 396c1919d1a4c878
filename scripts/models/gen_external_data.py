#!/usr/bin/env python3
"""ONNX models whose initializers live in external data files (opset 17).

All models compute  y = (x @ W + B) * S   with x: float [batch, sequence, 64], W: [64, 32].

Writes <out>/external_data/:
  small/ext_small.opset17.onnx         W and B external in ext_small.weights.bin (offsets 0 and
                                       12288), S inline; reference data b2_s16/ b1_s7/ b3_s33/
  escape/ext_escape.opset17.onnx       W's location is "../secret.bin": it escapes the model
                                       folder. external_data/secret.bin exists and holds valid
                                       bytes, so only a path check can refuse it.
  escape/ext_escape_abs.opset17.onnx   same, with an absolute location (<out>/external_data/secret.bin)
  large_offset/ext_large_offset.opset17.onnx
                                       W at offset 3 GiB - 64 KiB (> 2^31) in ext_large_offset.bin,
                                       a sparse 3 GiB file (truncate -s 3G; only one block is
                                       real data); reference data b2_s16/ b1_s7/ b3_s33/
  info.json
The small and large-offset models are checked with onnx.checker and run with onnxruntime
against numpy references; for the escape models the behaviour of onnx and onnxruntime is
recorded in info.json (both are expected to refuse them).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

import numpy as np  # noqa: E402
import onnx  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

K, N = 64, 32
LARGE_SIZE = 3 * 1024 ** 3  # truncate -s 3G
LARGE_OFFSET = LARGE_SIZE - 65536  # 3221159936 > 2**31
B_OFFSET = 12288  # ext_small: B starts on the 4 KiB boundary after W's 8 KiB


def weights():
    rng = np.random.default_rng(11)
    W = (rng.standard_normal((K, N)) / np.sqrt(K)).astype(np.float32)
    B = (rng.standard_normal((N,)) * 0.1).astype(np.float32)
    S = (1.0 + rng.standard_normal((N,)) * 0.1).astype(np.float32)
    return W, B, S


def external(name: str, arr: np.ndarray, location: str, offset: int) -> TensorProto:
    t = numpy_helper.from_array(arr, name)
    t.ClearField("raw_data")
    t.data_location = TensorProto.EXTERNAL
    for k, v in (("location", location), ("offset", str(offset)), ("length", str(arr.nbytes))):
        e = t.external_data.add()
        e.key, e.value = k, v
    return t


def make_model(graph_name: str, inits: list[TensorProto]) -> onnx.ModelProto:
    nodes = [helper.make_node("MatMul", ["x", "W"], ["xw"], name="matmul0"),
             helper.make_node("Add", ["xw", "B"], ["xwb"], name="add0"),
             helper.make_node("Mul", ["xwb", "S"], ["y"], name="mul0")]
    g = helper.make_graph(nodes, graph_name,
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "sequence", K])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "sequence", N])],
                          inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)],
                          producer_name="lathe scripts/models/gen_external_data.py")
    m.ir_version = 8
    return m


def write_refs(model_dir: str, W, B, S) -> list[str]:
    tags = []
    for i, (b, s) in enumerate(common.REF_SHAPES):
        x = np.random.default_rng(900 + i).standard_normal((b, s, K)).astype(np.float32)
        y = ((x.astype(np.float64) @ W + B) * S).astype(np.float32)
        tag = common.shape_tag(b, s)
        common.save_reference(model_dir, tag, {"x": x}, {"y": y})
        tags.append(tag)
    return tags


def try_call(fn) -> str:
    try:
        fn()
    except Exception as e:  # recorded, not raised: refusal is the expected outcome
        return f"refused: {type(e).__name__}: {str(e).strip().splitlines()[0][:300]}"
    return "ACCEPTED"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="models dir (e.g. build/models)")
    args = ap.parse_args()
    root = os.path.join(os.path.abspath(args.out), "external_data")
    W, B, S = weights()
    files, notes = [], {}

    # --- small: external W and B in one file, S inline ----------------------------------
    d = os.path.join(root, "small")
    os.makedirs(d, exist_ok=True)
    data = "ext_small.weights.bin"
    with open(os.path.join(d, data), "wb") as f:
        f.write(W.tobytes())
        f.write(b"\0" * (B_OFFSET - W.nbytes))
        f.write(B.tobytes())
    m = make_model("ext_small", [external("W", W, data, 0), external("B", B, data, B_OFFSET),
                                 numpy_helper.from_array(S, "S")])
    path = os.path.join(d, "ext_small.opset17.onnx")
    onnx.save(m, path)
    onnx.checker.check_model(path, full_check=True)
    loaded = onnx.load(path)  # loads external data
    got = {t.name: numpy_helper.to_array(t) for t in loaded.graph.initializer}
    assert np.array_equal(got["W"], W) and np.array_equal(got["B"], B)
    tags = write_refs(d, W, B, S)
    err = common.verify_with_ort(path, [os.path.join(d, t) for t in tags])
    print(f"  ext_small: max |ort - numpy| = {err:.3e}")
    files.append({"path": "small/ext_small.opset17.onnx", "format": "onnx", "opset": 17, "case": "small",
                  "external_data": ["small/" + data], "reference": ["small/" + t for t in tags],
                  "max_abs_err_vs_ort": err})

    # --- escape: location leaves the model folder ----------------------------------------
    d = os.path.join(root, "escape")
    os.makedirs(d, exist_ok=True)
    secret = os.path.join(root, "secret.bin")
    with open(secret, "wb") as f:
        f.write(W.tobytes())
    for case, loc in (("escape", "../secret.bin"), ("escape_abs", secret)):
        m = make_model(f"ext_{case}", [external("W", W, loc, 0), numpy_helper.from_array(B, "B"),
                                       numpy_helper.from_array(S, "S")])
        path = os.path.join(d, f"ext_{case}.opset17.onnx")
        onnx.save(m, path)
        behaviour = {
            "onnx.checker.check_model(path)": try_call(lambda: onnx.checker.check_model(path)),
            "onnx.load(path)": try_call(lambda: onnx.load(path)),
            "onnxruntime.InferenceSession(path)": try_call(lambda: common.ort_session(path)),
        }
        for k, v in behaviour.items():
            print(f"  ext_{case}: {k}: {v}")
        notes[case] = behaviour
        files.append({"path": f"escape/ext_{case}.opset17.onnx", "format": "onnx", "opset": 17, "case": case,
                      "external_data": [os.path.relpath(secret, root)], "external_location": loc,
                      "reference": [], "expected": "a loader must refuse: location outside the model folder",
                      "observed": behaviour})

    # --- large offset: sparse 3 GiB file, W beyond 2^31 ----------------------------------
    d = os.path.join(root, "large_offset")
    os.makedirs(d, exist_ok=True)
    data = "ext_large_offset.bin"
    dpath = os.path.join(d, data)
    if os.path.exists(dpath):
        os.remove(dpath)
    subprocess.run(["truncate", "-s", "3G", dpath], check=True)
    assert os.path.getsize(dpath) == LARGE_SIZE
    with open(dpath, "r+b") as f:
        f.seek(LARGE_OFFSET)
        f.write(W.tobytes())
    allocated = os.stat(dpath).st_blocks * 512
    if allocated > 16 * 1024 * 1024:
        raise RuntimeError(f"{dpath}: {allocated} bytes allocated; the filesystem did not keep it sparse")
    m = make_model("ext_large_offset", [external("W", W, data, LARGE_OFFSET), numpy_helper.from_array(B, "B"),
                                        numpy_helper.from_array(S, "S")])
    path = os.path.join(d, "ext_large_offset.opset17.onnx")
    onnx.save(m, path)
    onnx.checker.check_model(path, full_check=True)
    loaded = onnx.load(path)
    assert np.array_equal(numpy_helper.to_array(loaded.graph.initializer[0]), W)
    tags = write_refs(d, W, B, S)
    err = common.verify_with_ort(path, [os.path.join(d, t) for t in tags])
    print(f"  ext_large_offset: offset {LARGE_OFFSET} (2^31 = {2 ** 31}), file {LARGE_SIZE} bytes, "
          f"{allocated} bytes on disk, max |ort - numpy| = {err:.3e}")
    files.append({"path": "large_offset/ext_large_offset.opset17.onnx", "format": "onnx", "opset": 17,
                  "case": "large_offset", "external_data": ["large_offset/" + data],
                  "external_offset": LARGE_OFFSET, "external_file_size": LARGE_SIZE,
                  "reference": ["large_offset/" + t for t in tags], "max_abs_err_vs_ort": err})

    common.write_info(root, {
        "name": "external_data", "kind": "external_data", "family": None,
        "source": "onnx.helper (gen_external_data.py); y = (x @ W + B) * S",
        "files": files, "reference": [], "tolerance": {"atol": common.ATOL, "rtol": common.RTOL},
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
