"""Idle and TTL shutdown, counted by the master at every refresh (issue 13 item 2).

The cluster is idle while no job of ours is queued or running, and on no live node an MPI launcher
or daemon runs, a process holds a GPU or anybody is logged in (idle_probe.py looks at the master;
each worker publishes what it sees of itself, idle_marker.py). After `idle.minutes` idle minutes, or
`idle.max_hours` after the stack was created, busy or not, the master applies `idle.action` through
a Shutdown back end (idle_master.py). Logged-in users are warned (wall) once, 5 minutes before. What
the master counts is published for `stack status` (names.IDLE_STATUS), and so is an action that did
not finish (the next tick acts again); one called off (Acting.still_due) lets the count go on.

`judge` is pure and takes the time, so tests compress hours into calls; `tick` joins it to the rest.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from cfn_chainermn.config.sections import IDLE_OFF
from cfn_chainermn.errors import CfnChainermnError
from cfn_chainermn.names import IDLE_STATUS
from cfn_chainermn.node.system import write_atomic

WARN_S = 300.0  # logged-in users hear of the shutdown this long before it
PUBLISH_EVERY_S = 300.0  # an unchanged status is written again after this long (`stack status` shows its age)


@dataclass(frozen=True)
class Limits:
    """The stack's idle settings as the master reads them (its parameters), and its creation time."""

    idle_minutes: int | None = None
    max_hours: int | None = None
    action: str = "delete"
    created: float = 0.0  # epoch seconds

    @classmethod
    def from_parameters(cls, params: Mapping[str, str], created: float) -> Limits:
        """IdleMinutes/MaxHours/IdleAction as CloudFormation returns them; a stack made before these
        parameters existed has none, which means off."""
        def number(name: str) -> int | None:
            value = params.get(name, IDLE_OFF)
            return int(value) if value.isdigit() and int(value) > 0 else None

        return cls(number("IdleMinutes"), number("MaxHours"), params.get("IdleAction", "delete"), created)

    @property
    def enabled(self) -> bool:
        return self.idle_minutes is not None or self.max_hours is not None


@dataclass(frozen=True)
class Activity:
    """What keeps the cluster busy now, each in words ("job 20260102-...", "chainer@pts/0",
    "i-0abc: orted (pid 7)" from a worker's busy marker)."""

    jobs: tuple[str, ...] = ()
    processes: tuple[str, ...] = ()  # MPI launchers and daemons, GPU holders
    sessions: tuple[str, ...] = ()
    nodes: tuple[str, ...] = ()  # what live workers' busy markers say, each "INSTANCE-ID: word"

    @property
    def busy(self) -> bool:
        return bool(self.jobs or self.processes or self.sessions or self.nodes)

    def words(self) -> list[str]:
        return [*self.jobs, *self.processes, *self.sessions, *self.nodes]


@dataclass
class IdleState:
    """Kept between refreshes (the master's idle.json): since when idle, which deadline was warned."""

    idle_since: float | None = None
    warned: float | None = None  # the deadline the warning was for
    warned_at: float | None = None  # when that warning went out: nothing is done sooner than WARN_S after it
    acted: str = ""  # what was done, once done (a deletion is not asked for twice)
    resumed: float | None = None  # when a stopped cluster's master ran again: `stop`'s max_hours count from it
    published: str = ""  # the last status written, less its time
    published_at: float = 0.0
    progress: dict[str, Any] = field(default_factory=dict)  # what an unfinished action recorded (Acting)

    @classmethod
    def load(cls, path: Path) -> IdleState:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return cls()
        fresh = asdict(cls())
        if not isinstance(data, dict) or any(k in data and not _same_kind(data[k], v) for k, v in fresh.items()):
            return cls()  # damaged: counting afresh only delays a shutdown, never hastens one
        return cls(**{k: data[k] for k in fresh if k in data})

    def save(self, path: Path) -> None:
        write_atomic(path, json.dumps(asdict(self), sort_keys=True) + "\n", 0o600)


def _same_kind(value: object, default: object) -> bool:
    if isinstance(default, (str, dict)):
        return isinstance(value, type(default))
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))


@dataclass(frozen=True)
class Verdict:
    """What `judge` found: the deadline (None: no limit reaches), why, and whether to warn or act."""

    idle_since: float | None
    deadline: float | None
    reason: str
    warn: bool
    act: bool
    ttl: bool = False  # the deadline is max_hours' (activity cannot keep the cluster from it)


