"""`local up` / `local down`: a second cluster beside the session one, and nothing left behind."""

from __future__ import annotations

import getpass
import json
import os
import pwd
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
from localcluster import CLI, ROOT, LocalCluster, down, make_state_dir, pids_matching, up, wait_until

from cfn_chainermn.local import places

pytestmark = pytest.mark.slow
AS_ROOT = os.geteuid() == 0  # as root a cluster gets a user of its own; otherwise it runs as the caller


def test_second_cluster_gets_its_own_user_and_down_removes_everything(cluster: LocalCluster) -> None:
    state_dir = make_state_dir("cfnmn-life-")
    run_sshd_before = Path("/run/sshd").exists()  # made by the session cluster when root
    try:
        res = up(state_dir, 1)
        assert res.returncode == 0, res.stdout + res.stderr
        state = json.loads((state_dir / "cluster.json").read_text())
        if AS_ROOT:  # `chainer` belongs to the session cluster, so this one made a user of its own
            assert state["user"] != cluster.state["user"] and state["user"].startswith("cfnmn-")
            assert pwd.getpwnam(state["user"]).pw_dir == state["home"] and state["created_user"] is True
        else:  # an ordinary user's clusters all run as that user, who is never created nor removed
            assert state["user"] == cluster.state["user"] == getpass.getuser() and state["created_user"] is False
        assert state["port"] != cluster.state["port"]
        listed = subprocess.run([*CLI, "hostfile", "local", "--state-dir", str(state_dir)], capture_output=True,
                                text=True, cwd=ROOT, timeout=60)
        assert listed.stdout == "127.0.0.2 slots=1\n127.0.0.3 slots=1\n"
        again = up(state_dir, 1)
        assert again.returncode == 2 and "already up" in again.stderr
        res = down(state_dir)
        assert res.returncode == 0, res.stderr
        assert not pids_matching(str(state_dir))
        if AS_ROOT:
            with pytest.raises(KeyError):
                pwd.getpwnam(state["user"])
        else:
            assert pwd.getpwnam(state["user"])
        assert not (state_dir / "cluster.json").exists()
        # The session cluster's sshd still needs /run/sshd: down must not remove it under them.
        assert Path("/run/sshd").exists() or not run_sshd_before
        # The session cluster is untouched.
        assert cluster.cli("cluster", "check", "local").returncode == 0
        res = down(state_dir)
        assert res.returncode == 0 and "no local cluster" in res.stdout
    finally:
        down(state_dir)
        shutil.rmtree(state_dir.parent, ignore_errors=True)


def test_up_refuses_a_folder_the_cluster_user_cannot_reach(tmp_path: Path) -> None:
    if not AS_ROOT:
        pytest.skip("not root: the cluster runs as the caller, who can reach the folder")
    hidden = tmp_path / "private"
    hidden.mkdir(mode=0o700)
    res = up(hidden / "cluster", 1)
    if res.returncode == 0:  # a regression: stop what it started, then fail below
        down(hidden / "cluster")
    assert res.returncode == 2, res.stdout + res.stderr
    assert "not searchable by other users" in res.stderr and "--state-dir" in res.stderr
    assert wait_until(lambda: not pids_matching(str(hidden)), 30)


def test_job_commands_without_a_cluster_exit_2_with_the_fix(tmp_path: Path) -> None:
    res = subprocess.run([*CLI, "job", "list", "local", "--state-dir", str(tmp_path)], capture_output=True,
                         text=True, cwd=ROOT, timeout=60)
    assert res.returncode == 2
    assert res.stderr.strip() == f"error: no local cluster in {tmp_path}; start one with `cfn-chainermn local up " \
                                 f"--state-dir {tmp_path}`"


def test_an_ordinary_user_runs_a_cluster_as_itself() -> None:
    if not AS_ROOT or not shutil.which("useradd") or not shutil.which("su"):
        pytest.skip("needs root to make an ordinary user for the test")
    user = "cfnmn-plain"
    subprocess.run(["userdel", "-r", user], capture_output=True)  # left by a run that was killed
    subprocess.run(["useradd", "-m", "-s", "/bin/sh", user], check=True, capture_output=True)
    state_dir = make_state_dir("cfnmn-plain-")
    shutil.chown(state_dir.parent, user)
    # The venv by the path that user can reach (.venv may link outside a checkout closed to others)
    python = places.interpreter(CLI[0])
    workdir, script = ROOT, ROOT / "tests" / "local" / "scripts" / "exit_on_rank1.py"
    if places.unsearchable(ROOT):  # e.g. a clone under /root: the user runs a copy of the package
        workdir = state_dir.parent / "checkout"
        shutil.copytree(ROOT / "cfn_chainermn", workdir / "cfn_chainermn", ignore=shutil.ignore_patterns("__pycache__"))
        script = Path(shutil.copy(script, workdir))
        subprocess.run(["chown", "-R", user, str(workdir)], check=True)
    cli = " ".join([python, *CLI[1:]])
    bashrc = Path(pwd.getpwnam(user).pw_dir) / ".bashrc"
    bashrc.touch()
    bashrc_before = bashrc.read_bytes()

    def as_user(command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["su", user, "-c", f"cd {workdir} && {command}"], capture_output=True, text=True,
                              timeout=180)

    try:
        res = as_user(f"{cli} local up --workers 1 --state-dir {state_dir}")
        assert res.returncode == 0, res.stdout + res.stderr
        assert f"user {user}" in res.stdout
        res = as_user(f"{cli} job submit local --state-dir {state_dir} -n 2 -N 1 {script}")
        assert res.returncode == 3, res.stdout + res.stderr
        assert "rank 1 of 2" in res.stdout
        # A bare `python` is the cluster's on every node, set by each node's sshd: the user's real
        # ~/.bashrc is left as it was.
        res = as_user(f"{cli} ssh local --state-dir {state_dir} -- "
                      "\"mpiexec -n 2 -N 1 python -c 'import sys; print(sys.prefix)'\"")
        assert res.returncode == 0, res.stdout + res.stderr
        assert res.stdout.splitlines() == [str(Path(python).parent.parent)] * 2
        assert bashrc.read_bytes() == bashrc_before
        res = as_user(f"{cli} local down --state-dir {state_dir}")
        assert res.returncode == 0, res.stderr
        assert wait_until(lambda: not pids_matching(str(state_dir)), 30)
    finally:
        as_user(f"{cli} local down --state-dir {state_dir}")
        subprocess.run(["userdel", "-r", user], capture_output=True)
        shutil.rmtree(state_dir.parent, ignore_errors=True)


