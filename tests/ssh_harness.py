"""An SSH server in the test process, and a TCP proxy that can freeze: a real connection for Remote
and the job commands, without sshd, and a path that silently stops forwarding.

- `ShellServer`: paramiko in server mode on 127.0.0.1; any public key logs in; every exec request
  runs `sh -c COMMAND` here with the channel as its stdin and stdout (stderr merged), and its exit
  status is sent back, as sshd and the master's login shell would. Global requests are refused,
  as sshd refuses the client's `keepalive@openssh.com` (an answer all the same).
- `FreezingProxy`: forwards TCP to a port (a local node's sshd, say); `freeze()` makes the
  connections open now (or, with `new_too`, every later one as well) swallow everything without
  closing: a dead NAT entry.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paramiko


def in_thread(func: Callable[[], object]) -> tuple[threading.Thread, list[BaseException]]:
    """Start `func` in a daemon thread; what it raises lands in the list, for the test to check."""
    raised: list[BaseException] = []

    def run() -> None:
        try:
            func()
        except BaseException as exc:  # handed to the test thread
            raised.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    return worker, raised


def _serve(listener: socket.socket, handle: Callable[[socket.socket], None]) -> threading.Thread:
    """Hand every connection `listener` accepts to `handle`, in a thread, until `_stop(listener)`."""

    def accept() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            handle(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    return thread


def _stop(sock: socket.socket, thread: threading.Thread | None = None) -> None:
    """Shut down, then close, then wait (bounded) for the thread blocked on it. close() alone
    wakes no thread blocked in accept() or recv() on it (Linux): that accept() goes on listening
    on the port, and takes the next connection there for this test's server, long after the test."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
    if thread is not None:
        thread.join(10)


class _Transport(paramiko.Transport):  # type: ignore[misc]
    """Notes each exec request's success reply as sent. paramiko sends it only after
    check_channel_exec_request returns (channel.py `_handle_request`), while the command's thread
    may already be done: a close sent before that reply makes the client's exec_command raise
    "Channel closed" (seen under load). The thread waits for the reply before closing."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(sock)
        self.replied: dict[int, threading.Event] = {}
        self.replied_lock = threading.Lock()

    def reply_event(self, chanid: int) -> threading.Event:
        with self.replied_lock:
            return self.replied.setdefault(chanid, threading.Event())

    def _send_user_message(self, data: Any) -> None:
        super()._send_user_message(data)
        raw = data.asbytes()
        if raw[:1] == bytes([paramiko.common.MSG_CHANNEL_SUCCESS]):
            self.reply_event(int.from_bytes(raw[1:5], "big")).set()


class _Login(paramiko.ServerInterface):  # type: ignore[misc]
    def __init__(self, server: ShellServer) -> None:
        self.server = server

    def get_allowed_auths(self, username: str) -> str:
        return "publickey"

    def check_auth_publickey(self, username: str, key: Any) -> int:
        return int(paramiko.AUTH_SUCCESSFUL)

    def check_channel_request(self, kind: str, chanid: int) -> int:
        return int(paramiko.OPEN_SUCCEEDED if kind == "session" else paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED)

    def check_channel_exec_request(self, channel: Any, command: bytes) -> bool:
        threading.Thread(target=self.server.run, args=(channel, command.decode()), daemon=True).start()
        return True


class ShellServer:
    def __init__(self, host_key: Path) -> None:
        self.key = paramiko.Ed25519Key.from_private_key_file(str(host_key))
        self.public = f"{self.key.get_name()} {self.key.get_base64()}"
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.procs: list[subprocess.Popen[bytes]] = []
        self.transports: list[paramiko.Transport] = []
        self.accepting = _serve(self.listener, self._login)

    def _login(self, conn: socket.socket) -> None:
        transport = _Transport(conn)
        transport.add_server_key(self.key)
        self.transports.append(transport)
        with contextlib.suppress(Exception):
            transport.start_server(server=_Login(self))

    def run(self, chan: Any, command: str) -> None:
        proc = subprocess.Popen(["sh", "-c", command], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(proc)
        assert proc.stdin is not None and proc.stdout is not None

        def feed() -> None:  # the channel to the command's stdin; EOF (the client went away) closes it
            with contextlib.suppress(Exception):
                while data := chan.recv(65536):
                    proc.stdin.write(data)  # type: ignore[union-attr]
                    proc.stdin.flush()  # type: ignore[union-attr]
            with contextlib.suppress(OSError):
                proc.stdin.close()  # type: ignore[union-attr]

        threading.Thread(target=feed, daemon=True).start()
        with contextlib.suppress(Exception):
            while data := proc.stdout.read1(65536):
                chan.sendall(data)
            chan.send_exit_status(proc.wait())
            chan.transport.reply_event(chan.remote_chanid).wait(10)  # the exec's reply first
            chan.close()

    def close(self) -> None:
        _stop(self.listener)
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        for transport in self.transports:
            transport.close()
        self.accepting.join(10)  # after the transports: a login it is still in fails now


class FreezingProxy:
    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.target = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.frozen: list[threading.Event] = []
        self.freeze_new = False
        self.socks: list[socket.socket] = []
        self.accepting = _serve(self.listener, self._forward)

    def freeze(self, *, new_too: bool = False) -> None:
        """Stop forwarding on every connection open now (and later ones with `new_too`); close none."""
        self.freeze_new = new_too
        for event in self.frozen:
            event.set()

    def _forward(self, client: socket.socket) -> None:
        upstream = socket.create_connection(self.target)
        frozen = threading.Event()
        if self.freeze_new:
            frozen.set()
        self.frozen.append(frozen)
        self.socks += [client, upstream]
        for src, dst in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pipe, args=(src, dst, frozen), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket, frozen: threading.Event) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                if not frozen.is_set():  # frozen: swallowed, the connection stays open
                    dst.sendall(data)
            if not frozen.is_set():
                dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        _stop(self.listener, self.accepting)
        for sock in self.socks:
            _stop(sock)
