"""The boot-time Chainer stack install, run for real on a local master and worker.

The master builds the lock's wheelhouse once (mpi4py against this machine's mpicc, chainer,
gym, chainerrl and chainercv from their sdists) out of the wheelhouse `make install` downloads
(no network: pip gets --no-index), publishes it under chainer-stack/ with a manifest of sha256s,
and both nodes install it with --no-index --require-hashes. A local node has no GPU: CuPy and
gpu-stack.sh are skipped and named in the step's detail. gpu-stack.sh itself runs against a
made-up image tree.
"""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import subprocess
from pathlib import Path

import pytest

from cfn_chainermn.ami import wheelhouse
from cfn_chainermn.ami.lock import LOCK_DIR, MARKER_NAME, lock_digest
from cfn_chainermn.errors import AgentError
from cfn_chainermn.node import agent, chainer_stack
from cfn_chainermn.node.settings import Settings
from cfn_chainermn.node.state import State

WHEELHOUSE = Path(os.environ.get("CFN_CHAINERMN_AMI_WHEELHOUSE_CUDA12") or wheelhouse.default_dir("cuda12"))
USER = pwd.getpwuid(os.getuid()).pw_name


def _cluster(tmp_path: Path) -> Path:
    d = tmp_path / "lc"
    nodes = [("m", "127.0.0.2", "master"), ("w1", "127.0.0.3", "worker")]
    for nid, _, _ in nodes:
        (d / "nodes" / nid).mkdir(parents=True)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                        str(d / "nodes" / nid / "ssh_host_ed25519_key")], check=True)
    (d / "inventory.json").write_text(json.dumps({"nodes": [
        {"instance_id": nid, "private_ip": ip, "role": role, "instance_type": "local", "state": "running",
         "slots": 1, "ssh_port": 2222} for nid, ip, role in nodes]}))
    return d


def _settings(d: Path, nid: str, ip: str, role: str, **extra: object) -> Settings:
    return Settings(backend="local", state_dir=str(d), role=role, node_id=nid, private_ip=ip, ssh_port=2222,
                    host_key=str(d / "nodes" / nid / "ssh_host_ed25519_key.pub"), user=USER,
                    home=str(d / "home"), slots=1, mount_point=str(d / "shared"), key_wait=30, **extra)


def test_without_a_wheelhouse_a_local_node_says_it_skips(tmp_path: Path) -> None:
    d = _cluster(tmp_path)
    state = agent.boot(_settings(d, "m", "127.0.0.2", "master"))
    assert state.steps["stack"]["status"] == "ok"
    assert state.steps["stack"]["detail"].startswith("skipped: no --stack-wheelhouse")
    assert not (d / "bucket/chainer-stack").exists()


@pytest.mark.slow
def test_master_builds_once_and_both_nodes_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # wheels built from the sdists (mpi4py: minutes) kept between runs, shared with tests/ami
    monkeypatch.setenv("PIP_CACHE_DIR", str(WHEELHOUSE / ".pip-cache"))
    monkeypatch.setenv("CFLAGS", "-O0")  # as tests/ami/test_ami_stack.py's FAST_BUILD: a clean clone compiles mpi4py
    if not (WHEELHOUSE / wheelhouse.STAMP).is_file():
        pytest.skip(f"no wheelhouse at {WHEELHOUSE}: run `.venv/bin/python -m cfn_chainermn.ami.wheelhouse "
                    "--profile cuda12 --with-gpu` (make install does)")
    d = _cluster(tmp_path)
    extra = {"stack_wheelhouse": str(WHEELHOUSE), "stack_wait": 5.0}
    master = agent.boot(_settings(d, "m", "127.0.0.2", "master", **extra))
    worker = agent.boot(_settings(d, "w1", "127.0.0.3", "worker", **extra))
    m_detail, w_detail = master.steps["stack"]["detail"], worker.steps["stack"]["detail"]
    # GPU parts are skipped by name, never silently
    for detail in (m_detail, w_detail):
        assert "GPU parts skipped (no GPU): gpu-stack.sh (CUDA 12 link, NCCL loader path), fastrlock 0.8.3, " \
               "cupy-cuda12x 13.6.0" in detail, detail
    # the master made the wheels (and rebuilt ChainerCV's extension); the worker only fetched and installed
    assert "wheels " in m_detail and "build chainercv " in m_detail, m_detail
    assert "wheels " not in w_detail and "build " not in w_detail, w_detail
    assert "fetch " in w_detail and "install " in w_detail, w_detail
    manifest = json.loads((d / "bucket/chainer-stack/manifest.json").read_text())
    assert manifest["gpu"] is False and not any(n.startswith("cupy") for n in manifest["files"])
    for name, digest in manifest["files"].items():
        assert name.endswith(".whl")
        assert hashlib.sha256((d / "bucket/chainer-stack/wheels" / name).read_bytes()).hexdigest() == digest
    for nid in ("m", "w1"):
        py = d / "nodes" / nid / "chainer/bin/python"
        out = subprocess.run([str(py), "-c", "import chainer, chainermn, chainercv, chainerrl, mpi4py, numpy;"
                              "print(chainer.__version__, numpy.__version__, mpi4py.__version__)"],
                             capture_output=True, text=True, check=True)
        assert out.stdout.split() == ["7.8.1", "1.26.4", "3.1.6"]
        assert json.loads((d / "nodes" / nid / "chainer" / MARKER_NAME).read_text())["lock"] == chainer_stack.LOCK
        # the communicator shim (jobs/compat_install.py) is in the stack's environment
        shim = subprocess.run([str(py), "-c", "import cfnmn_chainermn_compat"], capture_output=True, text=True)
        assert shim.returncode == 0, shim.stderr
    # a second boot finds the marker and installs nothing
    again = agent.boot(_settings(d, "w1", "127.0.0.3", "worker", **extra))
    assert "already in" in again.steps["stack"]["detail"]


