"""The job queue (jobs/sh/queue.sh) on its own: whole nodes per job from the master's ready set
as it is now, first come first served, `--no-wait`, cancel and a client that goes away while its
job waits; a job that never ran is an error of ours (NotStarted), not an exit code of the job's.

Each job is the exact command `job submit` sends, run as the master's sshd would (`sh -c` in a
session of its own, the channel's stdin kept open while the client is there); its cmd.sh runs a
shell loop in place of mpiexec that ends when the test drops a `release` file into its folder.
The nodes are made up (no MPI here): what is checked is which nodes each job was given, and when.
The master's ready set is `$HOME/hostfile` (the node agent's; HOME is a folder of the test's),
else the nodes ready at submit (`nodes` in the job folder: TWO_NODES here).
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import select
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fake_channel import ShellRemote

from cfn_chainermn.errors import BusyError, NotStarted
from cfn_chainermn.jobs import folder as job_folder
from cfn_chainermn.jobs import mpi, runner
from cfn_chainermn.jobs import scripts as job_scripts

NET = mpi.Network(cidr="127.0.0.0/8", instance_type="local")
TWO_NODES = "10.0.0.1 slots=2\n10.0.0.2 slots=2\n"
QUEUED = job_folder.NOTE + "queued behind "
WAITING = job_folder.NOTE + "queued: waiting for ready nodes: "


def _launch(shared: Path, job_id: str, np: int, per_node: int | None = None) -> job_folder.Launch:
    script = shared.parent / "src" / "train.py"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text("print('hi')\n")
    launch = job_folder.prepare(shared=str(shared), script=script, files=[], hostfile_text=TWO_NODES,
                                job=mpi.Job(program="train.py", np=np, per_node=per_node), net=NET, job_id=job_id)
    # no MPI: the job runs until the test releases it, then says which nodes it was given; one
    # never released (a test that went wrong) ends on its own after a minute or so, exit 9
    cmd = job_scripts.cmd_script(["sh", "-c", "i=0; while [ ! -f release ]; do [ $i -lt 1200 ] || exit 9; "
                                              "sleep 0.05; i=$((i+1)); done; cat hostfile"])
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
        self.buf = ""  # read, not yet taken as lines

    def until(self, wanted: str, timeout: float = 30) -> list[str]:
        """The lines up to and including `wanted`; "" stands for the end of the channel. A line
        that does not come fails the test rather than hanging it."""
        seen = []
        while True:
            while "\n" in self.buf:
                line, self.buf = self.buf.split("\n", 1)
                seen.append(line)
                if line == wanted:
                    return seen
            if not self.more(timeout):
                return [*seen, ""]

    def more(self, timeout: float) -> bool:
        """Read what the channel has (False: it ended); AssertionError after `timeout` of silence."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()  # raw reads only, so select sees everything not yet taken
        if not select.select([fd], [], [], timeout)[0]:
            raise AssertionError(f"nothing more from {self.dir.name} within {timeout}s")
        data = os.read(fd, 1 << 16)
        self.buf += data.decode()
        return bool(data)

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
        while self.more(30):
            pass
        self.tail, self.buf = self.buf, ""
        if not self.proc.stdin.closed:
            self.proc.stdin.close()
        return self.proc.wait(timeout=30)


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The cluster user's home, where the node agent keeps the master's hostfile (none yet)."""
    path = tmp_path / "home"
    path.mkdir()
    monkeypatch.setenv("HOME", str(path))
    return path


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
    with pytest.raises(NotStarted, match=r"^job j2 did not start: its queue process is gone \(killed, or the master "
                                         r"restarted\)$"):
        runner.logs(ShellRemote(), job_folder.JobRef("j2", str(killed.dir)), follow=True, on_line=print)
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


def test_a_waiting_job_gets_a_node_that_became_ready_after_its_submit(shared: Path, home: Path) -> None:
    (home / "hostfile").write_text(TWO_NODES)
    holder = _holder(shared)  # both nodes
    waiter = Master(_launch(shared, "j2", 1))  # its `nodes`: the two, as at its submit
    assert waiter.behind("j1")
    (home / "hostfile").write_text(TWO_NODES + "10.0.0.3 slots=2\n")  # the agent's refresh: a third is ready
    assert waiter.admitted()  # while j1 still holds the other two
    assert waiter.end() == 0 and waiter.tail == "10.0.0.3 slots=2\n"
    assert holder.end() == 0


def test_a_node_that_left_the_ready_set_is_not_given_to_a_waiting_job(shared: Path, home: Path) -> None:
    holder = _holder(shared)  # no agent hostfile yet: the nodes ready at submit
    waiter = Master(_launch(shared, "j2", 1))
    assert waiter.behind("j1")
    (home / "hostfile").write_text("10.0.0.2 slots=2\n")  # 10.0.0.1 was retracted (or terminated) since
    assert holder.end() == 0
    assert waiter.admitted()
    assert waiter.end() == 0 and waiter.tail == "10.0.0.2 slots=2\n"  # not the first of its `nodes`


def test_a_fresh_spot_notice_keeps_its_node_out_and_an_old_one_is_dropped(shared: Path, home: Path) -> None:
    (home / "hostfile").write_text(TWO_NODES)  # the master's refresh has not dropped 10.0.0.1 yet
    book = shared / "jobs" / ".queue"
    book.mkdir(parents=True)
    fresh, old = book / "gone.10.0.0.1", book / "gone.10.0.0.2"  # as node/spot.py writes them
    fresh.write_text("i-0aaa 2026-12-02T21:00:00Z\n")
    old.write_text("i-0bbb 2026-12-02T20:50:00Z\n")
    six_minutes_ago = time.time() - 360
    os.utime(old, (six_minutes_ago, six_minutes_ago))  # its node is long gone, or was replaced at that address
    job = Master(_launch(shared, "j1", 1))
    assert job.admitted()
    assert fresh.exists() and not old.exists()  # dropped under the lock
    assert job.end() == 0 and job.tail == "10.0.0.2 slots=2\n"


def test_a_job_bigger_than_the_ready_set_says_so_and_no_later_job_overtakes_it(shared: Path, home: Path) -> None:
    (home / "hostfile").write_text("10.0.0.1 slots=2\n")  # one of the two nodes of its submit is ready now
    big = Master(_launch(shared, "j1", 4, per_node=2))
    assert big.until(WAITING + "needs 4 ranks (2 per node), 1 ready") == [
        job_folder.LAUNCHED, WAITING + "needs 4 ranks (2 per node), 1 ready"]
    small = Master(_launch(shared, "j2", 1))
    assert small.behind("j1")  # 10.0.0.1 is free, but j1 came first
    (home / "hostfile").write_text("")  # an empty agent hostfile: the nodes ready at submit
    assert big.admitted()
    assert big.end() == 0 and big.tail == TWO_NODES
    assert small.admitted() and small.end() == 0


@pytest.mark.parametrize(("per_node", "why"), [(2, "needs 4 ranks (2 per node), 1 ready"),
                                               (None, "needs 4 ranks, 1 ready (2 slots)")])
def test_no_wait_names_a_ready_set_too_small(shared: Path, home: Path, per_node: int | None, why: str) -> None:
    (home / "hostfile").write_text("10.0.0.2 slots=2\n")
    launch = _launch(shared, "j1", 4, per_node=per_node)
    with pytest.raises(BusyError, match=rf"^job j1 not started \(--no-wait\): not enough ready nodes: "
                                        rf"{re.escape(why)};"):
        runner.start(ShellRemote(), launch, detach=False, on_line=print, wait=False)
    assert not Path(launch.ref.directory).exists()


class Client(threading.Thread):
    """`job submit` attached, through runner.start: its notes, and what it returned or raised."""

    def __init__(self, launch: job_folder.Launch) -> None:
        super().__init__(daemon=True)
        self.launch = launch
        self.notes: queue.Queue[str] = queue.Queue()
        self.lines: list[str] = []
        self.outcome: int | BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            self.outcome = runner.start(ShellRemote(), self.launch, detach=False, on_line=self.lines.append,
                                        on_note=self.notes.put)
        except BaseException as exc:  # handed to the test
            self.outcome = exc


def test_a_job_cancelled_while_queued_did_not_start_and_that_is_ours(shared: Path) -> None:
    holder = _holder(shared)
    client = Client(_launch(shared, "j2", 1))
    assert client.notes.get(timeout=20) == "job j2 queued behind j1"
    ref = job_folder.JobRef("j2", client.launch.ref.directory)
    assert runner.cancel(ShellRemote(), ref) is True
    client.join(timeout=20)
    assert isinstance(client.outcome, NotStarted), client.outcome  # not the 143 of a script killed by TERM
    assert str(client.outcome) == "job j2 did not start: cancelled while queued"
    assert client.outcome.exit_code == 125 and client.lines == []
    assert [(j.job_id, j.state, j.exit_code) for j in runner.list_jobs(ShellRemote(), str(shared))] == [
        ("j1", "running", None), ("j2", "cancelled", None)]
    for follow in (False, True):  # `job logs`: the same error, not an exit code
        with pytest.raises(NotStarted, match=r"^job j2 did not start: cancelled while queued$"):
            runner.logs(ShellRemote(), ref, follow=follow, on_line=client.lines.append)
    assert client.lines == []
    assert holder.end() == 0


def test_a_queue_that_fails_is_ours_not_the_jobs(shared: Path, tmp_path: Path) -> None:
    (shared / "jobs").mkdir(parents=True)
    (shared / "jobs" / ".lock").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(NotStarted, match=rf"^job j1 did not start: {shared}/jobs/\.lock is a link; refusing it$"):
        runner.start(ShellRemote(), _launch(shared, "j1", 1), detach=False, on_line=print)


def test_a_detached_waiter_that_cannot_start_is_ours(shared: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    holder = _holder(shared)
    broken = tmp_path / "bin"
    broken.mkdir()
    (broken / "setsid").write_text("#!/bin/sh\nexit 1\n")  # the waiter's own session cannot be made
    (broken / "setsid").chmod(0o755)
    monkeypatch.setenv("PATH", f"{broken}:{os.environ['PATH']}")
    launch = _launch(shared, "j2", 1)
    with pytest.raises(NotStarted, match=r"^job j2 did not start: the queue process did not start "
                                         r"\(see .*/j2/queue\.log\)$"):
        runner.start(ShellRemote(), launch, detach=True, on_line=print)
    assert holder.end() == 0


def test_logs_of_a_job_whose_first_line_looks_like_ours_are_the_jobs(tmp_path: Path) -> None:
    folder = tmp_path / "jobs" / "j1"
    folder.mkdir(parents=True)
    (folder / "log").write_text(job_folder.NEVER + "a line the job printed itself\nthen more\n")
    (folder / "exit_code").write_text("0\n")
    lines: list[str] = []
    assert runner.logs(ShellRemote(), job_folder.JobRef("j1", str(folder)), follow=False, on_line=lines.append) == 0
    assert lines == [job_folder.NEVER + "a line the job printed itself", "then more"]
