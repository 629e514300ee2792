"""Spot that fails soft: what a node does when EC2 says it will take the node back.

EC2 posts a Spot interruption notice two minutes ahead in the instance metadata
(`meta-data/spot/instance-action`: `{"action": "terminate", "time": "2026-...Z"}`, 404 while
there is none) and asks that it be checked every 5 seconds (AWS, "Spot Instance interruption
notices", docs.aws.amazon.com/AWSEC2/latest/UserGuide/spot-instance-termination-notices.html).
The 30 s refresh is too slow for that, so a watch of its own polls it (`node spot-watch`: a
systemd service on a Spot instance, aws_platform.py; run by hand or by a test on a local node).

On a notice (each step once per notice, recorded in spot_record.py's file so that a watch
restarted mid-notice goes on instead of repeating itself), in this order, each step on its own:
an error in one (S3 down, EIO or a planted link on the shared folder, the watch out of
descriptors) is reported in the agent log and the step tried again at the next poll, and never
keeps the steps after it from running:
1. the node's ready marker is deleted (steps.retract_ready), so `job submit`, which reads
   readiness from the bucket, places no new job on it, and every hostfile drops it at the next
   refresh. It runs in a thread of its own, started first and taken in last (spot_retract.py):
   a slow S3 must not spend the 2-minute notice before the first SIGTERM;
2. `<jobs>/.queue/gone.<ADDRESS>` is written for the master's queue (spot_jobs.tell_queue), so
   that no waiting job is placed on the node when the ranks' end frees it;
3. each running job that holds the node (spot_jobs.py: from the queue's book) gets its line,
   naming the node and the time, in `spot.ADDRESS` in its folder, which cmd.sh adds to the job's
   log when mpiexec returns (the log's one writer: NFS appends from two clients race).
   Steps 2 and 3 touch the shared folder (EFS, hard-mounted: a call there can wait for as long as
   the server does not answer), so they run in a thread of their own (spot_shared.py) that the
   watch waits for SHARED_WAIT_S at most before step 4: written before the signals when EFS
   answers (cmd.sh reads the line at the job's end), and never holding the signals longer;
4. the ranks on this node get SIGTERM, then SIGKILL if still running KILL_AFTER_S later, at a
   later poll (spot_ranks.py: through pidfds, never a reused pid). They are the cluster user's
   processes that OpenMPI started (OMPI_COMM_WORLD_RANK in their environment) under an ssh
   session to this node's address and port (SSH_CONNECTION, which on a local cluster tells one
   node's ranks from another's on the same machine), or, when a process's environment does not
   answer (a rank held on the hung shared folder), whose parent is this node's OpenMPI daemon
   (spot_ranks.py), of whatever job: the node goes, so every
   job with a rank here fails, and the queue gives a node to one job at a time anyway. OpenMPI's
   mpiexec then ends the whole job at once ("process rank N ... exited on signal 15"), where a
   lost node would leave the other ranks waiting in an allreduce until NCCL or TCP gives up.
Steps 3 and 4 repeat at every poll while the notice stands (a job may have been placed a moment
before the queue was told).
"""

from __future__ import annotations

import json
import pwd
import re
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cfn_chainermn.errors import CfnChainermnError
from cfn_chainermn.node import spot_jobs, spot_shared
from cfn_chainermn.node.context import Context
from cfn_chainermn.node.homefiles import HomeFiles
from cfn_chainermn.node.imds import Imds
from cfn_chainermn.node.spot_attempt import words
from cfn_chainermn.node.spot_ranks import Rank, Ranks, Signaller
from cfn_chainermn.node.spot_record import Record
from cfn_chainermn.node.spot_retract import Retraction
from cfn_chainermn.node.spot_shared import Shared, Todo, Told

NOTICE_PATH = "spot/instance-action"
LIFECYCLE_PATH = "instance-life-cycle"  # "spot" or "on-demand"
INTERVAL_S = 5.0  # what AWS recommends for the check
KILL_AFTER_S = 20.0  # a rank's grace between SIGTERM and SIGKILL, well inside the 2-minute notice
_ACTION = re.compile(r"[a-z][a-z-]{0,31}")  # "terminate", "stop", "hibernate"