def test_up_over_a_cluster_that_died_cleans_up_first(cluster: LocalCluster) -> None:
    import signal

    state_dir = make_state_dir("cfnmn-crash-")
    try:
        assert up(state_dir, 0).returncode == 0
        first = json.loads((state_dir / "cluster.json").read_text())
        # The sshd dies without `local down`: the state file and the user stay behind.
        os.kill(int((state_dir / "nodes" / "master" / "sshd.pid").read_text()), signal.SIGKILL)
        assert wait_until(lambda: not pids_matching(str(state_dir / "nodes" / "master" / "sshd_config")), 30)
        res = up(state_dir, 0)
        assert res.returncode == 0, res.stdout + res.stderr
        second = json.loads((state_dir / "cluster.json").read_text())
        # As root, the old user was removed, then made again: so the next `local down` removes it too.
        assert second["user"] == first["user"] and second["created_user"] is AS_ROOT
        assert cluster.cli("hostfile", "local").returncode == 0
    finally:
        down(state_dir)
        shutil.rmtree(state_dir.parent, ignore_errors=True)


def test_up_refuses_an_interpreter_the_cluster_user_cannot_reach(tmp_path: Path) -> None:
    """As root, a venv under a mode-700 folder (e.g. /root) would make every job fail later."""
    if not AS_ROOT:
        pytest.skip("not root: the cluster runs as the caller")
    hidden = tmp_path / "private"
    hidden.mkdir(mode=0o700)
    python = hidden / "python"
    python.symlink_to(Path(shutil.which("python3") or "/usr/bin/python3"))
    state = make_state_dir("cfnmn-py-")
    try:
        res = subprocess.run([*CLI, "local", "up", "--workers", "0", "--state-dir", str(state),
                              "--python", str(python)], capture_output=True, text=True, cwd=ROOT, timeout=60)
        assert res.returncode == 2, res.stderr
        assert res.stderr.startswith("error: --python: ") and "not searchable by other users" in res.stderr
        assert not state.exists()  # refused before anything was created
    finally:
        shutil.rmtree(state.parent, ignore_errors=True)


def test_a_port_taken_after_the_pick_moves_every_node_to_another(monkeypatch: pytest.MonkeyPatch) -> None:
    """local up picks a port free on every node address, then starts each sshd on it; a server
    that binds it on one node's address in between (chance on a busy machine: another run's MPI
    ranks bind port 0 on every address) made that sshd give up in the background, after its
    exit status 0, and local up went on a node short. Now it sees that and starts over."""
    from cfn_chainermn.local import lifecycle, procs

    state_dir = make_state_dir("cfnmn-taken-")
    ips = ["127.0.0.2", "127.0.0.3"]
    real = lifecycle.pick_port
    taken = real(ips)
    picks = [taken]
    monkeypatch.setattr(lifecycle, "pick_port", lambda addresses: picks.pop() if picks else real(addresses))
    lines: list[str] = []
    try:
        with socket.create_server(("127.0.0.3", taken)):  # the other server, on worker-1's address only
            state = lifecycle.up(lifecycle.Spec(state_dir, workers=1), log=lines.append)
        assert state.port != taken
        assert [line for line in lines if " on port " in line] == [
            f"nodes 127.0.0.2, 127.0.0.3 on port {port}, user {state.user}" for port in (taken, state.port)]
        assert len(procs.sshd_pids(state_dir.resolve(), state)) == 2  # both nodes listen, on the new port
        checked = subprocess.run([*CLI, "cluster", "check", "local", "--state-dir", str(state_dir)],
                                 capture_output=True, text=True, cwd=ROOT, timeout=120)
        assert checked.returncode == 0, checked.stdout + checked.stderr
    finally:
        down(state_dir)
        shutil.rmtree(state_dir.parent, ignore_errors=True)
