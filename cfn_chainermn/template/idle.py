"""Idle shutdown in the template: its conditions, the CloudFormation service role the master's
deletion runs under, and the master's statements for it (node/idle.py does the counting).

Why a service role: DeleteStack without RoleARN deletes with the caller's credentials, so the
master role would need every Delete* of the stack's resources. With one, the master needs only
cloudformation:DeleteStack on this stack's id and iam:PassRole on this one role ("the role that
CloudFormation assumes to delete the stack", DeleteStack's RoleARN in the CloudFormation API
reference; passing it needs iam:PassRole, IAM user guide "Granting a user permissions to pass a
role to an AWS service"). The role is trusted by cloudformation.amazonaws.com alone.

Why DeletionPolicy Retain on it: CloudFormation uses the role for every call of the deletion,
its own removal included, and deleting an IAM role first deletes its inline policies; after
that the role can no longer call iam:DeleteRole, and a stack whose service role is gone or
powerless ends in DELETE_FAILED ("Role ... is invalid or cannot be assumed", AWS Knowledge
Center: cloudformation-role-arn-error and cloudformation-stack-delete-failed). Retained, the role
outlives the deletion: free of charge, trusted only by CloudFormation, and what it may do is
reachable only through a DeleteStack that passes it. It exists only while the stack has a limit
with action delete, and `stack delete` removes it after the stack is gone (stack/operations.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from troposphere import And, Condition, Equals, GetAtt, If, Not, NoValue, Or, Output, StackId, Sub, Template, iam

from cfn_chainermn.config.sections import IDLE_OFF
from cfn_chainermn.names import OUT_SHUTDOWN_ROLE, SHUTDOWN_POLICY, SHUTDOWN_ROLE_RESOURCE
from cfn_chainermn.template.parameters import Inputs

# What CloudFormation needs to delete each resource type the template has (scoped to this
# account and region, since CloudFormation names them), and to see them gone (Describe*, which
# these services do not scope to resources). Reachable only through this stack's DeleteStack.
_REGIONAL = "arn:${AWS::Partition}:%s:${AWS::Region}:${AWS::AccountId}:%s"
_ASG = _REGIONAL % ("autoscaling", "autoScalingGroup:*:autoScalingGroupName/*")
DELETES = {  # Sid: (resources, actions)
    "DeleteNetworkAndLaunchTemplates": (_REGIONAL % ("ec2", "*"), [
        "ec2:DeleteLaunchTemplate", "ec2:DeletePlacementGroup", "ec2:DeleteRoute", "ec2:DeleteRouteTable",
        "ec2:DisassociateRouteTable", "ec2:DeleteSecurityGroup", "ec2:RevokeSecurityGroupIngress",
        "ec2:RevokeSecurityGroupEgress", "ec2:DeleteSubnet", "ec2:DeleteVpc", "ec2:DetachInternetGateway",
        "ec2:DeleteInternetGateway",
        "ec2:DeleteNetworkInterface"]),  # EFS's DeleteMountTarget needs it of the caller (EFS API reference)
    "DeleteWorkerGroup": (_ASG, ["autoscaling:DeleteAutoScalingGroup", "autoscaling:UpdateAutoScalingGroup"]),
    "DeleteFileSystem": (_REGIONAL % ("elasticfilesystem", "file-system/*"), [
        "elasticfilesystem:DeleteFileSystem", "elasticfilesystem:DeleteMountTarget"]),
    "DeleteKeyBucket": ("arn:${AWS::Partition}:s3:::*", ["s3:DeleteBucket", "s3:DeleteBucketPolicy",
                                                          "s3:GetBucketPolicy"]),
    # The stack's two node roles and their instance profiles (IAM is global: no region).
    "DeleteNodeRoles": ("arn:${AWS::Partition}:iam::${AWS::AccountId}:role/*", [
        "iam:DeleteRole", "iam:DeleteRolePolicy", "iam:GetRole", "iam:ListRolePolicies",
        "iam:ListAttachedRolePolicies", "iam:ListInstanceProfilesForRole"]),
    "DeleteNodeProfiles": ("arn:${AWS::Partition}:iam::${AWS::AccountId}:instance-profile/*", [
        "iam:DeleteInstanceProfile", "iam:RemoveRoleFromInstanceProfile", "iam:GetInstanceProfile"]),
}
READS = ["autoscaling:DescribeAutoScalingGroups", "autoscaling:DescribeScalingActivities",
         "ec2:DescribeLaunchTemplates", "ec2:DescribeLaunchTemplateVersions", "ec2:DescribePlacementGroups",
         "ec2:DescribeRouteTables", "ec2:DescribeSecurityGroups", "ec2:DescribeSecurityGroupRules",
         "ec2:DescribeSubnets", "ec2:DescribeVpcs", "ec2:DescribeInternetGateways", "ec2:DescribeInstances",
         "ec2:DescribeNetworkInterfaces", "elasticfilesystem:DescribeFileSystems",
         "elasticfilesystem:DescribeMountTargets"]
# The tag CloudFormation puts on what it creates ("Resource tag", CloudFormation user guide:
# aws:cloudformation:stack-id): the one instance the role terminates is the master, this stack's.
STACK_TAG = "aws:cloudformation:stack-id"
CONDITIONS = ("HasIdleLimit", "IdleDeletesStack", "IdleStopsNodes")


@dataclass(frozen=True)
class Idle:
    """The condition names the master's statements test, and the service role (when it exists)."""

    deletes: str
    stops: str
    role: iam.Role


