"""The cuda12 profile's Python-stack step, executed for real: its CPU part plus CuPy.

The rendered 40-python-stack.sh installs the lock's pins (hash-checked, offline from the
wheelhouse `make install` downloads with --with-gpu) into a fresh venv; CuPy 13 is kept (it
installs and imports without a GPU) because the point is Chainer 7.8.1 next to CuPy 13: with the
profile's login environment (CHAINER_WARN_VERSION_MISMATCH=0) a 2-process ChainerMN job prints
no warning, and without it Chainer does warn (so the check can fail).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from test_ami_stack import DATA, PYTHON, offline_env

from cfn_chainermn.ami import profiles as ami_profiles
from cfn_chainermn.ami import render as ami
from cfn_chainermn.ami import wheelhouse as ami_wheelhouse

WHEELHOUSE = Path(os.environ.get("CFN_CHAINERMN_AMI_WHEELHOUSE_CUDA12") or ami_wheelhouse.default_dir("cuda12"))
PIP_CACHE = WHEELHOUSE / ".pip-cache"  # wheels built from sdists; the node agent's test shares them

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(PYTHON).exists(), reason=f"{PYTHON} is missing"),
    pytest.mark.skipif(shutil.which("mpicc") is None or shutil.which("mpiexec") is None,
                       reason="OpenMPI (mpicc, mpiexec) is missing; make install adds libopenmpi-dev"),
]


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
    env.update({"PIP_CONFIG_FILE": os.devnull, **offline_env(WHEELHOUSE)})
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


def test_chainer_warns_about_cupy13_unless_told_not_to(stack: Path, profile: ami_profiles.Profile) -> None:
    """The control: the warning the profile's environment silences is real with this CuPy."""
    argv = [str(stack / "bin/python"), "-c", "import chainer"]
    loud = subprocess.run(argv, capture_output=True, text=True, env=_env({}), timeout=120)
    assert "cupy" in loud.stderr.lower() and "warn" in loud.stderr.lower(), loud.stderr
    assert profile.env == {"CHAINER_WARN_VERSION_MISMATCH": "0"}
    quiet = subprocess.run(argv, capture_output=True, text=True, env=_env(profile.env), timeout=120)
    assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr


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
    assert "warn" not in out.lower(), out
