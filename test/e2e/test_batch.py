"""`lathe batch`: many models with -j workers, each in its own process; one
bad model never stops the others; up-to-date outputs are skipped; the run
exits non-zero when any model failed and prints a summary table."""
import glob
import json
import os
import tempfile
import time

from lathe_test_util import Checker, parse_args, run


def main():
    args = parse_args()
    c = Checker()
    good = sorted(glob.glob(os.path.join(args.models, "generated", "*", "*.opset14.onnx")))
    bad = os.path.join(args.models, "unsupported", "mixed_unsupported.opset17.onnx")
    with tempfile.TemporaryDirectory() as tmp:
        entries = [{"input": g, "output": os.path.join(tmp, os.path.basename(g) + ".mlirbc"),
                    "options": ["--compile-to=simplify"]} for g in good]
        entries.insert(1, {"input": bad, "output": os.path.join(tmp, "bad.mlirbc")})
        entries.append({"input": os.path.join(tmp, "missing.onnx"), "output": os.path.join(tmp, "missing.mlir")})
        manifest = os.path.join(tmp, "manifest.json")
        json.dump({"models": entries}, open(manifest, "w"))
        rc, out, err = run([args.lathe, "batch", manifest, "-j", "2"])
        print(out, err)
        c.expect(rc == 1, f"batch with failing models exited {rc}, expected 1")
        for g in good:
            c.expect(os.path.exists(os.path.join(tmp, os.path.basename(g) + ".mlirbc")), f"{g} not compiled")
        c.expect(f"{len(entries)} models: {len(good)} compiled, 0 up to date, 2 failed" in out, "summary line")
        c.expect("cannot be imported" in out and "no such file" in out, "failure reasons missing from the table")
        c.expect(not os.path.exists(os.path.join(tmp, "bad.mlirbc")), "failed model left an output")
        # Second run: the good outputs are up to date; touching an input recompiles it.
        time.sleep(0.05)
        os.utime(good[0])
        rc, out, err = run([args.lathe, "batch", manifest, "-j", "2"])
        c.expect(f"{len(entries)} models: 1 compiled, {len(good) - 1} up to date, 2 failed" in out,
                 f"rerun summary: {out.strip().splitlines()[-1] if out.strip() else err}")
        # Only good models: exit 0.
        json.dump(entries[:1], open(manifest, "w"))
        rc, out, err = run([args.lathe, "batch", manifest, "--force"])
        c.expect(rc == 0 and "1 compiled" in out, f"all-good batch: rc={rc} {out}")
        # A bad manifest is a clear error.
        open(manifest, "w").write("[{\"input\": 3}]")
        rc, out, err = run([args.lathe, "batch", manifest])
        c.expect(rc == 1 and "needs string fields" in err, f"bad manifest: rc={rc} {err}")
    c.finish()


if __name__ == "__main__":
    main()
