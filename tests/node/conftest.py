"""Fixtures for the node agent: a moto cluster (key bucket + tagged instances), one IMDSv2
stand-in and one temporary root directory per node."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from node_sim import USER_KEY, ImdsStandIn, SimCluster, SimNode, with_iptables

__all__ = ["USER_KEY", "sim_cluster"]


_IMAGES: dict[str, str] = {}


def _image(ec2: Any, url: str) -> str:
    """An image moto knows. Its own AMIs come back the same after every reset, and listing them all
    takes over a second (most of this fixture's time), so the list is read once per server; the
    id kept is still asked for by id (milliseconds), and listed again if moto does not know it."""
    kept = _IMAGES.get(url)
    if kept is not None:
        try:
            if ec2.describe_images(ImageIds=[kept])["Images"]:
                return kept
        except ClientError:
            pass
    _IMAGES[url] = image = str(ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"])
    return image


@pytest.fixture
def sim_cluster(moto: Any, tmp_path: Path) -> Iterator[SimCluster]:
    ec2: Any = boto3.client("ec2", region_name="us-east-1", endpoint_url=moto.url)  # InstanceType from a plan
    s3 = boto3.client("s3", region_name="us-east-1", endpoint_url=moto.url)
    bucket = "demo-keybucket-abc123"
    s3.create_bucket(Bucket=bucket)
    image = _image(ec2, moto.url)
    subnet = ec2.describe_subnets()["Subnets"][0]
    plan = [("master", "master", "p3.8xlarge"), ("w1", "worker", "g4dn.xlarge"), ("w2", "worker", "g4dn.xlarge")]
    nodes: dict[str, SimNode] = {}
    servers = []
    for name, role, itype in plan:
        inst = ec2.run_instances(
            ImageId=image, MinCount=1, MaxCount=1, InstanceType=itype, SubnetId=subnet["SubnetId"],
            TagSpecifications=[{"ResourceType": "instance", "Tags": [
                {"Key": "cfn-chainermn:cluster", "Value": "demo"}, {"Key": "cfn-chainermn:role", "Value": role}]}],
        )["Instances"][0]
        mac = f"0a:00:00:00:00:0{len(nodes) + 1}"
        imds = ImdsStandIn({
            "instance-id": inst["InstanceId"], "local-ipv4": inst["PrivateIpAddress"],
            "placement/region": "us-east-1", "instance-type": itype, "mac": mac,
            f"network/interfaces/macs/{mac}/subnet-ipv4-cidr-block": subnet["CidrBlock"],
            "public-keys/": "0=my-laptop", "public-keys/0/openssh-key": USER_KEY,
        })
        servers.append(imds)
        root = tmp_path / name
        (root / "etc/ssh").mkdir(parents=True)
        (root / "opt/amazon/openmpi/etc").mkdir(parents=True)
        with_iptables(root)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                        str(root / "etc/ssh/ssh_host_ed25519_key")], check=True)
        host_key = " ".join((root / "etc/ssh/ssh_host_ed25519_key.pub").read_text().split()[:2])
        nodes[name] = SimNode(name, role, inst["InstanceId"], inst["PrivateIpAddress"], itype, root, imds, host_key)
    # a bystander in another stack must never show up
    ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, InstanceType="p3.2xlarge",
                      TagSpecifications=[{"ResourceType": "instance", "Tags": [
                          {"Key": "cfn-chainermn:cluster", "Value": "other"}]}])
    cluster = SimCluster(moto.url, "demo", bucket, subnet["CidrBlock"], nodes, ec2, s3)
    try:
        yield cluster
    finally:
        for server in servers:
            server.close()
