"""One call at a time in a daemon thread of its own, its outcome taken in with a bounded wait.

The Spot watch (spot.py) must signal the ranks within seconds of a notice, and three of its
steps can block for much longer than that: S3 (spot_retract.py), the shared folder (EFS,
hard-mounted: a server that stops answering leaves every read, write, open or stat waiting
until it answers again, "NFS requests are retried indefinitely", nfs(5) under "hard";
spot_shared.py) and a process's memory in /proc (spot_environ.py). Such a call runs here: the
watch waits a bounded time and goes on without it.

A thread stuck in the kernel cannot be stopped from Python, so it is left behind. It is a daemon
thread: the interpreter does not wait for it at exit ("Daemon threads are abruptly stopped at
shutdown", threading's docs), where a pool's worker would hold the exit ("All threads enqueued
to ThreadPoolExecutor will be joined before the interpreter can exit", concurrent.futures'
docs). And an Attempt starts no second call while the first one runs: a stuck file system costs
one thread per Attempt, not one per poll. Its outcome is taken in once it comes.
"""

from __future__ import annotations

import errno
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from cfn_chainermn.errors import CfnChainermnError

T = TypeVar("T")


@dataclass(frozen=True)
class Done(Generic[T]):
    """What a call came to: its value, or the exception it raised (value None then)."""

    value: T | None
    error: Exception | None


class Attempt(Generic[T]):
    """At most one call running at a time, in a daemon thread named `name`."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._thread: threading.Thread | None = None
        self._done: Done[T] = Done(None, None)
        self._since = 0.0

    def start(self, call: Callable[[], T]) -> bool:
        """Run `call` in a thread; False, with nothing started, while an earlier one runs."""
        if self._thread is not None:
            return False
        self._since = time.monotonic()
        thread = threading.Thread(target=self._run, args=(call,), name=self.name, daemon=True)
        try:
            thread.start()
        except RuntimeError as exc:  # "can't start new thread": the watch's task limit, said as an OSError
            raise OSError(errno.EAGAIN, f"no thread for {self.name}: {exc}") from exc
        self._thread = thread
        return True

    def _run(self, call: Callable[[], T]) -> None:
        try:
            self._done = Done(call(), None)
        except Exception as exc:  # an error of the step, or a bug: the caller says which and goes on
            self._done = Done(None, exc)

    def result(self, wait: float) -> Done[T] | None:
        """The call's outcome once it has ended, waiting `wait` s at most; None while it runs
        (or when none was started). Each outcome is given once."""
        if self._thread is None:
            return None
        self._thread.join(max(wait, 0.0))
        if self._thread.is_alive():
            return None
        self._thread = None
        return self._done

    @property
    def running(self) -> bool:
        return self._thread is not None

    def age(self) -> float:
        """Seconds since the running call began (0 when none runs)."""
        return time.monotonic() - self._since if self._thread is not None else 0.0


def words(exc: BaseException) -> str:
    """An error in the agent log's words: an OSError as its errno's name and message (EMFILE
    says it is the watch's own limit at a glance), anything else as it says itself."""
    if isinstance(exc, OSError) and not isinstance(exc, CfnChainermnError) and exc.errno is not None:
        return f"{errno.errorcode.get(exc.errno, exc.errno)}: {exc.strerror}" + (
            f": {exc.filename}" if exc.filename else "")
    return str(exc)
