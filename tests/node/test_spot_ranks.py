"""The Spot watch's ranks (node/spot_ranks.py): a rank is one process, pid and start time, and a
signal reaches that process or none, even when its pid has been given to another process.

Pid reuse is provoked for real where the tests run as root: the rank exits, is reaped, and
/proc/sys/kernel/ns_last_pid makes the next fork take its pid (a new rank of the same user over the
same ssh session, as a job placed next would be). A fake /proc does the same for any user."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from unittest.mock import ANY

import pytest
import spot_run
from spot_run import RUN_PORT, rank_env

from cfn_chainermn.node import spot_environ, spot_proc
from cfn_chainermn.node.spot_attempt import Attempt
from cfn_chainermn.node.spot_environ import Environs
from cfn_chainermn.node.spot_ranks import Rank, Ranks, Signaller

IP, PORT = "127.0.0.3", RUN_PORT  # this run's own port: another run's stand-ins are never found (spot_run.py)
RANK_ENV = rank_env(IP, 1)
NS_LAST_PID = Path("/proc/sys/kernel/ns_last_pid")
as_root = pytest.mark.skipif(
    os.geteuid() != 0 or not os.access(NS_LAST_PID, os.W_OK),
    reason="making the kernel reuse a given pid needs root (writes /proc/sys/kernel/ns_last_pid); the "
           "fake-/proc test below covers the same race as any user")


@pytest.fixture(autouse=True)
def answering_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    """An environment that answers is given all the time it needs (the watch's 1 s is for a
    node, not a loaded test machine): a test that holds a read makes it stuck first (_stuck)."""
    monkeypatch.setattr(spot_environ, "ENVIRON_WAIT_S", 30.0)


def test_a_rank_is_known_by_its_ssh_session_to_the_node() -> None:
    env = b"PATH=/bin\0OMPI_COMM_WORLD_RANK=2\0SSH_CONNECTION=10.0.1.5 40000 10.0.1.7 22\0"
    assert spot_proc.node_of(env) == ("10.0.1.7", 22)
    assert spot_proc.node_of(b"SSH_CONNECTION=10.0.1.5 40000 10.0.1.7 22\0") is None  # a login shell
    assert spot_proc.node_of(b"PMIX_RANK=0\0SSH_CONNECTION=10.0.1.5 40000 10.0.1.7 2222\0") == ("10.0.1.7", 2222)
    assert spot_proc.node_of(b"OMPI_COMM_WORLD_RANK=0\0") is None  # started on this machine without ssh


def test_the_start_time_is_counted_after_the_command_name() -> None:
    fields = " ".join(["S", *map(str, range(4, 22)), "987654", "0"])  # fields 3..23: field 22 is 987654
    assert spot_proc.start_time(f"42 (python) x) {fields}".encode()) == 987654, "a ')' in the name"
    assert spot_proc.start_time(b"42 (sh) S 1 2") is None
    assert Rank.of_key(Rank(42, 987654).key) == Rank(42, 987654)
    assert Rank.of_key("42:x") is None and Rank.of_key("junk") is None


def _start(argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    """A process that has its SIGTERM disposition in place once it printed `ready`."""
    p = subprocess.Popen(argv, env={"PATH": os.environ["PATH"], **env}, stdout=subprocess.PIPE)
    assert p.stdout is not None and p.stdout.readline() == b"ready\n"
    return p


STUBBORN = [sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                                  "print('ready', flush=True); time.sleep(60)"]


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for p in started:
        p.kill()
        p.wait()


def _ranks(proc: Path = Path("/proc")) -> Ranks:
    return Ranks(proc, os.getuid(), IP, PORT)


def _found(ranks: Ranks, pid: int) -> Rank | None:
    """The rank at `pid` as a scan finds it, or None."""
    return next((r for r in ranks.scan() if r.pid == pid), None)


def _reuse(pid: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """A new process at `pid` (the old one reaped), started a clock tick or more after it."""
    time.sleep(0.05)  # /proc's start times count 10 ms ticks: the newcomer's must differ, as it would on a node
    for _ in range(50):  # another process on the machine may fork between the write and ours
        NS_LAST_PID.write_text(str(pid - 1))
        p = _start(STUBBORN, env)
        if p.pid == pid:
            return p
        p.kill()
        p.wait()
    pytest.fail(f"pid {pid} was not reused in 50 tries")


@pytest.fixture(params=["pidfd", "ENOSYS", "a Python without pidfds"])
def signaller(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Signaller:
    """Each test runs with pidfds, and on the old path: a kernel without them, a Python without them."""
    if request.param == "ENOSYS":
        def missing(pid: int, flags: int = 0) -> int:
            raise OSError(errno.ENOSYS, "Function not implemented")
        monkeypatch.setattr(os, "pidfd_open", missing)
    elif request.param != "pidfd":
        monkeypatch.delattr(signal, "pidfd_send_signal")
    return Signaller(_ranks())


def test_a_rank_found_is_signalled_and_ends(signaller: Signaller, procs: list[subprocess.Popen[bytes]]) -> None:
    rank_proc = _start(STUBBORN, RANK_ENV)
    procs.append(rank_proc)
    other = _start(STUBBORN, {**RANK_ENV, "SSH_CONNECTION": "127.0.0.9 41000 127.0.0.2 22"})  # another node's
    procs.append(other)
    found = [r for r in signaller.ranks.scan() if r.pid in (rank_proc.pid, other.pid)]
    assert [r.pid for r in found] == [rank_proc.pid]
    assert signaller.send(found[0], signal.SIGTERM)
    assert (found[0] in signaller.pidfds) is signaller.use_pidfd, "a pidfd is kept where the kernel has them"
    assert signaller.send(found[0], signal.SIGKILL)
    assert rank_proc.wait(timeout=30) == -9
    assert not signaller.send(found[0], signal.SIGKILL), "an ended rank is not reported as killed"
    assert other.poll() is None


def test_a_rank_ended_but_not_yet_reaped_is_not_reported_as_killed(
        signaller: Signaller, procs: list[subprocess.Popen[bytes]]) -> None:
    """A zombie still holds its pid (its parent, sshd or orted, has not waited yet): a signal to
    it would "succeed", so the SIGKILL would be logged for a rank that ended within its grace."""
    rank_proc = _start(STUBBORN, RANK_ENV)
    procs.append(rank_proc)
    found = _found(signaller.ranks, rank_proc.pid)
    assert found is not None and signaller.send(found, signal.SIGTERM)
    os.kill(rank_proc.pid, signal.SIGKILL)
    os.waitid(os.P_PID, rank_proc.pid, os.WEXITED | os.WNOWAIT)  # ended, left unreaped
    assert not signaller.send(found, signal.SIGKILL)


@as_root
def test_a_pid_reused_between_the_scan_and_the_signal_is_not_hit(
        signaller: Signaller, procs: list[subprocess.Popen[bytes]]) -> None:
    rank_proc = _start(STUBBORN, RANK_ENV)
    found = _found(signaller.ranks, rank_proc.pid)
    assert found is not None
    rank_proc.kill()
    rank_proc.wait()  # ended and reaped after the scan: its pid is free
    newcomer = _reuse(found.pid, RANK_ENV)  # the next job's rank, same user, same ssh session
    procs.append(newcomer)
    fresh = _found(signaller.ranks, newcomer.pid)
    assert fresh is not None and fresh.pid == found.pid and fresh != found
    assert not signaller.send(found, signal.SIGTERM)
    assert newcomer.poll() is None and not signaller.pidfds
    assert signaller.send(fresh, signal.SIGKILL), "the newcomer as found itself is reachable"
    assert newcomer.wait(timeout=30) == -9


@as_root
def test_the_sigkill_reaches_only_the_process_that_got_the_sigterm(
        signaller: Signaller, procs: list[subprocess.Popen[bytes]]) -> None:
    rank_proc = _start(STUBBORN, RANK_ENV)
    found = _found(signaller.ranks, rank_proc.pid)
    assert found is not None and signaller.send(found, signal.SIGTERM)  # ignored: still running
    assert rank_proc.poll() is None
    assert (found in signaller.pidfds) is signaller.use_pidfd, "the pidfd is kept for the SIGKILL"
    rank_proc.kill()
    rank_proc.wait()  # it ended in its grace, and the pid went to a new rank
    newcomer = _reuse(found.pid, RANK_ENV)
    procs.append(newcomer)
    assert not signaller.send(found, signal.SIGKILL)
    assert newcomer.poll() is None
    assert not signaller.pidfds, "the ended rank's pidfd is closed"


def _fake(proc: Path, pid: int, start: int, *, uids: tuple[int, int, int] | None = None, ppid: int = 1,
          env: dict[str, str] = RANK_ENV, name: str = "python") -> Path:
    """/proc/PID in a folder of the test's: status (real, effective, saved, fs uids), environ, stat."""
    entry = proc / str(pid)
    entry.mkdir(exist_ok=True)
    r, e, s = uids if uids is not None else (os.getuid(),) * 3
    (entry / "status").write_text(f"Name:\t{name}\nUid:\t{r}\t{e}\t{s}\t{e}\nGid:\t0\t0\t0\t0\n")
    (entry / "environ").write_bytes(b"".join(f"{k}={v}\0".encode() for k, v in env.items()))
    fields = f"S {ppid} " + " ".join(map(str, range(5, 22)))
    (entry / "stat").write_text(f"{pid} ({name}) {fields} {start} 0\n")
    return entry


