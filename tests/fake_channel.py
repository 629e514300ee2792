"""The one stand-in for paramiko.Channel in the tests, importable from every test folder.

Two ways to fill it:

- scripted: queued stdout/stderr chunks, then an ending (EOF, or closed without one as when
  the connection drops), an exit status, or an error that `recv` raises;
- `FakeChannel.shell(command)`: `sh -c command` on this machine stands in for sshd and the
  master's login shell, pipes for the channel (stderr merged, as `open_command` asks), so the
  exact command and bytes that a job command sends are run.

It has the slice of paramiko.Channel that cluster.remote, cluster.channel_io and jobs.runner use;
ShellRemote is a Remote that opens shell channels.
"""

from __future__ import annotations

import os
import subprocess
import threading
from collections import deque
from collections.abc import Iterable
from typing import Any

from cfn_chainermn.cluster.remote import Remote


class FakeChannel:
    def __init__(self, out: Iterable[bytes] = (), err: Iterable[bytes] = (), *, eof: bool = True,
                 closed: bool = False, status: int = 0, recv_error: BaseException | None = None) -> None:
        self.out, self.err = deque(out), deque(err)
        self.eof_received, self.closed = eof, closed
        self.status = status
        self.recv_error = recv_error
        self.command: str | None = None
        self.combine_stderr = False
        self.sent = b""
        self.write_shut = threading.Event()
        self.proc: subprocess.Popen[bytes] | None = None
        self._pipe: tuple[int, int] | None = None

    @classmethod
    def shell(cls, command: str) -> FakeChannel:
        """A channel whose command runs: `sh -c command` with its stdin, stdout and stderr on pipes."""
        chan = cls(eof=False)
        chan.set_combine_stderr(True)
        # in a session of its own, as sshd starts a command: a signal to its group reaches its children
        chan.proc = subprocess.Popen(["sh", "-c", command], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        chan.command = command
        return chan

    # starting a command (Remote.open_command)
    def set_combine_stderr(self, combine: bool) -> None:
        self.combine_stderr = combine

    def exec_command(self, command: str) -> None:
        self.command = command

    # reading
    def fileno(self) -> int:
        """Always readable, as paramiko's pipe is once the channel has closed: select never waits."""
        if self._pipe is None:
            self._pipe = os.pipe()
            os.write(self._pipe[1], b"x")
        return self._pipe[0]

    def recv_ready(self) -> bool:
        return bool(self.out)

    def recv_stderr_ready(self) -> bool:
        return bool(self.err)

    def recv(self, n: int) -> bytes:
        if self.recv_error is not None:
            raise self.recv_error
        if self.proc is not None:
            assert self.proc.stdout is not None
            return self.proc.stdout.read1(n)
        return self.out.popleft() if self.out else b""

    def recv_stderr(self, n: int) -> bytes:
        return self.err.popleft()

    def recv_exit_status(self) -> int:
        return self.proc.wait(timeout=30) if self.proc is not None else self.status

    # writing
    def sendall(self, data: bytes) -> None:
        if self.proc is not None:
            assert self.proc.stdin is not None
            self.proc.stdin.write(data)
            self.proc.stdin.flush()
        else:
            self.sent += data

    def shutdown_write(self) -> None:
        if self.proc is not None and self.proc.stdin is not None:
            self.proc.stdin.close()
        self.write_shut.set()

    def close(self) -> None:
        """As paramiko's close: the channel is closed, and the command's stdin ends (sshd closes it)."""
        self.closed = True
        if self.proc is not None and self.proc.stdin is not None and not self.proc.stdin.closed:
            self.proc.stdin.close()
        if self._pipe is not None:
            for fd in self._pipe:
                os.close(fd)
            self._pipe = None


class ShellRemote(Remote):
    """A Remote whose every command runs in a shell channel here: run, capture, check and
    jobs.runner work as against a master, without SSH (stderr is always merged)."""

    def __init__(self) -> None:
        super().__init__("master.test", user="chainer", key_file="/nonexistent/key")
        self.commands: list[str] = []

    def open_command(self, command: str, *, combine: bool = True) -> Any:
        self.commands.append(command)
        return FakeChannel.shell(command)
