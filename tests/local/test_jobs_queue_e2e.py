"""One job per node on a real 3-node local cluster (issue 13 item 4): two `job submit`s from two
clients at once never share a node, the second waits in the master's queue until the first has
ended; a client killed while its job waits leaks nothing; `--no-wait` and `job cancel` of a queued
job. Every job here needs all three nodes (one slot each). Order is asserted, never timing: the
jobs write `start`/`end` lines to one file and wait for the test's go-ahead file."""

from __future__ import annotations

import os
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
    assert wait_until(lambda: not _queue_processes(cluster.shared / "jobs" / queued_id), 15)
    assert _states(cluster)[queued_id] == "cancelled"
    go.touch()
    assert wait_until(lambda: _states(cluster)[held] == "exited", 60)
    now = cluster.cli("job", "submit", "local", "-n", "3", "-N", "1", "--no-wait", str(SCRIPTS / "turn.py"), "--",
                      str(log), str(go))
    assert now.returncode == 0, now.stderr  # every node is free again: nothing leaked
    assert "queued" not in now.stderr
