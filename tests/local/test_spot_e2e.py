"""Spot that fails soft (issue 13 item 3) on a real local cluster: the IMDS stand-in serves an
interruption notice to worker-1's watch (`node spot-watch`, as the systemd service runs it on a
Spot instance) while a job runs there. The node leaves the ready set, the job's log names the
node and the time, and the job ends at once with a failure instead of hanging in its allreduce."""

from __future__ import annotations

import errno
import json
import pwd
import stat
import subprocess
from pathlib import Path

import pytest
from imds_stand_in import ImdsStandIn
from localcluster import ROOT, LocalCluster, rank_pids, wait_until

from cfn_chainermn.node import spot_environ
from cfn_chainermn.node.spot_ranks import Ranks

pytestmark = pytest.mark.slow
SCRIPTS = Path(__file__).resolve().parent / "scripts"
NOTICE = {"action": "terminate", "time": "2026-12-02T21:00:00Z"}


def _found_by_their_daemon_too(cluster: LocalCluster, job_id: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the watch's daemon rule (node/spot_ranks.py) assumes of OpenMPI, checked on its real
    process tree: worker-1's rank, found by its environment, is found again when no rank's
    environment can be read (each as if held on a hung shared folder), by its parent alone."""
    user = pwd.getpwnam(str(cluster.state["user"]))
    ranks = Ranks(Path("/proc"), user.pw_uid, "127.0.0.3", int(str(cluster.state["port"])))
    found = [r for r in ranks.scan() if r.pid in rank_pids(job_id, "allreduce_loop.py")]
    assert len(found) == 1, found
    held = {Path(f"/proc/{pid}/environ") for pid in rank_pids(job_id, "allreduce_loop.py")}
    real = spot_environ.read_environ

    def read_environ(path: Path) -> bytes:
        if path in held:
            raise OSError(errno.EIO, "held (a stand-in)")
        return real(path)
    with monkeypatch.context() as patched:
        patched.setattr(spot_environ, "read_environ", read_environ)
        assert Ranks(Path("/proc"), user.pw_uid, "127.0.0.3", int(str(cluster.state["port"]))).scan() == found


def test_interruption_notice_retracts_the_node_and_fails_its_job_fast(cluster: LocalCluster,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    ready = cluster.state_dir / "bucket" / "nodes" / "worker-1" / "ready"
    mark = ready.read_bytes()
    res = cluster.cli("job", "submit", "local", "-n", "3", "-N", "1", "--detach",
                      str(SCRIPTS / "allreduce_loop.py"), "--", "300")
    assert res.returncode == 0, res.stdout + res.stderr
    job_id = res.stdout.strip()
    job_dir = cluster.shared / "jobs" / job_id
    assert wait_until(lambda: len(rank_pids(job_id, "allreduce_loop.py")) == 3, 30)
    _found_by_their_daemon_too(cluster, job_id, monkeypatch)
    imds = ImdsStandIn({})  # no notice yet: 404, as on an instance EC2 keeps
    watch = subprocess.Popen(cluster.args("node", "spot-watch", "--backend", "local", "--node-id", "worker-1",
                                          "--imds-url", imds.url, "--interval", "0.2"),
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        polls = lambda: sum(1 for r in imds.requests if r[1].endswith("spot/instance-action"))  # noqa: E731
        assert wait_until(lambda: polls() >= 3, 30)
        assert ready.exists() and not (job_dir / "exit_code").exists(), "the watch acted without a notice"
        imds.meta["spot/instance-action"] = json.dumps(NOTICE)
        assert wait_until(lambda: (job_dir / "exit_code").exists(), 30), (job_dir / "log").read_text()
        log = (job_dir / "log").read_text()
        assert (job_dir / "exit_code").read_text().strip() != "0", log
        told = [line for line in log.splitlines() if "Spot interruption notice" in line]
        assert len(told) == 1, log
        assert "on node worker-1 (127.0.0.3): EC2 will terminate it at 2026-12-02T21:00:00Z" in told[0]
        assert "finished" not in log
        assert not ready.exists()
        gone = cluster.shared / "jobs" / ".queue" / "gone.127.0.0.3"  # the queue's word that the node goes
        assert gone.read_text() == "worker-1 2026-12-02T21:00:00Z\n" and stat.S_IMODE(gone.stat().st_mode) == 0o600
        assert wait_until(lambda: not rank_pids(job_id, "allreduce_loop.py"), 30)
        # a new job is not placed on the node: its hostfile holds the two nodes still ready
        res = cluster.cli("job", "submit", "local", "-n", "2", "-N", "1", str(SCRIPTS / "hostname.sh"))
        assert res.returncode == 0, res.stdout + res.stderr
        new_id = res.stderr.split()[1].rstrip(":")
        assert [line.split()[0] for line in (cluster.shared / "jobs" / new_id / "hostfile").read_text().splitlines()
                ] == ["127.0.0.2", "127.0.0.4"]
        agent_log = (cluster.state_dir / "nodes" / "worker-1" / "agent.log").read_text()
        assert "spot watch: Spot interruption notice: terminate at 2026-12-02T21:00:00Z" in agent_log
        assert f"job {job_id} told" in agent_log
    finally:
        watch.terminate()
        watch.wait(timeout=30)
        imds.close()
        ready.write_bytes(mark)  # the session's other tests want all three nodes, the queue too,
        (cluster.shared / "jobs" / ".queue" / "gone.127.0.0.3").unlink(missing_ok=True)
        (cluster.state_dir / "nodes" / "worker-1" / "spot.json").unlink(missing_ok=True)  # and no notice half done
