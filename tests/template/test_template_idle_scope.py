"""Idle shutdown's service role reaches this stack's own resources only: every statement names them
by the template's own references (no account-wide ARN left), and it grants what CloudFormation's
resource handlers list for deleting each resource type the template has (the registry schemas
cfn-lint ships), nothing more but the mount target's interface."""

from __future__ import annotations

import json
import re
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import cfnlint
from policy_support import ARN_PREFIX, Grant, ec2, grant, grants, sub

from cfn_chainermn.config.model import build
from cfn_chainermn.template import template_dict

R = "Resources"
SCHEMAS = Path(cfnlint.__file__).parent / "data" / "schemas"
# Handler permissions this template's resources never use (template/idle_scope.py says why).
NOT_NEEDED = {"ec2:DetachVpnGateway", "iam:DeleteUserPolicy", "iam:DeleteGroupPolicy", "managed-fleets:Get*",
              "managed-fleets:DeleteAutoScalingGroup"}
# What each action may reach, exactly: (the ARN as the template writes it, the conditions it exists under).
# Actions that share a statement share its ARNs; an action matches only ARNs of the resource types it
# authorizes on (template/idle_scope.py), so DeleteVpc over the gateway's ARN reaches nothing more.
NETWORK = {grant(ec2("vpc", "Vpc"), "CreateVpc"), grant(ec2("internet-gateway", "InternetGateway"), "CreateVpc"),
           grant(ec2("route-table", "RouteTable"), "CreateVpc")}
SUBNET = {grant(ec2("subnet", "Subnet"), "CreateSubnet"),
          grant(ec2("route-table", "RouteTableId"), "CreateSubnet", "NewSubnetInExistingVpc")}
GROUPS = {grant(ec2("security-group", "ClusterSecurityGroup")), grant(ec2("security-group", "MasterSshSecurityGroup")),
          grant(ec2("security-group", "EfsSecurityGroup"), "CreateEfs")}
NFS_RULE = {grant(ec2("security-group", "EfsSecurityGroupId"), "ExistingEfsIngress")}
PLACEMENT = {grant(ec2("placement-group", "PlacementGroup")), grant(ec2("launch-template", "WorkerLaunchTemplate")),
             grant(ec2("launch-template", "MasterEfaLaunchTemplate"), "MasterEfa")}
MASTER = {grant(ec2("instance", "ClusterMaster"))}
INTERFACE = {grant(sub(f"{ARN_PREFIX}network-interface/*"), "CreateEfs", when={"ArnEquals": {"ec2:Subnet": sub([
    f"{ARN_PREFIX}subnet/${{ClusterSubnet}}",
    {"ClusterSubnet": {"Fn::If": ["CreateSubnet", {"Ref": "Subnet"}, {"Ref": "SubnetId"}]}}])}})}
FILE_SYSTEM = {grant(sub("arn:${AWS::Partition}:elasticfilesystem:${AWS::Region}:${AWS::AccountId}:"
                         "file-system/${FileSystem}"), "CreateEfs")}
WORKER_GROUP = {grant(sub("arn:${AWS::Partition}:autoscaling:${AWS::Region}:${AWS::AccountId}:"
                          "autoScalingGroup:*:autoScalingGroupName/${WorkerGroup}"))}
BUCKET = {grant(sub("${KeyBucket.Arn}"))}
ROLES = {grant(sub("${MasterRole.Arn}")), grant(sub("${WorkerRole.Arn}"))}
PROFILES = {grant(sub("${MasterInstanceProfile.Arn}")), grant(sub("${WorkerInstanceProfile.Arn}"))}
EVERYTHING = {grant("*")}
EXPECTED: dict[str, set[Grant]] = {
    **dict.fromkeys(["ec2:DeleteInternetGateway", "ec2:DeleteRoute", "ec2:DeleteRouteTable", "ec2:DeleteVpc",
                     "ec2:DetachInternetGateway"], NETWORK),
    "ec2:DisassociateRouteTable": NETWORK | SUBNET,
    "ec2:DeleteSubnet": SUBNET,
    **dict.fromkeys(["ec2:DeleteSecurityGroup", "ec2:RevokeSecurityGroupEgress"], GROUPS),
    "ec2:RevokeSecurityGroupIngress": GROUPS | NFS_RULE,
    **dict.fromkeys(["ec2:DeleteLaunchTemplate", "ec2:DeletePlacementGroup", "ec2:DeleteTags"], PLACEMENT),
    **dict.fromkeys(["ec2:DescribeInstanceAttribute", "ec2:TerminateInstances"], MASTER),
    "ec2:DeleteNetworkInterface": INTERFACE,
    **dict.fromkeys(["elasticfilesystem:DeleteFileSystem", "elasticfilesystem:DeleteMountTarget",
                     "elasticfilesystem:DeleteReplicationConfiguration"], FILE_SYSTEM),
    **dict.fromkeys(["autoscaling:DeleteAutoScalingGroup", "autoscaling:UpdateAutoScalingGroup"], WORKER_GROUP),
    **dict.fromkeys(["s3:DeleteBucket", "s3:DeleteBucketPolicy", "s3:GetBucketPolicy", "s3:ListBucket"], BUCKET),
    **dict.fromkeys(["iam:DeleteRole", "iam:DeleteRolePolicy", "iam:DetachRolePolicy", "iam:GetRole",
                     "iam:ListAttachedRolePolicies", "iam:ListRolePolicies", "iam:TagRole", "iam:UntagRole"], ROLES),
    **dict.fromkeys(["iam:DeleteInstanceProfile", "iam:GetInstanceProfile", "iam:RemoveRoleFromInstanceProfile"],
                    PROFILES),
}


