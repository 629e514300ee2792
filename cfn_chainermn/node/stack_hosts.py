"""Where the Chainer stack goes on each kind of node: the platforms' answers for chainer_stack.py.

AWS: /opt/chainer, a venv of the image's /usr/bin/python3, mpi4py against the EFA installer's
Open MPI, the GPU parts on (gpu-stack.sh run as root), pins from PyPI. A local node: a folder of
the node, no GPU (CuPy and gpu-stack.sh skipped and named in the step's detail), pins only from
the wheelhouse the node was given (no network), and nothing at all without one.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from cfn_chainermn.ami.lock import LOCK_DIR, STACK_LOCK, load_lock
from cfn_chainermn.errors import AgentError
from cfn_chainermn.node.context import Context
from cfn_chainermn.node.stack_build import Host
from cfn_chainermn.node.system import System

STACK_PROFILES = ("cuda12",)  # AMI profiles whose stack is this lock's (else the image keeps its own)
IMAGE_PYTHON = "/usr/bin/python3"
IMAGE_MPICC = ("/opt/amazon/openmpi/bin/mpicc", "/usr/local/mpi/bin/mpicc", "/usr/bin/mpicc")
NCCL_CONF = "/etc/ld.so.conf.d/cfn-chainermn-nccl.conf"
GPU_STACK_SH = LOCK_DIR / "gpu-stack.sh"
APT = ["apt-get", "-o", "DPkg::Lock::Timeout=600", "-y", "-q", "install", "--no-install-recommends",
       "python3-venv", "python3-dev", "build-essential"]


def aws_host(system: System, ami_manifest: str) -> Host | str:
    """The stack's place on an EC2 node, or why the node keeps what it has."""
    try:
        profile = json.loads(system.path(ami_manifest).read_text(encoding="utf-8")).get("profile", "")
    except (OSError, ValueError, AttributeError):
        profile = ""
    if profile and profile not in STACK_PROFILES:
        return f"the image was built by `ami build {profile}`, which has its own Chainer stack"
    prefix = str(load_lock(STACK_LOCK)[0]["prefix"])  # where `ami build cuda12` puts it too
    if not system.real:  # a test root: recorded once (as the marker would stop a second boot), never run
        argv = ["cfn-chainermn-stack", "install", prefix]
        if shlex.join(argv) not in system.recorded():
            system.run(argv)
        return f"recorded, not run: {system.root} stands for / (tests)"
    mpicc = next((m for m in IMAGE_MPICC if Path(m).exists()), "")
    if not mpicc:
        raise AgentError(f"no mpicc in {', '.join(IMAGE_MPICC)}: mpi4py needs the image's Open MPI "
                         "(the Deep Learning Base AMI has it at /opt/amazon/openmpi)")
    if system.run(APT, check=False) != 0:  # a stale package index: refresh it once
        system.run(["apt-get", "-q", "update"])
        system.run(APT)
    return Host(prefix=Path(prefix), python=IMAGE_PYTHON, mpicc=mpicc, gpu=True)


def aws_gpu_stack(system: System, select: str, link: str) -> str:
    """gpu-stack.sh as root: CUDA 12 linked at `link`, the image's NCCL on the loader path."""
    argv = ["bash", str(GPU_STACK_SH), select, link, NCCL_CONF]
    if not system.real:
        system.run(argv)
        return "gpu-stack.sh recorded (test root)"
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = " ".join(proc.stderr.strip().splitlines()[-2:])
        raise AgentError(f"gpu-stack.sh: {tail or f'exited {proc.returncode}'}")
    return f"gpu-stack.sh: {proc.stdout.strip()}"


def local_host(ctx: Context) -> Host | str:
    """A local node installs only from the wheelhouse it was given (--stack-wheelhouse)."""
    s = ctx.settings
    if not s.stack_wheelhouse:
        return "no --stack-wheelhouse: a local node runs jobs with the project's own venv"
    mpicc = shutil.which("mpicc")
    if mpicc is None:
        raise AgentError("no mpicc on PATH: mpi4py is built with it (install libopenmpi-dev)")
    python = IMAGE_PYTHON if Path(IMAGE_PYTHON).exists() else sys.executable
    return Host(prefix=s.node_dir() / "chainer", python=python, mpicc=mpicc, gpu=False,
                find_links=s.stack_wheelhouse)


def stack_bin() -> str:
    """The stack's bin dir, first on the cluster user's PATH where it exists (search_path)."""
    return f"{load_lock(STACK_LOCK)[0]['prefix']}/bin"


def login_env(system: System) -> dict[str, str]:
    """What every login of the cluster user gets with the stack installed (~/.cfn-chainermn.env):
    the lock's env (CHAINER_WARN_VERSION_MISMATCH=0), and CUDA_PATH where gpu-stack.sh made the link."""
    data = load_lock(STACK_LOCK)[0]
    if not system.path(f"{data['prefix']}/bin/python").exists():
        return {}
    env = {str(k): str(v) for k, v in (data.get("env") or {}).items()}
    link = str(data["cuda_link"])
    return {**env, "CUDA_PATH": link} if system.path(link).is_dir() else env
