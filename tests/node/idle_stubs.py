"""The master's AWS side for the idle shutdown tests (test_idle_master.py, test_idle_delete.py):
botocore Stubbers on its four clients, its AwsShutdown over them, and the answers its calls get,
each with the parameters the call must send (the real API models check every one)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
from botocore.stub import Stubber

from cfn_chainermn.node.idle import IdleState
from cfn_chainermn.node.idle_master import AwsShutdown
from cfn_chainermn.node.idle_tick import Acting
from cfn_chainermn.node.system import JOURNAL, System

STACK = "demo"
STACK_ID = "arn:aws:cloudformation:us-east-1:123456789012:stack/demo/0f1e2d3c-aaaa-bbbb-cccc-000000000001"
ROLE = "arn:aws:iam::123456789012:role/demo-ShutdownRole-AbCdEf"
BUCKET = "demo-keybucket-abc"
GROUP = "demo-WorkerGroup-XYZ"
DELETING = {"ShutdownRoleArn": ROLE, "WorkerGroupName": GROUP}
CREATED = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)


def stubbed() -> Iterator[dict[str, Stubber]]:
    """Stubbers on the four clients the master uses, each checked for calls left unmade at the end."""
    kw = {"region_name": "us-east-1", "aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
    clients = {name: boto3.client(name, **kw) for name in ("cloudformation", "s3", "ec2", "autoscaling")}
    stubbers = {name: Stubber(c) for name, c in clients.items()}
    for s in stubbers.values():
        s.activate()
    yield stubbers
    for s in stubbers.values():
        s.assert_no_pending_responses()
        s.deactivate()


TIMER_STOP, TIMER_START = "systemctl stop cfn-chainermn-refresh.timer", "systemctl start cfn-chainermn-refresh.timer"


def shutdown_of(stubs: dict[str, Stubber], root: Path, sleep: Any = None) -> AwsShutdown:
    c = {name: s.client for name, s in stubs.items()}  # type: ignore[attr-defined]
    shutdown = AwsShutdown(c["cloudformation"], c["s3"], c["ec2"], c["autoscaling"], STACK, BUCKET, System(root))
    if sleep is not None:
        shutdown.sleep = sleep
    return shutdown


def describe_stack(stubs: dict[str, Stubber], params: dict[str, str], outputs: dict[str, str],
              status: str = "UPDATE_COMPLETE") -> None:
    stubs["cloudformation"].add_response("describe_stacks", {"Stacks": [{
        "StackName": STACK, "StackId": STACK_ID, "CreationTime": CREATED, "StackStatus": status,
        "Parameters": [{"ParameterKey": k, "ParameterValue": v} for k, v in params.items()],
        "Outputs": [{"OutputKey": k, "OutputValue": v} for k, v in outputs.items()]}]}, {"StackName": STACK})


def journal(root: Path) -> list[str]:
    path = root / JOURNAL.lstrip("/")
    return path.read_text().splitlines() if path.exists() else []


def acting_with(progress: dict[str, Any] | None = None, still_due: Any = lambda: "",
            logs: list[str] | None = None) -> Acting:
    return Acting("idle for 30 minutes", still_due, progress if progress is not None else {}, lambda: None,
                  (logs if logs is not None else []).append)


def scale_to_zero(stubs: dict[str, Stubber]) -> None:
    stubs["autoscaling"].add_response("update_auto_scaling_group", {}, {
        "AutoScalingGroupName": GROUP, "MinSize": 0, "MaxSize": 0, "DesiredCapacity": 0})


def group_has(stubs: dict[str, Stubber], *instances: str, sizes: tuple[int, int, int] = (0, 0, 0)) -> None:
    stubs["autoscaling"].add_response("describe_auto_scaling_groups", {"AutoScalingGroups": [{
        "AutoScalingGroupName": GROUP, "MinSize": sizes[0], "MaxSize": sizes[1], "DesiredCapacity": sizes[2],
        "DefaultCooldown": 300, "AvailabilityZones": ["us-east-1a"], "HealthCheckType": "EC2", "CreatedTime": CREATED,
        "Instances": [{"InstanceId": i, "AvailabilityZone": "us-east-1a", "LifecycleState": "Terminating",
                       "HealthStatus": "Healthy", "ProtectedFromScaleIn": False} for i in instances]}]},
        {"AutoScalingGroupNames": [GROUP]})


def recorded(stubs: dict[str, Stubber]) -> None:
    """The group as the deletion finds it: 2 workers, at most 4."""
    group_has(stubs, "i-0aaaaaaaaaaaaaaa2", "i-0aaaaaaaaaaaaaaa3", sizes=(2, 4, 2))


def restored(stubs: dict[str, Stubber]) -> None:
    stubs["autoscaling"].add_response("update_auto_scaling_group", {}, {
        "AutoScalingGroupName": GROUP, "MinSize": 2, "MaxSize": 4, "DesiredCapacity": 2})


def empty_bucket(stubs: dict[str, Stubber], *keys: str) -> None:
    s3 = stubs["s3"]
    versions = [{"Key": k, "VersionId": f"v{i}"} for i, k in enumerate(keys)]
    s3.add_response("list_object_versions", {"Versions": versions, "IsTruncated": False}, {"Bucket": BUCKET})
    if versions:
        s3.add_response("delete_objects", {}, {"Bucket": BUCKET, "Delete": {"Quiet": True, "Objects": versions}})


def stack_is(stubs: dict[str, Stubber], status: str, reason: str = "") -> None:
    extra = {"StackStatusReason": reason} if reason else {}
    stubs["cloudformation"].add_response("describe_stacks", {"Stacks": [{
        "StackName": STACK, "StackId": STACK_ID, "CreationTime": CREATED, "StackStatus": status, **extra}]},
        {"StackName": STACK_ID})


def delete_stack(stubs: dict[str, Stubber]) -> None:
    stubs["cloudformation"].add_response("delete_stack", {}, {"StackName": STACK_ID, "RoleARN": ROLE})


def fails_once(stubber: Stubber, operation: str) -> None:
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


MASTER = "i-0bbbbbbbbbbbbbbb1"
KEPT = ("The instance '" + MASTER + "' may not be terminated. Modify its 'disableApiTermination' instance attribute "
        "and try again.")  # EC2's OperationNotPermitted for a master with termination protection turned on
FAILED_REASON = "The following resource(s) failed to delete: [ClusterMaster]. "


def failed_delete_events(stubs: dict[str, Stubber]) -> None:
    """This deletion's events, newest first: the master's own termination refused. CloudFormation
    deletes a resource before those it depends on ("Resource A is deleted before resource B",
    DependsOn's page), and the master depends on the bucket, EFS, subnet, VPC and security groups:
    it is still there after DELETE_FAILED only when its own termination (or a resource deleted
    before it, its idle policies) failed; anything else failing finds it terminated already."""
    def event(n: int, logical: str, kind: str, status: str, reason: str = "") -> dict[str, Any]:
        return {"StackId": STACK_ID, "EventId": f"e{n}", "StackName": STACK, "LogicalResourceId": logical,
                "PhysicalResourceId": STACK_ID if kind == "AWS::CloudFormation::Stack" else logical.lower(),
                "ResourceType": kind, "Timestamp": CREATED, "ResourceStatus": status, "ResourceStatusReason": reason}

    stubs["cloudformation"].add_response("describe_stack_events", {"StackEvents": [
        event(5, STACK, "AWS::CloudFormation::Stack", "DELETE_FAILED", FAILED_REASON),
        event(4, "ClusterMaster", "AWS::EC2::Instance", "DELETE_FAILED", KEPT),
        event(3, "MasterIdleStopPolicy", "AWS::IAM::Policy", "DELETE_COMPLETE"),
        event(2, STACK, "AWS::CloudFormation::Stack", "DELETE_IN_PROGRESS", "User Initiated"),
        event(1, STACK, "AWS::CloudFormation::Stack", "UPDATE_COMPLETE")]}, {"StackName": STACK_ID})


def due_state(tmp_path: Path) -> tuple[Path, float]:
    """The master's idle.json at the deadline of a 30-minute limit: idle for 30 minutes, warned 5 before."""
    state = tmp_path / "idle.json"
    deadline = CREATED.timestamp() + 3600
    IdleState(idle_since=deadline - 1800, warned=deadline, warned_at=deadline - 300).save(state)
    return state, deadline
