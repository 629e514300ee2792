"""The Spot watch's ranks: found in /proc, signalled so that a reused pid is never hit.

A rank is found by a scan of /proc (spot.py's docstring says which processes count) and signalled
moments later, SIGKILL 20 s later still. A pid names a process only while it lives: between the
scan and the kill the rank may exit and another process (the cluster user's next job, or anything
else) take its number. So a rank is known by its pid AND its start time (field 22 of
/proc/PID/stat, clock ticks after boot: the two together name one process for the whole boot),
and a signal goes through a pidfd, a descriptor of that one process:

- `os.pidfd_open(pid)` ("a file descriptor referring to the process pid ... process management
  without races and signals", Linux >= 5.3, Python 3.9: docs.python.org/3/library/os.html#os.pidfd_open);
- then /proc/PID/stat and status are read again: same start time, same owner. A pid reused
  before the open fails this (the newcomer started later), and a pidfd cannot come to name
  another process after it is open. Pid and start time name one process for the whole boot, so
  the environment is not read again: a rank holding its memory lock (spot_environ.py) would
  hold its own SIGKILL there, and a record of another boot is dropped (spot_record.py). The
  same two reads come before EVERY signal, the SIGKILL on a kept pidfd too: pid and start time
  survive an execve, so a rank that exec'd a set-uid program in its grace is root in its
  effective and saved uid by then, and gets nothing. Only the moment between that read and the
  signal remains, as small as the by-pid path's below;
- `signal.pidfd_send_signal(fd, sig)` (Linux >= 5.1, Python 3.9:
  docs.python.org/3/library/signal.html#signal.pidfd_send_signal) reaches that process or none
  (ESRCH once it is gone);
- the pidfd is kept for the SIGKILL. It turns readable when its process ends (pidfd_open(2):
  "poll(2), select(2), and epoll(7) ... indicate the file descriptor as readable"), so an ended
  rank gets nothing and is not reported as killed.

Where pidfds are missing (ENOSYS: a kernel before 5.3; EPERM: a seccomp filter that predates
them; a Python built without the two functions) the old path remains: the same re-check, then
os.kill(pid). That leaves the short window between the re-check and the kill, which only pidfds
close.

A process whose environment cannot be read (held: spot_environ.py; or no thread to read it) is
still a rank if its parent is this node's OpenMPI daemon: `orted` (Open MPI 4) or `prted` (Open
MPI 5's PRRTE), which forks and execs each rank, by its name in /proc/PPID/status, the user's in
every uid, with this node's ssh session in its environment (a daemon's memory is not on the
shared folder, so its environment answers), and started no later than the child (a parent's pid
reused after the child's fork would have started after it). Stat and status take no memory lock,
so a node whose every rank is held still has its ranks signalled.

What the watch cannot do is never taken for an answer about the rank: /proc files that are gone
(ENOENT, ESRCH) mean the process ended, unreadable ones (EACCES, EPERM) that it is not the
user's, and pidfd_open's EINVAL that the pid now names a thread of another process (pidfd_open(2):
"pid is not valid"; it takes thread-group leaders only). Anything else, EMFILE above all (the
watch's own descriptor limit), is raised by a signal (the caller reports it and tries the rank
again at the next poll, where treating it as "ended" would have spared the rank its SIGKILL) and
given by the scan as that one process's reason for not being looked at: never the scan's end,
which would cost every other rank its signal. Pidfds are held
for ranks only, not for the processes a rank forks with its environment (a data loader's
workers): at most one per rank on the node between its SIGTERM and its SIGKILL, far below the
soft limit of 1024 descriptors a service gets from systemd (DefaultLimitNOFILE=1024:524288 since
systemd 240, systemd-system.conf(5)), so the unit sets no LimitNOFILE.
"""

from __future__ import annotations

import errno
import os
import select
import signal
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cfn_chainermn.node import spot_environ
from cfn_chainermn.node.spot_attempt import words
from cfn_chainermn.node.spot_environ import Environs
from cfn_chainermn.node.spot_proc import DAEMONS, ended, name_of, node_of, parent_of, session_of, start_time, uids_of

