"""The master's idle shutdown on AWS (node/idle_master.py), call by call (Stubber: the real API
models check every parameter): the limits come from DescribeStacks of its own stack; deleting
stops the refresh timer, scales this stack's worker group to 0 and waits until it has no
instance, sends DeleteStack as the stack's ShutdownRole to the stack's id, then empties the key
bucket with SIGTERM ignored; a refused call before DeleteStack restores nothing, leaves the
bucket alone and lets the timer run again; stopping sets the worker group to 0 and stops the
master; every call is one the template grants the master, on the resource it scopes."""

from __future__ import annotations

import datetime as dt
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from cfn_chainermn.errors import AgentError
from cfn_chainermn.node import idle_master
from cfn_chainermn.node.idle import Limits
from cfn_chainermn.node.idle_master import WORKERS_GONE_S, WORKERS_POLL_S, AwsShutdown
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


def _describe(stubs: dict[str, Stubber], params: dict[str, str], outputs: dict[str, str]) -> None:
    stubs["cloudformation"].add_response("describe_stacks", {"Stacks": [{
        "StackName": STACK, "StackId": STACK_ID, "CreationTime": CREATED, "StackStatus": "UPDATE_COMPLETE",
        "Parameters": [{"ParameterKey": k, "ParameterValue": v} for k, v in params.items()],
        "Outputs": [{"OutputKey": k, "OutputValue": v} for k, v in outputs.items()]}]}, {"StackName": STACK})


def _journal(root: Path) -> list[str]:
    path = root / JOURNAL.lstrip("/")
    return path.read_text().splitlines() if path.exists() else []


def test_limits_are_the_stacks_own_parameters_read_by_name(stubs: dict[str, Stubber], tmp_path: Path) -> None:
    _describe(stubs, {"IdleMinutes": "45", "MaxHours": "off", "IdleAction": "delete", "Workers": "2"}, {})
    assert _shutdown(stubs, tmp_path).limits() == Limits(45, None, "delete", CREATED.timestamp())


def _scale_to_zero(stubs: dict[str, Stubber]) -> None:
    stubs["autoscaling"].add_response("update_auto_scaling_group", {}, {
        "AutoScalingGroupName": GROUP, "MinSize": 0, "MaxSize": 0, "DesiredCapacity": 0})


def _group_has(stubs: dict[str, Stubber], *instances: str) -> None:
    stubs["autoscaling"].add_response("describe_auto_scaling_groups", {"AutoScalingGroups": [{
        "AutoScalingGroupName": GROUP, "MinSize": 0, "MaxSize": 0, "DesiredCapacity": 0, "DefaultCooldown": 300,
        "AvailabilityZones": ["us-east-1a"], "HealthCheckType": "EC2", "CreatedTime": CREATED,
        "Instances": [{"InstanceId": i, "AvailabilityZone": "us-east-1a", "LifecycleState": "Terminating",
                       "HealthStatus": "Healthy", "ProtectedFromScaleIn": False} for i in instances]}]},
        {"AutoScalingGroupNames": [GROUP]})


def _empty_bucket(stubs: dict[str, Stubber]) -> None:
    s3 = stubs["s3"]
    s3.add_response("list_object_versions", {
        "Versions": [{"Key": "cluster-key/id_ed25519", "VersionId": "v1"},
                     {"Key": "nodes/i-1/ready", "VersionId": "v2"}],
        "DeleteMarkers": [{"Key": "logs/i-1/agent.log", "VersionId": "v3"}], "IsTruncated": False}, {"Bucket": BUCKET})
    s3.add_response("delete_objects", {}, {"Bucket": BUCKET, "Delete": {"Quiet": True, "Objects": [
        {"Key": "cluster-key/id_ed25519", "VersionId": "v1"}, {"Key": "nodes/i-1/ready", "VersionId": "v2"},
        {"Key": "logs/i-1/agent.log", "VersionId": "v3"}]}})


def test_delete_empties_the_worker_group_first_then_deletes_as_the_service_role_then_empties_the_bucket(
        stubs: dict[str, Stubber], tmp_path: Path) -> None:
    """No writer is left when the bucket is emptied: the timer is stopped, the group is at 0 with no
    instance left; the emptying itself cannot be cut short by SIGTERM (CloudFormation terminates the
    master meanwhile), and SIGTERM is back to what it was afterwards."""
    _describe(stubs, {"IdleMinutes": "30"}, DELETING)
    _scale_to_zero(stubs)
    _group_has(stubs, "i-0aaaaaaaaaaaaaaa2", "i-0aaaaaaaaaaaaaaa3")  # still terminating
    _group_has(stubs)
    stubs["cloudformation"].add_response("delete_stack", {}, {"StackName": STACK_ID, "RoleARN": ROLE})
    _empty_bucket(stubs)
    sigterm_while_emptying = []
    stubs["s3"].client.meta.events.register(  # type: ignore[attr-defined]
        "provide-client-params.s3.DeleteObjects", lambda **_: sigterm_while_emptying.append(
            signal.getsignal(signal.SIGTERM)))
    slept: list[float] = []
    shutdown = _shutdown(stubs, tmp_path, sleep=slept.append)
    before = signal.getsignal(signal.SIGTERM)
    done = shutdown.act(shutdown.limits(), "idle for 30 minutes")
    assert done == (f"worker group {GROUP} at 0; DeleteStack sent as {ROLE}; key bucket {BUCKET} emptied "
                    "(3 versions)")
    assert slept == [WORKERS_POLL_S]
    assert sigterm_while_emptying == [signal.SIG_IGN] and signal.getsignal(signal.SIGTERM) == before
    assert _journal(tmp_path) == ["systemctl disable --now cfn-chainermn-refresh.timer"]


