"""Idle shutdown on a local node, time compressed: a real local master boots and `node refresh`
runs as its timer would, with the master's clock (idle_master.now) set a minute further at each
refresh; the jobs folder is the real shared one, read by the real list.sh."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest
from node_sim import local_cluster, local_settings

from cfn_chainermn.names import IDLE_STATUS
from cfn_chainermn.node import agent, idle_master

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
    return d


def _refresh_at(d: Path, monkeypatch: pytest.MonkeyPatch, minute: float, node: int = 0) -> None:
    monkeypatch.setattr(idle_master, "now", lambda: T0 + minute * 60)
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
    assert "will be deleted in about 5 minute(s) (idle for 10 minutes)" in wall.read_text()
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