def judge(limits: Limits, activity: Activity, state: IdleState, now: float) -> Verdict:
    """The earlier of the idle deadline (idle since + minutes) and the TTL (created + hours)."""
    idle_since = None if activity.busy else (state.idle_since if state.idle_since is not None else now)
    deadlines: list[tuple[float, str, bool]] = []  # (when, why, whether it is the TTL)
    if limits.idle_minutes is not None and idle_since is not None:
        deadlines.append((idle_since + limits.idle_minutes * 60.0, f"idle for {count(limits.idle_minutes, 'minute')}",
                          False))
    if limits.max_hours is not None:
        deadlines.append((limits.created + limits.max_hours * 3600.0,
                          f"{count(limits.max_hours, 'hour')} since the stack was created", True))
    if not deadlines:
        return Verdict(idle_since, None, "", False, False)
    deadline, reason, ttl = min(deadlines)
    # never without the warning first, WARN_S before: a deadline that passed while nobody looked (the
    # master stopped overnight, `stack update --max-hours` shorter than the stack's age) is warned now
    warned = state.warned == deadline and state.warned_at is not None
    act = now >= deadline and warned and now - (state.warned_at or now) >= WARN_S
    warn = not warned and deadline - now <= WARN_S
    return Verdict(idle_since, deadline, reason, warn, act, ttl)


def count(n: int, unit: str) -> str:
    return f"{n} {unit}" + ("" if n == 1 else "s")


def status(limits: Limits, activity: Activity, verdict: Verdict, now: float) -> dict[str, object]:
    """The record `stack status` reads: times in epoch seconds, what keeps the cluster busy."""
    return {"time": now, "idle_minutes": limits.idle_minutes, "max_hours": limits.max_hours,
            "action": limits.action, "idle_since": verdict.idle_since, "deadline": verdict.deadline,
            "reason": verdict.reason, "busy": activity.words()}


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
    """Stopped short, the next tick acts again; `quiet`: nothing may be written to the bucket (it is being emptied)."""

    def __init__(self, message: str, *, quiet: bool = False) -> None:
        super().__init__(message)
        self.quiet = quiet


class Shutdown(Protocol):
    """Where the limits come from and what acting means (idle_master.py; a local node's stand-in)."""

    def limits(self) -> Limits:
        """The limits now (a `stack update` may change them at any time)."""

    def act(self, limits: Limits, acting: Acting) -> str:
        """Delete the stack or stop the nodes; what was done, in words. Raises when it did not finish."""

    def call_off(self, progress: dict[str, Any]) -> str:
        """Undo what an unfinished act left (`progress`) once it is no longer due; "" when nothing."""


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
        state.idle_since = None
        undone = _call_off(shutdown, state, limits)
        _publish(hooks, state, {"idle_minutes": None, "max_hours": None, "action": limits.action}, hooks.clock())
        state.save(state_path)
        return "idle shutdown off" + undone
    activity = hooks.probe()
    now = hooks.clock()
    if state.acted and limits.action == "stop":  # a tick after the stop: someone started the master again
        state.acted, state.resumed, state.idle_since, state.warned = "", now, None, None
    limits = _counted(limits, state)
    verdict = judge(limits, activity, state, now)
    state.idle_since = verdict.idle_since
    if verdict.warn and verdict.deadline is not None:
        left = max(1, round((max(verdict.deadline, now + WARN_S) - now) / 60))  # a late warning still gives WARN_S
        hooks.wall(warning(limits.action, verdict, left))
        state.warned, state.warned_at = verdict.deadline, now
    record = status(limits, activity, verdict, now)
    if verdict.act and state.acted:
        line = f"already asked to {limits.action}: {state.acted}"
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


def _counted(limits: Limits, state: IdleState) -> Limits:
    """`stop`'s max_hours count from the master's restart, when it was stopped and started again."""
    if state.resumed is None or limits.action != "stop":
        return limits
    return Limits(limits.idle_minutes, limits.max_hours, limits.action, max(limits.created, state.resumed))


def _act(shutdown: Shutdown, hooks: Hooks, state: IdleState, state_path: Path, limits: Limits, verdict: Verdict,
         record: dict[str, object]) -> str:
    """Act once; a cancellation publishes the count as it is now, a failure is published (unless
    quiet) with the state kept, and re-raised for the refresh to log."""
    again: list[tuple[Limits, Activity, Verdict]] = []

    def still_due() -> str:
        fresh = _counted(shutdown.limits(), state)
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
        state.acted, state.progress, state.idle_since = "", {}, now_verdict.idle_since
        _publish(hooks, state, status(fresh, activity, now_verdict, hooks.clock()), hooks.clock(), force=True)
        return str(exc)
    except CfnChainermnError as exc:
        if not getattr(exc, "quiet", False):
            _publish(hooks, state, {**record, "failed": str(exc)}, hooks.clock(), force=True)
        state.save(state_path)
        raise
    state.progress = {}
    return f"{verdict.reason}: {state.acted}"


def warning(action: str, verdict: Verdict, minutes: int) -> str:
    """The wall text: what happens when and why, and what can keep the cluster from it, which for the
    TTL is only a later limit (activity does not)."""
    doing = "be deleted" if action == "delete" else "be stopped (workers to 0, master stopped; EFS kept)"
    head = f"cfn-chainermn: this cluster will {doing} in about {count(minutes, 'minute')} ({verdict.reason})."
    if verdict.ttl:
        return (f"{head} Jobs and logins do not keep it: `cfn-chainermn stack update STACK --max-hours H` "
                "(a later limit, or off) does.")
    return (f"{head} A job or an ssh login keeps it; `cfn-chainermn stack update STACK --idle-minutes M` "
            "(or off) changes the limit.")


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
