"""node/idle_probe.py: what keeps a cluster busy. Jobs through the real jobs/sh/list.sh over a
real jobs folder; sessions, launchers and MPI daemons from a /proc laid out as Linux lays it out.
Whatever cannot be looked at (the jobs folder, the process list, the GPU) counts as busy."""

from __future__ import annotations

import contextlib
import errno
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from cfn_chainermn.jobs import scripts
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


def _folder(path: Path, user: str = "", mount: str = "", mounts: str = idle_probe.MOUNTS,
            timeout: float = idle_probe.LIST_TIMEOUT_S) -> idle_probe.JobsFolder:
    return idle_probe.JobsFolder(str(path), user, mount, timeout, mounts)


def test_a_queued_job_is_busy_an_exited_or_lost_one_is_not(tmp_path: Path) -> None:
    jobs = _jobs(tmp_path)
    assert idle_probe.jobs(_folder(jobs)) == ("job 20260102-030405-queued (queued)",)
    (jobs / "20260102-030405-queued" / "cancelled").write_text("")
    assert idle_probe.jobs(_folder(jobs)) == ()
    for entry in list(jobs.iterdir()):  # only finished jobs, or none at all: idle
        (entry / "pgid").write_text("999999\n")
        (entry / "exit_code").write_text("0\n")
    assert idle_probe.jobs(_folder(jobs)) == ()


def test_a_removed_jobs_folder_is_no_jobs_unless_its_efs_mount_is_gone(tmp_path: Path) -> None:
    """`rm -rf` of the folder leaves no job to wait (submit.sh makes it again); but under a bare
    mount point (EFS no longer mounted) "no jobs" would be a guess. The kernel's table says which,
    read without touching the mount (a stat of a hung hard NFS mount blocks)."""
    shared = tmp_path / "efs"
    shared.mkdir()
    missing = shared / "jobs"
    assert idle_probe.jobs(_folder(missing)) == ()  # a plain shared folder: removed
    table = tmp_path / "mounts"
    table.write_text("proc /proc proc rw 0 0\n")
    assert idle_probe.jobs(_folder(missing, mount=str(shared), mounts=str(table))) == (
        f"jobs folder {missing} missing (is the shared folder mounted?): cannot tell whether a job waits",)
    escaped = str(shared).replace(" ", "\\040")
    table.write_text(f"fs-1.efs.us-east-1.amazonaws.com:/ {escaped} nfs4 rw,hard 0 0\n")
    assert idle_probe.jobs(_folder(missing, mount=str(shared), mounts=str(table))) == ()
    spaced = tmp_path / "shared folder"
    table.write_text("fs-1:/ " + str(spaced).replace(" ", "\\040") + " nfs4 rw 0 0\n")
    assert idle_probe.mounted(str(spaced), str(table)) and not idle_probe.mounted(str(shared), str(table))
    assert not idle_probe.mounted(str(shared), str(tmp_path / "no-table"))  # unreadable: not mounted, busy


def test_a_jobs_folder_that_is_a_link_or_a_file_is_not_read(tmp_path: Path) -> None:
    real = _jobs(tmp_path)  # holds a queued job, which a link would make the probe read as someone else's
    link = tmp_path / "efs" / "link-jobs"
    link.symlink_to(real)
    assert idle_probe.jobs(_folder(link)) == (
        f"jobs folder {link} is a symbolic link (not followed): cannot tell whether a job waits",)
    plain = tmp_path / "efs" / "file-jobs"
    plain.write_text("")
    assert idle_probe.jobs(_folder(plain)) == (
        f"jobs folder {plain} cannot be listed as the agent: cannot tell whether a job waits",)
    gone = tmp_path / "no-shared" / "jobs"  # no shared folder at all: cannot tell either
    assert idle_probe.jobs(_folder(gone)) == (
        f"jobs folder {gone} cannot be listed as the agent: cannot tell whether a job waits",)


def test_idle_sh_refuses_a_folder_entered_through_a_link_by_its_physical_path(tmp_path: Path) -> None:
    """The link test before `cd` only names the refusal early: a link swapped in between the test
    and the `cd` is caught after it, by the physical path of the folder entered. Shown here with
    the early test taken out (the swap itself cannot be timed from a test)."""
    real = _jobs(tmp_path)
    link = tmp_path / "efs" / "swapped"
    link.symlink_to(real)
    early = '[ -L "$name" ] && exit 4\n'
    script = scripts.text("idle.sh")
    assert early in script
    late_only = script.replace(early, "")
    for folder, rc in ((link, idle_probe.LINKED), (real, 0)):
        assert subprocess.run(["sh", "-c", late_only, "sh", str(folder)]).returncode == rc


