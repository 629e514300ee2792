"""The cluster's nodes as AWS sees them: EC2 tags and state, plus readiness from the key bucket.

One reader for the agent (hostfile refresh), the stack CLI and the jobs CLI. Unlike the 2018
cron script it filters on instance state, reads readiness from the bucket, and raises
`AwsError` on any API failure (through aws.aws_call, the package's one error path) so a
caller can keep its last good hostfile instead of writing an empty one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cfn_chainermn.aws import aws_call
from cfn_chainermn.cluster.hostfile import Node
from cfn_chainermn.cluster.view import LIVE_STATES
from cfn_chainermn.errors import AwsError
from cfn_chainermn.names import CLUSTER_TAG, MASTER_HOST_KEY, NODES_PREFIX, ROLE_TAG

READY_NAME = "ready"
HOST_KEY_NAME = "host_ed25519.pub"
BUSY_NAME = "busy"  # a worker's busy marker (node/idle_marker.py), present only while it is busy
MAX_NODE_OBJECT = 4096  # a host key line or a busy marker is far smaller; a larger object is not read
# Error codes S3 answers for "no such object" (GetObject: NoSuchKey; HEAD-style: 404/NotFound).
MISSING_CODES = ("NoSuchKey", "404", "NotFound")
PARALLEL_FROM = 8  # more objects to read than this: PARALLEL_READS GETs at a time (fetch_changed)
PARALLEL_READS = 8  # within botocore's default pool of 10 connections per client

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_ec2.type_defs import FilterTypeDef, InstanceTypeDef
    from mypy_boto3_s3 import S3Client

__all__ = ["LIVE_STATES", "NodeObjects", "fetch_changed", "fetch_host_keys", "get_bytes", "get_changed", "host_keys",
           "list_nodes", "live_instances", "master_host_key", "node_objects", "nodes_of", "ready_ids"]


def _node_objects(s3: S3Client, bucket: str) -> Iterator[tuple[str, str]]:
    """(key, ETag) of every object under nodes/ (paginated: one call per 1,000 keys)."""
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=NODES_PREFIX)
    for page in pages:
        for obj in page.get("Contents", []):
            yield str(obj["Key"]), str(obj.get("ETag", ""))


def _split(key: str) -> tuple[str, str]:
    """nodes/<id>/<name> -> (id, name); ("", "") for anything else."""
    parts = key[len(NODES_PREFIX):].split("/")
    return (parts[0], parts[1]) if len(parts) == 2 and parts[0] else ("", "")


@dataclass(frozen=True)
class NodeObjects:
    """What one listing of nodes/ says: who is ready, and the ETag of each published host key
    (which changes when the key does, so a key already read need not be read again) and of each
    busy marker (which its worker rewrites only when what keeps it busy changes)."""

    ready: frozenset[str]
    host_key_etags: Mapping[str, str]
    busy_etags: Mapping[str, str] = field(default_factory=dict)


def node_objects(s3: S3Client, bucket: str) -> NodeObjects:
    """One listing of nodes/ (ListObjectsV2, paginated)."""
    ready, etags, busy = set(), {}, {}
    for key, etag in aws_call("ListObjectsV2", lambda: list(_node_objects(s3, bucket))):
        iid, name = _split(key)
        if name == READY_NAME:
            ready.add(iid)
        elif name == HOST_KEY_NAME:
            etags[iid] = etag
        elif name == BUSY_NAME:
            busy[iid] = etag
    return NodeObjects(frozenset(ready), etags, busy)


def ready_ids(s3: S3Client, bucket: str) -> set[str]:
    """Instance ids that wrote nodes/<id>/ready."""
    return set(node_objects(s3, bucket).ready)


def _instances(ec2: EC2Client, stack_name: str) -> list[InstanceTypeDef]:
    filters: list[FilterTypeDef] = [
        {"Name": f"tag:{CLUSTER_TAG}", "Values": [stack_name]},
        {"Name": "instance-state-name", "Values": list(LIVE_STATES)},
    ]
    pages = ec2.get_paginator("describe_instances").paginate(Filters=filters)
    return [inst for page in pages for res in page.get("Reservations", []) for inst in res.get("Instances", [])]


def live_instances(ec2: EC2Client, stack_name: str) -> list[InstanceTypeDef]:
    """The stack's pending/running instances (DescribeInstances, paginated)."""
    return aws_call("DescribeInstances", lambda: _instances(ec2, stack_name))


def nodes_of(instances: list[InstanceTypeDef], ready: frozenset[str] | set[str]) -> list[Node]:
    """Instances as nodes, master first, each ready when its id is in `ready`."""
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


def list_nodes(ec2: EC2Client, s3: S3Client, stack_name: str, bucket: str) -> list[Node]:
    """The stack's pending/running instances, each marked ready when its ready object exists."""
    instances = live_instances(ec2, stack_name)
    return nodes_of(instances, ready_ids(s3, bucket))


