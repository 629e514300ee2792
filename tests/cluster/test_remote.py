"""Remote: failures become one clear RemoteError naming the host, and fingerprints match OpenSSH's."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest
from fake_channel import FakeChannel

from cfn_chainermn.cluster.remote import Remote, fingerprint, host_entry
from cfn_chainermn.errors import ConfigError, RemoteError


@pytest.fixture
def key(tmp_path: Path) -> Path:
    path = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path


def test_fingerprint_matches_ssh_keygen(key: Path) -> None:
    line = (key.with_suffix(".pub")).read_text()
    expected = subprocess.run(["ssh-keygen", "-l", "-f", str(key.with_suffix(".pub"))], capture_output=True,
                              text=True, check=True).stdout.split()[1]
    assert fingerprint(line) == expected


def test_known_hosts_names() -> None:
    assert host_entry("10.0.0.4", 22) == "10.0.0.4"
    assert host_entry("127.0.0.2", 2222) == "[127.0.0.2]:2222"


def test_refused_connection_names_the_host_fast(key: Path) -> None:
    """Fast: the refusal itself is the error, not the connect timeout running out (which would
    say "timed out"). The port stays bound, not listening, for the whole test: a port closed again
    could be taken by another server on the machine before the connection."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        remote = Remote("127.0.0.1", port=port, user="u", key_file=key,
                        host_key=key.with_suffix(".pub").read_text(), connect_timeout=30)
        with pytest.raises(RemoteError, match=rf"^cannot reach 127\.0\.0\.1:{port} within 30s: Connection refused$"):
            remote.connect()


def test_missing_key_file_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^--identity-file: .* does not exist"):
        Remote("127.0.0.1", user="u", key_file=tmp_path / "nope", host_key="ssh-ed25519 AAAA").connect()


def test_no_published_key_refuses_unless_opted_in(key: Path) -> None:
    with pytest.raises(RemoteError, match=r"no published host key for 127\.0\.0\.1.*--accept-new-host-key"):
        Remote("127.0.0.1", user="u", key_file=key, host_key=None).connect()
    with pytest.raises(RemoteError, match=r"^no published host key for 127\.0\.0\.1 \(the console output could not "
                                          r"be read \(UnauthorizedOperation\)\); wait"):
        Remote("127.0.0.1", user="u", key_file=key, host_key=None,
               host_key_hint="the console output could not be read (UnauthorizedOperation)").connect()


class _Transport:
    def __init__(self, chan: FakeChannel | None, open_error: BaseException | None = None) -> None:
        self.chan, self.open_error = chan, open_error

    def open_session(self) -> FakeChannel | None:
        if self.open_error is not None:
            raise self.open_error
        return self.chan


@pytest.mark.parametrize(("transport", "message"), [
    (lambda p: _Transport(None, p.ChannelException(1, "Administratively prohibited")),
     r"^SSH to u@h:22 could not start a command: .*Administratively prohibited"),
    (lambda p: _Transport(FakeChannel(recv_error=ConnectionResetError(104, "Connection reset by peer"))),
     r"^the SSH session to u@h:22 broke: .*Connection reset by peer"),
    (lambda p: _Transport(FakeChannel(recv_error=EOFError())), r"^the SSH session to u@h:22 broke: EOFError"),
    (lambda p: _Transport(FakeChannel(status=-1)),
     r"^the SSH session to u@h:22 closed without an exit status \(connection lost\?\)"),
])
def test_a_session_that_breaks_after_login_is_one_remote_error(key: Path, monkeypatch: pytest.MonkeyPatch,
                                                              transport: Any, message: str) -> None:
    """Never a traceback: channel refusals, resets and lost exit statuses all name the host."""
    import paramiko

    remote = Remote("h", user="u", key_file=key, host_key="ssh-ed25519 AAAA")
    client = type("Client", (), {"get_transport": lambda self: transport(paramiko)})()
    monkeypatch.setattr(remote, "connect", lambda: client)
    with pytest.raises(RemoteError, match=message):
        remote.run("true", on_line=print)


def test_accepting_a_new_host_key_requires_somewhere_to_report_it(key: Path) -> None:
    """Otherwise AutoAddPolicy would trust whatever the server shows without a word."""
    with pytest.raises(ValueError, match=r"accept_new_host_key=True\) needs notice="):
        Remote("127.0.0.1", user="u", key_file=key, host_key=None, accept_new_host_key=True)


def test_connections_ack_at_once_and_never_wait_for_nagle(key: Path) -> None:
    """Both settings take ~0.1 s off every connection to sshd (benchmarks/bench_jobs.py)."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        remote = Remote("127.0.0.1", port=server.getsockname()[1], user="u", key_file=key, host_key="x y")
        sock = remote._dial()
        peer, _ = server.accept()
        with sock, peer:
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
            assert sock.gettimeout() == remote.connect_timeout
            peer.sendall(b"SSH-2.0-test\r\n")
            assert sock.recv(64) == b"SSH-2.0-test\r\n"
            if hasattr(socket, "TCP_QUICKACK"):
                assert type(sock).__name__ == "_QuickAckSocket"
                assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK) == 1


def test_a_garbled_recorded_key_is_refused_before_connecting(key: Path) -> None:
    """Nothing listens on port 9: a RemoteError about the key, not about reaching the host, proves no dial."""
    for recorded in ("ssh-ed25519 AAAAC3Nza", "ssh-ed25519", "ssh-ed25519 not*base64"):
        with pytest.raises(RemoteError, match=r"^the host key recorded for 127\.0\.0\.1 is not a whole SSH public key"):
            Remote("127.0.0.1", port=9, user="u", key_file=key, host_key=recorded).connect()
