"""node/idle_probe.py: what keeps a cluster busy. Jobs through the real jobs/sh/list.sh over a
real jobs folder; sessions, launchers and MPI daemons from a /proc laid out as Linux lays it out.
Whatever cannot be looked at (the jobs folder, the process list, the GPU) counts as busy."""

from __future__ import annotations

import errno
import os
from collections.abc import Sequence
from pathlib import Path

import pytest

from cfn_chainermn.node import idle_probe


def _start(pid: int) -> str:
    """Field 22 of /proc/PID/stat (its start time), as group.sh's alive() compares it."""
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[19]


def _jobs(tmp_path: Path) -> Path:
    jobs = tmp_path / "efs" / "jobs"
    queued = jobs / "20260102-030405-queued"
    queued.mkdir(parents=True)
    (queued / "queued").write_text(f"{os.getpid()} {_start(os.getpid())}\n")  # its queue process: alive
    (queued / "summary").write_text("train.py")
    exited = jobs / "20260102-010000-done"
    exited.mkdir()
    (exited / "pgid").write_text("999999\n")
    (exited / "exit_code").write_text("0\n")
    lost = jobs / "20260102-020000-lost"
    lost.mkdir()
    (lost / "queued").write_text("999999 1\n")  # its queue process is gone
    return jobs


def test_a_queued_job_is_busy_an_exited_or_lost_one_is_not(tmp_path: Path) -> None:
    jobs = _jobs(tmp_path)
    assert idle_probe.jobs(str(jobs)) == ("job 20260102-030405-queued (queued)",)
    (jobs / "20260102-030405-queued" / "cancelled").write_text("")
    assert idle_probe.jobs(str(jobs)) == ()
    for entry in list(jobs.iterdir()):  # only finished jobs, or none at all: idle
        (entry / "pgid").write_text("999999\n")
        (entry / "exit_code").write_text("0\n")
    assert idle_probe.jobs(str(jobs)) == ()


def test_a_missing_jobs_folder_cannot_tell_whether_a_job_waits(tmp_path: Path) -> None:
    """The agent makes the folder at boot: without it (EFS not mounted) "no jobs" would be a guess."""
    missing = tmp_path / "efs" / "jobs"
    assert idle_probe.jobs(str(missing)) == (
        f"jobs folder {missing} missing (is the shared folder mounted?): cannot tell whether a job waits",)


def test_a_jobs_folder_that_is_a_link_or_a_file_is_not_read(tmp_path: Path) -> None:
    real = _jobs(tmp_path)  # holds a queued job, which a link would make root read as someone else's
    link = tmp_path / "link-jobs"
    link.symlink_to(real)
    assert idle_probe.jobs(str(link)) == (
        f"jobs folder {link} is a symbolic link (not followed): cannot tell whether a job waits",)
    plain = tmp_path / "file-jobs"
    plain.write_text("")
    assert idle_probe.jobs(str(plain)) == (f"jobs folder {plain} is not a folder: cannot tell whether a job waits",)


