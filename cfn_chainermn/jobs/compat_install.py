"""Install the communicator shim (chainermn_compat.py) into the environment that holds Chainer.

Two files go into that environment's site-packages: the shim as the top-level module
`cfnmn_chainermn_compat`, and a .pth file whose one `import` line site.py runs at every start-up
(https://docs.python.org/3/library/site.html: "Lines starting with import ... are executed").
That line only puts a finder on sys.meta_path; chainermn is wrapped when it is imported.

The same two files are written by every installer, from `files()`: `make install` for the local
cluster's venv (`python -m cfn_chainermn.jobs.compat_install`), the AMI recipe's Python-stack
step (rendered into 40-python-stack.sh) and the node agent's boot-time stack install.
"""

from __future__ import annotations

import argparse
import os
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


def site_packages() -> Path:
    """Where pip would put a pure-Python package for this interpreter (a venv's own site-packages)."""
    return Path(sysconfig.get_paths()["purelib"])


def install(site_dir: Path, *, byte_compile: bool = False) -> list[Path]:
    """Write both files, each replaced in one step (a file or link already there is replaced, not
    followed); returns what was written. `byte_compile` (only when this interpreter is the
    environment's): write the module's .pyc too, else a start-up with PYTHONDONTWRITEBYTECODE
    compiles it every time (~3 ms instead of ~0.3 ms)."""
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
    if byte_compile:
        import py_compile

        py_compile.compile(str(site_dir / f"{MODULE}.py"), doraise=True)
    return written


def main(argv: list[str] | None = None) -> int:
    """`python -m cfn_chainermn.jobs.compat_install [SITE_DIR]` (make install runs it)."""
    ap = argparse.ArgumentParser(prog="python -m cfn_chainermn.jobs.compat_install", description=__doc__)
    ap.add_argument("site_dir", nargs="?", type=Path, default=None,
                    help="the site-packages of the environment that has Chainer (default: this interpreter's)")
    args = ap.parse_args(argv)
    target: Path = args.site_dir or site_packages()
    if not target.is_dir():
        print(f"error: SITE_DIR {target} is not a folder; give the site-packages of the environment "
              "that has Chainer", file=sys.stderr)
        return 2
    for path in install(target, byte_compile=args.site_dir is None):
        print(f"installed {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
