"""The job runner scripts on their own (no ssh, no MPI): exit codes, detach, and the watchdog.

They are what `job submit` runs on the master; here they run on this machine with a plain
shell command in place of mpiexec.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from cfn_chainermn.jobs import scripts as job_scripts


def _job(tmp_path: Path, argv: list[str]) -> Path:
    d = tmp_path / "jobs" / "j1"
    d.mkdir(parents=True)
    (d / "cmd.sh").write_text(job_scripts.cmd_script(argv))
    (d / "run.sh").write_text(job_scripts.RUN_SH)
    (d / "cancel.sh").write_text(job_scripts.CANCEL_SH)
    return d


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    # A group of zombies only is gone as far as a user can tell.
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(stat[2]) == pgid and stat[0] != "Z":
                return True
    return False


def test_attach_streams_and_returns_the_exit_code(tmp_path: Path) -> None:
    d = _job(tmp_path, ["sh", "-c", "echo 'one two'; echo err >&2; exit 4"])
    # stdin stays open, as an ssh channel's does while the client is there
    proc = subprocess.Popen(["sh", str(d / "run.sh"), "attach"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None and proc.stdin is not None
    out = proc.stdout.read()
    assert proc.wait(timeout=30) == 4
    proc.stdin.close()
    assert out == "one two\nerr\n"
    assert (d / "exit_code").read_text() == "4\n"
    assert not (d / "cancelled").exists()


def test_detach_returns_at_once_and_the_job_finishes_alone(tmp_path: Path) -> None:
    d = _job(tmp_path, ["sh", "-c", "sleep 1; echo done"])
    started = time.monotonic()
    res = subprocess.run(["sh", str(d / "run.sh"), "detach"], capture_output=True, text=True, timeout=30)
    assert res.returncode == 0 and res.stdout.startswith("started ")
    assert time.monotonic() - started < 0.9
    deadline = time.monotonic() + 10
    while not (d / "exit_code").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (d / "log").read_text() == "done\n"
    assert (d / "exit_code").read_text() == "0\n"


def test_closing_the_channel_cancels_the_whole_group(tmp_path: Path) -> None:
    d = _job(tmp_path, ["sh", "-c", "sleep 60 & sleep 60 & echo up; wait"])
    proc = subprocess.Popen(["sh", str(d / "run.sh"), "attach"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None and proc.stdin is not None
    assert proc.stdout.readline() == "up\n"
    pgid = int((d / "pgid").read_text())
    assert _group_alive(pgid)
    proc.stdin.close()  # what sshd does when the client goes away
    proc.wait(timeout=15)
    deadline = time.monotonic() + 10
    while _group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _group_alive(pgid)
    assert (d / "cancelled").exists()


def test_cancel_script_stops_a_detached_job(tmp_path: Path) -> None:
    d = _job(tmp_path, ["sleep", "60"])
    subprocess.run(["sh", str(d / "run.sh"), "detach"], check=True, capture_output=True, timeout=30)
    pgid = int((d / "pgid").read_text())
    assert _group_alive(pgid)
    subprocess.run(["sh", str(d / "cancel.sh")], check=True, timeout=30)
    assert not _group_alive(pgid)
    assert (d / "cancelled").exists() and (d / "exit_code").exists()
    # A second cancel of a finished job is a no-op.
    assert subprocess.run(["sh", str(d / "cancel.sh")], timeout=30).returncode == 0


def test_logs_follow_ends_when_the_job_does_even_if_its_leader_is_a_zombie(tmp_path: Path) -> None:
    """A detached job's cmd.sh is an orphan: where PID 1 does not reap, it lingers as a zombie,
    which `tail --pid` takes for alive. `job logs --follow` must still end with the job."""

    leader = os.fork()
    if leader == 0:  # the job's session leader: its own group, exits at once, never reaped (yet)
        os.setsid()
        os._exit(0)
    try:
        stat = Path(f"/proc/{leader}/stat")
        deadline = time.monotonic() + 10
        while stat.read_text().split(") ")[1][0] != "Z" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert stat.read_text().split(") ")[1][0] == "Z"  # exited, not reaped...
        os.kill(-leader, 0)  # ...so its process group still "exists"
        (tmp_path / "pgid").write_text(f"{leader}\n")
        (tmp_path / "log").write_text("epoch 1\n")
        proc = subprocess.Popen(["sh", "-c", f"cd {tmp_path} && {job_scripts.FOLLOW_SH}"], stdout=subprocess.PIPE,
                                text=True)
        time.sleep(0.5)
        assert proc.poll() is None  # following: the job has not ended
        with (tmp_path / "log").open("a") as log:
            log.write("epoch 2\n")
        (tmp_path / "exit_code").write_text("7\n")  # what cmd.sh writes as it ends
        out, _ = proc.communicate(timeout=10)
        assert (proc.returncode, out) == (7, "epoch 1\nepoch 2\n")
    finally:
        os.waitpid(leader, 0)
