"""The pip half of the Chainer stack install (node/chainer_stack.py drives it).

The master makes a wheelhouse: the lock's build stage (pip, setuptools, wheel, Cython, numpy)
into a fresh venv, then every pin downloaded with --require-hashes (from PyPI, or a local
wheelhouse with --no-index), and each sdist among them (chainer, mpi4py against the image's
mpicc, gym, chainerrl, chainercv with its NMS extension rebuilt from .pyx) built into a wheel
once. Every node then installs that wheelhouse with --no-index --require-hashes, the hashes
being the master's manifest, so no node builds twice and none installs what it did not check.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from cfn_chainermn.ami.lock import LOCK_DIR, Package, sha256_file
from cfn_chainermn.errors import AgentError

PIP = ["-m", "pip", "--disable-pip-version-check", "--no-input"]
WHEEL_NAME = re.compile(r"^(?P<name>[^-]+)-(?P<version>[^-]+)(-\d[^-]*)?-[^-]+-[^-]+-[^-]+\.whl$")
NMS_PYX = LOCK_DIR / "_nms_gpu_post.pyx"  # ChainerCV's NMS helper, rebuilt from source (py >= 3.11)
NMS_MODULE = "chainercv/utils/bbox/_nms_gpu_post"


@dataclass
class Host:
    """What the platform says about this machine's stack install."""

    prefix: Path  # the venv (/opt/chainer on AWS)
    python: str  # the interpreter that makes it
    mpicc: str  # mpi4py is compiled with it (the image's Open MPI)
    gpu: bool  # CuPy and the CUDA/NCCL setup run; a local node says False
    find_links: str = ""  # "": PyPI; else a folder of the pinned files, used with --no-index
    timings: list[tuple[str, float]] = field(default_factory=list)

    @property
    def venv_python(self) -> str:
        return str(self.prefix / "bin" / "python")

    def run(self, what: str, argv: list[str], *, cwd: Path | None = None) -> None:
        """Run one command; its time is kept for the step's detail; a failure names the command."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
        env["MPICC"] = self.mpicc
        start = time.monotonic()
        proc = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=cwd, check=False)
        self.timings.append((what, time.monotonic() - start))
        if proc.returncode != 0:
            tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
            raise AgentError(f"{what}: `{shlex.join(argv[:6])} ...` exited {proc.returncode}: {tail}")

    def pip(self, what: str, *args: str) -> None:
        source = ["--no-index", "--find-links", self.find_links] if self.find_links else []
        self.run(what, [self.venv_python, *PIP, *args[:1], *source, *args[1:]])


def requirements(packages: list[Package]) -> str:
    return "".join(f"{p.requirement}\n" for p in packages)


def make_venv(host: Host) -> None:
    if not Path(host.venv_python).exists():
        host.run("venv", [host.python, "-m", "venv", str(host.prefix)])


def build_wheelhouse(host: Host, packages: list[Package], work: Path) -> dict[str, str]:
    """The master's half: every pin as a wheel in work/wheels; {file name: sha256}. `pip wheel`
    copies the binary wheels and builds the sdists, keeping built wheels in pip's cache."""
    make_venv(host)
    wheels = work / "wheels"
    plain, patched = [p for p in packages if not p.patch], [p for p in packages if p.patch]
    (work / "build.txt").write_text(requirements([p for p in packages if p.stage == "build"]), encoding="utf-8")
    (work / "wheel.txt").write_text(requirements(plain), encoding="utf-8")
    host.pip("build tools", "install", "--require-hashes", "--no-deps", "-r", str(work / "build.txt"))
    host.pip("wheels", "wheel", "--require-hashes", "--no-deps", "--no-build-isolation", "-w", str(wheels),
             "-r", str(work / "wheel.txt"))
    for pkg in patched:
        _build_patched(host, pkg, wheels, work)
    return {p.name: sha256_file(p) for p in sorted(wheels.iterdir())}


def _build_patched(host: Host, pkg: Package, wheels: Path, work: Path) -> None:
    """ChainerCV (patch nms-pyx): its NMS extension from .pyx instead of the Cython-0.28 .c it
    ships, which no longer compiles on Python >= 3.11; then `pip wheel` of that tree."""
    if pkg.patch != "nms-pyx":
        raise AgentError(f"{pkg.name}: unknown patch {pkg.patch!r} in the lock")
    (work / f"{pkg.name}.txt").write_text(requirements([pkg]), encoding="utf-8")
    host.pip(f"download {pkg.name}", "download", "--require-hashes", "--no-deps", "--no-build-isolation",
             "--no-binary", ":all:", "-d", str(work / "sdist"), "-r", str(work / f"{pkg.name}.txt"))
    (sdist,) = (work / "sdist").glob(f"{pkg.name}-{pkg.version}.tar.gz")
    _extract(sdist, work / "src")
    target = work / "src" / f"{pkg.name}-{pkg.version}"
    (target / f"{NMS_MODULE}.c").unlink(missing_ok=True)
    (target / f"{NMS_MODULE}.pyx").write_text(NMS_PYX.read_text(encoding="utf-8"), encoding="utf-8")
    host.pip(f"build {pkg.name}", "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(target))


def _extract(sdist: Path, dest: Path) -> None:
    """Unpack a (hash-checked) sdist: plain files and folders only, none outside dest (Python
    3.10 and early 3.11 have no tarfile filter= to say this)."""
    with tarfile.open(sdist) as tar:
        members = tar.getmembers()
        for m in members:
            if m.name.startswith("/") or ".." in Path(m.name).parts or not (m.isfile() or m.isdir()):
                raise AgentError(f"{sdist.name}: refusing member {m.name!r} (outside the folder or not a file)")
        tar.extractall(dest, members=members)  # each member checked above


def install(host: Host, wheels: Path, files: dict[str, str]) -> None:
    """Every node's half: the wheelhouse into the venv, offline, each file's hash required."""
    make_venv(host)
    lines = []
    for name, digest in sorted(files.items()):
        m = WHEEL_NAME.match(name)
        if m is None:
            raise AgentError(f"the stack manifest names {name!r}, not a wheel; the master's build is broken")
        lines.append(f"{m['name']}=={m['version']} --hash=sha256:{digest}\n")
    req = wheels / "install.txt"
    req.write_text("".join(lines), encoding="utf-8")
    host.run("install", [host.venv_python, *PIP, "install", "--no-index", "--find-links", str(wheels),
                         "--require-hashes", "--no-deps", "-r", str(req)])
    host.run("pip check", [host.venv_python, *PIP, "check"])


def smoke(host: Host, env: dict[str, str]) -> None:
    """The stack imports (CuPy and its NCCL too where there is a GPU), with no warning at all."""
    code = "import chainer, chainermn, chainercv.links, chainerrl.agents\n"
    if host.gpu:
        code += "import cupy, cupy.cuda.nccl\nassert cupy.cuda.nccl.available, 'no NCCL for CuPy'\n"
    argv = ["env", *(f"{k}={v}" for k, v in env.items()), host.venv_python, "-W", "error::UserWarning", "-c", code]
    host.run("smoke", argv)
