"""The job folder and its one-channel launch: files travel on stdin, run.sh starts right after them.

Here `sh -c` on this machine stands in for the master's login shell (what sshd runs), and a
pipe for the SSH channel, so the exact command and bytes that `job submit` sends are run.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from folder_helpers import NET, launch_with_plain_cmd, run_sh

from cfn_chainermn.errors import RemoteError
from cfn_chainermn.jobs import folder as job_folder
from cfn_chainermn.jobs import mpi
from cfn_chainermn.jobs import scripts as job_scripts


def test_the_folder_arrives_byte_exact_and_the_job_runs(tmp_path: Path) -> None:
    blob = bytes(range(256)) * 40 + b"\0\n\0"  # binary, NULs, no trailing newline: all pass as is
    launch = launch_with_plain_cmd(tmp_path, extra=blob)
    rc, out = run_sh(launch.command("attach"), launch.payload())
    d = tmp_path / "shared" / "jobs" / "j1"
    assert rc == 3
    assert out.splitlines() == [job_folder.LAUNCHED, job_folder.ADMITTED, "hi from ./job.sh", str(len(blob))]
    assert (d / "weights.bin").read_bytes() == blob
    assert (d / "nodes").read_text() == (d / "hostfile").read_text() == "127.0.0.2 slots=1\n"  # the queue's pick
    assert (d / "run.sh").read_text() == job_scripts.text("run.sh")
    assert (d / "cancel.sh").read_text() == job_scripts.script("cancel.sh")
    assert (d / "summary").read_text() == "np=1 job.sh\n"
    assert (d / "job.sh").stat().st_mode & 0o777 == 0o700  # the user's executable stays executable (for its owner)
    assert (d / "weights.bin").stat().st_mode & 0o777 == 0o600
    assert (d / "exit_code").read_text() == "3\n"


def test_our_files_ride_in_the_command_and_a_huge_one_on_stdin(tmp_path: Path) -> None:
    small = launch_with_plain_cmd(tmp_path)
    assert [n for n, _ in small.written] == ["run.sh", "cancel.sh", "queue.sh", "cmd.sh", "summary", "want", "nodes"]
    assert [u.name for u in small.sent] == ["job.sh"]  # only the user's files cost a process each
    hosts = "".join(f"10.0.{i // 250}.{i % 250 + 1} slots=8\n" for i in range(4000))  # > a shell argument's room
    big = launch_with_plain_cmd(tmp_path / "big", hostfile=hosts)
    assert "nodes" in [u.name for u in big.sent] and len(big.command("attach")) < job_folder.INLINE_LIMIT + 4096
    rc, out = run_sh(big.command("attach"), big.payload())
    assert rc == 3, out
    assert (tmp_path / "big" / "shared" / "jobs" / "j1" / "nodes").read_text() == hosts
    assert (tmp_path / "big" / "shared" / "jobs" / "j1" / "hostfile").read_text() == hosts.split("\n")[0] + "\n"


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
    rc, out = run_sh(job_folder.Launch(launch.ref, launch.job, quiet, launch.sent).command("attach"), launch.payload())
    assert rc == 0, out
    d = tmp_path / "shared" / "jobs" / "j2" / "proj"
    assert (d / "models" / "net.py").read_text() == "UNITS = 3\n"
    assert (d / "linked.txt").read_text() == "UNITS = 3\n" and not (d / "linked.txt").is_symlink()
    assert (d / "run me.sh").stat().st_mode & 0o777 == 0o700
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
    launch = launch_with_plain_cmd(tmp_path)
    payload = launch.payload()
    rc, out = run_sh(launch.command("attach"), payload[: len(payload) - 10], keep_stdin_open=False)
    assert rc == 254
    assert out.strip() == "upload of j1 cut short"
    assert not (tmp_path / "shared" / "jobs" / "j1" / "pgid").exists()  # run.sh never ran


def test_an_existing_job_folder_is_never_overwritten(tmp_path: Path) -> None:
    launch = launch_with_plain_cmd(tmp_path)
    (tmp_path / "shared" / "jobs" / "j1").mkdir(parents=True)
    rc, out = run_sh(launch.command("attach"), launch.payload())
    assert rc == 254
    assert out.splitlines()[-1] == f"cannot create {tmp_path}/shared/jobs/j1"


def test_paths_with_spaces_and_quotes_are_quoted(tmp_path: Path) -> None:
    odd = tmp_path / "it's a dir"
    odd.mkdir()
    launch = launch_with_plain_cmd(odd)
    rc, out = run_sh(launch.command("attach"), launch.payload())
    assert rc == 3 and job_folder.LAUNCHED in out.splitlines()
    assert (odd / "shared" / "jobs" / "j1" / "exit_code").exists()


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
    rc, out = run_sh(job_folder.Launch(launch.ref, launch.job, quiet, launch.sent).command("attach"), launch.payload())
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
    launch = launch_with_plain_cmd(tmp_path, extra=b"x" * 100)
    (tmp_path / "src" / "weights.bin").write_bytes(b"x" * 10)  # changed after prepare
    with pytest.raises(RemoteError, match=r"weights\.bin shrank while it was being sent; submit again"):
        launch.payload()


def test_a_name_that_is_not_utf8_is_refused_before_anything_is_sent(tmp_path: Path) -> None:
    import os

    from cfn_chainermn.errors import ConfigError

    folder = tmp_path / "data"
    folder.mkdir()
    with open(os.path.join(os.fsencode(folder), b"bad-\xff.txt"), "wb") as fh:
        fh.write(b"x")
    script = tmp_path / "t.py"
    script.write_text("")
    with pytest.raises(ConfigError, match=r"^--files: 'data/bad-\\udcff\.txt' is not a UTF-8 name; rename it$"):
        job_folder.prepare(shared="/s", script=script, files=[folder], hostfile_text="",
                           job=mpi.Job(program="t.py", np=1), net=NET)


def test_arguments_full_of_quotes_still_fit_one_shell_argument(tmp_path: Path) -> None:
    """shlex.quote turns each ' into five characters: the budget counts the quoted text."""
    script = tmp_path / "job.sh"
    script.write_text("#!/bin/sh\n")
    launch = job_folder.prepare(shared=str(tmp_path / "s"), script=script, files=[], hostfile_text="",
                                job=mpi.Job(program="job.sh", np=1, args=("'" * 9000,)), net=NET, job_id="j1")
    assert "cmd.sh" in [u.name for u in launch.sent]  # too big once quoted: it goes on stdin
    assert len(launch.command("attach").encode()) < 128 * 1024
    # the same size on stdin, without running mpiexec: `true` and the quotes as a comment
    quiet = (job_scripts.cmd_script(["true"]) + "# " + "'" * 9000 + "\n").encode()
    sent = tuple(job_folder.Upload("cmd.sh", len(quiet), False, quiet) if u.name == "cmd.sh" else u
                 for u in launch.sent)
    rc, out = run_sh(job_folder.Launch(launch.ref, launch.job, launch.written, sent).command("attach"),
                   job_folder.Launch(launch.ref, launch.job, launch.written, sent).payload())
    assert rc == 0 and job_folder.LAUNCHED in out
    assert (tmp_path / "s" / "jobs" / "j1" / "cmd.sh").read_bytes() == quiet
