"""node/idle.py: when the master counts the cluster idle, when it warns, when it acts, and what it
publishes; hours of a cluster's life as a few calls with a clock the test sets (no sleeps)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from cfn_chainermn.errors import AwsError
from cfn_chainermn.names import IDLE_STATUS
from cfn_chainermn.node.idle import WARN_S, Activity, Hooks, IdleState, Limits, judge, tick

T0 = 1_767_000_000.0  # the stack's creation
IDLE = Activity()
JOB = Activity(jobs=("job 20260102-a (running)",))
LOGIN = Activity(sessions=("chainer@pts/0",))


def test_limits_from_parameters_off_zero_or_missing_mean_no_limit() -> None:
    assert Limits.from_parameters({"IdleMinutes": "30", "MaxHours": "off", "IdleAction": "stop"}, T0) == \
        Limits(30, None, "stop", T0)
    assert not Limits.from_parameters({}, T0).enabled  # a stack from before these parameters
    assert not Limits.from_parameters({"IdleMinutes": "0", "MaxHours": "-1"}, T0).enabled


def test_idle_deadline_counts_from_the_first_idle_look_and_busy_resets_it() -> None:
    limits, state = Limits(idle_minutes=30, created=T0), IdleState()
    v = judge(limits, IDLE, state, T0 + 100)
    assert (v.idle_since, v.deadline, v.act) == (T0 + 100, T0 + 100 + 1800, False)
    state.idle_since = v.idle_since
    unwarned = judge(limits, IDLE, state, T0 + 1900)
    assert (unwarned.warn, unwarned.act) == (True, False)  # never without the warning first
    state.warned, state.warned_at = T0 + 1900, T0 + 1900 - WARN_S
    assert judge(limits, IDLE, state, T0 + 1899).act is False
    assert judge(limits, IDLE, state, T0 + 1900).act is True
    busy = judge(limits, JOB, state, T0 + 1900)  # a job started: no idle deadline at all
    assert (busy.idle_since, busy.deadline, busy.act) == (None, None, False)
    assert judge(limits, LOGIN, state, T0 + 1900).deadline is None


def test_max_hours_act_even_while_busy_and_the_earlier_deadline_wins() -> None:
    limits = Limits(idle_minutes=60, max_hours=2, created=T0)
    v = judge(limits, JOB, IdleState(warned=T0 + 7200, warned_at=T0 + 7200 - WARN_S), T0 + 7200)
    assert v.act and v.reason == "2 hours since the stack was created"
    early = judge(limits, IDLE, IdleState(idle_since=T0 + 600), T0 + 900)
    assert early.deadline == T0 + 600 + 3600 and early.reason == "idle for 60 minutes"
    late = judge(limits, IDLE, IdleState(idle_since=T0 + 5000), T0 + 5000)
    assert late.deadline == T0 + 7200 and late.reason == "2 hours since the stack was created"


def test_the_warning_comes_once_in_the_last_five_minutes() -> None:
    limits = Limits(max_hours=1, created=T0)
    deadline = T0 + 3600
    assert not judge(limits, LOGIN, IdleState(), deadline - WARN_S - 1).warn
    assert judge(limits, LOGIN, IdleState(), deadline - WARN_S).warn
    assert not judge(limits, LOGIN, IdleState(warned=deadline, warned_at=deadline - WARN_S), deadline - 60).warn
    late = judge(limits, LOGIN, IdleState(), deadline + 3600)  # passed while nobody looked: warned first
    assert late.warn and not late.act


@dataclass
class Cluster:
    """A master's surroundings: what the probe sees, what it published, warned and did."""

    limits: Limits
    activity: Activity = IDLE
    now: float = T0
    published: list[dict[str, object]] = field(default_factory=list)
    walls: list[str] = field(default_factory=list)
    logs: list[str] = field(default_factory=list)
    acts: list[str] = field(default_factory=list)
    publish_fails: bool = False

    def limits_now(self) -> Limits:
        return self.limits

    def act(self, limits: Limits, reason: str) -> str:
        self.acts.append(f"{limits.action}: {reason}")
        return f"{limits.action} asked"

    def publish(self, key: str, body: bytes) -> None:
        assert key == IDLE_STATUS
        if self.publish_fails:
            raise AwsError("PutObject: AccessDenied", code="AccessDenied")
        self.published.append(json.loads(body))

    def hooks(self) -> Hooks:
        return Hooks(probe=lambda: self.activity, publish=self.publish, wall=self.walls.append,
                     log=self.logs.append, clock=lambda: self.now)


class _Shutdown:
    def __init__(self, c: Cluster) -> None:
        self.c = c

    def limits(self) -> Limits:
        return self.c.limits_now()

    def act(self, limits: Limits, reason: str) -> str:
        return self.c.act(limits, reason)


