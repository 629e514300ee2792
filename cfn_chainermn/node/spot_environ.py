"""The Spot watch's reads of /proc/PID/environ, each in a thread of its own, waited for together.

A rank is known by its environment (spot_ranks.py), and /proc/PID/environ is the one /proc file
the scan reads that waits on the process itself: the kernel copies it out of the process's memory
through access_remote_vm, which takes the process's mmap lock (fs/proc/base.c, environ_read; since
Linux 4.18 env_start and env_end are read under mm->arg_lock, "mm: introduce arg_lock", but the
bytes still need the mmap lock). A rank with a thread that holds that lock while it waits on the
hung shared folder (mmap(2) takes it for writing around the file system's own mmap call; a
training script mapping a data set or loading a library from EFS) would hold the scan there, and
so every rank's signal. `status` and `stat`, read for the owner, the name, the parent and the
start time, come from the task's own fields without that lock (fs/proc/array.c: do_task_stat
reads the parent's pid under the task's sighand lock, the name from task->comm).

So each process's read runs in an Attempt (spot_attempt.py), all of a scan's at once, and the
scan waits ENVIRON_WAIT_S for them together (one deadline: k held processes cost 1 s, not k): a
process not read by then is looked at again at the next poll, the others are signalled now. A
read still stuck at the next poll is not started again (one thread per stuck process, not one per
poll), and its late answer is dropped for a fresh read: the pid may name another process by then.
A read whose thread cannot start (the watch's task limit) is given back as that error, for the
scan to treat like an unanswered read of that one process (spot_ranks.py): never the scan's end.
"""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path

from cfn_chainermn.node.spot_attempt import Attempt

ENVIRON_WAIT_S = 1.0  # a /proc read that is not held answers in microseconds


def read_environ(path: Path) -> bytes:
    """The seam a test blocks on: one process's environment, as the kernel gives it."""
    return path.read_bytes()


class Environs:
    """The reads in flight, by pid; those still stuck from earlier polls kept to be looked at."""

    def __init__(self) -> None:
        self._stuck: dict[int, Attempt[bytes]] = {}

    def read(self, proc: Path, pids: list[int], wait: float) -> dict[int, bytes | Exception | None]:
        """Each pid's environment, the error its read raised, or None when it did not answer
        within `wait` s (or is still stuck from an earlier poll)."""
        out: dict[int, bytes | Exception | None] = {}
        for pid, attempt in list(self._stuck.items()):  # late answers: dropped for a fresh read
            if attempt.result(0.0) is not None:
                del self._stuck[pid]
        reads: dict[int, Attempt[bytes]] = {}
        for pid in pids:
            if pid in self._stuck:
                out[pid] = None
                continue
            attempt = Attempt[bytes](f"spot-environ-{pid}")
            try:
                attempt.start(partial(read_environ, proc / str(pid) / "environ"))
            except OSError as exc:  # no thread (EAGAIN): that pid's answer, not the scan's (spot_ranks.py)
                out[pid] = exc
                continue
            reads[pid] = attempt
        deadline = time.monotonic() + wait
        for pid, attempt in reads.items():
            done = attempt.result(deadline - time.monotonic())
            if done is None:
                self._stuck[pid] = attempt
                out[pid] = None
            else:
                out[pid] = done.error if done.error is not None else done.value
        return out

    def stuck(self) -> list[int]:
        """The pids whose read has not answered yet."""
        return sorted(self._stuck)
