"""The job folder and its one-channel launch: files travel on stdin, run.sh starts right after them.

Here `sh -c` on this machine stands in for the master's login shell (what sshd runs), and a
pipe for the SSH channel, so the exact command and bytes that `job submit` sends are run.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from cfn_chainermn import job_folder, job_scripts, jobs, mpi
from cfn_chainermn.errors import RemoteError

NET = mpi.Network(cidr="127.0.0.0/8", instance_type="local")


def _launch(tmp_path: Path, *, program: bytes = b"#!/bin/sh\necho hi from $0\n", extra: bytes | None = None,
            hostfile: str = "127.0.0.2 slots=1\n") -> job_folder.Launch:
    src = tmp_path / "src"
    src.mkdir(parents=True, exist_ok=True)
    script = src / "job.sh"
    script.write_bytes(program)
    script.chmod(0o755)
    files = []
    if extra is not None:
        data = src / "weights.bin"
        data.write_bytes(extra)
        files.append(data)
    launch = job_folder.prepare(shared=str(tmp_path / "shared"), script=script, files=files, hostfile_text=hostfile,
                          job=mpi.Job(program="job.sh", np=1), net=NET, job_id="j1")
    # No MPI here: cmd.sh runs the program itself, as mpiexec would on each rank.
    count = "cat weights.bin | wc -c;" if extra is not None else ""
    cmd = job_scripts.cmd_script(["sh", "-c", f"./job.sh; {count} exit 3"])
    return job_folder.Launch(launch.ref, launch.job, tuple((n, cmd if n == "cmd.sh" else t) for n, t in launch.written),
                       launch.sent)


def _run(command: str, payload: bytes, *, keep_stdin_open: bool = True) -> tuple[int, str]:
    proc = subprocess.Popen(["sh", "-c", command], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(payload)
    proc.stdin.flush()
    if not keep_stdin_open:
        proc.stdin.close()
    out = proc.stdout.read().decode()
    rc = proc.wait(timeout=30)
    if keep_stdin_open:
        proc.stdin.close()
    return rc, out


def test_the_folder_arrives_byte_exact_and_the_job_runs(tmp_path: Path) -> None:
    blob = bytes(range(256)) * 40 + b"\0\n\0"  # binary, NULs, no trailing newline: all pass as is
    launch = _launch(tmp_path, extra=blob)
    rc, out = _run(launch.command("attach"), launch.payload())
    d = tmp_path / "shared" / "jobs" / "j1"
    assert rc == 3
    assert out.splitlines() == [job_folder.LAUNCHED, "hi from ./job.sh", str(len(blob))]
    assert (d / "weights.bin").read_bytes() == blob
    assert (d / "hostfile").read_text() == "127.0.0.2 slots=1\n"
    assert (d / "run.sh").read_text() == job_scripts.RUN_SH and (d / "cancel.sh").read_text() == job_scripts.CANCEL_SH
    assert (d / "summary").read_text() == "np=1 job.sh\n"
    assert (d / "job.sh").stat().st_mode & 0o777 == 0o755  # the user's executable stays executable
    assert (d / "weights.bin").stat().st_mode & 0o777 == 0o644
    assert (d / "exit_code").read_text() == "3\n"


def test_our_files_ride_in_the_command_and_a_huge_one_on_stdin(tmp_path: Path) -> None:
    small = _launch(tmp_path)
    assert [n for n, _ in small.written] == ["run.sh", "cancel.sh", "cmd.sh", "summary", "hostfile"]
    assert [u.name for u in small.sent] == ["job.sh"]  # only the user's files cost a process each
    hosts = "".join(f"10.0.{i // 250}.{i % 250 + 1} slots=8\n" for i in range(4000))  # > a shell argument's room
    big = _launch(tmp_path / "big", hostfile=hosts)
    assert "hostfile" in [u.name for u in big.sent] and len(big.command("attach")) < job_folder.INLINE_LIMIT + 4096
    rc, out = _run(big.command("attach"), big.payload())
    assert rc == 3, out
    assert (tmp_path / "big" / "shared" / "jobs" / "j1" / "hostfile").read_text() == hosts


def test_a_folder_keeps_its_layout_without_hidden_entries(tmp_path: Path) -> None:
    proj = tmp_path / "proj"
    (proj / "models" / "__pycache__").mkdir(parents=True)
    (proj / ".git").mkdir()
    (proj / "models" / "net.py").write_text("UNITS = 3\n")
    (proj / "models" / "__pycache__" / "net.cpython-311.pyc").write_bytes(b"\0")
    (proj / ".git" / "HEAD").write_text("ref\n")
    (proj / ".env").write_text("SECRET=1\n")
    (proj / "run me.sh").write_text("#!/bin/sh\n")
    (proj / "run me.sh").chmod(0o755)
    (proj / "linked.txt").symlink_to(proj / "models" / "net.py")
    (proj / "loop").symlink_to(proj)  # a link to a folder is not followed
    script = tmp_path / "job.sh"
    script.write_text("#!/bin/sh\n")
    launch = job_folder.prepare(shared=str(tmp_path / "shared"), script=script, files=[proj], hostfile_text="",
                          job=mpi.Job(program="job.sh", np=1), net=NET, job_id="j2")
    assert [u.name for u in launch.sent] == ["job.sh", "proj/linked.txt", "proj/run me.sh", "proj/models/net.py"]
    quiet = tuple((n, job_scripts.cmd_script(["true"]) if n == "cmd.sh" else t) for n, t in launch.written)
    rc, out = _run(job_folder.Launch(launch.ref, launch.job, quiet, launch.sent).command("attach"), launch.payload())
    assert rc == 0, out
    d = tmp_path / "shared" / "jobs" / "j2" / "proj"
    assert (d / "models" / "net.py").read_text() == "UNITS = 3\n"
    assert (d / "linked.txt").read_text() == "UNITS = 3\n" and not (d / "linked.txt").is_symlink()
    assert (d / "run me.sh").stat().st_mode & 0o777 == 0o755
    assert not (d / ".git").exists() and not (d / ".env").exists() and not (d / "models" / "__pycache__").exists()


def test_a_folder_named_like_a_runner_file_is_refused(tmp_path: Path) -> None:
    from cfn_chainermn.errors import ConfigError

    (tmp_path / "log").mkdir()
    script = tmp_path / "t.py"
    script.write_text("")
    with pytest.raises(ConfigError, match=r"^--files: 'log' clashes with another file of the job folder"):
        job_folder.prepare(shared="/s", script=script, files=[tmp_path / "log"], hostfile_text="",
                     job=mpi.Job(program="t.py", np=1), net=NET)


def test_a_cut_short_upload_starts_nothing(tmp_path: Path) -> None:
    launch = _launch(tmp_path)
    payload = launch.payload()
    rc, out = _run(launch.command("attach"), payload[: len(payload) - 10], keep_stdin_open=False)
    assert rc == 254
    assert out.strip() == "upload of j1 cut short"
    assert not (tmp_path / "shared" / "jobs" / "j1" / "pgid").exists()  # run.sh never ran


def test_an_existing_job_folder_is_never_overwritten(tmp_path: Path) -> None:
    launch = _launch(tmp_path)
    (tmp_path / "shared" / "jobs" / "j1").mkdir(parents=True)
    rc, out = _run(launch.command("attach"), launch.payload())
    assert rc == 254
    assert out.splitlines()[-1] == f"cannot create {tmp_path}/shared/jobs/j1"


def test_paths_with_spaces_and_quotes_are_quoted(tmp_path: Path) -> None:
    odd = tmp_path / "it's a dir"
    odd.mkdir()
    launch = _launch(odd)
    rc, out = _run(launch.command("attach"), launch.payload())
    assert rc == 3 and job_folder.LAUNCHED in out.splitlines()
    assert (odd / "shared" / "jobs" / "j1" / "exit_code").exists()


class PipeChannel:
    """The slice of paramiko.Channel that jobs.start uses, over `sh -c` and pipes."""

    def __init__(self, command: str) -> None:
        self.proc = subprocess.Popen(["sh", "-c", command], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT)

    def sendall(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def recv(self, n: int) -> bytes:
        assert self.proc.stdout is not None
        return self.proc.stdout.read1(n)

    def recv_exit_status(self) -> int:
        return self.proc.wait(timeout=30)

    def close(self) -> None:
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            self.proc.stdin.close()


class PipeRemote:
    host = "master.test"

    def __init__(self) -> None:
        self.commands: list[str] = []

    def open_command(self, command: str) -> Any:
        self.commands.append(command)
        return PipeChannel(command)


def test_start_streams_only_the_jobs_lines_and_returns_its_code(tmp_path: Path) -> None:
    launch = _launch(tmp_path)
    lines: list[str] = []
    remote = PipeRemote()
    assert jobs.start(remote, launch, detach=False, on_line=lines.append) == 3  # type: ignore[arg-type]
    assert lines == ["hi from ./job.sh"]  # the "folder written" line is the client's, not the user's
    assert len(remote.commands) == 1  # folder and start in one channel


def test_start_detached_returns_at_once(tmp_path: Path) -> None:
    launch = _launch(tmp_path, program=b"#!/bin/sh\nsleep 0.3; echo late\n")
    lines: list[str] = []
    assert jobs.start(PipeRemote(), launch, detach=True, on_line=lines.append) == 0  # type: ignore[arg-type]
    assert lines == []
    log = tmp_path / "shared" / "jobs" / "j1" / "log"
    for _ in range(100):
        if (log.parent / "exit_code").exists():
            break
        subprocess.run(["sleep", "0.05"], check=True)
    assert log.read_text() == "late\n"


def test_start_names_why_the_folder_could_not_be_written(tmp_path: Path) -> None:
    launch = _launch(tmp_path)
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "jobs").write_text("a file where the jobs folder goes")
    with pytest.raises(RemoteError, match=r"^job j1 not started on master\.test \(exit 254\): mkdir: .*"
                                          r"cannot create .*/shared/jobs/j1$"):
        jobs.start(PipeRemote(), launch, detach=False, on_line=print)  # type: ignore[arg-type]


def test_the_command_does_not_grow_with_the_files(tmp_path: Path) -> None:
    """Thousands of files: the command stays the same size (a shell argument takes 128 KiB at most)."""
    many = tmp_path / "many"
    many.mkdir()
    for i in range(3000):
        (many / f"f{i:04d}.txt").write_text(f"{i}\n")
    (many / "-dash.txt").write_text("dash\n")  # a name that looks like an option
    script = tmp_path / "job.sh"
    script.write_text("#!/bin/sh\n")
    one = job_folder.prepare(shared=str(tmp_path / "s1"), script=script, files=[], hostfile_text="",
                             job=mpi.Job(program="job.sh", np=1), net=NET, job_id="j1")
    launch = job_folder.prepare(shared=str(tmp_path / "s1"), script=script, files=[many], hostfile_text="",
                                job=mpi.Job(program="job.sh", np=1), net=NET, job_id="j1")
    assert len(launch.command("attach")) == len(one.command("attach"))
    quiet = tuple((n, job_scripts.cmd_script(["true"]) if n == "cmd.sh" else t) for n, t in launch.written)
    rc, out = _run(job_folder.Launch(launch.ref, launch.job, quiet, launch.sent).command("attach"), launch.payload())
    assert rc == 0, out[-2000:]
    d = tmp_path / "s1" / "jobs" / "j1" / "many"
    assert len(list(d.iterdir())) == 3001
    assert (d / "f2999.txt").read_text() == "2999\n" and (d / "-dash.txt").read_text() == "dash\n"


def test_a_linked_script_keeps_the_name_it_was_given(tmp_path: Path) -> None:
    """mpiexec runs SCRIPT's own name; a link must arrive under that name, not its target's."""
    real = tmp_path / "real_train.py"
    real.write_text("print('x')\n")
    link = tmp_path / "train.py"
    link.symlink_to(real)
    data = tmp_path / "data.txt"
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "v3.txt").write_text("d\n")
    data.symlink_to(tmp_path / "store" / "v3.txt")
    launch = job_folder.prepare(shared="/s", script=link, files=[data], hostfile_text="",
                                job=mpi.Job(program="train.py", np=1, python="python3"), net=NET, job_id="j1")
    assert [u.name for u in launch.sent] == ["train.py", "data.txt"]
    assert launch.job.program == "/s/jobs/j1/train.py"


def test_too_much_for_a_job_folder_is_refused_before_any_upload(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                                ) -> None:
    from cfn_chainermn.errors import ConfigError

    monkeypatch.setattr(job_folder, "MAX_FILES", 5)
    many = tmp_path / "many"
    many.mkdir()
    for i in range(6):
        (many / f"{i}.txt").write_text("x")
    script = tmp_path / "t.py"
    script.write_text("")
    with pytest.raises(ConfigError, match=r"^--files: 7 files, 0 MiB is more than a job folder takes \(5 files, "
                                          r"1,024 MiB\); copy data sets to the shared mount"):
        job_folder.prepare(shared="/s", script=script, files=[many], hostfile_text="",
                           job=mpi.Job(program="t.py", np=1), net=NET)


def test_a_file_that_shrinks_while_sending_stops_the_stream(tmp_path: Path) -> None:
    launch = _launch(tmp_path, extra=b"x" * 100)
    (tmp_path / "src" / "weights.bin").write_bytes(b"x" * 10)  # changed after prepare
    with pytest.raises(RemoteError, match=r"weights\.bin shrank while it was being sent; submit again"):
        launch.payload()


def test_an_early_failure_with_a_big_upload_names_the_reason_not_a_broken_pipe(tmp_path: Path) -> None:
    """The remote shell stops reading (here: the job folder exists) while megabytes are still to send."""
    launch = _launch(tmp_path, extra=b"\1" * (8 << 20))
    (tmp_path / "shared" / "jobs" / "j1").mkdir(parents=True)
    with pytest.raises(RemoteError, match=r"^job j1 not started on master\.test \(exit 254\): mkdir: .*File exists; "
                                          r"cannot create .*/shared/jobs/j1$"):
        jobs.start(PipeRemote(), launch, detach=False, on_line=print)  # type: ignore[arg-type]
