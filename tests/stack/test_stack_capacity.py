"""When EC2 has no instances to give (issue 13 item 3): the failure names capacity and the
options. The master's event carries RunInstances' error; the worker group's says only that
signals did not come, so its last failed scaling activity is read (Stubber pins the call)."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from stack_helpers import BUCKET, NAME, STACK_ID, event, stack

from cfn_chainermn.stack import diagnose

SPOT_SHORT = ("Could not launch Spot Instances. InsufficientInstanceCapacity - There is no Spot capacity available "
              "that matches your request. Launching EC2 instance failed.")
MASTER_SHORT = ("We currently do not have sufficient p3.16xlarge capacity in the Availability Zone you requested "
                "(us-east-1a). Our system will be working on provisioning additional capacity. (Service: Ec2, "
                "Status Code: 500, Error Code: InsufficientInstanceCapacity)")
GROUP = "demo-WorkerGroup-1XK2Y1UN6VOR"


@pytest.mark.parametrize("text", [SPOT_SHORT, MASTER_SHORT, "UnfulfillableCapacity: the placement group is full"])
def test_capacity_failures_get_the_options(text: str) -> None:
    advice = diagnose.capacity_advice(text)
    assert advice is not None and advice.startswith("EC2 has no capacity for these instances here now")
    for option in ("--az", "--workers", "--worker-instance-type", "--spot-instance-types", "--on-demand-workers"):
        assert option in advice


@pytest.mark.parametrize("text", ["Failed to receive 2 resource signal(s) within the specified duration",
                                  "You have requested more vCPU capacity than your current vCPU limit of 32 allows"])
def test_other_failures_get_none(text: str) -> None:
    assert diagnose.capacity_advice(text) is None


def _autoscaling(activities: list[dict[str, Any]]) -> tuple[Any, Stubber]:
    client = boto3.client("autoscaling", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    stub = Stubber(client)
    stub.add_response("describe_scaling_activities", {"Activities": activities},
                      {"AutoScalingGroupName": GROUP, "MaxRecords": 10})
    stub.activate()
    return client, stub


def _activity(n: int, code: str, message: str = "") -> dict[str, Any]:
    return {"ActivityId": f"a-{n}", "AutoScalingGroupName": GROUP, "Cause": "desired capacity 2",
            "StartTime": "2026-12-02T20:00:00Z", "StatusCode": code,
            **({"StatusMessage": message} if message else {})}


def test_the_groups_newest_failed_launch_is_read() -> None:
    client, stub = _autoscaling([_activity(3, "Successful"), _activity(2, "Failed", SPOT_SHORT),
                                 _activity(1, "Failed", "an older failure")])
    assert diagnose.scaling_failure(client, GROUP) == SPOT_SHORT
    stub.assert_no_pending_responses()
    client, _ = _autoscaling([_activity(1, "Successful")])
    assert diagnose.scaling_failure(client, GROUP) is None


def test_watch_of_a_worker_group_without_capacity_names_it_and_the_options(stubbed: Any, run_cli: Any) -> None:
    cfn, ec2, asg = (stubbed(s) for s in ("cloudformation", "ec2", "autoscaling"))
    cfn.add_response("describe_stacks", {"Stacks": [stack("CREATE_IN_PROGRESS")]}, {"StackName": NAME})
    cfn.add_response("describe_stacks", {"Stacks": [stack("CREATE_FAILED")]}, {"StackName": NAME})
    reason = "Received 0 SUCCESS signal(s) out of 2. Unable to satisfy 100% MinSuccessfulInstancesPercent requirement"
    cfn.add_response("describe_stack_events", {"StackEvents": [
        event(6, NAME, "CREATE_FAILED", "The following resource(s) failed to create: [WorkerGroup]"),
        event(5, "WorkerGroup", "CREATE_FAILED", reason, rtype="AWS::AutoScaling::AutoScalingGroup", physical=GROUP),
        event(0, NAME, "CREATE_IN_PROGRESS", "User Initiated")]}, {"StackName": STACK_ID})
    asg.add_response("describe_scaling_activities", {"Activities": [_activity(1, "Failed", SPOT_SHORT)]},
                     {"AutoScalingGroupName": GROUP, "MaxRecords": 10})
    cfn.add_response("list_stack_resources", {"StackResourceSummaries": [
        {"LogicalResourceId": "KeyBucket", "PhysicalResourceId": BUCKET, "ResourceType": "AWS::S3::Bucket",
         "LastUpdatedTimestamp": "2026-01-01T00:00:00Z", "ResourceStatus": "CREATE_COMPLETE"}]}, None)
    ec2.add_response("describe_instances", {"Reservations": []}, {"Filters": [
        {"Name": "tag:cfn-chainermn:cluster", "Values": [NAME]},
        {"Name": "instance-state-name", "Values": ["pending", "running", "shutting-down", "stopping", "stopped"]},
        {"Name": "tag:cfn-chainermn:role", "Values": ["worker"]}]})
    result = run_cli("stack", "watch", NAME, "--region", "us-east-1")
    assert result.code == 3
    err = result.err.splitlines()
    assert f"the worker group's last failed launch: {SPOT_SHORT}" in err
    assert diagnose.CAPACITY_OPTIONS in err