def test_a_fake_proc_whose_rank_was_replaced_refuses_the_signal(
        signaller: Signaller, procs: list[subprocess.Popen[bytes]], tmp_path: Path) -> None:
    """The same race for any user: /proc says pid P was a rank at the scan, then (the rank gone)
    that P is a process started later; P is a real process that must get nothing."""
    innocent = _start(STUBBORN, {})
    procs.append(innocent)
    _fake(tmp_path, innocent.pid, 1000)
    signaller = Signaller(_ranks(tmp_path), use_pidfd=signaller.use_pidfd)
    found = signaller.ranks.scan()
    assert found == [Rank(innocent.pid, 1000)]
    _fake(tmp_path, innocent.pid, 2000)  # the newcomer
    assert not signaller.send(found[0], signal.SIGTERM)
    assert innocent.poll() is None and not signaller.pidfds


@pytest.mark.parametrize("which", ["real", "effective", "saved"])
def test_a_process_that_is_someone_else_in_any_uid_is_no_rank(tmp_path: Path, which: str) -> None:
    """A set-uid program the user ran (effective root), or a root daemon acting as the user for a
    moment (real root), has the rank's environment but is not the user's to have signalled."""
    me = os.getuid()
    uids = {"real": (me + 1, me, me), "effective": (me, me + 1, me), "saved": (me, me, me + 1)}[which]
    _fake(tmp_path, 4242, 1000, uids=uids)
    _fake(tmp_path, 4243, 1000)
    assert _ranks(tmp_path).scan() == [Rank(4243, 1000)]
    assert not _ranks(tmp_path).same(Rank(4242, 1000))


