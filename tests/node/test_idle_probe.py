"""node/idle_probe.py: what keeps a cluster busy. Jobs through the real jobs/sh/list.sh over a
real jobs folder; sessions and launchers from a /proc laid out as Linux lays it out."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

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
    assert idle_probe.jobs(str(tmp_path / "no-such-folder")) == ()  # no job was ever submitted


def test_a_job_list_that_fails_counts_as_busy() -> None:
    def failing(argv: Sequence[str]) -> tuple[int, bytes]:
        return 2, b""

    assert idle_probe.jobs("/efs/jobs", failing) == ("job list failed (exit 2)",)


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


def test_mpi_launchers_are_busy_whoever_started_them(tmp_path: Path) -> None:
    proc = _proc(tmp_path, {"7": b"/opt/amazon/openmpi/bin/mpiexec\0-n\0002\0python\0", "8": b"python\0train.py\0",
                            "12": b"mpirun\0hostname\0", "30": b"/usr/bin/orted\0",
                            "40": b"/opt/intel/bin/mpiexec.hydra\0-n\0002\0a.out\0"})
    assert idle_probe.launchers(proc) == ("mpiexec (pid 7)", "mpirun (pid 12)", "mpiexec.hydra (pid 40)")


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


def test_probe_joins_them(tmp_path: Path) -> None:
    proc = _proc(tmp_path, {"101": b"sshd: chainer@pts/0\0"})
    activity = idle_probe.probe(str(tmp_path / "none"), proc, which=lambda name: None)
    assert activity.busy and activity.words() == ["chainer@pts/0"]
    assert not idle_probe.probe(str(tmp_path / "none"), _proc(tmp_path / "b", {}), which=lambda name: None).busy
