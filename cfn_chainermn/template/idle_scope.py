"""What idle shutdown's service role may delete: this stack's own resources, each by its ARN, built
from the template's own Refs and GetAtts, under the condition the resource exists under.

Actions: those CloudFormation's resource handlers list for deleting each resource type the template
has (`handlers.delete.permissions` of the registry schemas, which cfn-lint ships under
cfnlint/data/schemas/resources; tests/template/test_template_idle_scope.py reads them back), each
on the resource types the action authorizes on (Service Authorization Reference, "Actions,
resources, and condition keys for Amazon EC2", and the same page for EC2 Auto Scaling, EFS, S3 and
IAM). A statement may list several types' ARNs: an action is matched only against its own types, so
DeleteVpc over [vpc, route-table] still reaches this VPC alone. Reads (Describe*, List*: they change
nothing) stay on "*", as most of them take no other Resource (DescribeInstances, DescribeVpcs,
DescribeAutoScalingGroups...: their rows list no resource type).

Not granted, as nothing here uses them: ec2:DetachVpnGateway (the VPC has no VPN gateway),
iam:DeleteUserPolicy/DeleteGroupPolicy (the master's idle policy is a role's), managed-fleets:*
(the worker group is a plain Auto Scaling group, not EC2 Managed Instances).

The interface EFS creates for the mount target is no template resource, yet DeleteMountTarget
needs ec2:DeleteNetworkInterface of its caller (EFS API reference, DeleteMountTarget); the EC2
reference's DeleteNetworkInterface row authorizes on network-interface with the condition keys
ec2:Subnet and ec2:Vpc (each "the ARN of" the subnet or VPC), so it is granted for interfaces in
this cluster's subnet only.
"""

from __future__ import annotations

from typing import Any

from troposphere import If, NoValue, Sub

from cfn_chainermn.names import MASTER_RESOURCE, WORKER_GROUP_RESOURCE
from cfn_chainermn.template.parameters import Inputs

EC2 = "arn:${AWS::Partition}:ec2:${AWS::Region}:${AWS::AccountId}:"
# The group's id is not known to the template, its name is (and unique in the account and region).
WORKER_GROUP_ARN = ("arn:${AWS::Partition}:autoscaling:${AWS::Region}:${AWS::AccountId}:autoScalingGroup:*:"
                    f"autoScalingGroupName/${{{WORKER_GROUP_RESOURCE}}}")
MASTER_ARN = f"{EC2}instance/${{{MASTER_RESOURCE}}}"
# Built from the id, as EFS's reference gives it (moto has no GetAtt Arn for a file system).
FILE_SYSTEM_ARN = "arn:${AWS::Partition}:elasticfilesystem:${AWS::Region}:${AWS::AccountId}:file-system/${FileSystem}"
MASTER_EFA_CONDITION = "MasterEfa"  # template/efa.py's condition for the master's EFA launch template

# Reads the handlers make to see each resource gone (on "*": see the module's docstring).
READS = ["autoscaling:Describe*", "ec2:DescribeInstanceCreditSpecifications", "ec2:DescribeInstances",
         "ec2:DescribeInternetGateways", "ec2:DescribeLaunchTemplates", "ec2:DescribeNetworkInterfaces",
         "ec2:DescribePlacementGroups", "ec2:DescribeRouteTables", "ec2:DescribeSecurityGroupRules",
         "ec2:DescribeSecurityGroups", "ec2:DescribeSubnets", "ec2:DescribeVolumes", "ec2:DescribeVpcs",
         "ec2:DescribeVpnGateways", "elasticfilesystem:DescribeFileSystems", "elasticfilesystem:DescribeMountTargets",
         "elasticfilesystem:DescribeReplicationConfigurations", "ssm:DescribeAssociation", "ssm:ListAssociations"]
ROLE_DELETES = ["iam:DeleteRole", "iam:DeleteRolePolicy", "iam:DetachRolePolicy", "iam:GetRole",
                "iam:ListAttachedRolePolicies", "iam:ListRolePolicies", "iam:TagRole", "iam:UntagRole"]
PROFILE_DELETES = ["iam:DeleteInstanceProfile", "iam:GetInstanceProfile", "iam:RemoveRoleFromInstanceProfile"]


