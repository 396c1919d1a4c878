"""Shared helpers of the acceptance and benchmark scripts (stdlib only)."""
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def sh(cmd):
    """Runs cmd; exits with its stderr when it fails."""
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stderr[-3000:]}")
    return p


def commit():
    return subprocess.run(["git", "-C", ROOT, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()


def lathe_generate(lathe, artifact, prompt_len, new_tokens, threads):
    """(prefill tokens/s, decode tokens/s or None) of one `lathe generate` run on synthetic ids."""
    ids = ",".join(str(100 + (7 * i) % 40000) for i in range(prompt_len))
    p = sh([lathe, "generate", artifact, "--prompt-ids", ids, "--max-new-tokens", str(new_tokens), "--ignore-eos",
            "--quiet", "--threads", str(threads)])
    pre = re.search(r"prefill\s+(\d+) tokens in ([\d.]+) s", p.stderr)
    dec = re.search(r"decode\s+(\d+) tokens in ([\d.]+) s", p.stderr)
    return (int(pre.group(1)) / float(pre.group(2)),
            int(dec.group(1)) / float(dec.group(2)) if dec else None)
