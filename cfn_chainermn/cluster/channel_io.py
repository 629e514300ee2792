"""Reading an SSH channel: line by line for our own parsers, byte for byte for the user's terminal.

`stream_lines` serves job output and the commands we run ourselves (stderr merged in, since
one ordered log is what a job's reader wants). `pump` serves `cfn-chainermn ssh NAME -- CMD`,
which promises what `ssh host CMD` does: the command's stdout on ours, its stderr on ours,
so that `... -- cat result.json > result.json` is not spoiled by an MPI warning.
"""

from __future__ import annotations

import contextlib
import os
import select
import threading
from collections.abc import Callable
from typing import Any, BinaryIO

LineSink = Callable[[str], None]
CHUNK = 32768


def stream_lines(chan: Any, on_line: LineSink) -> None:
    """Read a channel to EOF, calling `on_line` per complete line (partial last line included)."""
    buf = b""
    while True:
        data = chan.recv(CHUNK)
        if not data:
            break
        buf += data
        *lines, buf = buf.split(b"\n")
        for line in lines:
            on_line(line.decode("utf-8", "replace").rstrip("\r"))
    if buf:
        on_line(buf.decode("utf-8", "replace"))


class OutputClosed(Exception):
    """Our stdout was closed by its reader (`... | head -1`): stop, as ssh does, without a message."""


def pump(chan: Any, out: BinaryIO, err: BinaryIO, stdin: BinaryIO | None = None) -> None:
    """Copy a channel's stdout to `out` and its stderr to `err` as bytes arrive, until both end.

    `stdin` is fed to the command in the background (EOF when it ends); without one the command
    reads EOF at once. A dropped connection closes the channel without EOF: that ends it too.
    """
    if stdin is None:
        chan.shutdown_write()
    else:
        threading.Thread(target=_feed, args=(chan, stdin), daemon=True, name="ssh-stdin").start()
    while True:
        moved = False
        while chan.recv_stderr_ready():
            _write(err, chan.recv_stderr(CHUNK))
            moved = True
        if chan.recv_ready():
            data = chan.recv(CHUNK)
            if data:
                _write(out, data)
                moved = True
        if (chan.eof_received or chan.closed) and not chan.recv_ready() and not chan.recv_stderr_ready():
            return
        if not moved:
            select.select([chan], [], [], 1.0)  # a paramiko channel is selectable: woken by data or EOF


def _feed(chan: Any, stdin: BinaryIO) -> None:
    """Send what arrives on `stdin` (a pipe, a file, a terminal) to the command, then EOF.

    A real file descriptor is read with os.read, never through Python's buffered stdin: this
    thread may still be blocked in a read when the command has ended and we exit, and a
    BufferedReader's lock held by a daemon thread aborts the interpreter at shutdown
    ("could not acquire lock for <_io.BufferedReader name='<stdin>'>", exit 134).
    """
    try:
        fd = stdin.fileno()
    except (OSError, ValueError, AttributeError):  # an in-memory stream (tests): read it directly
        fd = -1

    def read(n: int) -> bytes:
        return os.read(fd, n) if fd >= 0 else stdin.read(n)

    try:
        while data := read(CHUNK):
            chan.sendall(data)
        chan.shutdown_write()
    except (OSError, EOFError, ValueError):
        pass  # the command ended (channel closed) before reading everything: as ssh, drop the rest


def _write(stream: BinaryIO, data: bytes) -> None:
    try:
        stream.write(data)
        stream.flush()
    except BrokenPipeError:
        # Point the broken stream at /dev/null, so that Python's own flush at exit stays quiet.
        with contextlib.suppress(OSError, ValueError, AttributeError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, stream.fileno())
            os.close(devnull)
        raise OutputClosed from None
