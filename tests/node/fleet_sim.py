"""A booted cluster of N nodes on moto for discovery: instances tagged into the stack, each with
its ready marker and host key in the key bucket and a root folder whose agent runs `node refresh`,
and the API calls they make counted by operation (botocore's before-send event: one per HTTP
request, retries included). tests/node/test_discovery.py and benchmarks/bench_discovery.py use it."""

from __future__ import annotations

import base64
import io
import json
import os
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3

from cfn_chainermn.node import agent
from cfn_chainermn.node.agent import AwsClients
from cfn_chainermn.node.settings import Settings

STACK = "demo"
BUCKET = "demo-keybucket-fleet"
IMAGE = "ami-12c6146b"  # moto launches any id; describe_images would load its AMI catalogue (seconds)


class ApiCalls:
    """Requests sent by the clients it watches, by operation; a conditional GET is counted as
    "GetObject If-None-Match" (its answer is 304 while the object stands), so a spec can say which."""

    def __init__(self, *clients: Any) -> None:
        self.counts: Counter[str] = Counter()
        self.lock = threading.Lock()  # a master's first refresh reads host keys from several threads
        for client in clients:
            client.meta.events.register("before-send", self._sent)

    def _sent(self, request: Any, event_name: str, **_: Any) -> None:
        operation = event_name.rsplit(".", 1)[-1]
        conditional = "If-None-Match" in request.headers
        with self.lock:
            self.counts[f"{operation} If-None-Match" if conditional else operation] += 1

    def take(self) -> dict[str, int]:
        """The counts since the last take, and start again."""
        with self.lock:
            out = dict(self.counts)
            self.counts.clear()
        return out


def host_key() -> str:
    """A host key line of the right shape (discovery only relays it; nothing connects)."""
    blob = b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x20" + os.urandom(32)
    return "ssh-ed25519 " + base64.b64encode(blob).decode()


@dataclass
class FleetNode:
    instance_id: str
    private_ip: str
    role: str
    root: Path
    key: str

    def hostfile(self) -> str:
        return (self.root / "home/chainer/hostfile").read_text()

    def known_hosts(self) -> str:
        return (self.root / "home/chainer/.ssh/known_hosts").read_text()


@dataclass
class Fleet:
    """One master and N - 1 workers, all ready; `refresh(node)` runs that node's `node refresh`."""

    url: str
    tmp: Path
    ec2: Any
    s3: Any
    calls: ApiCalls
    nodes: list[FleetNode] = field(default_factory=list)
    image: str = IMAGE

    def settings(self, node: FleetNode) -> Settings:
        return Settings(role=node.role, stack=STACK, region="us-east-1", bucket=BUCKET, root=str(node.root),
                        endpoint_url=self.url, node_id=node.instance_id, private_ip=node.private_ip,
                        instance_type="p3.16xlarge", signal_resource="WorkerGroup")

    def refresh(self, node: FleetNode, **kwargs: Any) -> None:
        agent.refresh(self.settings(node), AwsClients(self.ec2, self.s3, None), echo=io.StringIO(), **kwargs)

    def interval(self) -> dict[str, int]:
        """Every node refreshes once, the master first; the calls they made."""
        self.calls.take()
        for node in self.nodes:
            self.refresh(node)
        return self.calls.take()

    def launch(self, count: int, role: str = "worker") -> list[FleetNode]:
        """`count` more instances of the stack, booted: ready marker and host key published."""
        tags = [{"Key": "cfn-chainermn:cluster", "Value": STACK}, {"Key": "cfn-chainermn:role", "Value": role}]
        made = self.ec2.run_instances(ImageId=self.image, MinCount=count, MaxCount=count, InstanceType="p3.16xlarge",
                                      TagSpecifications=[{"ResourceType": "instance", "Tags": tags}])["Instances"]
        new = []
        for inst in made:
            iid, ip = inst["InstanceId"], inst["PrivateIpAddress"]
            root = self.tmp / iid
            (root / "home/chainer").mkdir(parents=True)
            (root / "usr/sbin").mkdir(parents=True)
            (root / "proc").mkdir()  # the busy probe's process list (idle_marker.PROC): an idle node
            for name in ("iptables", "ip6tables"):  # the imds rules' probes are only recorded
                (root / "usr/sbin" / name).write_text("#!/bin/sh\n")
            node = FleetNode(iid, ip, role, root, host_key())
            self.s3.put_object(Bucket=BUCKET, Key=f"nodes/{iid}/host_ed25519.pub", Body=f"{node.key}\n".encode())
            self.s3.put_object(Bucket=BUCKET, Key=f"nodes/{iid}/ready", Body=json.dumps({"instance_id": iid}).encode())
            new.append(node)
        self.nodes.extend(new)
        return new


def fleet(url: str, tmp: Path, size: int) -> Fleet:
    """A cluster of `size` nodes (one master) on the moto server at `url`, nothing refreshed yet."""
    ec2 = boto3.client("ec2", region_name="us-east-1", endpoint_url=url)
    s3 = boto3.client("s3", region_name="us-east-1", endpoint_url=url)
    s3.create_bucket(Bucket=BUCKET)
    f = Fleet(url, tmp, ec2, s3, ApiCalls(ec2, s3), image=IMAGE)
    f.launch(1, "master")
    if size > 1:
        f.launch(size - 1)
    return f