def ec2(kind: str, logical_id: str) -> Sub:
    """The ARN of an EC2 resource of this template (kind: its type in the ARN, e.g. "vpc")."""
    return Sub(f"{EC2}{kind}/${{{logical_id}}}")


def statement(sid: str, actions: list[str], resources: list[Any], condition: Any = None) -> dict[str, Any]:
    out = {"Sid": sid, "Effect": "Allow", "Action": actions, "Resource": resources}
    return {**out, "Condition": condition} if condition is not None else out


def _only(condition: str, value: Any) -> Any:
    """`value` where the resources it names exist, nothing elsewhere."""
    return If(condition, value, NoValue)


def shutdown_statements(p: Inputs, subnet_id: Any) -> list[Any]:
    """The service role's policy: delete this stack's resources, each named, and nothing else."""
    c = p.cond
    subnet_arn = Sub(f"{EC2}subnet/${{ClusterSubnet}}", ClusterSubnet=subnet_id)
    return [
        statement("SeeResourcesGone", READS, ["*"]),
        _only(c.create_vpc, statement("DeleteThisStacksNetwork", [
            "ec2:DeleteInternetGateway", "ec2:DeleteRoute", "ec2:DeleteRouteTable", "ec2:DeleteVpc",
            "ec2:DetachInternetGateway", "ec2:DisassociateRouteTable"],
            [ec2("vpc", "Vpc"), ec2("internet-gateway", "InternetGateway"), ec2("route-table", "RouteTable")])),
        _only(c.create_subnet, statement("DeleteThisStacksSubnet", ["ec2:DeleteSubnet", "ec2:DisassociateRouteTable"], [
            ec2("subnet", "Subnet"), _only(c.new_subnet_in_existing_vpc, ec2("route-table", "RouteTableId"))])),
        statement("DeleteThisStacksSecurityGroups", [
            "ec2:DeleteSecurityGroup", "ec2:RevokeSecurityGroupEgress", "ec2:RevokeSecurityGroupIngress"], [
            ec2("security-group", "ClusterSecurityGroup"), ec2("security-group", "MasterSshSecurityGroup"),
            _only(c.create_efs, ec2("security-group", "EfsSecurityGroup"))]),
        _only(c.existing_efs_ingress, statement("RevokeThisStacksNfsRule", ["ec2:RevokeSecurityGroupIngress"],
                                                [ec2("security-group", "EfsSecurityGroupId")])),
        statement("DeleteThisStacksPlacementAndLaunchTemplates", [
            "ec2:DeleteLaunchTemplate", "ec2:DeletePlacementGroup", "ec2:DeleteTags"], [
            ec2("placement-group", "PlacementGroup"), ec2("launch-template", "WorkerLaunchTemplate"),
            _only(MASTER_EFA_CONDITION, ec2("launch-template", "MasterEfaLaunchTemplate"))]),
        statement("TerminateThisStacksMaster", ["ec2:DescribeInstanceAttribute", "ec2:TerminateInstances"],
                  [Sub(MASTER_ARN)]),
        _only(c.create_efs, statement("DeleteMountTargetInterface", ["ec2:DeleteNetworkInterface"],
                                      [Sub(f"{EC2}network-interface/*")], {"ArnEquals": {"ec2:Subnet": subnet_arn}})),
        _only(c.create_efs, statement("DeleteThisStacksFileSystem", [
            "elasticfilesystem:DeleteFileSystem", "elasticfilesystem:DeleteMountTarget",
            "elasticfilesystem:DeleteReplicationConfiguration"], [Sub(FILE_SYSTEM_ARN)])),
        statement("DeleteThisStacksWorkerGroup", ["autoscaling:DeleteAutoScalingGroup",
                                                  "autoscaling:UpdateAutoScalingGroup"], [Sub(WORKER_GROUP_ARN)]),
        statement("DeleteThisStacksKeyBucket", ["s3:DeleteBucket", "s3:DeleteBucketPolicy", "s3:GetBucketPolicy",
                                                "s3:ListBucket"], [Sub("${KeyBucket.Arn}")]),
        statement("DeleteThisStacksNodeRoles", ROLE_DELETES, [Sub("${MasterRole.Arn}"), Sub("${WorkerRole.Arn}")]),
        statement("DeleteThisStacksNodeProfiles", PROFILE_DELETES, [
            Sub("${MasterInstanceProfile.Arn}"), Sub("${WorkerInstanceProfile.Arn}")]),
    ]
