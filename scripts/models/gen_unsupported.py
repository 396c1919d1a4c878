#!/usr/bin/env python3
"""An opset-17 ONNX model mixing ops a transformer-compression compiler supports with ops it
should reject, each node with a distinct name.

Writes <out>/unsupported/:
  mixed_unsupported.opset17.onnx
  expected_unsupported.txt   one node name per line (graph order); '#' lines are comments
  expected_supported.txt     the remaining node names
  info.json

Supported:   matmul0 (MatMul), add0 (Add), softmax0 (Softmax), transpose0 (Transpose)
Unsupported: lstm0 (LSTM), topk0 (TopK), nms0 (NonMaxSuppression),
             conv_dynamic_weight0 (Conv whose weight is a graph input, not an initializer),
             cast_to_string0 (Cast to STRING: unsupported dtype)
The model passes onnx.checker (full_check) and runs in onnxruntime; no reference data is
written, a compiler is expected to refuse it and name the unsupported nodes.
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

import numpy as np  # noqa: E402
import onnx  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

UNSUPPORTED = {
    "lstm0": "LSTM: recurrent op",
    "topk0": "TopK",
    "nms0": "NonMaxSuppression",
    "conv_dynamic_weight0": "Conv with a non-constant weight (graph input)",
    "cast_to_string0": "Cast to STRING (unsupported dtype)",
}
SUPPORTED = ["matmul0", "add0", "softmax0", "transpose0"]


def build() -> onnx.ModelProto:
    rng = np.random.default_rng(7)
    F, H, S = 16, 8, 8

    def init(name, arr):
        return numpy_helper.from_array(np.asarray(arr), name)

    inits = [
        init("W1", rng.standard_normal((F, F)).astype(np.float32) * 0.25),
        init("B1", rng.standard_normal((F,)).astype(np.float32) * 0.1),
        init("topk_k", np.array([4], dtype=np.int64)),
        init("lstm_W", rng.standard_normal((1, 4 * H, F)).astype(np.float32) * 0.2),
        init("lstm_R", rng.standard_normal((1, 4 * H, H)).astype(np.float32) * 0.2),
        init("lstm_B", rng.standard_normal((1, 8 * H)).astype(np.float32) * 0.1),
        init("nms_max_out", np.array([3], dtype=np.int64)),
        init("nms_iou", np.array([0.5], dtype=np.float32)),
        init("nms_score", np.array([0.1], dtype=np.float32)),
    ]
    inputs = [
        helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", S, F]),
        helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [1, 10, 4]),
        helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 1, 10]),
        helper.make_tensor_value_info("conv_x", TensorProto.FLOAT, [1, 2, 8, 8]),
        helper.make_tensor_value_info("conv_w", TensorProto.FLOAT, [3, 2, 3, 3]),
    ]
    nodes = [
        helper.make_node("MatMul", ["x", "W1"], ["h0"], name="matmul0"),
        helper.make_node("Add", ["h0", "B1"], ["h1"], name="add0"),
        helper.make_node("Softmax", ["h1"], ["probs"], name="softmax0", axis=-1),
        helper.make_node("TopK", ["probs", "topk_k"], ["top_values", "top_indices"], name="topk0", axis=-1),
        helper.make_node("Transpose", ["h1"], ["h1_seq_major"], name="transpose0", perm=[1, 0, 2]),
        helper.make_node("LSTM", ["h1_seq_major", "lstm_W", "lstm_R", "lstm_B"], ["lstm_y", "lstm_y_h"],
                         name="lstm0", hidden_size=H),
        helper.make_node("NonMaxSuppression", ["boxes", "scores", "nms_max_out", "nms_iou", "nms_score"],
                         ["selected"], name="nms0"),
        helper.make_node("Conv", ["conv_x", "conv_w"], ["conv_y"], name="conv_dynamic_weight0",
                         pads=[1, 1, 1, 1]),
        helper.make_node("Cast", ["probs"], ["probs_str"], name="cast_to_string0", to=TensorProto.STRING),
    ]
    outputs = [
        helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", S, F]),
        helper.make_tensor_value_info("top_values", TensorProto.FLOAT, ["batch", S, 4]),
        helper.make_tensor_value_info("top_indices", TensorProto.INT64, ["batch", S, 4]),
        helper.make_tensor_value_info("lstm_y", TensorProto.FLOAT, [S, 1, "batch", H]),
        helper.make_tensor_value_info("selected", TensorProto.INT64, [None, 3]),
        helper.make_tensor_value_info("conv_y", TensorProto.FLOAT, [1, 3, 8, 8]),
        helper.make_tensor_value_info("probs_str", TensorProto.STRING, ["batch", S, F]),
    ]
    graph = helper.make_graph(nodes, "mixed_unsupported", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                              producer_name="lathe scripts/models/gen_unsupported.py")
    model.ir_version = 8
    names = [n.name for n in model.graph.node]
    assert len(set(names)) == len(names) and set(names) == set(SUPPORTED) | set(UNSUPPORTED), names
    return model


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="models dir (e.g. build/models)")
    args = ap.parse_args()
    d = os.path.join(args.out, "unsupported")
    os.makedirs(d, exist_ok=True)
    model = build()
    path = os.path.join(d, "mixed_unsupported.opset17.onnx")
    onnx.save(model, path)
    onnx.checker.check_model(path, full_check=True)

    # Prove the file is a valid, runnable model (so a refusal can only be about support).
    sess = common.ort_session(path)
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 1, (1, 10, 2)).astype(np.float32)
    boxes = np.concatenate([xy, xy + rng.uniform(0.1, 0.5, (1, 10, 2)).astype(np.float32)], axis=-1)
    feeds = {"x": rng.standard_normal((2, 8, 16)).astype(np.float32), "boxes": boxes,
             "scores": rng.uniform(0, 1, (1, 1, 10)).astype(np.float32),
             "conv_x": rng.standard_normal((1, 2, 8, 8)).astype(np.float32),
             "conv_w": rng.standard_normal((3, 2, 3, 3)).astype(np.float32)}
    outs = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))
    assert outs["probs_str"].dtype == object and outs["top_indices"].shape == (2, 8, 4)

    order = [n.name for n in model.graph.node]
    with open(os.path.join(d, "expected_unsupported.txt"), "w") as f:
        f.write("# node names in mixed_unsupported.opset17.onnx that a compiler should report as unsupported\n")
        for n in order:
            if n in UNSUPPORTED:
                f.write(n + "\n")
    with open(os.path.join(d, "expected_supported.txt"), "w") as f:
        f.write("# node names in mixed_unsupported.opset17.onnx that use supported ops\n")
        for n in order:
            if n in SUPPORTED:
                f.write(n + "\n")
    common.write_info(d, {
        "name": "mixed_unsupported", "kind": "unsupported", "family": None,
        "source": "onnx.helper (gen_unsupported.py)",
        "files": [{"path": os.path.basename(path), "format": "onnx", "opset": 17,
                   "origin": f"onnx {onnx.__version__} helper", "runs_in_onnxruntime": True}],
        "reference": [],
        "expected_unsupported": {n: UNSUPPORTED[n] for n in order if n in UNSUPPORTED},
        "expected_supported": [n for n in order if n in SUPPORTED],
        "nodes": {n.name: n.op_type for n in model.graph.node},
    })
    print(f"mixed_unsupported: {len(order)} nodes, unsupported {[n for n in order if n in UNSUPPORTED]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
