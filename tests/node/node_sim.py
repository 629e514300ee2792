"""Simulated nodes for the agent tests: an IMDSv2 stand-in on 127.0.0.1 (tokens required) and a
moto-backed cluster whose nodes boot into temporary root directories."""

from __future__ import annotations

import io
import json
import os
import pwd
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.stub import Stubber
from imds_stand_in import ImdsStandIn

from cfn_chainermn.node import agent
from cfn_chainermn.node.agent import AwsClients
from cfn_chainermn.node.settings import Settings
from cfn_chainermn.node.state import State

USER_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExampleUserKeyPairFromEc2xxxxxxxxxxxxxxxx user@laptop"
FSTAB = ("fs-0123456789abcdef0.efs.us-east-1.amazonaws.com:/ /efs nfs4 "
         "nfsvers=4.1,rsize=1048576,wsize=1048576,hard,timeo=600,retrans=2,noresvport,_netdev 0 0")
# What the imds step runs on a node whose image has iptables and ip6tables in /usr/sbin: probe
# each rule with -C, insert it first in OUTPUT when absent, enable the boot-time unit; once the
# rules are there (a second boot, every refresh) only the probes run.
_V4 = "-d 169.254.169.254/32 -m owner '!' --uid-owner 0 -j REJECT"
_V6 = "-d fd00:ec2::254/128 -m owner '!' --uid-owner 0 -j REJECT"
GUARD_AGAIN = [f"/usr/sbin/iptables -w -C OUTPUT {_V4}", f"/usr/sbin/ip6tables -w -C OUTPUT {_V6}"]
GUARD_FIRST_BOOT = [
    f"/usr/sbin/iptables -w -C OUTPUT {_V4}", f"/usr/sbin/iptables -w -I OUTPUT 1 {_V4}",
    f"/usr/sbin/ip6tables -w -C OUTPUT {_V6}", f"/usr/sbin/ip6tables -w -I OUTPUT 1 {_V6}",
    "systemctl daemon-reload", "systemctl enable cfn-chainermn-imds-guard.service"]


@dataclass
class SimNode:
    name: str
    role: str
    instance_id: str
    private_ip: str
    instance_type: str
    root: Path
    imds: ImdsStandIn
    host_key: str


@dataclass
class SimCluster:
    """A stack as the agent sees it: moto's EC2 instances + S3 bucket, one IMDS and root per node."""

    moto_url: str
    stack: str
    bucket: str
    subnet_cidr: str
    nodes: dict[str, SimNode]
    ec2: Any
    s3: Any
    stubs: list[Stubber] = field(default_factory=list)

    def settings(self, name: str, **over: Any) -> Settings:
        node = self.nodes[name]
        s = Settings(role=node.role, stack=self.stack, region="us-east-1", bucket=self.bucket,
                     signal_resource="ClusterMaster" if node.role == "master" else "WorkerGroup",
                     mount_point="/efs", efs_id="fs-0123456789abcdef0", root=str(node.root),
                     endpoint_url=self.moto_url, imds_url=node.imds.url, key_wait=20,
                     imds_wait=30)  # a stalled request must not hold a boot for the 180 s default
        return s.merged(over)

    def clients(self, name: str, status: str | None = "SUCCESS") -> AwsClients:
        """Real moto EC2/S3 clients; CloudFormation through a Stubber expecting one signal."""
        node = self.nodes[name]
        cfn = boto3.client("cloudformation", region_name="us-east-1")
        stub = Stubber(cfn)
        if status:
            stub.add_response("signal_resource", {}, {
                "StackName": self.stack, "UniqueId": node.instance_id, "Status": status,
                "LogicalResourceId": "ClusterMaster" if node.role == "master" else "WorkerGroup"})
        stub.activate()
        self.stubs.append(stub)
        return AwsClients(self.ec2, self.s3, cfn)

    def echo(self) -> io.StringIO:
        return io.StringIO()

    def boot(self, name: str, **over: Any) -> State:
        """Run the agent's boot on node `name`, its one signal pinned (SUCCESS)."""
        return agent.boot(self.settings(name, **over), self.clients(name), echo=self.echo())

    def get(self, key: str) -> bytes:
        """An object of the stack's bucket, as the nodes wrote it."""
        return bytes(self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read())




LOCAL_USER = pwd.getpwuid(os.getuid()).pw_name


def local_cluster(d: Path, ids: list[str]) -> None:
    """A local cluster folder as `local up` leaves it: host keys per node and inventory.json
    (node i at 127.0.0.<i + 2>, the first one the master, one slot each, port 22)."""
    for nid in ids:
        (d / "nodes" / nid).mkdir(parents=True)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                        str(d / "nodes" / nid / "ssh_host_ed25519_key")], check=True)
    (d / "inventory.json").write_text(json.dumps({"nodes": [
        {"instance_id": nid, "private_ip": f"127.0.0.{i + 2}", "role": "master" if i == 0 else "worker",
         "slots": 1, "ssh_port": 22} for i, nid in enumerate(ids)]}))


def local_settings(d: Path, ids: list[str], i: int, **over: Any) -> Settings:
    """Boot settings of node i of local_cluster(d, ids), as `local up` passes them."""
    nid = ids[i]
    return Settings(backend="local", state_dir=str(d), role="master" if i == 0 else "worker", node_id=nid,
                    private_ip=f"127.0.0.{i + 2}", host_key=str(d / "nodes" / nid / "ssh_host_ed25519_key.pub"),
                    user=LOCAL_USER, home=str(d / "home"), mount_point=str(d / "shared"), key_wait=20).merged(over)


def with_iptables(root: Path) -> None:
    """The image ships iptables and ip6tables (System only checks that they are there)."""
    (root / "usr/sbin").mkdir(parents=True, exist_ok=True)
    for name in ("iptables", "ip6tables"):
        (root / "usr/sbin" / name).write_text("#!/bin/sh\n")
        (root / "usr/sbin" / name).chmod(0o755)
