"""jobs.start over a stand-in channel: what is streamed, what is returned, and every way a launch fails."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from fake_channel import ShellRemote
from folder_helpers import launch_with_plain_cmd

from cfn_chainermn.errors import NotStarted
from cfn_chainermn.jobs import runner as jobs


def test_start_streams_only_the_jobs_lines_and_returns_its_code(tmp_path: Path) -> None:
    launch = launch_with_plain_cmd(tmp_path)
    lines: list[str] = []
    remote = ShellRemote()
    rc = jobs.start(remote, launch, detach=False, on_line=lines.append,  # type: ignore[arg-type]
                    on_started=lambda: lines.append("<started>"))
    assert rc == 3
    assert lines == ["<started>", "hi from ./job.sh"]  # "folder written" is the client's line, not the user's
    assert len(remote.commands) == 1  # folder and start in one channel


def test_start_detached_returns_at_once(tmp_path: Path) -> None:
    launch = launch_with_plain_cmd(tmp_path, program=b"#!/bin/sh\nsleep 0.3; echo late\n")
    lines: list[str] = []
    assert jobs.start(ShellRemote(), launch, detach=True, on_line=lines.append) == 0  # type: ignore[arg-type]
    assert lines == []
    log = tmp_path / "shared" / "jobs" / "j1" / "log"
    for _ in range(100):
        if (log.parent / "exit_code").exists():
            break
        subprocess.run(["sleep", "0.05"], check=True)
    assert log.read_text() == "late\n"


def test_start_names_why_the_folder_could_not_be_written(tmp_path: Path) -> None:
    launch = launch_with_plain_cmd(tmp_path)
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "jobs").write_text("a file where the jobs folder goes")
    started: list[str] = []
    with pytest.raises(NotStarted, match=r"^job j1 did not start: mkdir: .*cannot create .*/shared/jobs/j1 "
                                          r"\(exit 254 on master\.test\)$") as info:
        jobs.start(ShellRemote(), launch, detach=False, on_line=print,  # type: ignore[arg-type]
                   on_started=lambda: started.append("x"))
    assert info.value.exit_code == 125  # ours, not an exit code of the job's
    assert started == []  # the "job ...: N ranks" line is never printed for a job that did not start


def test_an_early_failure_with_a_big_upload_names_the_reason_not_a_broken_pipe(tmp_path: Path) -> None:
    """The remote shell stops reading (here: the job folder exists) while megabytes are still to send."""
    launch = launch_with_plain_cmd(tmp_path, extra=b"\1" * (8 << 20))
    (tmp_path / "shared" / "jobs" / "j1").mkdir(parents=True)
    with pytest.raises(NotStarted, match=r"^job j1 did not start: mkdir: .*File exists; "
                                          r"cannot create .*/shared/jobs/j1 \(exit 254 on master\.test\)$"):
        jobs.start(ShellRemote(), launch, detach=False, on_line=print)  # type: ignore[arg-type]


def test_a_file_that_vanishes_after_prepare_is_a_usage_error_not_a_hang(tmp_path: Path) -> None:
    import threading

    from cfn_chainermn.errors import ConfigError

    launch = launch_with_plain_cmd(tmp_path, extra=b"x" * 100)
    (tmp_path / "src" / "weights.bin").unlink()
    raised: list[BaseException] = []

    def run() -> None:
        try:
            jobs.start(ShellRemote(), launch, detach=False, on_line=print)  # type: ignore[arg-type]
        except BaseException as exc:  # handed to the test thread
            raised.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(timeout=20)
    assert not worker.is_alive(), "jobs.start hung on a file it could not read"
    assert len(raised) == 1 and isinstance(raised[0], ConfigError)
    assert str(raised[0]).startswith(f"--files: cannot read {tmp_path}/src/weights.bin (No such file or directory)")
