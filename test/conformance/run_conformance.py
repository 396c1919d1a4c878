#!/usr/bin/env python3
"""ONNX node-test conformance run for Lathe: the importer, and execution through `lathe run`.

Sources of ONNX backend node tests (each test is a folder with model.onnx and
test_data_set_*):
  debian  Debian's libonnx-testdata (/usr/share/libonnx-testdata/data/node, opsets <= 17)
  pip     the pinned onnx wheel in the venv (<venv>/lib/python3.*/site-packages/onnx/
          backend/test/data/node), or --onnx-node-dir

Denominator: every test whose top-level graph has at least one node whose op type is in
LISTED_OPS (Lathe's importer scope), including tests that also use other ops and
`_expanded` variants. A test that also uses an op outside LISTED_OPS is expected to fail;
its expected-failure entry says "uses unsupported op X" in front of lathe's message.
Nodes inside subgraphs (If/Loop/Scan bodies) are not looked at: their parent op is not in
LISTED_OPS, so such a test is counted only through its top-level nodes.

Modes:
  import  `lathe compile MODEL --compile-to=import`; pass = exit 0 (the IR imported and
          verified) AND, with --types fail (the default), the imported function's result
          types agree with the model's declared output types (node-test models declare exact
          shapes; a mismatch is a silent shape/dtype bug in the importer, so the test counts
          as failed with reason "result type mismatch (lathe exit 0): ..."). --types warn only reports
          mismatches; --types off skips the comparison. Checked against expected_failures.txt.
  run     (default) the import step above (checked against expected_failures.txt as in mode
          import), then `lathe compile MODEL -o X.lathe` (all phases), then for every
          test_data_set_*: input_<i>.pb -> .npy for graph input i (by position, as the ONNX
          backend runner does), `lathe run X.lathe --input NAME=X.npy ... --output-dir D
          --threads N`, and D/<graph output i>.npy against output_<i>.pb: dtype and shape
          exactly; bool and integer values exactly; floating values with the ONNX backend
          runner's tolerance (onnx/backend/test/loader: rtol=1e-3, atol=1e-7 unless the test's
          data.json says otherwise; np.isclose semantics |got-want| <= atol + rtol*|want|,
          NaN equals NaN, computed in float64). Checked against expected_failures_run.txt, where
          a test that fails import is listed too (reason "import: ...").

Result: every test in the denominator either passes or is listed (`<source>/<test>  # reason`).
An unexpected failure, an unexpected pass, or a stale entry (a listed test that is not in the
denominator of a source that was found) fails the run; in mode run, for both lists.
`--update` rewrites the list(s) from the current results (entries of a missing source are kept):
mode import rewrites expected_failures.txt, mode run both lists.

Summary columns: denominator = tests of the source that use a listed op; passed = imported
(mode import) or executed with matching outputs (mode run), unexpected passes included;
xfail = failed and listed; unexp.fail / unexp.pass as above. Mode run also counts the tests
that imported but failed later (compile after import, `lathe run` error, output comparison),
grouped by op.

Exit codes: 0 ok, 1 failure (or a missing lathe binary), 2 usage error,
77 skipped (a source or the onnx module is missing and CI != "true"; with CI=true that is an
error, exit 1). A source that is present is still run and checked before the skip.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import glob
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

SKIP = 77

# The ONNX op types under test (the importer's scope when this run was set up). When
# compiler/import/onnx/ImportOnnx.cpp's supportedOnnxOps() grows, the run prints a note;
# add the op here to bring its tests into the denominator, then run --update.
LISTED_OPS = frozenset("""
Abs Add And Cast CastLike Concat Constant ConstantOfShape Cos Div Dropout Equal Erf Exp Expand
Flatten Gather Gelu Gemm Greater GreaterOrEqual Identity LayerNormalization Less LessOrEqual Log
MatMul Max Min Mul Neg Not Or Pow Range Reciprocal ReduceMax ReduceMean ReduceMin ReduceSum Relu
Reshape Shape Sigmoid Sin Slice Softmax Split Sqrt Squeeze Sub Sum Tanh Transpose Trilu Unsqueeze
Where
""".split())

SOURCES = ("debian", "pip")
HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
DEFAULT_DEBIAN_DIR = "/usr/share/libonnx-testdata/data/node"
DEFAULT_LIST = os.path.join(HERE, "expected_failures.txt")
DEFAULT_RUN_LIST = os.path.join(HERE, "expected_failures_run.txt")


# --------------------------------------------------------------------------------------
# Discovery
# --------------------------------------------------------------------------------------

def find_pip_node_dir(venv: str) -> str | None:
    pattern = os.path.join(venv, "lib", "python3*", "site-packages", "onnx", "backend", "test", "data", "node")
    hits = sorted(d for d in glob.glob(pattern) if os.path.isdir(d))
    return hits[-1] if hits else None


def importer_op_drift() -> str:
    """A note when supportedOnnxOps() in the importer source differs from LISTED_OPS."""
    path = os.path.join(REPO, "compiler", "import", "onnx", "ImportOnnx.cpp")
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return ""
    m = re.search(r"supportedOnnxOps\(\)\s*\{\s*return\s*\{(.*?)\};", text, re.S)
    if not m:
        return ""
    ops = set(re.findall(r'"(\w+)"', m.group(1)))
    notes = []
    if ops - LISTED_OPS:
        notes.append(f"supported by the importer but outside the denominator: {' '.join(sorted(ops - LISTED_OPS))}")
    if LISTED_OPS - ops:
        notes.append(f"listed but no longer in supportedOnnxOps(): {' '.join(sorted(LISTED_OPS - ops))}")
    return "; ".join(notes)


def default_opset(model) -> int:
    versions = [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")]
    return max(versions) if versions else 0


class Test:
    __slots__ = ("source", "name", "dir", "ops", "unlisted", "opset", "outputs")

    def __init__(self, source, name, path, ops, opset, outputs):
        self.source, self.name, self.dir, self.ops, self.opset = source, name, path, ops, opset
        self.unlisted = sorted(ops - LISTED_OPS)
        self.outputs = outputs  # declared graph output types as MLIR-style strings (None: not a tensor)

    @property
    def key(self) -> str:
        return f"{self.source}/{self.name}"

    @property
    def model(self) -> str:
        return os.path.join(self.dir, "model.onnx")


def discover(source: str, node_dir: str) -> tuple[list[Test], int]:
    """Tests of `node_dir` in the denominator, and how many node tests the folder holds."""
    import onnx

    tests, total = [], 0
    for name in sorted(os.listdir(node_dir)):
        path = os.path.join(node_dir, name)
        model_path = os.path.join(path, "model.onnx")
        if not os.path.isfile(model_path) or not glob.glob(os.path.join(path, "test_data_set_*")):
            continue
        total += 1
        model = onnx.load(model_path, load_external_data=False)
        ops = {n.op_type for n in model.graph.node if n.domain in ("", "ai.onnx")}
        if ops & LISTED_OPS:
            tests.append(Test(source, name, path, ops, default_opset(model),
                              [declared_type(o) for o in model.graph.output]))
    return tests, total


# --------------------------------------------------------------------------------------
# Running lathe
# --------------------------------------------------------------------------------------

class Result:
    __slots__ = ("test", "passed", "message", "detail", "seconds", "note", "stage",
                 "import_passed", "import_message")

    def __init__(self, test, passed, message="", detail="", seconds=0.0, stage=""):
        self.test, self.passed, self.message, self.detail, self.seconds = test, passed, message, detail, seconds
        self.note = ""  # result-type mismatch (see --types)
        # Mode run: where it failed ("import", "compile", "run", "compare"), and the outcome of
        # the import step (checked against the import list).
        self.stage = stage
        self.import_passed = passed
        self.import_message = message


def one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def summarize_error(output: str, test: Test, workdir: str = "") -> str:
    """The first line of lathe's output that names the node/op and the reason."""
    text = output.replace(test.model, "model.onnx").replace(test.dir, ".")
    if workdir:
        text = text.replace(workdir + os.sep, "").replace(workdir, ".")
    lines = [l.rstrip() for l in text.splitlines() if l.strip()]
    for i, line in enumerate(lines):
        m = re.search(r"(\d+) node\(s\) cannot be imported:", line)
        if m and i + 1 < len(lines):
            first = lines[i + 1].strip()
            n = int(m.group(1))
            return first + (f" (+{n - 1} more node(s))" if n > 1 else "")
    # MLIR diagnostics (e.g. from the verifier) come before the summary line.
    for line in lines:
        if "error:" in line and "the imported IR does not verify" not in line:
            line = re.sub(r"^.*?error:\s*", "", line, count=1)
            return re.sub(r"^model\.onnx:\s*", "", line)
    for line in lines:
        if "error" in line.lower() or "assert" in line.lower():
            return line.strip()
    return lines[0].strip() if lines else "no output"


