"""Idle shutdown's `delete` on AWS, resumable across refreshes (idle_master.py's AwsShutdown runs it).

Deleting leaves no writer to the key bucket, in this order: stop the refresh timer (the master's own
writes); record the worker group's min/max/desired and scale it to 0; wait, at most WORKERS_GONE_S,
until DescribeAutoScalingGroups lists no instance in it (a booting replacement writes its host key
and ready marker, a Spot retraction a delete marker); look again (Acting.still_due: the limits
re-read, the master re-probed), and if the deletion is no longer due, put the group back as it was
and let the timer run; else ask CloudFormation to delete the stack as the ShutdownRole (DeleteStack's
RoleARN). Then, every DELETE_POLL_S for at most DELETE_WATCH_S, empty the key bucket as `stack
delete` does and read the stack: a worker still booting when the wait ran out may write again after
an emptying, so the emptying repeats until the stack is DELETE_COMPLETE (a bucket gone ends only
the emptying: the stack's state, not the bucket's, says the deletion finished). DELETE_FAILED ends
the watch with the first failed resource's reason (DescribeStackEvents); the timer runs again and
DeleteStack is sent again (skipping the group: it may be gone) after a wait that doubles from one
refresh to an hour (idle_tick.py's backoff, as after any failure). A watch that ran out is resumed at the next refresh
whether the cluster is busy or not (AwsShutdown.underway).

The master is a GPU instance that bills by the hour, and after DELETE_FAILED its DeleteStack is
usually refused (CloudFormation deletes MasterIdleDeletePolicy, which nothing depends on, early).
So at the HALT_AFTER-th failure in a row (a DELETE_FAILED the watch saw, or DeleteStack refused
after it: REFUSED; throttling, no answer or expired credentials do not count), still due at a
second look, it stops trying and stops itself (NotDone.halt: idle_tick publishes the words, looks
once more and walls them, then AwsShutdown.halt powers it off, which stops an EBS-backed instance
and needs no permission). What it leaves billing is said in those words; a stopped master cannot retry.

The timer is stopped, not disabled: a master that reboots mid-way gets it back. Every way out but a
finished deletion (a watch that ran out among them) starts it again, outside the SIGTERM-ignoring
block (a child inherits an ignored signal across exec, signal(7), and Python's restore_signals
resets only SIGPIPE, SIGXFZ and SIGXFSZ).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cfn_chainermn.aws import aws_call
from cfn_chainermn.errors import AgentError, CfnChainermnError
from cfn_chainermn.node.idle_tick import Acting, Cancelled, NotDone
from cfn_chainermn.node.system import System
from cfn_chainermn.stack.cfn import StackNotFound, describe, empty_if_there
from cfn_chainermn.stack.watch import EventStream, failure_text, root_cause

if TYPE_CHECKING:
    from mypy_boto3_autoscaling import AutoScalingClient
    from mypy_boto3_cloudformation import CloudFormationClient
    from mypy_boto3_s3 import S3Client

REFRESH_TIMER = "cfn-chainermn-refresh.timer"  # aws_platform.UNIT's timer
HALT_AFTER = 3  # failed deletions in a row (30 s and 1 min apart, the backoff's first waits) before the master stops
WORKERS_GONE_S = 600.0  # the longest the master waits for its workers to terminate before DeleteStack
WORKERS_POLL_S = 15.0
DELETE_WATCH_S = 1800.0  # the longest one refresh empties the bucket and watches the deletion
DELETE_POLL_S = 15.0
SIZES = ("MinSize", "MaxSize", "DesiredCapacity")
# What counts toward HALT_AFTER when DeleteStack is not sent again: CloudFormation refusing it (its API
# Reference, "Common Errors": AccessDeniedException, ValidationError; the query protocol answers
# AccessDenied). Throttling, no answer, expired credentials back off without counting.
REFUSED = frozenset({"AccessDenied", "AccessDeniedException", "ValidationError"})


@dataclass
class Deletion:
    """One stack's deletion as its master runs it; `status` is the stack's as the limits were read."""

    cfn: CloudFormationClient
    s3: S3Client
    asg: AutoScalingClient
    system: System
    stack: str
    stack_id: str
    bucket: str
    role: str
    group: str
    sleep: Callable[[float], None]
    clock: Callable[[], float]
    master: str = ""  # its instance id, for the words when it stops itself ("" when the outputs lack it)

    def run(self, status: str, acting: Acting) -> str:
        """What was done; the timer runs again on every way out but a finished deletion, whatever was raised."""
        self._timer("stop")
        finished = False
        try:
            with _sigterm_exits():  # a `systemctl stop` during the wait still reaches the finally
                line = self._watch(None, acting) if status == "DELETE_IN_PROGRESS" else self._send(status, acting)
            finished = True
            return line
        finally:
            if not finished:
                self._timer("start")

    def _send(self, status: str, acting: Acting) -> str:
        try:  # after DELETE_FAILED the group may be gone and the stack cannot be updated: straight to DeleteStack
            waited = "" if status == "DELETE_FAILED" else self._workers_to_zero(acting)
            aws_call("DeleteStack", lambda: self.cfn.delete_stack(StackName=self.stack_id, RoleARN=self.role))
        except Cancelled:
            raise
        except CfnChainermnError as exc:
            if status == "DELETE_FAILED":
                words = (f"stack {self.stack} not deleted: {exc}; it stays DELETE_FAILED; `cfn-chainermn stack "
                         f"delete {self.stack}` deletes it from your machine")
                if getattr(exc, "code", "") in REFUSED:
                    raise self._failed_again(acting, words) from exc
                raise NotDone(f"{words}; not refused (no answer, throttled or the credentials' own): not counted "
                              "toward the master's stop") from exc
            if acting.progress.get("scaled"):
                kept = (f"worker group {self.group} left at 0 until the next try, or put back by the first refresh "
                        f"that finds the cluster busy ({self._restore_command(acting.progress)}); key bucket untouched")
            else:
                kept = "nothing changed; key bucket untouched"
            raise AgentError(f"stack {self.stack} not deleted: {exc}; {kept}; `cfn-chainermn stack delete "
                             f"{self.stack}` deletes it from your machine") from exc
        return self._watch(waited, acting)

    def _timer(self, verb: str) -> None:
        self.system.run(["systemctl", verb, REFRESH_TIMER], check=False)

    def _workers_to_zero(self, acting: Acting) -> str:
        """Record the group's sizes (once: a retry finds it at 0), scale it to 0, wait, look again."""
        progress = acting.progress
        if "group" not in progress:
            found = aws_call("DescribeAutoScalingGroups", lambda: self.asg.describe_auto_scaling_groups(
                AutoScalingGroupNames=[self.group]))["AutoScalingGroups"]
            sizes: dict[str, Any] = dict(found[0]) if found else {}
            progress["group"] = {k: int(sizes[k]) for k in SIZES} if sizes else {}
            acting.save()
        aws_call("UpdateAutoScalingGroup", lambda: self.asg.update_auto_scaling_group(
            AutoScalingGroupName=self.group, MinSize=0, MaxSize=0, DesiredCapacity=0))
        progress["scaled"] = True
        acting.save()
        left = self._workers_left()
        why = acting.still_due()
        if why:
            raise Cancelled(f"deletion cancelled: {why}; {self.restore(acting.progress)}")
        return f"{left} worker(s) still there after {WORKERS_GONE_S:g} s; " if left else ""

    def _workers_left(self) -> int:
        """Instances still in the group once it has none, or WORKERS_GONE_S have passed."""
        deadline = self.clock() + WORKERS_GONE_S
        while True:
            found = aws_call("DescribeAutoScalingGroups", lambda: self.asg.describe_auto_scaling_groups(
                AutoScalingGroupNames=[self.group]))["AutoScalingGroups"]
            left = sum(len(g.get("Instances", [])) for g in found)
            if not left or self.clock() >= deadline:
                return left
            self.sleep(WORKERS_POLL_S)

    def restore(self, progress: dict[str, Any]) -> str:
        """The group back at the sizes recorded before it went to 0, in words."""
        sizes: dict[str, Any] = progress.get("group") or {}
        if not sizes:
            return f"worker group {self.group} left as it is (its sizes were not recorded)"
        try:
            aws_call("UpdateAutoScalingGroup", lambda: self.asg.update_auto_scaling_group(
                AutoScalingGroupName=self.group, **sizes))
        except CfnChainermnError as exc:
            return f"worker group {self.group} left at 0: {exc}; {self._restore_command(progress)}"
        return f"worker group {self.group} back to min {sizes['MinSize']}, max {sizes['MaxSize']}, " \
               f"desired {sizes['DesiredCapacity']}"

    def _restore_command(self, progress: dict[str, Any]) -> str:
        sizes = progress.get("group") or {}
        size = (f"--min-size {sizes['MinSize']} --max-size {sizes['MaxSize']} --desired-capacity "
                f"{sizes['DesiredCapacity']}") if sizes else "--max-size N --desired-capacity N"
        return f"`aws autoscaling update-auto-scaling-group --auto-scaling-group-name {self.group} {size}` " \
               "brings the workers back"

    def _watch(self, waited: str | None, acting: Acting) -> str:
        """Empty the bucket and read the stack until the stack is gone or failed, or DELETE_WATCH_S
        passed (`waited` None: a deletion under way, resumed). The stack's state alone ends it: a bucket
        gone (CloudFormation deletes it late, or someone did) ends only the emptying, and the deletion
        may still fail after it."""
        deadline, removed, status, reason, gone = self.clock() + DELETE_WATCH_S, 0, "", "", False
        with _sigterm_ignored():
            while True:
                emptied: int | None = 0
                try:
                    emptied = None if gone else empty_if_there(self.s3, self.bucket)
                except CfnChainermnError as exc:  # AwsError (ClientError or BotoCoreError) or a refused key
                    acting.log(f"idle: key bucket {self.bucket} not emptied: {exc}; trying again in "
                               f"{DELETE_POLL_S:g} s")
                removed, gone = removed + (emptied or 0), emptied is None
                status, reason = self._stack(acting)
                if status in ("DELETE_COMPLETE", "DELETE_FAILED") or self.clock() >= deadline:
                    break
                self.sleep(DELETE_POLL_S)
        sent = "the deletion followed" if waited is None else f"DeleteStack sent as {self.role}"
        done = f"{sent}; key bucket {self.bucket} emptied ({removed} versions{', then gone' if gone else ''})"
        if status == "DELETE_COMPLETE":
            scaled = "" if waited is None else f"worker group {self.group} at 0; {waited}"
            return f"{scaled}{done}; stack DELETE_COMPLETE"
        if status == "DELETE_FAILED":
            raise self._failed_again(acting, f"stack {self.stack} DELETE_FAILED: {self._cause(reason)}; `cfn-chainermn "
                                     f"stack delete {self.stack}` deletes it from your machine")
        raise NotDone(f"stack {self.stack} still {status or 'unread'} after {DELETE_WATCH_S:g} s ({done}); the "
                      "next refresh empties the bucket and looks again", quiet=True)

    def _failed_again(self, acting: Acting, words: str) -> NotDone:
        """The failure counted (in the progress the tick keeps); at HALT_AFTER in a row, and still due,
        the one that stops the master, saying what is left and that nothing retries any more."""
        failures = int(acting.progress.get("delete_failed", 0)) + 1
        acting.progress["delete_failed"] = failures
        if failures < HALT_AFTER:
            return NotDone(f"{words}; failed try {failures} of {HALT_AFTER} before the master stops itself")
        why = acting.still_due()
        if why:
            return NotDone(f"{words}; the master keeps running: {why}")
        master = f"the master {self.master}" if self.master else "the master"
        return NotDone(f"{words}; failed {failures} times: {master} stops itself now and tries no more (a stopped "
                       "master cannot retry); still billed until that `stack delete`: what failed to delete, the "
                       "stack's EFS if it made one, the master's EBS volumes", halt=True)

    def _stack(self, acting: Acting) -> tuple[str, str]:
        """The stack's status and its reason; DELETE_COMPLETE once its id no longer resolves, "" unread."""
        try:
            found = aws_call("DescribeStacks", lambda: describe(self.cfn, self.stack_id))
        except StackNotFound:
            return "DELETE_COMPLETE", ""
        except CfnChainermnError as exc:
            acting.log(f"idle: stack {self.stack} not read: {exc}; reading it again in {DELETE_POLL_S:g} s")
            return "", ""
        return str(found.get("StackStatus", "")), str(found.get("StackStatusReason", "") or "")

    def _cause(self, reason: str) -> str:
        """The first resource that failed in this deletion (stack/watch.py's root cause), else the stack's reason."""
        try:
            events = aws_call("DescribeStackEvents", lambda: EventStream(self.cfn, self.stack_id).poll())
        except CfnChainermnError as exc:
            return f"{reason or 'no reason given'} (its events not read: {exc})"
        first = root_cause(events)
        return failure_text(first) if first is not None else reason or "no reason given"


