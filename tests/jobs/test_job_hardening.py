"""What a job leaves on the shared mount and what `job cancel`/`job list` trust (issue 12):
private job folders, `--secret-env` values in no file, no cancel of a group that is not the
job's any more, one `job list` row per job whatever its arguments hold."""

from __future__ import annotations

import base64
import os
import shlex
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fake_channel import ShellRemote
from folder_helpers import NET, launch_with_plain_cmd, run_sh

from cfn_chainermn.errors import ConfigError
from cfn_chainermn.jobs import folder as job_folder
from cfn_chainermn.jobs import mpi, runner
from cfn_chainermn.jobs import scripts as job_scripts

SECRET = "s3cr3t-7Hq\nsecond line\n"  # a trailing newline, which $(...) alone would drop


def _group_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


def _wait_for(path: Path) -> None:
    deadline = time.monotonic() + 30
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)


def test_the_job_folder_is_the_cluster_users_alone(tmp_path: Path) -> None:
    launch = launch_with_plain_cmd(tmp_path, program=b"#!/bin/sh\necho out > made-by-job.txt\n", extra=b"data")
    rc, out = run_sh(launch.command("attach"), launch.payload())
    assert rc == 3, out
    jobs, d = tmp_path / "shared" / "jobs", tmp_path / "shared" / "jobs" / "j1"
    assert jobs.stat().st_mode & 0o777 == 0o700  # created by the first job: the list of jobs is private too
    assert d.stat().st_mode & 0o777 == 0o700
    modes = {p.name: p.stat().st_mode & 0o777 for p in d.iterdir()}
    assert modes.pop("job.sh") == 0o700 and modes.pop("made-by-job.txt") == 0o644  # the job keeps umask 022
    assert set(modes) >= {"run.sh", "cancel.sh", "cmd.sh", "summary", "hostfile", "weights.bin", "log", "pgid",
                          "pgid.start", "mpiexec.pid", "exit_code"}
    assert set(modes.values()) == {0o600}, modes


def test_a_secret_reaches_the_job_and_no_file(tmp_path: Path) -> None:
    program = b'#!/bin/sh\nprintf %s "$TOKEN" | base64 -w0; echo\n'
    launch = launch_with_plain_cmd(tmp_path, program=program, secrets=(("TOKEN", SECRET),))
    assert SECRET.split("\n")[0] not in launch.command("attach")  # not in the command line either
    assert "s3cr3t" not in repr(launch)  # nor in a repr (a log line, a test report)
    rc, out = run_sh(launch.command("attach"), launch.payload())
    assert rc == 3, out
    assert base64.b64decode(out.splitlines()[-1]).decode() == SECRET
    d = tmp_path / "shared" / "jobs" / "j1"
    assert sorted(p.name for p in d.iterdir() if "TOKEN" in p.name) == []
    for f in d.rglob("*"):
        assert b"s3cr3t" not in f.read_bytes(), f


def test_secret_names_are_forwarded_by_name_only() -> None:
    job = mpi.Job(program="/s/t.py", np=2, env=(("A", "1"),), secret_names=("TOKEN",))
    argv = mpi.mpiexec_argv(job, NET)
    assert argv[:2] == ["env", "A=1"] and argv[argv.index("mca_base_env_list") + 1] == "PATH;A;TOKEN"
    only = mpi.mpiexec_argv(mpi.Job(program="/s/t.py", np=2, secret_names=("TOKEN",)), NET)
    assert only[0] == "mpiexec" and only[only.index("mca_base_env_list") + 1] == "PATH;TOKEN"
    gpu = mpi.Network(cidr="10.0.0.0/16", instance_type="p3.16xlarge")
    mine = mpi.mpiexec_argv(mpi.Job(program="/s/t.py", np=2, secret_names=("NCCL_DEBUG",)), gpu)
    assert "NCCL_DEBUG=WARN" not in mine and "NCCL_DEBUG" in mine[mine.index("mca_base_env_list") + 1].split(";")