NO_PIDFD = (errno.ENOSYS, errno.EPERM)  # the kernel lacks the call; a seccomp filter refuses it
_SKIP = (errno.ENOENT, errno.ESRCH, errno.EACCES, errno.EPERM)  # ended, or not the watch's to read


@dataclass(frozen=True)
class Rank:
    """One process for the whole boot: its pid and its start time (/proc/PID/stat field 22)."""

    pid: int
    start: int

    @property
    def key(self) -> str:
        return f"{self.pid}:{self.start}"

    @classmethod
    def of_key(cls, key: str) -> Rank | None:
        pid, _, start = key.partition(":")
        return cls(int(pid), int(start)) if pid.isdigit() and start.isdigit() else None


Found = tuple[Rank, int | None]  # a rank and its parent's pid


@dataclass(frozen=True)
class Ranks:
    """The ranks of user `uid` that came in over ssh to this node's `ip` and `port`."""

    proc: Path
    uid: int
    ip: str
    port: int

    environs: Environs = field(default_factory=Environs, compare=False, repr=False)

    def _read(self, pid: int, name: str) -> bytes | None:
        """/proc/PID/NAME, or None when the process ended or is not the watch's to read; other
        errors (EMFILE above all) are raised (see the docstring)."""
        try:
            return (self.proc / str(pid) / name).read_bytes()
        except OSError as exc:
            if exc.errno in _SKIP:
                return None
            raise

    def _status(self, pid: int) -> bytes | None:
        """Its status if real, effective and saved uid are all the user's: a process that is
        root in any of them (a set-uid program the user ran, a root daemon acting as the user
        for a moment) is not signalled."""
        text = self._read(pid, "status")
        return text if text is not None and uids_of(text) == (self.uid,) * 3 else None

    def _stat(self, pid: int) -> tuple[int, int | None] | None:
        """Its start time and its parent's pid; None once it has ended (a zombie too: a signal
        to it "succeeds", so a rank that ended in its grace would be logged as killed)."""
        text = self._read(pid, "stat")
        start = None if text is None or ended(text) else start_time(text)
        return None if text is None or start is None else (start, parent_of(text))

    def same(self, rank: Rank) -> bool:
        """Whether /proc/PID is still that one process, running, the user's: pid and start time
        name it for the whole boot (status read first, stat last: the start time says PID held
        one process throughout). No environment read, which a held rank would hold."""
        if self._status(rank.pid) is None:
            return False
        stat = self._stat(rank.pid)
        return stat is not None and stat[0] == rank.start

    def _look(self, pid: int, environ: bytes) -> Found | None:
        """The rank at /proc/PID, given its environment as read (spot_environ.py) after its
        status. The start time is read last: if it is the one expected, PID held that one
        process throughout, so the owner and environment were its."""
        if node_of(environ) != (self.ip, self.port):
            return None
        stat = self._stat(pid)
        return None if stat is None else (Rank(pid, stat[0]), stat[1])

    def _by_parent(self, pid: int, statuses: dict[int, bytes], environs: Mapping[int, object]) -> Found | None:
        """The rank at /proc/PID whose environment was not read, known by its parent: this
        node's OpenMPI daemon (see the docstring)."""
        stat = self._stat(pid)
        parent = None if stat is None else stat[1]
        if stat is None or parent is None or name_of(statuses.get(parent, b"")) not in DAEMONS:
            return None
        environ = environs.get(parent)
        if not isinstance(environ, bytes) or session_of(environ) != (self.ip, self.port):
            return None
        daemon = self._stat(parent)
        return (Rank(pid, stat[0]), parent) if daemon is not None and daemon[0] <= stat[0] else None

    def scan(self) -> list[Rank]:
        return self.find()[0]

    def find(self) -> tuple[list[Rank], dict[int, str]]:
        """Every rank here now, by pid, and the user's processes not looked at, each with why
        (an environment that did not answer within spot_environ.ENVIRON_WAIT_S, or an error of
        the watch's own): looked at again at the next poll. One process's error is its own,
        never the scan's. A match whose parent is a match too is a rank's own child (a data
        loader's worker forked with its environment): its rank is signalled, not it; one left
        behind by its rank (reparented) is found at the next scan."""
        statuses = {pid: text for pid in sorted(int(e.name) for e in self.proc.iterdir() if e.name.isdigit())
                    if (text := self._status(pid)) is not None}
        environs = self.environs.read(self.proc, sorted(statuses), spot_environ.ENVIRON_WAIT_S)
        found: dict[int, Found] = {}
        unread: dict[int, str] = {}
        for pid, environ in environs.items():
            try:
                if isinstance(environ, bytes):
                    look = self._look(pid, environ)
                elif environ is None or getattr(environ, "errno", None) not in _SKIP:
                    unread[pid] = (f"its /proc/{pid}/environ has not answered: a call of its own may be waiting "
                                   "on the shared folder") if environ is None else words(environ)
                    look = self._by_parent(pid, statuses, environs)
                else:
                    look = None
            except OSError as exc:
                unread[pid], look = words(exc), None
            if look is not None:
                found[pid] = look
                unread.pop(pid, None)
        ranks = sorted((r for r, parent in found.values() if parent not in found), key=lambda r: r.pid)
        return ranks, unread


