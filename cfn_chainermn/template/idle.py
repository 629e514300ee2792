"""Idle shutdown in the template: its conditions, the CloudFormation service role the master's
deletion runs under (its policy: idle_scope.py), and the master's statements for it (node/idle.py
does the counting).

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
with action delete; `stack delete` removes it after the stack is gone, `stack update` after an
update drops it, and after the master's own deletion `stack delete NAME` finds it by its tag
naming the stack's id (stack/roles.py).

Why the master's idle statements are in two places: the role's policy names the master instance,
its role and profile, so the master role cannot name the role back inline (a dependency cycle).
What names the role or the nodes (PassRole, DeleteStack, scaling the workers to 0, StopInstances)
is in a separate AWS::IAM::Policy attached to the master role (MasterIdleDeletePolicy or
MasterIdleStopPolicy), created after both. Emptying the key bucket stays inline in the master
role: CloudFormation deletes first what nothing depends on, so that policy goes at the start of
the deletion, while the inline statements last until the master role goes, after the master is
terminated; the master empties the bucket after DeleteStack, under them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from troposphere import And, Condition, Equals, GetAtt, If, Not, NoValue, Or, Output, Ref, StackId, Sub, Template, iam

from cfn_chainermn.config.sections import IDLE_OFF
from cfn_chainermn.names import OUT_SHUTDOWN_ROLE, SHUTDOWN_POLICY, SHUTDOWN_ROLE_RESOURCE, SHUTDOWN_ROLE_STACK_TAG
from cfn_chainermn.template.idle_scope import MASTER_ARN, WORKER_GROUP_ARN, shutdown_statements, statement
from cfn_chainermn.template.parameters import Inputs

CONDITIONS = ("HasIdleLimit", "IdleDeletesStack", "IdleStopsNodes")
MASTER_IDLE_DELETE, MASTER_IDLE_STOP = "MasterIdleDeletePolicy", "MasterIdleStopPolicy"


@dataclass(frozen=True)
class Idle:
    """The condition names the master's statements test."""

    deletes: str
    stops: str


def add_idle(t: Template, p: Inputs) -> Idle:
    """The conditions: a limit is set; its action."""
    has_limit, deletes_stack, stops_nodes = CONDITIONS
    limit = t.add_condition(has_limit, Or(Not(Equals(p.ref("IdleMinutes"), IDLE_OFF)),
                                                Not(Equals(p.ref("MaxHours"), IDLE_OFF))))
    deletes = t.add_condition(deletes_stack, And(Condition(limit), Equals(p.ref("IdleAction"), "delete")))
    stops = t.add_condition(stops_nodes, And(Condition(limit), Equals(p.ref("IdleAction"), "stop")))
    return Idle(deletes=deletes, stops=stops)