def _statement(sid: str, actions: list[str], resources: list[Any], condition: Any = None) -> dict[str, Any]:
    out = {"Sid": sid, "Effect": "Allow", "Action": actions, "Resource": resources}
    return {**out, "Condition": condition} if condition is not None else out


def shutdown_statements() -> list[dict[str, Any]]:
    """The service role's policy: delete this template's resource types, and nothing else."""
    deletes = [_statement(sid, actions, [Sub(arn)]) for sid, (arn, actions) in DELETES.items()]
    return [
        _statement("SeeResourcesGone", READS, ["*"]),
        *deletes,
        _statement("TerminateThisStacksMaster", ["ec2:TerminateInstances"], [Sub(_REGIONAL % ("ec2", "instance/*"))],
                   {"StringEquals": {f"ec2:ResourceTag/{STACK_TAG}": StackId}}),
    ]


def add_idle(t: Template, p: Inputs) -> Idle:
    """Conditions (a limit is set; its action) and the service role for `delete`."""
    has_limit, deletes_stack, stops_nodes = CONDITIONS
    limit = t.add_condition(has_limit, Or(Not(Equals(p.ref("IdleMinutes"), IDLE_OFF)),
                                                Not(Equals(p.ref("MaxHours"), IDLE_OFF))))
    deletes = t.add_condition(deletes_stack, And(Condition(limit), Equals(p.ref("IdleAction"), "delete")))
    stops = t.add_condition(stops_nodes, And(Condition(limit), Equals(p.ref("IdleAction"), "stop")))
    role = t.add_resource(iam.Role(
        SHUTDOWN_ROLE_RESOURCE, Condition=deletes, DeletionPolicy="Retain", UpdateReplacePolicy="Retain",
        Description=Sub("cfn-chainermn: CloudFormation deletes ${AWS::StackName} with it when the cluster idles"),
        AssumeRolePolicyDocument={"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"Service": "cloudformation.amazonaws.com"}, "Action": "sts:AssumeRole"}]},
        Policies=[iam.Policy(PolicyName=SHUTDOWN_POLICY, PolicyDocument={
            "Version": "2012-10-17", "Statement": shutdown_statements()})],
    ))
    return Idle(deletes=deletes, stops=stops, role=role)


def add_idle_output(t: Template, idle: Idle) -> None:
    """The service role's ARN, which the master passes to DeleteStack (after the other outputs)."""
    t.add_output(Output(OUT_SHUTDOWN_ROLE, Condition=idle.deletes, Value=GetAtt(idle.role, "Arn"),
                        Description="Role CloudFormation assumes when the master deletes this idle stack"))


def master_statements(idle: Idle, p: Inputs, bucket_arn: str) -> list[Any]:
    """What the master may do for idle shutdown: read its stack (the limits are its parameters),
    and, only under the matching condition, delete it (empty the key bucket, pass the service
    role, DeleteStack on this stack's id) or stop the nodes (this stack's group and instances)."""
    own = {"StringEquals": {f"aws:ResourceTag/{STACK_TAG}": StackId}}
    delete = [
        _statement("IdleDeleteThisStack", ["cloudformation:DeleteStack"], [StackId]),
        _statement("IdlePassShutdownRole", ["iam:PassRole"], [GetAtt(idle.role, "Arn")],
                   {"StringEquals": {"iam:PassedToService": "cloudformation.amazonaws.com"}}),
        # `stack delete`'s empty_bucket, by the master: every version and delete marker.
        _statement("IdleListKeyBucketVersions", ["s3:ListBucketVersions"], [Sub(bucket_arn)]),
        _statement("IdleEmptyKeyBucket", ["s3:DeleteObject", "s3:DeleteObjectVersion"], [Sub(f"{bucket_arn}/*")]),
    ]
    stop = [
        _statement("IdleStopWorkers", ["autoscaling:UpdateAutoScalingGroup"], [Sub(_ASG)], own),
        _statement("IdleStopMaster", ["ec2:StopInstances"], [Sub(_REGIONAL % ("ec2", "instance/*"))], own),
    ]
    return [
        _statement("IdleReadThisStack", ["cloudformation:DescribeStacks"], [StackId]),
        *(If(idle.deletes, s, NoValue) for s in delete),
        *(If(idle.stops, s, NoValue) for s in stop),
    ]


def limits_tag(p: Inputs) -> dict[str, Any]:
    """A tag naming the limits, for the master role: a change of IdleMinutes or MaxHours alone then
    changes a resource (IAM role tags update without interruption), so the update's change set is
    not empty; the master reads the values themselves from DescribeStacks."""
    p.ref("IdleMinutes"), p.ref("MaxHours"), p.ref("IdleAction")  # KeyError here if one is renamed
    return {"Key": "cfn-chainermn:idle", "Value": Sub("idle ${IdleMinutes} min / max ${MaxHours} h / ${IdleAction}")}
