"""The `current` profile's Python-stack step, executed for real (CPU variant, minus CuPy).

The rendered 40-python-stack.sh installs the profile's exact pins (hash-checked) into a fresh
venv made from /usr/bin/python3, building mpi4py against this machine's OpenMPI; then the
installed stack runs a 2-process ChainerMN job under mpiexec on loopback. Tests stay off the
network: pip reads only the wheelhouse `make install` downloaded (cfn_chainermn.ami.wheelhouse),
and any attempt to reach an index or proxy goes to a closed loopback port and fails the step.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cfn_chainermn.ami import profiles as ami_profiles
from cfn_chainermn.ami import render as ami
from cfn_chainermn.ami import wheelhouse as ami_wheelhouse

PYTHON = "/usr/bin/python3"
DATA = Path(__file__).parent / "data"
WHEELHOUSE = Path(os.environ.get("CFN_CHAINERMN_AMI_WHEELHOUSE") or ami_wheelhouse.DEFAULT_DIR)
# Wheels built from the sdists (chainer, mpi4py, gym, ...) survive between runs; ignored with it.
PIP_CACHE = WHEELHOUSE / ".pip-cache"
# C extensions built from sdists here (mpi4py, ChainerCV's) compile at -O0: on a clean clone with
# no pip cache, mpi4py alone takes 45 s at the images' -O2 and 15 s at -O0 on 2 cores. Nothing here
# measures their speed; the step, its pins and its hashes are the image's (distutils appends $CFLAGS
# after the interpreter's own flags, so the last -O wins).
FAST_BUILD = {"CFLAGS": "-O0"}
CLOSED = "http://127.0.0.1:9/"  # the discard port: nothing listens, a network attempt fails fast

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(PYTHON).exists(), reason=f"{PYTHON} is missing"),
    pytest.mark.skipif(shutil.which("mpicc") is None or shutil.which("mpiexec") is None,
                       reason="OpenMPI (mpicc, mpiexec) is missing; make install adds libopenmpi-dev"),
]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Render the CPU variant of the step and run it; returns the venv."""
    if not (WHEELHOUSE / ami_wheelhouse.STAMP).is_file():
        pytest.skip(f"no wheelhouse at {WHEELHOUSE}: run `.venv/bin/python -m cfn_chainermn.ami.wheelhouse "
                    f"{WHEELHOUSE}` (make install does) to run the Python-stack step offline")
    root = tmp_path_factory.mktemp("ami-stack")
    venv = root / "venv"
    mpicc = Path(shutil.which("mpicc") or "")
    profile = ami.cpu_variant(ami_profiles.load(ami.RECIPE_DIR, "current"), venv=str(venv),
                              mpi_prefix=str(mpicc.parent.parent), interpreter=PYTHON)
    assert not any(p.name.startswith("cupy") for p in profile.packages)
    stale = ami_wheelhouse.problem(profile, WHEELHOUSE, PYTHON)
    assert stale is None, stale
    ami.render(profile, root / "out", pip_cache_dir=str(PIP_CACHE), steps=("40-python-stack",))
    script = root / "out" / "scripts" / "40-python-stack.sh"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHON"))}
    env = {k: v for k, v in env.items() if not k.lower().endswith("_proxy") and not k.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull  # the AMI has no site pip.conf either
    env.update(FAST_BUILD)
    env.update(offline_env(WHEELHOUSE))
    proc = subprocess.run(["bash", str(script)], capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
    for module in ("chainer", "chainermn", "chainercv", "chainercv.links", "chainerrl", "chainerrl.agents"):
        assert f"ok import {module}\n" in proc.stdout, proc.stdout
    assert f"ok {len([p for p in profile.packages if not p.marker])} pinned distributions" in proc.stdout
    return venv


def offline_env(wheelhouse: Path) -> dict[str, str]:
    """pip finds packages only in the wheelhouse; an index or proxy it tries is a closed port."""
    return {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(wheelhouse), "PIP_INDEX_URL": CLOSED,
            "PIP_RETRIES": "0", "PIP_TIMEOUT": "3",
            "http_proxy": CLOSED, "https_proxy": CLOSED, "HTTP_PROXY": CLOSED, "HTTPS_PROXY": CLOSED,
            "no_proxy": "", "NO_PROXY": "", "ALL_PROXY": CLOSED, "UV_OFFLINE": "1"}


def test_offline_env_fails_a_download_it_cannot_serve(tmp_path: Path) -> None:
    """The tripwire works: a pin that is not in the wheelhouse fails instead of being fetched."""
    (tmp_path / "req.txt").write_text("six==1.16.0 --hash=sha256:" + "0" * 64 + "\n")
    env = {**os.environ, "PIP_CONFIG_FILE": os.devnull, **offline_env(tmp_path)}
    proc = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--require-hashes", "-d",
                           str(tmp_path / "d"), "-r", str(tmp_path / "req.txt")],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode != 0
    assert "No matching distribution found for six==1.16.0" in proc.stderr, proc.stderr
    assert not (tmp_path / "d").exists() or not any((tmp_path / "d").iterdir())


def test_versions_are_the_profile_pins(stack: Path) -> None:
    code = ("import chainer, numpy, mpi4py, gym, pkg_resources as r;"
            "print(chainer.__version__, numpy.__version__, mpi4py.__version__, gym.__version__,"
            " r.get_distribution('chainercv').version, r.get_distribution('chainerrl').version)")
    out = subprocess.run([str(stack / "bin/python"), "-W", "ignore", "-c", code], capture_output=True,
                         text=True, check=True).stdout.split()
    assert out == ["7.8.1", "1.24.4", "3.1.6", "0.22.0", "0.13.1", "0.8.0"]
    prefix = subprocess.run([str(stack / "bin/python"), "-c", "import sys; print(sys.prefix)"],
                            capture_output=True, text=True, check=True).stdout.strip()
    assert prefix == str(stack)  # the fresh venv, not the project's


def test_rebuilt_nms_module_selects_boxes(stack: Path) -> None:
    """The ChainerCV extension rebuilt from the recipe's .pyx keeps the greedy NMS semantics."""
    code = """
import numpy as np
from chainercv.utils.bbox._nms_gpu_post import _nms_gpu_post
# 3 boxes, one 64-bit word each: box 0 overlaps box 1, box 1 overlaps box 2
mask = np.array([0b010, 0b100, 0], dtype=np.uint64)
keep, n = _nms_gpu_post(mask, 3, 64, 1)
print(list(keep[:n]))
"""
    out = subprocess.run([str(stack / "bin/python"), "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[0, 2]"


def two_ranks(stack: Path, script: Path) -> list[str]:
    cmd = ["mpiexec", "--oversubscribe", "-n", "2", "--bind-to", "none",
           "--mca", "btl_tcp_if_include", "127.0.0.0/8", "--mca", "oob_tcp_if_include", "127.0.0.0/8",
           "--mca", "rtc", "^hwloc", "--mca", "mpi_yield_when_idle", "1"]
    if os.geteuid() == 0:
        cmd.append("--allow-run-as-root")
    return [*cmd, str(stack / "bin/python"), str(script)]


def test_two_process_chainermn_job(stack: Path, tmp_path: Path) -> None:
    proc = subprocess.run(two_ranks(stack, DATA / "mn_smoke.py"), capture_output=True, text=True, cwd=tmp_path,
                          timeout=180)
    out = proc.stdout + proc.stderr
    # mpiexec exits 0 when it refuses to run as root, so the job's own output is the proof
    assert proc.returncode == 0, out
    assert "rank 0/2 up" in out and "rank 1/2 up" in out, out
    assert "mn-smoke size=2 accuracy=" in out and "weights_in_sync=True" in out, out


def test_the_stack_runs_the_removed_communicators(stack: Path, tmp_path: Path) -> None:
    """The step installed the communicator shim: 'hierarchical' & co. run (naive: no GPU here)
    with one warning line per rank each, in the stack's own venv."""
    script = Path(__file__).resolve().parents[1] / "local" / "scripts" / "removed_communicators.py"
    proc = subprocess.run(two_ranks(stack, script), capture_output=True, text=True, cwd=tmp_path, timeout=180)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    for name in ("hierarchical", "two_dimensional", "single_node"):
        assert out.count(f"cfn-chainermn: ChainerMN communicator '{name}' was removed in Chainer 7; "
                         "using 'naive' instead") == 2, out
        for rank in range(2):
            assert f"rank {rank}/2: {name} -> NaiveCommunicator allreduce=3 mean_grad=1.5" in out, out