def test_a_rank_that_became_set_uid_root_in_its_grace_gets_no_sigkill(
        signaller: Signaller, procs: list[subprocess.Popen[bytes]], tmp_path: Path) -> None:
    """Pid and start time survive an execve: a rank that exec'd a set-uid-root program after its
    SIGTERM is the same process, root in its effective and saved uid. The uids are read again
    before the SIGKILL, on a kept pidfd too, and it gets nothing; back to the user's, it does."""
    rank_proc = _start(STUBBORN, RANK_ENV)
    procs.append(rank_proc)
    user = 4000  # the cluster user as the fake /proc has it (the tests may run as root)
    _fake(tmp_path, rank_proc.pid, 1000, uids=(user,) * 3)
    signaller = Signaller(Ranks(tmp_path, user, IP, PORT), use_pidfd=signaller.use_pidfd)
    found = signaller.ranks.scan()
    assert found == [Rank(rank_proc.pid, 1000)] and signaller.send(found[0], signal.SIGTERM)  # ignored
    _fake(tmp_path, rank_proc.pid, 1000, uids=(user, 0, 0))  # exec'd a set-uid-root program
    assert not signaller.send(found[0], signal.SIGKILL)
    assert rank_proc.poll() is None and not signaller.pidfds, "not signalled; its pidfd closed"
    _fake(tmp_path, rank_proc.pid, 1000, uids=(user,) * 3)
    assert signaller.send(found[0], signal.SIGKILL)
    assert rank_proc.wait(timeout=30) == -9


