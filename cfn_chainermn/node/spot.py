"""Spot that fails soft: what a node does when EC2 says it will take the node back.

EC2 posts a Spot interruption notice two minutes ahead in the instance metadata
(`meta-data/spot/instance-action`: `{"action": "terminate", "time": "2026-...Z"}`, 404 while
there is none) and asks that it be checked every 5 seconds (AWS, "Spot Instance interruption
notices", docs.aws.amazon.com/AWSEC2/latest/UserGuide/spot-instance-termination-notices.html).
The 30 s refresh is too slow for that, so a watch of its own polls it (`node spot-watch`: a
systemd service on a Spot instance, aws_platform.py; run by hand or by a test on a local node).

On a notice (each step once per notice, recorded in spot_record.py's file so that a watch
restarted mid-notice goes on instead of repeating itself):
1. the node's ready marker is deleted (steps.retract_ready), so `job submit`, which reads
   readiness from the bucket, places no new job on it;
2. `<jobs>/.queue/gone.<ADDRESS>` is written ("INSTANCE-ID NOTICE-TIME\n", the cluster user's,
   0600, no link followed: homefiles.py), ADDRESS as the first field of the node's hostfile line.
   queue.sh (jobs/sh) places no waiting job on an address with a gone entry under 5 minutes old:
   such a job's node list was taken at its submit, before the retraction. It is written before
   any rank is signalled; if it cannot be (a link planted there), the ranks are stopped anyway and
   the write is tried again at the next poll;
3. at every poll while the notice stands (a job may have been placed a moment before the
   retraction was seen): each running job whose hostfile names this node gets one line in its
   log, naming the node and the time, and its ranks on this node get SIGTERM, then SIGKILL if
   still running KILL_AFTER_S later (spot_ranks.py: through pidfds, never a reused pid). OpenMPI's
   mpiexec then ends the whole job at once ("process rank N ... exited on signal 15"), where a
   lost node would leave the other ranks waiting in an allreduce until NCCL or TCP gives up.
Jobs are found on the shared folder (`<mount>/jobs/<id>/`, the cluster user's, opened without
following links: homefiles.py), the ranks in /proc: the cluster user's processes that OpenMPI
started (OMPI_COMM_WORLD_RANK in their environment) under an ssh session to this node's address
and port (SSH_CONNECTION), which on a local cluster tells one node's ranks from another's on the
same machine.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import signal
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from cfn_chainermn.errors import AgentError, CfnChainermnError
from cfn_chainermn.jobs.folder import JOBS
from cfn_chainermn.node import steps
from cfn_chainermn.node.context import Context
from cfn_chainermn.node.homefiles import HomeFiles
from cfn_chainermn.node.imds import Imds
from cfn_chainermn.node.spot_ranks import Rank, Ranks, Signaller
from cfn_chainermn.node.spot_record import Record

NOTICE_PATH = "spot/instance-action"
LIFECYCLE_PATH = "instance-life-cycle"  # "spot" or "on-demand"
INTERVAL_S = 5.0  # what AWS recommends for the check
KILL_AFTER_S = 20.0  # a rank's grace between SIGTERM and SIGKILL, well inside the 2-minute notice
QUEUE = f"{JOBS}/.queue"  # jobs/sh/queue.sh's folder, under the mount point
_APPEND = os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_ADDRESS = re.compile(r"[0-9A-Za-z][0-9A-Za-z.:_-]*")  # an IPv4/IPv6 address or a host name: a safe file name
_TIME = re.compile(r"[0-9A-Za-z:.+-]+")


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


def gone_text(node_id: str, notice: Notice) -> str:
    """The gone entry's one line: two fields, whatever the metadata's time looked like."""
    return f"{node_id} {notice.time if _TIME.fullmatch(notice.time) else 'unknown'}\n"


def tell_queue(files: HomeFiles, address: str, text: str) -> str:
    """Write <jobs>/.queue/gone.ADDRESS (files: the mount point, owned by the cluster user): .queue
    made 0700 if missing, the entry 0600, a link anywhere on the way refused. The jobs folder is
    the boot's to make (steps.shared_step): one made here while EFS is not mounted would be hidden."""
    if not _ADDRESS.fullmatch(address):
        raise AgentError(f"node address {address!r} cannot name a file in {QUEUE}: the queue is not told")
    with files.folder(JOBS, create=False) as fd:
        if fd is None:
            raise AgentError(f"no {JOBS} folder in {files.home} (the shared folder not mounted?)")
    rel = f"{QUEUE}/gone.{address}"
    files.write(rel, text, 0o600, folder_mode=0o700)
    return f"queue told ({rel}): no waiting job is placed on {address}"


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
    clock: Callable[[], float] = time.time  # when SIGTERM went, kept across restarts: wall time
    record: Record | None = None
    signaller: Signaller | None = None

    def running_jobs(self) -> Iterator[str]:
        """Jobs (folder names) that have not ended and whose hostfile names this node."""
        files = HomeFiles(self.ctx.platform.path(self.ctx.settings.mount_point))
        with files.folder(JOBS, create=False) as fd:
            names = sorted(os.listdir(fd)) if fd is not None else []
        for name in names:
            if name.startswith("."):
                continue
            try:
                hostfile = files.read(f"{JOBS}/{name}/hostfile")
                ended = files.read(f"{JOBS}/{name}/exit_code") is not None
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
        if self.record is None or self.record.notice_time != notice.time:
            self.record = Record.load(s.spot_path(), notice.time)
            done.append(f"Spot interruption notice: {notice.action} at {notice.time}" + (
                f" (an earlier run of the watch began on it: {self.record.words()}; going on from there)"
                if self.record.resumed and self.record.started() else ""))
        rec = self.record
        if not rec.retracted:
            try:
                done.append(steps.retract_ready(self.ctx))
                rec.retracted = True
                self._save(done)
            except CfnChainermnError as exc:  # S3 throttled or down: the rest first, this at the next poll
                done.append(f"readiness not retracted yet ({exc})")
        try:
            entry = pwd.getpwnam(s.user)
        except KeyError:
            done.append(f"user {s.user} does not exist: no queue entry, no ranks to stop")
            entry = None
        mount = self.ctx.platform.path(s.mount_point)
        if entry is not None and not rec.gone:
            try:
                done.append(tell_queue(HomeFiles(mount, (entry.pw_uid, entry.pw_gid)), s.private_ip,
                                       gone_text(s.node_id, notice)))
                rec.gone = True
                self._save(done)
            except (AgentError, OSError) as exc:  # tried again next poll; the ranks are stopped anyway
                done.append(f"queue not told yet: {exc}")
        files = HomeFiles(mount)
        for job in self.running_jobs():
            if job in rec.told:
                continue
            try:
                _append(files, f"{JOBS}/{job}", log_line(s.node_id, s.private_ip, notice, seen))
                rec.told.append(job)  # only once it is written: a failed append is tried again next poll
                done.append(f"job {job} told")
                self._save(done)
            except (AgentError, OSError) as exc:
                done.append(f"job {job}: {exc}")
        if entry is not None:
            try:
                termed, killed = self.stop_ranks(entry.pw_uid)
            except OSError as exc:  # out of descriptors, say: tried again next poll
                termed, killed = [], []
                done.append(f"ranks not stopped yet: {exc}")
            if termed or killed:
                self._save(done)
            if termed:
                done.append(f"SIGTERM to ranks {' '.join(map(str, termed))}")
            if killed:
                done.append(f"SIGKILL to ranks {' '.join(map(str, killed))} (running {KILL_AFTER_S:g} s after SIGTERM)")
        return "; ".join(done)

    def stop_ranks(self, uid: int) -> tuple[list[int], list[int]]:
        """SIGTERM each rank here once; SIGKILL one still running KILL_AFTER_S later, at a later poll
        (a rank whose SIGTERM handler waits inside an allreduce would otherwise hang the job until
        EC2 takes the node)."""
        s, rec = self.ctx.settings, self.record
        assert rec is not None  # tick loads it first
        if self.signaller is None or self.signaller.ranks.uid != uid:
            self.close()
            self.signaller = Signaller(Ranks(self.proc, uid, s.private_ip, s.ssh_port))
        sig = self.signaller
        termed: list[int] = []
        killed: list[int] = []
        now = self.clock()
        for rank in sig.ranks.scan():
            if rank.key not in rec.termed and sig.send(rank, signal.SIGTERM):
                rec.termed[rank.key] = now
                termed.append(rank.pid)
        for key, at in rec.termed.items():
            found = Rank.of_key(key)
            if key in rec.settled or found is None or found.pid in termed or now - at < KILL_AFTER_S:
                continue
            if sig.send(found, signal.SIGKILL):
                killed.append(found.pid)
            rec.settled.append(key)  # killed, or ended by itself: nothing more to send
            sig.forget(found)
        return termed, killed

    def _save(self, done: list[str]) -> None:
        """Record progress; a record that cannot be written costs only repeats after a restart."""
        assert self.record is not None
        try:
            self.record.save(self.ctx.settings.spot_path())
        except OSError as exc:
            done.append(f"progress not recorded ({exc.strerror}): a restarted watch would repeat it")

    def close(self) -> None:
        if self.signaller is not None:
            self.signaller.close()


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
    try:
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
    finally:
        w.close()
