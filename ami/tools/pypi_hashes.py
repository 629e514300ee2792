#!/usr/bin/env python3
"""Print the sha256 of every PyPI file a profile pin can resolve to, as profile YAML.

Maintainer helper for ami/profiles/*.yaml: the hashes come from PyPI's JSON API (never typed
by hand). Only files pip could pick for the given CPython tags on x86_64 Linux are listed:
the sdist, pure wheels and manylinux wheels for those tags.

usage: pypi_hashes.py --py cp38 --py cp311 numpy==1.24.4 chainer==7.8.1 ...
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import urllib.request

WHEEL = re.compile(r"^(?P<name>.+?)-(?P<ver>[^-]+)(-\d[^-]*)?-(?P<py>[^-]+)-(?P<abi>[^-]+)-(?P<plat>[^-]+)\.whl$")


def wanted(filename: str, pys: list[str]) -> bool:
    m = WHEEL.match(filename)
    if m is None:
        return filename.endswith((".tar.gz", ".zip", ".tar.bz2"))
    plat, py, abi = m["plat"], m["py"].split("."), m["abi"]
    if plat != "any" and not ("linux" in plat and "x86_64" in plat):
        return False
    if any(t in ("py3", "py2", "py2.py3") for t in py) or m["py"] == "py2.py3":
        return True
    if abi == "abi3":
        return any(p.startswith("cp3") and int(p[3:]) >= int(t[3:]) for t in py for p in pys)
    return any(p in py for p in pys)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--py", action="append", required=True, help="CPython tag, e.g. cp38")
    ap.add_argument("pins", nargs="+", help="name==version")
    a = ap.parse_args()
    for pin in a.pins:
        name, version = pin.split("==")
        with urllib.request.urlopen(f"https://pypi.org/pypi/{name}/json") as resp:
            data = json.load(resp)
        files = [f for f in data["releases"].get(version, []) if wanted(f["filename"], a.py)]
        if not files:
            print(f"# {pin}: no file for {a.py}", file=sys.stderr)
            return 1
        print(f"  - {{name: {name}, version: \"{version}\", sha256: [")
        for f in sorted(files, key=lambda f: f["filename"]):
            print(f"      {f['digests']['sha256']},  # {f['filename']}")
        print("    ]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
