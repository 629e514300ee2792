"""node/idle.py: when the master counts the cluster idle, when it warns and when the action is
due, and the wall text; hours of a cluster's life as a few calls with the time passed in."""

from __future__ import annotations

from cfn_chainermn.node.idle import WARN_S, Activity, IdleState, Limits, judge, warning

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


def test_the_warning_says_what_keeps_the_cluster_idle_versus_ttl_and_counts_in_words() -> None:
    """Activity keeps an idle cluster, never one at its TTL; "1 hour", "1 minute", "8 hours"."""
    idle = judge(Limits(idle_minutes=1, created=T0), IDLE, IdleState(idle_since=T0), T0 + 30)
    ttl = judge(Limits(max_hours=1, created=T0), JOB, IdleState(), T0 + 3600 - WARN_S)
    assert (idle.reason, idle.ttl, ttl.reason, ttl.ttl) == ("idle for 1 minute", False,
                                                            "1 hour since the stack was created", True)
    assert judge(Limits(max_hours=8, created=T0), JOB, IdleState(), T0).reason == "8 hours since the stack was created"
    text = warning("delete", ttl, 5)
    assert text.startswith("cfn-chainermn: this cluster will be deleted in about 5 minutes (1 hour since the stack "
                           "was created). Jobs and logins do not keep it: ") and "--max-hours H" in text
    assert "keeps it" not in text.replace("do not keep it", "")
    text = warning("stop", idle, 1)
    assert text.startswith("cfn-chainermn: this cluster will be stopped (workers to 0, master stopped; EFS kept) in "
                           "about 1 minute (idle for 1 minute). A job or an ssh login keeps it; ")