def add_shutdown(t: Template, p: Inputs, idle: Idle, subnet_id: Any, master_role: str) -> None:
    """The service role for `delete`, the master's policies that name it (and the nodes), and the
    role's ARN as the last output; after every resource the role names."""
    role = t.add_resource(iam.Role(
        SHUTDOWN_ROLE_RESOURCE, Condition=idle.deletes, DeletionPolicy="Retain", UpdateReplacePolicy="Retain",
        Description=Sub("cfn-chainermn: CloudFormation deletes ${AWS::StackName} with it when the cluster idles"),
        # Its stack's id: once the master's deletion is done, the output naming the role is gone, and
        # `stack delete NAME` finds the role by name and this tag (stack/roles.py).
        Tags=[{"Key": SHUTDOWN_ROLE_STACK_TAG, "Value": StackId}],
        AssumeRolePolicyDocument={"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"Service": "cloudformation.amazonaws.com"}, "Action": "sts:AssumeRole"}]},
        Policies=[iam.Policy(PolicyName=SHUTDOWN_POLICY, PolicyDocument={
            "Version": "2012-10-17", "Statement": shutdown_statements(p, subnet_id)})],
    ))
    for name, condition, statements in master_idle_policies(idle, GetAtt(role, "Arn")):
        t.add_resource(iam.PolicyType(name, Condition=condition, PolicyName=f"cfn-chainermn-{name}",
                                      Roles=[Ref(master_role)],
                                      PolicyDocument={"Version": "2012-10-17", "Statement": statements}))
    t.add_output(Output(OUT_SHUTDOWN_ROLE, Condition=idle.deletes, Value=GetAtt(role, "Arn"),
                        Description="Role CloudFormation assumes when the master deletes this idle stack"))


def master_idle_policies(idle: Idle, role_arn: Any) -> list[tuple[str, str, list[dict[str, Any]]]]:
    """The master's policies that name the role or the nodes, (name, condition, statements): each
    scales the worker group to 0; `delete` then waits for it to empty and sends DeleteStack on this
    stack's id passing the service role, `stop` stops the master itself. Two policies, each under its
    own condition, rather than Fn::If inside one (moto keeps an If's NoValue as a null statement)."""
    scale = statement("IdleScaleWorkersToZero", ["autoscaling:UpdateAutoScalingGroup"], [Sub(WORKER_GROUP_ARN)])
    return [
        (MASTER_IDLE_DELETE, idle.deletes, [
            scale,
            statement("IdleSeeWorkersGone", ["autoscaling:DescribeAutoScalingGroups"], ["*"]),  # no resource type
            # Only as the service role: a DeleteStack without RoleARN would delete with the master's
            # own credentials, or with the role last associated with the stack (DeleteStack's RoleARN,
            # CloudFormation API reference). DeleteStack takes cloudformation:RoleArn (Service
            # Authorization Reference, "Actions, resources, and condition keys for AWS CloudFormation";
            # as generated from it in udondan/iam-floyd lib/generated/cloudformation.ts, ifRoleArn).
            statement("IdleDeleteThisStack", ["cloudformation:DeleteStack"], [StackId],
                      {"ArnEquals": {"cloudformation:RoleArn": role_arn}}),
            statement("IdlePassShutdownRole", ["iam:PassRole"], [role_arn],
                      {"StringEquals": {"iam:PassedToService": "cloudformation.amazonaws.com"}})]),
        (MASTER_IDLE_STOP, idle.stops, [
            scale, statement("IdleStopMaster", ["ec2:StopInstances"], [Sub(MASTER_ARN)])]),
    ]


def master_statements(idle: Idle, bucket_arn: str) -> list[Any]:
    """The master role's inline idle statements: read its stack (the limits are its parameters) and its
    events (why a deletion failed), and with `delete`, empty the key bucket (`stack delete`'s
    empty_bucket: every version and marker)."""
    empty = [
        statement("IdleListKeyBucketVersions", ["s3:ListBucketVersions"], [Sub(bucket_arn)]),
        statement("IdleEmptyKeyBucket", ["s3:DeleteObject", "s3:DeleteObjectVersion"], [Sub(f"{bucket_arn}/*")]),
    ]
    return [
        statement("IdleReadThisStack", ["cloudformation:DescribeStackEvents", "cloudformation:DescribeStacks"],
                  [StackId]),
        *(If(idle.deletes, s, NoValue) for s in empty),
    ]


def limits_tag(p: Inputs) -> dict[str, Any]:
    """A tag naming the limits, for the master role: a change of IdleMinutes or MaxHours alone then
    changes a resource (IAM role tags update without interruption), so the update's change set is
    not empty; the master reads the values themselves from DescribeStacks."""
    p.ref("IdleMinutes"), p.ref("MaxHours"), p.ref("IdleAction")  # KeyError here if one is renamed
    return {"Key": "cfn-chainermn:idle", "Value": Sub("idle ${IdleMinutes} min / max ${MaxHours} h / ${IdleAction}")}
