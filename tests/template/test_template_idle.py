"""Idle shutdown in the template: the service role CloudFormation deletes the stack with, and the
master's statements, each scoped to this stack; the conditions as moto evaluates them."""

from __future__ import annotations

from typing import Any

import boto3
import pytest

from cfn_chainermn.config.model import build
from cfn_chainermn.template import render
from cfn_chainermn.template.idle import STACK_TAG

MOTO_AMI_PARAMETER = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
R = "Resources"


def _policy(t: dict[str, Any], role: str) -> list[dict[str, Any]]:
    (policy,) = t[R][role]["Properties"]["Policies"]
    return list(policy["PolicyDocument"]["Statement"])


def _by_sid(statements: list[dict[str, Any]]) -> dict[str, tuple[str | None, dict[str, Any]]]:
    """Sid -> (the condition it is under, or None; the statement)."""
    out: dict[str, tuple[str | None, dict[str, Any]]] = {}
    for s in statements:
        cond, s = (s["Fn::If"][0], s["Fn::If"][1]) if "Fn::If" in s else (None, s)
        out[s["Sid"]] = (cond, s)
    return out


def test_the_service_role_is_cloudformations_kept_at_deletion_and_only_with_a_deleting_limit(
        default_dict: dict[str, Any]) -> None:
    role = default_dict[R]["ShutdownRole"]
    assert role["Condition"] == "IdleDeletesStack"
    assert (role["DeletionPolicy"], role["UpdateReplacePolicy"]) == ("Retain", "Retain")
    (trust,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust == {"Effect": "Allow", "Principal": {"Service": "cloudformation.amazonaws.com"},
                     "Action": "sts:AssumeRole"}
    conditions = default_dict["Conditions"]
    assert conditions["IdleDeletesStack"] == {"Fn::And": [{"Condition": "HasIdleLimit"},
                                                          {"Fn::Equals": [{"Ref": "IdleAction"}, "delete"]}]}
    assert conditions["HasIdleLimit"] == {"Fn::Or": [{"Fn::Not": [{"Fn::Equals": [{"Ref": "IdleMinutes"}, "off"]}]},
                                                     {"Fn::Not": [{"Fn::Equals": [{"Ref": "MaxHours"}, "off"]}]}]}
    out = default_dict["Outputs"]["ShutdownRoleArn"]
    assert out["Condition"] == "IdleDeletesStack" and out["Value"] == {"Fn::GetAtt": ["ShutdownRole", "Arn"]}


def test_the_service_role_deletes_only_within_the_account_and_terminates_only_this_stacks_instances(
        default_dict: dict[str, Any]) -> None:
    statements = _by_sid(_policy(default_dict, "ShutdownRole"))
    for sid, (_, s) in statements.items():
        if s["Resource"] == ["*"]:  # only what shows a resource is gone
            assert sid == "SeeResourcesGone"
            assert all(a.split(":")[1].startswith(("Describe", "Get", "List")) for a in s["Action"]), s["Action"]
            continue
        (arn,) = s["Resource"]
        assert arn["Fn::Sub"].startswith("arn:${AWS::Partition}:"), sid
        assert "${AWS::AccountId}" in arn["Fn::Sub"] or arn["Fn::Sub"] == "arn:${AWS::Partition}:s3:::*", sid
    _, terminate = statements["TerminateThisStacksMaster"]
    assert terminate["Action"] == ["ec2:TerminateInstances"]
    assert terminate["Condition"] == {"StringEquals": {f"ec2:ResourceTag/{STACK_TAG}": {"Ref": "AWS::StackId"}}}
    actions = {a for _, s in statements.values() for a in s["Action"]}
    assert not any(a.endswith("*") for a in actions)
    assert "iam:PassRole" not in actions and not any(a.startswith(("iam:Create", "iam:Put", "iam:Attach"))
                                                     for a in actions)


def test_the_master_may_delete_only_its_own_stack_through_that_role_and_the_workers_nothing(
        default_dict: dict[str, Any]) -> None:
    master = _by_sid(_policy(default_dict, "MasterRole"))
    stack_id = [{"Ref": "AWS::StackId"}]
    assert master["IdleReadThisStack"] == (None, {"Sid": "IdleReadThisStack", "Effect": "Allow",
                                                  "Action": ["cloudformation:DescribeStacks"], "Resource": stack_id})
    cond, delete = master["IdleDeleteThisStack"]
    assert cond == "IdleDeletesStack" and delete["Action"] == ["cloudformation:DeleteStack"]
    assert delete["Resource"] == stack_id
    cond, pass_role = master["IdlePassShutdownRole"]
    assert cond == "IdleDeletesStack" and pass_role["Action"] == ["iam:PassRole"]
    assert pass_role["Resource"] == [{"Fn::GetAtt": ["ShutdownRole", "Arn"]}]
    assert pass_role["Condition"] == {"StringEquals": {"iam:PassedToService": "cloudformation.amazonaws.com"}}
    # no broad Delete*: the deletes the master has are named, each on its own scope
    deletes = sorted(a for _, s in master.values() for a in s["Action"] if ":Delete" in a)
    assert deletes == ["cloudformation:DeleteStack", "s3:DeleteObject", "s3:DeleteObject", "s3:DeleteObjectVersion"]
    emptying = [sid for sid, (cond, s) in master.items() if "s3:DeleteObjectVersion" in s["Action"]]
    assert emptying == ["IdleEmptyKeyBucket"] and master["IdleEmptyKeyBucket"][0] == "IdleDeletesStack"
    for sid in ("IdleStopWorkers", "IdleStopMaster"):
        cond, stop = master[sid]
        assert cond == "IdleStopsNodes"
        assert stop["Condition"] == {"StringEquals": {f"aws:ResourceTag/{STACK_TAG}": {"Ref": "AWS::StackId"}}}
    worker = _by_sid(_policy(default_dict, "WorkerRole"))
    assert not [sid for sid in worker if sid.startswith("Idle")]
    assert not any(a.startswith(("cloudformation:Delete", "cloudformation:Describe", "iam:", "autoscaling:"))
                   for _, s in worker.values() for a in s["Action"])


def test_a_changed_limit_changes_a_resource_so_the_update_is_not_empty(default_dict: dict[str, Any]) -> None:
    """A change set whose only change is a parameter no resource uses has nothing to do; the
    master role's tag names all three, and a tag changes without interrupting anything."""
    tags = {t["Key"]: t["Value"] for t in default_dict[R]["MasterRole"]["Properties"]["Tags"]}
    value = tags["cfn-chainermn:idle"]["Fn::Sub"]
    assert all(f"${{{name}}}" in value for name in ("IdleMinutes", "MaxHours", "IdleAction"))


@pytest.mark.parametrize(("idle", "role"), [({"minutes": "30"}, True), ({"max_hours": "8", "action": "stop"}, False),
                                            ({}, False)])
def test_moto_makes_the_service_role_exactly_when_a_limit_deletes(moto: Any, idle: dict[str, str], role: bool) -> None:
    kw = {"endpoint_url": moto.url, "region_name": "us-east-1"}
    ec2, cfn = boto3.client("ec2", **kw), boto3.client("cloudformation", **kw)
    ec2.create_key_pair(KeyName="k")
    name = "idle-" + "-".join(f"{k}{v}" for k, v in idle.items()).replace("_", "") or "idle-off"
    cfg = build({"ami_ssm_parameter": MOTO_AMI_PARAMETER, "workers": 0, "idle": idle})
    cfn.create_stack(StackName=name, TemplateBody=render(cfg, "compact"), Capabilities=["CAPABILITY_IAM"],
                     Parameters=[{"ParameterKey": "KeyName", "ParameterValue": "k"},
                                 {"ParameterKey": "SshCidr", "ParameterValue": "203.0.113.7/32"}])
    cfn.get_waiter("stack_create_complete").wait(StackName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    resources = {r["LogicalResourceId"] for r in cfn.list_stack_resources(StackName=name)["StackResourceSummaries"]}
    outputs = {o["OutputKey"] for o in cfn.describe_stacks(StackName=name)["Stacks"][0]["Outputs"]}
    assert ("ShutdownRole" in resources) is role
    assert ("ShutdownRoleArn" in outputs) is role
