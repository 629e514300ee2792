"""The job scripts (cfn_chainermn/jobs/sh/*.sh) on their own (no ssh, no MPI): shellcheck, exit
codes, detach, the watchdog, logs and list.

They are what the job commands run on the master; here they run on this machine with /bin/sh
and a plain shell command in place of mpiexec.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import zipfile
from pathlib import Path

import pytest
from fake_channel import ShellRemote

from cfn_chainermn.errors import RemoteError
from cfn_chainermn.jobs import folder as job_folder
from cfn_chainermn.jobs import mpi, runner
from cfn_chainermn.jobs import scripts as job_scripts

SH = Path(job_scripts.__file__).with_name("sh")
SCRIPTS = ["cancel.sh", "cmd.sh", "group.sh", "idle.sh", "list.sh", "logs.sh", "queue.sh", "run.sh", "submit.sh"]


def _job(tmp_path: Path, argv: list[str]) -> Path:
    d = tmp_path / "jobs" / "j1"
    d.mkdir(parents=True)
    (d / "cmd.sh").write_text(job_scripts.cmd_script(argv))
    (d / "run.sh").write_text(job_scripts.text("run.sh"))
    (d / "cancel.sh").write_text(job_scripts.script("cancel.sh"))
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
    d = _job(tmp_path, ["sh", "-c", "sleep 5; echo done"])
    res = subprocess.run(["sh", str(d / "run.sh"), "detach"], capture_output=True, text=True, timeout=30)
    assert res.returncode == 0 and res.stdout.startswith("started ")
    assert not (d / "exit_code").exists()  # returned while the job still runs
    deadline = time.monotonic() + 20
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
    deadline = time.monotonic() + 30
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
    deadline = time.monotonic() + 30  # a SIGKILLed member dies when next scheduled, not at once
    while _group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _group_alive(pgid)
    assert (d / "cancelled").exists() and (d / "exit_code").read_text() == "143\n"
    assert not list(d.glob("exit_code.*"))  # written aside and renamed in: never read empty
    # A second cancel of a finished job is a no-op: 3 (ended already) and its exit code.
    again = subprocess.run(["sh", str(d / "cancel.sh")], capture_output=True, text=True, timeout=30)
    assert (again.returncode, again.stdout) == (3, "143\n")


def test_logs_follow_ends_when_the_job_does_even_if_its_leader_is_a_zombie(tmp_path: Path) -> None:
    """A detached job's cmd.sh is an orphan: where PID 1 does not reap, it lingers as a zombie,
    which `tail --pid` takes for alive. `job logs --follow` must still end with the job."""

    leader = os.fork()
    if leader == 0:  # the job's session leader: its own group, exits at once, never reaped (yet)
        os.setsid()
        os._exit(0)
    try:
        stat = Path(f"/proc/{leader}/stat")
        deadline = time.monotonic() + 30
        while stat.read_text().split(") ")[1][0] != "Z" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert stat.read_text().split(") ")[1][0] == "Z"  # exited, not reaped...
        os.kill(-leader, 0)  # ...so its process group still "exists"
        (tmp_path / "pgid").write_text(f"{leader}\n")
        (tmp_path / "pgid.start").write_text(stat.read_text().rsplit(") ", 1)[1].split()[22 - 3] + "\n")  # run.sh's
        (tmp_path / "log").write_text("epoch 1\n")
        proc = subprocess.Popen(["sh", str(SH / "logs.sh"), str(tmp_path), "follow"], stdout=subprocess.PIPE,
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


def test_logs_follow_does_not_follow_a_stranger_that_took_the_group_id(tmp_path: Path) -> None:
    """A job that died without an exit code, whose group id a new process group has since taken:
    `job logs -f` prints the log and ends, it does not wait on the stranger (review)."""
    stranger = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        (tmp_path / "pgid").write_text(f"{stranger.pid}\n")
        (tmp_path / "pgid.start").write_text("1\n")  # the job's leader started long before this sleep
        (tmp_path / "log").write_text("epoch 1\n")
        out = subprocess.run(["sh", str(SH / "logs.sh"), str(tmp_path), "follow"], capture_output=True, text=True,
                             timeout=20)
        assert (out.returncode, out.stdout) == (255, "epoch 1\n")  # no exit code: lost
        assert stranger.poll() is None  # and nothing was done to the stranger
    finally:
        stranger.kill()
        stranger.wait()


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed (make install adds it)")
def test_every_script_is_shellcheck_clean(tmp_path: Path) -> None:
    assert sorted(p.name for p in SH.glob("*.sh")) == SCRIPTS
    rendered = tmp_path / "cmd.sh"  # as written into a job folder
    job = mpi.Job(program="/s/jobs/j1/train.py", np=4, per_node=2, args=("--lr", "0.1"), env=(("A", "it's {x}"),),
                  python="python3", hostfile="/s/jobs/j1/hostfile", workdir="/s/jobs/j1")
    rendered.write_text(job_scripts.cmd_script(mpi.mpiexec_argv(job, mpi.Network(cidr="10.0.0.0/16",
                                                                                  instance_type="p3.16xlarge"))))
    composed = []  # as sent or written: group.sh's functions in front of the scripts that use them
    for name in sorted(job_scripts.USES_GROUP):
        composed.append(tmp_path / f"composed-{name}")
        composed[-1].write_text(job_scripts.script(name))
    proc = subprocess.run(["shellcheck", "--format=gcc", *(str(SH / n) for n in SCRIPTS), str(rendered),
                           *map(str, composed)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_scripts_ship_in_the_wheel() -> None:
    """In the agent wheel the template carries (template/agent_bundle.py), executable."""
    import io

    from cfn_chainermn.template.agent_bundle import build

    infos = {i.filename: i for i in zipfile.ZipFile(io.BytesIO(build().wheel)).infolist()}
    for name in SCRIPTS:
        assert infos[f"cfn_chainermn/jobs/sh/{name}"].external_attr >> 16 == 0o100755


def test_cmd_sh_runs_the_argv_exactly_as_given(tmp_path: Path) -> None:
    """The argv reaches cmd.sh shell-quoted: braces, $ and quotes are the program's, not the shell's."""
    argv = ["printf", "%s|", "{command}", "it's", "$HOME", "@COMMAND@", "a  b"]
    d = tmp_path / "j"
    d.mkdir()
    (d / "cmd.sh").write_text(job_scripts.cmd_script(argv))
    subprocess.run(["sh", str(d / "cmd.sh")], check=True, timeout=30)
    assert (d / "log").read_text() == "{command}|it's|$HOME|@COMMAND@|a  b|"
    assert (d / "exit_code").read_text() == "0\n"


def test_an_inline_script_gets_its_arguments_as_sh_gives_them(tmp_path: Path) -> None:
    odd = tmp_path / "it's $odd"
    (odd / "j1").mkdir(parents=True)
    (odd / "j1" / "pgid").write_text("999999999\n")
    by_file = subprocess.run(["sh", str(SH / "list.sh"), str(odd)], capture_output=True, text=True, check=True)
    inline = subprocess.run(["sh", "-c", job_scripts.inline("list.sh", str(odd))], capture_output=True, text=True,
                            check=True)
    assert by_file.stdout == inline.stdout == "j1\tlost\t-\t\0"


def test_list_names_every_state(tmp_path: Path) -> None:
    jobs = tmp_path / "shared" / "jobs"
    assert runner.list_jobs(ShellRemote(), str(tmp_path / "shared")) == []  # no jobs folder yet: none
    running = subprocess.Popen(["sleep", "30"], start_new_session=True)
    started = Path(f"/proc/{running.pid}/stat").read_text().rsplit(") ", 1)[1].split()[22 - 3]
    try:
        for job_id, files in [("j-exit", {"exit_code": "3\n", "summary": "np=2 t.py\n"}),
                              ("j-cancel", {"exit_code": "143\n", "cancelled": "cancelled\n"}),
                              ("j-run", {"pgid": f"{running.pid}\n", "pgid.start": f"{started}\n",
                                         "summary": "np=1 a b\n"}),
                              # its group id now names a stranger (another start time): not running
                              ("j-reused", {"pgid": f"{running.pid}\n", "pgid.start": "1\n"}),
                              ("j-lost", {"pgid": "999999999\n"}), ("j-half", {"log": ""})]:
            (jobs / job_id).mkdir(parents=True)
            for name, text in {"pgid": "999999999\n", **files}.items() if job_id != "j-half" else files.items():
                (jobs / job_id / name).write_text(text)
        got = runner.list_jobs(ShellRemote(), str(tmp_path / "shared"))
    finally:
        running.kill()
        running.wait()
    assert got == [runner.JobInfo("j-cancel", "cancelled", 143, ""), runner.JobInfo("j-exit", "exited", 3, "np=2 t.py"),
                   runner.JobInfo("j-lost", "lost", None, ""), runner.JobInfo("j-reused", "lost", None, ""),
                   runner.JobInfo("j-run", "running", None, "np=1 a b")]


def test_logs_prints_the_log_and_the_code_once_the_job_ended(tmp_path: Path) -> None:
    ref = job_folder.JobRef("j1", str(tmp_path / "j1"))
    with pytest.raises(RemoteError, match=r"^no job j1 on the cluster"):
        runner.logs(ShellRemote(), ref, follow=False, on_line=print)
    with pytest.raises(RemoteError, match=r"^no job j1 on the cluster"):
        runner.logs(ShellRemote(), ref, follow=True, on_line=print)
    (tmp_path / "j1").mkdir()
    (tmp_path / "j1" / "log").write_text("epoch 1\nepoch 2\n")
    lines: list[str] = []
    assert runner.logs(ShellRemote(), ref, follow=False, on_line=lines.append) == 0  # still running: 0
    (tmp_path / "j1" / "exit_code").write_text("5\n")
    assert runner.logs(ShellRemote(), ref, follow=False, on_line=lines.append) == 5
    assert runner.logs(ShellRemote(), ref, follow=True, on_line=lines.append) == 5  # no live group: the log at once
    assert lines == ["epoch 1", "epoch 2"] * 3
