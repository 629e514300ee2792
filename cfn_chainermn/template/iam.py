"""IAM roles and instance profiles of the master and the workers.

Least privilege, written out per statement: the master may write cluster-key/ (the cluster key,
its own host key, which the CLI pins, and the cluster view the workers' files come from), workers
may only read it (and the key bucket's policy keeps every other principal from reading the
private key); every node publishes (and retracts) its records and writes logs;
ec2:DescribeInstances is the one action on "*" because EC2 does not support resource-level
permissions for it. No managed policies: the AWS ones grant wildcards this cluster does not need.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from troposphere import Ref, StackId, Sub, Template, iam, s3

from cfn_chainermn.names import CHAINER_STACK_PREFIX, KEY_PREFIX, LOGS_PREFIX, NODES_PREFIX
from cfn_chainermn.template.idle import Idle, limits_tag, master_statements
from cfn_chainermn.template.parameters import Inputs


@dataclass(frozen=True)
class Profiles:
    master: iam.InstanceProfile
    worker: iam.InstanceProfile


def role_id(role: str) -> str:
    """The logical id of a node role ("master" -> MasterRole): the key bucket's policy names both."""
    return f"{role.capitalize()}Role"


def _statement(sid: str, actions: list[str], resources: list[Any]) -> dict[str, Any]:
    return {"Sid": sid, "Effect": "Allow", "Action": actions, "Resource": resources}


def node_statements(role: str, p: Inputs, bucket: s3.Bucket, idle: Idle | None = None) -> list[Any]:
    """The policy statements of one role ("master" or "worker")."""
    arn = f"${{{bucket.title}.Arn}}"

    def objects(prefix: str) -> Sub:
        return Sub(f"{arn}/{prefix}*")

    key_actions = ["s3:GetObject", "s3:PutObject"] if role == "master" else ["s3:GetObject"]
    return [
        # Node discovery: EC2 cannot scope DescribeInstances to resources.
        _statement("DiscoverClusterNodes", ["ec2:DescribeInstances"], ["*"]),
        # Report the node's true boot result to this stack only.
        _statement("SignalThisStack", ["cloudformation:SignalResource"], [StackId]),
        # The bootstrap reads the agent wheel out of this stack's own template (template/bootstrap.py).
        _statement("ReadThisStackTemplate", ["cloudformation:GetTemplate"], [StackId]),
        # Listing turns "not there yet" into 404 instead of 403 while workers wait for the key.
        _statement("ListKeyBucket", ["s3:ListBucket"], [Sub(arn)]),
        _statement("WriteClusterKey" if role == "master" else "ReadClusterKey", key_actions, [objects(KEY_PREFIX)]),
        # nodes/* for every node: IAM cannot scope it to nodes/<own instance id>/ (no policy variable
        # holds the bare instance id; aws:userid is "<role id>:<instance id>"). So no reader outside
        # the cluster trusts nodes/: the CLI pins the master from cluster-key/, which only it writes.
        # DeleteObject: a node retracts its own ready marker when it (re)boots, same scope as PutObject.
        _statement("PublishNodeRecords", ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                   [objects(NODES_PREFIX)]),
        _statement("WriteAgentLogs", ["s3:PutObject"], [objects(LOGS_PREFIX)]),
        # The Chainer stack's wheelhouse (node/chainer_stack.py): the master builds it, workers install it.
        _statement("WriteChainerStack" if role == "master" else "ReadChainerStack", key_actions,
                   [objects(CHAINER_STACK_PREFIX)]),
        # Idle shutdown (template/idle.py): the master's alone, scoped to this stack; what names the
        # service role or the nodes is the separate MasterIdlePolicy (a cycle otherwise).
        *(master_statements(idle, arn) if role == "master" and idle is not None else []),
    ]


def _role(t: Template, role: str, p: Inputs, bucket: s3.Bucket, idle: Idle) -> iam.InstanceProfile:
    tags = {"Tags": [limits_tag(p)]} if role == "master" else {}
    r = t.add_resource(iam.Role(
        role_id(role),
        Description=Sub(f"cfn-chainermn {role} nodes of ${{AWS::StackName}}"),
        AssumeRolePolicyDocument={"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]},
        Policies=[iam.Policy(PolicyName=f"cfn-chainermn-{role}", PolicyDocument={
            "Version": "2012-10-17", "Statement": node_statements(role, p, bucket, idle)})],
        **tags,
    ))
    return t.add_resource(iam.InstanceProfile(f"{role.capitalize()}InstanceProfile", Roles=[Ref(r)]))


def add_iam(t: Template, p: Inputs, bucket: s3.Bucket, idle: Idle) -> Profiles:
    return Profiles(master=_role(t, "master", p, bucket, idle), worker=_role(t, "worker", p, bucket, idle))
