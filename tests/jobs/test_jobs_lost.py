"""An attached job whose connection silently stops forwarding: within a bounded time the client
says so, names the job, and cancels it over a new connection when one can be made.

The master is tests/ssh_harness.py's SSH server (commands run here with `sh -c`), reached
through a proxy that freezes: it stops forwarding without closing, so the server's side, like an
sshd without ClientAliveInterval, never notices and its watchdog never fires.
"""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_channel import FakeChannel, ShellRemote
from folder_helpers import launch_with_plain_cmd
from ssh_harness import FreezingProxy, ShellServer, in_thread

from cfn_chainermn.cluster.remote import Remote
from cfn_chainermn.errors import RemoteError
from cfn_chainermn.jobs import folder as job_folder
from cfn_chainermn.jobs import runner as jobs
from cfn_chainermn.jobs import scripts as job_scripts

TICKER = b"#!/bin/sh\necho tick; exec sleep 60\n"


@pytest.fixture
def master(tmp_path: Path) -> Iterator[tuple[ShellServer, FreezingProxy, Path]]:
    key = tmp_path / "keys" / "client"
    key.parent.mkdir()
    for name in ("client", "host"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key.parent / name)], check=True)
    server = ShellServer(key.parent / "host")
    proxy = FreezingProxy(server.port)
    try:
        yield server, proxy, key
    finally:
        proxy.close()
        server.close()


def _start_and_freeze(tmp_path: Path, master: tuple[ShellServer, FreezingProxy, Path], *,
                      new_too: bool) -> tuple[list[BaseException], Path]:
    """Within its bounds: the worker must end long before the job's 60 s (join's 40 s), which is
    what tells a lost connection given up from one waited on. No timed assertion beyond that: a
    loaded CI machine may take seconds longer. The new connection's timeout (banner and login
    too) is short only where it is expected to run out."""
    server, proxy, key = master
    launch = launch_with_plain_cmd(tmp_path, program=TICKER)
    remote = Remote("127.0.0.1", port=proxy.port, user="u", key_file=key, host_key=server.public,
                    keepalive_interval=0.2, dead_after=1.0, connect_timeout=2 if new_too else 20)
    ticked = threading.Event()

    def run() -> None:
        with remote:
            jobs.start(remote, launch, detach=False, on_line=lambda line: ticked.set())

    worker, raised = in_thread(run)
    assert ticked.wait(15)
    proxy.freeze(new_too=new_too)
    worker.join(40)
    assert not worker.is_alive(), "job submit hung on a connection that stopped forwarding"
    return raised, tmp_path / "shared" / "jobs" / "j1"


def _group_gone(d: Path) -> bool:
    try:
        os.killpg(int((d / "pgid").read_text()), 0)
    except ProcessLookupError:
        return True
    return False


def test_a_frozen_connection_cancels_the_job_over_a_new_one(tmp_path: Path,
                                                            master: tuple[ShellServer, FreezingProxy, Path]) -> None:
    raised, d = _start_and_freeze(tmp_path, master, new_too=False)
    assert len(raised) == 1 and isinstance(raised[0], RemoteError), raised
    assert str(raised[0]) == ("lost the connection to 127.0.0.1 while job j1 ran (nothing received for 1s, "
                              "keepalives unanswered); it was cancelled over a new connection")
    assert _group_gone(d) and (d / "cancelled").exists()


def test_when_no_new_connection_works_the_job_is_named(tmp_path: Path,
                                                       master: tuple[ShellServer, FreezingProxy, Path]) -> None:
    raised, d = _start_and_freeze(tmp_path, master, new_too=True)
    try:
        assert len(raised) == 1 and isinstance(raised[0], RemoteError), raised
        message = str(raised[0])
        assert message.startswith("lost the connection to 127.0.0.1 while job j1 ran (nothing received for 1s, "
                                  "keepalives unanswered); cancelling it over a new connection failed too (")
        assert message.endswith("the master cancels it when its sshd notices the lost session, or run "
                                "`cfn-chainermn job cancel NAME j1`")
        assert not _group_gone(d)  # what sshd's ClientAliveInterval, or that command, then cancels
    finally:
        subprocess.run(["sh", str(d / "cancel.sh")], timeout=30)


class _Dropping(ShellRemote):
    """The job channel closes without an exit status (sshd gone); later channels run as usual."""

    def open_command(self, command: str, *, combine: bool = True) -> FakeChannel:
        if not self.commands:
            self.commands.append(command)
            said = [job_folder.LAUNCHED, job_folder.ADMITTED, "epoch 1"]
            return FakeChannel([f"{line}\n".encode() for line in said], eof=False, closed=True, status=-1)
        return super().open_command(command, combine=combine)  # type: ignore[no-any-return]

    def connect(self) -> Any:  # no SSH here: the shell channels stand in for it
        return None


def test_a_channel_closed_without_status_cancels_over_a_new_connection(tmp_path: Path) -> None:
    launch = launch_with_plain_cmd(tmp_path)
    d = Path(launch.ref.directory)
    d.mkdir(parents=True)
    (d / "cancel.sh").write_text(job_scripts.script("cancel.sh"))
    (d / "exit_code").write_text("0\n")  # it ended as the connection went
    remote = _Dropping()
    lines: list[str] = []
    with pytest.raises(RemoteError, match=r"^lost the connection to master\.test while job j1 ran \(the session "
                                          r"closed without an exit status\); it had ended already$"):
        jobs.start(remote, launch, detach=False, on_line=lines.append)
    assert lines == ["epoch 1"]
    assert len(remote.commands) == 2 and "cancel" in remote.commands[1]


class _Broken(_Dropping):
    """The connection breaks before the job folder is written: no job to cancel."""

    def open_command(self, command: str, *, combine: bool = True) -> FakeChannel:
        if not self.commands:
            self.commands.append(command)
            return FakeChannel(recv_error=EOFError())
        return super().open_command(command, combine=combine)


def test_a_connection_broken_before_the_job_started_says_so(tmp_path: Path) -> None:
    remote = _Broken()
    with pytest.raises(RemoteError, match=r"^lost the connection to master\.test while sending job j1 \(EOFError\); "
                                          r"it did not start$"):
        jobs.start(remote, launch_with_plain_cmd(tmp_path), detach=False, on_line=print)
    assert len(remote.commands) == 2
    detached = _Broken()
    with pytest.raises(RemoteError, match=r"^lost the connection to master\.test while sending job j1 \(EOFError\); "
                                          r"a detached job is not cancelled: `cfn-chainermn job list NAME` shows"):
        jobs.start(detached, launch_with_plain_cmd(tmp_path / "d"), detach=True, on_line=print)
    assert len(detached.commands) == 1  # nothing cancelled