def test_a_group_still_not_empty_after_the_bound_is_deleted_anyway_and_the_line_says_so(
        stubs: dict[str, Stubber], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1_000.0]
    monkeypatch.setattr(idle_master, "now", lambda: clock[0])
    _describe(stubs, {"IdleMinutes": "30"}, DELETING)
    _scale_to_zero(stubs)
    polls = int(WORKERS_GONE_S // WORKERS_POLL_S) + 1  # the last look is at the deadline
    for _ in range(polls):
        _group_has(stubs, "i-0aaaaaaaaaaaaaaa2")
    stubs["cloudformation"].add_response("delete_stack", {}, {"StackName": STACK_ID, "RoleARN": ROLE})
    _empty_bucket(stubs)

    def sleep(seconds: float) -> None:
        clock[0] += seconds

    shutdown = _shutdown(stubs, tmp_path, sleep=sleep)
    done = shutdown.act(shutdown.limits(), "idle for 30 minutes")
    assert f"1 worker(s) still there after {WORKERS_GONE_S:g} s; DeleteStack sent as {ROLE}" in done
    assert clock[0] == 1_000.0 + WORKERS_GONE_S


def test_a_refused_deletestack_restores_nothing_leaves_the_bucket_whole_and_lets_the_timer_run(
        stubs: dict[str, Stubber], tmp_path: Path) -> None:
    _describe(stubs, {"IdleMinutes": "30"}, DELETING)
    _scale_to_zero(stubs)
    _group_has(stubs)
    stubs["cloudformation"].add_client_error("delete_stack", "AccessDenied", "not authorized to perform: "
                                             "iam:PassRole", 403, expected_params={"StackName": STACK_ID,
                                                                                 "RoleARN": ROLE})
    shutdown = _shutdown(stubs, tmp_path)
    limits = shutdown.limits()
    with pytest.raises(AgentError) as refused:
        shutdown.act(limits, "idle for 30 minutes")
    line = str(refused.value)
    assert line.startswith(f"stack {STACK} not deleted: ") and "iam:PassRole" in line
    assert f"worker group {GROUP} left at 0 (nothing is restored;" in line
    assert f"--auto-scaling-group-name {GROUP} --max-size N --desired-capacity N" in line
    assert line.endswith("key bucket untouched; the next refresh tries again")
    assert _journal(tmp_path) == ["systemctl disable --now cfn-chainermn-refresh.timer",
                                  "systemctl enable --now cfn-chainermn-refresh.timer"]


def test_a_refused_scaling_changes_nothing_and_sends_no_deletestack(stubs: dict[str, Stubber], tmp_path: Path) -> None:
    _describe(stubs, {"IdleMinutes": "30"}, DELETING)
    stubs["autoscaling"].add_client_error("update_auto_scaling_group", "AccessDenied", "not authorized", 403)
    shutdown = _shutdown(stubs, tmp_path)
    limits = shutdown.limits()
    with pytest.raises(AgentError, match=r"not deleted: .*; nothing changed; key bucket untouched"):
        shutdown.act(limits, "idle for 30 minutes")
    assert _journal(tmp_path) == ["systemctl disable --now cfn-chainermn-refresh.timer",
                                  "systemctl enable --now cfn-chainermn-refresh.timer"]


def test_a_stack_without_the_role_output_is_named_and_nothing_is_called(
        stubs: dict[str, Stubber], tmp_path: Path) -> None:
    _describe(stubs, {"IdleMinutes": "30"}, {})
    shutdown = _shutdown(stubs, tmp_path)
    with pytest.raises(Exception, match="no output ShutdownRoleArn"):
        shutdown.act(shutdown.limits(), "idle")
    assert _journal(tmp_path) == []


def test_stop_sets_the_worker_group_to_zero_and_stops_the_master(stubs: dict[str, Stubber], tmp_path: Path) -> None:
    _describe(stubs, {"IdleMinutes": "30", "IdleAction": "stop"},
              {"WorkerGroupName": GROUP, "ClusterMasterInstanceId": "i-0aaaaaaaaaaaaaaa1"})
    stubs["autoscaling"].add_response("update_auto_scaling_group", {}, {
        "AutoScalingGroupName": GROUP, "MinSize": 0, "DesiredCapacity": 0})
    stubs["ec2"].add_response("stop_instances", {"StoppingInstances": []}, {"InstanceIds": ["i-0aaaaaaaaaaaaaaa1"]})
    shutdown = _shutdown(stubs, tmp_path)
    done = shutdown.act(shutdown.limits(), "idle for 30 minutes")
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
    assert granted[("autoscaling:UpdateAutoScalingGroup", deletes)] == [group]
    assert granted[("autoscaling:DescribeAutoScalingGroups", deletes)] == ["*"]  # it takes no other Resource
    assert granted[("cloudformation:DeleteStack", deletes)] == [stack_id]
    assert granted[("iam:PassRole", deletes)] == [{"Fn::GetAtt": ["ShutdownRole", "Arn"]}]
    assert granted[("s3:ListBucketVersions", deletes)] == [{"Fn::Sub": "${KeyBucket.Arn}"}]
    assert granted[("s3:DeleteObjectVersion", deletes)] == [{"Fn::Sub": "${KeyBucket.Arn}/*"}]
    assert granted[("autoscaling:UpdateAutoScalingGroup", stops)] == [group]
    assert granted[("ec2:StopInstances", stops)] == [
        {"Fn::Sub": "arn:${AWS::Partition}:ec2:${AWS::Region}:${AWS::AccountId}:instance/${ClusterMaster}"}]
