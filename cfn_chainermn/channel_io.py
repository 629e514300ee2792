"""Reading an SSH channel: line by line for our own parsers, byte for byte for the user's terminal.

`stream_lines` serves job output and the commands we run ourselves (stderr merged in, since
one ordered log is what a job's reader wants). `pump` serves `cfn-chainermn ssh NAME -- CMD`,
which promises what `ssh host CMD` does: the command's stdout on ours, its stderr on ours,
so that `... -- cat result.json > result.json` is not spoiled by an MPI warning.
"""

from __future__ import annotations

import select
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


def pump(chan: Any, out: BinaryIO, err: BinaryIO) -> None:
    """Copy a channel's stdout to `out` and its stderr to `err` as bytes arrive, until both end."""
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
        if chan.eof_received and not chan.recv_ready() and not chan.recv_stderr_ready():
            return
        if not moved:
            select.select([chan], [], [], 1.0)  # a paramiko channel is selectable: woken by data or EOF


def _write(stream: BinaryIO, data: bytes) -> None:
    stream.write(data)
    stream.flush()
