"""One job per node on a real 3-node local cluster (issue 13 item 4): two `job submit`s from two
clients at once never share a node, the second waits in the master's queue until the first has
ended; a client killed while its job waits leaks nothing; `--no-wait` and `job cancel` of a queued
job; a waiting job is placed on the master's ready set as it is now. Most jobs here need all three
nodes (one slot each). Order is asserted, never timing: the jobs write `start`/`end` lines to one
file and wait for the test's go-ahead file."""

from __future__ import annotations

import os
import pwd
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from localcluster import ROOT, LocalCluster, wait_until

pytestmark = pytest.mark.slow
SCRIPTS = Path(__file__).resolve().parent / "scripts"
STARTED = re.compile(r"^job (\S+): 3 ranks on 3 nodes", re.MULTILINE)


@pytest.fixture
def turns(cluster: LocalCluster) -> Iterator[tuple[Path, Path]]:
    """The order file and the go-ahead file, on the shared folder; at the end no job of ours runs."""
    log, go = cluster.shared / f"turns-{os.getpid()}.log", cluster.shared / f"go-{os.getpid()}"
    yield log, go
    go.touch()  # whatever still waits ends
    for line in cluster.cli("job", "list", "local").stdout.splitlines()[1:]:
        job_id, state = line.split()[:2]
        if state in ("queued", "running"):
            cluster.cli("job", "cancel", "local", job_id)
    log.unlink(missing_ok=True)
    go.unlink()


def _submit(cluster: LocalCluster, log: Path, go: Path, *flags: str) -> subprocess.Popen[str]:
    return subprocess.Popen(cluster.args("job", "submit", "local", "-n", "3", "-N", "1", *flags,
                                         str(SCRIPTS / "turn.py"), "--", str(log), str(go)),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)


def _states(cluster: LocalCluster) -> dict[str, str]:
    rows = cluster.cli("job", "list", "local").stdout.splitlines()[1:]
    return {row.split()[0]: row.split()[1] for row in rows}


def _queue_processes(job_folder: Path) -> list[int]:
    """Live processes working in the job's folder: its queue process and watchdog while it waits."""
    out = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.readlink(f"/proc/{entry}/cwd") == str(job_folder) and \
                    Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                out.append(int(entry))
        except OSError:
            continue
    return out


def test_two_concurrent_submits_never_share_a_node(cluster: LocalCluster, turns: tuple[Path, Path]) -> None:
    log, go = turns
    clients = [_submit(cluster, log, go) for _ in range(2)]  # two clients, at once
    # one runs (its ranks hold all three nodes), the other waits in the queue
    assert wait_until(lambda: sorted(_states(cluster).get(j, "") for j in _ids_in(log)) == ["running"]
                      and "queued" in _states(cluster).values(), 60), _states(cluster)
    go.touch()
    outs = [c.communicate(timeout=180) for c in clients]
    assert [c.returncode for c in clients] == [0, 0], outs
    ids = [STARTED.search(err).group(1) for _, err in outs]  # type: ignore[union-attr]
    waited = [i for i, (_, err) in enumerate(outs) if "queued behind" in err]
    assert len(waited) == 1, outs
    second, first = ids[waited[0]], ids[1 - waited[0]]
    assert f"job {second} queued behind {first}\n" in outs[waited[0]][1]
    events = [line.split()[:2] for line in log.read_text().splitlines()]
    # every rank of the first ended before any rank of the second started: no node was shared
    assert events == [["start", first]] * 3 + [["end", first]] * 3 + [["start", second]] * 3 + \
        [["end", second]] * 3, events


def _ids_in(log: Path) -> set[str]:
    return {line.split()[1] for line in log.read_text().splitlines()} if log.exists() else set()


