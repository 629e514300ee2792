"""Download a profile's CPU-variant Python stack into a local wheelhouse, at install time.

tests/ami/test_ami_stack.py executes the rendered 40-python-stack.sh for real, but tests may
not reach the network; so `make install` runs `python -m cfn_chainermn.ami.wheelhouse DIR` and
the test points pip only at DIR (PIP_NO_INDEX, PIP_FIND_LINKS). The files are exactly the
profile's hash-pinned requirements, split as the step installs them (the same ami.context), so
the download cannot drift from what the step asks for. Re-running is cheap: pip keeps files
already in DIR whose hash matches.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from cfn_chainermn.ami.lock import Package
from cfn_chainermn.ami.profiles import Profile

DEFAULT_DIR = Path(__file__).resolve().parents[2] / ".cache" / "ami-wheelhouse"


def default_dir(profile: str) -> Path:
    """current's wheelhouse keeps its old place; another profile's sits beside it (cuda12's
    carries CuPy, 113 MB: the no-version-warning check needs it installed next to Chainer)."""
    return DEFAULT_DIR if profile == "current" else DEFAULT_DIR.with_name(f"ami-wheelhouse-{profile}")

STAMP = ".complete"


def requirement_files(profile: Profile) -> dict[str, tuple[str, bool]]:
    """{file name: (requirements text, sdist only)} for the CPU variant, as the step splits them."""
    from cfn_chainermn.ami.render import RECIPE_DIR, context

    ctx = context(profile, RECIPE_DIR)

    def lines(pkgs: list[Package]) -> str:  # a cpu_variant: its GPU pins are gone unless kept
        return "".join(f"{p.requirement}\n" for p in pkgs)

    out = {"binary.txt": (lines(ctx["pip_packages"] + ctx["build_packages"] + ctx["main_packages"]), False)}
    for pkg in ctx["patched_packages"]:
        out[f"{pkg.name}.txt"] = (f"{pkg.requirement}\n", True)  # the step builds it from its sdist
    return out


def fingerprint(profile: Profile, python: str = sys.executable) -> dict[str, str]:
    """What a wheelhouse was downloaded for: the requirements and the interpreter's tag."""
    texts = "".join(text for text, _ in requirement_files(profile).values())
    tag = subprocess.run([python, "-c", "import sys; print(sys.implementation.cache_tag)"],
                         capture_output=True, text=True, check=True).stdout.strip()
    return {"profile": profile.name, "requirements_sha256": hashlib.sha256(texts.encode()).hexdigest(),
            "python": tag}


def download(profile: Profile, dest: Path, python: str = sys.executable) -> None:
    """`pip download` every pinned file (hash-checked, no dependencies) into dest."""
    dest.mkdir(parents=True, exist_ok=True)
    (dest / ".gitignore").write_text("*\n", encoding="utf-8")  # never committed, wherever it lives
    (dest / STAMP).unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="cfn-chainermn-wheelhouse-") as tmp:
        for name, (text, sdist) in requirement_files(profile).items():
            req = Path(tmp) / name
            req.write_text(text, encoding="utf-8")
            # --no-build-isolation: sdist metadata is read with this interpreter's setuptools, as
            # the step builds them; nothing but the pinned files lands in dest
            cmd = [python, "-m", "pip", "download", "--disable-pip-version-check", "--no-deps",
                   "--require-hashes", "--no-build-isolation", "-d", str(dest), "-r", str(req)]
            if sdist:
                cmd += ["--no-binary", ":all:"]
            subprocess.run(cmd, check=True)
    (dest / STAMP).write_text(json.dumps(fingerprint(profile, python), indent=2) + "\n", encoding="utf-8")


def problem(profile: Profile, dest: Path, python: str = sys.executable) -> str | None:
    """Why dest cannot serve this profile's step (missing, incomplete, stale), or None."""
    fix = f"run `{Path(python).name} -m cfn_chainermn.ami.wheelhouse {dest}` (make install does)"
    stamp = dest / STAMP
    if not stamp.is_file():
        return f"no complete wheelhouse at {dest}; {fix}"
    if json.loads(stamp.read_text(encoding="utf-8")) != fingerprint(profile, python):
        return f"the wheelhouse at {dest} was downloaded for other pins or another Python; {fix}"
    return None


def main(argv: list[str] | None = None) -> int:
    from cfn_chainermn.ami.profiles import load
    from cfn_chainermn.ami.render import RECIPE_DIR, cpu_variant

    ap = argparse.ArgumentParser(prog="python -m cfn_chainermn.ami.wheelhouse", description=__doc__)
    ap.add_argument("dir", nargs="?", type=Path,
                    help=f"default {DEFAULT_DIR} (current), ami-wheelhouse-PROFILE beside it")
    ap.add_argument("--profile", default="current")
    ap.add_argument("--with-gpu", action="store_true",
                    help="keep the GPU pins (CuPy: 113 MB for cuda12) that the CPU variant drops")
    args = ap.parse_args(argv)
    profile = cpu_variant(load(RECIPE_DIR, args.profile), venv="", mpi_prefix="", keep_gpu=args.with_gpu)
    dest = args.dir or default_dir(args.profile)
    download(profile, dest)
    files = sum(1 for p in dest.iterdir() if not p.name.startswith("."))
    print(f"wheelhouse {dest}: {files} files for profile {profile.name}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
