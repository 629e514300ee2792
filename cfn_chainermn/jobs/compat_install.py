"""Install the communicator shim (chainermn_compat.py) into the environment that holds Chainer.

Two files go into that environment's site-packages: the shim as the top-level module
`cfnmn_chainermn_compat`, and a .pth file whose one `import` line site.py runs at every start-up
(https://docs.python.org/3/library/site.html: lines starting with `import` followed by a space or
tab are executed).
That line only puts a finder on sys.meta_path; chainermn is wrapped when it is imported.

The same two files are written by every installer, from `files()`: `make install` for the local
cluster's venv (`python -m cfn_chainermn.jobs.compat_install`), the node agent's boot-time stack
install (`install_into(VENV_PYTHON)`) and the AMI recipe's Python-stack step (rendered into
40-python-stack.sh).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

MODULE = "cfnmn_chainermn_compat"
PTH = "cfnmn-chainermn-compat.pth"
SOURCE = Path(__file__).with_name("chainermn_compat.py")


def files() -> dict[str, str]:
    """File name -> text, for site-packages."""
    return {f"{MODULE}.py": SOURCE.read_text(encoding="utf-8"),
            PTH: f"import {MODULE}; {MODULE}.install()\n"}


def site_packages(python: str = sys.executable) -> Path:
    """Where pip puts a pure-Python package for `python` (a venv's own site-packages); -I: the
    caller's PYTHONPATH/PYTHONHOME must not move it."""
    if python == sys.executable:
        return Path(sysconfig.get_paths()["purelib"])
    code = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    out = subprocess.run([python, "-I", "-c", code], capture_output=True, text=True, check=True).stdout
    return Path(out.strip())


def install(site_dir: Path) -> list[Path]:
    """Write both files, each replaced in one step (a file or link already there is replaced, not
    followed); returns what was written."""
    written = []
    for name, text in files().items():
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=site_dir)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
            os.chmod(tmp, 0o644)
            os.replace(tmp, site_dir / name)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        written.append(site_dir / name)
    return written


def install_into(python: str = sys.executable) -> list[Path]:
    """Into `python`'s environment (the node agent's boot install: the Chainer venv is not the
    agent's), byte-compiled by that interpreter: else, where PYTHONDONTWRITEBYTECODE is set, every
    start-up compiles the module again (~3 ms instead of ~0.3 ms). Raises OSError or
    subprocess.CalledProcessError."""
    site = site_packages(python)
    written = install(site)
    subprocess.run([python, "-I", "-m", "py_compile", str(site / f"{MODULE}.py")], capture_output=True, text=True,
                   check=True)
    return written


def _refuse(python: str, why: str) -> int:
    print(f"error: --python {python}: cannot install into its site-packages ({why}); give the interpreter "
          "of the environment that has Chainer, run by a user who may write there", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    """`python -m cfn_chainermn.jobs.compat_install [--python PY]` (make install runs it)."""
    ap = argparse.ArgumentParser(prog="python -m cfn_chainermn.jobs.compat_install", description=__doc__)
    ap.add_argument("--python", default=sys.executable,
                    help="the interpreter of the environment that has Chainer (default: this one)")
    args = ap.parse_args(argv)
    try:
        written = install_into(args.python)
    except subprocess.CalledProcessError as exc:
        return _refuse(args.python, ((exc.stderr or "").strip().splitlines() or [f"exit {exc.returncode}"])[-1])
    except OSError as exc:
        return _refuse(args.python, exc.strerror or str(exc))
    for path in written:
        print(f"installed {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
