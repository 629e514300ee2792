"""Idle shutdown in the template: the service role CloudFormation deletes the stack with, and the
master's statements, each scoped to this stack; the conditions as moto evaluates them."""

from __future__ import annotations

import json
import re
from typing import Any

import boto3
import pytest
from policy_support import Grant, ec2, grant, grants, sub

from cfn_chainermn.config.model import build
from cfn_chainermn.names import SHUTDOWN_POLICY
from cfn_chainermn.template import render, template_dict

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
    # what `stack delete` finds it by once the stack and its output are gone (stack/roles.py)
    assert role["Properties"]["Tags"] == [{"Key": "cfn-chainermn:stack-id", "Value": {"Ref": "AWS::StackId"}}]
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


def _refs(value: Any) -> set[str]:
    """The logical ids a template value depends on (Ref, GetAtt and Sub's ${Name} / ${Name.Attr})."""
    if isinstance(value, list):
        return set().union(*map(_refs, value)) if value else set()
    if not isinstance(value, dict):
        return set()
    if "Ref" in value:
        return {value["Ref"]}
    if "Fn::GetAtt" in value:
        return {value["Fn::GetAtt"][0]}
    if "Fn::Sub" in value:
        text, names = (value["Fn::Sub"], {}) if isinstance(value["Fn::Sub"], str) else value["Fn::Sub"]
        own = {m.split(".")[0] for m in re.findall(r"\$\{([^}!]+)\}", text)} - set(names)
        return own | _refs(list(names.values()))
    return _refs(list(value.values()))


def _needs(t: dict[str, Any]) -> dict[str, set[str]]:
    """Resource -> every resource it depends on, directly or not (CloudFormation deletes in reverse)."""
    direct = {name: (_refs(r) | set(r.get("DependsOn", []))) & set(t[R]) for name, r in t[R].items()}
    out: dict[str, set[str]] = {}

    def walk(name: str, path: tuple[str, ...]) -> set[str]:
        assert name not in path, f"dependency cycle: {' -> '.join((*path, name))}"
        if name not in out:
            out[name] = set().union(*(walk(d, (*path, name)) | {d} for d in direct[name]))
        return out[name]

    for name in direct:
        walk(name, ())
    return out


def test_the_idle_statements_that_name_the_role_are_a_policy_of_their_own_so_nothing_is_circular() -> None:
    """The service role names the master, its role and profile: the master role names nothing of idle
    shutdown's, a policy of its own (attached to it) names the role; and deleting keeps the order the
    master's deletion relies on: the master is terminated before its role (whose inline statements
    empty the bucket) and before the key bucket."""
    needs = _needs(template_dict(build({"idle": {"minutes": "30"}})))
    assert {"ClusterMaster", "MasterRole", "MasterInstanceProfile", "WorkerGroup"} <= needs["ShutdownRole"]
    assert "ShutdownRole" not in needs["MasterRole"] and "ShutdownRole" not in needs["ClusterMaster"]
    assert {"ShutdownRole", "MasterRole", "WorkerGroup"} <= needs["MasterIdleDeletePolicy"]
    assert {"MasterRole", "ClusterMaster", "WorkerGroup"} <= needs["MasterIdleStopPolicy"]
    assert {"MasterRole", "KeyBucket"} <= needs["ClusterMaster"]
    waits = [name for name, n in needs.items() if n & {"MasterIdleDeletePolicy", "MasterIdleStopPolicy"}]
    assert waits == []  # deleted first: nothing waits on them


STACK = {"Ref": "AWS::StackId"}
WORKER_GROUP = sub("arn:${AWS::Partition}:autoscaling:${AWS::Region}:${AWS::AccountId}:"
                   "autoScalingGroup:*:autoScalingGroupName/${WorkerGroup}")
SHUTDOWN_ROLE = {"Fn::GetAtt": ["ShutdownRole", "Arn"]}


def _objects(prefix: str) -> Grant:
    return grant(sub(f"${{KeyBucket.Arn}}/{prefix}*"))


