"""The Spot watch's calls that may never return (node/spot_attempt.py): one at a time, each
outcome given once, and a call stuck in the kernel keeps neither the watch nor its process from
ending. A FIFO with no writer stands for the hung file system: open(2) blocks on it."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from cfn_chainermn.node.spot_attempt import Attempt


def _unblock(fifo: Path) -> None:
    """The FIFO's open(2) for reading returns once a writer opens it; its read then ends (EOF)."""
    with open(fifo, "wb"):
        pass


def test_one_call_at_a_time_each_outcome_once(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    attempt: Attempt[bytes] = Attempt("test-held")
    assert attempt.result(0.0) is None, "none started"
    assert attempt.start(fifo.read_bytes)
    assert attempt.result(0.01) is None and attempt.running
    assert not attempt.start(fifo.read_bytes), "no second call while the first is stuck"
    assert [t.daemon for t in threading.enumerate() if t.name == "test-held"] == [True]
    _unblock(fifo)
    done = attempt.result(30)  # a liveness bound: it returns at once
    assert done is not None and (done.value, done.error) == (b"", None)
    assert attempt.result(0.0) is None and not attempt.running, "given once"

    def broken() -> bytes:
        raise OSError(5, "Input/output error")
    assert attempt.start(broken)
    done = attempt.result(30)
    assert done is not None and done.value is None and isinstance(done.error, OSError)


def test_a_process_with_a_stuck_call_still_exits(tmp_path: Path) -> None:
    """The watch's process ends (systemctl stop, a restart) while a call on the hung folder is
    stuck: the interpreter does not wait for the thread. A non-daemon thread would hold it."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    script = ("import sys; from pathlib import Path; from cfn_chainermn.node.spot_attempt import Attempt\n"
              "a = Attempt('held'); a.start(Path(sys.argv[1]).read_bytes)\n"
              "assert a.result(0.05) is None; print('held', flush=True)\n")
    p = subprocess.Popen([sys.executable, "-c", script, str(fifo)], stdout=subprocess.PIPE)
    try:
        assert p.stdout is not None and p.stdout.readline() == b"held\n"
        assert p.wait(timeout=30) == 0, "exited with its call still stuck"
    finally:
        if p.poll() is None:
            p.kill()
            _unblock(fifo)
        p.wait()


def test_no_thread_to_start_is_an_oserror_and_leaves_nothing_running(monkeypatch: pytest.MonkeyPatch) -> None:
    """The watch's task limit reached (threading's "can't start new thread"): said as EAGAIN,
    which the watch's steps report like any error of theirs, and the next start works."""
    real = threading.Thread.start

    def refused(self: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")
    monkeypatch.setattr(threading.Thread, "start", refused)
    attempt: Attempt[int] = Attempt("test-refused")
    with pytest.raises(OSError, match="no thread for test-refused: can't start new thread") as caught:
        attempt.start(lambda: 1)
    assert caught.value.errno == errno.EAGAIN and not attempt.running
    monkeypatch.setattr(threading.Thread, "start", real)
    assert attempt.start(lambda: 1)
    done = attempt.result(30)
    assert done is not None and done.value == 1