def test_a_ranks_own_children_are_left_to_it(tmp_path: Path, procs: list[subprocess.Popen[bytes]]) -> None:
    """A data loader's workers are forked with their rank's environment: only the rank is
    signalled (and holds a pidfd); a child its rank left behind is found as one at the next scan."""
    parent = _start([sys.executable, "-c", "import subprocess, sys, time; c = subprocess.Popen(['sleep', '60']); "
                                           "print('ready', flush=True); print(c.pid, flush=True); time.sleep(60)"],
                    RANK_ENV)
    procs.append(parent)
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    pids = [r.pid for r in _ranks().scan()]
    assert parent.pid in pids and child not in pids
    _fake(tmp_path, 500, 10)  # the same on a folder: 501 is 500's child, 502 was reparented to 1
    _fake(tmp_path, 501, 11, ppid=500)
    _fake(tmp_path, 502, 12, ppid=1)
    assert [r.pid for r in _ranks(tmp_path).scan()] == [500, 502]
    os.kill(child, signal.SIGKILL)


def test_what_the_watch_cannot_read_is_not_taken_for_the_ranks_end(
        signaller: Signaller, procs: list[subprocess.Popen[bytes]], tmp_path: Path) -> None:
    """A /proc read that fails for the watch's own reasons (EMFILE; here EISDIR, a real error of
    the same kind) is raised, not read as "ended or reused": a rank so misread would never get
    its SIGKILL. Once the read works again the same rank is signalled."""
    rank_proc = _start(STUBBORN, RANK_ENV)
    procs.append(rank_proc)
    entry = _fake(tmp_path, rank_proc.pid, 1000)
    signaller = Signaller(_ranks(tmp_path), use_pidfd=signaller.use_pidfd)
    found = signaller.ranks.scan()
    (entry / "status").unlink()
    (entry / "status").mkdir()
    with pytest.raises(IsADirectoryError):
        signaller.send(found[0], signal.SIGKILL)
    assert rank_proc.poll() is None and not signaller.pidfds, "no pidfd left open"
    (entry / "status").rmdir()
    _fake(tmp_path, rank_proc.pid, 1000)
    assert signaller.send(found[0], signal.SIGKILL)
    assert rank_proc.wait(timeout=30) == -9


def test_a_pid_that_now_names_a_thread_is_not_the_rank(monkeypatch: pytest.MonkeyPatch) -> None:
    """pidfd_open's EINVAL: the pid is not a thread-group leader (pidfd_open(2)), so the rank
    that had it is gone: nothing is sent, and nothing raised at every poll from then on."""
    def thread(pid: int, flags: int = 0) -> int:
        raise OSError(errno.EINVAL, "Invalid argument")
    monkeypatch.setattr(os, "pidfd_open", thread)
    assert not Signaller(_ranks()).send(Rank(os.getpid(), 1), signal.SIGTERM)


def test_pidfds_that_the_kernel_refuses_otherwise_are_not_swallowed(monkeypatch: pytest.MonkeyPatch) -> None:
    def full(pid: int, flags: int = 0) -> int:
        raise OSError(errno.EMFILE, "Too many open files")
    monkeypatch.setattr(os, "pidfd_open", full)
    with pytest.raises(OSError, match=r"no pidfd for rank \d+: Too many open files \(the watch's own limit"):
        Signaller(_ranks()).send(Rank(os.getpid(), 1), signal.SIGTERM)


def _stuck(ranks: Ranks, monkeypatch: pytest.MonkeyPatch) -> dict[int, str]:
    """One scan with a short wait, so that every held read is stuck from then on (a stuck read is
    not waited for again: the scans after it show what a poll does meanwhile); what it named."""
    with monkeypatch.context() as short:
        short.setattr(spot_environ, "ENVIRON_WAIT_S", 0.05)
        return ranks.find()[1]


