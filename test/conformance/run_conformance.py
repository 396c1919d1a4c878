#!/usr/bin/env python3
"""ONNX node-test conformance run for Lathe's importer.

Sources of ONNX backend node tests (each test is a folder with model.onnx and
test_data_set_*):
  debian  Debian's libonnx-testdata (/usr/share/libonnx-testdata/data/node, opsets <= 17)
  pip     the pinned onnx wheel in the venv (<venv>/lib/python3.*/site-packages/onnx/
          backend/test/data/node), or --onnx-node-dir

Denominator: every test whose top-level graph has at least one node whose op type is in
LISTED_OPS (Lathe's importer scope), including tests that also use other ops and
`_expanded` variants. A test that also uses an op outside LISTED_OPS is expected to fail;
its expected_failures.txt entry says "uses unsupported op X" in front of lathe's message.
Nodes inside subgraphs (If/Loop/Scan bodies) are not looked at: their parent op is not in
LISTED_OPS, so such a test is counted only through its top-level nodes.

Modes:
  import  `lathe compile MODEL --compile-to=import`; pass = exit 0 (the IR imported and
          verified) AND, with --types fail (the default), the imported function's result
          types agree with the model's declared output types (node-test models declare exact
          shapes; a mismatch is a silent shape/dtype bug in the importer, so the test counts
          as failed with reason "result type mismatch (lathe exit 0): ..."). --types warn only reports
          mismatches; --types off skips the comparison.
  run     execution against test_data_set_*; needs `lathe run` (issue #3), not yet there.

Result: every test in the denominator either passes or is listed in expected_failures.txt
(`<source>/<test>  # reason`). An unexpected failure, an unexpected pass, or a stale entry
(a listed test that is not in the denominator of a source that was found) fails the run.
`--update` rewrites the list from the current results (entries of a missing source are kept).

Summary columns: denominator = tests of the source that use a listed op; passed = imported
(unexpected passes included); xfail = failed and listed; unexp.fail / unexp.pass as above.

Exit codes: 0 ok, 1 failure (or a missing lathe binary), 2 usage error (and --mode run for now),
77 skipped (a source or the onnx module is missing and CI != "true"; with CI=true that is an
error, exit 1). A source that is present is still run and checked before the skip.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import glob
import os
import re
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
RUN_MODE_MESSAGE = "execution conformance needs `lathe run` (issue #3)"


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
    __slots__ = ("test", "passed", "message", "detail", "seconds", "note")

    def __init__(self, test, passed, message="", detail="", seconds=0.0):
        self.test, self.passed, self.message, self.detail, self.seconds = test, passed, message, detail, seconds
        self.note = ""  # result-type mismatch (see --types)


def one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def summarize_error(output: str, test: Test) -> str:
    """The first line of lathe's output that names the node/op and the reason."""
    text = output.replace(test.model, "model.onnx").replace(test.dir, ".")
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


def run_import(lathe: str, test: Test, workdir: str, timeout: float, check_types: bool) -> Result:
    out = os.path.join(workdir, f"{test.source}__{test.name}.mlir")
    cmd = [lathe, "compile", test.model, "--compile-to=import", "-o", out]
    start = time.monotonic()
    # Own process group, so that a timeout ends lathe and anything it started.
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            errors="replace", start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        output, _ = proc.communicate()
        return Result(test, False, f"timed out after {timeout:g} s", output, time.monotonic() - start)
    seconds = time.monotonic() - start
    if proc.returncode == 0:
        result = Result(test, True, seconds=seconds)
        if check_types:
            result.note = compare_result_types(out, test)
        if os.path.exists(out):
            os.remove(out)
        return result
    if os.path.exists(out):
        os.remove(out)
    if proc.returncode < 0:
        try:
            sig = signal.Signals(-proc.returncode).name
        except ValueError:
            sig = f"signal {-proc.returncode}"
        message = f"lathe crashed ({sig})"
        tail = summarize_error(output, test) if output.strip() else ""
        if tail:
            message += ": " + tail
        return Result(test, False, message, output, seconds)
    return Result(test, False, summarize_error(output, test), output, seconds)


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