def test_a_killed_client_leaks_no_place_and_no_wait_and_cancel(cluster: LocalCluster,
                                                               turns: tuple[Path, Path]) -> None:
    log, go = turns
    holder = cluster.cli("job", "submit", "local", "-n", "3", "-N", "1", "--detach", str(SCRIPTS / "turn.py"), "--",
                         str(log), str(go))
    assert holder.returncode == 0, holder.stderr
    held = holder.stdout.strip()
    assert wait_until(lambda: len(log.read_text().splitlines()) == 3 if log.exists() else False, 60)
    # a client killed while its job waits: the queue entry goes with the channel, no process is left
    doomed = _submit(cluster, log, go)
    assert doomed.stderr is not None
    first = doomed.stderr.readline()
    doomed_id = STARTED.match(first).group(1)  # type: ignore[union-attr]
    assert doomed.stderr.readline() == f"job {doomed_id} queued behind {held}\n"
    folder = cluster.shared / "jobs" / doomed_id
    assert _queue_processes(folder)
    doomed.send_signal(signal.SIGKILL)
    doomed.wait(timeout=30)
    assert wait_until(lambda: not _queue_processes(folder), 30), _queue_processes(folder)
    assert _states(cluster)[doomed_id] == "cancelled"
    # --no-wait: the holder alone is in the way, not the dead client's job; exit 75, nothing left
    busy = cluster.cli("job", "submit", "local", "-n", "1", "--no-wait", str(SCRIPTS / "turn.py"), "--", str(log),
                       str(go))
    assert busy.returncode == 75, busy.stderr
    assert re.search(rf"^error: job (\S+) not started \(--no-wait\): its nodes are held or queued for "
                     rf"\(behind {held}\);", busy.stderr, re.MULTILINE), busy.stderr
    # a queued detached job, cancelled: out of the queue, no process left
    queued = cluster.cli("job", "submit", "local", "-n", "1", "--detach", str(SCRIPTS / "turn.py"), "--", str(log),
                         str(go))
    assert queued.returncode == 0 and "queued behind" in queued.stderr, queued.stderr
    queued_id = queued.stdout.strip()
    assert _states(cluster)[queued_id] == "queued"
    cancel = cluster.cli("job", "cancel", "local", queued_id)
    assert (cancel.returncode, cancel.stdout) == (0, f"job {queued_id} cancelled\n"), cancel.stderr
    assert wait_until(lambda: not _queue_processes(cluster.shared / "jobs" / queued_id), 30)
    assert _states(cluster)[queued_id] == "cancelled"
    # an attached job cancelled while queued: its client says it did not start (ours, 125), not "exited 143"
    attached = _submit(cluster, log, go)
    assert attached.stderr is not None
    attached_id = STARTED.match(attached.stderr.readline()).group(1)  # type: ignore[union-attr]
    assert attached.stderr.readline() == f"job {attached_id} queued behind {held}\n"
    assert cluster.cli("job", "cancel", "local", attached_id).returncode == 0
    _, rest = attached.communicate(timeout=30)
    assert (attached.returncode, rest) == (125, f"error: job {attached_id} did not start: cancelled while queued\n")
    go.touch()
    assert wait_until(lambda: _states(cluster)[held] == "exited", 60)
    now = cluster.cli("job", "submit", "local", "-n", "3", "-N", "1", "--no-wait", str(SCRIPTS / "turn.py"), "--",
                      str(log), str(go))
    assert now.returncode == 0, now.stderr  # every node is free again: nothing leaked
    assert "queued" not in now.stderr


def _refresh_master(cluster: LocalCluster) -> list[str]:
    """The master's `node refresh` (its timer on AWS): its hostfile's addresses afterwards."""
    res = cluster.cli("node", "refresh", "--backend", "local", "--node-id", "master")
    assert res.returncode == 0, res.stdout + res.stderr
    hostfile = Path(str(cluster.state["home"])) / "hostfile"
    return [line.split()[0] for line in hostfile.read_text().splitlines()]


def test_a_waiting_job_gets_a_node_ready_since_its_submit_but_not_one_going(cluster: LocalCluster,
                                                                            turns: tuple[Path, Path]) -> None:
    """The queue places a waiting job on the master's ready set as it is when its turn comes (the
    agent's hostfile), less a node whose Spot watch wrote a gone entry, not on the nodes of its submit."""
    log, go = turns
    markers = {w: cluster.state_dir / "bucket" / "nodes" / w / "ready" for w in ("worker-1", "worker-2")}
    kept = {w: m.read_bytes() for w, m in markers.items()}
    book = cluster.shared / "jobs" / ".queue"
    gone = book / "gone.127.0.0.3"  # worker-1's, as its Spot watch writes it on a notice
    try:
        for mark in markers.values():  # both workers not ready (yet)
            mark.unlink()
        assert _refresh_master(cluster) == ["127.0.0.2"]
        holder = cluster.cli("job", "submit", "local", "-n", "1", "--detach", str(SCRIPTS / "turn.py"), "--",
                             str(log), str(go))
        assert holder.returncode == 0, holder.stderr
        held = holder.stdout.strip()
        assert wait_until(lambda: _ids_in(log) == {held}, 60)  # running on the master
        waiter = cluster.cli("job", "submit", "local", "-n", "1", "--detach", str(SCRIPTS / "turn.py"), "--",
                             str(log), str(go))
        assert waiter.returncode == 0 and f"queued behind {held}" in waiter.stderr, waiter.stderr
        waiting = waiter.stdout.strip()
        assert (cluster.shared / "jobs" / waiting / "nodes").read_text() == "127.0.0.2 slots=1\n"  # at its submit
        gone.write_text("i-local-worker-1 2026-12-02T21:00:00Z\n")
        user = pwd.getpwnam(str(cluster.state["user"]))
        os.chown(gone, user.pw_uid, user.pw_gid)
        gone.chmod(0o600)
        for worker, mark in markers.items():  # both workers ready again: the master's next refresh lists them
            mark.write_bytes(kept[worker])
        assert _refresh_master(cluster) == ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
        assert wait_until(lambda: _ids_in(log) == {held, waiting}, 60), _states(cluster)  # while the holder runs
        hostfile = (cluster.shared / "jobs" / waiting / "hostfile").read_text()
        assert hostfile == "127.0.0.4 slots=1\n"  # worker-2: not the held master, not the going worker-1
        go.touch()
        assert wait_until(lambda: _states(cluster).get(waiting) == _states(cluster).get(held) == "exited", 60)
    finally:
        gone.unlink(missing_ok=True)
        for worker, mark in markers.items():
            if not mark.exists():
                mark.write_bytes(kept[worker])
        _refresh_master(cluster)  # the session's other tests want all three nodes