@contextlib.contextmanager
def _sigterm_exits() -> Iterator[None]:
    """SIGTERM raises SystemExit inside (Python's default for it is to die at once, skipping every
    `finally`, so a stop during the workers' wait would leave the refresh timer stopped); a no-op off
    the main thread. `_sigterm_ignored` overrides it while the bucket is emptied."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def leave(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, leave)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _sigterm_ignored() -> Iterator[None]:
    """SIGTERM ignored inside; a no-op off the main thread, where Python cannot set handlers.

    CloudFormation terminates the master while it still empties the bucket (the bucket goes only
    after the master and its role). The refresh service we ship (aws_platform.refresh_timer) sets no
    KillMode, KillSignal, SendSIGKILL or TimeoutStopSec, so systemd stops it as systemd.kill(5) and
    systemd.service(5) give by default (https://man7.org/linux/man-pages/man5/systemd.kill.5.html):
    KillSignal=SIGTERM to the unit's control group (KillMode=control-group), then, as
    SendSIGKILL=yes, SIGKILL to what is left after TimeoutStopSec, which defaults to
    DefaultTimeoutStopSec=90s (systemd-system.conf(5)). Ignoring SIGTERM thus buys the emptying at
    most those 90 s of an orderly shutdown and never keeps the node up longer; SIGKILL ends it. The
    refresh is Type=oneshot, which has no start timeout by default (systemd.service(5),
    TimeoutStartSec), so the watch itself is not cut short while the master lives.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
