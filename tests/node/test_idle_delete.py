"""node/idle_delete.py's deletion, call by call (Stubber: the real API models check every
parameter): it stops the refresh timer, records the worker group's sizes and scales it to 0, waits
until it has no instance, looks again (limits re-read, activity re-probed: a `stack update
--idle-minutes off` or a login meanwhile calls it off and puts the group back), sends DeleteStack
as the stack's ShutdownRole to the stack's id, then empties the key bucket with SIGTERM ignored and
reads the stack until CloudFormation says it is gone (a bucket gone ends only the emptying);
DELETE_FAILED is told with its first failed resource and DeleteStack is sent again after a wait
that doubles; a deletion under way is followed by the next tick, busy or not; a refused call before
DeleteStack restores nothing, leaves the bucket alone and lets the timer run again; any botocore
error, an answer or none, is caught and tried again; the third failed deletion in a row (a
DELETE_FAILED seen, or DeleteStack refused: throttled, unanswered or expired credentials do not
count), still due, says what is left, walls it and powers the master off."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.stub import Stubber
from idle_stubs import (
    BUCKET,
    CREATED,
    DELETING,
    FAILED_REASON,
    GROUP,
    KEPT,
    MASTER,
    ROLE,
    STACK,
    STACK_ID,
    TIMER_START,
    TIMER_STOP,
    acting_with,
    delete_stack,
    describe_stack,
    due_state,
    empty_bucket,
    failed_delete_events,
    fails_once,
    group_has,
    journal,
    recorded,
    restored,
    scale_to_zero,
    shutdown_of,
    stack_is,
    stubbed,
)

from cfn_chainermn.errors import AgentError
from cfn_chainermn.names import OUT_MASTER_INSTANCE_ID
from cfn_chainermn.node import idle_delete, idle_master
from cfn_chainermn.node.idle import Activity, IdleState
from cfn_chainermn.node.idle_delete import DELETE_POLL_S, HALT_AFTER, WORKERS_GONE_S, WORKERS_POLL_S
from cfn_chainermn.node.idle_tick import Cancelled, Hooks, NotDone, tick


@pytest.fixture
def stubs() -> Iterator[dict[str, Stubber]]:
    yield from stubbed()


def test_delete_records_the_group_empties_it_deletes_as_the_service_role_and_empties_the_bucket_until_gone(
        stubs: dict[str, Stubber], tmp_path: Path) -> None:
    """No writer is left when the bucket is emptied: the timer is stopped, the group is at 0 with no
    instance left; the emptying repeats while the stack is being deleted (a write after the first
    one is removed by the next) and cannot be cut short by SIGTERM, which is back afterwards."""
    describe_stack(stubs, {"IdleMinutes": "30"}, DELETING)
    recorded(stubs)
    scale_to_zero(stubs)
    group_has(stubs, "i-0aaaaaaaaaaaaaaa2", "i-0aaaaaaaaaaaaaaa3")  # still terminating
    group_has(stubs)
    delete_stack(stubs)
    empty_bucket(stubs, "cluster-key/id_ed25519", "nodes/i-1/ready", "logs/i-1/agent.log")
    stack_is(stubs, "DELETE_IN_PROGRESS")
    empty_bucket(stubs, "cluster-key/idle.json")  # written after the first emptying
    stack_is(stubs, "DELETE_IN_PROGRESS")
    empty_bucket(stubs)
    stack_is(stubs, "DELETE_COMPLETE")
    sigterm_while_emptying = []
    stubs["s3"].client.meta.events.register(  # type: ignore[attr-defined]
        "provide-client-params.s3.ListObjectVersions", lambda **_: sigterm_while_emptying.append(
            signal.getsignal(signal.SIGTERM)))
    slept: list[float] = []
    shutdown = shutdown_of(stubs, tmp_path, sleep=slept.append)
    before = signal.getsignal(signal.SIGTERM)
    progress: dict[str, Any] = {}
    done = shutdown.act(shutdown.limits(), acting_with(progress))
    assert done == (f"worker group {GROUP} at 0; DeleteStack sent as {ROLE}; key bucket {BUCKET} emptied "
                    "(4 versions); stack DELETE_COMPLETE")
    assert slept == [WORKERS_POLL_S, DELETE_POLL_S, DELETE_POLL_S]
    assert sigterm_while_emptying == [signal.SIG_IGN] * 3 and signal.getsignal(signal.SIGTERM) == before
    assert progress["group"] == {"MinSize": 2, "MaxSize": 4, "DesiredCapacity": 2}
    assert journal(tmp_path) == [TIMER_STOP]  # the master is going: its timer stays stopped


def test_a_group_still_not_empty_after_the_bound_is_deleted_anyway_and_the_line_says_so(
        stubs: dict[str, Stubber], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1_000.0]
    monkeypatch.setattr(idle_master, "now", lambda: clock[0])
    describe_stack(stubs, {"IdleMinutes": "30"}, DELETING)
    recorded(stubs)
    scale_to_zero(stubs)
    polls = int(WORKERS_GONE_S // WORKERS_POLL_S) + 1  # the last look is at the deadline
    for _ in range(polls):
        group_has(stubs, "i-0aaaaaaaaaaaaaaa2")
    delete_stack(stubs)
    empty_bucket(stubs, "nodes/i-0aaaaaaaaaaaaaaa2/ready")
    stack_is(stubs, "DELETE_COMPLETE")

    def sleep(seconds: float) -> None:
        clock[0] += seconds

    shutdown = shutdown_of(stubs, tmp_path, sleep=sleep)
    done = shutdown.act(shutdown.limits(), acting_with())
    assert f"1 worker(s) still there after {WORKERS_GONE_S:g} s; DeleteStack sent as {ROLE}" in done
    assert clock[0] == 1_000.0 + WORKERS_GONE_S


def test_a_refused_deletestack_restores_nothing_leaves_the_bucket_whole_and_lets_the_timer_run(
        stubs: dict[str, Stubber], tmp_path: Path) -> None:
    describe_stack(stubs, {"IdleMinutes": "30"}, DELETING)
    recorded(stubs)
    scale_to_zero(stubs)
    group_has(stubs)
    stubs["cloudformation"].add_client_error("delete_stack", "AccessDenied", "not authorized to perform: "
                                             "iam:PassRole", 403, expected_params={"StackName": STACK_ID,
                                                                                 "RoleARN": ROLE})
    shutdown = shutdown_of(stubs, tmp_path)
    limits = shutdown.limits()
    with pytest.raises(AgentError) as refused:
        shutdown.act(limits, acting_with())
    line = str(refused.value)
    assert line.startswith(f"stack {STACK} not deleted: ") and "iam:PassRole" in line
    assert f"worker group {GROUP} left at 0 until the next try, or put back by the first refresh that finds the " \
           "cluster busy (" in line
    assert f"--auto-scaling-group-name {GROUP} --min-size 2 --max-size 4 --desired-capacity 2" in line
    assert line.endswith(f"key bucket untouched; `cfn-chainermn stack delete {STACK}` deletes it from your machine")
    assert journal(tmp_path) == [TIMER_STOP, TIMER_START]


@pytest.mark.parametrize("failure", ["AccessDenied", "EndpointConnectionError"])
def test_a_failed_scaling_changes_nothing_and_sends_no_deletestack(
        stubs: dict[str, Stubber], tmp_path: Path, failure: str) -> None:
    """A refusal or no answer at all (BotoCoreError): the same one line, through aws.py."""
    describe_stack(stubs, {"IdleMinutes": "30"}, DELETING)
    recorded(stubs)
    if failure == "AccessDenied":
        stubs["autoscaling"].add_client_error("update_auto_scaling_group", "AccessDenied", "not authorized", 403)
    else:
        fails_once(stubs["autoscaling"], "UpdateAutoScalingGroup")
    shutdown = shutdown_of(stubs, tmp_path)
    limits = shutdown.limits()
    with pytest.raises(AgentError, match=r"not deleted: UpdateAutoScalingGroup failed: .*; nothing changed; key "
                                         "bucket untouched") as failed:
        shutdown.act(limits, acting_with())
    assert failure == "AccessDenied" or "Could not connect to the endpoint URL" in str(failed.value)
    assert journal(tmp_path) == [TIMER_STOP, TIMER_START]


def test_no_answer_while_emptying_or_reading_the_stack_is_logged_and_tried_again(
        stubs: dict[str, Stubber], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    describe_stack(stubs, {"IdleMinutes": "30"}, DELETING)
    recorded(stubs)
    scale_to_zero(stubs)
    group_has(stubs)
    delete_stack(stubs)
    # the first look gets no answer, from S3 nor from CloudFormation: nothing of the queue is used
    empty_bucket(stubs, "nodes/i-1/ready")
    stack_is(stubs, "DELETE_IN_PROGRESS")
    empty_bucket(stubs)
    stack_is(stubs, "DELETE_COMPLETE")
    logs: list[str] = []
    clock = [0.0]
    monkeypatch.setattr(idle_master, "now", lambda: clock[0])
    shutdown = shutdown_of(stubs, tmp_path, sleep=lambda seconds: clock.__setitem__(0, clock[0] + seconds))
    limits = shutdown.limits()
    fails_once(stubs["s3"], "ListObjectVersions")
    fails_once(stubs["cloudformation"], "DescribeStacks")  # armed after the limits' read
    done = shutdown.act(limits, acting_with(logs=logs))
    assert done.endswith("emptied (1 versions); stack DELETE_COMPLETE")
    assert logs == [f"idle: key bucket {BUCKET} not emptied: emptying bucket {BUCKET}: cannot reach AWS: Could "
                    "not connect to the endpoint URL: \"https://s3.test\"; trying again in 15 s",
                    f"idle: stack {STACK} not read: DescribeStacks failed: cannot reach AWS: Could not connect to "
                    "the endpoint URL: \"https://cloudformation.test\"; reading it again in 15 s"]


def test_delete_failed_is_told_with_its_root_cause_and_deletestack_is_sent_again_after_a_wait_that_doubles(
        stubs: dict[str, Stubber], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """DeleteStack, the bucket emptied, DescribeStacks says DELETE_FAILED: the events name the
    resource and why; the line (and `stack status`'s record) says what the user runs and when the
    next try is; the timer runs again. The ticks before that try make no AWS call but the limits';
    the try sends DeleteStack without touching the group (it may be gone); refused, the wait
    doubles; the next try is sent."""
    state, deadline = due_state(tmp_path)
    at = [deadline]  # the ticks' clock
    published: list[dict[str, Any]] = []
    hooks = Hooks(probe=Activity, publish=lambda key, body: published.append(json.loads(body)),
                  wall=print, log=print, clock=lambda: at[0])
    describe_stack(stubs, {"IdleMinutes": "30"}, DELETING)
    recorded(stubs)
    scale_to_zero(stubs)
    group_has(stubs)
    describe_stack(stubs, {"IdleMinutes": "30"}, DELETING)  # the second look: still due
    delete_stack(stubs)
    empty_bucket(stubs, "nodes/i-1/ready")
    stack_is(stubs, "DELETE_FAILED", FAILED_REASON)
    failed_delete_events(stubs)
    clock = [0.0]  # the watch's clock, moved by its sleeps (a watch that missed DELETE_FAILED ends soon)
    monkeypatch.setattr(idle_master, "now", lambda: clock[0])
    shutdown = shutdown_of(stubs, tmp_path, sleep=lambda seconds: clock.__setitem__(0, clock[0] + seconds))
    with pytest.raises(NotDone) as failed:
        tick(shutdown, hooks, state)
    line = str(failed.value)
    assert line == (f"stack {STACK} DELETE_FAILED: ClusterMaster (AWS::EC2::Instance) DELETE_FAILED: {KEPT}; "
                    f"`cfn-chainermn stack delete {STACK}` deletes it from your machine; "
                    "failed try 1 of 3 before the master stops itself; the next try at 2026-01-02 04:04:35Z (in 30 "
                    "s; the wait doubles at each failure, up to 60 min)")
    assert published[-1]["failed"] == line and published[-1]["acting"] is True
    assert journal(tmp_path) == [TIMER_STOP, TIMER_START]

    def waiting(seconds: float) -> None:
        """A tick before the next try: DescribeStacks (the limits) alone, the line said again."""
        at[0] = deadline + seconds
        describe_stack(stubs, {"IdleMinutes": "30"}, DELETING, status="DELETE_FAILED")
        told = len(published)
        assert tick(shutdown, hooks, state).startswith(f"not done: stack {STACK} ")
        assert len(published) == told  # unchanged: not written again within PUBLISH_EVERY_S

    waiting(29)
    at[0] = deadline + 30
    describe_stack(stubs, {"IdleMinutes": "30"}, DELETING, status="DELETE_FAILED")  # the try: refused
    stubs["cloudformation"].add_client_error("delete_stack", "AccessDenied", "not authorized to perform: "
                                             "cloudformation:DeleteStack", 403,
                                             expected_params={"StackName": STACK_ID, "RoleARN": ROLE})
    refused = (f"not deleted: .*; it stays DELETE_FAILED; `cfn-chainermn stack delete {STACK}` deletes it from your "
               r"machine; failed try 2 of 3 before the master stops itself; the next try at 2026-01-02 04:05:35Z "
               r"\(in 1 min;")
    with pytest.raises(NotDone, match=refused):
        tick(shutdown, hooks, state)
    assert published[-1]["failed"].startswith(f"stack {STACK} not deleted: DeleteStack failed: AccessDenied")
    waiting(31)
    waiting(89)
    at[0] = deadline + 90
    describe_stack(stubs, {"IdleMinutes": "30"}, DELETING, status="DELETE_FAILED")  # and the next: sent
    delete_stack(stubs)
    empty_bucket(stubs, "cluster-key/idle.json")  # what the failed tick published
    stack_is(stubs, "DELETE_COMPLETE")
    assert tick(shutdown, hooks, state).endswith("emptied (1 versions); stack DELETE_COMPLETE")
    assert journal(tmp_path) == [TIMER_STOP, TIMER_START, TIMER_STOP, TIMER_START, TIMER_STOP]
    assert IdleState.load(state).retry == {}


def test_a_bucket_gone_ends_the_emptying_not_the_watch_which_ends_with_the_stacks_state(
        stubs: dict[str, Stubber], tmp_path: Path) -> None:
    """NoSuchBucket says nothing of the stack: the deletion may still fail after it (a resource
    deleted later), so the master reads the stack, without emptying again, until DELETE_FAILED
    (tried again later) or DELETE_COMPLETE."""
    describe_stack(stubs, {"IdleMinutes": "30"}, DELETING)
    recorded(stubs)
    scale_to_zero(stubs)
    group_has(stubs)
    delete_stack(stubs)
    stubs["s3"].add_client_error("list_object_versions", "NoSuchBucket", "The specified bucket does not exist", 404,
                                 expected_params={"Bucket": BUCKET})
    stack_is(stubs, "DELETE_IN_PROGRESS")
    stack_is(stubs, "DELETE_IN_PROGRESS")  # no ListObjectVersions before it: the bucket is gone
    stack_is(stubs, "DELETE_FAILED", FAILED_REASON)
    failed_delete_events(stubs)
    slept: list[float] = []
    shutdown = shutdown_of(stubs, tmp_path, sleep=slept.append)
    with pytest.raises(NotDone) as failed:
        shutdown.act(shutdown.limits(), acting_with())
    assert str(failed.value).startswith(f"stack {STACK} DELETE_FAILED: ClusterMaster")
    assert slept == [DELETE_POLL_S, DELETE_POLL_S]
    assert journal(tmp_path) == [TIMER_STOP, TIMER_START]


def test_a_resumed_watch_is_followed_by_a_busy_tick(stubs: dict[str, Stubber], tmp_path: Path) -> None:
    """A watch that ran out left the stack DELETE_IN_PROGRESS; the next tick finds somebody logged
    in: the deletion cannot be called off, so the bucket is emptied and the stack read all the same
    (left alone, the master's own refresh writes would fail the bucket's deletion)."""
    state, deadline = due_state(tmp_path)
    hooks = Hooks(probe=lambda: Activity(sessions=("chainer@pts/0",)), publish=lambda key, body: None,
                  wall=print, log=print, clock=lambda: deadline + 1800)
    describe_stack(stubs, {"IdleMinutes": "30"}, DELETING, status="DELETE_IN_PROGRESS")
    empty_bucket(stubs, "nodes/m/hostfile")
    stack_is(stubs, "DELETE_COMPLETE")
    line = tick(shutdown_of(stubs, tmp_path), hooks, state)
    assert line == f"under way: the deletion followed; key bucket {BUCKET} emptied (1 versions); stack DELETE_COMPLETE"
    assert journal(tmp_path) == [TIMER_STOP]


def test_a_watch_that_runs_out_lets_the_timer_run_writes_nothing_and_the_next_tick_watches_again(
        stubs: dict[str, Stubber], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1_000.0]
    monkeypatch.setattr(idle_master, "now", lambda: clock[0])
    monkeypatch.setattr(idle_delete, "DELETE_WATCH_S", 2 * DELETE_POLL_S)

    def sleep(seconds: float) -> None:
        clock[0] += seconds

    describe_stack(stubs, {"IdleMinutes": "30"}, DELETING)
    recorded(stubs)
    scale_to_zero(stubs)
    group_has(stubs)
    delete_stack(stubs)
    for _ in range(3):  # at 0, 15 and 30 s
        empty_bucket(stubs)
        stack_is(stubs, "DELETE_IN_PROGRESS")
    shutdown = shutdown_of(stubs, tmp_path, sleep=sleep)
    with pytest.raises(NotDone) as ran_out:
        shutdown.act(shutdown.limits(), acting_with())
    assert ran_out.value.quiet and f"still DELETE_IN_PROGRESS after {2 * DELETE_POLL_S:g} s" in str(ran_out.value)
    assert journal(tmp_path) == [TIMER_STOP, TIMER_START]

    describe_stack(stubs, {"IdleMinutes": "30"}, DELETING, status="DELETE_IN_PROGRESS")  # no DeleteStack again
    empty_bucket(stubs, "nodes/m/hostfile")
    stack_is(stubs, "DELETE_COMPLETE")
    assert shutdown.act(shutdown.limits(), acting_with()).endswith("stack DELETE_COMPLETE")
    assert journal(tmp_path) == [TIMER_STOP, TIMER_START, TIMER_STOP]


def _tick_while_waiting(stubs: dict[str, Stubber], tmp_path: Path, probes: list[Any],
                        later: dict[str, str]) -> tuple[str, list[dict[str, Any]]]:
    """One due tick: the group recorded, scaled and empty; then the second look reads `later` as the
    stack's parameters and sees probes[1]."""
    state = tmp_path / "idle.json"
    deadline = CREATED.timestamp() + 3600
    IdleState(idle_since=deadline - 1800, warned=deadline, warned_at=deadline - 300).save(state)
    published: list[dict[str, Any]] = []
    hooks = Hooks(probe=lambda: probes.pop(0), publish=lambda key, body: published.append(json.loads(body)),
                       wall=print, log=print, clock=lambda: deadline)
    describe_stack(stubs, {"IdleMinutes": "30"}, DELETING)
    recorded(stubs)
    scale_to_zero(stubs)
    group_has(stubs)
    describe_stack(stubs, later, DELETING)
    restored(stubs)
    line = tick(shutdown_of(stubs, tmp_path), hooks, state)
    assert IdleState.load(state).progress == {} and IdleState.load(state).acted == ""
    return line, published


def test_limits_turned_off_during_the_wait_send_no_deletestack_and_put_the_group_back(
        stubs: dict[str, Stubber], tmp_path: Path) -> None:
    line, published = _tick_while_waiting(stubs, tmp_path, [Activity(), Activity()],
                                          {"IdleMinutes": "off", "MaxHours": "off"})
    assert line == (f"deletion cancelled: idle shutdown was turned off; worker group {GROUP} back to min 2, max 4, "
                    "desired 2")
    assert published[-1]["idle_minutes"] is None and "acting" not in published[-1]
    assert journal(tmp_path) == [TIMER_STOP, TIMER_START]


def test_a_login_during_the_wait_sends_no_deletestack_and_puts_the_group_back(
        stubs: dict[str, Stubber], tmp_path: Path) -> None:
    line, published = _tick_while_waiting(stubs, tmp_path, [Activity(), Activity(sessions=("chainer@pts/0",))],
                                          {"IdleMinutes": "30"})
    assert line == (f"deletion cancelled: busy again (chainer@pts/0); worker group {GROUP} back to min 2, max 4, "
                    "desired 2")
    assert published[-1]["busy"] == ["chainer@pts/0"] and published[-1]["deadline"] is None
    assert journal(tmp_path) == [TIMER_STOP, TIMER_START]


def test_a_retry_puts_the_group_back_to_the_sizes_recorded_before_it_went_to_zero(
        stubs: dict[str, Stubber], tmp_path: Path) -> None:
    """A refused DeleteStack left the group at 0; the next try finds it at 0 and records nothing new,
    so calling it off restores what the first try saw."""
    progress: dict[str, Any] = {}
    describe_stack(stubs, {"IdleMinutes": "30"}, DELETING)
    recorded(stubs)
    scale_to_zero(stubs)
    group_has(stubs)
    stubs["cloudformation"].add_client_error("delete_stack", "AccessDenied", "no", 403)
    shutdown = shutdown_of(stubs, tmp_path)
    with pytest.raises(AgentError):
        shutdown.act(shutdown.limits(), acting_with(progress))
    describe_stack(stubs, {"IdleMinutes": "30"}, DELETING)
    scale_to_zero(stubs)  # no DescribeAutoScalingGroups first: the sizes are kept from the first try
    group_has(stubs)
    restored(stubs)
    with pytest.raises(Cancelled, match="back to min 2, max 4, desired 2"):
        shutdown.act(shutdown.limits(), acting_with(progress, still_due=lambda: "busy again (job x)"))


def test_an_unexpected_error_midway_still_lets_the_timer_run(stubs: dict[str, Stubber], tmp_path: Path) -> None:
    """Not only the package's errors: whatever ends the sequence before DeleteStack, the master's
    refresh timer is started again (a master left alive without it would never act again)."""
    describe_stack(stubs, {"IdleMinutes": "30"}, DELETING)
    recorded(stubs)
    scale_to_zero(stubs)
    group_has(stubs)

    def broken() -> str:
        raise RuntimeError("the probe broke")

    shutdown = shutdown_of(stubs, tmp_path)
    with pytest.raises(RuntimeError):
        shutdown.act(shutdown.limits(), acting_with(still_due=broken))
    assert journal(tmp_path) == [TIMER_STOP, TIMER_START]


def test_a_stop_of_the_refresh_during_the_workers_wait_starts_the_timer_again(
        stubs: dict[str, Stubber], tmp_path: Path) -> None:
    """`systemctl stop` sends SIGTERM, whose Python default kills at once, past every finally: during
    the wait for the workers it ends the run with SystemExit instead, after the timer is started again."""
    describe_stack(stubs, {"IdleMinutes": "30"}, DELETING)
    recorded(stubs)
    scale_to_zero(stubs)
    group_has(stubs, "i-0aaaaaaaaaaaaaaa2")
    before = signal.getsignal(signal.SIGTERM)

    def stopped(seconds: float) -> None:  # the first pause of the wait: systemd stops the service
        # without a handler SIGTERM would end pytest itself: fail instead (a handler of the run's own)
        assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, before)
        os.kill(os.getpid(), signal.SIGTERM)

    shutdown = shutdown_of(stubs, tmp_path, sleep=stopped)
    with pytest.raises(SystemExit) as ended:
        shutdown.act(shutdown.limits(), acting_with())
    assert ended.value.code == 128 + signal.SIGTERM
    assert journal(tmp_path) == [TIMER_STOP, TIMER_START]
    assert signal.getsignal(signal.SIGTERM) is before



