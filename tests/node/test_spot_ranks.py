"""The Spot watch's ranks (node/spot_ranks.py): a rank is one process, pid and start time, and a
signal reaches that process or none, even when its pid has been given to another process.

Pid reuse is provoked for real where the tests run as root: the rank exits, is reaped, and
/proc/sys/kernel/ns_last_pid makes the next fork take its pid (a new rank of the same user over the
same ssh session, as a job placed next would be). A fake /proc does the same for any user."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cfn_chainermn.node import spot_ranks
from cfn_chainermn.node.spot_ranks import Rank, Ranks, Signaller

IP, PORT = "127.0.0.3", 22
RANK_ENV = {"OMPI_COMM_WORLD_RANK": "1", "SSH_CONNECTION": f"127.0.0.2 41000 {IP} {PORT}"}
NS_LAST_PID = Path("/proc/sys/kernel/ns_last_pid")
as_root = pytest.mark.skipif(os.geteuid() != 0 or not os.access(NS_LAST_PID, os.W_OK),
                             reason="reusing a pid on purpose needs root (ns_last_pid)")


def test_a_rank_is_known_by_its_ssh_session_to_the_node() -> None:
    env = b"PATH=/bin\0OMPI_COMM_WORLD_RANK=2\0SSH_CONNECTION=10.0.1.5 40000 10.0.1.7 22\0"
    assert spot_ranks.node_of(env) == ("10.0.1.7", 22)
    assert spot_ranks.node_of(b"SSH_CONNECTION=10.0.1.5 40000 10.0.1.7 22\0") is None  # a login shell
    assert spot_ranks.node_of(b"PMIX_RANK=0\0SSH_CONNECTION=10.0.1.5 40000 10.0.1.7 2222\0") == ("10.0.1.7", 2222)
    assert spot_ranks.node_of(b"OMPI_COMM_WORLD_RANK=0\0") is None  # started on this machine without ssh


def test_the_start_time_is_counted_after_the_command_name() -> None:
    fields = " ".join(["S", *map(str, range(4, 22)), "987654", "0"])  # fields 3..23: field 22 is 987654
    assert spot_ranks.start_time(f"42 (python) x) {fields}".encode()) == 987654, "a ')' in the name"
    assert spot_ranks.start_time(b"42 (sh) S 1 2") is None
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
    assert rank_proc.wait(timeout=10) == -9
    assert not signaller.send(found[0], signal.SIGKILL), "an ended rank is not reported as killed"
    assert other.poll() is None


def test_a_rank_ended_but_not_yet_reaped_is_not_reported_as_killed(
        signaller: Signaller, procs: list[subprocess.Popen[bytes]]) -> None:
    """A zombie still holds its pid (its parent, sshd or orted, has not waited yet): a signal to
    it would "succeed", so the SIGKILL would be logged for a rank that ended within its grace."""
    rank_proc = _start(STUBBORN, RANK_ENV)
    procs.append(rank_proc)
    found = signaller.ranks.at(rank_proc.pid)
    assert found is not None and signaller.send(found, signal.SIGTERM)
    os.kill(rank_proc.pid, signal.SIGKILL)
    os.waitid(os.P_PID, rank_proc.pid, os.WEXITED | os.WNOWAIT)  # ended, left unreaped
    assert not signaller.send(found, signal.SIGKILL)


@as_root
def test_a_pid_reused_between_the_scan_and_the_signal_is_not_hit(
        signaller: Signaller, procs: list[subprocess.Popen[bytes]]) -> None:
    rank_proc = _start(STUBBORN, RANK_ENV)
    found = signaller.ranks.at(rank_proc.pid)
    assert found is not None
    rank_proc.kill()
    rank_proc.wait()  # ended and reaped after the scan: its pid is free
    newcomer = _reuse(found.pid, RANK_ENV)  # the next job's rank, same user, same ssh session
    procs.append(newcomer)
    fresh = signaller.ranks.at(newcomer.pid)
    assert fresh is not None and fresh.pid == found.pid and fresh != found
    assert not signaller.send(found, signal.SIGTERM)
    assert newcomer.poll() is None and not signaller.pidfds
    assert signaller.send(fresh, signal.SIGKILL), "the newcomer as found itself is reachable"
    assert newcomer.wait(timeout=10) == -9


@as_root
def test_the_sigkill_reaches_only_the_process_that_got_the_sigterm(
        signaller: Signaller, procs: list[subprocess.Popen[bytes]]) -> None:
    rank_proc = _start(STUBBORN, RANK_ENV)
    found = signaller.ranks.at(rank_proc.pid)
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


def test_a_fake_proc_whose_rank_was_replaced_refuses_the_signal(
        signaller: Signaller, procs: list[subprocess.Popen[bytes]], tmp_path: Path) -> None:
    """The same race for any user: /proc says pid P was a rank at the scan, then (the rank gone)
    that P is a process started later; P is a real process that must get nothing."""
    innocent = _start(STUBBORN, {})
    procs.append(innocent)
    entry = tmp_path / str(innocent.pid)
    entry.mkdir()
    fields = "S " + " ".join(map(str, range(4, 22)))
    (entry / "stat").write_text(f"{innocent.pid} (python) {fields} 1000 0\n")
    (entry / "environ").write_bytes(b"".join(f"{k}={v}\0".encode() for k, v in RANK_ENV.items()))
    signaller = Signaller(_ranks(tmp_path), use_pidfd=signaller.use_pidfd)
    found = signaller.ranks.scan()
    assert found == [Rank(innocent.pid, 1000)]
    (entry / "stat").write_text(f"{innocent.pid} (sleep) {fields} 2000 0\n")  # the newcomer
    assert not signaller.send(found[0], signal.SIGTERM)
    assert innocent.poll() is None and not signaller.pidfds


def test_pidfds_that_the_kernel_refuses_otherwise_are_not_swallowed(monkeypatch: pytest.MonkeyPatch) -> None:
    def full(pid: int, flags: int = 0) -> int:
        raise OSError(errno.EMFILE, "Too many open files")
    monkeypatch.setattr(os, "pidfd_open", full)
    with pytest.raises(OSError, match="Too many open files"):
        Signaller(_ranks()).send(Rank(os.getpid(), 1), signal.SIGTERM)
