"""The Spot watch's ranks: found in /proc, signalled so that a reused pid is never hit.

A rank is found by a scan of /proc (spot.py's docstring says which processes count) and signalled
moments later, SIGKILL 20 s later still. A pid names a process only while it lives: between the
scan and the kill the rank may exit and another process (the cluster user's next job, or anything
else) take its number. So a rank is known by its pid AND its start time (field 22 of
/proc/PID/stat, clock ticks after boot: the two together name one process for the whole boot),
and a signal goes through a pidfd, a descriptor of that one process:

- `os.pidfd_open(pid)` ("a file descriptor referring to the process pid ... process management
  without races and signals", Linux >= 5.3, Python 3.9: docs.python.org/3/library/os.html#os.pidfd_open);
- then /proc/PID is read again: same start time, same owner, the rank variable and ssh session
  still there. A pid reused before the open fails this (the newcomer started later), and a pidfd
  cannot come to name another process after it is open;
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

What the watch cannot do is never taken for an answer about the rank: /proc files that are gone
(ENOENT, ESRCH) mean the process ended, unreadable ones (EACCES, EPERM) that it is not the
user's, and pidfd_open's EINVAL that the pid now names a thread of another process (pidfd_open(2):
"pid is not valid"; it takes thread-group leaders only). Anything else, EMFILE above all (the
watch's own descriptor limit), is raised: the caller reports it and tries the rank again at the
next poll, where treating it as "ended" would have spared the rank its SIGKILL. Pidfds are held
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
from dataclasses import dataclass, field
from pathlib import Path

from cfn_chainermn.node.spot_environ import ENVIRON_WAIT_S, Environs

RANK_VARS = (b"OMPI_COMM_WORLD_RANK=", b"PMIX_RANK=")
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


def node_of(environ: bytes) -> tuple[str, int] | None:
    """(address, port) of the ssh session a process's environment came from, if it is a rank."""
    entries = environ.split(b"\0")
    if not any(e.startswith(RANK_VARS) for e in entries):
        return None
    for e in entries:
        if e.startswith(b"SSH_CONNECTION="):
            parts = e.split(b"=", 1)[1].split()
            if len(parts) == 4 and parts[3].isdigit():
                return parts[2].decode(errors="replace"), int(parts[3])
    return None


def start_time(stat_text: bytes) -> int | None:
    """Field 22 of /proc/PID/stat. The command name (field 2) may hold spaces and parentheses,
    so the fields are counted after its last ')'."""
    fields = stat_text.rpartition(b")")[2].split()
    return int(fields[19]) if len(fields) > 19 and fields[19].isdigit() else None


def parent_of(stat_text: bytes) -> int | None:
    """Field 4 of /proc/PID/stat, the parent's pid, counted after the command name as above."""
    fields = stat_text.rpartition(b")")[2].split()
    return int(fields[1]) if len(fields) > 1 and fields[1].isdigit() else None


def uids_of(status_text: bytes) -> tuple[int, ...]:
    """The real, effective and saved uids (/proc/PID/status's `Uid:` line, proc(5)); () if none."""
    for line in status_text.splitlines():
        if line.startswith(b"Uid:"):
            ids = line.split()[1:4]
            return tuple(int(i) for i in ids) if len(ids) == 3 and all(i.isdigit() for i in ids) else ()
    return ()


@dataclass(frozen=True)
class Ranks:
    """The ranks of user `uid` that came in over ssh to this node's `ip` and `port`."""

    proc: Path
    uid: int
    ip: str
    port: int

    environs: Environs = field(default_factory=Environs, compare=False, repr=False)

    def _mine(self, pid: int) -> bool:
        """Whether real, effective and saved uid are all the user's: a process that is root in
        any of them (a set-uid program the user ran, a root daemon acting as the user for a
        moment) is not signalled. Errors other than _SKIP are raised (see the docstring)."""
        try:
            return uids_of((self.proc / str(pid) / "status").read_bytes()) == (self.uid,) * 3
        except OSError as exc:
            if exc.errno in _SKIP:
                return False
            raise

    def _look(self, pid: int, environ: bytes | Exception) -> tuple[Rank, int | None] | None:
        """The rank at /proc/PID now and its parent's pid, or None, given its environment as
        read (spot_environ.py) after _mine. The start time is read last: if it is the one
        expected, PID held that one process throughout, so the owner and environment were its."""
        try:
            if isinstance(environ, Exception):
                raise environ
            if node_of(environ) != (self.ip, self.port):
                return None
            text = (self.proc / str(pid) / "stat").read_bytes()
        except OSError as exc:
            if exc.errno in _SKIP:
                return None
            raise
        start = start_time(text)
        return None if start is None else (Rank(pid, start), parent_of(text))

    def at(self, pid: int) -> Rank | None:
        """The rank at /proc/PID now, or None; ETIMEDOUT when its environment does not answer."""
        if not self._mine(pid):
            return None
        environ = self.environs.read(self.proc, [pid], ENVIRON_WAIT_S)[pid]
        if environ is None:
            raise OSError(errno.ETIMEDOUT, f"/proc/{pid}/environ not read within {ENVIRON_WAIT_S:g} s "
                                           "(the process's memory is held: see spot_environ.py)")
        found = self._look(pid, environ)
        return None if found is None else found[0]

    def scan(self) -> list[Rank]:
        return self.find()[0]

    def find(self) -> tuple[list[Rank], list[int]]:
        """Every rank here now, by pid, and the user's processes whose environment did not answer
        within ENVIRON_WAIT_S (spot_environ.py: not known to be ranks; looked at next poll). A
        match whose parent is a match too is a rank's own child (a data loader's worker forked
        with its environment): its rank is signalled, not it; one left behind by its rank
        (reparented) is found at the next scan."""
        mine = [int(e.name) for e in self.proc.iterdir() if e.name.isdigit() and self._mine(int(e.name))]
        environs = self.environs.read(self.proc, mine, ENVIRON_WAIT_S)
        found: dict[int, tuple[Rank, int | None]] = {}
        for pid, environ in environs.items():
            look = self._look(pid, environ) if environ is not None else None
            if look is not None:
                found[look[0].pid] = look
        ranks = sorted((r for r, parent in found.values() if parent not in found), key=lambda r: r.pid)
        return ranks, sorted(pid for pid, environ in environs.items() if environ is None)


@dataclass
class Signaller:
    """Signals ranks through pidfds kept from the first signal to the last (see the docstring)."""

    ranks: Ranks
    pidfds: dict[Rank, int] = field(default_factory=dict)
    use_pidfd: bool = True

    def send(self, rank: Rank, sig: int) -> bool:
        """`sig` to that very process; False, with nothing sent, when it has ended or its pid
        now names another process."""
        fd = self.pidfds.get(rank)
        if fd is None and self.use_pidfd:
            fd = self._open(rank)
            if fd is None and self.use_pidfd:
                return False
        if fd is None:  # no pidfds here: re-check, then kill by pid
            if self.ranks.at(rank.pid) != rank:
                return False
            try:
                os.kill(rank.pid, sig)
            except ProcessLookupError:
                return False
            return True
        if _ended(fd):
            self.forget(rank)
            return False
        try:
            signal.pidfd_send_signal(fd, sig)
        except ProcessLookupError:
            self.forget(rank)
            return False
        return True

    def _open(self, rank: Rank) -> int | None:
        """A pidfd of the rank found, kept; None when it is gone (or pidfds are not available)."""
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
        try:
            same = self.ranks.at(rank.pid) == rank
        except BaseException:
            os.close(fd)
            raise
        if not same:  # the pid was reused before the open: not ours
            os.close(fd)
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