# The master role's inline policy, action by action: what idle shutdown adds is the stack read and,
# with `delete`, listing and deleting every version in the key bucket (its emptying).
MASTER_INLINE: dict[str, set[Grant]] = {
    "ec2:DescribeInstances": {grant("*")},
    "cloudformation:SignalResource": {grant(STACK)},
    "cloudformation:GetTemplate": {grant(STACK)},
    "cloudformation:DescribeStacks": {grant(STACK)},
    "cloudformation:DescribeStackEvents": {grant(STACK)},  # why the master's deletion failed
    "s3:ListBucket": {grant(sub("${KeyBucket.Arn}"))},
    "s3:ListBucketVersions": {grant(sub("${KeyBucket.Arn}"), "IdleDeletesStack")},
    "s3:GetObject": {_objects("cluster-key/"), _objects("nodes/"), _objects("chainer-stack/")},
    "s3:PutObject": {_objects("cluster-key/"), _objects("nodes/"), _objects("logs/"), _objects("chainer-stack/")},
    "s3:DeleteObject": {_objects("nodes/"), grant(sub("${KeyBucket.Arn}/*"), "IdleDeletesStack")},
    "s3:DeleteObjectVersion": {grant(sub("${KeyBucket.Arn}/*"), "IdleDeletesStack")},
}
# The policies of their own (each under its condition): scale this group to 0 and see it empty, delete
# this stack only as the ShutdownRole and pass that role only to CloudFormation; or stop the master.
MASTER_IDLE: dict[str, dict[str, set[Grant]]] = {
    "MasterIdleDeletePolicy": {
        "autoscaling:UpdateAutoScalingGroup": {grant(WORKER_GROUP, "IdleDeletesStack")},
        "autoscaling:DescribeAutoScalingGroups": {grant("*", "IdleDeletesStack")},  # takes no resource
        "cloudformation:DeleteStack": {grant(STACK, "IdleDeletesStack", when={
            "ArnEquals": {"cloudformation:RoleArn": SHUTDOWN_ROLE}})},
        "iam:PassRole": {grant(SHUTDOWN_ROLE, "IdleDeletesStack", when={
            "StringEquals": {"iam:PassedToService": "cloudformation.amazonaws.com"}})},
    },
    "MasterIdleStopPolicy": {
        "autoscaling:UpdateAutoScalingGroup": {grant(WORKER_GROUP, "IdleStopsNodes")},
        "ec2:StopInstances": {grant(ec2("instance", "ClusterMaster"), "IdleStopsNodes")},
    },
}


def test_the_master_may_delete_only_its_own_stack_through_that_role_and_the_workers_nothing(
        default_dict: dict[str, Any]) -> None:
    """Action by action, the exact resources (and conditions) the master's policies allow: moving an
    action into another statement, or dropping a condition, fails here."""
    assert grants(_policy(default_dict, "MasterRole")) == MASTER_INLINE
    for name, expected in MASTER_IDLE.items():
        policy = default_dict[R][name]
        assert policy["Type"] == "AWS::IAM::Policy" and policy["Properties"]["Roles"] == [{"Ref": "MasterRole"}]
        assert grants(policy["Properties"]["PolicyDocument"]["Statement"], policy["Condition"]) == expected, name
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
    resources = {r["LogicalResourceId"]: r.get("PhysicalResourceId", "")
                 for r in cfn.list_stack_resources(StackName=name)["StackResourceSummaries"]}
    outputs = {o["OutputKey"]: o["OutputValue"] for o in cfn.describe_stacks(StackName=name)["Stacks"][0]["Outputs"]}
    assert ("ShutdownRole" in resources) is role
    assert ("ShutdownRoleArn" in outputs) is role
    assert ("MasterIdleDeletePolicy" in resources) is role
    assert ("MasterIdleStopPolicy" in resources) is (idle.get("action") == "stop")
    if role:  # the policy as created names this stack's own resources, every reference resolved
        iam = boto3.client("iam", **kw)
        doc = iam.get_role_policy(RoleName=resources["ShutdownRole"], PolicyName=SHUTDOWN_POLICY)["PolicyDocument"]
        text = doc if isinstance(doc, str) else json.dumps(doc)  # moto returns it as a string
        # every reference resolved, but the placement group's: moto's CloudFormation has none
        assert re.findall(r"\$\{\w+\}", text) == ["${PlacementGroup}"] and "Fn::" not in text
        for arn_end in (f":instance/{outputs['ClusterMasterInstanceId']}", f"arn:aws:s3:::{outputs['KeyBucketName']}",
                        f":autoScalingGroupName/{outputs['WorkerGroupName']}",
                        f":file-system/{outputs['EfsFileSystemId']}"):
            assert re.search(re.escape(arn_end) + "[\"']", text), arn_end


def _values_of(value: Any, key: str) -> list[Any]:
    """Every value `key` has anywhere in a template fragment."""
    if isinstance(value, list):
        return [v for item in value for v in _values_of(item, key)]
    if not isinstance(value, dict):
        return []
    return [*([value[key]] if key in value else []), *(v for item in value.values() for v in _values_of(item, key))]


def test_a_master_that_powers_itself_off_stops_and_is_not_terminated(variant_configs: dict[str, Any]) -> None:
    """After its deletion failed again and again the master powers itself off (node/idle_master.py's
    halt), which stops an EBS-backed instance only while InstanceInitiatedShutdownBehavior keeps its
    default, stop (EC2 User Guide, "Change instance initiated shutdown behavior"): no variant's master
    or launch template sets it."""
    for name, cfg in variant_configs.items():
        assert _values_of(template_dict(cfg)[R], "InstanceInitiatedShutdownBehavior") == [], name
