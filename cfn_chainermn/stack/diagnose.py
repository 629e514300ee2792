"""Why a node failed to bootstrap: the tail of its agent log, from the key bucket or EC2.

CloudFormation only says "Received FAILURE signal" or "Failed to receive 1 resource
signal(s)"; the reason is in the node agent's log. The agent copies its log to
logs/<instance-id>/agent.log in the key bucket; a node that never got that far still has its
boot output in the EC2 console. This runs as soon as the failure event appears, before a
rollback deletes the instances and the bucket.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cfn_chainermn.names import CLUSTER_TAG, LOGS_PREFIX, MASTER_RESOURCE, NODES_PREFIX, ROLE_TAG, WORKER_GROUP_RESOURCE

if TYPE_CHECKING:
    from mypy_boto3_autoscaling import AutoScalingClient
    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_ec2.type_defs import FilterTypeDef
    from mypy_boto3_s3 import S3Client


TAIL_LINES = 20
MAX_NODES = 3
_INSTANCE_RE = re.compile(r"\bi-[0-9a-f]{8,17}\b")
_NODE_RESOURCES = (MASTER_RESOURCE, WORKER_GROUP_RESOURCE)
# EC2's words when it has no instances to give: the error code (RunInstances, and Auto Scaling's
# activity messages quote it), the sentence its message starts with, and Spot's own.
_NO_CAPACITY = re.compile(r"InsufficientInstanceCapacity|do not have sufficient \S* ?capacity|"
                          r"no Spot capacity available|InsufficientCapacity|UnfulfillableCapacity", re.IGNORECASE)
CAPACITY_OPTIONS = (
    "EC2 has no capacity for these instances here now (a cluster placement group needs every node close together "
    "in one availability zone). Options: another availability zone (--az, or a subnet in another zone); fewer "
    "workers (--workers); other instance types (--worker-instance-type, or with Spot workers --spot-instance-types "
    "of the same GPU count); On-Demand instead of Spot workers (--on-demand-workers); or try again later")


@dataclass(frozen=True)
class NodeLog:
    instance_id: str
    source: str
    lines: list[str]

    def render(self) -> str:
        head = f"last {len(self.lines)} lines of {self.source}:"
        return "\n".join([head, *(f"  | {line}" for line in self.lines)])


def concerns_nodes(event: dict[str, Any]) -> bool:
    """A failure of the master or the worker group (a bootstrap failure or signal timeout)."""
    return event.get("LogicalResourceId") in _NODE_RESOURCES or "signal" in str(
        event.get("ResourceStatusReason", "")).lower()


def _tail(text: str, n: int = TAIL_LINES) -> list[str]:
    return [line.rstrip() for line in text.rstrip().splitlines()[-n:]]


def _tagged_instances(ec2: EC2Client, stack_name: str, role: str | None) -> list[str]:
    filters: list[FilterTypeDef] = [{"Name": f"tag:{CLUSTER_TAG}", "Values": [stack_name]},
               {"Name": "instance-state-name", "Values": ["pending", "running", "shutting-down", "stopping",
                                                         "stopped"]}]
    if role:
        filters.append({"Name": f"tag:{ROLE_TAG}", "Values": [role]})
    ids: list[str] = []
    for page in ec2.get_paginator("describe_instances").paginate(Filters=filters):
        for reservation in page["Reservations"]:
            ids.extend(i["InstanceId"] for i in reservation["Instances"])
    return ids


def _is_ready(s3: S3Client, bucket: str, instance_id: str) -> bool:
    from botocore.exceptions import ClientError

    try:
        s3.head_object(Bucket=bucket, Key=f"{NODES_PREFIX}{instance_id}/ready")
    except ClientError:
        return False
    return True


def suspects(ec2: EC2Client, s3: S3Client, bucket: str | None, stack_name: str, event: dict[str, Any]) -> list[str]:
    """Instances behind a failed node resource: named in the reason, else the stack's not-ready nodes."""
    reason = str(event.get("ResourceStatusReason", ""))
    ids = _INSTANCE_RE.findall(reason)
    physical = str(event.get("PhysicalResourceId", ""))
    if event.get("LogicalResourceId") == MASTER_RESOURCE and _INSTANCE_RE.fullmatch(physical):
        ids.append(physical)
    if not ids:
        role = {MASTER_RESOURCE: "master", WORKER_GROUP_RESOURCE: "worker"}.get(str(event.get("LogicalResourceId")))
        ids = _tagged_instances(ec2, stack_name, role)
        if bucket:
            ids = [i for i in ids if not _is_ready(s3, bucket, i)] or ids
    return list(dict.fromkeys(ids))[:MAX_NODES]


def node_log(ec2: EC2Client, s3: S3Client, bucket: str | None, instance_id: str) -> NodeLog | None:
    """The agent log from the bucket, else the instance's console output, else None."""
    from botocore.exceptions import ClientError

    if bucket:
        key = f"{LOGS_PREFIX}{instance_id}/agent.log"
        try:
            body = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode("utf-8", "replace")
            if body.strip():
                return NodeLog(instance_id, f"s3://{bucket}/{key}", _tail(body))
        except ClientError:
            pass
    try:
        output = ec2.get_console_output(InstanceId=instance_id).get("Output") or ""
    except ClientError:
        return None
    if not output.strip():
        return None
    return NodeLog(instance_id, f"the EC2 console output of {instance_id}", _tail(output))


def node_logs(ec2: EC2Client, s3: S3Client, bucket: str | None, stack_name: str,
              event: dict[str, Any]) -> list[NodeLog]:
    """Logs of the nodes behind a failure; [] when it is not a node failure or nothing is readable."""
    from botocore.exceptions import ClientError

    if not concerns_nodes(event):
        return []
    try:
        ids = suspects(ec2, s3, bucket, stack_name, event)
    except ClientError:
        return []
    logs = [node_log(ec2, s3, bucket, i) for i in ids]
    return [log for log in logs if log is not None]


def capacity_advice(text: str) -> str | None:
    """The options, when `text` (a stack event's reason, a scaling activity's message) says EC2 ran
    out of capacity; None for any other failure."""
    return CAPACITY_OPTIONS if _NO_CAPACITY.search(text) else None


def scaling_failure(autoscaling: AutoScalingClient, group_name: str) -> str | None:
    """Why the worker group's last launch failed, in EC2's words: CloudFormation's event says only
    that signals did not come, while the group's scaling activity keeps RunInstances' error."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        activities = autoscaling.describe_scaling_activities(AutoScalingGroupName=group_name,
                                                             MaxRecords=10)["Activities"]
    except (ClientError, BotoCoreError):
        return None
    failed = [a for a in activities if a.get("StatusCode") in ("Failed", "Cancelled") and a.get("StatusMessage")]
    return str(failed[0]["StatusMessage"]) if failed else None