@pytest.mark.parametrize(("names", "env", "message"), [
    (["TOKEN"], {}, "--secret-env: TOKEN is not set here; export it in this shell first"),
    (["1X"], {"1X": "v"}, "--secret-env: '1X' is not a variable name"),
    (["A"], {"A": "v"}, "--secret-env: A is given twice (or also as --env)"),
    (["T", "T"], {"T": "v"}, "--secret-env: T is given twice"),
])
def test_bad_secret_names_are_usage_errors(names: list[str], env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        mpi.secret_env(names, env, (("A", "1"),))


@pytest.fixture
def stranger() -> Iterator[subprocess.Popen[bytes]]:
    """An unrelated process group leader: what a finished job's saved group id may name later."""
    proc = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def _folder(tmp_path: Path, pgid: int, files: dict[str, str]) -> job_folder.JobRef:
    d = tmp_path / "jobs" / "j1"
    d.mkdir(parents=True)
    (d / "cancel.sh").write_text(job_scripts.script("cancel.sh"))
    (d / "pgid").write_text(f"{pgid}\n")
    for name, text in files.items():
        (d / name).write_text(text)
    return job_folder.JobRef("j1", str(d))


@pytest.mark.parametrize("files", [
    {"exit_code": "0\n"},  # finished
    {"pgid.start": "1\n"},  # lost, its id reused since: another leader's start time
    {},  # a job from before pgid.start: the leader's folder is not this job's
], ids=["finished", "reused", "legacy"])
def test_cancel_leaves_a_group_that_is_not_the_jobs_alone(tmp_path: Path, stranger: subprocess.Popen[bytes],
                                                          files: dict[str, str]) -> None:
    ref = _folder(tmp_path, stranger.pid, files)
    stopped = runner.cancel(ShellRemote(), ref)
    time.sleep(0.2)
    assert stranger.poll() is None, "cancel killed a process group that was not the job's"
    assert stopped is False  # "had ended already"
    assert not (Path(ref.directory) / "cancelled").exists()
    subprocess.run(["sh", str(Path(ref.directory) / "cancel.sh")], timeout=30)  # the watchdog's way: the same
    assert stranger.poll() is None


def test_cancel_still_stops_a_running_job(tmp_path: Path) -> None:
    d = tmp_path / "jobs" / "j1"
    d.mkdir(parents=True)
    for name in ("run.sh", "cancel.sh"):
        (d / name).write_text(job_scripts.text(name))
    (d / "cmd.sh").write_text(job_scripts.cmd_script(["sh", "-c", "sleep 60 & sleep 60; wait"]))
    subprocess.run(["sh", str(d / "run.sh"), "detach"], check=True, capture_output=True, timeout=30)
    pgid = int((d / "pgid").read_text())
    assert (d / "pgid.start").read_text().strip() == Path(f"/proc/{pgid}/stat").read_text().split()[21]
    assert runner.cancel(ShellRemote(), job_folder.JobRef("j1", str(d))) is True
    # cancel.sh returns right after its KILL where TERM took over 3 s (a loaded machine): a SIGKILLed
    # member is gone when next scheduled, not at once, so wait for that (bounded) before asking
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not _group_gone(pgid):
        time.sleep(0.05)
    with pytest.raises(ProcessLookupError):
        os.killpg(pgid, 0)
    assert (d / "cancelled").exists() and (d / "exit_code").read_text() == "143\n"
    assert runner.cancel(ShellRemote(), job_folder.JobRef("j1", str(d))) is False  # now it has ended


FAKE_ROW = "x\nj0-fake\trunning\t0\tnp=64 evil.py"


def test_arguments_with_newlines_and_tabs_are_one_row(tmp_path: Path) -> None:
    args = ("a\tb", FAKE_ROW)  # before: j1 itself vanished (5 fields) and a running j0-fake appeared
    launch = launch_with_plain_cmd(tmp_path, args=args)
    rc, out = run_sh(launch.command("detach"), launch.payload())
    assert rc == 0, out
    _wait_for(tmp_path / "shared" / "jobs" / "j1" / "exit_code")
    got = runner.list_jobs(ShellRemote(), str(tmp_path / "shared"))
    assert got == [runner.JobInfo("j1", "exited", 3, f"np=1 job.sh {shlex.join(args)}")]
    shown = runner.one_line(got[0].summary)
    assert "\n" not in shown and "\t" not in shown
    assert shown == "np=1 job.sh 'a\\tb' 'x\\nj0-fake\\trunning\\t0\\tnp=64 evil.py'"
