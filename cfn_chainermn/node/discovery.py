"""Discovery on AWS at a cost that grows linearly with the cluster (issue 13).

Every node refreshes its hostfile and known_hosts every 30 s. If each discovered the cluster
itself, a cluster of N nodes would make N DescribeInstances, 2N ListObjectsV2 and N^2 GetObject
calls per interval. Instead, per interval:

- the master: one DescribeInstances and one ListObjectsV2 of nodes/ (one call per page of 1,000),
  a host key's GetObject only when its ETag changed (each key is read once, not per interval),
  likewise a live worker's busy marker (node/idle_marker.py: rewritten only when what keeps that
  worker busy changes; idle shutdown counts them), then the cluster view (cluster/view.py): one
  conditional GET that answers 304 while the view stands, or one PutObject when the cluster changed;
- each worker: one conditional GET of the view (304 while nothing changed; the files are then
  rewritten from the copy kept in the cache), and a PutObject or DeleteObject of its busy marker
  only when it becomes busy, busy otherwise, or idle.

That is N + 2 calls (+1 when the cluster changed; +2, its write and the master's read, for each
worker whose busy state changed). A worker that finds no view yet (the master has not published
one) discovers the cluster itself, as the master does, until it appears.

Each refresh is its own process: the cache (root's, next to the state file) carries the host
keys read and the view with its ETag from one refresh to the next. A lost or broken cache costs
one full read, never a wrong file.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from cfn_chainermn.aws import aws_call
from cfn_chainermn.cluster import inventory, view
from cfn_chainermn.cluster.hostfile import Node
from cfn_chainermn.errors import AwsError
from cfn_chainermn.names import CLUSTER_VIEW
from cfn_chainermn.node import idle_marker
from cfn_chainermn.node.backends import Discovery
from cfn_chainermn.node.settings import Settings
from cfn_chainermn.node.system import write_atomic

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_s3 import S3Client


def spread_delay(node_id: str, jitter: float) -> float:
    """This node's share of `jitter` seconds: stable (a hash of its id), different from node to node.

    Nodes launched together start their refresh timers in the same second; each waits its own
    share before calling AWS, so their calls spread over `jitter` seconds instead of arriving at
    once. Stable rather than drawn anew each time (systemd's RandomizedDelaySec draws anew, and
    its FixedRandomDelay needs systemd 247), so every node still refreshes once per interval."""
    digest = hashlib.sha256(node_id.encode()).digest()
    return jitter * (int.from_bytes(digest[:8], "big") / 2**64)


@dataclass
class Cache:
    host_keys: dict[str, tuple[str, str]] = field(default_factory=dict)  # id -> (ETag, key line)
    view: bytes = b""  # the view last published (master) or read (worker)
    view_etag: str = ""
    busy: dict[str, tuple[str, str]] = field(default_factory=dict)  # id -> (ETag, its words, one a line)

    @classmethod
    def load(cls, path: Path) -> Cache:
        """The cache, or an empty one when it is missing or unreadable (one full read follows)."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            keys, busy = ({str(k): (str(v[0]), str(v[1])) for k, v in dict(data.get(name, {})).items()}
                          for name in ("host_keys", "busy"))
            return cls(keys, str(data["view"]).encode(), str(data["view_etag"]), busy)
        except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError):
            return cls()

    def save(self, path: Path) -> None:
        data = {"host_keys": {k: list(v) for k, v in sorted(self.host_keys.items())},
                "busy": {k: list(v) for k, v in sorted(self.busy.items())},
                "view": self.view.decode("utf-8", "replace"), "view_etag": self.view_etag}
        write_atomic(path, json.dumps(data, sort_keys=True) + "\n", 0o600)


class AwsInventory:
    """The AWS Inventory: the master discovers and publishes the view, a worker reads it."""

    def __init__(self, ec2: EC2Client, s3: S3Client, settings: Settings) -> None:
        self.ec2, self.s3, self.settings = ec2, s3, settings
        self.stack, self.bucket = settings.stack, settings.bucket

    def ssh_port(self, instance_id: str) -> int:
        return 22

    def discover(self) -> Discovery:
        path = self.settings.discovery_path()
        cache = Cache.load(path)
        found = self._master(cache) if self.settings.role == "master" else self._worker(cache)
        cache.save(path)
        return found

    def _look(self, cache: Cache, busy: bool = False) -> tuple[list[Node], dict[str, str]]:
        """EC2 and one listing of nodes/; host keys (and with `busy`, the live workers' busy
        markers, into the cache) read only where their ETag is new."""
        instances = inventory.live_instances(self.ec2, self.stack)
        objects = inventory.node_objects(self.s3, self.bucket)
        nodes = inventory.nodes_of(instances, objects.ready)
        live = {n.instance_id for n in nodes}
        etags = {iid: etag for iid, etag in objects.host_key_etags.items() if iid in live}
        cache.host_keys = inventory.fetch_host_keys(self.s3, self.bucket, etags, cache.host_keys)
        if busy:  # a terminated node's marker may linger: only the live ones count
            markers = {iid: etag for iid, etag in objects.busy_etags.items() if iid in live}
            cache.busy = inventory.fetch_changed(self.s3, self.bucket, inventory.BUSY_NAME, markers, cache.busy,
                                                 lambda data: "\n".join(idle_marker.parse(data)))
        return nodes, {iid: line for iid, (_, line) in cache.host_keys.items()}

    def _master(self, cache: Cache) -> Discovery:
        nodes, keys = self._look(cache, busy=True)
        body = view.render(self.stack, nodes, keys)
        view.parse(body, self.stack)  # what the workers will accept, checked before any reads it
        busy = {iid: tuple(words.split("\n")) for iid, (_, words) in cache.busy.items()}
        return Discovery(nodes, keys, self._publish(cache, body, len(nodes)), busy)

    def _publish(self, cache: Cache, body: bytes, count: int) -> str:
        """PutObject only when the view changed, or when the object is no longer the one this
        master wrote (deleted, replaced by hand): one conditional GET tells, 304 when it stands."""
        if body == cache.view and cache.view_etag and self._stands(cache.view_etag):
            return "cluster view unchanged"
        put = aws_call("PutObject", lambda: self.s3.put_object(
            Bucket=self.bucket, Key=CLUSTER_VIEW, Body=body, ServerSideEncryption="AES256",
            ContentType="application/json"))
        cache.view, cache.view_etag = body, str(put.get("ETag", ""))
        return f"published the cluster view ({count} nodes)"

    def _stands(self, etag: str) -> bool:
        """Whether the published view is still the object of this ETag (one GET, 304 if so)."""
        try:
            return inventory.get_changed(self.s3, self.bucket, CLUSTER_VIEW, etag, view.MAX_BYTES) is None
        except AwsError as exc:
            if exc.code in inventory.MISSING_CODES:
                return False
            raise

    def _worker(self, cache: Cache) -> Discovery:
        try:
            got = inventory.get_changed(self.s3, self.bucket, CLUSTER_VIEW,
                                        cache.view_etag if cache.view else "", view.MAX_BYTES)
        except AwsError as exc:
            if exc.code not in inventory.MISSING_CODES:
                raise
            nodes, keys = self._look(cache)  # the master has not published yet
            return Discovery(nodes, keys, "no cluster view yet: discovered directly")
        body = cache.view if got is None else got[0]
        seen = view.parse(body, self.stack)  # AgentError: refused whole, the last good files stay
        if got is not None:
            cache.view, cache.view_etag = got
        return Discovery(list(seen.nodes), dict(seen.host_keys),
                         "cluster view unchanged" if got is None else "cluster view read")