POWEROFF = "systemctl poweroff"


def _third_failure(stubs: dict[str, Stubber], tmp_path: Path, how: str, second_look: Activity) -> tuple[
        str, list[dict[str, Any]], Path, list[str]]:
    """A due tick on a DELETE_FAILED stack whose deletion failed twice already (the master's own
    termination refused: it is still there): DeleteStack is sent again and the stack ends
    DELETE_FAILED again ("failed"), or DeleteStack is refused ("refused"); then the second look
    (limits re-read, the master re-probed: `second_look`), and a last look right before the poweroff
    (idle). Also returns what was walled."""
    state, deadline = due_state(tmp_path)
    loaded = IdleState.load(state)
    loaded.progress = {"delete_failed": HALT_AFTER - 1}
    loaded.save(state)
    published: list[dict[str, Any]] = []
    looks, walls = [Activity(), second_look, Activity()], []
    hooks = Hooks(probe=lambda: looks.pop(0), publish=lambda key, body: published.append(json.loads(body)),
                  wall=walls.append, log=print, clock=lambda: deadline)
    outputs = {**DELETING, OUT_MASTER_INSTANCE_ID: MASTER}
    describe_stack(stubs, {"IdleMinutes": "30"}, outputs, status="DELETE_FAILED")
    if how == "refused":
        stubs["cloudformation"].add_client_error("delete_stack", "AccessDenied", "not authorized to perform: "
                                                 "cloudformation:DeleteStack", 403,
                                                 expected_params={"StackName": STACK_ID, "RoleARN": ROLE})
    else:
        delete_stack(stubs)
        empty_bucket(stubs)
        stack_is(stubs, "DELETE_FAILED", FAILED_REASON)
        failed_delete_events(stubs)
    describe_stack(stubs, {"IdleMinutes": "30"}, outputs, status="DELETE_FAILED")  # the second look
    with pytest.raises(NotDone) as failed:
        tick(shutdown_of(stubs, tmp_path, sleep=lambda seconds: None), hooks, state)
    return str(failed.value), published, state, walls


