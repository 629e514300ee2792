"""node/idle_master.py on AWS, call by call (Stubber): the limits come from DescribeStacks of the
master's own stack, which also says whether a deletion is under way; stopping sets the worker group
to 0 and stops the master; calling off a half-done deletion puts the group back, unless the stack is
being deleted; a stack without the outputs is named; every call of idle shutdown (here and in
test_idle_delete.py) is one the template grants the master, on the resource it scopes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.stub import Stubber
from idle_stubs import (
    CREATED,
    DELETING,
    GROUP,
    ROLE,
    STACK_ID,
    acting_with,
    describe_stack,
    group_has,
    journal,
    recorded,
    restored,
    scale_to_zero,
    shutdown_of,
    stubbed,
)

from cfn_chainermn.errors import AgentError
from cfn_chainermn.node import idle_master
from cfn_chainermn.node.idle import Limits
from cfn_chainermn.node.idle_master import HALT_TIMEOUT_S
from cfn_chainermn.node.system import System


@pytest.fixture
def stubs() -> Iterator[dict[str, Stubber]]:
    yield from stubbed()


def test_limits_are_the_stacks_own_parameters_read_by_name(stubs: dict[str, Stubber], tmp_path: Path) -> None:
    describe_stack(stubs, {"IdleMinutes": "45", "MaxHours": "off", "IdleAction": "delete", "Workers": "2"}, {})
    assert shutdown_of(stubs, tmp_path).limits() == Limits(45, None, "delete", CREATED.timestamp())


@pytest.mark.parametrize(("status", "action", "underway"), [("DELETE_IN_PROGRESS", "delete", True),
                                                            ("DELETE_IN_PROGRESS", "stop", False),
                                                            ("DELETE_FAILED", "delete", False),
                                                            ("UPDATE_COMPLETE", "delete", False)])
def test_a_deletion_is_under_way_only_while_cloudformation_deletes_a_stack_whose_limit_deletes(
        stubs: dict[str, Stubber], tmp_path: Path, status: str, action: str, underway: bool) -> None:
    """What the tick then follows busy or not; after DELETE_FAILED a retry waits for the count
    (and its backoff); a stack whose limit stops has no grant to empty its bucket."""
    describe_stack(stubs, {"IdleMinutes": "45", "IdleAction": action}, DELETING, status=status)
    shutdown = shutdown_of(stubs, tmp_path)
    shutdown.limits()
    assert shutdown.underway() is underway


def test_a_stack_without_the_role_output_is_named_and_nothing_is_called(
        stubs: dict[str, Stubber], tmp_path: Path) -> None:
    describe_stack(stubs, {"IdleMinutes": "30"}, {})
    shutdown = shutdown_of(stubs, tmp_path)
    with pytest.raises(Exception, match="no output ShutdownRoleArn"):
        shutdown.act(shutdown.limits(), acting_with())
    assert journal(tmp_path) == []


def test_stop_sets_the_worker_group_to_zero_and_stops_the_master(stubs: dict[str, Stubber], tmp_path: Path) -> None:
    describe_stack(stubs, {"IdleMinutes": "30", "IdleAction": "stop"},
              {"WorkerGroupName": GROUP, "ClusterMasterInstanceId": "i-0aaaaaaaaaaaaaaa1"})
    stubs["autoscaling"].add_response("update_auto_scaling_group", {}, {
        "AutoScalingGroupName": GROUP, "MinSize": 0, "DesiredCapacity": 0})
    stubs["ec2"].add_response("stop_instances", {"StoppingInstances": []}, {"InstanceIds": ["i-0aaaaaaaaaaaaaaa1"]})
    shutdown = shutdown_of(stubs, tmp_path)
    done = shutdown.act(shutdown.limits(), acting_with())
    assert done == f"worker group {GROUP} set to 0, master i-0aaaaaaaaaaaaaaa1 stopping (EFS kept)"
    assert journal(tmp_path) == []


def test_the_calls_are_those_the_template_grants_the_master(stubs: dict[str, Stubber]) -> None:
    """Each call stubbed here and in test_idle_delete.py is an action of the master's idle statements
    (its role's inline ones and the idle policies attached to it, under the action's condition), on
    the resource they scope."""
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
    # a master whose deletion failed stops itself by powering off (AwsShutdown.halt): no grant for it
    assert ("ec2:StopInstances", deletes) not in granted and ("ec2:StopInstances", None) not in granted


def test_call_off_puts_the_group_back_after_a_refused_deletestack_but_leaves_a_deleting_stack_alone(
        stubs: dict[str, Stubber], tmp_path: Path) -> None:
    """What the refused DeleteStack left (the group at 0, its sizes recorded) is undone by the first
    refresh that finds the cluster busy (idle_tick.tick calls call_off); a stack whose deletion began is not."""
    describe_stack(stubs, {"IdleMinutes": "30"}, DELETING)
    recorded(stubs)
    scale_to_zero(stubs)
    group_has(stubs)
    stubs["cloudformation"].add_client_error("delete_stack", "Throttling", "Rate exceeded", 400,
                                             expected_params={"StackName": STACK_ID, "RoleARN": ROLE})
    progress: dict[str, Any] = {}
    shutdown = shutdown_of(stubs, tmp_path)
    with pytest.raises(AgentError):
        shutdown.act(shutdown.limits(), acting_with(progress))
    assert progress["scaled"] and progress["group"] == {"MinSize": 2, "MaxSize": 4, "DesiredCapacity": 2}
    describe_stack(stubs, {"IdleMinutes": "30"}, DELETING)
    restored(stubs)
    later = shutdown_of(stubs, tmp_path)
    later.limits()
    assert later.call_off(progress) == f"worker group {GROUP} back to min 2, max 4, desired 2"
    describe_stack(stubs, {"IdleMinutes": "30"}, DELETING, "DELETE_FAILED")
    deleting = shutdown_of(stubs, tmp_path)
    deleting.limits()
    assert deleting.call_off(progress) == ""  # no AWS call: the Stubber has nothing more queued
    assert later.call_off({}) == ""


def test_a_local_master_records_a_halt_as_it_records_its_action(tmp_path: Path) -> None:
    """A local cluster stops nothing: its stand-in writes down what the master would do."""
    line = idle_master.LocalShutdown(tmp_path).halt()
    assert line == f"local cluster: halt recorded in {tmp_path / idle_master.LOCAL_ACTION}"
    assert json.loads((tmp_path / idle_master.LOCAL_ACTION).read_text())["action"] == "halt"


def test_the_masters_poweroff_is_bounded(stubs: dict[str, Stubber], tmp_path: Path) -> None:
    """A systemctl that hangs would hold the refresh for ever: the poweroff has HALT_TIMEOUT_S, after
    which System.run says so as an AgentError (tests/node/test_system.py), which the tick backs off from."""
    calls: list[tuple[list[str], float | None]] = []

    class Recording(System):
        def run(self, argv: list[str], *, check: bool = True, timeout: float | None = None) -> int:
            calls.append((argv, timeout))
            return 0

    shutdown = shutdown_of(stubs, tmp_path)
    shutdown.system = Recording(tmp_path)
    assert shutdown.halt().startswith("the master is powering off")
    assert calls == [(["systemctl", "poweroff"], HALT_TIMEOUT_S)]
