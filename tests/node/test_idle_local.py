"""Idle shutdown on a local node, time compressed: a real local master boots and `node refresh`
runs as its timer would, with the master's clock (idle_master.now) set a minute further at each
refresh; the jobs folder is the real shared one, read by the real list.sh; the worker's refresh
publishes its busy marker into the cluster's bucket folder, which the master's discovery reads."""

from __future__ import annotations

import io
import json
import os
import stat
from pathlib import Path

import pytest
from node_sim import local_cluster, local_settings

from cfn_chainermn.cli.idle_view import idle_text
from cfn_chainermn.errors import AgentError
from cfn_chainermn.names import IDLE_STATUS
from cfn_chainermn.node import agent, idle_marker, idle_master

T0 = 1_767_000_000.0
IDS = ["m", "w1"]


@pytest.fixture
def master(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "lc"
    local_cluster(d, IDS)
    for i in range(len(IDS)):
        agent.boot(local_settings(d, IDS, i), echo=io.StringIO())
    proc = tmp_path / "proc"
    proc.mkdir()
    monkeypatch.setattr(idle_master, "PROC", proc)  # this machine's own sessions are not the cluster's
    (tmp_path / "worker-proc").mkdir()
    monkeypatch.setattr(idle_marker, "PROC", str(tmp_path / "worker-proc"))  # nor the worker's
    return d


def _refresh_at(d: Path, monkeypatch: pytest.MonkeyPatch, minute: float, node: int = 0) -> None:
    monkeypatch.setattr(idle_master, "now", lambda: T0 + minute * 60)
    monkeypatch.setattr(idle_marker, "now", lambda: T0 + minute * 60)
    agent.refresh(local_settings(d, IDS, node), echo=io.StringIO())


def test_an_idle_local_cluster_warns_then_acts_once_and_a_queued_job_holds_it_off(
        master: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = master
    (d / idle_master.LOCAL_LIMITS).write_text(json.dumps({"IdleMinutes": "10", "IdleAction": "delete",
                                                          "created": T0}))
    job = d / "shared" / "jobs" / "20260102-030405-a"
    job.mkdir(parents=True)
    start = Path(f"/proc/{os.getpid()}/stat").read_text().rpartition(")")[2].split()[19]
    (job / "queued").write_text(f"{os.getpid()} {start}\n")  # a job waits in the queue: busy
    for minute in range(0, 30, 5):
        _refresh_at(d, monkeypatch, minute)
    status = json.loads((d / "bucket" / IDLE_STATUS).read_text())
    assert status["busy"] == ["job 20260102-030405-a (queued)"] and status["deadline"] is None
    assert not (d / idle_master.LOCAL_ACTION).exists()

    (job / "cancelled").write_text("")  # the queue is empty from minute 30: idle
    for minute in (30, 31, 35):
        _refresh_at(d, monkeypatch, minute)
        _refresh_at(d, monkeypatch, minute, node=1)  # a worker's refresh counts nothing
    status = json.loads((d / "bucket" / IDLE_STATUS).read_text())
    assert (status["idle_since"], status["deadline"]) == (T0 + 30 * 60, T0 + 40 * 60)
    wall = d / "nodes" / "m" / idle_master.LOCAL_WALL
    assert "be deleted in about 5 minutes (idle for 10 minutes). A job or an ssh login keeps it" in wall.read_text()
    assert not (d / idle_master.LOCAL_ACTION).exists()

    for minute in (39, 40, 41, 45):
        _refresh_at(d, monkeypatch, minute)
    action = json.loads((d / idle_master.LOCAL_ACTION).read_text())
    assert action == {"action": "delete", "reason": "idle for 10 minutes", "time": T0 + 40 * 60}
    assert len(wall.read_text().splitlines()) == 1
    log = (d / "nodes" / "m" / "agent.log").read_text()
    assert log.count("idle: idle for 10 minutes: local cluster: delete recorded") == 1
    assert log.count("idle: already asked to delete") == 2
    assert "idle:" not in (d / "nodes" / "w1" / "agent.log").read_text()


def test_without_limits_the_master_says_off_and_never_acts(master: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for minute in (0, 600, 6000):
        _refresh_at(master, monkeypatch, minute)
    assert json.loads((master / "bucket" / IDLE_STATUS).read_text())["idle_minutes"] is None
    assert not (master / idle_master.LOCAL_ACTION).exists()


def test_a_job_on_a_worker_alone_keeps_the_cluster_busy_until_the_worker_is_gone(
        master: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`ssh w1 nohup mpiexec ...` started from w1 itself: nothing on the master, an MPI daemon and a
    session on w1. Its marker holds the cluster; once w1 leaves the inventory (terminated) the
    marker it left behind counts for nothing."""
    d = master
    (d / idle_master.LOCAL_LIMITS).write_text(json.dumps({"IdleMinutes": "10", "IdleAction": "delete",
                                                          "created": T0}))
    worker_proc = Path(idle_marker.PROC)
    for pid, cmdline in {"7": b"/opt/amazon/openmpi/bin/orted\0", "9": b"sshd: chainer@notty\0"}.items():
        (worker_proc / pid).mkdir()
        (worker_proc / pid / "cmdline").write_bytes(cmdline)
    marker = d / "bucket" / "nodes" / "w1" / "busy"
    for minute in range(0, 30, 5):
        _refresh_at(d, monkeypatch, minute, node=1)
        _refresh_at(d, monkeypatch, minute)
    status = json.loads((d / "bucket" / IDLE_STATUS).read_text())
    assert status["busy"] == ["w1: orted (pid 7)", "w1: chainer@notty"] and status["deadline"] is None
    assert json.loads(marker.read_text()) == {"node": "w1", "busy": ["orted (pid 7)", "chainer@notty"],
                                              "since": T0}  # written once, when w1 became busy
    assert "busy: w1: orted (pid 7), w1: chainer@notty" in idle_text(
        {"IdleMinutes": "10", "MaxHours": "off", "IdleAction": "delete"}, status, T0 + 30 * 60)
    assert not (d / idle_master.LOCAL_ACTION).exists()

    inventory = json.loads((d / "inventory.json").read_text())  # w1 terminated, its marker lingers
    (d / "inventory.json").write_text(json.dumps({"nodes": inventory["nodes"][:1]}))
    _refresh_at(d, monkeypatch, 30)
    status = json.loads((d / "bucket" / IDLE_STATUS).read_text())
    assert status["busy"] == [] and status["idle_since"] == T0 + 30 * 60 and marker.exists()

    (d / "inventory.json").write_text(json.dumps(inventory))  # back (its id is live again): busy again
    _refresh_at(d, monkeypatch, 31)
    assert json.loads((d / "bucket" / IDLE_STATUS).read_text())["busy"] == ["w1: orted (pid 7)", "w1: chainer@notty"]
    for pid in ("7", "9"):  # the job ends: the worker's next refresh removes its marker
        (worker_proc / pid / "cmdline").unlink()
        (worker_proc / pid).rmdir()
    _refresh_at(d, monkeypatch, 32, node=1)
    _refresh_at(d, monkeypatch, 32)
    assert not marker.exists()
    assert json.loads((d / "bucket" / IDLE_STATUS).read_text())["idle_since"] == T0 + 32 * 60
    log = (d / "nodes" / "w1" / "agent.log").read_text()
    # one write when it became busy, one delete when idle again: nothing in the refreshes between
    assert [line.split(" INFO ")[1] for line in log.splitlines() if "busy marker" in line] == [
        "busy marker nodes/w1/busy published: orted (pid 7), chainer@notty", "busy marker nodes/w1/busy removed: idle"]


def test_the_boot_makes_the_jobs_folder_and_its_removal_leaves_no_job_waiting(
        master: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The boot makes the jobs folder (the user's, 0700, as submit.sh makes it). A local cluster's
    shared folder is a plain folder, never an unmounted EFS, so a removed jobs folder (`rm -rf`)
    holds no job: idle, not busy until the next submit makes it again (on AWS, a missing folder
    under an EFS mount point the kernel no longer lists is busy: tests/node/test_idle_probe.py)."""
    d = master
    jobs = d / "shared" / "jobs"
    st = jobs.lstat()
    assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o700 and st.st_uid == os.getuid()
    (d / idle_master.LOCAL_LIMITS).write_text(json.dumps({"IdleMinutes": "10", "created": T0}))
    jobs.rmdir()
    for minute in (0, 20):
        _refresh_at(d, monkeypatch, minute)
    status = json.loads((d / "bucket" / IDLE_STATUS).read_text())
    assert (status["busy"], status["idle_since"], status["deadline"]) == ([], T0, T0 + 10 * 60)


def test_a_worker_whose_discovery_fails_still_publishes_its_marker(
        master: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The marker is the worker's own look and its own call: a refresh whose discovery fails (the
    inventory unreadable here; on AWS the view's GET throttled) publishes it all the same, so
    the master does not count a busy worker idle for as long as its discovery fails."""
    d = master
    worker_proc = Path(idle_marker.PROC)
    (worker_proc / "7").mkdir()
    (worker_proc / "7" / "cmdline").write_bytes(b"orted\0")
    inventory = (d / "inventory.json").read_text()
    (d / "inventory.json").write_text("{not json")
    with pytest.raises(AgentError, match=r"^refresh failed: cannot read local inventory .*; kept the last good"):
        _refresh_at(d, monkeypatch, 0, node=1)
    marker = d / "bucket" / "nodes" / "w1" / "busy"
    assert json.loads(marker.read_text())["busy"] == ["orted (pid 7)"]
    (worker_proc / "7" / "cmdline").unlink()
    (worker_proc / "7").rmdir()
    with pytest.raises(AgentError, match=r"^refresh failed: cannot read local inventory"):
        _refresh_at(d, monkeypatch, 1, node=1)
    assert not marker.exists()  # idle again: removed, still without a discovery
    (d / "inventory.json").write_text(inventory)
    _refresh_at(d, monkeypatch, 2, node=1)


def test_a_link_planted_where_the_jobs_folder_goes_fails_the_boot_and_is_not_followed(tmp_path: Path) -> None:
    d = tmp_path / "lc"
    local_cluster(d, IDS)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o755)
    (d / "shared").mkdir()
    (d / "shared" / "jobs").symlink_to(elsewhere)
    with pytest.raises(AgentError, match=r"efs step failed: ~/jobs in .*/shared is a symbolic link: refused"):
        agent.boot(local_settings(d, IDS, 0), echo=io.StringIO())
    assert stat.S_IMODE(elsewhere.stat().st_mode) == 0o755 and list(elsewhere.iterdir()) == []


def test_a_marker_that_cannot_be_written_fails_the_refresh_and_is_tried_again(
        master: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = master
    worker_proc = Path(idle_marker.PROC)
    (worker_proc / "7").mkdir()
    (worker_proc / "7" / "cmdline").write_bytes(b"orted\0")
    marker = d / "bucket" / "nodes" / "w1" / "busy"
    marker.mkdir()  # in its way: the write fails
    with pytest.raises(AgentError, match=r"^refresh: busy marker: "):
        _refresh_at(d, monkeypatch, 0, node=1)
    assert "ERROR busy marker: " in (d / "nodes" / "w1" / "agent.log").read_text()
    marker.rmdir()
    _refresh_at(d, monkeypatch, 1, node=1)  # nothing was recorded as published: written now
    assert json.loads(marker.read_text())["busy"] == ["orted (pid 7)"]