@pytest.mark.parametrize("how", ["failed", "refused"])
def test_the_third_failed_deletion_in_a_row_stops_the_master_after_saying_what_is_left(
        stubs: dict[str, Stubber], tmp_path: Path, how: str) -> None:
    """After DELETE_FAILED the master (a GPU instance) would bill while its retries are refused: at the
    third failure in a row, still idle at a second look, it publishes its last words (what is left
    billing, that it retries no more, the command that deletes the rest) and powers itself off,
    which stops it (no StopInstances: no permission the deletion may already have removed)."""
    line, published, state, walls = _third_failure(stubs, tmp_path, how, Activity())
    assert line.startswith(f"stack {STACK} DELETE_FAILED: ClusterMaster (AWS::EC2::Instance) DELETE_FAILED: {KEPT}; "
                           if how == "failed" else
                           f"stack {STACK} not deleted: DeleteStack failed: AccessDenied: not authorized to perform: "
                           "cloudformation:DeleteStack")
    assert line.endswith(f"`cfn-chainermn stack delete {STACK}` deletes it from your machine; failed 3 times: the "
                         f"master {MASTER} stops itself now and tries no more (a stopped master cannot retry); still "
                         "billed until that `stack delete`: what failed to delete, the stack's EFS if it made one, the "
                         "master's EBS volumes")
    assert published[-1]["failed"] == line and published[-1]["acting"] is True
    assert walls == [f"cfn-chainermn: this master powers off now: {line}"]
    assert journal(tmp_path) == [TIMER_STOP, TIMER_START, POWEROFF]  # the timer's start is moot then
    assert IdleState.load(state).halted is not None


