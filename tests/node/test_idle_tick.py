"""node/idle_tick.py: the master's look at each refresh: it counts, warns once, publishes what it
counts, acts once when due, keeps what an unfinished action recorded and tries again, and calls off
what a half-done action left once it is no longer due; hours of a cluster's life as a few calls with
a clock the test sets (no sleeps)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from cfn_chainermn.errors import AgentError, AwsError
from cfn_chainermn.names import IDLE_STATUS
from cfn_chainermn.node.idle import Activity, IdleState, Limits
from cfn_chainermn.node.idle_tick import RETRY_FIRST_S, RETRY_MAX_S, Acting, Cancelled, Hooks, NotDone, tick

T0 = 1_767_000_000.0  # the stack's creation
IDLE = Activity()
JOB = Activity(jobs=("job 20260102-a (running)",))
LOGIN = Activity(sessions=("chainer@pts/0",))


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
    outcomes: list[Exception] = field(default_factory=list)  # what the next acts raise, in turn
    probes: list[Activity] = field(default_factory=list)  # what the next looks see, before `activity`
    later: Limits | None = None  # the limits a second look reads (a `stack update` meanwhile)
    looked: int = 0
    state: Path = Path("/nonexistent")  # the state file the ticks use (_run sets it)
    called_off: list[dict[str, Any]] = field(default_factory=list)  # the progress of each undone action
    deleting: bool = False  # what Shutdown.underway says: a deletion that nothing calls off runs
    halts: list[tuple[object, float | None, str]] = field(default_factory=list)  # at each halt: the last failure
    # published, the `halted` the state file holds then and the last wall (all out before the master goes)
    halt_fails: bool = False

    def limits_now(self) -> Limits:
        self.looked += 1
        return self.later if self.later is not None and self.looked > 1 else self.limits

    def probe(self) -> Activity:
        return self.probes.pop(0) if self.probes else self.activity

    def act(self, limits: Limits, acting: Acting) -> str:
        self.acts.append(f"{limits.action}: {acting.reason}")
        if self.outcomes:
            acting.progress["tries"] = acting.progress.get("tries", 0) + 1
            outcome = self.outcomes.pop(0)
            if isinstance(outcome, Cancelled):
                raise Cancelled(f"{outcome}: {acting.still_due()}")
            raise outcome
        return f"{limits.action} asked"

    def publish(self, key: str, body: bytes) -> None:
        assert key == IDLE_STATUS
        if self.publish_fails:
            raise AwsError("PutObject: AccessDenied", code="AccessDenied")
        self.published.append(json.loads(body))

    def hooks(self) -> Hooks:
        return Hooks(probe=self.probe, publish=self.publish, wall=self.walls.append,
                     log=self.logs.append, clock=lambda: self.now)


class _Shutdown:
    def __init__(self, c: Cluster) -> None:
        self.c = c

    def limits(self) -> Limits:
        return self.c.limits_now()

    def act(self, limits: Limits, acting: Acting) -> str:
        return self.c.act(limits, acting)

    def call_off(self, progress: dict[str, Any]) -> str:
        self.c.called_off.append(dict(progress))
        return "worker group back"

    def underway(self) -> bool:
        return self.c.deleting

    def halt(self) -> str:
        self.c.halts.append((self.c.published[-1].get("failed"), IdleState.load(self.c.state).halted,
                             self.c.walls[-1]))
        if self.c.halt_fails:
            raise AgentError("`systemctl poweroff` exited 1: Access denied")
        return "the master is powering off"


def _run(c: Cluster, path: Path, minutes: list[float]) -> list[str]:
    """One tick at each minute after T0 (the refresh timer's looks, compressed)."""
    lines = []
    for m in minutes:
        c.now, c.looked, c.state = T0 + m * 60, 0, path
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


def _due(c: Cluster, state: Path) -> None:
    """Idle from T0 with a 30-minute limit: warned at minute 25, due at 30."""
    c.limits = Limits(idle_minutes=30, created=T0)
    _run(c, state, [0, 25])
    assert len(c.walls) == 1 and c.acts == []


def test_an_action_that_did_not_finish_is_published_kept_and_tried_again_a_refresh_later(tmp_path: Path) -> None:
    c = Cluster(Limits(), outcomes=[NotDone("stack demo DELETE_FAILED: KeyBucket ...")])
    state = tmp_path / "idle.json"
    _due(c, state)
    with pytest.raises(NotDone, match="DELETE_FAILED"):
        _run(c, state, [30])
    assert c.published[-1]["failed"].startswith("stack demo DELETE_FAILED: KeyBucket ...; the next try at ")
    assert c.published[-1]["acting"]
    assert IdleState.load(state).progress == {"tries": 1} and IdleState.load(state).acted == ""
    assert _run(c, state, [30.5]) == ["idle for 30 minutes: delete asked"]  # tried again, and done
    assert len(c.acts) == 2 and IdleState.load(state).progress == {}
    assert _run(c, state, [31]) == ["already asked to delete: delete asked"] and len(c.acts) == 2


def test_a_quiet_failure_writes_nothing_to_the_bucket_being_emptied(tmp_path: Path) -> None:
    c = Cluster(Limits(), outcomes=[NotDone("still DELETE_IN_PROGRESS", quiet=True)])
    state = tmp_path / "idle.json"
    _due(c, state)
    with pytest.raises(NotDone):
        _run(c, state, [30])
    assert not any("failed" in p for p in c.published)


def test_a_cancelled_action_publishes_the_count_as_it_is_now_and_the_count_goes_on(tmp_path: Path) -> None:
    """The back end's second look (after waiting for the workers) found a login: nothing is acted,
    the new activity is published, and acting needs a new idle period and a new warning."""
    c = Cluster(Limits(), outcomes=[Cancelled("deletion cancelled")])
    state = tmp_path / "idle.json"
    _due(c, state)
    c.probes = [IDLE, LOGIN]  # the tick's look, then the second look
    assert _run(c, state, [30]) == ["deletion cancelled: busy again (chainer@pts/0)"]
    assert c.published[-1]["busy"] == ["chainer@pts/0"] and not c.published[-1].get("acting")
    assert IdleState.load(state).idle_since is None and IdleState.load(state).acted == ""
    c.activity = IDLE
    _run(c, state, [31, 50, 56, 60])  # idle again from 31: warned at 56, nothing before 61
    assert len(c.acts) == 1 and len(c.walls) == 2
    _run(c, state, [61])
    assert len(c.acts) == 2


def test_limits_turned_off_or_changed_while_acting_cancel_it(tmp_path: Path) -> None:
    for later, why in ((Limits(created=T0), "idle shutdown was turned off"),
                       (Limits(idle_minutes=90, created=T0), "the limits changed (`stack update`)")):
        c = Cluster(Limits(), outcomes=[Cancelled("deletion cancelled")])
        state = tmp_path / f"{why[:4]}.json"
        _due(c, state)
        c.later = later
        assert _run(c, state, [30]) == [f"deletion cancelled: {why}"]
        assert c.published[-1]["idle_minutes"] == later.idle_minutes and not c.published[-1].get("acting")


def test_an_unfinished_action_is_called_off_when_the_cluster_is_busy_again_or_the_limit_is_off(
        tmp_path: Path) -> None:
    """The workers went to 0 and DeleteStack was refused; then somebody logs in: the next try never
    comes, so that tick puts back what the action left (once), instead of leaving the workers at 0."""
    c = Cluster(Limits(), outcomes=[AgentError("stack demo not deleted: AccessDenied")])
    state = tmp_path / "idle.json"
    _due(c, state)
    with pytest.raises(NotDone, match=r"^stack demo not deleted: AccessDenied; the next try at "):
        _run(c, state, [30])
    assert IdleState.load(state).progress == {"tries": 1}
    c.activity = LOGIN
    assert _run(c, state, [31]) == ["busy (chainer@pts/0); an unfinished delete called off: worker group back"]
    assert c.called_off == [{"tries": 1}] and IdleState.load(state).progress == {}
    assert _run(c, state, [32]) == ["busy (chainer@pts/0)"] and len(c.called_off) == 1
    off = Cluster(Limits(), outcomes=[AgentError("stack demo not deleted: Throttling")])
    state = tmp_path / "off.json"
    _due(off, state)
    with pytest.raises(NotDone, match="Throttling; the next try at "):
        _run(off, state, [30])
    off.limits = off.later = Limits(created=T0)  # `stack update --idle-minutes off`
    assert _run(off, state, [31]) == ["idle shutdown off; an unfinished delete called off: worker group back"]
    assert off.called_off == [{"tries": 1}]


def _failing(c: Cluster, state: Path, minute: float) -> str:
    with pytest.raises(NotDone, match="; the next try at ") as failed:
        _run(c, state, [minute])
    return str(failed.value)


def test_a_failure_that_backs_off_is_tried_again_after_a_wait_that_doubles_up_to_an_hour(tmp_path: Path) -> None:
    """After DELETE_FAILED a retry is usually refused: the first one a refresh later, then after 1,
    2, 4 ... minutes, at most an hour; the ticks between act on nothing and say the last failure
    and when the next try is, which `stack status` shows."""
    failures = 10
    c = Cluster(Limits(), outcomes=[NotDone("stack demo DELETE_FAILED: KeyBucket ...; `cfn-chainermn stack delete "
                                            "demo` deletes it from your machine")] * failures)
    state = tmp_path / "idle.json"
    _due(c, state)
    minute, waits = 30.0, []
    first = _failing(c, state, minute)
    assert first.startswith("stack demo DELETE_FAILED: KeyBucket ...; `cfn-chainermn stack delete demo` deletes it")
    assert first.endswith("; the next try at 2025-12-29 09:50:30Z (in 30 s; the wait doubles at each failure, up to "
                          "60 min)")
    assert c.published[-1]["failed"] == first
    while len(c.acts) < failures:
        wait = IdleState.load(state).retry["wait"]
        waits.append(wait)
        between = _run(c, state, [minute + wait / 120])  # halfway: nothing is tried
        assert between == [f"not done: {IdleState.load(state).retry['failed']}"] and len(c.acts) == len(waits)
        minute += wait / 60
        _failing(c, state, minute)
    assert waits == [RETRY_FIRST_S * 2 ** n for n in range(7)] + [RETRY_MAX_S] * 2
    assert c.published[-1]["acting"] and "in 60 min" in str(c.published[-1]["failed"])


def test_the_wait_starts_afresh_when_the_limits_change_and_is_kept_through_a_busy_tick(tmp_path: Path) -> None:
    c = Cluster(Limits(), outcomes=[NotDone("DELETE_FAILED")] * 3)
    state = tmp_path / "idle.json"
    _due(c, state)
    _failing(c, state, 30)
    _failing(c, state, 30.5)
    assert IdleState.load(state).retry["wait"] == 2 * RETRY_FIRST_S
    c.activity = LOGIN  # a busy tick forgets the idle count, not the wait
    assert _run(c, state, [31])[0].startswith("busy (chainer@pts/0)")
    assert IdleState.load(state).retry["wait"] == 2 * RETRY_FIRST_S
    c.activity = IDLE
    c.limits = Limits(max_hours=1, created=T0)  # changed: due at once (warned at 55), its waits from the start
    _run(c, state, [55])
    assert len(c.acts) == 2 and "in 30 s;" in _failing(c, state, 60)
    assert IdleState.load(state).retry["wait"] == RETRY_FIRST_S


def test_an_action_under_way_is_followed_at_every_tick_busy_or_not(tmp_path: Path) -> None:
    """A deletion CloudFormation runs cannot be called off: a watch that ran out is resumed by the
    next tick even when somebody logged in, and a wait from an earlier failure does not hold it."""
    c = Cluster(Limits(), outcomes=[NotDone("DELETE_FAILED"),
                                    NotDone("still DELETE_IN_PROGRESS", quiet=True)])
    state = tmp_path / "idle.json"
    _due(c, state)
    _failing(c, state, 30)
    c.activity, c.deleting = LOGIN, True  # `stack delete` from elsewhere; a login on the master
    with pytest.raises(NotDone, match="still DELETE_IN_PROGRESS"):
        _run(c, state, [30.2])
    assert _run(c, state, [30.4]) == ["under way: delete asked"]
    assert len(c.acts) == 3 and c.called_off == [] and IdleState.load(state).retry == {}


def _backed_off_to_an_hour(c: Cluster, state: Path) -> float:
    """Due at minute 30, then each try fails: the minute at which the wait reaches RETRY_MAX_S."""
    _due(c, state)
    minute = 30.0
    _failing(c, state, minute)
    while IdleState.load(state).retry["wait"] < RETRY_MAX_S:
        minute += IdleState.load(state).retry["wait"] / 60
        _failing(c, state, minute)
    return minute


def test_a_long_wait_is_dropped_when_stack_update_changes_the_limits(tmp_path: Path) -> None:
    """An hour's wait after repeated failures belongs to the limits it failed under: a `stack update`
    (here 45 idle minutes instead of 30) is warned again and acted on five minutes later, not when
    the hour is over, and its first failure waits one refresh again."""
    c = Cluster(Limits(), outcomes=[NotDone("stack demo not deleted: AccessDenied")] * 10)
    state = tmp_path / "idle.json"
    minute = _backed_off_to_an_hour(c, state)
    tries = len(c.acts)
    assert _run(c, state, [minute + 10])[0].startswith("not done: ")  # held by the hour's wait
    c.limits = Limits(idle_minutes=45, created=T0)
    _run(c, state, [minute + 11])  # a new deadline (long passed): warned now
    assert len(c.walls) == 2 and len(c.acts) == tries
    assert "in 30 s;" in _failing(c, state, minute + 16)  # acted on 50 minutes before the old wait ends
    assert len(c.acts) == tries + 1


def test_a_call_off_keeps_the_wait_as_a_busy_tick_does(tmp_path: Path) -> None:
    """A try cancelled at its second look (a login) tried nothing that had failed: the next failure,
    after a new idle period, waits twice the last wait, not one refresh as after a first failure."""
    c = Cluster(Limits(), outcomes=[NotDone("not deleted: AccessDenied")] * 3 + [Cancelled("deletion cancelled")]
                + [NotDone("not deleted: AccessDenied")])
    state = tmp_path / "idle.json"
    _due(c, state)
    for minute in (30, 30.5, 31.5):
        _failing(c, state, minute)
    assert IdleState.load(state).retry["wait"] == 4 * RETRY_FIRST_S
    c.probes = [IDLE, LOGIN]  # the tick's look, then the second look
    assert _run(c, state, [33.5]) == ["deletion cancelled: busy again (chainer@pts/0)"]
    assert IdleState.load(state).retry["wait"] == 4 * RETRY_FIRST_S
    _run(c, state, [34, 59])  # idle again from 34: warned at 59, due at 64
    assert "in 4 min;" in _failing(c, state, 64)


HALTING = "stack demo DELETE_FAILED: SecurityGroup ...; failed 3 times: the master stops itself now"


def test_a_failure_that_ends_the_tries_is_published_and_saved_before_the_master_stops_itself(tmp_path: Path) -> None:
    c = Cluster(Limits(), outcomes=[NotDone(HALTING, halt=True)])
    state = tmp_path / "idle.json"
    _due(c, state)
    with pytest.raises(NotDone) as failed:
        _run(c, state, [30])
    assert str(failed.value) == HALTING  # no next try: the master stops
    assert c.halts == [(HALTING, T0 + 30 * 60, f"cfn-chainermn: this master powers off now: {HALTING}")]
    assert c.logs == ["idle: the master is powering off"] and c.published[-1]["acting"]


def test_a_master_started_again_after_it_stopped_itself_counts_afresh(tmp_path: Path) -> None:
    """Someone starts it (to look, or to let it try again): nothing is tried at once; a new idle
    period and a new warning come first, and the tries start over."""
    c = Cluster(Limits(), outcomes=[NotDone("DELETE_FAILED"), NotDone(HALTING, halt=True), NotDone("DELETE_FAILED")])
    state = tmp_path / "idle.json"
    _due(c, state)
    assert "in 30 s;" in _failing(c, state, 30)  # a failure before the last: its wait is not carried over
    with pytest.raises(NotDone):
        _run(c, state, [30.5])
    assert IdleState.load(state).retry["wait"] == RETRY_FIRST_S
    assert _run(c, state, [600]) == ["idle for 0 min; deadline in 30 min (idle for 30 minutes)"]
    loaded = IdleState.load(state)
    assert loaded.halted is None and loaded.retry == {} and loaded.progress == {} and c.called_off == [{"tries": 2}]
    _run(c, state, [625])
    assert len(c.walls) == 3 and "will be deleted in about" in c.walls[-1] and len(c.acts) == 2
    assert "in 30 s;" in _failing(c, state, 630)


def test_a_master_that_cannot_stop_itself_says_so_and_tries_again_after_the_wait(tmp_path: Path) -> None:
    c = Cluster(Limits(), outcomes=[NotDone(HALTING, halt=True)], halt_fails=True)
    state = tmp_path / "idle.json"
    _due(c, state)
    line = _failing(c, state, 30)
    assert line.startswith(f"{HALTING}; the master did not stop itself: `systemctl poweroff` exited 1: Access "
                           "denied; the next try at ")
    assert c.published[-1]["failed"] == line and IdleState.load(state).halted is None
    assert _run(c, state, [30.2]) == [f"not done: {line}"]  # not taken for a restart: the wait holds


def test_someone_who_logged_in_while_the_last_words_were_published_keeps_the_master(tmp_path: Path) -> None:
    """The publish before the poweroff may take minutes (S3's retries): the master is looked at once
    more right before it, and a login then keeps it running: said, published and backed off."""
    c = Cluster(Limits(), outcomes=[NotDone(HALTING, halt=True)])
    state = tmp_path / "idle.json"
    _due(c, state)
    c.probes = [IDLE, LOGIN]  # the tick's look, then the look right before the poweroff
    line = _failing(c, state, 30)
    assert line.startswith(f"{HALTING}; the master keeps running: busy again (chainer@pts/0); the next try at ")
    assert c.published[-1]["failed"] == line
    assert c.halts == [] and IdleState.load(state).halted is None and c.walls[-1].startswith("cfn-chainermn: this "
                                                                                          "cluster will be deleted")
