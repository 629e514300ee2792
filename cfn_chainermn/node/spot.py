"""Spot that fails soft: what a node does when EC2 says it will take the node back.

EC2 posts a Spot interruption notice two minutes ahead in the instance metadata
(`meta-data/spot/instance-action`: `{"action": "terminate", "time": "2026-...Z"}`, 404 while
there is none) and asks that it be checked every 5 seconds (AWS, "Spot Instance interruption
notices", docs.aws.amazon.com/AWSEC2/latest/UserGuide/spot-instance-termination-notices.html).
The 30 s refresh is too slow for that, so a watch of its own polls it (`node spot-watch`: a
systemd service on a Spot instance, aws_platform.py; run by hand or by a test on a local node).

On a notice, once: the node's ready marker is deleted (steps.retract_ready), so `job submit`,
which reads readiness from the bucket, places no new job on it. Then, at every poll while the
notice stands (a job may have been placed a moment before the retraction was seen): each
running job whose hostfile names this node gets one line in its log, naming the node and the
time, and its ranks on this node get SIGTERM. OpenMPI's mpiexec then ends the whole job at once
("process rank N ... exited on signal 15"), where a lost node would leave the other ranks
waiting in an allreduce until NCCL or TCP gives up. Jobs are found on the shared folder
(`<mount>/jobs/<id>/`, the cluster user's, opened without following links: homefiles.py), the
ranks in /proc: the cluster user's processes that OpenMPI started (OMPI_COMM_WORLD_RANK in
their environment) under an ssh session to this node's address and port (SSH_CONNECTION), which
on a local cluster tells one node's ranks from another's on the same machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import signal
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from cfn_chainermn.errors import AgentError, CfnChainermnError
from cfn_chainermn.node import steps
from cfn_chainermn.node.context import Context
from cfn_chainermn.node.homefiles import HomeFiles
from cfn_chainermn.node.imds import Imds

NOTICE_PATH = "spot/instance-action"
LIFECYCLE_PATH = "instance-life-cycle"  # "spot" or "on-demand"
INTERVAL_S = 5.0  # what AWS recommends for the check
KILL_AFTER_S = 20.0  # a rank's grace between SIGTERM and SIGKILL, well inside the 2-minute notice
RANK_VARS = (b"OMPI_COMM_WORLD_RANK=", b"PMIX_RANK=")
_APPEND = os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


@dataclass(frozen=True)
class Notice:
    """What the metadata says EC2 will do to the instance, and when (UTC, as EC2 gives it)."""

    action: str
    time: str


def parse_notice(text: str) -> Notice | None:
    """The notice in the metadata's text; None for none ("": the 404). A body we cannot read is
    still a notice: failing soft early beats waiting for a format we expected."""
    if not text.strip():
        return None
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        return Notice("interrupt", "an unknown time")
    return Notice(str(data.get("action") or "interrupt"), str(data.get("time") or "an unknown time"))


def log_line(node_id: str, ip: str, notice: Notice, seen: str) -> str:
    """The one line a job's log gets: which node, when it was seen, what EC2 will do and when."""
    return (f"cfn-chainermn: {seen} Spot interruption notice on node {node_id} ({ip}): EC2 will "
            f"{notice.action} it at {notice.time}; stopping the job's ranks there so the job fails now "
            "instead of hanging\n")


def holds(hostfile: str, ip: str) -> bool:
    """Whether a job's hostfile (`ADDRESS slots=N` lines) names this node's address."""
    return any(line.split()[:1] == [ip] for line in hostfile.splitlines())


def node_of(environ: bytes) -> tuple[str, int] | None:
    """(address, port) of the ssh session a process's environment came from, if it is a rank."""
    entries = environ.split(b"\0")
    if not any(e.startswith(RANK_VARS) for e in entries):
        return None
    for e in entries:
        if e.startswith(b"SSH_CONNECTION="):
            parts = e.split(b"=", 1)[1].split()
            if len(parts) == 4 and parts[3].isdigit():
                return parts[2].decode(errors="replace"), int(parts[3])
    return None


def rank_pids(proc: Path, uid: int, ip: str, port: int) -> list[int]:
    """The ranks of user `uid` started through this node's sshd (see the module's docstring)."""
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if entry.stat().st_uid == uid and node_of((entry / "environ").read_bytes()) == (ip, port):
                found.append(int(entry.name))
    return sorted(found)


def _append(files: HomeFiles, folder: str, text: str) -> None:
    """One line at the end of folder/log (cmd.sh appends there too: O_APPEND, whole line)."""
    with files.folder(folder, create=False) as fd:
        if fd is None:
            return
        try:
            log = os.open("log", _APPEND, dir_fd=fd)
        except FileNotFoundError:
            return
        except OSError as exc:  # a link or a FIFO the user planted is not root's to write into
            raise AgentError(f"{folder}/log cannot be appended to safely: {exc}") from exc
        try:
            st = os.fstat(log)
            if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
                raise AgentError(f"{folder}/log is not a plain file with one name: refused")
            os.write(log, text.encode())
        finally:
            os.close(log)