def run_lathe(cmd: list[str], timeout: float) -> tuple[int | None, str, float]:
    """(exit status or None on timeout, stdout+stderr, seconds)."""
    start = time.monotonic()
    # Own process group, so that a timeout ends lathe and anything it started.
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                errors="replace", start_new_session=True)
    except OSError as e:  # e.g. the binary is being rebuilt under us
        return 127, f"error: cannot start {cmd[0]}: {e.strerror}", time.monotonic() - start
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        output, _ = proc.communicate()
        return None, output, time.monotonic() - start
    return proc.returncode, output, time.monotonic() - start


def failure_message(rc: int | None, output: str, test: Test, timeout: float, workdir: str = "") -> str:
    if rc is None:
        return f"timed out after {timeout:g} s"
    if rc < 0:
        try:
            sig = signal.Signals(-rc).name
        except ValueError:
            sig = f"signal {-rc}"
        message = f"lathe crashed ({sig})"
        tail = summarize_error(output, test, workdir) if output.strip() else ""
        if tail:
            message += ": " + tail
        return message
    return summarize_error(output, test, workdir)


def run_import(lathe: str, test: Test, workdir: str, timeout: float, check_types: bool) -> Result:
    out = os.path.join(workdir, f"{test.source}__{test.name}.mlir")
    rc, output, seconds = run_lathe([lathe, "compile", test.model, "--compile-to=import", "-o", out], timeout)
    if rc == 0:
        result = Result(test, True, seconds=seconds)
        if check_types:
            result.note = compare_result_types(out, test)
    else:
        result = Result(test, False, failure_message(rc, output, test, timeout), output, seconds, stage="import")
    if os.path.exists(out):
        os.remove(out)
    return result


# --------------------------------------------------------------------------------------
# Execution (mode run)
# --------------------------------------------------------------------------------------

