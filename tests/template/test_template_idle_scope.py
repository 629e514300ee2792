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

from cfn_chainermn.config.model import build
from cfn_chainermn.template import template_dict

R = "Resources"
SCHEMAS = Path(cfnlint.__file__).parent / "data" / "schemas"
# Handler permissions this template's resources never use (template/idle_scope.py says why).
NOT_NEEDED = {"ec2:DetachVpnGateway", "iam:DeleteUserPolicy", "iam:DeleteGroupPolicy", "managed-fleets:Get*",
              "managed-fleets:DeleteAutoScalingGroup"}
# What the role may delete, statement by statement: (the condition it is under, what it names).
EXPECTED = {
    "DeleteThisStacksNetwork": ("CreateVpc", {"Vpc", "InternetGateway", "RouteTable"}),
    "DeleteThisStacksSubnet": ("CreateSubnet", {"Subnet", "RouteTableId"}),
    "DeleteThisStacksSecurityGroups": (None, {"ClusterSecurityGroup", "MasterSshSecurityGroup", "EfsSecurityGroup"}),
    "RevokeThisStacksNfsRule": ("ExistingEfsIngress", {"EfsSecurityGroupId"}),
    "DeleteThisStacksPlacementAndLaunchTemplates": (None, {"PlacementGroup", "WorkerLaunchTemplate",
                                                           "MasterEfaLaunchTemplate"}),
    "TerminateThisStacksMaster": (None, {"ClusterMaster"}),
    "DeleteMountTargetInterface": ("CreateEfs", set()),  # by its subnet (below)
    "DeleteThisStacksFileSystem": ("CreateEfs", {"FileSystem"}),
    "DeleteThisStacksWorkerGroup": (None, {"WorkerGroup"}),
    "DeleteThisStacksKeyBucket": (None, {"KeyBucket"}),
    "DeleteThisStacksNodeRoles": (None, {"MasterRole", "WorkerRole"}),
    "DeleteThisStacksNodeProfiles": (None, {"MasterInstanceProfile", "WorkerInstanceProfile"}),
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


def _patterns(resource: Any) -> list[tuple[str | None, str]]:
    """(condition, Sub text) of each ARN a Resource entry may be."""
    if "Fn::If" in resource:
        cond, value, _ = resource["Fn::If"]
        return [(cond, p) for _, p in _patterns(value)]
    return [(None, resource["Fn::Sub"])]


def test_every_delete_names_this_stacks_own_resources_and_no_account_wide_arn_is_left() -> None:
    t = _template()
    statements = _statements(t)
    reads = statements.pop("SeeResourcesGone")[1]
    assert reads["Resource"] == ["*"]
    assert all(re.match(r"^[a-z0-9-]+:(Describe|List)", a) for a in reads["Action"]), reads["Action"]
    assert set(statements) == set(EXPECTED)
    names = set(t[R]) | set(t["Parameters"])
    for sid, (cond, s) in statements.items():
        assert (cond, s["Effect"]) == (EXPECTED[sid][0], "Allow"), sid
        named = set()
        for resource in s["Resource"]:
            for _, arn in _patterns(resource):
                refs = re.findall(r"\$\{(\w+)(?:\.Arn)?\}", arn)
                named |= {r for r in refs if not r.startswith("AWS")}
                # the only wildcards: the Auto Scaling group's id (its name follows) and the interface
                wild = arn.replace(":autoScalingGroup:*:autoScalingGroupName/${WorkerGroup}", "")
                assert "*" not in wild or sid == "DeleteMountTargetInterface", (sid, arn)
        assert named == EXPECTED[sid][1] and named <= names, sid
    # conditional resources are named only where they exist
    conds = {arn: c for _, s in statements.values() for r in s["Resource"] for c, arn in _patterns(r)}
    assert conds[next(a for a in conds if a.endswith("${EfsSecurityGroup}"))] == "CreateEfs"
    assert conds[next(a for a in conds if a.endswith("${RouteTableId}"))] == "NewSubnetInExistingVpc"
    assert conds[next(a for a in conds if a.endswith("${MasterEfaLaunchTemplate}"))] == "MasterEfa"


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