def _held(entry: Path) -> None:
    """Its environ as a FIFO: the read's open(2) blocks until the test writes to it."""
    (entry / "environ").unlink()
    os.mkfifo(entry / "environ")


def test_a_process_whose_environment_does_not_answer_holds_no_other_rank(
        tmp_path: Path, procs: list[subprocess.Popen[bytes]], monkeypatch: pytest.MonkeyPatch) -> None:
    """/proc/PID/environ waits on the process's memory lock, which a rank waiting on the hung
    shared folder may hold (spot_environ.py). Here a FIFO in a fake /proc blocks the read's
    open(2) until the test writes to it: the other rank is found and signalled meanwhile, the
    held one is named, a second scan starts no second read of it, and once it answers it is found."""
    rank_proc = _start(STUBBORN, RANK_ENV)
    procs.append(rank_proc)
    held = _fake(tmp_path, 4242, 1001)
    _held(held)
    ranks = _ranks(tmp_path)
    assert list(_stuck(ranks, monkeypatch)) == [4242]
    answering = _fake(tmp_path, rank_proc.pid, 1000)
    assert ranks.find() == ([Rank(rank_proc.pid, 1000)], {4242: (
        "its /proc/4242/environ has not answered: a call of its own may be waiting on the shared folder")})
    assert Signaller(ranks).send(Rank(rank_proc.pid, 1000), signal.SIGKILL), "its re-check is not held either"
    assert rank_proc.wait(timeout=30) == -9
    shutil.rmtree(answering)
    assert ranks.find() == ([], {4242: ANY})
    readers = [t for t in threading.enumerate() if t.name == "spot-environ-4242"]
    assert len(readers) == 1 and readers[0].daemon, "one stuck read, not one per scan"
    (held / "environ").rename(tmp_path / "fifo")  # it answers: the stuck read gets its end of file
    _fake(tmp_path, 4242, 1001)
    with open(tmp_path / "fifo", "wb"):
        pass
    readers[0].join(timeout=30)
    assert ranks.find() == ([Rank(4242, 1001)], {}), "the late answer is dropped for a fresh read"


