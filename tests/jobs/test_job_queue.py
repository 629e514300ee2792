"""The job queue (jobs/sh/queue.sh) on its own: whole nodes per job, first come first served,
`--no-wait`, cancel and a client that goes away while its job waits.

Each job is the exact command `job submit` sends, run as the master's sshd would (`sh -c` in a
session of its own, the channel's stdin kept open while the client is there); its cmd.sh runs a
shell loop in place of mpiexec that ends when the test drops a `release` file into its folder.
The nodes are made up (no MPI here): what is checked is which nodes each job was given, and when.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fake_channel import ShellRemote

from cfn_chainermn.errors import BusyError
from cfn_chainermn.jobs import folder as job_folder
from cfn_chainermn.jobs import mpi, runner
from cfn_chainermn.jobs import scripts as job_scripts

NET = mpi.Network(cidr="127.0.0.0/8", instance_type="local")
TWO_NODES = "10.0.0.1 slots=2\n10.0.0.2 slots=2\n"
QUEUED = job_folder.NOTE + "queued behind "


def _launch(shared: Path, job_id: str, np: int, per_node: int | None = None) -> job_folder.Launch:
    script = shared.parent / "src" / "train.py"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text("print('hi')\n")
    launch = job_folder.prepare(shared=str(shared), script=script, files=[], hostfile_text=TWO_NODES,
                                job=mpi.Job(program="train.py", np=np, per_node=per_node), net=NET, job_id=job_id)
    # no MPI: the job runs until the test releases it, then says which nodes it was given
    cmd = job_scripts.cmd_script(["sh", "-c", "while [ ! -f release ]; do sleep 0.05; done; cat hostfile"])
    return job_folder.Launch(launch.ref, launch.job, tuple((n, cmd if n == "cmd.sh" else t) for n, t in launch.written),
                             launch.sent)


class Master:
    """One `job submit` channel: its command in a session of its own (as sshd runs it), stdin open."""

    def __init__(self, launch: job_folder.Launch, mode: str = "attach", *, wait: bool = True) -> None:
        self.dir = Path(launch.ref.directory)
        self.proc = subprocess.Popen(["sh", "-c", launch.command(mode, wait=wait)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        assert self.proc.stdin is not None
        self.proc.stdin.write(launch.payload())
        self.proc.stdin.flush()

    def until(self, wanted: str) -> list[str]:
        """The lines up to and including `wanted`; "" stands for the end of the channel."""
        assert self.proc.stdout is not None
        seen = []
        while raw := self.proc.stdout.readline():
            seen.append(raw.decode().rstrip("\n"))
            if seen[-1] == wanted:
                return seen
        return [*seen, ""]

    def admitted(self) -> bool:
        """Read until the job has its nodes (True), or the channel ends (False)."""
        return self.until(job_folder.ADMITTED)[-1] == job_folder.ADMITTED

    def behind(self, job_id: str) -> bool:
        """Read until the queue says the job waits behind `job_id` (True), or the channel ends."""
        return self.until(QUEUED + job_id)[-1] == QUEUED + job_id

    def release(self) -> None:
        (self.dir / "release").touch()

    def leave(self) -> None:
        """The client goes away: sshd closes the command's stdin."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()

    def end(self) -> int:
        """Release the job; its exit code, and what it printed in the end (`tail`)."""
        assert self.proc.stdout is not None and self.proc.stdin is not None
        self.release()
        self.tail = self.proc.stdout.read().decode()
        if not self.proc.stdin.closed:
            self.proc.stdin.close()
        return self.proc.wait(timeout=30)