@dataclass
class Signaller:
    """Signals ranks through pidfds kept from the first signal to the last (see the docstring)."""

    ranks: Ranks
    pidfds: dict[Rank, int] = field(default_factory=dict)
    use_pidfd: bool = True

    def send(self, rank: Rank, sig: int) -> bool:
        """`sig` to that very process; False, with nothing sent, when it has ended, its pid now
        names another process, or it is no longer the user's in every uid. The uids are read
        again before every signal, the SIGKILL on a kept pidfd too: pid and start time survive
        an execve, so a rank may be a set-uid program by then (see the docstring)."""
        kept = self.pidfds.get(rank)
        fd = kept if kept is not None or not self.use_pidfd else self._open(rank)
        if fd is None and self.use_pidfd:
            return False
        if fd is not None and _ended(fd):
            self.forget(rank)
            return False
        try:
            same = self.ranks.same(rank)  # after the open: a pid reused before it fails this
        except BaseException:
            if kept is None:  # no pidfd left open for a rank not yet signalled
                self.forget(rank)
            raise
        if not same:
            self.forget(rank)
            return False
        try:
            if fd is None:  # no pidfds here: kill by pid
                os.kill(rank.pid, sig)
            else:
                signal.pidfd_send_signal(fd, sig)
        except ProcessLookupError:
            self.forget(rank)
            return False
        return True

    def _open(self, rank: Rank) -> int | None:
        """A pidfd of the rank's pid, kept (send re-checks it is the rank's); None when the pid
        has ended (or pidfds are not available)."""
        if not hasattr(os, "pidfd_open") or not hasattr(signal, "pidfd_send_signal"):  # built without them
            self.use_pidfd = False
            return None
        try:
            fd = os.pidfd_open(rank.pid)
        except OSError as exc:
            if exc.errno in (errno.ESRCH, errno.EINVAL):  # ended; or the pid is another process's thread
                return None
            if exc.errno not in NO_PIDFD:  # EMFILE, ENFILE, ENOMEM: the watch's own limits
                raise OSError(exc.errno, f"no pidfd for rank {rank.pid}: {exc.strerror} (the watch's own "
                                         "limit, not the rank's end)") from exc
            self.use_pidfd = False
            return None
        self.pidfds[rank] = fd
        return fd

    def forget(self, rank: Rank) -> None:
        fd = self.pidfds.pop(rank, None)
        if fd is not None:
            os.close(fd)

    def close(self) -> None:
        for rank in list(self.pidfds):
            self.forget(rank)


def _ended(pidfd: int) -> bool:
    """Whether the pidfd's process has ended (it is readable then; a zombie counts as ended)."""
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    return bool(poller.poll(0))
