"""Keepalive: a connection that silently stops forwarding is lost within `dead_after`, an idle one is not.

A real SSH session (tests/ssh_harness.py: paramiko's server here) through a TCP proxy that can
freeze: it stops forwarding without closing, as a dropped NAT entry does.
"""

from __future__ import annotations

import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from ssh_harness import FreezingProxy, ShellServer, in_thread

from cfn_chainermn.cluster.remote import Remote
from cfn_chainermn.errors import RemoteError


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, Path]:
    out = {}
    for name in ("client", "host"):
        out[name] = tmp_path / name
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(out[name])], check=True)
    return out


@pytest.fixture
def path(keys: dict[str, Path]) -> Iterator[tuple[ShellServer, FreezingProxy]]:
    server = ShellServer(keys["host"])
    proxy = FreezingProxy(server.port)
    try:
        yield server, proxy
    finally:
        proxy.close()
        server.close()


def _remote(keys: dict[str, Path], server: ShellServer, proxy: FreezingProxy, *,
            interval: float = 0.2, dead_after: float = 1.0) -> Remote:
    # connect_timeout (banner and login too): a bound on a hang only, no test here expects it to run out
    return Remote("127.0.0.1", port=proxy.port, user="u", key_file=keys["client"], host_key=server.public,
                  keepalive_interval=interval, dead_after=dead_after, connect_timeout=20)


def test_an_idle_command_longer_than_the_bound_is_not_taken_for_a_lost_one(
        keys: dict[str, Path], path: tuple[ShellServer, FreezingProxy]) -> None:
    """No output for 6 s, 1.5 times `dead_after`: the keepalives are answered, so it runs on.
    (A bound of seconds, not one: a CI machine that stalls this process for a second must not
    turn answered keepalives into a false loss.)"""
    with _remote(keys, *path, interval=0.3, dead_after=4.0) as remote:
        lines: list[str] = []
        assert remote.run("echo ready; sleep 6; echo done", on_line=lines.append) == 0
        assert lines == ["ready", "done"] and remote.lost is None


def test_a_frozen_connection_is_lost_within_the_bound(keys: dict[str, Path],
                                                       path: tuple[ShellServer, FreezingProxy]) -> None:
    server, proxy = path
    remote = _remote(keys, server, proxy)
    ready = threading.Event()
    worker, raised = in_thread(lambda: remote.run("echo ready; sleep 60", on_line=lambda line: ready.set()))
    assert ready.wait(10)
    proxy.freeze()
    worker.join(40)  # well before the job's 60 s: bounded by dead_after, not by the job (no tighter timed assert)
    remote.close()
    assert not worker.is_alive(), "the client hung on a connection that stopped forwarding"
    assert len(raised) == 1 and isinstance(raised[0], RemoteError)
    assert str(raised[0]) == (f"lost the SSH connection to u@127.0.0.1:{proxy.port}: nothing received for 1s, "
                              "keepalives unanswered")


def test_again_trusts_exactly_the_key_it_saw(keys: dict[str, Path], path: tuple[ShellServer, FreezingProxy]) -> None:
    server, proxy = path
    notes: list[str] = []
    first = Remote("127.0.0.1", port=proxy.port, user="u", key_file=keys["client"], host_key=None,
                   accept_new_host_key=True, notice=notes.append)
    with first:
        assert first.capture("echo one") == (0, "one\n")
    other = first.again()
    assert (other.host_key, other.accept_new_host_key, other._client) == (server.public, False, None)
    with other:
        assert other.capture("echo two") == (0, "two\n")
    assert len(notes) == 1  # the new connection accepted nothing new


def test_a_closed_server_and_proxy_take_no_more_connections(keys: dict[str, Path]) -> None:
    """What every test here rests on: after close(), neither is left listening. close() alone
    left the thread blocked in accept() with the socket still listening on its port (Linux wakes
    no accept() on close), so a connection there, long after, still got this harness's SSH."""
    server = ShellServer(keys["host"])
    proxy = FreezingProxy(server.port)
    for closed in (proxy, server):
        closed.close()
        assert not closed.accepting.is_alive()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", closed.port), timeout=30).close()