def test_a_third_failure_on_a_cluster_busy_again_leaves_the_master_running(
        stubs: dict[str, Stubber], tmp_path: Path) -> None:
    """The deletion's watch can last 30 minutes: somebody who logged in meanwhile keeps the master."""
    line, _, state, walls = _third_failure(stubs, tmp_path, "failed", Activity(sessions=("chainer@pts/0",)))
    assert "; the master keeps running: busy again (chainer@pts/0); the next try at " in line
    assert POWEROFF not in journal(tmp_path) and IdleState.load(state).halted is None and walls == []
    assert IdleState.load(state).progress["delete_failed"] == HALT_AFTER


@pytest.mark.parametrize("error", ["Throttling", "ExpiredToken", "EndpointConnectionError"])
def test_deletestack_throttled_unanswered_or_with_expired_credentials_backs_off_without_counting(
        stubs: dict[str, Stubber], tmp_path: Path, error: str) -> None:
    """Only a refusal (or a DELETE_FAILED the watch saw) counts toward the master's stop: two failed
    deletions, then a DeleteStack that is throttled, gets no answer or is sent with expired
    credentials leaves the count at two, the master running, and is tried again after the wait."""
    state, deadline = due_state(tmp_path)
    loaded = IdleState.load(state)
    loaded.progress = {"delete_failed": HALT_AFTER - 1}
    loaded.save(state)
    hooks = Hooks(probe=Activity, publish=lambda key, body: None, wall=print, log=print, clock=lambda: deadline)
    describe_stack(stubs, {"IdleMinutes": "30"}, {**DELETING, OUT_MASTER_INSTANCE_ID: MASTER}, status="DELETE_FAILED")
    if error == "EndpointConnectionError":
        fails_once(stubs["cloudformation"], "DeleteStack")
    else:
        stubs["cloudformation"].add_client_error("delete_stack", error, "Rate exceeded", 400,
                                                 expected_params={"StackName": STACK_ID, "RoleARN": ROLE})
    with pytest.raises(NotDone) as failed:
        tick(shutdown_of(stubs, tmp_path), hooks, state)
    assert "; it stays DELETE_FAILED; " in str(failed.value)
    assert "; not refused (no answer, throttled or the credentials' own): not counted toward the master's stop; " \
           "the next try at " in str(failed.value)
    loaded = IdleState.load(state)
    assert loaded.progress["delete_failed"] == HALT_AFTER - 1 and loaded.halted is None
    assert POWEROFF not in journal(tmp_path)
