"""The master's idle shutdown on AWS, call by call (Stubber: the real API models check every
parameter): the limits come from DescribeStacks of its own stack; deleting stops the refresh
timer, sends DeleteStack as the stack's ShutdownRole to the stack's id, then empties the key
bucket; a refused DeleteStack leaves the bucket alone; stopping sets the worker group to 0 and
stops the master."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from cfn_chainermn.errors import AwsError
from cfn_chainermn.node.idle import Limits
from cfn_chainermn.node.idle_master import AwsShutdown
from cfn_chainermn.node.system import JOURNAL, System

STACK = "demo"
STACK_ID = "arn:aws:cloudformation:us-east-1:123456789012:stack/demo/0f1e2d3c-aaaa-bbbb-cccc-000000000001"
ROLE = "arn:aws:iam::123456789012:role/demo-ShutdownRole-AbCdEf"
BUCKET = "demo-keybucket-abc"
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


def _shutdown(stubs: dict[str, Stubber], root: Path) -> AwsShutdown:
    c = {name: s.client for name, s in stubs.items()}  # type: ignore[attr-defined]
    return AwsShutdown(c["cloudformation"], c["s3"], c["ec2"], c["autoscaling"], STACK, BUCKET, System(root))


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


def test_delete_sends_deletestack_as_the_service_role_then_empties_the_bucket(
        stubs: dict[str, Stubber], tmp_path: Path) -> None:
    _describe(stubs, {"IdleMinutes": "30"}, {"ShutdownRoleArn": ROLE})
    cfn, s3 = stubs["cloudformation"], stubs["s3"]
    cfn.add_response("delete_stack", {}, {"StackName": STACK_ID, "RoleARN": ROLE})
    s3.add_response("list_object_versions", {
        "Versions": [{"Key": "cluster-key/id_ed25519", "VersionId": "v1"},
                     {"Key": "nodes/i-1/ready", "VersionId": "v2"}],
        "DeleteMarkers": [{"Key": "logs/i-1/agent.log", "VersionId": "v3"}], "IsTruncated": False}, {"Bucket": BUCKET})
    s3.add_response("delete_objects", {}, {"Bucket": BUCKET, "Delete": {"Quiet": True, "Objects": [
        {"Key": "cluster-key/id_ed25519", "VersionId": "v1"}, {"Key": "nodes/i-1/ready", "VersionId": "v2"},
        {"Key": "logs/i-1/agent.log", "VersionId": "v3"}]}})
    shutdown = _shutdown(stubs, tmp_path)
    limits = shutdown.limits()
    done = shutdown.act(limits, "idle for 30 minutes")
    assert done == f"DeleteStack sent as {ROLE}; key bucket {BUCKET} emptied (3 versions)"
    # the timer is stopped first: nothing writes to the bucket after it is emptied
    assert _journal(tmp_path) == ["systemctl disable --now cfn-chainermn-refresh.timer"]


def test_a_refused_deletestack_leaves_the_bucket_whole_and_the_timer_running(
        stubs: dict[str, Stubber], tmp_path: Path) -> None:
    _describe(stubs, {"IdleMinutes": "30"}, {"ShutdownRoleArn": ROLE})
    stubs["cloudformation"].add_client_error("delete_stack", "AccessDenied", "not authorized to perform: "
                                             "iam:PassRole", 403, expected_params={"StackName": STACK_ID,
                                                                                 "RoleARN": ROLE})
    shutdown = _shutdown(stubs, tmp_path)
    limits = shutdown.limits()
    with pytest.raises(AwsError, match="iam:PassRole"):
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
              {"WorkerGroupName": "demo-WorkerGroup-XYZ", "ClusterMasterInstanceId": "i-0aaaaaaaaaaaaaaa1"})
    stubs["autoscaling"].add_response("update_auto_scaling_group", {}, {
        "AutoScalingGroupName": "demo-WorkerGroup-XYZ", "MinSize": 0, "DesiredCapacity": 0})
    stubs["ec2"].add_response("stop_instances", {"StoppingInstances": []}, {"InstanceIds": ["i-0aaaaaaaaaaaaaaa1"]})
    shutdown = _shutdown(stubs, tmp_path)
    done = shutdown.act(shutdown.limits(), "idle for 30 minutes")
    assert done == "worker group demo-WorkerGroup-XYZ set to 0, master i-0aaaaaaaaaaaaaaa1 stopping (EFS kept)"
    assert _journal(tmp_path) == []


def test_the_calls_are_those_the_template_grants_the_master(stubs: dict[str, Stubber]) -> None:
    """Each call above is an action of the master's idle statements, on the resource they scope."""
    from cfn_chainermn.config.model import ClusterConfig
    from cfn_chainermn.template import template_dict

    statements = template_dict(ClusterConfig())["Resources"]["MasterRole"]["Properties"]["Policies"][0]
    granted: dict[str, Any] = {}
    for s in statements["PolicyDocument"]["Statement"]:
        s = s["Fn::If"][1] if "Fn::If" in s else s
        for action in s["Action"]:
            granted.setdefault(action, []).extend(s["Resource"])
    stack_id = {"Ref": "AWS::StackId"}
    assert granted["cloudformation:DescribeStacks"] == [stack_id]
    assert granted["cloudformation:DeleteStack"] == [stack_id]
    assert granted["iam:PassRole"] == [{"Fn::GetAtt": ["ShutdownRole", "Arn"]}]
    assert granted["s3:ListBucketVersions"] == [{"Fn::Sub": "${KeyBucket.Arn}"}]
    assert {"Fn::Sub": "${KeyBucket.Arn}/*"} in granted["s3:DeleteObjectVersion"]
    assert "autoscaling:UpdateAutoScalingGroup" in granted and "ec2:StopInstances" in granted
