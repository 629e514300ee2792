"""Idle and TTL shutdown's counting (issue 13 item 2): pure, the time passed in, so tests compress
hours into calls.

The cluster is idle while no job of ours is queued or running, and on no live node an MPI launcher
or daemon runs, a process holds a GPU or anybody is logged in (idle_probe.py looks at the master;
each worker publishes what it sees of itself, idle_marker.py). After `idle.minutes` idle minutes, or
`idle.max_hours` after the stack was created, busy or not, the action (`idle.action`) is due; it is
never done without a warning (`warning`, sent with wall) WARN_S before. `judge` says so from the
limits, what keeps the cluster busy and the state kept between refreshes; idle_tick.py runs it at
every refresh, publishes what it counts (`status`) and acts.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cfn_chainermn.config.sections import IDLE_OFF
from cfn_chainermn.node.system import write_atomic

WARN_S = 300.0  # logged-in users hear of the shutdown this long before it


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
    retry: dict[str, Any] = field(default_factory=dict)  # a failure that backs off: its words, when next (idle_tick)
    halted: float | None = None  # when the master stopped itself, its tries over (NotDone.halt)

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


def counted(limits: Limits, state: IdleState) -> Limits:
    """`stop`'s max_hours count from the master's restart, when it was stopped and started again."""
    if state.resumed is None or limits.action != "stop":
        return limits
    return Limits(limits.idle_minutes, limits.max_hours, limits.action, max(limits.created, state.resumed))


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