def test_held_reads_are_waited_for_together(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Three held processes cost the scan one wait, not three: once the first has used it up,
    the others get none more (node-agent.md: "waited for 1 s together")."""
    for pid in (4242, 4243, 4244):
        _held(_fake(tmp_path, pid, 1000 + pid))
    asked: list[float] = []
    real = Attempt.result

    def result(self: Attempt[bytes], wait: float) -> object:
        asked.append(wait)
        return real(self, wait)
    monkeypatch.setattr(Attempt, "result", result)
    environs = Environs()
    try:
        assert environs.read(tmp_path, [4242, 4243, 4244], 0.2) == {4242: None, 4243: None, 4244: None}
    finally:
        for pid in (4242, 4243, 4244):  # the stuck reads get their end of file
            with open(tmp_path / str(pid) / "environ", "wb"):
                pass
    assert len(asked) == 3 and 0 < asked[0] <= 0.2 and asked[1] <= 0 and asked[2] <= 0, asked


def test_a_read_that_gets_no_thread_costs_only_its_own_process(
        procs: list[subprocess.Popen[bytes]], monkeypatch: pytest.MonkeyPatch) -> None:
    """The watch at its task limit: the process whose read could not start is named (and tried
    at the next scan), the other ranks are found all the same."""
    started = [_start(STUBBORN, rank_env(IP, n)) for n in range(3)]
    procs.extend(started)
    refused = started[1].pid
    real = threading.Thread.start

    def start(self: threading.Thread) -> None:
        if self.name == f"spot-environ-{refused}":
            raise RuntimeError("can't start new thread")
        real(self)
    monkeypatch.setattr(threading.Thread, "start", start)
    ranks, unread = _ranks().find()
    assert [r.pid for r in ranks if r.pid in (p.pid for p in started)] == [started[0].pid, started[2].pid]
    assert unread[refused] == f"EAGAIN: no thread for spot-environ-{refused}: can't start new thread"
    monkeypatch.setattr(threading.Thread, "start", real)
    assert _found(_ranks(), refused) is not None, "found at the next scan"


def test_a_recorded_rank_whose_environment_is_held_still_gets_its_sigkill(
        signaller: Signaller, procs: list[subprocess.Popen[bytes]], tmp_path: Path) -> None:
    """A watch restarted after the SIGTERM knows the rank by its record (pid and start time):
    the re-check before the SIGKILL reads /proc/PID/stat and status only, never the environment
    that the rank, stuck on the hung shared folder, holds."""
    rank_proc = _start(STUBBORN, RANK_ENV)
    procs.append(rank_proc)
    _held(_fake(tmp_path, rank_proc.pid, 1000))
    fresh = Signaller(_ranks(tmp_path), use_pidfd=signaller.use_pidfd)  # a new watch: no pidfd kept
    assert fresh.send(Rank(rank_proc.pid, 1000), signal.SIGKILL)
    assert rank_proc.wait(timeout=30) == -9
    assert not [t for t in threading.enumerate() if t.name == f"spot-environ-{rank_proc.pid}"], "no read started"


@pytest.mark.parametrize("daemon", ["orted", "prted"])
def test_a_rank_whose_environment_is_held_is_known_by_its_daemon(
        tmp_path: Path, procs: list[subprocess.Popen[bytes]], monkeypatch: pytest.MonkeyPatch, daemon: str) -> None:
    """If every rank on the node holds its memory on the hung shared folder, none would be
    known by its environment: a rank is also known by its parent, this node's OpenMPI daemon
    (its name, owner and ssh session read from /proc without the rank's lock), and signalled."""
    session = {"SSH_CONNECTION": f"127.0.0.2 41000 {IP} {PORT}"}
    parent, rank = spot_run.daemon(tmp_path, daemon, session, {"OMPI_COMM_WORLD_RANK": "0"})
    procs.append(parent)
    real = spot_environ.read_environ
    release = threading.Event()

    def read_environ(path: Path) -> bytes:
        if path == Path(f"/proc/{rank}/environ"):
            release.wait(timeout=60)  # a liveness bound: released at the test's end
        return real(path)
    monkeypatch.setattr(spot_environ, "read_environ", read_environ)
    ranks = _ranks()
    try:
        _stuck(ranks, monkeypatch)
        assert [t for t in threading.enumerate() if t.name == f"spot-environ-{rank}"], "its read is held"
        found = _found(ranks, rank)
        assert found is not None and rank not in ranks.find()[1], "a rank, not a process not looked at"
        assert Signaller(ranks).send(found, signal.SIGTERM)
        assert os.waitid(os.P_PID, parent.pid, os.WEXITED | os.WNOWAIT) is not None  # its one child ended
    finally:
        release.set()


def test_what_makes_a_parent_a_daemon_of_this_node(tmp_path: Path) -> None:
    """On a fake /proc whose children's environments cannot be read (EISDIR here): only a child
    of a process named orted or prted, the user's, in this node's ssh session, started no later
    than the child, is a rank; the others are named with why."""
    me, session = os.getuid(), {"SSH_CONNECTION": f"127.0.0.2 41000 {IP} {PORT}"}
    daemons = {100: ("orted", session, (me,) * 3, 50), 110: ("python", session, (me,) * 3, 50),
               120: ("orted", {"SSH_CONNECTION": f"127.0.0.2 41000 127.0.0.4 {PORT}"}, (me,) * 3, 50),
               130: ("orted", session, (me, me + 1, me), 50), 140: ("prted", session, (me,) * 3, 70)}
    for pid, (name, env, uids, start) in daemons.items():
        _fake(tmp_path, pid, start, uids=uids, env=env, name=name)
        child = _fake(tmp_path, pid + 1, 60, ppid=pid)
        (child / "environ").unlink()
        (child / "environ").mkdir()
    ranks, unread = _ranks(tmp_path).find()
    assert ranks == [Rank(101, 60)]
    assert sorted(unread) == [111, 121, 131, 141] and unread[111].startswith("EISDIR: Is a directory")