def _run(c: Cluster, path: Path, minutes: list[float]) -> list[str]:
    """One tick at each minute after T0 (the refresh timer's looks, compressed)."""
    lines = []
    for m in minutes:
        c.now = T0 + m * 60
        lines.append(tick(_Shutdown(c), c.hooks(), path))
    return lines


def test_a_cluster_left_alone_is_deleted_once_after_its_idle_minutes(tmp_path: Path) -> None:
    c = Cluster(Limits(idle_minutes=30, created=T0))
    state = tmp_path / "idle.json"
    _run(c, state, [0, 10])
    c.activity = JOB  # a job from minute 12 to 20: the count starts again after it
    _run(c, state, [12, 20])
    c.activity = IDLE
    lines = _run(c, state, [21, 45, 46, 50])
    assert c.acts == [] and lines[-1] == "idle for 29 min; deadline in 1 min (idle for 30 minutes)"
    lines = _run(c, state, [51, 51.5, 60])  # 30 idle minutes after minute 21
    assert c.acts == ["delete: idle for 30 minutes"]  # once, though the timer looks again
    assert lines[-1] == "already asked to delete: delete asked"
    assert c.walls and "be deleted in about" in c.walls[0] and len(c.walls) == 1
    acting = [p for p in c.published if p.get("acting")]
    assert len(acting) == 1 and acting[0]["deadline"] == T0 + 21 * 60 + 1800


def test_stop_counts_max_hours_again_from_the_masters_restart(tmp_path: Path) -> None:
    c = Cluster(Limits(max_hours=2, action="stop", created=T0), activity=JOB)
    state = tmp_path / "idle.json"
    _run(c, state, [0, 115, 120])
    assert c.acts == ["stop: 2 hours since the stack was created"]
    _run(c, state, [600, 601])  # someone started the master again hours later: not stopped at once
    assert len(c.acts) == 1
    _run(c, state, [600 + 115, 600 + 120])
    assert len(c.acts) == 2


def test_a_deadline_passed_while_nobody_looked_is_warned_five_minutes_before_anything_is_done(
        tmp_path: Path) -> None:
    """The master stopped overnight (or `stack update --max-hours` shorter than the stack's age):
    its first look after the gap warns logged-in users; it acts only WARN_S later, if still idle."""
    c = Cluster(Limits(idle_minutes=60, created=T0))
    state = tmp_path / "idle.json"
    _run(c, state, [0, 10])
    _run(c, state, [600])  # the next look, hours later: the deadline has long passed
    assert c.acts == [] and len(c.walls) == 1 and "be deleted in about" in c.walls[0]
    _run(c, state, [602])
    assert c.acts == []
    _run(c, state, [605])
    assert c.acts == ["delete: idle for 60 minutes"]


def test_status_is_published_when_it_changes_or_ages_and_a_failed_put_does_not_stop_the_count(
        tmp_path: Path) -> None:
    c = Cluster(Limits(idle_minutes=60, created=T0), activity=JOB)
    state = tmp_path / "idle.json"
    _run(c, state, [0, 1, 2])
    assert len(c.published) == 1 and c.published[0]["busy"] == ["job 20260102-a (running)"]
    _run(c, state, [7])  # unchanged but five minutes old
    assert len(c.published) == 2
    c.activity = IDLE
    _run(c, state, [8])
    assert c.published[-1]["idle_since"] == T0 + 8 * 60 and c.published[-1]["deadline"] == T0 + 68 * 60
    c.publish_fails = True
    line = _run(c, state, [14])[0]  # five minutes on: due again, and refused
    assert line.startswith("idle for 6 min") and any("could not publish" in m for m in c.logs)
    assert IdleState.load(state).idle_since == T0 + 8 * 60


def test_off_publishes_that_it_is_off_and_forgets_the_idle_time(tmp_path: Path) -> None:
    c = Cluster(Limits(idle_minutes=5, created=T0))
    state = tmp_path / "idle.json"
    _run(c, state, [0, 3])
    c.limits = Limits(created=T0)  # `stack update --idle-minutes off`
    assert _run(c, state, [4, 10]) == ["idle shutdown off", "idle shutdown off"]
    assert c.acts == [] and c.published[-1]["idle_minutes"] is None
    assert IdleState.load(state).idle_since is None


@pytest.mark.parametrize("text", ["", "{", '{"idle_since": "x", "bogus": 1}'])
def test_a_damaged_state_file_starts_the_count_afresh(tmp_path: Path, text: str) -> None:
    (tmp_path / "idle.json").write_text(text)
    c = Cluster(Limits(idle_minutes=30, created=T0))
    _run(c, tmp_path / "idle.json", [5])
    assert c.acts == []
