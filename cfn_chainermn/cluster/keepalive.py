"""An SSH connection that silently stops forwarding counts as lost within a bounded time.

Without this, `job submit` over a path that died without a reset (a NAT that dropped its
entry, a frozen proxy, a cable pulled somewhere) waits forever: nothing arrives, nothing fails.
paramiko's own `set_keepalive` sends requests that want no answer, which keeps a NAT open but
cannot tell an idle job (no output for minutes) from a dead path. So, as OpenSSH's
ServerAliveInterval does, a `keepalive@openssh.com` request that wants an answer goes out after
`interval` seconds with nothing received (sshd answers every one, if only to refuse it), and
after `dead_after` seconds with nothing received at all the transport is closed. That ends every
channel on it as a lost connection does: readers see it closed without an exit status.
What was last received is noted by the connection's socket itself (_QuickAckSocket).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from typing import Any, Protocol

DEFAULT_INTERVAL = 15.0
DEFAULT_COUNT = 4  # unanswered intervals before the connection counts as lost: 60 s by default
REQUEST = "keepalive@openssh.com"


class Watched(Protocol):
    """A socket that notes when it last received something (_QuickAckSocket)."""

    last_received: float


_QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)  # Linux only


class _QuickAckSocket(socket.socket):
    """A socket that ACKs what it receives at once, and notes when it last received anything
    (`last_received`, time.monotonic(): what the keepalive watches).

    Nagle on either side plus delayed ACKs (40 ms on Linux) stall an SSH handshake whenever
    one side writes two small packets in a row: sshd does so before SERVICE_ACCEPT and before
    the confirmation of every channel. With Nagle off here and quick ACKs, a connection plus
    one command takes ~35 ms instead of ~120 ms against a local sshd (benchmarks/bench_jobs.py).
    TCP_QUICKACK does not stick, so it is set again before every read (Linux only).
    """

    last_received = 0.0

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        if _QUICKACK is not None:
            self.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
        data = super().recv(bufsize, flags)
        if data:
            self.last_received = time.monotonic()
        return data


class Keepalive:
    """Watches one paramiko transport from a daemon thread; `lost` says why it was given up."""

    def __init__(self, transport: Any, sock: Watched, *, interval: float, dead_after: float) -> None:
        if interval <= 0 or dead_after < interval:
            raise ValueError(f"keepalive: interval {interval:g}s, dead after {dead_after:g}s")
        self.interval = interval
        self.dead_after = dead_after
        self.lost: str | None = None
        self._transport = transport
        self._sock = sock
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True, name="ssh-keepalive")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _watch(self) -> None:
        asking: threading.Thread | None = None
        tick = min(1.0, self.interval / 2)
        while not self._stop.wait(tick) and self._transport.is_active():
            silent = time.monotonic() - self._sock.last_received
            if silent >= self.dead_after:
                self.lost = f"nothing received for {self.dead_after:g}s, keepalives unanswered"
                self._transport.close()  # wakes every reader of its channels
                return
            if silent >= self.interval and (asking is None or not asking.is_alive()):
                # wait=True blocks until the answer, or until the transport closes: a thread of its own
                asking = threading.Thread(target=self._ask, daemon=True, name="ssh-keepalive-request")
                asking.start()

    def _ask(self) -> None:
        with contextlib.suppress(Exception):  # a transport closing under it: the watch says why
            self._transport.global_request(REQUEST, wait=True)