@dataclass
class Watch:
    """One node's watch: `poll` returns the metadata's text for NOTICE_PATH ("" while none)."""

    ctx: Context
    poll: Callable[[], str]
    proc: Path = Path("/proc")
    notice: Notice | None = None
    retracted: bool = False
    told: set[str] = field(default_factory=set)  # jobs whose log has the line already
    termed: dict[int, float] = field(default_factory=dict)  # rank pid -> when it got SIGTERM

    def running_jobs(self) -> Iterator[str]:
        """Jobs (folder names) that have not ended and whose hostfile names this node."""
        files = HomeFiles(self.ctx.platform.path(self.ctx.settings.mount_point))
        with files.folder("jobs", create=False) as fd:
            names = sorted(os.listdir(fd)) if fd is not None else []
        for name in names:
            if name.startswith("."):
                continue
            try:
                hostfile = files.read(f"jobs/{name}/hostfile")
                ended = files.read(f"jobs/{name}/exit_code") is not None
            except (AgentError, OSError):
                continue  # not a job folder we can read safely
            ip = self.ctx.settings.private_ip
            if hostfile is not None and not ended and holds(hostfile.decode(errors="replace"), ip):
                yield name

    def tick(self) -> str:
        """One poll; what was done, in words ("" when there is no notice)."""
        notice = parse_notice(self.poll())
        if notice is None:
            return ""
        s, done = self.ctx.settings, []
        seen = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        if self.notice is None:
            self.notice = notice
            done.append(f"Spot interruption notice: {notice.action} at {notice.time}")
        if not self.retracted:
            try:
                done.append(steps.retract_ready(self.ctx))
                self.retracted = True
            except CfnChainermnError as exc:  # S3 throttled or down: the jobs first, this at the next poll
                done.append(f"readiness not retracted yet ({exc})")
        files = HomeFiles(self.ctx.platform.path(s.mount_point))
        for job in self.running_jobs():
            if job in self.told:
                continue
            try:
                _append(files, f"jobs/{job}", log_line(s.node_id, s.private_ip, notice, seen))
                self.told.add(job)  # only once it is written: a failed append is tried again next poll
                done.append(f"job {job} told")
            except (AgentError, OSError) as exc:
                done.append(f"job {job}: {exc}")
        termed, killed = self.stop_ranks()
        if termed:
            done.append(f"SIGTERM to ranks {' '.join(map(str, termed))}")
        if killed:
            done.append(f"SIGKILL to ranks {' '.join(map(str, killed))} (running {KILL_AFTER_S:g} s after SIGTERM)")
        return "; ".join(done)

    def stop_ranks(self) -> tuple[list[int], list[int]]:
        """SIGTERM each rank here once; SIGKILL one still running KILL_AFTER_S later (a rank whose
        SIGTERM handler waits inside an allreduce would otherwise hang the job until EC2 takes the node)."""
        s = self.ctx.settings
        try:
            uid = pwd.getpwnam(s.user).pw_uid
        except KeyError:
            return [], []
        termed: list[int] = []
        killed: list[int] = []
        now = time.monotonic()
        for pid in rank_pids(self.proc, uid, s.private_ip, s.ssh_port):
            if pid not in self.termed:
                self.termed[pid], sig = now, signal.SIGTERM
            elif now - self.termed[pid] >= KILL_AFTER_S:
                sig = signal.SIGKILL
            else:
                continue
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            (termed if sig == signal.SIGTERM else killed).append(pid)
        return termed, killed


def imds_poll(url: str, wait: float = 2.0) -> Callable[[], str]:
    """The notice's text from IMDSv2 at `url` ("" on 404), a fresh token each poll (one never
    expires under a watch that runs for days), retried for `wait` seconds at most."""
    return lambda: Imds(url, wait=wait).get(NOTICE_PATH, missing_ok=True)


def watch(ctx: Context, poll: Callable[[], str], *, interval: float = INTERVAL_S, ticks: int | None = None) -> None:
    """Poll every `interval` seconds (forever, or `ticks` times); a failed poll is logged and the
    next one tried, since a watch that dies misses the one notice that matters."""
    w = Watch(ctx, poll)
    ctx.log.info(f"spot watch: node {ctx.settings.node_id} polls {NOTICE_PATH} every {interval:g} s")
    count = 0
    while ticks is None or count < ticks:
        count += 1
        try:
            detail = w.tick()
        except CfnChainermnError as exc:
            ctx.log.error(f"spot watch: {exc}")
        else:
            if detail:
                ctx.log.info(f"spot watch: {detail}")
        if ticks is None or count < ticks:
            time.sleep(interval)