def reason_for(result: Result) -> str:
    reason = one_line(result.message) or "failed without a message"
    if result.test.unlisted:
        ops = ", ".join(result.test.unlisted)
        plural = "s" if len(result.test.unlisted) > 1 else ""
        reason = f"uses unsupported op{plural} {ops}; lathe: {reason}"
    return reason


# Messages that point at a bug in lathe rather than at a feature it does not support.
SUSPICIOUS = re.compile(r"crashed|assert|cannot infer|does not verify|timed out|result type mismatch|"
                        r"internal|unreachable|no output|without a message", re.I)


def write_expected(path: str, entries: dict[str, str], mode: str) -> None:
    with open(path, "w") as f:
        f.write("# ONNX node tests (test/conformance/run_conformance.py) that Lathe is expected to fail.\n")
        f.write(f"# Mode: {mode}. Format: <source>/<test_name>  # reason (mandatory).\n")
        f.write("# Generated by `run_conformance.py --update` from lathe's own error messages; review\n")
        f.write("# the diff. A test that starts passing must be removed (an unexpected pass fails the run).\n")
        f.write("# 'result type mismatch (lathe exit 0)' = imported, but with a result type that differs from\n")
        f.write("# the model's declared output: an importer bug, not an unsupported feature.\n")
        for key in sorted(entries, key=lambda k: (SOURCES.index(k.split('/', 1)[0]), k)):
            f.write(f"{key}  # {entries[key]}\n")


