"""The cluster's nodes as AWS sees them: EC2 tags and state, plus readiness from the key bucket.

One reader for the agent (hostfile refresh), the stack CLI and the jobs CLI. Unlike the 2018
cron script it filters on instance state, reads readiness from the bucket, and raises
`AwsError` on any API failure (through aws.aws_call, the package's one error path) so a
caller can keep its last good hostfile instead of writing an empty one.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from cfn_chainermn.aws import aws_call
from cfn_chainermn.cluster.hostfile import Node
from cfn_chainermn.errors import AwsError
from cfn_chainermn.names import CLUSTER_TAG, MASTER_HOST_KEY, NODES_PREFIX, ROLE_TAG

LIVE_STATES = ("pending", "running")
READY_NAME = "ready"
HOST_KEY_NAME = "host_ed25519.pub"
# Error codes S3 answers for "no such object" (GetObject: NoSuchKey; HEAD-style: 404/NotFound).
MISSING_CODES = ("NoSuchKey", "404", "NotFound")

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_ec2.type_defs import FilterTypeDef, InstanceTypeDef
    from mypy_boto3_s3 import S3Client

__all__ = ["get_bytes", "host_keys", "list_nodes", "master_host_key", "ready_ids"]


def _node_objects(s3: S3Client, bucket: str) -> Iterator[str]:
    """Every key under nodes/ (paginated)."""
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=NODES_PREFIX)
    for page in pages:
        for obj in page.get("Contents", []):
            yield str(obj["Key"])


def _split(key: str) -> tuple[str, str]:
    """nodes/<id>/<name> -> (id, name); ("", "") for anything else."""
    parts = key[len(NODES_PREFIX):].split("/")
    return (parts[0], parts[1]) if len(parts) == 2 and parts[0] else ("", "")


def ready_ids(s3: S3Client, bucket: str) -> set[str]:
    """Instance ids that wrote nodes/<id>/ready."""
    keys = aws_call("ListObjectsV2", lambda: list(_node_objects(s3, bucket)))
    return {iid for iid, name in map(_split, keys) if name == READY_NAME}


def _instances(ec2: EC2Client, stack_name: str) -> list[InstanceTypeDef]:
    filters: list[FilterTypeDef] = [
        {"Name": f"tag:{CLUSTER_TAG}", "Values": [stack_name]},
        {"Name": "instance-state-name", "Values": list(LIVE_STATES)},
    ]
    pages = ec2.get_paginator("describe_instances").paginate(Filters=filters)
    return [inst for page in pages for res in page.get("Reservations", []) for inst in res.get("Instances", [])]


def list_nodes(ec2: EC2Client, s3: S3Client, stack_name: str, bucket: str) -> list[Node]:
    """The stack's pending/running instances, each marked ready when its ready object exists."""
    instances = aws_call("DescribeInstances", lambda: _instances(ec2, stack_name))
    ready = ready_ids(s3, bucket)
    nodes = []
    for inst in instances:
        tags = {t["Key"]: t["Value"] for t in inst.get("Tags", [])}
        iid = str(inst["InstanceId"])
        nodes.append(Node(
            instance_id=iid,
            private_ip=str(inst.get("PrivateIpAddress", "")),
            role=tags.get(ROLE_TAG, "worker"),
            instance_type=str(inst.get("InstanceType", "")),
            state=str(inst.get("State", {}).get("Name", "")),
            ready=iid in ready,
        ))
    return sorted(nodes, key=lambda n: (n.role != "master", n.instance_id))


def get_bytes(s3: S3Client, bucket: str, key: str) -> bytes:
    """One object's body; AwsError (code NoSuchKey when absent) on failure."""

    def get() -> bytes:
        return bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())

    return aws_call("GetObject", get)


def key_line(text: str) -> str:
    """ "ssh-ed25519 AAAA..." from a .pub file's text: type and key, no comment ("" when empty)."""
    return " ".join(text.strip().split()[:2])


def host_keys(s3: S3Client, bucket: str) -> dict[str, str]:
    """instance id -> its published "ssh-ed25519 AAAA..." host key (one line, no comment).

    Every node can write under nodes/, so these keys are good for known_hosts inside the cluster
    (whose trust is flat: every node holds the cluster key) but not for pinning the master from
    outside it: that is master_host_key's job.
    """
    keys = aws_call("ListObjectsV2", lambda: list(_node_objects(s3, bucket)))
    out: dict[str, str] = {}
    for key in keys:
        iid, name = _split(key)
        if name != HOST_KEY_NAME:
            continue
        line = key_line(get_bytes(s3, bucket, key).decode("utf-8", "replace"))
        if line:
            out[iid] = line
    return out


def master_host_key(s3: S3Client, bucket: str) -> str | None:
    """The master's host key from cluster-key/, which only the master's role may write; None if absent.

    The CLI pins the master's SSH host key from here, so a worker that overwrites
    nodes/<master-id>/host_ed25519.pub cannot make the CLI trust a key of its choosing.
    """
    try:
        data = get_bytes(s3, bucket, MASTER_HOST_KEY)
    except AwsError as exc:
        if exc.code in MISSING_CODES:
            return None
        raise
    return key_line(data.decode("utf-8", "replace")) or None