def _template() -> dict[str, Any]:
    return template_dict(build({"idle": {"minutes": "30"}}))


def _statements(t: dict[str, Any]) -> dict[str, tuple[str | None, dict[str, Any]]]:
    (policy,) = t[R]["ShutdownRole"]["Properties"]["Policies"]
    out: dict[str, tuple[str | None, dict[str, Any]]] = {}
    for s in policy["PolicyDocument"]["Statement"]:
        cond, s = (s["Fn::If"][0], s["Fn::If"][1]) if "Fn::If" in s else (None, s)
        out[s["Sid"]] = (cond, s)
    return out


def test_every_delete_names_this_stacks_own_resources_and_no_account_wide_arn_is_left() -> None:
    """Action by action, the exact ARNs (and the conditions they exist under) the role may use it on:
    an action moved into another statement reaches other resources, and this fails. Only reads are on
    "*"; every referenced name is one of the template's own resources or parameters."""
    t = _template()
    (policy,) = t[R]["ShutdownRole"]["Properties"]["Policies"]
    allowed = grants(policy["PolicyDocument"]["Statement"])
    reads = {a for a, g in allowed.items() if g == EVERYTHING}
    assert all(re.match(r"^[a-z0-9-]+:(Describe|List)", a) for a in reads), reads
    assert {a: g for a, g in allowed.items() if a not in reads} == EXPECTED
    names = set(t[R]) | set(t["Parameters"]) | {"ClusterSubnet"}
    referenced = {r for g in set().union(*EXPECTED.values()) for r in re.findall(r"\$\{(\w+)(?:\.Arn)?\}", g[1])}
    assert {r for r in referenced if not r.startswith("AWS")} <= names


def test_the_mount_targets_interface_may_be_deleted_only_in_the_clusters_subnet() -> None:
    _, eni = _statements(_template())["DeleteMountTargetInterface"]
    assert eni["Action"] == ["ec2:DeleteNetworkInterface"]
    assert eni["Resource"] == [{"Fn::Sub": "arn:${AWS::Partition}:ec2:${AWS::Region}:${AWS::AccountId}:"
                                           "network-interface/*"}]
    subnet = eni["Condition"]["ArnEquals"]["ec2:Subnet"]["Fn::Sub"]
    assert subnet == ["arn:${AWS::Partition}:ec2:${AWS::Region}:${AWS::AccountId}:subnet/${ClusterSubnet}",
                      {"ClusterSubnet": {"Fn::If": ["CreateSubnet", {"Ref": "Subnet"}, {"Ref": "SubnetId"}]}}]


def _granted(statements: dict[str, tuple[str | None, dict[str, Any]]]) -> set[str]:
    return {a for _, s in statements.values() for a in s["Action"]}


def _delete_permissions(types: set[str]) -> dict[str, set[str]]:
    """Resource type -> what its handler lists for deleting it (`handlers.delete.permissions`)."""
    files = json.loads((SCHEMAS / "providers" / "us-east-1.json").read_text())
    out: dict[str, set[str]] = {}
    for kind in types:
        schema = json.loads((SCHEMAS / "resources" / f"{files[kind]}.json").read_text())
        out[kind] = set(schema.get("handlers", {}).get("delete", {}).get("permissions", []))
    return out


def test_it_grants_what_cloudformation_deletes_each_resource_type_with_and_nothing_else() -> None:
    t = _template()
    granted = _granted(_statements(t))
    needed = _delete_permissions({r["Type"] for r in t[R].values()})
    assert needed["AWS::EC2::VPC"] >= {"ec2:DeleteVpc"}  # the schemas really are read
    wanted = set().union(*needed.values())
    missing = {(kind, a) for kind, actions in needed.items() for a in actions - NOT_NEEDED
               if not any(fnmatchcase(a, g) for g in granted)}
    assert missing == set()
    assert wanted >= NOT_NEEDED  # each exception is still one a handler lists
    extra = {g for g in granted if not any(fnmatchcase(w, g) for w in wanted)}
    assert extra == {"ec2:DeleteNetworkInterface"}  # EFS's DeleteMountTarget needs it of its caller


def _worst_case(value: Any) -> Any:
    """The policy as CloudFormation would send it, every reference 64 characters long, every If true."""
    if isinstance(value, list):
        return [_worst_case(v) for v in value if v != {"Ref": "AWS::NoValue"}]
    if not isinstance(value, dict):
        return value
    if "Fn::If" in value:
        return _worst_case(value["Fn::If"][1])
    if "Fn::Sub" in value:
        text = value["Fn::Sub"] if isinstance(value["Fn::Sub"], str) else value["Fn::Sub"][0]
        return re.sub(r"\$\{[^}]+\}", "x" * 64, text)
    return {k: _worst_case(v) for k, v in value.items()}


def test_the_policy_fits_iams_inline_limit_with_every_name_at_its_longest() -> None:
    """IAM caps a role's inline policies at 10,240 characters, whitespace aside (IAM User Guide, "IAM
    and AWS STS quotas"): naming each resource must not outgrow it."""
    (policy,) = _template()[R]["ShutdownRole"]["Properties"]["Policies"]
    assert len(json.dumps(_worst_case(policy["PolicyDocument"]), separators=(",", ":"))) < 10_240
