"""channel_io.pump against a scripted channel: the endings a real sshd session can have."""

from __future__ import annotations

import io
import os
import threading
from collections import deque

import pytest

from cfn_chainermn.cluster.channel_io import OutputClosed, pump


class ScriptedChannel:
    """The slice of paramiko.Channel that pump uses: queued stdout/stderr chunks, then an ending."""

    def __init__(self, out: list[bytes], err: list[bytes], *, eof: bool, closed: bool) -> None:
        self.out, self.err = deque(out), deque(err)
        self.eof_received, self.closed = eof, closed
        self.sent = b""
        self.write_shut = threading.Event()
        self._r, self._w = os.pipe()
        os.write(self._w, b"x")  # always "readable", as paramiko's pipe is once the channel closed

    def fileno(self) -> int:
        return self._r

    def close_pipe(self) -> None:
        os.close(self._r)
        os.close(self._w)

    def recv_ready(self) -> bool:
        return bool(self.out)

    def recv_stderr_ready(self) -> bool:
        return bool(self.err)

    def recv(self, n: int) -> bytes:
        return self.out.popleft() if self.out else b""

    def recv_stderr(self, n: int) -> bytes:
        return self.err.popleft()

    def sendall(self, data: bytes) -> None:
        self.sent += data

    def shutdown_write(self) -> None:
        self.write_shut.set()


def _pump(chan: ScriptedChannel, stdin: io.BytesIO | None = None) -> tuple[bytes, bytes]:
    out, err = io.BytesIO(), io.BytesIO()
    worker = threading.Thread(target=pump, args=(chan, out, err, stdin), daemon=True)
    worker.start()
    worker.join(5)
    assert not worker.is_alive(), "pump did not return"
    chan.close_pipe()
    return out.getvalue(), err.getvalue()


def test_a_normal_end_delivers_everything_apart() -> None:
    chan = ScriptedChannel([b"a\n", b"b"], [b"warn\n"], eof=True, closed=False)
    assert _pump(chan) == (b"a\nb", b"warn\n")
    assert chan.write_shut.is_set()  # no stdin given: the command reads EOF at once


def test_a_dropped_connection_ends_the_pump_instead_of_spinning() -> None:
    """paramiko closes every channel of a dead transport without EOF (sshd killed, node rebooted)."""
    chan = ScriptedChannel([b"partial"], [], eof=False, closed=True)
    assert _pump(chan) == (b"partial", b"")


def test_stdin_is_fed_then_closed() -> None:
    chan = ScriptedChannel([b"ok\n"], [], eof=True, closed=False)
    _pump(chan, io.BytesIO(b"line 1\nline 2\n"))
    assert chan.write_shut.wait(5) and chan.sent == b"line 1\nline 2\n"


def test_a_reader_that_went_away_stops_the_pump() -> None:
    r, w = os.pipe()
    os.close(r)
    chan = ScriptedChannel([b"x" * 10], [], eof=False, closed=False)
    with open(w, "wb") as broken, pytest.raises(OutputClosed):
        pump(chan, broken, io.BytesIO())  # type: ignore[arg-type]
    chan.close_pipe()
