"""The master's idle shutdown on AWS (node/idle_master.py, node/idle_delete.py), call by call
(Stubber: the real API models check every parameter): the limits come from DescribeStacks of its own
stack; deleting stops the refresh timer, records the worker group's sizes and scales it to 0, waits
until it has no instance, looks again (limits re-read, activity re-probed: a `stack update
--idle-minutes off` or a login meanwhile calls it off and puts the group back), sends DeleteStack
as the stack's ShutdownRole to the stack's id, then empties the key bucket with SIGTERM ignored and
reads the stack until it is gone; DELETE_FAILED is told with its first failed resource and tried
again at the next tick; a refused call before DeleteStack restores nothing, leaves the bucket alone
and lets the timer run again; any botocore error, an answer or none, is caught and tried again;
stopping sets the worker group to 0 and stops the master; every call is one the template grants
the master, on the resource it scopes."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from cfn_chainermn.errors import AgentError
from cfn_chainermn.node import idle_delete, idle_master
from cfn_chainermn.node.idle import Activity, IdleState, Limits
from cfn_chainermn.node.idle_delete import DELETE_POLL_S, WORKERS_GONE_S, WORKERS_POLL_S
from cfn_chainermn.node.idle_master import AwsShutdown
from cfn_chainermn.node.idle_tick import Acting, Cancelled, Hooks, NotDone, tick
from cfn_chainermn.node.system import JOURNAL, System

STACK = "demo"
STACK_ID = "arn:aws:cloudformation:us-east-1:123456789012:stack/demo/0f1e2d3c-aaaa-bbbb-cccc-000000000001"
ROLE = "arn:aws:iam::123456789012:role/demo-ShutdownRole-AbCdEf"
BUCKET = "demo-keybucket-abc"
GROUP = "demo-WorkerGroup-XYZ"
DELETING = {"ShutdownRoleArn": ROLE, "WorkerGroupName": GROUP}
CREATED = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)


@pytest.fixture
def stubs() -> Iterator[dict[str, Stubber]]:
    kw = {"region_name": "us-east-1", "aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
    clients = {name: boto3.client(name, **kw) for name in ("cloudformation", "s3", "ec2", "autoscaling")}
    stubbers = {name: Stubber(c) for name, c in clients.items()}
    for s in stubbers.values():
        s.activate()
    yield stubbers
    for s in stubbers.values():
        s.assert_no_pending_responses()
        s.deactivate()


def _shutdown(stubs: dict[str, Stubber], root: Path, sleep: Any = None) -> AwsShutdown:
    c = {name: s.client for name, s in stubs.items()}  # type: ignore[attr-defined]
    shutdown = AwsShutdown(c["cloudformation"], c["s3"], c["ec2"], c["autoscaling"], STACK, BUCKET, System(root))
    if sleep is not None:
        shutdown.sleep = sleep
    return shutdown


def _describe(stubs: dict[str, Stubber], params: dict[str, str], outputs: dict[str, str],
              status: str = "UPDATE_COMPLETE") -> None:
    stubs["cloudformation"].add_response("describe_stacks", {"Stacks": [{
        "StackName": STACK, "StackId": STACK_ID, "CreationTime": CREATED, "StackStatus": status,
        "Parameters": [{"ParameterKey": k, "ParameterValue": v} for k, v in params.items()],
        "Outputs": [{"OutputKey": k, "OutputValue": v} for k, v in outputs.items()]}]}, {"StackName": STACK})


def _journal(root: Path) -> list[str]:
    path = root / JOURNAL.lstrip("/")
    return path.read_text().splitlines() if path.exists() else []


TIMER_STOP, TIMER_START = "systemctl stop cfn-chainermn-refresh.timer", "systemctl start cfn-chainermn-refresh.timer"


def test_limits_are_the_stacks_own_parameters_read_by_name(stubs: dict[str, Stubber], tmp_path: Path) -> None:
    _describe(stubs, {"IdleMinutes": "45", "MaxHours": "off", "IdleAction": "delete", "Workers": "2"}, {})
    assert _shutdown(stubs, tmp_path).limits() == Limits(45, None, "delete", CREATED.timestamp())


@pytest.mark.parametrize(("status", "action", "underway"), [("DELETE_IN_PROGRESS", "delete", True),
                                                            ("DELETE_IN_PROGRESS", "stop", False),
                                                            ("DELETE_FAILED", "delete", False),
                                                            ("UPDATE_COMPLETE", "delete", False)])
def test_a_deletion_is_under_way_only_while_cloudformation_deletes_a_stack_whose_limit_deletes(
        stubs: dict[str, Stubber], tmp_path: Path, status: str, action: str, underway: bool) -> None:
    """What the tick then follows busy or not; after DELETE_FAILED a retry waits for the count
    (and its backoff); a stack whose limit stops has no grant to empty its bucket."""
    _describe(stubs, {"IdleMinutes": "45", "IdleAction": action}, DELETING, status=status)
    shutdown = _shutdown(stubs, tmp_path)
    shutdown.limits()
    assert shutdown.underway() is underway


def _acting(progress: dict[str, Any] | None = None, still_due: Any = lambda: "",
            logs: list[str] | None = None) -> Acting:
    return Acting("idle for 30 minutes", still_due, progress if progress is not None else {}, lambda: None,
                  (logs if logs is not None else []).append)


def _scale_to_zero(stubs: dict[str, Stubber]) -> None:
    stubs["autoscaling"].add_response("update_auto_scaling_group", {}, {
        "AutoScalingGroupName": GROUP, "MinSize": 0, "MaxSize": 0, "DesiredCapacity": 0})


def _group_has(stubs: dict[str, Stubber], *instances: str, sizes: tuple[int, int, int] = (0, 0, 0)) -> None:
    stubs["autoscaling"].add_response("describe_auto_scaling_groups", {"AutoScalingGroups": [{
        "AutoScalingGroupName": GROUP, "MinSize": sizes[0], "MaxSize": sizes[1], "DesiredCapacity": sizes[2],
        "DefaultCooldown": 300, "AvailabilityZones": ["us-east-1a"], "HealthCheckType": "EC2", "CreatedTime": CREATED,
        "Instances": [{"InstanceId": i, "AvailabilityZone": "us-east-1a", "LifecycleState": "Terminating",
                       "HealthStatus": "Healthy", "ProtectedFromScaleIn": False} for i in instances]}]},
        {"AutoScalingGroupNames": [GROUP]})


def _recorded(stubs: dict[str, Stubber]) -> None:
    """The group as the deletion finds it: 2 workers, at most 4."""
    _group_has(stubs, "i-0aaaaaaaaaaaaaaa2", "i-0aaaaaaaaaaaaaaa3", sizes=(2, 4, 2))


def _restored(stubs: dict[str, Stubber]) -> None:
    stubs["autoscaling"].add_response("update_auto_scaling_group", {}, {
        "AutoScalingGroupName": GROUP, "MinSize": 2, "MaxSize": 4, "DesiredCapacity": 2})


def _empty_bucket(stubs: dict[str, Stubber], *keys: str) -> None:
    s3 = stubs["s3"]
    versions = [{"Key": k, "VersionId": f"v{i}"} for i, k in enumerate(keys)]
    s3.add_response("list_object_versions", {"Versions": versions, "IsTruncated": False}, {"Bucket": BUCKET})
    if versions:
        s3.add_response("delete_objects", {}, {"Bucket": BUCKET, "Delete": {"Quiet": True, "Objects": versions}})


def _stack_is(stubs: dict[str, Stubber], status: str, reason: str = "") -> None:
    extra = {"StackStatusReason": reason} if reason else {}
    stubs["cloudformation"].add_response("describe_stacks", {"Stacks": [{
        "StackName": STACK, "StackId": STACK_ID, "CreationTime": CREATED, "StackStatus": status, **extra}]},
        {"StackName": STACK_ID})


def _delete_stack(stubs: dict[str, Stubber]) -> None:
    stubs["cloudformation"].add_response("delete_stack", {}, {"StackName": STACK_ID, "RoleARN": ROLE})


def test_delete_records_the_group_empties_it_deletes_as_the_service_role_and_empties_the_bucket_until_gone(
        stubs: dict[str, Stubber], tmp_path: Path) -> None:
    """No writer is left when the bucket is emptied: the timer is stopped, the group is at 0 with no
    instance left; the emptying repeats while the stack is being deleted (a write after the first
    one is removed by the next) and cannot be cut short by SIGTERM, which is back afterwards."""
    _describe(stubs, {"IdleMinutes": "30"}, DELETING)
    _recorded(stubs)
    _scale_to_zero(stubs)
    _group_has(stubs, "i-0aaaaaaaaaaaaaaa2", "i-0aaaaaaaaaaaaaaa3")  # still terminating
    _group_has(stubs)
    _delete_stack(stubs)
    _empty_bucket(stubs, "cluster-key/id_ed25519", "nodes/i-1/ready", "logs/i-1/agent.log")
    _stack_is(stubs, "DELETE_IN_PROGRESS")
    _empty_bucket(stubs, "cluster-key/idle.json")  # written after the first emptying
    _stack_is(stubs, "DELETE_IN_PROGRESS")
    _empty_bucket(stubs)
    _stack_is(stubs, "DELETE_COMPLETE")
    sigterm_while_emptying = []
    stubs["s3"].client.meta.events.register(  # type: ignore[attr-defined]
        "provide-client-params.s3.ListObjectVersions", lambda **_: sigterm_while_emptying.append(
            signal.getsignal(signal.SIGTERM)))
    slept: list[float] = []
    shutdown = _shutdown(stubs, tmp_path, sleep=slept.append)
    before = signal.getsignal(signal.SIGTERM)
    progress: dict[str, Any] = {}
    done = shutdown.act(shutdown.limits(), _acting(progress))
    assert done == (f"worker group {GROUP} at 0; DeleteStack sent as {ROLE}; key bucket {BUCKET} emptied "
                    "(4 versions); stack DELETE_COMPLETE")
    assert slept == [WORKERS_POLL_S, DELETE_POLL_S, DELETE_POLL_S]
    assert sigterm_while_emptying == [signal.SIG_IGN] * 3 and signal.getsignal(signal.SIGTERM) == before
    assert progress["group"] == {"MinSize": 2, "MaxSize": 4, "DesiredCapacity": 2}
    assert _journal(tmp_path) == [TIMER_STOP]  # the master is going: its timer stays stopped


def test_a_group_still_not_empty_after_the_bound_is_deleted_anyway_and_the_line_says_so(
        stubs: dict[str, Stubber], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1_000.0]
    monkeypatch.setattr(idle_master, "now", lambda: clock[0])
    _describe(stubs, {"IdleMinutes": "30"}, DELETING)
    _recorded(stubs)
    _scale_to_zero(stubs)
    polls = int(WORKERS_GONE_S // WORKERS_POLL_S) + 1  # the last look is at the deadline
    for _ in range(polls):
        _group_has(stubs, "i-0aaaaaaaaaaaaaaa2")
    _delete_stack(stubs)
    _empty_bucket(stubs, "nodes/i-0aaaaaaaaaaaaaaa2/ready")
    _stack_is(stubs, "DELETE_COMPLETE")

    def sleep(seconds: float) -> None:
        clock[0] += seconds

    shutdown = _shutdown(stubs, tmp_path, sleep=sleep)
    done = shutdown.act(shutdown.limits(), _acting())
    assert f"1 worker(s) still there after {WORKERS_GONE_S:g} s; DeleteStack sent as {ROLE}" in done
    assert clock[0] == 1_000.0 + WORKERS_GONE_S


def test_a_refused_deletestack_restores_nothing_leaves_the_bucket_whole_and_lets_the_timer_run(
        stubs: dict[str, Stubber], tmp_path: Path) -> None:
    _describe(stubs, {"IdleMinutes": "30"}, DELETING)
    _recorded(stubs)
    _scale_to_zero(stubs)
    _group_has(stubs)
    stubs["cloudformation"].add_client_error("delete_stack", "AccessDenied", "not authorized to perform: "
                                             "iam:PassRole", 403, expected_params={"StackName": STACK_ID,
                                                                                 "RoleARN": ROLE})
    shutdown = _shutdown(stubs, tmp_path)
    limits = shutdown.limits()
    with pytest.raises(AgentError) as refused:
        shutdown.act(limits, _acting())
    line = str(refused.value)
    assert line.startswith(f"stack {STACK} not deleted: ") and "iam:PassRole" in line
    assert f"worker group {GROUP} left at 0 until the next try, or put back by the first refresh that finds the " \
           "cluster busy (" in line
    assert f"--auto-scaling-group-name {GROUP} --min-size 2 --max-size 4 --desired-capacity 2" in line
    assert line.endswith(f"key bucket untouched; the next refresh tries again (`cfn-chainermn stack delete {STACK}` "
                         "deletes it from your machine)")
    assert _journal(tmp_path) == [TIMER_STOP, TIMER_START]


@pytest.mark.parametrize("failure", ["AccessDenied", "EndpointConnectionError"])
def test_a_failed_scaling_changes_nothing_and_sends_no_deletestack(
        stubs: dict[str, Stubber], tmp_path: Path, failure: str) -> None:
    """A refusal or no answer at all (BotoCoreError): the same one line, through aws.py."""
    _describe(stubs, {"IdleMinutes": "30"}, DELETING)
    _recorded(stubs)
    if failure == "AccessDenied":
        stubs["autoscaling"].add_client_error("update_auto_scaling_group", "AccessDenied", "not authorized", 403)
    else:
        _fails_once(stubs["autoscaling"], "UpdateAutoScalingGroup")
    shutdown = _shutdown(stubs, tmp_path)
    limits = shutdown.limits()
    with pytest.raises(AgentError, match=r"not deleted: UpdateAutoScalingGroup failed: .*; nothing changed; key "
                                         "bucket untouched") as failed:
        shutdown.act(limits, _acting())
    assert failure == "AccessDenied" or "Could not connect to the endpoint URL" in str(failed.value)
    assert _journal(tmp_path) == [TIMER_STOP, TIMER_START]


def _fails_once(stubber: Stubber, operation: str) -> None:
    """The next `operation` gets no answer (EndpointConnectionError, a BotoCoreError), raised before
    the Stubber looks at its queue (provide-client-params comes before its before-parameter-build)."""
    from botocore.exceptions import EndpointConnectionError

    client = stubber.client  # type: ignore[attr-defined]
    left = [1]

    def fail(**_: Any) -> None:
        if left.pop() if left else 0:
            raise EndpointConnectionError(endpoint_url=f"https://{client.meta.service_model.endpoint_prefix}.test")

    service = client.meta.service_model.service_id.hyphenize()
    client.meta.events.register(f"provide-client-params.{service}.{operation}", fail)


def test_no_answer_while_emptying_or_reading_the_stack_is_logged_and_tried_again(
        stubs: dict[str, Stubber], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _describe(stubs, {"IdleMinutes": "30"}, DELETING)
    _recorded(stubs)
    _scale_to_zero(stubs)
    _group_has(stubs)
    _delete_stack(stubs)
    # the first look gets no answer, from S3 nor from CloudFormation: nothing of the queue is used
    _empty_bucket(stubs, "nodes/i-1/ready")
    _stack_is(stubs, "DELETE_IN_PROGRESS")
    _empty_bucket(stubs)
    _stack_is(stubs, "DELETE_COMPLETE")
    logs: list[str] = []
    clock = [0.0]
    monkeypatch.setattr(idle_master, "now", lambda: clock[0])
    shutdown = _shutdown(stubs, tmp_path, sleep=lambda seconds: clock.__setitem__(0, clock[0] + seconds))
    limits = shutdown.limits()
    _fails_once(stubs["s3"], "ListObjectVersions")
    _fails_once(stubs["cloudformation"], "DescribeStacks")  # armed after the limits' read
    done = shutdown.act(limits, _acting(logs=logs))
    assert done.endswith("emptied (1 versions); stack DELETE_COMPLETE")
    assert logs == [f"idle: key bucket {BUCKET} not emptied: emptying bucket {BUCKET}: Could not connect to the "
                    "endpoint URL: \"https://s3.test\"; trying again in 15 s",
                    f"idle: stack {STACK} not read: DescribeStacks failed: Could not connect to the endpoint URL: "
                    "\"https://cloudformation.test\"; reading it again in 15 s"]


def _events(stubs: dict[str, Stubber]) -> None:
    """This deletion's events, newest first: the bucket refused (a write after the last emptying)."""
    def event(n: int, logical: str, kind: str, status: str, reason: str = "") -> dict[str, Any]:
        return {"StackId": STACK_ID, "EventId": f"e{n}", "StackName": STACK, "LogicalResourceId": logical,
                "PhysicalResourceId": STACK_ID if kind == "AWS::CloudFormation::Stack" else logical.lower(),
                "ResourceType": kind, "Timestamp": CREATED, "ResourceStatus": status, "ResourceStatusReason": reason}

    stubs["cloudformation"].add_response("describe_stack_events", {"StackEvents": [
        event(5, STACK, "AWS::CloudFormation::Stack", "DELETE_FAILED",
              "The following resource(s) failed to delete: [KeyBucket]. "),
        event(4, "KeyBucket", "AWS::S3::Bucket", "DELETE_FAILED", "The bucket you tried to delete is not empty"),
        event(3, "ClusterMaster", "AWS::EC2::Instance", "DELETE_COMPLETE"),
        event(2, STACK, "AWS::CloudFormation::Stack", "DELETE_IN_PROGRESS", "User Initiated"),
        event(1, STACK, "AWS::CloudFormation::Stack", "UPDATE_COMPLETE")]}, {"StackName": STACK_ID})