def test_worker_fails_with_the_masters_reason(tmp_path: Path) -> None:
    """A master whose build failed publishes why; a worker fails at once with that reason
    (it reaches the stack events through the FAILURE signal), not after its wait."""
    d = _cluster(tmp_path)
    (d / "wh").mkdir()
    _, packages = chainer_stack.lock()
    (d / "bucket/chainer-stack").mkdir(parents=True)
    (d / "bucket/chainer-stack/manifest.json").write_text(json.dumps(
        {"lock": chainer_stack.LOCK, "sha256": lock_digest(packages), "error": "download main.txt: no network"}))
    with pytest.raises(AgentError, match=r"the master's Chainer stack build failed: download main\.txt: no network"):
        agent.boot(_settings(d, "w1", "127.0.0.3", "worker", stack_wheelhouse=str(d / "wh"), stack_wait=5.0))
    state = State.load(d / "nodes/w1/state.json")
    assert state.steps["stack"]["status"] == "failed" and not state.ready
    assert state.steps["user"]["status"] == "pending"


def test_gpu_stack_links_newest_cuda12_and_the_images_nccl(tmp_path: Path) -> None:
    """gpu-stack.sh on a made-up image: 12.10 beats 12.9 (version order, not text), 13.x is never
    picked, a toolkit without nvcc is not one, and NCCL's dir goes to the ld.so.conf.d file."""
    local = tmp_path / "usr/local"
    for version, nvcc in (("12.8", True), ("12.9", True), ("12.10", True), ("12.11", False), ("13.2", True)):
        (local / f"cuda-{version}/bin").mkdir(parents=True)
        (local / f"cuda-{version}/lib").mkdir()
        if nvcc:
            (local / f"cuda-{version}/bin/nvcc").write_text("#!/bin/sh\n")
            (local / f"cuda-{version}/bin/nvcc").chmod(0o755)
    (local / "cuda-12.10/lib/libnccl.so.2").write_text("")
    link, conf = tmp_path / "opt/chainer/cuda", tmp_path / "etc/ld.so.conf.d/nccl.conf"
    proc = subprocess.run(["bash", str(LOCK_DIR / "gpu-stack.sh"), f"{local}/cuda-12.*", str(link), str(conf)],
                          capture_output=True, text=True, env={**os.environ, "LDCONFIG": "true"})
    assert proc.returncode == 0, proc.stderr
    assert os.readlink(link) == f"{local}/cuda-12.10"
    assert conf.read_text().splitlines()[1:] == [f"{local}/cuda-12.10/lib", f"{link}/lib64"]
    (local / "cuda-12.10/lib/libnccl.so.2").unlink()
    proc = subprocess.run(["bash", str(LOCK_DIR / "gpu-stack.sh"), f"{local}/cuda-12.*", str(link), str(conf)],
                          capture_output=True, text=True, env={**os.environ, "LDCONFIG": "true"})
    assert proc.returncode == 1 and "no libnccl.so.2 next to" in proc.stderr
    proc = subprocess.run(["bash", str(LOCK_DIR / "gpu-stack.sh"), f"{local}/cuda-14.*", str(link), str(conf)],
                          capture_output=True, text=True, env={**os.environ, "LDCONFIG": "true"})
    assert proc.returncode == 1 and "no CUDA toolkit matches" in proc.stderr