@dataclass(frozen=True)
class Notice:
    """What the metadata says EC2 will do to the instance, and when (UTC, as EC2 gives it), both
    cleaned: they go into users' logs and files."""

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
        return Notice("interrupt", spot_jobs.UNKNOWN_TIME)
    action, at = str(data.get("action") or ""), str(data.get("time") or "")
    return Notice(action if _ACTION.fullmatch(action) else "interrupt", spot_jobs.clean_time(at))


def record_key(notice: Notice, boot_id: str) -> str:
    """What a record is kept under: the notice's time, or, when the metadata gave none, this
    boot's id (a restarted watch goes on; a later notice after a stop and start begins afresh)."""
    return notice.time if notice.time != spot_jobs.UNKNOWN_TIME else f"unknown time, boot {boot_id or '?'}"


@dataclass
class Watch:
    """One node's watch: `poll` returns the metadata's text for NOTICE_PATH ("" while none)."""

    ctx: Context
    poll: Callable[[], str]
    proc: Path = Path("/proc")
    clock: Callable[[], float] = time.time  # when SIGTERM went, kept across restarts: wall time
    record: Record | None = None
    signaller: Signaller | None = None
    retraction: Retraction | None = field(default=None, repr=False)
    shared: Shared = field(default_factory=Shared, repr=False)

    def tick(self) -> str:
        """One poll; what was done, in words ("" when there is no notice)."""
        notice = parse_notice(self.poll())
        if notice is None:
            return ""
        s, done = self.ctx.settings, []
        seen = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        boot = self._boot_id()
        key = record_key(notice, boot)
        if self.record is None or self.record.notice_time != key:
            self.record = Record.load(s.spot_path(), key, boot)
            done.append(f"Spot interruption notice: {notice.action} at {notice.time}" + (
                f" (an earlier run of the watch began on it: {self.record.words()}; going on from there)"
                if self.record.resumed and self.record.started() else ""))
        rec = self.record
        if not rec.retracted:
            self.retraction = self.retraction or Retraction(self.ctx)
            self.retraction.start()
        try:
            entry: pwd.struct_passwd | None = pwd.getpwnam(s.user)
        except KeyError:
            done.append(f"user {s.user} does not exist: no queue entry, job lines or ranks to stop")
            entry = None
        if entry is not None:  # the shared folder's files are the cluster user's, who runs the queue and cmd.sh
            files = HomeFiles(self.ctx.platform.path(s.mount_point), (entry.pw_uid, entry.pw_gid))
            line = spot_jobs.log_line(s.node_id, s.private_ip, notice.action, notice.time, seen)
            gone = None if rec.gone else spot_jobs.gone_text(s.node_id, notice.time)
            self._shared(Todo(key, files, s.private_ip, gone, line, frozenset(rec.told)), done)
            self._stop_ranks(entry.pw_uid, done)
        self._retracted(Retraction.POLL_WAIT_S, done)
        return "; ".join(done)

    def _shared(self, todo: Todo, done: list[str]) -> None:
        """Steps 2 and 3 (spot_shared.py), waited for SHARED_WAIT_S at most; what they did, recorded."""
        told = self.shared.run(todo, spot_shared.SHARED_WAIT_S)
        if isinstance(told, str):
            done.append(told)
        else:
            self._took(told, done)

    def _took(self, told: Told, done: list[str]) -> None:
        """A shared-folder run's outcome, said, and recorded if it was for the notice recorded now."""
        done.extend(told.words)
        rec = self.record
        if rec is None or told.notice != rec.notice_time:  # an earlier notice's: this one's steps still to do
            return
        if told.gone or told.jobs:
            rec.gone = rec.gone or told.gone
            rec.told.extend(j for j in told.jobs if j not in rec.told)
            self._save(done)

    def _stop_ranks(self, uid: int, done: list[str]) -> None:
        try:
            termed, killed, errors = self.stop_ranks(uid)
        except OSError as exc:  # /proc not readable now (out of descriptors, say)
            termed, killed, errors = [], [], [f"ranks not looked for yet ({words(exc)}); tried again at the next poll"]
        if termed or killed:
            self._save(done)
        if termed:
            done.append(f"SIGTERM to ranks {' '.join(map(str, termed))}")
        if killed:
            done.append(f"SIGKILL to ranks {' '.join(map(str, killed))} (running {KILL_AFTER_S:g} s after SIGTERM)")
        done.extend(errors)

    def stop_ranks(self, uid: int) -> tuple[list[int], list[int], list[str]]:
        """SIGTERM each rank here once; SIGKILL one still running KILL_AFTER_S later, at a later poll
        (a rank whose SIGTERM handler waits inside an allreduce would otherwise hang the job until
        EC2 takes the node). A rank that cannot be signalled now is named and tried next poll."""
        s, rec = self.ctx.settings, self.record
        assert rec is not None  # tick loads it first
        if self.signaller is None or self.signaller.ranks.uid != uid:
            self.close_signaller()
            self.signaller = Signaller(Ranks(self.proc, uid, s.private_ip, s.ssh_port))
        sig = self.signaller
        termed: list[int] = []
        killed: list[int] = []
        errors: list[str] = []
        now = self.clock()
        ranks, unread = sig.ranks.find()
        errors.extend(f"process {pid} not looked at yet ({why}); tried again at the next poll"
                      for pid, why in unread.items())
        for rank in ranks:
            try:
                if rank.key not in rec.termed and sig.send(rank, signal.SIGTERM):
                    rec.termed[rank.key] = now
                    termed.append(rank.pid)
            except OSError as exc:
                errors.append(f"rank {rank.pid} not sent SIGTERM yet ({words(exc)}); tried again at the next poll")
        for key, at in rec.termed.items():
            found = Rank.of_key(key)
            if key in rec.settled or found is None or found.pid in termed or now - at < KILL_AFTER_S:
                continue
            try:
                if sig.send(found, signal.SIGKILL):
                    killed.append(found.pid)
            except OSError as exc:
                errors.append(f"rank {found.pid} not sent SIGKILL yet ({words(exc)}); tried again at the next poll")
                continue
            rec.settled.append(key)  # killed, or ended by itself: nothing more to send
            sig.forget(found)
        return termed, killed, errors

    def _retracted(self, wait: float, done: list[str]) -> None:
        """Take in the retraction's outcome if it has one within `wait` s."""
        outcome = self.retraction.result(wait) if self.retraction is not None else None
        if outcome is None:
            return
        ok, words = outcome
        done.append(words)
        if ok and self.record is not None:
            self.record.retracted = True
            self._save(done)

    def _boot_id(self) -> str:
        try:
            return (self.proc / "sys/kernel/random/boot_id").read_text().strip()
        except OSError:
            return ""

    def _save(self, done: list[str]) -> None:
        """Record progress; a record that cannot be written costs only repeats after a restart."""
        assert self.record is not None
        try:
            self.record.save(self.ctx.settings.spot_path())
        except OSError as exc:
            done.append(f"progress not recorded ({exc.strerror}): a restarted watch would repeat it")

    def close_signaller(self) -> None:
        if self.signaller is not None:
            self.signaller.close()

    def close(self) -> str:
        """Let go of the pidfds; what a retraction still running came to (CLOSE_WAIT_S at most)."""
        self.close_signaller()
        done: list[str] = []
        left = self.shared.close()
        if isinstance(left, Told):
            self._took(left, done)
        elif left:
            done.append(left)
        self._retracted(Retraction.CLOSE_WAIT_S, done)
        return "; ".join(done)


def imds_poll(url: str, wait: float = 2.0) -> Callable[[], str]:
    """The notice's text from IMDSv2 at `url` ("" on 404), a fresh token each poll (one never
    expires under a watch that runs for days), retried for `wait` seconds at most."""
    return lambda: Imds(url, wait=wait).get(NOTICE_PATH, missing_ok=True)


def watch(ctx: Context, poll: Callable[[], str], *, interval: float = INTERVAL_S, ticks: int | None = None) -> None:
    """Poll every `interval` seconds (forever, or `ticks` times); a failed poll is logged and the
    next one tried, whatever failed, since a watch that dies misses the one notice that matters."""
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
            except Exception as exc:  # a bug, or an error no step expected: the next poll still comes
                ctx.log.error(f"spot watch: unexpected {type(exc).__name__}: {exc}")
            else:
                if detail:
                    ctx.log.info(f"spot watch: {detail}")
            if ticks is None or count < ticks:
                time.sleep(interval)
    finally:
        last = w.close()
        if last:
            ctx.log.info(f"spot watch: {last}")
