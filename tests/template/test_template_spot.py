"""Spot workers in the template (issue 13 item 3): with SpotWorkers the worker group launches
through a MixedInstancesPolicy, all Spot, the worker type first and then SpotInstanceTypes, with
capacity rebalancing; without it the group is the plain launch template as before. cfn-lint and
checkov see the Spot variant with extra types (template_support.VARIANTS["existing-subnet"])."""

from __future__ import annotations

import re
from typing import Any

import boto3
import pytest
from test_template_moto import MOTO_AMI_PARAMETER

from cfn_chainermn.config.model import build
from cfn_chainermn.names import WORKER_GROUP_RESOURCE
from cfn_chainermn.template import build_template, render


def _group(cfg: dict[str, Any]) -> dict[str, Any]:
    props: dict[str, Any] = build_template(build(cfg)).to_dict()["Resources"][WORKER_GROUP_RESOURCE]["Properties"]
    return props


def test_the_launch_template_never_asks_for_spot_itself() -> None:
    """The purchase option is the group's (InstancesDistribution), for every type it lists."""
    res = build_template(build({"spot_workers": True})).to_dict()["Resources"]
    assert "InstanceMarketOptions" not in res["WorkerLaunchTemplate"]["Properties"]["LaunchTemplateData"]


def test_the_group_switches_on_spot_workers() -> None:
    g = _group({})
    assert g["CapacityRebalance"] == {"Fn::If": ["SpotWorkersOn", True, {"Ref": "AWS::NoValue"}]}
    assert g["LaunchTemplate"]["Fn::If"][:2] == ["SpotWorkersOn", {"Ref": "AWS::NoValue"}]
    cond, policy, otherwise = g["MixedInstancesPolicy"]["Fn::If"]
    assert (cond, otherwise) == ("SpotWorkersOn", {"Ref": "AWS::NoValue"})
    assert policy["InstancesDistribution"] == {"OnDemandBaseCapacity": 0, "OnDemandPercentageAboveBaseCapacity": 0,
                                               "SpotAllocationStrategy": "capacity-optimized-prioritized"}
    assert policy["LaunchTemplate"]["LaunchTemplateSpecification"] == g["LaunchTemplate"]["Fn::If"][2]
    overrides = policy["LaunchTemplate"]["Overrides"]
    assert overrides[0] == {"InstanceType": {"Ref": "WorkerInstanceType"}}
    assert [o["Fn::If"][0] for o in overrides[1:]] == ["HasSpotType1", "HasSpotType2", "HasSpotType3", "HasSpotType4"]


@pytest.mark.parametrize(("value", "ok"), [("", True), ("g5.12xlarge", True), ("g5.12xlarge,p6-b200.48xlarge", True),
                                           ("g5.12xlarge,g6.12xlarge,g6e.12xlarge,g4dn.12xlarge", True),
                                           ("g5.12xlarge,g6.12xlarge,g6e.12xlarge,g4dn.12xlarge,gr6.4xlarge", False),
                                           ("G5.12xlarge", False), ("g5.12xlarge,", False), ("g5.12xlarge g6", False)])
def test_the_console_refuses_what_is_not_a_short_list_of_types(value: str, ok: bool) -> None:
    param = build_template(build({})).to_dict()["Parameters"]["SpotInstanceTypes"]
    assert (re.fullmatch(param["AllowedPattern"], value) is not None) is ok


def _stack_on_moto(moto: Any, cfg: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    kw = {"endpoint_url": moto.url, "region_name": "us-east-1"}
    boto3.client("ec2", **kw).create_key_pair(KeyName="k")
    cfn = boto3.client("cloudformation", **kw)
    cfn.create_stack(StackName="demo", TemplateBody=render(build({**cfg, "ami_ssm_parameter": MOTO_AMI_PARAMETER})),
                     Capabilities=["CAPABILITY_IAM"],
                     Parameters=[{"ParameterKey": "KeyName", "ParameterValue": "k"},
                                 {"ParameterKey": "SshCidr", "ParameterValue": "203.0.113.7/32"}])
    cfn.get_waiter("stack_create_complete").wait(StackName="demo", WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    outputs = {o["OutputKey"]: o["OutputValue"] for o in cfn.describe_stacks(StackName="demo")["Stacks"][0]["Outputs"]}
    asg = boto3.client("autoscaling", **kw)
    return asg, asg.describe_auto_scaling_groups(AutoScalingGroupNames=[outputs["WorkerGroupName"]])[
        "AutoScalingGroups"][0]


def test_spot_types_resolve_in_order_on_moto(moto: Any) -> None:
    """moto evaluates the padded Split/Select and the conditions: the list arrives as given."""
    _, group = _stack_on_moto(moto, {"workers": 2, "spot_workers": True, "worker_instance_type": "g6.12xlarge",
                                     "spot_instance_types": "g5.12xlarge,g6e.12xlarge"})
    policy = group["MixedInstancesPolicy"]
    assert [o["InstanceType"] for o in policy["LaunchTemplate"]["Overrides"]] == [
        "g6.12xlarge", "g5.12xlarge", "g6e.12xlarge"]
    assert policy["InstancesDistribution"]["OnDemandPercentageAboveBaseCapacity"] == 0
    assert "LaunchTemplate" not in group  # (moto does not model CapacityRebalance: the structure test pins it)


def test_on_demand_workers_keep_the_plain_launch_template_on_moto(moto: Any) -> None:
    _, group = _stack_on_moto(moto, {"workers": 1})
    assert not group.get("MixedInstancesPolicy") and group["LaunchTemplate"]["LaunchTemplateId"].startswith("lt-")