# The ONNX backend runner's defaults (onnx/backend/test/loader/__init__.py); a test's
# data.json may override them.
DEFAULT_RTOL, DEFAULT_ATOL = 1e-3, 1e-7


def safe_file_name(name: str) -> str:
    """The file name `lathe run` gives an output (safeFileName in runtime/tools/Commands.cpp)."""
    s = "".join(c if (c.isascii() and c.isalnum()) or c in "._-" else "_" for c in name)
    return s or "unnamed"


def tolerances(test: Test) -> tuple[float, float]:
    rtol, atol = DEFAULT_RTOL, DEFAULT_ATOL
    path = os.path.join(test.dir, "data.json")
    if os.path.exists(path):
        import json
        with open(path) as f:
            data = json.load(f)
        rtol, atol = data.get("rtol", rtol), data.get("atol", atol)
    return rtol, atol


def load_tensor(path: str, value_info, what: str):
    """A numpy array from a TensorProto file; raises ValueError with a message for the reason."""
    import onnx
    from onnx import numpy_helper

    kind = value_info.type.WhichOneof("value")
    if kind != "tensor_type":
        raise ValueError(f"{what} '{value_info.name}' is a {kind}, not a tensor (not supported by this runner)")
    proto = onnx.TensorProto()
    with open(path, "rb") as f:
        proto.ParseFromString(f.read())
    try:
        return numpy_helper.to_array(proto)
    except Exception as e:  # an element type this onnx module cannot convert
        raise ValueError(f"{what} '{value_info.name}': cannot convert {os.path.basename(path)} "
                         f"(elem_type {proto.data_type}) to numpy: {one_line(str(e))}") from e


def fmt_value(v) -> str:
    import numpy as np
    if isinstance(v, (np.floating, float)):
        return f"{float(v):.8g}"
    if isinstance(v, (np.bool_, bool)):
        return str(bool(v)).lower()
    return str(v)


def compare_output(name: str, got, want, rtol: float, atol: float) -> str:
    """'' when `got` matches `want`, else the reason."""
    import numpy as np

    if got.dtype != want.dtype:
        return f"output {name} dtype mismatch: got {got.dtype}, expected {want.dtype}"
    if got.shape != want.shape:
        return f"output {name} shape mismatch: got {list(got.shape)}, expected {list(want.shape)}"
    if got.size == 0:
        return ""
    if want.dtype.kind in "biuU" or want.dtype == object:
        bad = got != want
        if not np.any(bad):
            return ""
        if want.dtype.kind in "iu":
            err = np.abs(got.astype(np.float64) - want.astype(np.float64))
            err = np.where(bad, err, -1.0)
            idx = np.unravel_index(int(np.argmax(err)), want.shape)
            head = f"max abs err {fmt_value(err[idx])}"
        else:
            idx = np.unravel_index(int(np.argmax(bad)), want.shape)
            head = "first difference"
    else:
        try:
            g, w = got.astype(np.float64), want.astype(np.float64)
        except (TypeError, ValueError):  # e.g. an ml_dtypes type numpy cannot widen
            g, w = got.astype(np.float32).astype(np.float64), want.astype(np.float32).astype(np.float64)
        with np.errstate(invalid="ignore", over="ignore"):
            ok = np.isclose(g, w, rtol=rtol, atol=atol, equal_nan=True)
            if np.all(ok):
                return ""
            bad = ~ok
            err = np.abs(g - w)
        # NaN/inf disagreements rank first, then the largest finite error.
        rank = np.where(bad, np.where(np.isfinite(err), err, np.inf), -1.0)
        idx = np.unravel_index(int(np.argmax(rank)), want.shape)
        head = f"max abs err {fmt_value(err[idx])}"
    where = list(int(i) for i in idx)
    return (f"output {name} mismatch: {head} at index {where} (got {fmt_value(got[idx])}, expected "
            f"{fmt_value(want[idx])}); {int(np.count_nonzero(bad))} of {want.size} elements differ")