# --------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lathe", default=os.path.join(REPO, "build", "bin", "lathe"), help="the lathe binary")
    ap.add_argument("--mode", choices=("import", "run"), default="import")
    ap.add_argument("--venv", default=os.environ.get("LATHE_VENV", os.path.join(REPO, ".venv")),
                    help="venv whose onnx wheel holds the pip node tests (default $LATHE_VENV or <repo>/.venv)")
    ap.add_argument("--onnx-node-dir", help="pip source folder (overrides the --venv lookup)")
    ap.add_argument("--debian-node-dir", default=DEFAULT_DEBIAN_DIR, help="debian source folder")
    ap.add_argument("--sources", default=",".join(SOURCES), help="comma-separated subset of: debian,pip")
    ap.add_argument("--expected", default=DEFAULT_LIST, help="expected-failure list")
    ap.add_argument("--jobs", "-j", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds per model")
    ap.add_argument("--filter", help="regex on <source>/<test>; for debugging (no stale-entry check, no --update)")
    ap.add_argument("--update", action="store_true", help="rewrite the expected-failure list from this run")
    ap.add_argument("--types", choices=("off", "warn", "fail"), default="fail",
                    help="compare imported result types with the declared outputs: a mismatch fails the "
                         "test (fail, default), is only reported (warn), or is not checked (off)")
    ap.add_argument("--verbose", "-v", action="store_true", help="also list expected failures whose reason changed")
    args = ap.parse_args()

    ci = os.environ.get("CI") == "true"

    def missing(what: str) -> int:
        if ci:
            print(f"error: {what} (CI=true: not skipping)", file=sys.stderr)
            return 1
        print(f"SKIP: {what}", file=sys.stderr)
        return SKIP

    if args.mode == "run":
        print(f"error: {RUN_MODE_MESSAGE}", file=sys.stderr)
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
    except ImportError:
        return missing(f"python module onnx is not importable by {sys.executable}")

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
    with tempfile.TemporaryDirectory(prefix="lathe-conformance-") as work:
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            futures = [pool.submit(run_import, args.lathe, t, work, args.timeout, args.types != "off") for t in tests]
            for fut in futures:
                results.append(fut.result())
    elapsed = time.monotonic() - t0

    # ---- classify
    if args.types == "fail":
        for r in results:
            if r.passed and r.note:
                r.passed, r.message = False, f"result type mismatch (lathe exit 0): {r.note}"
    stats = {s: dict(denominator=0, passed=0, xfail=0, unexpected_fail=0, unexpected_pass=0) for s in present}
    unexpected_fail, unexpected_pass, changed = [], [], []
    for r in results:
        st = stats[r.test.source]
        st["denominator"] += 1
        listed = r.test.key in expected
        if r.passed and not listed:
            st["passed"] += 1
        elif r.passed and listed:
            st["passed"] += 1
            st["unexpected_pass"] += 1
            unexpected_pass.append(r)
        elif listed:
            st["xfail"] += 1
            if expected[r.test.key] != reason_for(r):
                changed.append(r)
        else:
            st["unexpected_fail"] += 1
            unexpected_fail.append(r)
    seen = {r.test.key for r in results}
    stale = [] if args.filter else sorted(k for k in expected if k.split("/", 1)[0] in present and k not in seen)

    # ---- report
    print(f"ONNX node conformance, mode {args.mode}, lathe {args.lathe}")
    for s in present:
        print(f"  {s:6s} {dirs[s]} ({totals[s]} node tests, {stats[s]['denominator']} use a listed op)")
    for a in absent:
        print(f"  MISSING {a}")
    drift = importer_op_drift()
    if drift:
        print(f"  note: {drift} (edit LISTED_OPS in {os.path.basename(__file__)})")
    header = f"{'source':8s} {'denominator':>11s} {'passed':>7s} {'xfail':>6s} {'unexp.fail':>10s} {'unexp.pass':>10s}"
    print()
    print(header)
    total = dict(denominator=0, passed=0, xfail=0, unexpected_fail=0, unexpected_pass=0)
    for s in present:
        st = stats[s]
        for k in total:
            total[k] += st[k]
        print(f"{s:8s} {st['denominator']:11d} {st['passed']:7d} {st['xfail']:6d} "
              f"{st['unexpected_fail']:10d} {st['unexpected_pass']:10d}")
    print(f"{'total':8s} {total['denominator']:11d} {total['passed']:7d} {total['xfail']:6d} "
          f"{total['unexpected_fail']:10d} {total['unexpected_pass']:10d}")
    print(f"({elapsed:.1f} s, {max(1, args.jobs)} jobs)")

    if args.update:
        new = {k: v for k, v in expected.items() if k.split("/", 1)[0] not in present}  # keep missing sources
        for r in results:
            if not r.passed:
                new[r.test.key] = reason_for(r)
        write_expected(args.expected, new, args.mode)
        review = sorted(k for k, v in new.items() if SUSPICIOUS.search(v))
        if review:
            print(f"\nREVIEW ({len(review)}): these entries look like lathe bugs, not unsupported features")
            for k in review:
                print(f"  {k}  # {new[k]}")
        print(f"\nupdated {args.expected}: {len(new)} entries "
              f"({len(unexpected_fail)} added, {len(unexpected_pass) + len(stale)} removed, "
              f"{len(changed)} reasons refreshed)")
        unexpected_fail, unexpected_pass, stale = [], [], []

    if unexpected_fail:
        print(f"\nUNEXPECTED FAILURES ({len(unexpected_fail)}): fix lathe, or add them to {args.expected} with a reason")
        for r in unexpected_fail:
            print(f"  {r.test.key}: {reason_for(r)}")
            for line in r.detail.strip().splitlines()[:8]:
                print(f"      | {line}")
    if unexpected_pass:
        print(f"\nUNEXPECTED PASSES ({len(unexpected_pass)}): remove them from {args.expected}")
        for r in unexpected_pass:
            print(f"  {r.test.key}: listed as '{expected[r.test.key]}'")
    if stale:
        print(f"\nSTALE ENTRIES ({len(stale)}): listed in {args.expected} but not in the denominator; remove them")
        for k in stale:
            print(f"  {k}")
    if args.verbose and changed and not args.update:
        print(f"\nexpected failures whose reason changed ({len(changed)}; informational, refresh with --update)")
        for r in changed:
            print(f"  {r.test.key}:\n      listed: {expected[r.test.key]}\n      now:    {reason_for(r)}")
    elif changed and not args.update:
        print(f"\n{len(changed)} expected failure(s) now fail with a different message (see --verbose)")

    mismatched = [r for r in results if r.note and r.passed]
    if mismatched:
        print(f"\nRESULT-TYPE MISMATCHES ({len(mismatched)}, --types warn: not counted): imported, but a result "
              f"type differs from the model's declared output")
        for r in mismatched:
            print(f"  {r.test.key}: {r.note}")

    if unexpected_fail or unexpected_pass or stale:
        print("\nFAILED")
        return 1
    if absent:
        return missing("; ".join(absent))
    print("\nOK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
