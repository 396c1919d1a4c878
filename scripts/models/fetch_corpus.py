#!/usr/bin/env python3
"""The English evaluation and calibration text: Jane Austen's six novels from Debian's
`r-cran-janeaustenr` package (version 1.0.0-1, Project Gutenberg texts, public domain).

  fetch_corpus.py --out build/models      ->  build/models/corpus/austen/<novel>.txt + info.json

The .deb is fetched with `apt-get download` (Debian's registry; no root needed), checked against
its pinned sha256 and unpacked with dpkg-deb; the novels are read from the R lazy-load database
(data/Rdata.rdx index + data/Rdata.rdb zlib chunks of R's XDR serialization: one character vector
of lines per novel), decoded here with the standard library only, and written as UTF-8 text with
one "\n" per line.

Splits (disjoint novels):
  eval         prideprejudice.txt        perplexity (`lathe eval --text`), never used for calibration
  calibration  emma.txt                  the default calibration text for #6-#9
  calib_sets   mansfieldpark.txt, persuasion.txt, sensesensibility.txt
               three disjoint calibration sets for spread measurements (#7)
  spare        northangerabbey.txt
"""
from __future__ import annotations

import argparse
import glob
import gzip
import hashlib
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

PACKAGE = "r-cran-janeaustenr"
VERSION = "1.0.0-1"
DEB = f"{PACKAGE}_{VERSION}_all.deb"
DEB_SHA256 = "df6bddf211906d1ff404f8ff662c21b34e6660e7f54a311084e749050c019c95"
NOVELS = ["emma", "mansfieldpark", "northangerabbey", "persuasion", "prideprejudice", "sensesensibility"]
SPLITS = {"eval": ["prideprejudice"], "calibration": ["emma"],
          "calib_sets": ["mansfieldpark", "persuasion", "sensesensibility"], "spare": ["northangerabbey"]}


def fetch_deb(cache: str) -> str:
    os.makedirs(cache, exist_ok=True)
    path = os.path.join(cache, DEB)
    if os.path.exists(path) and common.sha256_file(path) == DEB_SHA256:
        return path
    with tempfile.TemporaryDirectory() as tmp:
        r = subprocess.run(["apt-get", "download", f"{PACKAGE}={VERSION}"], cwd=tmp,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        got = glob.glob(os.path.join(tmp, f"{PACKAGE}_*.deb"))
        if r.returncode != 0 or not got:
            common.die(f"apt-get download {PACKAGE}={VERSION} failed (is Debian's apt registry reachable and "
                       f"`apt-get update` done?):\n{r.stdout}")
        digest = common.sha256_file(got[0])
        if digest != DEB_SHA256:
            common.die(f"{os.path.basename(got[0])}: sha256 {digest}, expected {DEB_SHA256}")
        shutil.move(got[0], path)
    return path


class RReader:
    """Just enough of R's XDR serialization (format 2/3) for the objects this package stores."""

    def __init__(self, data: bytes):
        if data[:2] != b"X\n":
            raise ValueError("not an XDR R serialization")
        self.d, self.p, self.refs = data, 2, []
        version = self.int()
        self.p += 8  # writer and minimum reader versions
        if version == 3:
            n = self.int()  # native encoding name
            self.p += n

    def int(self) -> int:
        v = struct.unpack(">i", self.d[self.p:self.p + 4])[0]
        self.p += 4
        return v

    def item(self):
        flags = self.int()
        kind, has_attr, has_tag = flags & 0xFF, flags & 0x200, flags & 0x400
        if kind == 254:  # NILVALUE_SXP
            return None
        if kind == 9:  # CHARSXP
            n = self.int()
            if n < 0:
                return None
            s = self.d[self.p:self.p + n].decode("utf-8")
            self.p += n
            return s
        if kind == 1:  # SYMSXP: later occurrences are REFSXPs into this table
            sym = ("sym", self.item())
            self.refs.append(sym)
            return sym
        if kind == 255:  # REFSXP: index packed in the flags, or in the next int when it does not fit
            index = flags >> 8 or self.int()
            return self.refs[index - 1]
        if kind in (16, 19):  # STRSXP, VECSXP
            n = self.int()
            out = [self.item() for _ in range(n)]
        elif kind in (13, 10):  # INTSXP, LGLSXP
            n = self.int()
            out = list(struct.unpack(f">{n}i", self.d[self.p:self.p + 4 * n]))
            self.p += 4 * n
        elif kind == 2:  # LISTSXP (pairlist): attributes, tags, car, cdr
            attrs = self.item() if has_attr else None
            tag = self.item() if has_tag else None
            car = self.item()
            cdr = self.item()
            return ("pair", tag, car, cdr, attrs)
        else:
            raise ValueError(f"unsupported R object type {kind}")
        attrs = self.item() if has_attr else None
        return ("vec", out, attrs)


def pairlist(p) -> dict:
    out = {}
    while p is not None:
        _, tag, car, cdr, _ = p
        out[tag[1]] = car
        p = cdr
    return out


def read_novels(root: str) -> dict[str, list[str]]:
    data = os.path.join(root, "usr/lib/R/site-library/janeaustenr/data")
    index = RReader(gzip.decompress(open(os.path.join(data, "Rdata.rdx"), "rb").read())).item()
    entries = dict(zip(pairlist(index[2])["names"][1], index[1]))  # list(variables=, references=, compressed=)
    variables = entries["variables"]
    names, offsets = variables[2] and pairlist(variables[2])["names"][1], variables[1]
    rdb = open(os.path.join(data, "Rdata.rdb"), "rb").read()
    novels = {}
    for name, (_, (offset, length), _) in zip(names, offsets):
        chunk = rdb[offset:offset + length]
        size = struct.unpack(">I", chunk[:4])[0]
        raw = zlib.decompress(chunk[4:])
        if len(raw) != size:
            raise ValueError(f"{name}: chunk decompressed to {len(raw)} bytes, expected {size}")
        kind, lines, _ = RReader(raw).item()
        novels[name] = ["" if line is None else line for line in lines]
    return novels


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    cache = os.environ.get("LATHE_MODEL_CACHE", os.path.join(args.out, "..", "model-cache"))
    deb = fetch_deb(cache)
    out_dir = os.path.join(args.out, "corpus", "austen")
    os.makedirs(out_dir, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["dpkg-deb", "-x", deb, tmp], check=True)
        novels = read_novels(tmp)
    if sorted(novels) != NOVELS:
        common.die(f"{DEB}: expected novels {NOVELS}, found {sorted(novels)}")
    files = []
    for name in NOVELS:
        text = "\n".join(novels[name]) + "\n"
        path = os.path.join(out_dir, f"{name}.txt")
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        split = next(s for s, members in SPLITS.items() if name in members)
        files.append({"path": f"austen/{name}.txt", "format": "text", "split": split, "bytes": len(text.encode()),
                      "lines": len(novels[name]),
                      "sha256": hashlib.sha256(text.encode()).hexdigest()})
        print(f"  {name:18s} {split:12s} {len(text.encode()):8d} bytes")
    common.write_info(os.path.join(args.out, "corpus"),
                      {"kind": "corpus", "name": "austen", "files": files, "splits": SPLITS,
                       "source": {"debian_package": PACKAGE, "version": VERSION, "deb_sha256": DEB_SHA256,
                                  "license": "public domain texts (Project Gutenberg); package MIT"}})


if __name__ == "__main__":
    main()