def run_execution(lathe: str, test: Test, workdir: str, timeout: float, types: str, threads: int) -> Result:
    """Mode run: import (as mode import does), compile to .lathe, run every data set, compare."""
    import numpy as np
    import onnx

    result = run_import(lathe, test, workdir, timeout, types != "off")
    if types == "fail" and result.passed and result.note:
        result.passed = False
        result.message = f"result type mismatch (lathe exit 0): {result.note}"
        result.stage = "import"
    result.import_passed, result.import_message = result.passed, result.message
    if not result.passed:
        return result

    def fail(stage: str, message: str, detail: str = "") -> Result:
        result.passed, result.stage, result.message, result.detail = False, stage, message, detail
        return result

    base = os.path.join(workdir, f"{test.source}__{test.name}")
    artifact = base + ".lathe"
    try:
        rc, output, seconds = run_lathe([lathe, "compile", test.model, "-o", artifact], timeout)
        result.seconds += seconds
        if rc != 0:
            return fail("compile", failure_message(rc, output, test, timeout, workdir), output)
        model = onnx.load(test.model, load_external_data=False)
        graph_inputs, graph_outputs = list(model.graph.input), list(model.graph.output)
        rtol, atol = tolerances(test)
        data_sets = sorted(glob.glob(os.path.join(test.dir, "test_data_set_*")))
        for n, data_set in enumerate(data_sets):
            tag = f" [{os.path.basename(data_set)}]" if len(data_sets) > 1 else ""
            set_dir = f"{base}.set{n}"
            out_dir = os.path.join(set_dir, "out")
            os.makedirs(set_dir, exist_ok=True)
            cmd = [lathe, "run", artifact, "--output-dir", out_dir, "--threads", str(threads)]
            n_inputs = len(glob.glob(os.path.join(data_set, "input_*.pb")))
            if n_inputs > len(graph_inputs):
                return fail("compare", f"{n_inputs} input files but {len(graph_inputs)} graph inputs{tag}")
            try:
                for i in range(n_inputs):
                    vi = graph_inputs[i]
                    array = load_tensor(os.path.join(data_set, f"input_{i}.pb"), vi, "input")
                    path = os.path.join(set_dir, f"input_{i}.npy")
                    try:
                        np.save(path, array, allow_pickle=False)
                    except ValueError as e:
                        raise ValueError(f"input '{vi.name}' ({array.dtype}): cannot write .npy: {one_line(str(e))}") from e
                    cmd += ["--input", f"{vi.name}={path}"]
            except ValueError as e:
                return fail("input", f"{e}{tag}")
            rc, output, seconds = run_lathe(cmd, timeout)
            result.seconds += seconds
            if rc != 0:
                return fail("run", failure_message(rc, output, test, timeout, set_dir) + tag, output)
            n_outputs = len(glob.glob(os.path.join(data_set, "output_*.pb")))
            if n_outputs > len(graph_outputs):
                return fail("compare", f"{n_outputs} output files but {len(graph_outputs)} graph outputs{tag}")
            for i in range(n_outputs):
                vo = graph_outputs[i]
                try:
                    want = load_tensor(os.path.join(data_set, f"output_{i}.pb"), vo, "output")
                except ValueError as e:
                    return fail("compare", f"{e}{tag}")
                path = os.path.join(out_dir, safe_file_name(vo.name) + ".npy")
                if not os.path.exists(path):
                    wrote = sorted(os.listdir(out_dir)) if os.path.isdir(out_dir) else []
                    return fail("compare", f"output {vo.name} missing: lathe run wrote {', '.join(wrote) or 'nothing'}{tag}",
                                output)
                try:
                    got = np.load(path, allow_pickle=False)
                except Exception as e:
                    return fail("compare", f"output {vo.name}: cannot read lathe's .npy: {one_line(str(e))}{tag}")
                problem = compare_output(vo.name, got, want, rtol, atol)
                if problem:
                    return fail("compare", problem + tag, output)
            shutil.rmtree(set_dir, ignore_errors=True)
        return result
    finally:
        if os.path.exists(artifact):
            os.remove(artifact)
        for d in glob.glob(glob.escape(base) + ".set*"):
            shutil.rmtree(d, ignore_errors=True)


# --------------------------------------------------------------------------------------
# --fold-shape-inputs (mode run, exploratory)
# --------------------------------------------------------------------------------------

# Operands whose value decides a result shape or an axis list. Many node tests feed them as
# graph inputs; Lathe compiles static shapes, so it wants them constant (the importer says
# "must be a constant", or `lathe run` says "data-dependent shapes are not supported").
# --fold-shape-inputs turns such graph inputs into initializers holding test_data_set_0's
# values, so that the lowering and the kernels of those tests get exercised anyway.
SHAPE_OPERANDS = {
    "Reshape": {1}, "Expand": {1}, "Slice": {1, 2, 3, 4}, "Range": {0, 1, 2}, "Split": {1}, "Squeeze": {1},
    "Unsqueeze": {1}, "ConstantOfShape": {0}, "Tile": {1}, "Pad": {1, 2, 3}, "Dropout": {1, 2}, "TopK": {1},
    "ReduceSum": {1}, "ReduceMean": {1}, "ReduceMax": {1}, "ReduceMin": {1}, "ReduceProd": {1}, "ReduceL1": {1},
    "ReduceL2": {1}, "ReduceLogSum": {1}, "ReduceLogSumExp": {1}, "ReduceSumSquare": {1},
}


def fold_shape_inputs(test: Test, workdir: str) -> tuple[Test, list[str]] | None:
    """A copy of `test` whose shape-deciding graph inputs are initializers (None: it has none)."""
    import onnx

    model = onnx.load(test.model, load_external_data=False)
    wanted = {name for node in model.graph.node for i, name in enumerate(node.input)
              if name and i in SHAPE_OPERANDS.get(node.op_type, ())}
    inputs = list(model.graph.input)
    folded = [i for i, vi in enumerate(inputs) if vi.name in wanted]
    if not folded:
        return None
    data_set = sorted(glob.glob(os.path.join(test.dir, "test_data_set_*")))[0]
    folder = os.path.join(workdir, "folded", f"{test.source}__{test.name}")
    os.makedirs(os.path.join(folder, "test_data_set_0"), exist_ok=True)
    kept = 0
    for i, vi in enumerate(inputs):
        with open(os.path.join(data_set, f"input_{i}.pb"), "rb") as f:
            blob = f.read()
        if i in folded:
            tensor = onnx.TensorProto()
            tensor.ParseFromString(blob)
            tensor.name = vi.name
            model.graph.initializer.append(tensor)
        else:
            with open(os.path.join(folder, "test_data_set_0", f"input_{kept}.pb"), "wb") as f:
                f.write(blob)
            kept += 1
    for path in glob.glob(os.path.join(data_set, "output_*.pb")):
        shutil.copy(path, os.path.join(folder, "test_data_set_0"))
    del model.graph.input[:]
    model.graph.input.extend(vi for i, vi in enumerate(inputs) if i not in folded)
    onnx.save(model, os.path.join(folder, "model.onnx"))
    return Test(test.source, test.name, folder, test.ops, test.opset, test.outputs), [inputs[i].name for i in folded]