# In a mount namespace of the command's own: a FUSE mount whose server is gone (the /dev/fuse
# descriptor closed once the mount is made, so the kernel aborts the connection: fs/fuse/dev.c,
# fuse_dev_release), on which every look fails with ENOTCONN, as a dead NFS mount gives EIO.
DEAD_MOUNT = ('mount -t fuse -o fd=3,rootmode=40000,user_id=0,group_id=0 cfnmn-dead "$0" 3<>/dev/fuse '
              '&& exec "$@"')


def _in_dead_mount(at: Path) -> idle_probe.Runner:
    """A runner whose command sees `at` as that dead mount; the test is skipped where the machine
    allows no mount namespace or FUSE mount (it needs root's CAP_SYS_ADMIN and /dev/fuse)."""
    wrap = ["unshare", "--mount", "--propagation", "private", "sh", "-c", DEAD_MOUNT, str(at)]
    if os.geteuid() != 0 or shutil.which("unshare") is None or not os.path.exists("/dev/fuse"):
        pytest.skip("needs root, unshare and /dev/fuse for a dead FUSE mount")
    rc, out = idle_probe.run([*wrap, "sh", "-c", 'stat -- "$0" 2>&1', str(at)])
    if b"not connected" not in out:
        pytest.skip(f"a dead FUSE mount cannot be made here (exit {rc}): {out.decode(errors='replace').strip()}")
    return lambda argv: idle_probe.run([*wrap, *argv])


def test_a_jobs_folder_an_io_error_hides_cannot_tell_and_is_never_no_jobs(tmp_path: Path) -> None:
    """`[ -e ]` is false on an I/O error as on no such name: idle.sh asks the shared folder's
    listing, which still lists the folder, so the probe says it cannot tell (busy), even with
    the shared folder's mount still in the kernel's table (where a missing folder is no jobs)."""
    shared = tmp_path / "efs"
    (shared / "jobs").mkdir(parents=True)
    table = tmp_path / "mounts"
    table.write_text(f"fs-1.efs.us-east-1.amazonaws.com:/ {shared} nfs4 rw,hard 0 0\n")
    folder = _folder(shared / "jobs", mount=str(shared), mounts=str(table))
    dead = _in_dead_mount(shared / "jobs")
    assert dead(["sh", "-c", scripts.text("idle.sh"), "sh", folder.path])[0] == idle_probe.UNLISTABLE
    assert idle_probe.jobs(folder, dead) == (
        f"jobs folder {folder.path} cannot be listed as the agent: cannot tell whether a job waits",)
    (shared / "jobs").rmdir()  # no such name at all: removed, no jobs
    assert subprocess.run(["sh", "-c", scripts.text("idle.sh"), "sh", folder.path]).returncode == idle_probe.MISSING
    assert idle_probe.jobs(folder) == ()


def test_a_job_list_that_fails_or_times_out_counts_as_busy(tmp_path: Path) -> None:
    def failing(argv: Sequence[str]) -> tuple[int, bytes]:
        return 2, b""

    folder = _folder(_jobs(tmp_path), timeout=1.5)
    assert idle_probe.jobs(folder, failing) == ("job list failed (exit 2)",)
    assert idle_probe.jobs(folder, lambda argv: (idle_probe.TIMED_OUT, b"")) == (
        "job list timed out after 1.5 s (a hung shared folder?): cannot tell whether a job waits",)
    # a record whose state is not one of list.sh's (a folder name with a tab in it): cannot tell
    assert idle_probe.jobs(folder, lambda argv: (0, b"a\tb\tqueued\t-\tx\0j2\texited\t0\ty\0")) == (
        "job record unreadable (a)",)


