"""The Spot watch's side of the shared folder (node/spot_jobs.py): the running jobs come from the
queue's book, so a long history costs nothing; a job's line is a file of the node's own in the
job's folder, written by root never through a link, into a FIFO or into a file with another
name, and added to the log by cmd.sh, the log's one writer, when mpiexec returns."""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

from cfn_chainermn.errors import AgentError
from cfn_chainermn.jobs import scripts as job_scripts
from cfn_chainermn.node import spot_jobs
from cfn_chainermn.node.homefiles import HomeFiles

IP = "10.0.1.7"
LINE = "cfn-chainermn: a line\n"


def _job(mount: Path, name: str, hosts: str, *, ended: bool = False, queued: bool = True) -> Path:
    folder = mount / "jobs" / name
    folder.mkdir(parents=True)
    (folder / "hostfile").write_text(hosts)
    (folder / "log").write_text("step 0\n")
    if ended:
        (folder / "exit_code").write_text("0\n")
    if queued:
        (mount / "jobs/.queue").mkdir(mode=0o700, exist_ok=True)
        (mount / "jobs/.queue" / f"h.{name}").touch()
    return folder


def test_only_the_queues_holders_are_read_however_long_the_history(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """300 finished jobs that named this node cost no read; a holder whose entry the queue has
    not tidied yet costs one (its exit_code, read first); a running one two."""
    for i in range(300):
        _job(tmp_path, f"old-{i:03}", f"{IP} slots=8\n", ended=True, queued=False)
    _job(tmp_path, "j-ended", f"{IP} slots=8\n", ended=True)
    _job(tmp_path, "j-here", f"10.0.1.5 slots=8\n{IP} slots=8\n")
    _job(tmp_path, "j-there", "10.0.1.5 slots=8\n")
    for odd in ("h.", "h..hidden", "w.0000000001", "gone.10.0.1.7"):
        (tmp_path / "jobs/.queue" / odd).touch()
    reads: list[str] = []
    real = HomeFiles.read

    def counted(self: HomeFiles, rel: str) -> bytes | None:
        reads.append(rel)
        return real(self, rel)
    monkeypatch.setattr(HomeFiles, "read", counted)
    files = HomeFiles(tmp_path)
    holders = spot_jobs.holders(files)
    assert holders == ["j-ended", "j-here", "j-there"]
    assert [j for j in holders if spot_jobs.running_on(files, j, IP)] == ["j-here"]
    assert sorted(reads) == ["jobs/j-ended/exit_code", "jobs/j-here/exit_code", "jobs/j-here/hostfile",
                             "jobs/j-there/exit_code", "jobs/j-there/hostfile"]


def test_no_queue_yet_means_no_running_job(tmp_path: Path) -> None:
    (tmp_path / "jobs").mkdir()
    assert spot_jobs.holders(HomeFiles(tmp_path)) == []


def test_the_line_is_a_file_of_the_nodes_own_in_the_jobs_folder(tmp_path: Path) -> None:
    """One writer per file (this node's watch), whole in one rename; the user's, who runs cmd.sh."""
    folder = _job(tmp_path, "j", f"{IP} slots=1\n")
    me = (os.getuid(), os.getgid())
    assert spot_jobs.write_note(HomeFiles(tmp_path, me), "j", IP, LINE)
    note = folder / f"spot.{IP}"
    st = note.stat()
    assert note.read_text() == LINE and (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (*me, 0o600)
    assert (folder / "log").read_text() == "step 0\n", "the log is cmd.sh's alone"
    assert not spot_jobs.write_note(HomeFiles(tmp_path, me), "gone", IP, LINE), "a removed job: nothing made"
    assert not (tmp_path / "jobs/gone").exists()
    with pytest.raises(AgentError, match=re.escape("node address '../x' cannot name a file in jobs/j")):
        spot_jobs.write_note(HomeFiles(tmp_path, me), "j", "../x", LINE)


def _sh_cmd(folder: Path, argv: list[str]) -> str:
    """The job's cmd.sh as submit writes it, run to its end; its log."""
    (folder / "cmd.sh").write_text(job_scripts.cmd_script(argv))
    subprocess.run(["sh", str(folder / "cmd.sh")], check=True, timeout=60)
    return (folder / "log").read_text()


def test_cmd_sh_adds_the_nodes_lines_to_the_log_when_mpiexec_returns(tmp_path: Path) -> None:
    """The log's one writer adds each node's line after the job's output and before exit_code
    (`job logs -f` and an attached submit end at exit_code): the lines of nodes in its hostfile
    only, whole, with the job's exit status kept."""
    folder = _job(tmp_path, "j", f"10.0.1.5 slots=1\n{IP} slots=1\n10.0.1.9 slots=1\n")
    (folder / "log").unlink()
    spot_jobs.write_note(HomeFiles(tmp_path), "j", IP, LINE)
    (folder / "spot.10.0.1.99").write_text("not a node of this job\n")
    assert _sh_cmd(folder, ["sh", "-c", "echo out; exit 3"]) == "out\n" + LINE
    assert (folder / "exit_code").read_text() == "3\n"


def test_cmd_sh_without_a_hostfile_or_a_line_adds_nothing(tmp_path: Path) -> None:
    folder = _job(tmp_path, "j", f"{IP} slots=1\n")
    (folder / "log").unlink()
    assert _sh_cmd(folder, ["echo", "out"]) == "out\n"
    (folder / "log").unlink()
    (folder / "hostfile").unlink()  # a job placed by mpiexec's default hostfile
    assert _sh_cmd(folder, ["echo", "out"]) == "out\n"


class Hung(Exception):
    """Raised by the test's alarm: an open that blocked instead of failing."""


@pytest.fixture
def guard() -> Iterator[None]:
    """Turns a hang into a failure (a liveness bound, not a timing assertion)."""
    def hung(signum: int, frame: types.FrameType | None) -> None:
        raise Hung("the write blocked")
    old = signal.signal(signal.SIGALRM, hung)
    signal.alarm(30)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def test_a_fifo_planted_for_the_line_is_refused_at_once(tmp_path: Path, guard: None) -> None:
    """The user can make the name a FIFO: root must refuse it, not wait for a writer that never
    comes while the ranks wait for their signal."""
    folder = _job(tmp_path, "j", f"{IP} slots=1\n")
    os.mkfifo(folder / f"spot.{IP}")
    with pytest.raises(AgentError, match=f"~/jobs/j/spot.{re.escape(IP)} in .* is not a plain file: refused"):
        spot_jobs.write_note(HomeFiles(tmp_path), "j", IP, LINE)


def test_a_file_with_another_name_planted_for_the_line_is_refused(tmp_path: Path) -> None:
    """A hard link to a file elsewhere (the user's, or one protected_hardlinks did not stop)."""
    folder = _job(tmp_path, "j", f"{IP} slots=1\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text("keep\n")
    os.link(elsewhere, folder / f"spot.{IP}")
    with pytest.raises(AgentError, match="is a file with 2 names \\(a hard link\\): refused"):
        spot_jobs.write_note(HomeFiles(tmp_path), "j", IP, LINE)
    assert elsewhere.read_text() == "keep\n"
