"""Structure-aware fuzzing of the ONNX importer and the whole compile: valid
generated models with random mutations (attribute values, dims, inputs,
op types, element types) must give a clean exit (0, or 1 with an error
message), never a crash or a hang. Fixed seeds keep CI reproducible;
--iterations/--seed widen a local run. Crashing inputs are kept in --keep."""
import argparse
import copy
import glob
import os
import random
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))
from lathe_test_util import models_or_skip  # noqa: E402

import onnx  # noqa: E402

OP_TYPES = ["Add", "MatMul", "Reshape", "Gather", "Softmax", "Transpose", "Concat", "Slice", "Where", "Expand",
            "LayerNormalization", "Split", "Unsqueeze", "ReduceMean", "Cast", "Range", "Trilu", "ScatterND"]


def mutate(model, rng):
    g = model.graph
    for _ in range(rng.randint(1, 3)):
        kind = rng.randrange(8)
        node = rng.choice(g.node)
        if kind == 0 and node.attribute:
            a = rng.choice(node.attribute)
            if a.ints:
                a.ints[rng.randrange(len(a.ints))] = rng.randint(-5, 5)
            else:
                a.i = rng.randint(-5, 5)
        elif kind == 1 and node.input:
            node.input[rng.randrange(len(node.input))] = rng.choice(list(node.input) + [""] + [t.name for t in g.initializer[:5]])
        elif kind == 2:
            dims = rng.choice(g.input).type.tensor_type.shape.dim
            if dims:
                dims[rng.randrange(len(dims))].dim_value = rng.randint(-3, 3)
        elif kind == 3 and g.initializer:
            t = rng.choice(g.initializer)
            if t.dims:
                t.dims[rng.randrange(len(t.dims))] = rng.randint(-2, 70)
        elif kind == 4:
            node.op_type = rng.choice(OP_TYPES)
        elif kind == 5 and node.input:
            node.input.append(rng.choice(list(node.input)))
        elif kind == 6:
            for a in node.attribute:
                if a.name in ("axis", "axes", "perm", "to", "keepdims", "upper"):
                    if a.ints:
                        a.ints.append(7)
                    else:
                        a.i = rng.choice([-100, 100, 3, 0])
        else:
            rng.choice(g.input).type.tensor_type.elem_type = rng.choice([1, 2, 6, 7, 8, 9, 10, 14])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lathe", required=True)
    ap.add_argument("--models", required=True)
    ap.add_argument("--iterations", type=int, default=40, help="per model")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--keep", default=None, help="folder for crashing inputs")
    args = ap.parse_args()
    models_or_skip(args.models)
    sources = sorted(glob.glob(os.path.join(args.models, "generated", "*", "*.opset14.onnx")))
    crashes = 0
    runs = 0
    with tempfile.TemporaryDirectory() as tmp:
        for index, source in enumerate(sources):
            base = onnx.load(source)
            rng = random.Random(args.seed * 1000 + index)
            for it in range(args.iterations):
                model = copy.deepcopy(base)
                mutate(model, rng)
                path = os.path.join(tmp, "m.onnx")
                onnx.save(model, path)
                out = os.path.join(tmp, "m.lathe" if it % 2 else "m.mlir")
                try:
                    p = subprocess.run([args.lathe, "compile", path, "-o", out], capture_output=True, timeout=60)
                    rc, err = p.returncode, p.stderr.decode("utf-8", "replace")
                except subprocess.TimeoutExpired:
                    rc, err = "timeout", ""
                runs += 1
                if rc not in (0, 1) or (rc == 1 and "error" not in err):
                    crashes += 1
                    print(f"CRASH {os.path.basename(source)} iteration {it}: rc={rc} {err[-300:]}")
                    if args.keep:
                        os.makedirs(args.keep, exist_ok=True)
                        os.rename(path, os.path.join(args.keep, f"crash-{index}-{it}.onnx"))
    print(f"{runs} mutated models compiled, {crashes} crashes")
    sys.exit(1 if crashes else 0)


if __name__ == "__main__":
    main()
