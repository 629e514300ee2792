"""The Spot watch's side of the shared folder (node/spot_jobs.py): the running jobs come from the
queue's book, so a long history costs nothing, and root appends its line only to the plain file
the job made, never through a link, into a FIFO, or into a file with another name."""

from __future__ import annotations

import os
import signal
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

from cfn_chainermn.errors import AgentError
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


def test_the_line_goes_to_the_end_of_the_jobs_log(tmp_path: Path) -> None:
    folder = _job(tmp_path, "j", f"{IP} slots=1\n")
    assert spot_jobs.append_log(HomeFiles(tmp_path), "j", LINE)
    assert (folder / "log").read_text() == "step 0\n" + LINE
    (folder / "log").unlink()
    assert not spot_jobs.append_log(HomeFiles(tmp_path), "j", LINE), "no log yet: nothing written, told later"
    assert not (folder / "log").exists()


class Hung(Exception):
    """Raised by the test's alarm: an open that blocked instead of failing."""


@pytest.fixture
def guard() -> Iterator[None]:
    """Turns a hang into a failure (a liveness bound, not a timing assertion)."""
    def hung(signum: int, frame: types.FrameType | None) -> None:
        raise Hung("the append blocked")
    old = signal.signal(signal.SIGALRM, hung)
    signal.alarm(30)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def test_a_fifo_nobody_reads_is_refused_at_once(tmp_path: Path, guard: None) -> None:
    """The user can make `log` a FIFO: root's open for writing must fail (ENXIO), not wait for
    a reader that never comes while the ranks wait for their signal."""
    folder = _job(tmp_path, "j", f"{IP} slots=1\n")
    (folder / "log").unlink()
    os.mkfifo(folder / "log")
    with pytest.raises(AgentError, match=r"jobs/j/log cannot be appended to safely \(No such device or address\)"):
        spot_jobs.append_log(HomeFiles(tmp_path), "j", LINE)


def test_a_fifo_someone_reads_gets_nothing(tmp_path: Path) -> None:
    folder = _job(tmp_path, "j", f"{IP} slots=1\n")
    (folder / "log").unlink()
    os.mkfifo(folder / "log")
    reader = os.open(folder / "log", os.O_RDONLY | os.O_NONBLOCK)
    try:
        with pytest.raises(AgentError, match="jobs/j/log is not a plain file with one name: refused"):
            spot_jobs.append_log(HomeFiles(tmp_path), "j", LINE)
        try:
            got = os.read(reader, 4096)
        except BlockingIOError:
            got = b""
        assert got == b""
    finally:
        os.close(reader)


def test_a_log_with_another_name_is_refused(tmp_path: Path) -> None:
    """A hard link to a file elsewhere (the user's, or one protected_hardlinks did not stop)."""
    folder = _job(tmp_path, "j", f"{IP} slots=1\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text("keep\n")
    (folder / "log").unlink()
    os.link(elsewhere, folder / "log")
    with pytest.raises(AgentError, match="jobs/j/log is not a plain file with one name: refused"):
        spot_jobs.append_log(HomeFiles(tmp_path), "j", LINE)
    assert elsewhere.read_text() == "keep\n"