@pytest.fixture
def shared(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "shared"
    for d in (tmp_path / "shared" / "jobs").glob("*/"):  # nothing of a test may outlive it
        (d / "release").touch()
        for pid in _procs_in(d):
            with contextlib.suppress(ProcessLookupError):  # it ended on its own meanwhile
                os.kill(pid, signal.SIGKILL)


def _procs_in(folder: Path) -> list[int]:
    """Live processes whose working folder is `folder` (queue.sh and its children work there)."""
    out = []
    for entry in os.listdir("/proc"):
        try:
            if (entry.isdigit() and os.readlink(f"/proc/{entry}/cwd") == str(folder)
                    and Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"):
                out.append(int(entry))
        except OSError:
            continue
    return out


def _wait(predicate: object, timeout: float = 20) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return bool(predicate())  # type: ignore[operator]


def _holder(shared: Path) -> Master:
    """Job j1, on both nodes, running."""
    holder = Master(_launch(shared, "j1", 4))
    assert holder.admitted()
    return holder


def _states(shared: Path) -> dict[str, str]:
    return {j.job_id: j.state for j in runner.list_jobs(ShellRemote(), str(shared))}


def test_a_job_waits_for_the_nodes_another_holds_and_starts_when_it_ends(shared: Path) -> None:
    first = _holder(shared)  # both nodes
    second = Master(_launch(shared, "j2", 1))  # one slot is enough, but the nodes are j1's
    assert second.until(QUEUED + "j1") == [job_folder.LAUNCHED, QUEUED + "j1"]
    assert _states(shared) == {"j1": "running", "j2": "queued"}
    assert not (second.dir / "hostfile").exists()
    assert first.end() == 0 and first.tail == TWO_NODES  # j1 had both nodes
    assert second.admitted()  # only now
    assert second.end() == 0 and second.tail == "10.0.0.1 slots=2\n"  # a whole node, the first one free
    assert _states(shared) == {"j1": "exited", "j2": "exited"}


def test_jobs_that_fit_together_run_at_once_on_disjoint_nodes(shared: Path) -> None:
    one, two = Master(_launch(shared, "j1", 2)), Master(_launch(shared, "j2", 1, per_node=1))
    assert one.admitted() and two.admitted()
    assert one.end() == two.end() == 0
    assert {one.tail, two.tail} == {"10.0.0.1 slots=2\n", "10.0.0.2 slots=2\n"}


def test_first_come_first_served_a_small_job_does_not_overtake_a_waiting_big_one(shared: Path) -> None:
    holder = Master(_launch(shared, "j1", 1))  # node 1
    assert holder.admitted()
    big = Master(_launch(shared, "j2", 4))  # needs both: waits for j1
    assert big.behind("j1")
    small = Master(_launch(shared, "j3", 1))  # node 2 is free, but j2 came first
    assert small.behind("j2")
    assert holder.end() == 0
    assert big.admitted()
    assert _states(shared)["j3"] == "queued"  # behind j2 now, which holds both nodes
    assert big.end() == 0
    assert small.admitted()
    assert small.end() == 0 and small.tail == "10.0.0.1 slots=2\n"


def test_no_wait_fails_at_once_and_leaves_nothing(shared: Path) -> None:
    holder = _holder(shared)
    launch = _launch(shared, "j2", 1)
    with pytest.raises(BusyError, match=r"^job j2 not started \(--no-wait\): its nodes are held or queued for "
                                        r"\(behind j1\); `cfn-chainermn job list NAME` shows the jobs") as info:
        runner.start(ShellRemote(), launch, detach=False, on_line=print, wait=False)
    assert info.value.exit_code == 75
    assert not Path(launch.ref.directory).exists()  # the folder is gone: nothing ran, nothing listed
    assert _states(shared) == {"j1": "running"}
    assert holder.end() == 0


def test_cancel_takes_a_queued_job_out_and_leaves_no_process(shared: Path) -> None:
    holder = _holder(shared)
    queued = Master(_launch(shared, "j2", 1))
    assert queued.behind("j1")
    assert _procs_in(queued.dir)  # its queue process and watchdog wait in its folder
    ref = job_folder.JobRef("j2", str(queued.dir))
    assert runner.cancel(ShellRemote(), ref) is True
    assert queued.until("")[-2:] == [job_folder.NOTE + "cancelled while queued", ""]
    assert queued.proc.wait(timeout=10) == 143
    assert _wait(lambda: not _procs_in(queued.dir)), _procs_in(queued.dir)
    assert _states(shared) == {"j1": "running", "j2": "cancelled"}
    assert runner.cancel(ShellRemote(), ref) is False  # again: nothing to stop
    third = Master(_launch(shared, "j3", 1))
    assert third.behind("j1")  # j2 is no longer in the way
    assert [p.read_text() for p in (shared / "jobs" / ".queue").glob("w.*")] == ["j3\n"]  # j2's entry dropped
    assert holder.end() == 0 and third.end() == 0


def test_a_waiting_job_says_so_again_when_the_job_ahead_changes(shared: Path) -> None:
    holder = _holder(shared)
    middle = Master(_launch(shared, "j2", 1))
    assert middle.behind("j1")
    last = Master(_launch(shared, "j3", 1))
    assert last.behind("j2")
    assert runner.cancel(ShellRemote(), job_folder.JobRef("j2", str(middle.dir))) is True
    assert last.behind("j1")  # j2 left the queue: j3 is at its head, behind the running j1
    assert holder.end() == 0
    assert last.admitted() and last.end() == 0


def test_a_client_that_goes_away_leaves_the_queue(shared: Path) -> None:
    holder = _holder(shared)
    gone = Master(_launch(shared, "j2", 1))
    assert gone.behind("j1")
    gone.leave()  # Ctrl-C, a lost connection or a killed client: sshd closes the channel
    assert gone.proc.wait(timeout=20) == 0
    assert _wait(lambda: not _procs_in(gone.dir)), _procs_in(gone.dir)
    assert _states(shared)["j2"] == "cancelled"
    assert holder.end() == 0


def test_a_killed_queue_process_is_dropped_and_blocks_no_one(shared: Path) -> None:
    holder = _holder(shared)
    killed = Master(_launch(shared, "j2", 4))
    assert killed.behind("j1")
    os.killpg(killed.proc.pid, signal.SIGKILL)  # no trap runs: its queue entry stays behind
    killed.proc.wait(timeout=10)
    assert list((shared / "jobs" / ".queue").glob("w.*"))
    assert _states(shared)["j2"] == "lost"
    later = Master(_launch(shared, "j3", 1))
    assert later.behind("j1")  # behind the holder, not the dead entry
    assert holder.end() == 0
    assert later.admitted()
    assert later.end() == 0


def test_a_detached_job_waits_on_the_master_and_holds_its_nodes_until_it_exits(shared: Path) -> None:
    holder = _holder(shared)
    detached = Master(_launch(shared, "j2", 4), "detach")
    assert detached.until("") == [job_folder.LAUNCHED, QUEUED + "j1", ""]  # returned at once: queued
    assert detached.proc.wait(timeout=10) == 0
    assert _states(shared)["j2"] == "queued"
    logs = subprocess.Popen(["sh", "-c", job_scripts.inline("logs.sh", str(detached.dir), "follow")],
                            stdout=subprocess.PIPE, text=True)
    assert holder.end() == 0
    assert _wait(lambda: _states(shared)["j2"] == "running")
    third = Master(_launch(shared, "j3", 1))
    assert third.behind("j2")  # the detached job holds both nodes now
    detached.release()
    assert logs.communicate(timeout=30) == (TWO_NODES, None) and logs.returncode == 0  # followed from its start
    assert third.admitted()
    assert third.end() == 0


def test_a_waiting_job_whose_folder_is_removed_by_hand_gives_up(shared: Path) -> None:
    holder = _holder(shared)
    orphan = Master(_launch(shared, "j2", 1))
    assert orphan.behind("j1")
    shutil.rmtree(orphan.dir)
    assert orphan.until("")[-2] == f"{job_folder.NOTE}its folder {orphan.dir} is gone"
    assert orphan.proc.wait(timeout=10) == 254
    assert holder.end() == 0


def test_the_lock_file_may_not_be_a_link(shared: Path, tmp_path: Path) -> None:
    (shared / "jobs").mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere"
    (shared / "jobs" / ".lock").symlink_to(elsewhere)
    job = Master(_launch(shared, "j1", 1))
    assert job.until("")[-2] == f"{shared}/jobs/.lock is a link; refusing it"
    assert job.proc.wait(timeout=10) == 254 and not elsewhere.exists()
