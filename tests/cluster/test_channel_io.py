"""channel_io.pump against a scripted channel (tests/fake_channel.py): the endings a real sshd session can have."""

from __future__ import annotations

import io
import os
import threading

import pytest
from fake_channel import FakeChannel

from cfn_chainermn.cluster.channel_io import OutputClosed, pump


def _pump(chan: FakeChannel, stdin: io.BytesIO | None = None) -> tuple[bytes, bytes]:
    out, err = io.BytesIO(), io.BytesIO()
    worker = threading.Thread(target=pump, args=(chan, out, err, stdin), daemon=True)
    worker.start()
    worker.join(30)  # a bound on a hang only
    assert not worker.is_alive(), "pump did not return"
    chan.close()
    return out.getvalue(), err.getvalue()


def test_a_normal_end_delivers_everything_apart() -> None:
    chan = FakeChannel([b"a\n", b"b"], [b"warn\n"], eof=True, closed=False)
    assert _pump(chan) == (b"a\nb", b"warn\n")
    assert chan.write_shut.is_set()  # no stdin given: the command reads EOF at once


def test_a_dropped_connection_ends_the_pump_instead_of_spinning() -> None:
    """paramiko closes every channel of a dead transport without EOF (sshd killed, node rebooted)."""
    chan = FakeChannel([b"partial"], [], eof=False, closed=True)
    assert _pump(chan) == (b"partial", b"")


def test_stdin_is_fed_then_closed() -> None:
    chan = FakeChannel([b"ok\n"], [], eof=True, closed=False)
    _pump(chan, io.BytesIO(b"line 1\nline 2\n"))
    assert chan.write_shut.wait(30) and chan.sent == b"line 1\nline 2\n"


def test_a_reader_that_went_away_stops_the_pump() -> None:
    r, w = os.pipe()
    os.close(r)
    chan = FakeChannel([b"x" * 10], [], eof=False, closed=False)
    with open(w, "wb") as broken, pytest.raises(OutputClosed):
        pump(chan, broken, io.BytesIO())  # type: ignore[arg-type]
    chan.close()