def _alive(pid: int) -> bool:
    """A process that runs (a zombie waits only for its parent to reap it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def test_a_command_that_hangs_is_killed_with_its_whole_group_at_the_timeout(tmp_path: Path) -> None:
    """What a hard NFS mount that stopped answering does to the listing: a process that sleeps.
    It and what it started are killed (one SIGKILL to the group), and the probe says so."""
    pids = tmp_path / "pids"
    rc, out = idle_probe.run(["sh", "-c", f'sleep 600 & echo "$$ $!" > {pids}; wait'], timeout=0.5)
    assert (rc, out) == (idle_probe.TIMED_OUT, b"")
    shell, sleeper = map(int, pids.read_text().split())
    assert not _alive(shell)  # the probe reaped its child
    # The orphan got its SIGKILL with the group; it dies when next scheduled (not at once on a
    # loaded machine), so wait for that, bounded: a sleeper the kill missed stays for 600 s.
    deadline = time.monotonic() + 30
    while _alive(sleeper) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not _alive(sleeper)
    assert idle_probe.run(["sh", "-c", "echo hi; exit 3"]) == (3, b"hi\n")
    assert idle_probe.run(["no-such-program-here"])[0] == 127


AS_ROOT = pytest.mark.skipif(os.geteuid() != 0, reason="the listing drops to another user only when root")


@pytest.fixture
def user_jobs(tmp_path: Path) -> Iterator[Path]:
    """A jobs folder of the user `nobody`, 0700, under a shared folder it can reach (tmp_path's
    parents are root's, 0700), with a queued job in it whose queue process (this one) lives."""
    shared = Path(tempfile.mkdtemp(prefix="cfnmn-idle-"))
    shared.chmod(0o755)
    jobs = shared / "jobs"
    try:
        shutil.copytree(_jobs(tmp_path), jobs)
        nobody = pwd.getpwnam("nobody")
        for path in (jobs, *jobs.rglob("*")):
            os.lchown(path, nobody.pw_uid, nobody.pw_gid)
        jobs.chmod(0o700)
        yield jobs
    finally:
        shutil.rmtree(shared)


def _root_fifo(tmp_path: Path) -> Path:
    """A FIFO only root can open (tmp_path is root's, 0700): root's `cat` of it blocks for good."""
    fifo = tmp_path / "root-only" / "fifo"
    fifo.parent.mkdir(mode=0o700)
    os.mkfifo(fifo, 0o600)
    return fifo


@AS_ROOT
def test_the_listing_runs_as_the_user_so_links_it_planted_reach_nothing_of_roots(
        user_jobs: Path, tmp_path: Path) -> None:
    """The user's links into root's files: a job's `queued` record is a link to a root-only
    record of a live queue process (root would read it and count a job that is not the user's to
    claim) and its summary a link to a root-only FIFO (root's `cat` would block until the
    timeout). As the user both are unreadable: the one real job counts, at once."""
    queued = user_jobs / "20260102-030405-queued"
    (queued / "summary").unlink()
    (queued / "summary").symlink_to(_root_fifo(tmp_path))
    planted = user_jobs / "20260102-040000-planted"
    planted.mkdir()
    secret = tmp_path / "root-only" / "queued"
    secret.write_text((queued / "queued").read_text())
    (planted / "queued").symlink_to(secret)
    for path in (planted, planted / "queued", queued / "summary"):
        os.lchown(path, pwd.getpwnam("nobody").pw_uid, -1)
    assert idle_probe.jobs(_folder(user_jobs, user="nobody", timeout=30)) == ("job 20260102-030405-queued (queued)",)
    # the same folder listed as root: the planted record counts, and the FIFO blocks it until the timeout
    assert idle_probe.jobs(_folder(user_jobs, timeout=0.5))[0].startswith("job list timed out after 0.5 s")


@AS_ROOT
def test_a_fifo_the_user_planted_blocks_only_the_listing_which_counts_as_busy(user_jobs: Path) -> None:
    """The user's own FIFO blocks the user's own `cat`: the timeout kills the listing's whole
    group, nothing of it is left running, and the cluster is busy (it cannot tell)."""
    summary = user_jobs / "20260102-030405-queued" / "summary"
    summary.unlink()
    os.mkfifo(summary, 0o600)
    os.lchown(summary, pwd.getpwnam("nobody").pw_uid, -1)
    assert idle_probe.jobs(_folder(user_jobs, user="nobody", timeout=0.5)) == (
        "job list timed out after 0.5 s (a hung shared folder?): cannot tell whether a job waits",)
    # The group got its SIGKILL; a member dies when next scheduled (not at once on a loaded
    # machine), so wait for that, bounded: a `cat` the kill missed stays blocked on the FIFO.
    deadline = time.monotonic() + 30
    while (left := _running_in(user_jobs)) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert left == []


def _running_in(folder: Path) -> list[str]:
    """The pids of the processes whose working folder is `folder`."""
    left = []
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if entry.name.isdigit() and os.readlink(entry / "cwd") == str(folder):
                left.append(entry.name)
    return left


@AS_ROOT
def test_a_folder_the_user_cannot_list_or_a_missing_user_cannot_tell(user_jobs: Path) -> None:
    os.chown(user_jobs, 0, 0)  # root's, 0700: `for d in */` as the user would match nothing
    assert idle_probe.jobs(_folder(user_jobs, user="nobody")) == (
        f"jobs folder {user_jobs} cannot be listed as nobody: cannot tell whether a job waits",)
    assert idle_probe.jobs(_folder(user_jobs, user="no-such-user-here")) == (
        f"jobs folder {user_jobs} not listed: user no-such-user-here does not exist: cannot tell whether a job waits",)


def _proc(tmp_path: Path, cmdlines: dict[str, bytes]) -> Path:
    proc = tmp_path / "proc"
    for pid, cmdline in cmdlines.items():
        (proc / pid).mkdir(parents=True)
        (proc / pid / "cmdline").write_bytes(cmdline)
    (proc / "self").mkdir(parents=True)
    return proc


def test_every_authenticated_ssh_connection_counts_once_and_no_unauthenticated_one(tmp_path: Path) -> None:
    """A tunnel alone ("sshd: USER", no session channel) counts; the monitor and the network
    child of a connection still authenticating ("[priv]", "[net]": a stranger guessing passwords
    too) and the listener do not."""
    proc = _proc(tmp_path, {
        "100": b"sshd: chainer [priv]\0", "101": b"sshd: chainer@pts/0\0", "102": b"sshd: chainer@notty\0",
        "103": b"sshd-session: alice@pts/1\0", "104": b"/usr/sbin/sshd\0-D\0", "105": b"sshd: chainer@pts/0\0",
        "106": b"-bash\0", "107": b"sshd: bob\0\0\0", "108": b"sshd: root [net]\0", "109": b"sshd: unknown [priv]\0",
        "110": b"sshd: /usr/sbin/sshd -D [listener] 0 of 10-100 startups\0", "111": b"sshd-session: bob\0",
        "112": b"sshd: carol@pts/2,pts/3"})
    assert idle_probe.sessions(proc) == ("chainer@pts/0", "chainer@notty", "alice@pts/1", "bob (ssh, no session)",
                                         "carol@pts/2,pts/3")


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
    activity = idle_probe.probe(_folder(jobs), proc, which=lambda name: None)
    assert activity.busy and activity.words() == ["chainer@pts/0"]
    idle = _proc(tmp_path / "b", {})
    assert not idle_probe.probe(_folder(jobs), idle, which=lambda name: None).busy
    workers = {"i-0w2": ("GPU: python3 (pid 9)",), "i-0w1": ("orted (pid 7)", "chainer@notty")}
    assert idle_probe.probe(_folder(jobs), idle, which=lambda name: None, nodes=workers).words() == [
        "i-0w1: orted (pid 7)", "i-0w1: chainer@notty", "i-0w2: GPU: python3 (pid 9)"]


def test_the_masters_own_words_are_cleaned_as_the_workers_are(tmp_path: Path) -> None:
    """A job folder's, a user's or a GPU process's name is the user's to choose: no terminal
    escape or control character reaches `stack status` from the master's own look either."""
    jobs = _jobs(tmp_path)
    (jobs / "20260102-030405-queued").rename(jobs / "20260102-\x1b]0;owned\x07q")
    proc = _proc(tmp_path, {"101": b"sshd: \x1b]2;t\x07@pts/0\0", "7": b"/usr/bin/mpiexec\0"})

    def smi(argv: Sequence[str]) -> tuple[int, bytes]:
        return 0, b"4242, /tmp/\x1b[2J\xc2\x9b31m" + b"x" * 100 + b"\n"

    words = idle_probe.probe(_folder(jobs), proc, smi, which=lambda name: "/usr/bin/nvidia-smi").words()
    assert words == ["job 20260102-]0;ownedq (queued)", "mpiexec (pid 7)", f"GPU: [2J31m{'x' * 69}",
                     "]2;t@pts/0"]
    assert idle_probe.clean(["\x1b\x07", *(f"w{i}" for i in range(9))]) == (
        "?", "w0", "w1", "w2", "w3", "w4", "w5", "w6", "(+2 more)")  # no word vanishes: busy stays busy
