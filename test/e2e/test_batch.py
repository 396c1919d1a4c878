"""`lathe batch`: many models with -j workers, each in its own process; one
bad model never stops the others; up-to-date outputs are skipped; the run
exits non-zero when any model failed and prints a summary table."""
import glob
import json
import os
import signal
import subprocess
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
        # A model whose process dies (killed by a signal, as the OOM killer or a crash would) is
        # reported as crashed; the others still compile and nothing partial is left. The input is
        # a FIFO, so that child blocks reading it until the test kills it.
        fifo = os.path.join(tmp, "stuck.onnx")
        os.mkfifo(fifo)
        crash_entries = [{"input": fifo, "output": os.path.join(tmp, "stuck.lathe")},
                         {"input": good[0], "output": os.path.join(tmp, "after-crash.mlirbc"),
                          "options": ["--compile-to=simplify"]}]
        json.dump(crash_entries, open(manifest, "w"))
        proc = subprocess.Popen([args.lathe, "batch", manifest, "-j", "2", "--force"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        victim = None
        for _ in range(200):
            victim = next((pid for pid in os.listdir("/proc") if pid.isdigit() and
                           fifo.encode() in open(f"/proc/{pid}/cmdline", "rb").read() and
                           b"compile" in open(f"/proc/{pid}/cmdline", "rb").read()), None) \
                if proc.poll() is None else None
            if victim:
                break
            time.sleep(0.05)
        c.expect(victim is not None, "the batch child compiling the FIFO was not found")
        if victim:
            os.kill(int(victim), signal.SIGKILL)
        out, err = proc.communicate(timeout=300)
        print(out, err)
        c.expect(proc.returncode == 1, f"batch with a killed child exited {proc.returncode}, expected 1")
        c.expect("crashed (signal 9)" in out, "the killed child is not reported as crashed (signal 9)")
        c.expect("2 models: 1 compiled, 0 up to date, 1 failed" in out, "summary after a crash")
        c.expect(os.path.exists(crash_entries[1]["output"]), "the model after the crash was not compiled")
        c.expect(not os.path.exists(crash_entries[0]["output"]), "the killed model left an output")
        # A bad manifest is a clear error.
        open(manifest, "w").write("[{\"input\": 3}]")
        rc, out, err = run([args.lathe, "batch", manifest])
        c.expect(rc == 1 and "needs string fields" in err, f"bad manifest: rc={rc} {err}")
    c.finish()


if __name__ == "__main__":
    main()
