"""The cuda12 profile's Python-stack step, executed for real: its CPU part plus CuPy.

The rendered 40-python-stack.sh installs the lock's pins (hash-checked, offline from the
wheelhouse `make install` downloads with --with-gpu) into a fresh venv; CuPy 13 is kept (it
installs and imports without a GPU) because the point is Chainer 7.8.1 next to CuPy 13: a
2-process ChainerMN job prints no version warning. Chainer's check (chainer/_environment_check.py)
looks for the CuPy distributions chainer/_version.py lists, which stop at cupy-cuda120, so
cupy-cuda12x draws none even before CHAINER_WARN_VERSION_MISMATCH=0 (which the profile sets anyway,
for a CuPy installed under a listed name). The one warning left here is CuPy's own "nccl library
could not be loaded": this machine has no libnccl.so.2, which a node gets from its image
(gpu-stack.sh); every warning in the output must be that one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from test_ami_stack import DATA, FAST_BUILD, PYTHON, offline_env
from test_ami_stack import pytestmark as stack_marks

from cfn_chainermn.ami import profiles as ami_profiles
from cfn_chainermn.ami import render as ami
from cfn_chainermn.ami import wheelhouse as ami_wheelhouse

WHEELHOUSE = Path(os.environ.get("CFN_CHAINERMN_AMI_WHEELHOUSE_CUDA12") or ami_wheelhouse.default_dir("cuda12"))
PIP_CACHE = WHEELHOUSE / ".pip-cache"  # wheels built from sdists; the node agent's test shares them

pytestmark = stack_marks  # slow; needs /usr/bin/python3 and OpenMPI


@pytest.fixture(scope="module")
def profile() -> ami_profiles.Profile:
    return ami_profiles.load(ami.RECIPE_DIR, "cuda12")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, profile: ami_profiles.Profile) -> Path:
    if not (WHEELHOUSE / ami_wheelhouse.STAMP).is_file():
        pytest.skip(f"no wheelhouse at {WHEELHOUSE}: run `.venv/bin/python -m cfn_chainermn.ami.wheelhouse "
                    "--profile cuda12 --with-gpu` (make install does)")
    root = tmp_path_factory.mktemp("ami-stack-cuda12")
    venv = root / "venv"
    mpicc = Path(shutil.which("mpicc") or "")
    cpu = ami.cpu_variant(profile, venv=str(venv), mpi_prefix=str(mpicc.parent.parent), interpreter=PYTHON,
                          keep_gpu=True)
    assert cpu.package("cupy-cuda12x") is not None
    stale = ami_wheelhouse.problem(cpu, WHEELHOUSE, PYTHON)
    assert stale is None, stale
    ami.render(cpu, root / "out", pip_cache_dir=str(PIP_CACHE), steps=("40-python-stack",))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHON", "PIP_", "CHAINER"))}
    env = {k: v for k, v in env.items() if not k.lower().endswith("_proxy")}
    env.update({"PIP_CONFIG_FILE": os.devnull, **offline_env(WHEELHOUSE), **FAST_BUILD})
    proc = subprocess.run(["bash", str(root / "out/scripts/40-python-stack.sh")], capture_output=True, text=True,
                          env=env, timeout=1200)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
    assert "ok import cupy\n" in proc.stdout and "ok import chainerrl.agents\n" in proc.stdout, proc.stdout
    # the marker that makes the node agent skip its own install of the same lock
    assert '"lock": "chainer-stack-cuda12"' in (venv / "cfn-chainermn-stack.json").read_text()
    return venv


def _env(extra: dict[str, str]) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("CHAINER", "PYTHON", "VIRTUAL_ENV"))}
    return {**base, **extra}


def test_versions_are_the_lock_pins(stack: Path) -> None:
    code = ("import chainer, numpy, mpi4py, cupy, pkg_resources as r;"
            "print(chainer.__version__, numpy.__version__, mpi4py.__version__, cupy.__version__,"
            " r.get_distribution('chainercv').version, r.get_distribution('chainerrl').version)")
    out = subprocess.run([str(stack / "bin/python"), "-W", "ignore", "-c", code], capture_output=True, text=True,
                         check=True, env=_env({})).stdout.split()
    assert out == ["7.8.1", "1.26.4", "3.1.6", "13.6.0", "0.13.1", "0.8.0"]


VERSION_WARNING = "may not be compatible with this version of Chainer"  # chainer/_environment_check.py
NCCL_MISSING = "nccl library could not be loaded"  # cupy/_environment.py, where libnccl.so.2 is not found


def only_nccl_warnings(text: str) -> bool:
    """Every UserWarning in `text` is CuPy's missing-NCCL one, for want of libnccl.so.2 here."""
    return (VERSION_WARNING not in text and text.count("UserWarning:") == text.count(NCCL_MISSING)
            and text.count(NCCL_MISSING) == text.count("libnccl.so.2: cannot open shared object file"))


def test_chainer_draws_no_version_warning_next_to_cupy13(stack: Path, profile: ami_profiles.Profile) -> None:
    argv = [str(stack / "bin/python"), "-c", "import chainer, cupy; print(cupy.__version__)"]
    assert profile.env == {"CHAINER_WARN_VERSION_MISMATCH": "0"}
    for env in ({}, profile.env):
        proc = subprocess.run(argv, capture_output=True, text=True, env=_env(env), timeout=120)
        assert proc.returncode == 0 and proc.stdout.strip() == "13.6.0", proc.stderr
        assert only_nccl_warnings(proc.stderr), proc.stderr
    # the check is live, and the profile's environment is what silences it: told to look for
    # cupy-cuda12x too, Chainer warns about 13.6.0, unless CHAINER_WARN_VERSION_MISMATCH=0
    code = ("import chainer._version as v, chainer._environment_check as c;"
            "v._optional_dependencies[0]['packages'].insert(0, 'cupy-cuda12x');"
            "c._check_optional_dependencies()")
    probes = [subprocess.run([str(stack / "bin/python"), "-W", "always::UserWarning", "-c", code],
                             capture_output=True, text=True, env=_env(env), timeout=120) for env in ({}, profile.env)]
    assert "cupy-cuda12x) version 13.6.0 " + VERSION_WARNING in probes[0].stderr, probes[0].stderr
    assert VERSION_WARNING not in probes[1].stderr, probes[1].stderr


def test_two_process_chainermn_job_prints_no_warning(stack: Path, tmp_path: Path,
                                                     profile: ami_profiles.Profile) -> None:
    cmd = ["mpiexec", "--oversubscribe", "-n", "2", "--bind-to", "none",
           "--mca", "btl_tcp_if_include", "127.0.0.0/8", "--mca", "oob_tcp_if_include", "127.0.0.0/8",
           "--mca", "rtc", "^hwloc", "--mca", "mpi_yield_when_idle", "1"]
    if os.geteuid() == 0:
        cmd.append("--allow-run-as-root")
    cmd += [str(stack / "bin/python"), str(DATA / "mn_smoke.py")]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=180, env=_env(profile.env))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "rank 0/2 up" in out and "rank 1/2 up" in out, out
    assert "mn-smoke size=2 accuracy=" in out and "weights_in_sync=True" in out, out
    assert only_nccl_warnings(out), out