# Result types: the imported function's result types against the model's declared graph
# outputs (node-test models declare exact output shapes and element types).
ONNX_TO_MLIR = {1: "f32", 2: "ui8", 3: "i8", 4: "ui16", 5: "i16", 6: "i32", 7: "i64", 9: "i1",
                10: "f16", 11: "f64", 12: "ui32", 13: "ui64", 16: "bf16"}


def declared_type(value_info) -> str | None:
    t = value_info.type
    if not t.HasField("tensor_type") or not t.tensor_type.HasField("shape"):
        return None
    tt = t.tensor_type
    dims = [str(d.dim_value) if d.HasField("dim_value") else "?" for d in tt.shape.dim]
    return "x".join(dims + [ONNX_TO_MLIR.get(tt.elem_type, f"onnx{tt.elem_type}")])


def compare_result_types(mlir_path: str, test: Test) -> str:
    """'' when the imported result types agree with the declared outputs ('?' matches any size)."""
    try:
        with open(mlir_path) as f:
            text = f.read()
        m = re.search(r"func\.func @main\(.*?\)\s*->\s*(.*?)\s*\{\s*$", text, re.M | re.S)
        if not m:
            return "cannot find the result types of @main in the imported IR"
        got = re.findall(r"tensor<([^>]*)>", m.group(1))
        want = test.outputs
        if len(got) != len(want):
            return f"{len(got)} results, the model declares {len(want)} outputs"
        bad = []
        for i, (g, w) in enumerate(zip(got, want)):
            if w is None:
                continue
            gparts, wparts = g.split("x"), w.split("x")
            same = len(gparts) == len(wparts) and all(a == b or "?" in (a, b) for a, b in zip(gparts, wparts))
            if not same:
                bad.append(f"result {i} is tensor<{g}>, the model declares tensor<{w}>")
        return "; ".join(bad)
    except OSError as e:  # informational only
        return f"type check failed: {e}"


# --------------------------------------------------------------------------------------
# Expected failures
# --------------------------------------------------------------------------------------

