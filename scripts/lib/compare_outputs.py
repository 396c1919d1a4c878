#!/usr/bin/env python3
"""Compares `lathe run` outputs with reference .npy files:
prints max |diff| per output and fails if |lathe - ref| > 1e-4 + 1e-4 |ref|."""
import glob
import os
import sys

import numpy as np


def main():
    ref_dir, out_dir = sys.argv[1], sys.argv[2]
    ok = True
    for ref_file in sorted(glob.glob(os.path.join(ref_dir, "*.npy"))):
        name = os.path.basename(ref_file)
        ref, got = np.load(ref_file), np.load(os.path.join(out_dir, name))
        diff = np.abs(got.astype(np.float64) - ref)
        within = bool(np.all(diff <= 1e-4 + 1e-4 * np.abs(ref)))
        ok &= within and got.shape == ref.shape
        print(f"  {name[:-4]:<20} shape {tuple(got.shape)}  max |lathe - torch| = {diff.max():.2e}  "
              f"{'ok' if within else 'EXCEEDS 1e-4 + 1e-4|ref|'}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
