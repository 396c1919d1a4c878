"""The device plugin on any machine: `--device cuda` without the plugin (hidden
with LATHE_CUDA_PLUGIN) or without a GPU is a one-line error and a non-zero
exit, never a crash or a partial output; `lathe inspect` says which layers
have a CUDA kernel from the plugin alone. With a GPU, run's outputs match the
CPU's. A build without the CUDA backend fails this test under CI=true."""
import argparse
import glob
import os
import subprocess
import sys
import tempfile

import numpy as np

from lathe_test_util import Checker, models_or_skip, run


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lathe", required=True)
    ap.add_argument("--models", required=True)
    ap.add_argument("--cuda-built", choices=["ON", "OFF"], required=True)
    ap.add_argument("--plugin", default="")
    ap.add_argument("--fake-plugin", required=True, help="liblathe-fake-cuda.so (test/unit/FakeDevicePlugin.cpp)")
    ap.add_argument("--check", required=True, help="lathe-device-check")
    ap.add_argument("--cuda-bench", default="", help="lathe-cuda-bench (built with the plugin)")
    args = ap.parse_args()
    models_or_skip(args.models)
    lathe = args.lathe
    c = Checker()
    if args.cuda_built != "ON":
        msg = "the CUDA backend was not built (nvcc not found at configure time)"
        if os.environ.get("CI", "").lower() == "true":
            print(f"FAIL (CI=true): {msg}")
            sys.exit(1)
        print(f"note: {msg}; checking the no-plugin paths only")
    else:
        c.expect(os.path.exists(args.plugin), f"the plugin {args.plugin} was not built")
    model = glob.glob(os.path.join(args.models, "generated", "bert-tiny", "*.opset17.onnx"))[0]
    ref = os.path.join(os.path.dirname(model), "b2_s16")
    inputs = []
    for f in sorted(glob.glob(os.path.join(ref, "inputs", "*.npy"))):
        inputs += ["--input", f"{os.path.basename(f)[:-4]}={f}"]
    hidden = dict(os.environ, LATHE_CUDA_PLUGIN="/nonexistent/liblathe-cuda.so")
    with tempfile.TemporaryDirectory() as tmp:
        art = os.path.join(tmp, "m.lathe")
        rc, _, err = run([lathe, "compile", model, "-o", art])
        c.expect(rc == 0, f"compile: {err}")

        # CPU reference outputs.
        rc, _, err = run([lathe, "run", art, *inputs, "--output-dir", os.path.join(tmp, "cpu")])
        c.expect(rc == 0, f"cpu run: {err}")

        # The plugin hidden: run, bench, inspect.
        for cmd in (["run", art, *inputs, "--output-dir", os.path.join(tmp, "hidden")],
                    ["bench", art, "--seq", "8", "--iterations", "1"]):
            p = subprocess.run([lathe, *cmd, "--device", "cuda"], capture_output=True, text=True, env=hidden)
            lines = [l for l in p.stderr.splitlines() if l.strip()]
            c.expect(p.returncode == 1, f"{cmd[0]} --device cuda without the plugin: rc={p.returncode} {p.stderr}")
            c.expect(len(lines) == 1 and "liblathe-cuda.so" in lines[0] and "/nonexistent/" in lines[0],
                     f"{cmd[0]}: expected one line naming the plugin, got {p.stderr!r}")
        c.expect(not os.path.exists(os.path.join(tmp, "hidden")) or not os.listdir(os.path.join(tmp, "hidden")),
                 "a failed device run wrote outputs")
        p = subprocess.run([lathe, "inspect", art], capture_output=True, text=True, env=hidden)
        c.expect(p.returncode == 0 and "cuda              unavailable:" in p.stdout, f"inspect without plugin: {p.stdout[-400:]} {p.stderr}")

        # Bad device names.
        for device, needle in (("tpu", "unknown device 'tpu'"), ("cuda:x", "cuda:N"), ("cuda:", "cuda:N")):
            rc, _, err = run([lathe, "run", art, *inputs, "--output-dir", os.path.join(tmp, "bad"), "--device", device])
            c.expect(rc == 1 and needle in err and len(err.strip().splitlines()) == 1, f"--device {device}: rc={rc} {err!r}")

        # The runtime's device path through the stand-in plugin: device memory
        # the host cannot dereference, some ops on the host (the fallback),
        # taps, and incremental decoding with the KV cache on the "device".
        # The stand-in runs the CPU kernel table on its "device" memory, without the
        # session's oneDNN-packed weights: with Lathe's own GEMM on both sides the
        # two must agree bit for bit (--rtol 0).
        fake = dict(os.environ, LATHE_CUDA_PLUGIN=args.fake_plugin, LATHE_FAKE_HOST_OPS="gelu,softmax", LATHE_GEMM="own")
        p = subprocess.run([args.check, art, "--shapes", "1x7,2x16,3x33", "--reps", "1", "--rtol", "0"],
                           capture_output=True, text=True, env=fake)
        c.expect(p.returncode == 0 and "PASS" in p.stdout, f"fake device vs cpu: {p.stdout[-1500:]} {p.stderr}")
        c.expect("on the host: gelu" in p.stdout, f"fallback not reported: {p.stdout[:600]}")
        dump = os.path.join(tmp, "fakedump")
        p = subprocess.run([lathe, "run", art, *inputs, "--output-dir", dump, "--device", "cuda", "--dump", "/encoder/layer.0/*"],
                           capture_output=True, text=True, env=fake)
        c.expect(p.returncode == 0, f"run --dump on the fake device: {p.stderr}")
        cpu_dump = os.path.join(tmp, "cpudump")
        subprocess.run([lathe, "run", art, *inputs, "--output-dir", cpu_dump, "--dump", "/encoder/layer.0/*"],
                       capture_output=True, text=True, env=dict(os.environ, LATHE_GEMM="own"))
        files = sorted(os.listdir(cpu_dump))
        c.expect(len(files) > 4 and files == sorted(os.listdir(dump)), f"dumped files differ: {files} vs {os.listdir(dump)}")
        for f in files:
            c.expect(np.array_equal(np.load(os.path.join(cpu_dump, f)), np.load(os.path.join(dump, f))), f"tap {f} differs on the device")
        smol = os.path.join(args.models, "real", "smollm2-135m-instruct", "smollm2-135m-instruct-q4_1.gguf")
        sart = os.path.join(tmp, "smol.lathe")
        rc, _, err = run([lathe, "compile", smol, "-o", sart], timeout=900)
        c.expect(rc == 0, f"compile smollm2: {err[-800:]}")
        for hosted in ("rms_norm,mul", ""):
            env = dict(fake, LATHE_FAKE_HOST_OPS=hosted)
            p = subprocess.run([args.check, sart, "--shapes", "1x5,2x9", "--reps", "1", "--rtol", "0", "--decode", "6", "--prompt", "5"],
                               capture_output=True, text=True, env=env, timeout=900)
            c.expect(p.returncode == 0 and "greedy agreement 7/7" in p.stdout,
                     f"smollm2 decode on the fake device (host ops '{hosted}'): {p.stdout[-1200:]} {p.stderr}")
        p = subprocess.run([args.check, sart, "--shapes", "1x5", "--decode", "2"], capture_output=True, text=True,
                           env=dict(fake, LATHE_FAKE_HOST_OPS="attention"))
        c.expect(p.returncode == 1 and "cannot decode on" in p.stderr, f"decoding with attention on the host: {p.stderr}")
        # Carried references (scripts/gpu/carry.py): the device against another machine's CPU outputs.
        carry = os.path.join(tmp, "carry")
        repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        p = subprocess.run([sys.executable, os.path.join(repo, "scripts", "gpu", "carry.py"), "--out", carry, "--lathe", lathe,
                            "--models", args.models, "--only", "bert-tiny-int8,llama-tiny-fp32"], capture_output=True, text=True)
        c.expect(p.returncode == 0 and "2 models" in p.stdout, f"carry.py: {p.stdout[-800:]} {p.stderr[-800:]}")
        manifest = {}
        if p.returncode == 0:
            import json
            manifest = {m["name"]: m for m in json.load(open(os.path.join(carry, "manifest.json")))["models"]}
            c.expect(manifest.get("llama-tiny-fp32", {}).get("decoder") is True and manifest["bert-tiny-int8"]["decoder"] is False,
                     f"decoder flags in the manifest: {manifest}")
            for name, m in manifest.items():
                cmd = [args.check, os.path.join(carry, m["artifact"]), "--reference", os.path.join(carry, name), "--reps", "1",
                       "--rtol", "1e-5"] + (["--decode", "4", "--prompt", "3"] if m["decoder"] else [])
                p = subprocess.run(cmd, capture_output=True, text=True, env=fake)
                rows = [l for l in p.stdout.splitlines() if l.split()[-1:] == ["yes"]]
                c.expect(p.returncode == 0 and "PASS" in p.stdout and len(rows) >= 2 * len(m["cases"]),
                         f"{name} against its carried outputs: {p.stdout[-1500:]} {p.stderr}")
            # A carried output that is off, or missing, fails the check.
            case = os.path.join(carry, "bert-tiny-int8", manifest["bert-tiny-int8"]["cases"][0], "outputs")
            out = sorted(glob.glob(os.path.join(case, "*.npy")))[0]
            np.save(out, np.load(out) * np.float32(1.01))
            p = subprocess.run([args.check, os.path.join(carry, "bert-tiny-int8.lathe"), "--reference", os.path.join(carry, "bert-tiny-int8"),
                                "--reps", "1", "--rtol", "1e-3"], capture_output=True, text=True, env=fake)
            c.expect(p.returncode == 1 and "FAIL" in p.stdout and " NO" in p.stdout, f"an output 1 % off: rc={p.returncode} {p.stdout[-800:]}")
            os.remove(out)
            p = subprocess.run([args.check, os.path.join(carry, "bert-tiny-int8.lathe"), "--reference", os.path.join(carry, "bert-tiny-int8"),
                                "--reps", "1"], capture_output=True, text=True, env=fake)
            c.expect(p.returncode == 2 and os.path.basename(out) in p.stderr, f"a missing output: rc={p.returncode} {p.stderr}")
        p = subprocess.run([args.check, art], capture_output=True, text=True, env=dict(fake, LATHE_FAKE_NO_DEVICE="1"))
        c.expect(p.returncode == 77 and "SKIP(no-gpu)" in p.stdout, f"no device: rc={p.returncode} {p.stdout} {p.stderr}")

        if args.cuda_built == "ON":
            # The GEMV bandwidth bench: a skip line without a GPU, its own correctness check with one.
            c.expect(os.path.exists(args.cuda_bench), f"{args.cuda_bench} was not built")
            if os.path.exists(args.cuda_bench):
                p = subprocess.run([args.cuda_bench, "--formats", "int4-g32", "--iterations", "2"], capture_output=True, text=True)
                c.expect((p.returncode == 77 and p.stdout.startswith("SKIP(no-gpu)") and len(p.stdout.strip().splitlines()) == 1)
                         or (p.returncode == 0 and "PASS" in p.stdout), f"lathe-cuda-bench: rc={p.returncode} {p.stdout[-800:]} {p.stderr}")
                p = subprocess.run([args.cuda_bench, "--formats", "int5"], capture_output=True, text=True)
                c.expect(p.returncode == 2 and "unknown format 'int5'" in p.stderr, f"lathe-cuda-bench bad format: {p.stderr}")
            # A bad LATHE_CUDA_GEMM is one line naming it, with a GPU or without.
            p = subprocess.run([lathe, "run", art, *inputs, "--output-dir", os.path.join(tmp, "badgemm"), "--device", "cuda"],
                               capture_output=True, text=True, env=dict(os.environ, LATHE_CUDA_GEMM="fast"))
            c.expect(p.returncode == 1 and "LATHE_CUDA_GEMM is 'fast'" in p.stderr and len(p.stderr.strip().splitlines()) == 1,
                     f"LATHE_CUDA_GEMM=fast: rc={p.returncode} {p.stderr!r}")
            # inspect reads the plugin's kernel table: no device needed.
            rc, out, err = run([lathe, "inspect", art])
            c.expect(rc == 0 and "have a CUDA kernel" in out, f"inspect with the plugin: {out[-600:]} {err}")
            table = [l for l in out.splitlines() if l.startswith("/encoder/layer.0/attention/self/query")]
            c.expect(table and table[0].rstrip().endswith(("yes", "host")), f"inspect's cuda column: {table}")
            # A run on the device: the GPU's outputs, or a one-line reason there is none.
            gpu = os.path.join(tmp, "gpu")
            rc, _, err = run([lathe, "run", art, *inputs, "--output-dir", gpu, "--device", "cuda"])
            if rc == 0:
                for f in sorted(glob.glob(os.path.join(tmp, "cpu", "*.npy"))):
                    a, b = np.load(f), np.load(os.path.join(gpu, os.path.basename(f)))
                    err_rel = float(np.abs(a - b).max() / max(np.abs(a).max(), 1e-6))
                    c.expect(err_rel < 1e-3, f"{os.path.basename(f)}: cuda vs cpu max rel {err_rel:.3g}")
                print("ran on the GPU")
            else:
                lines = [l for l in err.splitlines() if l.strip()]
                c.expect(len(lines) == 1 and ("no usable CUDA device" in err or "no CUDA device" in err),
                         f"run --device cuda without a GPU: expected one line, got {err!r}")
                print(f"no GPU here: {lines[0] if lines else ''}")
    c.finish()


if __name__ == "__main__":
    main()
