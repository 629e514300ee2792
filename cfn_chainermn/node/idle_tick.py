"""Idle shutdown's look at every refresh of the master (idle.py counts, idle_master.py's Shutdown
acts): count, warn, publish, act, and what carries over between refreshes.

What the master counts is published for `stack status` (names.IDLE_STATUS), and so is an action that
did not finish (tried again later); one called off (Acting.still_due) lets the count go on. An
action that failed is tried again one refresh later, then after twice the last wait each time, up
to an hour (a refusal, after DELETE_FAILED the usual answer, would otherwise be asked for every 30 s
for as long as the master runs); the wait and the failure's words are kept in the state file,
through busy ticks and a call-off too (neither tried what failed again), and start afresh when the
limits change or the action is under way again. A failure the back end gives up on (NotDone.halt:
a deletion that failed again and again) is published and saved, then, the master looked at once
more (a login meanwhile keeps it) and the words walled, the master stops itself (Shutdown.halt);
a tick after that is a master someone started again, which counts afresh.
An action under way that nothing can call off (Shutdown.underway: a stack CloudFormation is
deleting) is followed at every tick, busy or not.
`tick` takes its clock, probes and publishing as Hooks, so tests run a cluster's hours as calls.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from cfn_chainermn.errors import CfnChainermnError
from cfn_chainermn.names import IDLE_STATUS
from cfn_chainermn.node.idle import (
    WARN_S,
    Activity,
    IdleState,
    Limits,
    Verdict,
    counted,
    judge,
    status,
    warning,
)

PUBLISH_EVERY_S = 300.0  # an unchanged status is written again after this long (`stack status` shows its age)
RETRY_FIRST_S = 30.0  # one refresh (aws_platform's refresh timer: OnUnitActiveSec=30)
RETRY_MAX_S = 3600.0


@dataclass
class Acting:
    """What `Shutdown.act` is given besides the limits: why it acts, a second look before the step
    that cannot be undone, and a record that outlives a tick that did not finish."""

    reason: str
    still_due: Callable[[], str]  # limits re-read, activity re-probed: "" when still due, else why not
    progress: dict[str, Any]  # kept in the state file until the action finishes or is called off
    save: Callable[[], None]  # write `progress` down now (before a long wait)
    log: Callable[[str], None]  # a step that is tried again within the same act (the refresh's log)


class Cancelled(CfnChainermnError):
    """The action was called off (still_due said why) and what it had done undone: the count goes on."""


class NotDone(CfnChainermnError):
    """Stopped short; tried again after a wait that doubles (RETRY_FIRST_S to RETRY_MAX_S), as any
    failed act is. `quiet`: nothing may be written to the bucket (it is being emptied), and a deletion
    under way goes on at the next tick. `halt`: no more tries; once its words are published, the
    master stops itself (Shutdown.halt)."""

    def __init__(self, message: str, *, quiet: bool = False, halt: bool = False) -> None:
        super().__init__(message)
        self.quiet, self.halt = quiet, halt


class Shutdown(Protocol):
    """Where the limits come from and what acting means (idle_master.py; a local node's stand-in)."""

    def limits(self) -> Limits:
        """The limits now (a `stack update` may change them at any time)."""

    def act(self, limits: Limits, acting: Acting) -> str:
        """Delete the stack or stop the nodes; what was done, in words. Raises when it did not finish."""

    def call_off(self, progress: dict[str, Any]) -> str:
        """Undo what an unfinished act left (`progress`) once it is no longer due; "" when nothing."""

    def underway(self) -> bool:
        """Whether an action nothing can call off is under way (a stack being deleted), as limits() read it."""

    def halt(self) -> str:
        """Stop the master itself, after a failure that ends the tries (NotDone.halt); in words. Raises
        when it could not."""


@dataclass
class Hooks:
    """The master's ways to look and speak, injected so tests use a fake clock and probes."""

    probe: Callable[[], Activity]
    publish: Callable[[str, bytes], None]  # (key, body) into the key bucket
    wall: Callable[[str], None]
    log: Callable[[str], None]
    clock: Callable[[], float] = field(default=time.time)


def tick(shutdown: Shutdown, hooks: Hooks, state_path: Path) -> str:
    """One look: count, warn, publish, act. Returns the line the refresh logs."""
    state = IdleState.load(state_path)
    limits = shutdown.limits()
    if not limits.enabled:
        state.idle_since, state.retry = None, {}
        undone = _call_off(shutdown, state, limits)
        _publish(hooks, state, {"idle_minutes": None, "max_hours": None, "action": limits.action}, hooks.clock())
        state.save(state_path)
        return "idle shutdown off" + undone
    activity = hooks.probe()
    now = hooks.clock()
    if state.acted and limits.action == "stop":  # a tick after the stop: someone started the master again
        state.acted, state.resumed, state.idle_since, state.warned = "", now, None, None
    if state.halted is not None:  # stopped itself after its tries failed, and started again: counts afresh
        state.halted, state.idle_since, state.warned, state.retry = None, None, None, {}
        _call_off(shutdown, state, limits)
    limits = counted(limits, state)
    verdict = judge(limits, activity, state, now)
    if shutdown.underway():  # followed whatever the count says: a busy tick must not drop it
        verdict, state.retry = dataclasses.replace(verdict, act=True, reason=verdict.reason or "under way"), {}
    state.idle_since = verdict.idle_since
    if verdict.warn and verdict.deadline is not None:
        left = max(1, round((max(verdict.deadline, now + WARN_S) - now) / 60))  # a late warning still gives WARN_S
        hooks.wall(warning(limits.action, verdict, left))
        state.warned, state.warned_at = verdict.deadline, now
    record = status(limits, activity, verdict, now)
    waiting = _waiting(state, limits, now) if verdict.act else ""
    if verdict.act and state.acted:
        line = f"already asked to {limits.action}: {state.acted}"
    elif waiting:  # the last failure's next try is not due yet: said again, not acted on
        _publish(hooks, state, {**record, "acting": True, "failed": waiting}, now)
        line = f"not done: {waiting}"
    elif verdict.act:
        record["acting"] = True
        _publish(hooks, state, record, now, force=True)  # before the bucket is emptied, never after
        line = _act(shutdown, hooks, state, state_path, limits, verdict, record)
    else:
        state.acted = ""
        undone = _call_off(shutdown, state, limits)
        _publish(hooks, state, record, now)
        line = _summary(activity, verdict, now) + undone
    state.save(state_path)
    return line


def _call_off(shutdown: Shutdown, state: IdleState, limits: Limits) -> str:
    """An action that failed half-way (the workers at 0, no DeleteStack) and is no longer due: undone
    now, not left for a next try that a busy cluster never makes. Words for the log line, or ""."""
    if not state.progress:
        return ""
    progress, state.progress = state.progress, {}
    undone = shutdown.call_off(progress)
    return f"; an unfinished {limits.action} called off: {undone}" if undone else ""


def _act(shutdown: Shutdown, hooks: Hooks, state: IdleState, state_path: Path, limits: Limits, verdict: Verdict,
         record: dict[str, object]) -> str:
    """Act once; a cancellation publishes the count as it is now, a failure is published (unless
    quiet) with the state kept, and re-raised for the refresh to log."""
    again: list[tuple[Limits, Activity, Verdict]] = []

    def still_due() -> str:
        fresh = counted(shutdown.limits(), state)
        activity = hooks.probe()
        again.append((fresh, activity, judge(fresh, activity, state, hooks.clock())))
        if fresh != limits:
            return "the limits changed (`stack update`)" if fresh.enabled else "idle shutdown was turned off"
        return "" if again[-1][2].act else f"busy again ({', '.join(activity.words()[:3])})"

    try:
        state.acted = shutdown.act(limits, Acting(verdict.reason, still_due, state.progress,
                                                  lambda: state.save(state_path), hooks.log))
    except Cancelled as exc:
        fresh, activity, now_verdict = again[-1] if again else (limits, Activity(), verdict)
        state.acted, state.progress, state.idle_since = "", {}, now_verdict.idle_since  # the wait kept
        _publish(hooks, state, status(fresh, activity, now_verdict, hooks.clock()), hooks.clock(), force=True)
        return str(exc)
    except CfnChainermnError as exc:
        if getattr(exc, "quiet", False):  # a watch that ran out: followed again at the next tick
            state.save(state_path)
            raise
        unstopped = _halt(shutdown, hooks, state, state_path, record, str(exc)) if getattr(exc, "halt", False) else ""
        if unstopped is None:
            raise NotDone(str(exc)) from exc
        failed = _backed_off(state, limits, unstopped or str(exc), hooks.clock())
        _publish(hooks, state, {**record, "failed": str(failed)}, hooks.clock(), force=True)
        state.save(state_path)
        raise failed from exc
    state.progress, state.retry = {}, {}
    return f"{verdict.reason}: {state.acted}"


def _halt(shutdown: Shutdown, hooks: Hooks, state: IdleState, state_path: Path, record: dict[str, object],
          words: str) -> str | None:
    """The failure's last words published and the state saved; then, the master looked at once more
    (the publish may have taken minutes: whoever logged in meanwhile keeps it), a wall and the master
    stopped (its poweroff ends this process soon after): None. When it does not stop, the words with
    why, tried again later."""
    now = hooks.clock()
    _publish(hooks, state, {**record, "failed": words}, now, force=True)
    state.halted = now
    state.save(state_path)
    try:
        activity = hooks.probe()
        if activity.busy:
            raise NotDone(f"the master keeps running: busy again ({', '.join(activity.words()[:3])})")
        hooks.wall(f"cfn-chainermn: this master powers off now: {words}")
        hooks.log(f"idle: {shutdown.halt()}")
    except CfnChainermnError as exc:
        state.halted = None
        return f"{words}; {exc}" if isinstance(exc, NotDone) else f"{words}; the master did not stop itself: {exc}"
    return None


def _retry_limits(limits: Limits) -> list[object]:
    return [limits.idle_minutes, limits.max_hours, limits.action]  # as JSON keeps it


def _backed_off(state: IdleState, limits: Limits, failed: str, now: float) -> NotDone:
    """The failure with its next try, one refresh after the first failure, then twice the last wait,
    at most RETRY_MAX_S; recorded in the state (a changed limit starts the waits afresh)."""
    same = state.retry.get("limits") == _retry_limits(limits)
    last = state.retry.get("wait") if same else None
    wait = min(max(RETRY_FIRST_S, 2 * last if isinstance(last, (int, float)) else 0.0), RETRY_MAX_S)
    at = now + wait
    words = f"{wait:g} s" if wait < 60 else f"{wait / 60:g} min"
    text = (f"{failed}; the next try at {time.strftime('%Y-%m-%d %H:%M:%SZ', time.gmtime(at))} (in {words}; "
            f"the wait doubles at each failure, up to {RETRY_MAX_S / 60:g} min)")
    state.retry = {"at": at, "wait": wait, "limits": _retry_limits(limits), "failed": text}
    return NotDone(text)


def _waiting(state: IdleState, limits: Limits, now: float) -> str:
    """The last failure's words while its next try is not due (and the limits are those it failed
    under); "" when the action may be tried now."""
    at, failed = state.retry.get("at"), state.retry.get("failed")
    if state.retry.get("limits") != _retry_limits(limits) or not isinstance(at, (int, float)) or now >= at:
        return ""
    return failed if isinstance(failed, str) and failed else "an earlier try failed"


def _summary(activity: Activity, verdict: Verdict, now: float) -> str:
    busy = f"busy ({', '.join(activity.words()[:3])})" if activity.busy else \
        f"idle for {int((now - (verdict.idle_since or now)) // 60)} min"
    due = f"; deadline in {int((verdict.deadline - now) // 60)} min ({verdict.reason})" if verdict.deadline else ""
    return busy + due


def _publish(hooks: Hooks, state: IdleState, record: dict[str, object], now: float, force: bool = False) -> None:
    """Write the status when it changed (its time aside) or has aged; a failure is logged, not raised:
    `stack status` shows a stale time then, and the counting goes on."""
    body = json.dumps({k: v for k, v in record.items() if k != "time"}, sort_keys=True)
    if not force and body == state.published and now - state.published_at < PUBLISH_EVERY_S:
        return
    try:
        hooks.publish(IDLE_STATUS, json.dumps({**record, "time": now}, sort_keys=True).encode())
    except (CfnChainermnError, OSError) as exc:  # the next tick tries again
        hooks.log(f"idle: could not publish {IDLE_STATUS}: {exc}")
        return
    state.published, state.published_at = body, now
