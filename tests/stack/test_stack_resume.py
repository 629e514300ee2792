"""`stack scale` brings back a cluster idle shutdown stopped: the stop happens outside CloudFormation
(the master sets its worker group's minimum and desired size to 0 and stops itself, as
node/idle_master.py does), so the stack still says N workers. Scaling to the same N starts the
master and sizes the group as the template does; scaling to another N lets the change set size the
group and starts the master. Against moto on 127.0.0.1."""

from __future__ import annotations

import io
from typing import Any

import pytest
from stack_helpers import arrange_default_subnet, cluster_client

NAME = "resume"
pytestmark = pytest.mark.filterwarnings("ignore:Tried to parse .* not supported by moto:UserWarning")


def _stopped_cluster(run_cli: Any) -> tuple[str, str]:
    """A stack of 2 workers that idle shutdown's `stop` has acted on; (master id, group name)."""
    ec2 = cluster_client("ec2")
    vpc, subnet = arrange_default_subnet(ec2)
    created = run_cli("stack", "create", NAME, "--key-name", "demo-key", "--ssh-cidr", "203.0.113.7/32",
                      "--instance-type", "g5.xlarge", "--workers", "2", "--vpc-id", vpc, "--subnet-id", subnet,
                      "--idle-minutes", "30", "--idle-action", "stop", "--yes")
    assert created.code == 0, created.err
    master, group = _outputs()
    cluster_client("autoscaling").update_auto_scaling_group(AutoScalingGroupName=group, MinSize=0, DesiredCapacity=0)
    ec2.stop_instances(InstanceIds=[master])
    return master, group


def _outputs() -> tuple[str, str]:
    """The stack's master id and worker group name, as its outputs say now."""
    outputs = {o["OutputKey"]: o["OutputValue"]
               for o in cluster_client("cloudformation").describe_stacks(StackName=NAME)["Stacks"][0]["Outputs"]}
    return outputs["ClusterMasterInstanceId"], outputs["WorkerGroupName"]


def _state(master: str, group: str) -> tuple[str, tuple[int, int, int]]:
    """The master's state and the group's (min, max, desired)."""
    instance = cluster_client("ec2").describe_instances(InstanceIds=[master])["Reservations"][0]["Instances"][0]
    asg = cluster_client("autoscaling")
    (g,) = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[group])["AutoScalingGroups"]
    return instance["State"]["Name"], (g["MinSize"], g["MaxSize"], g["DesiredCapacity"])


def test_scale_to_the_stacks_own_count_asks_then_resumes_a_stopped_cluster(
        emulator: Any, run_cli: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    master, group = _stopped_cluster(run_cli)
    assert _state(master, group) == ("stopped", (0, 2, 0))
    monkeypatch.setattr("sys.stdin", io.StringIO("n\n"))
    declined = run_cli("stack", "scale", NAME, "--workers", "2")
    assert declined.code == 1
    assert (f"Stack {NAME} is stopped: start the master {master} and set worker group {group} from min 0 / max 2 / "
            "desired 0 to 0 / 2 / 2? [y/N]") in declined.err
    assert _state(master, group) == ("stopped", (0, 2, 0))  # a no changes nothing
    resumed = run_cli("stack", "scale", NAME, "--workers", "2", "--yes")
    assert resumed.code == 0, resumed.err
    assert _state(master, group) == ("running", (0, 2, 2))
    assert resumed.err.splitlines()[-2:] == [
        f"started the master {master}", f"worker group {group} set to 2 (min 0, max 2, desired 2)"]
    again = run_cli("stack", "scale", NAME, "--workers", "2", "--yes")  # now there is nothing to do
    assert again.err.splitlines()[-1] == f"stack {NAME} already has 2 workers; nothing to change"


def test_scale_to_another_count_starts_the_master_after_the_change_set(emulator: Any, run_cli: Any) -> None:
    master, _ = _stopped_cluster(run_cli)
    resumed = run_cli("stack", "scale", NAME, "--workers", "1", "--yes")
    assert resumed.code == 0, resumed.err
    # moto's update replaces the group (and leaves the old name in the output): the stack's resource names it
    group = next(r["PhysicalResourceId"] for r in cluster_client("cloudformation").list_stack_resources(
        StackName=NAME)["StackResourceSummaries"] if r["LogicalResourceId"] == "WorkerGroup")
    assert _state(master, group) == ("running", (0, 1, 1))
    assert resumed.err.splitlines()[-1] == f"started the master {master}"


def test_a_master_still_stopping_is_refused_before_any_change(stubbed: Any, run_cli: Any) -> None:
    """StartInstances refuses a stopping instance: say when to come back (Stubber: moto stops at once)."""
    from stack_helpers import MASTER, OWN, stack

    stubbed("cloudformation").add_response("describe_stacks", {"Stacks": [stack(
        "UPDATE_COMPLETE", Tags=OWN, Parameters=[{"ParameterKey": "WorkerCount", "ParameterValue": "2"}],
        Outputs=[{"OutputKey": "ClusterMasterInstanceId", "OutputValue": MASTER}])]}, {"StackName": "demo"})
    stubbed("ec2").add_response("describe_instances", {"Reservations": [{"Instances": [
        {"InstanceId": MASTER, "State": {"Name": "stopping"}}]}]}, {"InstanceIds": [MASTER]})
    stubbed("autoscaling")  # nothing queued: no group is touched
    result = run_cli("stack", "scale", "demo", "--workers", "2", "--yes")
    assert result.code == 3
    assert result.err.splitlines()[-1] == (
        f"error: the master {MASTER} is stopping (idle shutdown's stop); run this again once it is stopped")
