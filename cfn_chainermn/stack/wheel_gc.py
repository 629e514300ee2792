"""Pruning the staging bucket's agent wheels that no stack uses any more.

Every `stack create` and `stack update` stages a fresh wheel, and a stack's nodes need theirs
for as long as the stack lives (a scale-out or Spot replacement installs it then), so wheels
cannot simply expire. After `stack delete` the bucket is pruned of wheels that no stack of the
region names in AgentWheelS3Path, with two guards against taking one still needed:
- nothing is pruned while any stack of the region is *_IN_PROGRESS (an update may roll back
  to its old wheel; a create may be about to name a wheel just staged), REVIEW_IN_PROGRESS
  aside (a stack made by a change set nobody executed has no nodes and may stay so for good);
- a wheel younger than KEEP_HOURS stays (staged by a `stack create` that has not yet called
  CreateStack, here or on another machine).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cfn_chainermn.errors import AwsError
from cfn_chainermn.stack.staging import AGENT_PREFIX

if TYPE_CHECKING:
    from mypy_boto3_cloudformation import CloudFormationClient
    from mypy_boto3_s3 import S3Client


KEEP_HOURS = 24
WHEEL_PARAMETER = "AgentWheelS3Path"


@dataclass(frozen=True)
class Pruned:
    removed: int  # wheels deleted
    kept: int  # wheels still named by a stack, or too young to judge
    busy: str = ""  # the stack whose change in progress stopped the pruning, if one did


def wheels_in_use(cfn: CloudFormationClient) -> tuple[set[str], str]:
    """("bucket/key" of every live stack's agent wheel, the name of a stack in progress or "")."""
    used: set[str] = set()
    for page in cfn.get_paginator("describe_stacks").paginate():
        for stack in page.get("Stacks", []):
            status = stack.get("StackStatus", "")
            if status == "REVIEW_IN_PROGRESS":  # a change set never executed: no nodes, may wait for ever
                continue
            if status.endswith("_IN_PROGRESS"):
                return used, str(stack.get("StackName", "?"))
            if status == "DELETE_COMPLETE":  # listed by some endpoints; its nodes are gone
                continue
            for param in stack.get("Parameters", []):
                if param.get("ParameterKey") == WHEEL_PARAMETER and param.get("ParameterValue"):
                    used.add(str(param["ParameterValue"]))
    return used, ""


def prune_agent_wheels(s3: S3Client, cfn: CloudFormationClient, bucket: str, owner: str,
                       now: dt.datetime | None = None) -> Pruned:
    """Delete the bucket's agent wheels that no stack names and that are older than KEEP_HOURS."""
    from botocore.exceptions import ClientError

    from cfn_chainermn.aws import delete_objects, error_code

    used, busy = wheels_in_use(cfn)
    if busy:
        return Pruned(0, 0, busy)
    cutoff = (now or dt.datetime.now(dt.timezone.utc)) - dt.timedelta(hours=KEEP_HOURS)
    stale: list[str] = []
    kept = 0
    try:
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=AGENT_PREFIX,
                                                              ExpectedBucketOwner=owner)
        for page in pages:
            for obj in page.get("Contents", []):
                if f"{bucket}/{obj['Key']}" in used or obj["LastModified"] > cutoff:
                    kept += 1
                else:
                    stale.append(obj["Key"])
    except ClientError as exc:
        if error_code(exc) == "NoSuchBucket":  # never staged anything in this region
            return Pruned(0, 0)
        raise
    refused = delete_objects(s3, bucket, [{"Key": key} for key in stale], ExpectedBucketOwner=owner)
    if refused:
        raise AwsError(f"deleting {refused}", operation="DeleteObjects")
    return Pruned(len(stale), kept)
