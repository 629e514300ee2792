"""AWS back ends: the key bucket in S3 and CloudFormation signals (discovery: discovery.py).

Clients are made at the CLI edge and passed in.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Literal

from cfn_chainermn.aws import aws_call
from cfn_chainermn.cluster import inventory
from cfn_chainermn.errors import AgentError, AwsError
from cfn_chainermn.node.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_cloudformation import CloudFormationClient
    from mypy_boto3_s3 import S3Client


class S3Bucket:
    def __init__(self, s3: S3Client, name: str) -> None:
        self.s3 = s3
        self.name = name

    def get(self, key: str) -> bytes | None:
        try:
            return inventory.get_bytes(self.s3, self.name, key)
        except AwsError as exc:
            if exc.code in inventory.MISSING_CODES:
                return None
            raise

    def put(self, key: str, data: bytes, *, secret: bool = False) -> None:
        """Every object is written SSE-S3 explicitly, not only by the bucket's default: the
        encryption then holds even where that default was changed."""
        aws_call("PutObject", lambda: self.s3.put_object(
            Bucket=self.name, Key=key, Body=data, ServerSideEncryption="AES256"))

    def delete(self, key: str) -> None:
        aws_call("DeleteObject", lambda: self.s3.delete_object(Bucket=self.name, Key=key))


# CloudFormation's answer when nothing waits for a signal: a worker added by `stack scale` or by
# Auto Scaling replacing a spot worker boots after WorkerGroup reached *_COMPLETE.
_NOT_AWAITED = re.compile(r"Resource (\S+) is in ([A-Z_]+) state and cannot be signall?ed")


class CfnSignal:
    """cfn-signal's job, done with boto3 so the agent needs no helper scripts on the AMI.

    Made before the boot; it reads stack, resource and instance id from the settings when it
    signals, since the identity step learns the instance id."""

    def __init__(self, cfn: CloudFormationClient | None, settings: Settings) -> None:
        self.cfn, self.settings = cfn, settings

    def signal(self, success: bool, unique_id: str = "") -> str:
        """Send the signal (as the instance id unless `unique_id` stands in for it). A resource
        already complete awaits none: that is not a failure (the node is as ready as its steps
        say); every other error still raises AwsError."""
        status: Literal["SUCCESS", "FAILURE"] = "SUCCESS" if success else "FAILURE"
        stack, resource = self.settings.stack, self.settings.signal_resource
        instance_id = unique_id or self.settings.node_id
        cfn = self.cfn
        if cfn is None:  # refresh runs without one: it never signals
            raise AgentError("no CloudFormation client to signal with")
        try:
            aws_call("SignalResource", lambda: cfn.signal_resource(
                StackName=stack, LogicalResourceId=resource, UniqueId=instance_id, Status=status))
        except AwsError as exc:
            found = _NOT_AWAITED.search(str(exc)) if exc.code == "ValidationError" else None
            if found is None:
                raise
            return (f"no signal awaited (resource already complete): {stack}/{found.group(1)} "
                    f"is {found.group(2)}, {status} not sent")
        return f"{status} sent to {stack}/{resource}" + (f" as {unique_id}" if unique_id else "")