def get_bytes(s3: S3Client, bucket: str, key: str) -> bytes:
    """One object's body; AwsError (code NoSuchKey when absent) on failure."""

    def get() -> bytes:
        return bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())

    return aws_call("GetObject", get)


def get_changed(s3: S3Client, bucket: str, key: str, etag: str, limit: int) -> tuple[bytes, str] | None:
    """(body, ETag) of an object, or None when its ETag is still `etag` ("": always read).

    S3 answers If-None-Match with 304 Not Modified and no body, which botocore raises as a
    ClientError of code "304" (boto3's behaviour, shown in paws-r/paws#462; moto does the same,
    getmoto/moto#8534), so an unchanged object costs one request and nothing to parse. A body over
    `limit` bytes is refused unread (AwsError, code TooLarge)."""

    def get() -> tuple[bytes, str]:
        got = (s3.get_object(Bucket=bucket, Key=key, IfNoneMatch=etag) if etag
               else s3.get_object(Bucket=bucket, Key=key))
        if int(got.get("ContentLength", 0)) > limit:
            got["Body"].close()
            raise AwsError(f"GetObject {key}: larger than {limit} bytes, not read", code="TooLarge",
                           operation="GetObject")
        return bytes(got["Body"].read(limit + 1)), str(got.get("ETag", ""))

    try:
        return aws_call("GetObject", get)
    except AwsError as exc:
        if etag and exc.code == "304":
            return None
        raise


def key_line(text: str) -> str:
    """ "ssh-ed25519 AAAA..." from a .pub file's text: type and key, no comment ("" when empty)."""
    return " ".join(text.strip().split()[:2])


def fetch_changed(s3: S3Client, bucket: str, name: str, etags: Mapping[str, str],
                  known: Mapping[str, tuple[str, str]] | None, convert: Callable[[bytes | None], str]
                  ) -> dict[str, tuple[str, str]]:
    """instance id -> (ETag, convert(body)) of nodes/<id>/NAME for each id of `etags` (from
    node_objects), read with GetObject only when `known` holds no value of that ETag: each object is
    read once per change, not per refresh. An object deleted since the listing (its node just
    left, or stopped being busy) is skipped; one over MAX_NODE_OBJECT bytes is converted as None,
    unread; an empty conversion is left out. More than PARALLEL_FROM reads (a master's first
    refresh of a large cluster) go PARALLEL_READS at a time: one after another, 256 keys at S3's
    tens of milliseconds each would take seconds."""
    out: dict[str, tuple[str, str]] = {}
    wanted = []
    for iid, etag in sorted(etags.items()):
        old = (known or {}).get(iid)
        if old is not None and etag and old[0] == etag:
            out[iid] = old
        else:
            wanted.append(iid)

    def read(iid: str) -> bytes | AwsError | None:
        try:  # unconditional ("" ETag): never None
            got = get_changed(s3, bucket, f"{NODES_PREFIX}{iid}/{name}", "", MAX_NODE_OBJECT)
            return got[0] if got is not None else None
        except AwsError as exc:
            return None if exc.code == "TooLarge" else exc

    if len(wanted) > PARALLEL_FROM:
        # boto3's clients are thread-safe ("Multithreading or multiprocessing with clients",
        # boto3 guide, clients.html); botocore pools 10 connections per client by default.
        from concurrent.futures import ThreadPoolExecutor  # only here: every refresh imports this module
        with ThreadPoolExecutor(PARALLEL_READS) as pool:
            bodies = list(pool.map(read, wanted))
    else:
        bodies = [read(iid) for iid in wanted]
    for iid, data in zip(wanted, bodies, strict=True):
        if isinstance(data, AwsError):
            if data.code in MISSING_CODES:
                continue
            raise data  # the first failure in id order, as when read one by one
        value = convert(data)
        if value:
            out[iid] = (etags[iid], value)
    return dict(sorted(out.items()))


def fetch_host_keys(s3: S3Client, bucket: str, etags: Mapping[str, str],
                    known: Mapping[str, tuple[str, str]] | None = None) -> dict[str, tuple[str, str]]:
    """instance id -> (ETag, key line), each key read once (fetch_changed); an oversized one is left out."""
    return fetch_changed(s3, bucket, HOST_KEY_NAME, etags, known,
                         lambda data: key_line(data.decode("utf-8", "replace")) if data else "")


def host_keys(s3: S3Client, bucket: str) -> dict[str, str]:
    """instance id -> its published "ssh-ed25519 AAAA..." host key (one line, no comment).

    Every node can write under nodes/, so these keys are good for known_hosts inside the cluster
    (whose trust is flat: every node holds the cluster key) but not for pinning the master from
    outside it: that is master_host_key's job.
    """
    found = fetch_host_keys(s3, bucket, node_objects(s3, bucket).host_key_etags)
    return {iid: line for iid, (_, line) in found.items()}


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
