"""SSH to a cluster node with paramiko: host key verified, output streamed.

Usage::

    with Remote("203.0.113.10", user="chainer", key_file="~/.ssh/k.pem",
                host_key="ssh-ed25519 AAAA...") as r:
        rc = r.run("hostname", on_line=print)

The expected host key comes from what the node agent published (the stack's key bucket, or the
local cluster's folder). A key that differs is refused with a message that says so; only
`accept_new_host_key=True` (`--accept-new-host-key`) takes whatever the server shows, and even then
the fingerprint is reported (to `notice`, which that option requires): never silently off.

A connection that stops answering counts as lost after `dead_after` seconds (cluster/keepalive.py):
its channels close as when the network drops, and `lost` says why.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import os
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, BinaryIO

from cfn_chainermn.cluster import keepalive
from cfn_chainermn.cluster.channel_io import LineSink, OutputClosed, pump, stream_lines
from cfn_chainermn.cluster.keepalive import _QuickAckSocket
from cfn_chainermn.errors import ConfigError, RemoteCommandError, RemoteError

if TYPE_CHECKING:
    import paramiko

DEFAULT_CONNECT_TIMEOUT = 10.0
OUTPUT_CLOSED = 128 + 13  # what a shell reports for a command ended by SIGPIPE


def _skip_invoke() -> None:
    """Keep paramiko from importing `invoke` (~60 ms of every job's start-up).

    paramiko needs invoke only for `Match exec` in an OpenSSH config file, which this module
    never reads; paramiko treats a failed import of it as "feature unavailable".
    """
    if "paramiko" not in sys.modules:
        sys.modules.setdefault("invoke", None)  # type: ignore[arg-type]


def fingerprint(key_line: str) -> str:
    """OpenSSH-style SHA256 fingerprint of an "ssh-ed25519 AAAA..." line."""
    blob = base64.b64decode(key_line.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def host_entry(host: str, port: int) -> str:
    """The known_hosts name OpenSSH and paramiko use: `host`, or `[host]:port` off port 22."""
    return host if port == 22 else f"[{host}]:{port}"


class Remote:
    """One SSH connection to one host; keyword-only options, connect on first use."""

    def __init__(self, host: str, *, user: str, key_file: str | os.PathLike[str], port: int = 22,
                 host_key: str | None = None, accept_new_host_key: bool = False,
                 host_fingerprints: tuple[str, ...] = (), host_key_hint: str = "",
                 connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
                 notice: LineSink | None = None, keepalive_interval: float = keepalive.DEFAULT_INTERVAL,
                 dead_after: float | None = None) -> None:
        if accept_new_host_key and notice is None:  # the one report of what was trusted: never skipped
            raise ValueError("Remote(accept_new_host_key=True) needs notice=: the accepted key's fingerprint "
                             "must be reported")
        self.host = host
        self.port = port
        self.user = user
        self.key_file = Path(os.path.expanduser(os.fspath(key_file)))
        self.host_key = host_key
        self.accept_new_host_key = accept_new_host_key
        self.host_fingerprints = host_fingerprints  # checked when no host_key is known (console output)
        self.host_key_hint = host_key_hint  # why neither is known, for the refusal
        self.connect_timeout = connect_timeout
        self.notice = notice
        self.keepalive_interval = keepalive_interval
        self.dead_after = dead_after if dead_after is not None else keepalive_interval * keepalive.DEFAULT_COUNT
        self._client: paramiko.SSHClient | None = None
        self._keepalive: keepalive.Keepalive | None = None
        self._verified: str | None = None  # the host key this connection checked, for again()

    @property
    def where(self) -> str:
        return f"{self.user}@{self.host}:{self.port}"

    def __enter__(self) -> Remote:
        self.connect()
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def connect(self) -> paramiko.SSHClient:
        """Open the connection once; every failure becomes a RemoteError that names the host."""
        if self._client is not None:
            return self._client
        if not self.key_file.is_file():
            raise ConfigError(f"--identity-file: {self.key_file} does not exist; give the private key of the "
                              "cluster's key pair")
        if self.host_key is None and not self.host_fingerprints and not self.accept_new_host_key:
            why = f" ({self.host_key_hint})" if self.host_key_hint else ""
            raise RemoteError(f"no published host key for {self.host}{why}; wait for the node agent to publish it, "
                              "or pass --accept-new-host-key to trust the key the server shows")
        if self.host_key is not None and not self.accept_new_host_key:
            from cfn_chainermn.cluster.console_keys import is_public_key

            words = self.host_key.split()
            if len(words) < 2 or not is_public_key(words[0], words[1]):
                raise RemoteError(f"the host key recorded for {self.host} is not a whole SSH public key "
                                  f"({self.host_key[:40]!r}...); refusing; pass --accept-new-host-key to trust "
                                  "the key the server shows")
        sock = self._dial()  # before the import: sshd starts its side while paramiko loads
        _skip_invoke()
        import paramiko

        client = paramiko.SSHClient()
        entry = host_entry(self.host, self.port)
        if self.host_key is not None and not self.accept_new_host_key:
            ktype, b64 = self.host_key.split()[:2]
            client.get_host_keys().add(entry, ktype, paramiko.PKey.from_type_string(ktype, base64.b64decode(b64)))
            client.set_missing_host_key_policy(paramiko.RejectPolicy())
        elif self.host_fingerprints and not self.accept_new_host_key:
            client.set_missing_host_key_policy(_fingerprint_policy(paramiko, self))
        else:
            client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        try:
            client.connect(self.host, port=self.port, username=self.user, key_filename=str(self.key_file), sock=sock,
                           timeout=self.connect_timeout, banner_timeout=self.connect_timeout,
                           auth_timeout=self.connect_timeout, allow_agent=False, look_for_keys=False)
        except BaseException as exc:
            client.close()
            sock.close()
            failure = self._connect_failure(paramiko, exc)
            if failure is None:  # Ctrl-C, or the fingerprint policy's own RemoteError
                raise
            raise failure from exc
        transport = client.get_transport()
        assert transport is not None  # connect() succeeded
        self._verified = _key_line(transport.get_remote_server_key())
        if self.accept_new_host_key and self.notice is not None:
            self.notice(f"accepted host key {fingerprint(self._verified)} of {self.host}:{self.port} "
                        "(--accept-new-host-key)")
        self._keepalive = keepalive.Keepalive(transport, sock, interval=self.keepalive_interval,
                                              dead_after=self.dead_after)
        self._keepalive.start()
        self._client = client
        return client

    @property
    def lost(self) -> str | None:
        """Why the connection was given up as lost (nothing received for too long), else None."""
        return self._keepalive.lost if self._keepalive is not None else None

    def again(self) -> Remote:
        """A new, unconnected Remote to the same host that trusts exactly the key this one verified:
        to cancel a job over a fresh connection when this one was lost."""
        other = copy.copy(self)
        other._client, other._keepalive = None, None
        if self._verified is not None:
            other.host_key, other.host_fingerprints, other.accept_new_host_key = self._verified, (), False
        return other

    def _connect_failure(self, paramiko: Any, exc: BaseException) -> RemoteError | None:
        """The one-line error for a failed login, naming the host; None to let `exc` through."""
        if isinstance(exc, paramiko.BadHostKeyException):
            return RemoteError(
                f"host key of {self.host}:{self.port} has CHANGED: it shows {fingerprint(_key_line(exc.key))}, "
                f"the cluster published {fingerprint(self.host_key or '')}; refusing to connect (possible "
                "man-in-the-middle). If the node was replaced, rerun with --accept-new-host-key")
        if isinstance(exc, paramiko.SSHException):
            if "not found in known_hosts" in str(exc):
                return RemoteError(f"{self.host}:{self.port} offered a host key of another type than the one "
                                   "published; refusing (pass --accept-new-host-key to trust it)")
            return RemoteError(f"SSH to {self.where} failed: {exc}")
        if isinstance(exc, (OSError, EOFError)):
            return self._unreachable(exc) if isinstance(exc, OSError) else RemoteError(
                f"SSH to {self.where} failed: the server closed the connection")
        return None

    def _dial(self) -> _QuickAckSocket:
        """TCP to the host, tuned for SSH's small request/reply packets (see _QuickAckSocket)."""
        try:
            raw = socket.create_connection((self.host, self.port), timeout=self.connect_timeout)
        except OSError as exc:
            raise self._unreachable(exc) from exc
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock = _QuickAckSocket(raw.family, raw.type, raw.proto, fileno=raw.detach())
        sock.settimeout(self.connect_timeout)
        sock.last_received = time.monotonic()
        return sock

    def _unreachable(self, exc: OSError) -> RemoteError:
        return RemoteError(f"cannot reach {self.host}:{self.port} within {self.connect_timeout:g}s: "
                           f"{exc.strerror or exc}")

    def close(self) -> None:
        if self._keepalive is not None:
            self._keepalive.stop()
        if self._client is not None:
            self._client.close()
            self._client = None

    def open_command(self, command: str, *, combine: bool = True) -> paramiko.Channel:
        """Start `command` (stderr merged into stdout unless `combine` is off); the caller reads the channel."""
        transport = self.connect().get_transport()
        if transport is None:  # pragma: no cover - connect() guarantees one
            raise RemoteError(f"SSH to {self.where}: no transport")
        try:
            chan = transport.open_session()
            chan.set_combine_stderr(combine)
            chan.exec_command(command)
        except transport_errors() as exc:
            raise RemoteError(f"SSH to {self.where} could not start a command: {_why(exc)}") from exc
        return chan

    def run(self, command: str, *, on_line: LineSink) -> int:
        """Run `command`, hand every output line to `on_line` as it arrives, return its exit code."""
        return self._finish(self.open_command(command), lambda chan: stream_lines(chan, on_line))

    def relay(self, command: str, out: BinaryIO, err: BinaryIO, stdin: BinaryIO | None = None) -> int:
        """Run `command` as `ssh host command` would: `stdin` to it, its stdout to `out`, stderr to `err`.

        Its exit code; 141 (as for SIGPIPE) when `out` was closed by its reader.
        """
        try:
            return self._finish(self.open_command(command, combine=False), lambda chan: pump(chan, out, err, stdin))
        except OutputClosed:
            return OUTPUT_CLOSED

    def _finish(self, chan: paramiko.Channel, read: Callable[[paramiko.Channel], None]) -> int:
        """Read `chan` to its end with `read`; the command's exit code, or a RemoteError if the session broke."""
        try:
            read(chan)
            rc = int(chan.recv_exit_status())
        except transport_errors() as exc:
            raise RemoteError(f"the SSH session to {self.where} broke: {_why(exc)}") from exc
        finally:
            chan.close()
        if rc == -1:
            if self.lost:
                raise RemoteError(f"lost the SSH connection to {self.where}: {self.lost}")
            raise RemoteError(f"the SSH session to {self.where} closed without an exit status (connection lost?)")
        return rc

    def capture(self, command: str) -> tuple[int, str]:
        """Run `command`; its exit code and combined output."""
        lines: list[str] = []
        rc = self.run(command, on_line=lines.append)
        return rc, "".join(f"{line}\n" for line in lines)

    def check(self, command: str) -> str:
        """Run `command`; its output, or RemoteCommandError on a non-zero exit."""
        rc, out = self.capture(command)
        if rc != 0:
            raise RemoteCommandError(command, rc, out)
        return out


def transport_errors() -> tuple[type[BaseException], ...]:
    """What a broken SSH session raises: socket errors, EOF, and paramiko's own."""
    _skip_invoke()
    import paramiko

    return (OSError, EOFError, paramiko.SSHException)


def _fingerprint_policy(paramiko: Any, remote: Remote) -> Any:
    """Accept the server's key only when its fingerprint is one the console output listed."""

    class FingerprintPolicy(paramiko.MissingHostKeyPolicy):  # type: ignore[misc]
        def missing_host_key(self, client: Any, hostname: str, key: Any) -> None:
            shown = fingerprint(_key_line(key))
            if shown not in remote.host_fingerprints:
                raise RemoteError(
                    f"host key of {remote.host}:{remote.port} shows {shown}, which is not among the fingerprints "
                    f"in its console output ({', '.join(remote.host_fingerprints)}); refusing to connect "
                    "(possible man-in-the-middle). If the node was replaced, rerun with --accept-new-host-key")
            client.get_host_keys().add(hostname, key.get_name(), key)

    return FingerprintPolicy()


def _why(exc: BaseException) -> str:
    """An exception's message, or its type when it has none (EOFError)."""
    return str(exc) or type(exc).__name__


def _key_line(key: Any) -> str:
    return f"{key.get_name()} {key.get_base64()}"