def test_an_unreadable_jobs_folder_cannot_tell(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    jobs = _jobs(tmp_path)

    def stale(path: object) -> object:  # what a stale NFS handle gives a listing
        raise OSError(errno.ESTALE, os.strerror(errno.ESTALE))

    monkeypatch.setattr(idle_probe.os, "scandir", stale)
    assert idle_probe.jobs(str(jobs)) == (
        f"jobs folder {jobs} unreadable ({os.strerror(errno.ESTALE)}): cannot tell whether a job waits",)


def test_a_job_list_that_fails_counts_as_busy(tmp_path: Path) -> None:
    def failing(argv: Sequence[str]) -> tuple[int, bytes]:
        return 2, b""

    assert idle_probe.jobs(str(_jobs(tmp_path)), failing) == ("job list failed (exit 2)",)


def _proc(tmp_path: Path, cmdlines: dict[str, bytes]) -> Path:
    proc = tmp_path / "proc"
    for pid, cmdline in cmdlines.items():
        (proc / pid).mkdir(parents=True)
        (proc / pid / "cmdline").write_bytes(cmdline)
    (proc / "self").mkdir(parents=True)
    return proc


def test_every_ssh_session_counts_once_and_the_privileged_monitor_not_at_all(tmp_path: Path) -> None:
    proc = _proc(tmp_path, {
        "100": b"sshd: chainer [priv]\0", "101": b"sshd: chainer@pts/0\0", "102": b"sshd: chainer@notty\0",
        "103": b"sshd-session: alice@pts/1\0", "104": b"/usr/sbin/sshd\0-D\0", "105": b"sshd: chainer@pts/0\0",
        "106": b"-bash\0"})
    assert idle_probe.sessions(proc) == ("chainer@pts/0", "chainer@notty", "alice@pts/1")


def test_mpi_launchers_and_daemons_are_busy_whoever_started_them(tmp_path: Path) -> None:
    """A rank's node runs the daemon its launcher started over ssh (Open MPI 4 orted, Open MPI 5
    prted, MPICH hydra_pmi_proxy), with no launcher of its own."""
    proc = _proc(tmp_path, {"7": b"/opt/amazon/openmpi/bin/mpiexec\0-n\0002\0python\0", "8": b"python\0train.py\0",
                            "12": b"mpirun\0hostname\0", "30": b"/usr/bin/orted\0-mca\0ess\0env\0",
                            "31": b"/opt/openmpi5/bin/prted\0", "32": b"hydra_pmi_proxy\0--control-port\0",
                            "40": b"/opt/intel/bin/mpiexec.hydra\0-n\0002\0a.out\0", "41": b"ortedx\0"})
    assert idle_probe.launchers(proc) == ("mpiexec (pid 7)", "mpirun (pid 12)", "orted (pid 30)", "prted (pid 31)",
                                          "hydra_pmi_proxy (pid 32)", "mpiexec.hydra (pid 40)")


def test_gpu_holders_from_nvidia_smi_and_none_without_it() -> None:
    calls: list[list[str]] = []

    def smi(argv: Sequence[str]) -> tuple[int, bytes]:
        calls.append(list(argv))
        return 0, b"4242, /opt/chainer/bin/python3\n4243, [Not Found]\n"

    assert idle_probe.gpu_holders(smi, lambda name: "/usr/bin/nvidia-smi") == (
        "GPU: python3 (pid 4242)", "GPU: [Not Found] (pid 4243)")
    assert calls == [["nvidia-smi", "--query-compute-apps=pid,process_name", "--format=csv,noheader"]]
    assert idle_probe.gpu_holders(smi, lambda name: None) == ()
    # a driver that cannot answer cannot say nothing runs: busy
    assert idle_probe.gpu_holders(lambda argv: (9, b"NVIDIA-SMI has failed"), lambda name: "/x") == (
        "GPU query failed (exit 9)",)


def test_a_node_whose_processes_cannot_be_listed_is_busy(tmp_path: Path) -> None:
    activity = idle_probe.node_activity(tmp_path / "no-proc", which=lambda name: None)
    assert activity.words() == [f"cannot list processes in {tmp_path / 'no-proc'} ({os.strerror(errno.ENOENT)})"]


def test_probe_joins_them_with_what_the_workers_markers_say(tmp_path: Path) -> None:
    jobs = tmp_path / "efs" / "jobs"
    jobs.mkdir(parents=True)
    proc = _proc(tmp_path, {"101": b"sshd: chainer@pts/0\0"})
    activity = idle_probe.probe(str(jobs), proc, which=lambda name: None)
    assert activity.busy and activity.words() == ["chainer@pts/0"]
    idle = _proc(tmp_path / "b", {})
    assert not idle_probe.probe(str(jobs), idle, which=lambda name: None).busy
    workers = {"i-0w2": ("GPU: python3 (pid 9)",), "i-0w1": ("orted (pid 7)", "chainer@notty")}
    assert idle_probe.probe(str(jobs), idle, which=lambda name: None, nodes=workers).words() == [
        "i-0w1: orted (pid 7)", "i-0w1: chainer@notty", "i-0w2: GPU: python3 (pid 9)"]