def read_expected(path: str) -> tuple[dict[str, str], list[str]]:
    entries, errors = {}, []
    if not os.path.exists(path):
        return entries, errors
    with open(path) as f:
        for n, raw in enumerate(f, 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            key, sep, reason = line.partition("#")
            key, reason = key.strip(), reason.strip()
            if not sep or not reason:
                errors.append(f"{path}:{n}: entry without a reason: {line}")
                continue
            if key.split("/", 1)[0] not in SOURCES or "/" not in key:
                errors.append(f"{path}:{n}: '{key}' does not start with one of {', '.join(s + '/' for s in SOURCES)}")
                continue
            if key in entries:
                errors.append(f"{path}:{n}: duplicate entry {key}")
            entries[key] = reason
    return entries, errors


def with_unlisted(test: Test, reason: str) -> str:
    if test.unlisted:
        ops = ", ".join(test.unlisted)
        plural = "s" if len(test.unlisted) > 1 else ""
        reason = f"uses unsupported op{plural} {ops}; lathe: {reason}"
    return reason


def reason_for(result: Result) -> str:
    """The import-list reason (the import step's outcome)."""
    return with_unlisted(result.test, one_line(result.import_message) or "failed without a message")


STAGE_PREFIX = {"import": "import: ", "compile": "compile: ", "input": "input: ", "run": "run: ", "compare": ""}


def run_reason_for(result: Result) -> str:
    """The run-list reason: the stage that failed, then lathe's message or the comparison."""
    message = one_line(result.message) or "failed without a message"
    return with_unlisted(result.test, STAGE_PREFIX.get(result.stage, "") + message)


# Messages that point at a bug in lathe rather than at a feature it does not support.
SUSPICIOUS = re.compile(r"crashed|assert|cannot infer|does not verify|timed out|result type mismatch|"
                        r"internal|unreachable|no output|without a message", re.I)


def write_expected(path: str, entries: dict[str, str], mode: str) -> None:
    with open(path, "w") as f:
        f.write("# ONNX node tests (test/conformance/run_conformance.py) that Lathe is expected to fail.\n")
        f.write(f"# Mode: {mode}. Format: <source>/<test_name>  # reason (mandatory).\n")
        f.write("# Generated by `run_conformance.py --update` from lathe's own error messages; review\n")
        f.write("# the diff. A test that starts passing must be removed (an unexpected pass fails the run).\n")
        if mode == "import":
            f.write("# 'result type mismatch (lathe exit 0)' = imported, but with a result type that differs from\n")
            f.write("# the model's declared output: an importer bug, not an unsupported feature.\n")
        else:
            f.write("# Every test of expected_failures.txt (import) is here too, as 'import: <reason>'. Then\n")
            f.write("# 'compile: ' = `lathe compile -o X.lathe` failed after the import (simplify, lower, package);\n")
            f.write("# 'input: ' = a test input has no .npy form; 'run: ' = `lathe run` failed or crashed;\n")
            f.write("# 'output X ...' = it ran, but output X differs from output_<i>.pb (dtype, shape, or values\n")
            f.write("# beyond rtol=1e-3, atol=1e-7: the ONNX backend runner's tolerance).\n")
        for key in sorted(entries, key=lambda k: (SOURCES.index(k.split('/', 1)[0]), k)):
            f.write(f"{key}  # {entries[key]}\n")


class Check:
    """The results against one expected-failure list."""

    def __init__(self, label: str, path: str, expected: dict[str, str], present: list[str]):
        self.label, self.path, self.expected, self.present = label, path, expected, present
        self.stats = {s: dict(denominator=0, passed=0, xfail=0, unexpected_fail=0, unexpected_pass=0) for s in present}
        self.unexpected_fail, self.unexpected_pass, self.changed, self.stale = [], [], [], []
        self.reasons: dict[str, str] = {}  # this run's failures

    def classify(self, results: list[Result], passed_of, reason_of, check_stale: bool) -> None:
        for r in results:
            st = self.stats[r.test.source]
            st["denominator"] += 1
            listed = r.test.key in self.expected
            if passed_of(r):
                st["passed"] += 1
                if listed:
                    st["unexpected_pass"] += 1
                    self.unexpected_pass.append(r)
                continue
            reason = reason_of(r)
            self.reasons[r.test.key] = reason
            if listed:
                st["xfail"] += 1
                if self.expected[r.test.key] != reason:
                    self.changed.append(r)
            else:
                st["unexpected_fail"] += 1
                self.unexpected_fail.append(r)
        seen = {r.test.key for r in results}
        if check_stale:
            self.stale = sorted(k for k in self.expected if k.split("/", 1)[0] in self.present and k not in seen)

    def total(self) -> dict[str, int]:
        total = dict(denominator=0, passed=0, xfail=0, unexpected_fail=0, unexpected_pass=0)
        for st in self.stats.values():
            for k in total:
                total[k] += st[k]
        return total

    def failed(self) -> bool:
        return bool(self.unexpected_fail or self.unexpected_pass or self.stale)

    def update(self, mode: str) -> None:
        new = {k: v for k, v in self.expected.items() if k.split("/", 1)[0] not in self.present}  # keep missing sources
        new.update(self.reasons)
        write_expected(self.path, new, mode)
        review = sorted(k for k, v in new.items() if SUSPICIOUS.search(v)) if mode == "import" else []
        if review:
            print(f"\nREVIEW ({len(review)}): these entries look like lathe bugs, not unsupported features")
            for k in review:
                print(f"  {k}  # {new[k]}")
        print(f"\nupdated {self.path}: {len(new)} entries "
              f"({len(self.unexpected_fail)} added, {len(self.unexpected_pass) + len(self.stale)} removed, "
              f"{len(self.changed)} reasons refreshed)")
        self.unexpected_fail, self.unexpected_pass, self.stale = [], [], []

    def report(self, reason_of, verbose: bool) -> None:
        name = os.path.basename(self.path)
        if self.unexpected_fail:
            print(f"\nUNEXPECTED FAILURES, {self.label} ({len(self.unexpected_fail)}): fix lathe, or add them to "
                  f"{name} with a reason")
            for r in self.unexpected_fail:
                print(f"  {r.test.key}: {reason_of(r)}")
                for line in r.detail.strip().splitlines()[:8]:
                    print(f"      | {line}")
        if self.unexpected_pass:
            print(f"\nUNEXPECTED PASSES, {self.label} ({len(self.unexpected_pass)}): remove them from {name}")
            for r in self.unexpected_pass:
                print(f"  {r.test.key}: listed as '{self.expected[r.test.key]}'")
        if self.stale:
            print(f"\nSTALE ENTRIES, {self.label} ({len(self.stale)}): listed in {name} but not in the denominator; "
                  f"remove them")
            for k in self.stale:
                print(f"  {k}")
        if verbose and self.changed:
            print(f"\n{self.label}: expected failures whose reason changed ({len(self.changed)}; informational, "
                  f"refresh with --update)")
            for r in self.changed:
                print(f"  {r.test.key}:\n      listed: {self.expected[r.test.key]}\n      now:    {reason_of(r)}")
        elif self.changed:
            print(f"\n{self.label}: {len(self.changed)} expected failure(s) now fail with a different message "
                  f"(see --verbose)")


_OP_NAMES: dict[str, str] | None = None
OP_ALIASES = {"lessequal": "LessOrEqual", "greaterequal": "GreaterOrEqual", "nllloss": "NegativeLogLikelihoodLoss",
              "sce": "SoftmaxCrossEntropyLoss", "softmaxcrossentropy": "SoftmaxCrossEntropyLoss",
              "layernorm": "LayerNormalization", "reducelogsumexp": "ReduceLogSumExp"}


def primary_op(test: Test) -> str:
    """The op a node test is about, from its name (test_reduce_sum_... -> ReduceSum)."""
    global _OP_NAMES
    if _OP_NAMES is None:
        names = set(LISTED_OPS)
        try:
            import onnx.defs
            names |= {s.name for s in onnx.defs.get_all_schemas_with_history() if s.domain in ("", "ai.onnx")}
        except Exception:
            pass
        _OP_NAMES = {n.lower(): n for n in names}
        _OP_NAMES.update(OP_ALIASES)
    flat = test.name[len("test_"):].replace("_", "").lower() if test.name.startswith("test_") else test.name.lower()
    best = ""
    for key in _OP_NAMES:
        if flat.startswith(key) and len(key) > len(best):
            best = key
    if best:
        return _OP_NAMES[best]
    return "+".join(sorted(test.ops)) or "?"


STAGE_LABEL = {"compile": "compile after import", "input": "input conversion", "run": "lathe run error",
               "compare": "wrong output"}


def print_execution_failures(results: list[Result]) -> None:
    """Mode run: the tests that imported but failed later, by stage and by op."""
    late = [r for r in results if r.import_passed and not r.passed]
    imported = sum(1 for r in results if r.import_passed)
    print(f"\nimported but failed execution: {len(late)} of {imported} imported tests")
    if not late:
        return
    by_stage: dict[str, int] = {}
    for r in late:
        by_stage[r.stage] = by_stage.get(r.stage, 0) + 1
    print("  by stage: " + ", ".join(f"{STAGE_LABEL.get(s, s)} {n}" for s, n in
                                     sorted(by_stage.items(), key=lambda kv: (-kv[1], kv[0]))))
    by_op: dict[str, list[Result]] = {}
    for r in late:
        by_op.setdefault(primary_op(r.test), []).append(r)
    print("  by op (from the test name):")
    for op, rs in sorted(by_op.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        stages: dict[str, int] = {}
        for r in rs:
            stages[r.stage] = stages.get(r.stage, 0) + 1
        detail = ", ".join(f"{STAGE_LABEL.get(s, s)} {n}" for s, n in sorted(stages.items()))
        print(f"    {op:28s} {len(rs):4d}  ({detail})")


def run_folded(args, tests: list[Test], work: str, t0: float) -> int:
    """--fold-shape-inputs: run the folded variants and print every result (no list check)."""
    folded = []
    for t in tests:
        f = fold_shape_inputs(t, work)
        if f:
            folded.append(f)
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = [(names, pool.submit(run_execution, args.lathe, t, work, args.timeout, args.types,
                                       args.threads)) for t, names in folded]
        results = [(names, fut.result()) for names, fut in futures]
    print(f"ONNX node conformance, mode run, shape/axes graph inputs folded into initializers, lathe {args.lathe}")
    passed = sum(1 for _, r in results if r.passed)
    imported = sum(1 for _, r in results if r.import_passed)
    print(f"{len(results)} tests with such inputs: {passed} passed, {imported - passed} imported but failed, "
          f"{len(results) - imported} failed to import ({time.monotonic() - t0:.1f} s)")
    for names, r in results:
        status = "PASS" if r.passed else "FAIL"
        tail = "" if r.passed else f": {run_reason_for(r)}"
        print(f"  {status} {r.test.key} [folded {', '.join(names)}]{tail}")
    print_execution_failures([r for _, r in results])
    return 0


# --------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lathe", default=os.path.join(REPO, "build", "bin", "lathe"), help="the lathe binary")
    ap.add_argument("--mode", choices=("import", "run"), default="run",
                    help="import: the importer only; run (default): import, compile, execute, compare outputs")
    ap.add_argument("--venv", default=os.environ.get("LATHE_VENV", os.path.join(REPO, ".venv")),
                    help="venv whose onnx wheel holds the pip node tests (default $LATHE_VENV or <repo>/.venv)")
    ap.add_argument("--onnx-node-dir", help="pip source folder (overrides the --venv lookup)")
    ap.add_argument("--debian-node-dir", default=DEFAULT_DEBIAN_DIR, help="debian source folder")
    ap.add_argument("--sources", default=",".join(SOURCES), help="comma-separated subset of: debian,pip")
    ap.add_argument("--expected", default=DEFAULT_LIST, help="expected-failure list of the import step")
    ap.add_argument("--expected-run", default=DEFAULT_RUN_LIST, help="expected-failure list of mode run")
    ap.add_argument("--jobs", "-j", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1, help="mode run: `lathe run --threads` (default 1)")
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds per lathe command")
    ap.add_argument("--filter", help="regex on <source>/<test>; for debugging (no stale-entry check, no --update)")
    ap.add_argument("--update", action="store_true",
                    help="rewrite the expected-failure list(s) from this run (mode run: both lists)")
    ap.add_argument("--types", choices=("off", "warn", "fail"), default="fail",
                    help="compare imported result types with the declared outputs: a mismatch fails the "
                         "test (fail, default), is only reported (warn), or is not checked (off)")
    ap.add_argument("--verbose", "-v", action="store_true", help="also list expected failures whose reason changed")
    ap.add_argument("--fold-shape-inputs", action="store_true",
                    help="mode run, exploratory: only the tests that feed a shape/axes operand (SHAPE_OPERANDS) "
                         "from a graph input, with those inputs made initializers (test_data_set_0's values); "
                         "prints every result, checks no list")
    args = ap.parse_args()

    ci = os.environ.get("CI") == "true"

    def missing(what: str) -> int:
        if ci:
            print(f"error: {what} (CI=true: not skipping)", file=sys.stderr)
            return 1
        print(f"SKIP: {what}", file=sys.stderr)
        return SKIP

    if args.fold_shape_inputs and (args.mode != "run" or args.update):
        print("error: --fold-shape-inputs needs --mode run and cannot be combined with --update", file=sys.stderr)
        return 2
    if args.update and args.filter:
        print("error: --update rewrites the whole list; it cannot be combined with --filter", file=sys.stderr)
        return 2
    wanted = [s.strip() for s in args.sources.split(",") if s.strip()]
    if not wanted or any(s not in SOURCES for s in wanted):
        print(f"error: --sources takes a subset of {','.join(SOURCES)}", file=sys.stderr)
        return 2
    if not (os.path.isfile(args.lathe) and os.access(args.lathe, os.X_OK)):
        print(f"error: lathe binary not found: {args.lathe} (build it: ninja -C build lathe)", file=sys.stderr)
        return 1
    try:
        import onnx  # noqa: F401
        if args.mode == "run":
            import numpy  # noqa: F401
            from onnx import numpy_helper  # noqa: F401
    except ImportError as e:
        return missing(f"python module {e.name or 'onnx/numpy'} is not importable by {sys.executable}")

    dirs = {}
    if "debian" in wanted:
        dirs["debian"] = args.debian_node_dir
    if "pip" in wanted:
        dirs["pip"] = args.onnx_node_dir or find_pip_node_dir(args.venv) or ""
    absent = []
    for s, d in dirs.items():
        if not d or not os.path.isdir(d):
            hint = ("install Debian's libonnx-testdata" if s == "debian" else
                    f"no onnx/backend/test/data/node under {args.venv}; run scripts/models/setup_venv.sh "
                    "or pass --onnx-node-dir")
            absent.append(f"source '{s}' not found ({d or 'no folder'}): {hint}")
    present = [s for s in dirs if not any(a.startswith(f"source '{s}'") for a in absent)]

    expected, list_errors = read_expected(args.expected)
    expected_run: dict[str, str] = {}
    if args.mode == "run":
        expected_run, run_errors = read_expected(args.expected_run)
        list_errors += run_errors
    if list_errors:
        print("\n".join(list_errors), file=sys.stderr)
        return 1

    t0 = time.monotonic()
    tests, totals = [], {}
    for s in present:
        found, totals[s] = discover(s, dirs[s])
        tests += found
    if args.filter:
        rx = re.compile(args.filter)
        tests = [t for t in tests if rx.search(t.key)]

    results: list[Result] = []
    check_types = args.types != "off"
    with tempfile.TemporaryDirectory(prefix="lathe-conformance-") as work:
        if args.fold_shape_inputs:
            return run_folded(args, tests, work, t0)
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            if args.mode == "run":
                futures = [pool.submit(run_execution, args.lathe, t, work, args.timeout,
                                       args.types, args.threads) for t in tests]
            else:
                futures = [pool.submit(run_import, args.lathe, t, work, args.timeout, check_types) for t in tests]
            for fut in futures:
                results.append(fut.result())
    elapsed = time.monotonic() - t0

    # ---- classify
    if args.mode == "import" and args.types == "fail":
        for r in results:
            if r.passed and r.note:
                r.passed, r.message = False, f"result type mismatch (lathe exit 0): {r.note}"
                r.import_passed, r.import_message = r.passed, r.message
    imp = Check("import", args.expected, expected, present)
    imp.classify(results, lambda r: r.import_passed, reason_for, check_stale=not args.filter)
    checks = [imp]
    if args.mode == "run":
        run = Check("run", args.expected_run, expected_run, present)
        run.classify(results, lambda r: r.passed, run_reason_for, check_stale=not args.filter)
        checks = [imp, run]
    main_check = checks[-1]

    # ---- report
    print(f"ONNX node conformance, mode {args.mode}, lathe {args.lathe}")
    for s in present:
        print(f"  {s:6s} {dirs[s]} ({totals[s]} node tests, {main_check.stats[s]['denominator']} use a listed op)")
    for a in absent:
        print(f"  MISSING {a}")
    drift = importer_op_drift()
    if drift:
        print(f"  note: {drift} (edit LISTED_OPS in {os.path.basename(__file__)})")
    if args.mode == "run":
        rtol, atol = DEFAULT_RTOL, DEFAULT_ATOL
        print(f"  outputs: dtype and shape exact; bool/int exact; floats rtol={rtol:g} atol={atol:g} "
              f"(ONNX backend runner defaults); lathe run --threads {args.threads}")
    for check in checks:
        name = os.path.basename(check.path)
        print(f"\n{check.label} ({name})")
        print(f"{'source':8s} {'denominator':>11s} {'passed':>7s} {'xfail':>6s} {'unexp.fail':>10s} {'unexp.pass':>10s}")
        rows = [(s, check.stats[s]) for s in present] + [("total", check.total())]
        for s, st in rows:
            print(f"{s:8s} {st['denominator']:11d} {st['passed']:7d} {st['xfail']:6d} "
                  f"{st['unexpected_fail']:10d} {st['unexpected_pass']:10d}")
    if args.mode == "run":
        print_execution_failures(results)
    print(f"({elapsed:.1f} s, {max(1, args.jobs)} jobs)")

    if args.update:
        for check in checks:
            check.update(args.mode if check.label == "run" else "import")
    for check in checks:
        check.report(reason_for if check.label == "import" else run_reason_for, args.verbose)

    mismatched = [r for r in results if r.note and r.import_passed]
    if mismatched:
        print(f"\nRESULT-TYPE MISMATCHES ({len(mismatched)}, --types warn: not counted): imported, but a result "
              f"type differs from the model's declared output")
        for r in mismatched:
            print(f"  {r.test.key}: {r.note}")

    if any(c.failed() for c in checks):
        print("\nFAILED")
        return 1
    if absent:
        return missing("; ".join(absent))
    print("\nOK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