def _due_state(tmp_path: Path) -> tuple[Path, float]:
    """The master's idle.json at the deadline of a 30-minute limit: idle for 30 minutes, warned 5 before."""
    state = tmp_path / "idle.json"
    deadline = CREATED.timestamp() + 3600
    IdleState(idle_since=deadline - 1800, warned=deadline, warned_at=deadline - 300).save(state)
    return state, deadline


def test_delete_failed_is_told_with_its_root_cause_and_deletestack_is_sent_again_after_a_wait_that_doubles(
        stubs: dict[str, Stubber], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """DeleteStack, the bucket emptied, DescribeStacks says DELETE_FAILED: the events name the
    resource and why; the line (and `stack status`'s record) says what the user runs and when the
    next try is; the timer runs again. The ticks before that try read the limits and nothing else;
    the try sends DeleteStack without touching the group (it may be gone); refused, the wait
    doubles; the next try is sent."""
    state, deadline = _due_state(tmp_path)
    at = [deadline]  # the ticks' clock
    published: list[dict[str, Any]] = []
    hooks = Hooks(probe=Activity, publish=lambda key, body: published.append(json.loads(body)),
                  wall=print, log=print, clock=lambda: at[0])
    _describe(stubs, {"IdleMinutes": "30"}, DELETING)
    _recorded(stubs)
    _scale_to_zero(stubs)
    _group_has(stubs)
    _describe(stubs, {"IdleMinutes": "30"}, DELETING)  # the second look: still due
    _delete_stack(stubs)
    _empty_bucket(stubs, "nodes/i-1/ready")
    _stack_is(stubs, "DELETE_FAILED", "The following resource(s) failed to delete: [KeyBucket]. ")
    _events(stubs)
    clock = [0.0]  # the watch's clock, moved by its sleeps (a watch that missed DELETE_FAILED ends soon)
    monkeypatch.setattr(idle_master, "now", lambda: clock[0])
    shutdown = _shutdown(stubs, tmp_path, sleep=lambda seconds: clock.__setitem__(0, clock[0] + seconds))
    with pytest.raises(NotDone) as failed:
        tick(shutdown, hooks, state)
    line = str(failed.value)
    assert line == (f"stack {STACK} DELETE_FAILED: KeyBucket (AWS::S3::Bucket) DELETE_FAILED: The bucket you tried "
                    f"to delete is not empty; `cfn-chainermn stack delete {STACK}` deletes it from your machine; the "
                    "next try at 2026-01-02 04:04:35Z (in 30 s; the wait doubles at each failure, up to 60 min)")
    assert published[-1]["failed"] == line and published[-1]["acting"] is True
    assert _journal(tmp_path) == [TIMER_STOP, TIMER_START]

    def waiting(seconds: float) -> None:
        """A tick before the next try: DescribeStacks (the limits) alone, the line said again."""
        at[0] = deadline + seconds
        _describe(stubs, {"IdleMinutes": "30"}, DELETING, status="DELETE_FAILED")
        told = len(published)
        assert tick(shutdown, hooks, state).startswith(f"not done: stack {STACK} ")
        assert len(published) == told  # unchanged: not written again within PUBLISH_EVERY_S

    waiting(29)
    at[0] = deadline + 30
    _describe(stubs, {"IdleMinutes": "30"}, DELETING, status="DELETE_FAILED")  # the try: refused
    stubs["cloudformation"].add_client_error("delete_stack", "AccessDenied", "not authorized to perform: "
                                             "cloudformation:DeleteStack", 403,
                                             expected_params={"StackName": STACK_ID, "RoleARN": ROLE})
    refused = (f"not deleted: .*; it stays DELETE_FAILED; `cfn-chainermn stack delete {STACK}` deletes it from your "
               r"machine; the next try at 2026-01-02 04:05:35Z \(in 1 min;")
    with pytest.raises(NotDone, match=refused):
        tick(shutdown, hooks, state)
    assert published[-1]["failed"].startswith(f"stack {STACK} not deleted: DeleteStack failed: AccessDenied")
    waiting(31)
    waiting(89)
    at[0] = deadline + 90
    _describe(stubs, {"IdleMinutes": "30"}, DELETING, status="DELETE_FAILED")  # and the next: sent
    _delete_stack(stubs)
    _empty_bucket(stubs, "cluster-key/idle.json")  # what the failed tick published
    _stack_is(stubs, "DELETE_COMPLETE")
    assert tick(shutdown, hooks, state).endswith("emptied (1 versions); stack DELETE_COMPLETE")
    assert _journal(tmp_path) == [TIMER_STOP, TIMER_START, TIMER_STOP, TIMER_START, TIMER_STOP]
    assert IdleState.load(state).retry == {}


def test_a_bucket_gone_ends_the_emptying_not_the_watch_which_ends_with_the_stacks_state(
        stubs: dict[str, Stubber], tmp_path: Path) -> None:
    """NoSuchBucket says nothing of the stack: the deletion may still fail after it (a resource
    deleted later), so the master reads the stack, without emptying again, until DELETE_FAILED
    (tried again later) or DELETE_COMPLETE."""
    _describe(stubs, {"IdleMinutes": "30"}, DELETING)
    _recorded(stubs)
    _scale_to_zero(stubs)
    _group_has(stubs)
    _delete_stack(stubs)
    stubs["s3"].add_client_error("list_object_versions", "NoSuchBucket", "The specified bucket does not exist", 404,
                                 expected_params={"Bucket": BUCKET})
    _stack_is(stubs, "DELETE_IN_PROGRESS")
    _stack_is(stubs, "DELETE_IN_PROGRESS")  # no ListObjectVersions before it: the bucket is gone
    _stack_is(stubs, "DELETE_FAILED", "The following resource(s) failed to delete: [KeyBucket]. ")
    _events(stubs)
    slept: list[float] = []
    shutdown = _shutdown(stubs, tmp_path, sleep=slept.append)
    with pytest.raises(NotDone) as failed:
        shutdown.act(shutdown.limits(), _acting())
    assert failed.value.backoff and str(failed.value).startswith(f"stack {STACK} DELETE_FAILED: KeyBucket")
    assert slept == [DELETE_POLL_S, DELETE_POLL_S]
    assert _journal(tmp_path) == [TIMER_STOP, TIMER_START]


def test_a_resumed_watch_is_followed_by_a_busy_tick(stubs: dict[str, Stubber], tmp_path: Path) -> None:
    """A watch that ran out left the stack DELETE_IN_PROGRESS; the next tick finds somebody logged
    in: the deletion cannot be called off, so the bucket is emptied and the stack read all the same
    (left alone, the master's own refresh writes would fail the bucket's deletion)."""
    state, deadline = _due_state(tmp_path)
    hooks = Hooks(probe=lambda: Activity(sessions=("chainer@pts/0",)), publish=lambda key, body: None,
                  wall=print, log=print, clock=lambda: deadline + 1800)
    _describe(stubs, {"IdleMinutes": "30"}, DELETING, status="DELETE_IN_PROGRESS")
    _empty_bucket(stubs, "nodes/m/hostfile")
    _stack_is(stubs, "DELETE_COMPLETE")
    line = tick(_shutdown(stubs, tmp_path), hooks, state)
    assert line == f"under way: the deletion followed; key bucket {BUCKET} emptied (1 versions); stack DELETE_COMPLETE"
    assert _journal(tmp_path) == [TIMER_STOP]


def test_a_watch_that_runs_out_lets_the_timer_run_writes_nothing_and_the_next_tick_watches_again(
        stubs: dict[str, Stubber], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1_000.0]
    monkeypatch.setattr(idle_master, "now", lambda: clock[0])
    monkeypatch.setattr(idle_delete, "DELETE_WATCH_S", 2 * DELETE_POLL_S)

    def sleep(seconds: float) -> None:
        clock[0] += seconds

    _describe(stubs, {"IdleMinutes": "30"}, DELETING)
    _recorded(stubs)
    _scale_to_zero(stubs)
    _group_has(stubs)
    _delete_stack(stubs)
    for _ in range(3):  # at 0, 15 and 30 s
        _empty_bucket(stubs)
        _stack_is(stubs, "DELETE_IN_PROGRESS")
    shutdown = _shutdown(stubs, tmp_path, sleep=sleep)
    with pytest.raises(NotDone) as ran_out:
        shutdown.act(shutdown.limits(), _acting())
    assert ran_out.value.quiet and f"still DELETE_IN_PROGRESS after {2 * DELETE_POLL_S:g} s" in str(ran_out.value)
    assert _journal(tmp_path) == [TIMER_STOP, TIMER_START]

    _describe(stubs, {"IdleMinutes": "30"}, DELETING, status="DELETE_IN_PROGRESS")  # no DeleteStack again
    _empty_bucket(stubs, "nodes/m/hostfile")
    _stack_is(stubs, "DELETE_COMPLETE")
    assert shutdown.act(shutdown.limits(), _acting()).endswith("stack DELETE_COMPLETE")
    assert _journal(tmp_path) == [TIMER_STOP, TIMER_START, TIMER_STOP]


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
    _describe(stubs, {"IdleMinutes": "30"}, DELETING)
    _recorded(stubs)
    _scale_to_zero(stubs)
    _group_has(stubs)
    _describe(stubs, later, DELETING)
    _restored(stubs)
    line = tick(_shutdown(stubs, tmp_path), hooks, state)
    assert IdleState.load(state).progress == {} and IdleState.load(state).acted == ""
    return line, published


def test_limits_turned_off_during_the_wait_send_no_deletestack_and_put_the_group_back(
        stubs: dict[str, Stubber], tmp_path: Path) -> None:
    line, published = _tick_while_waiting(stubs, tmp_path, [Activity(), Activity()],
                                          {"IdleMinutes": "off", "MaxHours": "off"})
    assert line == (f"deletion cancelled: idle shutdown was turned off; worker group {GROUP} back to min 2, max 4, "
                    "desired 2")
    assert published[-1]["idle_minutes"] is None and "acting" not in published[-1]
    assert _journal(tmp_path) == [TIMER_STOP, TIMER_START]


def test_a_login_during_the_wait_sends_no_deletestack_and_puts_the_group_back(
        stubs: dict[str, Stubber], tmp_path: Path) -> None:
    line, published = _tick_while_waiting(stubs, tmp_path, [Activity(), Activity(sessions=("chainer@pts/0",))],
                                          {"IdleMinutes": "30"})
    assert line == (f"deletion cancelled: busy again (chainer@pts/0); worker group {GROUP} back to min 2, max 4, "
                    "desired 2")
    assert published[-1]["busy"] == ["chainer@pts/0"] and published[-1]["deadline"] is None
    assert _journal(tmp_path) == [TIMER_STOP, TIMER_START]


def test_a_retry_puts_the_group_back_to_the_sizes_recorded_before_it_went_to_zero(
        stubs: dict[str, Stubber], tmp_path: Path) -> None:
    """A refused DeleteStack left the group at 0; the next try finds it at 0 and records nothing new,
    so calling it off restores what the first try saw."""
    progress: dict[str, Any] = {}
    _describe(stubs, {"IdleMinutes": "30"}, DELETING)
    _recorded(stubs)
    _scale_to_zero(stubs)
    _group_has(stubs)
    stubs["cloudformation"].add_client_error("delete_stack", "AccessDenied", "no", 403)
    shutdown = _shutdown(stubs, tmp_path)
    with pytest.raises(AgentError):
        shutdown.act(shutdown.limits(), _acting(progress))
    _describe(stubs, {"IdleMinutes": "30"}, DELETING)
    _scale_to_zero(stubs)  # no DescribeAutoScalingGroups first: the sizes are kept from the first try
    _group_has(stubs)
    _restored(stubs)
    with pytest.raises(Cancelled, match="back to min 2, max 4, desired 2"):
        shutdown.act(shutdown.limits(), _acting(progress, still_due=lambda: "busy again (job x)"))


def test_a_stack_without_the_role_output_is_named_and_nothing_is_called(
        stubs: dict[str, Stubber], tmp_path: Path) -> None:
    _describe(stubs, {"IdleMinutes": "30"}, {})
    shutdown = _shutdown(stubs, tmp_path)
    with pytest.raises(Exception, match="no output ShutdownRoleArn"):
        shutdown.act(shutdown.limits(), _acting())
    assert _journal(tmp_path) == []


def test_stop_sets_the_worker_group_to_zero_and_stops_the_master(stubs: dict[str, Stubber], tmp_path: Path) -> None:
    _describe(stubs, {"IdleMinutes": "30", "IdleAction": "stop"},
              {"WorkerGroupName": GROUP, "ClusterMasterInstanceId": "i-0aaaaaaaaaaaaaaa1"})
    stubs["autoscaling"].add_response("update_auto_scaling_group", {}, {
        "AutoScalingGroupName": GROUP, "MinSize": 0, "DesiredCapacity": 0})
    stubs["ec2"].add_response("stop_instances", {"StoppingInstances": []}, {"InstanceIds": ["i-0aaaaaaaaaaaaaaa1"]})
    shutdown = _shutdown(stubs, tmp_path)
    done = shutdown.act(shutdown.limits(), _acting())
    assert done == f"worker group {GROUP} set to 0, master i-0aaaaaaaaaaaaaaa1 stopping (EFS kept)"
    assert _journal(tmp_path) == []


def test_the_calls_are_those_the_template_grants_the_master(stubs: dict[str, Stubber]) -> None:
    """Each call above is an action of the master's idle statements (its role's inline ones and the
    idle policies attached to it, under the action's condition), on the resource they scope."""
    from cfn_chainermn.config.model import ClusterConfig
    from cfn_chainermn.template import template_dict

    res = template_dict(ClusterConfig())["Resources"]
    documents = [(None, res["MasterRole"]["Properties"]["Policies"][0]["PolicyDocument"]),
                 *((res[n]["Condition"], res[n]["Properties"]["PolicyDocument"])
                   for n in ("MasterIdleDeletePolicy", "MasterIdleStopPolicy"))]
    granted: dict[tuple[str, str | None], list[Any]] = {}
    for condition, document in documents:
        for s in document["Statement"]:
            cond, s = (s["Fn::If"][0], s["Fn::If"][1]) if "Fn::If" in s else (condition, s)
            for action in s["Action"]:
                granted.setdefault((action, cond), []).extend(s["Resource"])
    stack_id, deletes, stops = {"Ref": "AWS::StackId"}, "IdleDeletesStack", "IdleStopsNodes"
    group = {"Fn::Sub": "arn:${AWS::Partition}:autoscaling:${AWS::Region}:${AWS::AccountId}:autoScalingGroup:*:"
                        "autoScalingGroupName/${WorkerGroup}"}
    assert granted[("cloudformation:DescribeStacks", None)] == [stack_id]
    assert granted[("cloudformation:DescribeStackEvents", None)] == [stack_id]
    assert granted[("autoscaling:UpdateAutoScalingGroup", deletes)] == [group]
    assert granted[("autoscaling:DescribeAutoScalingGroups", deletes)] == ["*"]  # it takes no other Resource
    assert granted[("cloudformation:DeleteStack", deletes)] == [stack_id]
    assert granted[("iam:PassRole", deletes)] == [{"Fn::GetAtt": ["ShutdownRole", "Arn"]}]
    assert granted[("s3:ListBucketVersions", deletes)] == [{"Fn::Sub": "${KeyBucket.Arn}"}]
    assert granted[("s3:DeleteObjectVersion", deletes)] == [{"Fn::Sub": "${KeyBucket.Arn}/*"}]
    assert granted[("autoscaling:UpdateAutoScalingGroup", stops)] == [group]
    assert granted[("ec2:StopInstances", stops)] == [
        {"Fn::Sub": "arn:${AWS::Partition}:ec2:${AWS::Region}:${AWS::AccountId}:instance/${ClusterMaster}"}]


def test_an_unexpected_error_midway_still_lets_the_timer_run(stubs: dict[str, Stubber], tmp_path: Path) -> None:
    """Not only the package's errors: whatever ends the sequence before DeleteStack, the master's
    refresh timer is started again (a master left alive without it would never act again)."""
    _describe(stubs, {"IdleMinutes": "30"}, DELETING)
    _recorded(stubs)
    _scale_to_zero(stubs)
    _group_has(stubs)

    def broken() -> str:
        raise RuntimeError("the probe broke")

    shutdown = _shutdown(stubs, tmp_path)
    with pytest.raises(RuntimeError):
        shutdown.act(shutdown.limits(), _acting(still_due=broken))
    assert _journal(tmp_path) == [TIMER_STOP, TIMER_START]


def test_call_off_puts_the_group_back_after_a_refused_deletestack_but_leaves_a_deleting_stack_alone(
        stubs: dict[str, Stubber], tmp_path: Path) -> None:
    """What the refused DeleteStack left (the group at 0, its sizes recorded) is undone by the first
    refresh that finds the cluster busy (idle_tick.tick calls call_off); a stack whose deletion began is not."""
    _describe(stubs, {"IdleMinutes": "30"}, DELETING)
    _recorded(stubs)
    _scale_to_zero(stubs)
    _group_has(stubs)
    stubs["cloudformation"].add_client_error("delete_stack", "Throttling", "Rate exceeded", 400,
                                             expected_params={"StackName": STACK_ID, "RoleARN": ROLE})
    progress: dict[str, Any] = {}
    shutdown = _shutdown(stubs, tmp_path)
    with pytest.raises(AgentError):
        shutdown.act(shutdown.limits(), _acting(progress))
    assert progress["scaled"] and progress["group"] == {"MinSize": 2, "MaxSize": 4, "DesiredCapacity": 2}
    _describe(stubs, {"IdleMinutes": "30"}, DELETING)
    _restored(stubs)
    later = _shutdown(stubs, tmp_path)
    later.limits()
    assert later.call_off(progress) == f"worker group {GROUP} back to min 2, max 4, desired 2"
    _describe(stubs, {"IdleMinutes": "30"}, DELETING, "DELETE_FAILED")
    deleting = _shutdown(stubs, tmp_path)
    deleting.limits()
    assert deleting.call_off(progress) == ""  # no AWS call: the Stubber has nothing more queued
    assert later.call_off({}) == ""


def test_a_stop_of_the_refresh_during_the_workers_wait_starts_the_timer_again(
        stubs: dict[str, Stubber], tmp_path: Path) -> None:
    """`systemctl stop` sends SIGTERM, whose Python default kills at once, past every finally: during
    the wait for the workers it ends the run with SystemExit instead, after the timer is started again."""
    _describe(stubs, {"IdleMinutes": "30"}, DELETING)
    _recorded(stubs)
    _scale_to_zero(stubs)
    _group_has(stubs, "i-0aaaaaaaaaaaaaaa2")
    before = signal.getsignal(signal.SIGTERM)

    def stopped(seconds: float) -> None:  # the first pause of the wait: systemd stops the service
        # without a handler SIGTERM would end pytest itself: fail instead (a handler of the run's own)
        assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, before)
        os.kill(os.getpid(), signal.SIGTERM)

    shutdown = _shutdown(stubs, tmp_path, sleep=stopped)
    with pytest.raises(SystemExit) as ended:
        shutdown.act(shutdown.limits(), _acting())
    assert ended.value.code == 128 + signal.SIGTERM
    assert _journal(tmp_path) == [TIMER_STOP, TIMER_START]
    assert signal.getsignal(signal.SIGTERM) is before
