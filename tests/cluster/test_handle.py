"""NAME -> cluster handle: the AWS path pinned with botocore Stubber, the local path from its state file."""

from __future__ import annotations

import base64
import datetime
import io
import json
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber
from fake_session import FakeSession

from cfn_chainermn import names
from cfn_chainermn.cluster import handle as clusters
from cfn_chainermn.errors import ConfigError

HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ7w86mJ2pbTUtu3l2XyHZC4fDGD0E2ZqNYpVqlp2x0m"


def _body(data: bytes) -> StreamingBody:
    return StreamingBody(io.BytesIO(data), len(data))


def _stack(outputs: dict[str, str]) -> dict[str, Any]:
    """A DescribeStacks answer for stack demo with these outputs."""
    return {"Stacks": [{"StackName": "demo", "StackStatus": "CREATE_COMPLETE",
                        "CreationTime": datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc),
                        "Outputs": [{"OutputKey": k, "OutputValue": v} for k, v in outputs.items()]}]}


def test_aws_cluster_from_outputs_bucket_and_ec2(tmp_path: Path) -> None:
    key_file = tmp_path / "k.pem"
    key_file.write_text("x")
    cfn = boto3.client("cloudformation", region_name="us-east-1")
    s3 = boto3.client("s3", region_name="us-east-1")
    ec2 = boto3.client("ec2", region_name="us-east-1")
    with Stubber(cfn) as scfn, Stubber(s3) as ss3, Stubber(ec2) as sec2:
        outputs = {names.OUT_MASTER_DNS: "ec2-203-0-113-10.compute-1.amazonaws.com",
                   names.OUT_MASTER_PRIVATE_IP: "10.0.0.10", names.OUT_MASTER_INSTANCE_ID: "i-0master",
                   names.OUT_BUCKET: "demo-keys", names.OUT_MOUNT_POINT: "/efs"}
        scfn.add_response("describe_stacks", _stack(outputs), {"StackName": "demo"})
        # the master's host key comes from cluster-key/ (only the master may write it), not nodes/
        ss3.add_response("get_object", {"Body": _body(f"{HOST_KEY} root@ip-10-0-0-10\n".encode())},
                         {"Bucket": "demo-keys", "Key": names.MASTER_HOST_KEY})
        sec2.add_response("describe_instances", {"Reservations": [{"Instances": [
            {"InstanceId": "i-0master", "SubnetId": "subnet-1", "InstanceType": "p3.16xlarge"}]}]},
            {"InstanceIds": ["i-0master"]})
        sec2.add_response("describe_subnets", {"Subnets": [{"SubnetId": "subnet-1", "CidrBlock": "10.0.0.0/24"}]},
                          {"SubnetIds": ["subnet-1"]})
        cl = clusters.aws_cluster("demo", clusters.AwsAccess(identity_file=str(key_file)),
                                  session=FakeSession({"cloudformation": cfn, "s3": s3, "ec2": ec2}))
        for stub in (scfn, ss3, sec2):
            stub.assert_no_pending_responses()
    assert (cl.kind, cl.master_host, cl.ssh_port, cl.user) == ("aws", outputs[names.OUT_MASTER_DNS], 22, "chainer")
    assert cl.master_host_key == HOST_KEY  # the comment is dropped, the key is the master's
    assert cl.shared == "/efs" and cl.key_file == str(key_file)
    assert (cl.network.cidr, cl.network.instance_type, cl.network.local) == ("10.0.0.0/24", "p3.16xlarge", False)


CONSOLE = """[    0.000000] Linux version 5.15.0-1051-aws
ec2: #############################################################
ec2: -----BEGIN SSH HOST KEY FINGERPRINTS-----
ec2: 256 SHA256:olduy0vN4CeSgRJb9ZT3uWMXwTPYr0ysdydBqbpd1dE root@ip-10-0-0-10 (ECDSA)
ec2: 256 SHA256:h9GMl3vXKPqhR2mQvRfhM5Hgq3R9fNqXg2bJ6GkDzxk root@ip-10-0-0-10 (ED25519)
ec2: -----END SSH HOST KEY FINGERPRINTS-----
ec2: #############################################################
-----BEGIN SSH HOST KEY KEYS-----
ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBE root@ip-10-0-0-10
{key} root@ip-10-0-0-10
-----END SSH HOST KEY KEYS-----
"""


@pytest.mark.parametrize("console", ["keys", "fingerprints only", "unreadable"])
def test_without_a_published_key_the_console_output_is_the_anchor(tmp_path: Path, console: str) -> None:
    key_file = tmp_path / "k.pem"
    key_file.write_text("x")
    cfn, s3, ec2 = (boto3.client(s, region_name="us-east-1") for s in ("cloudformation", "s3", "ec2"))
    with Stubber(cfn) as scfn, Stubber(s3) as ss3, Stubber(ec2) as sec2:
        scfn.add_response("describe_stacks", _stack({
            names.OUT_MASTER_DNS: "h", names.OUT_MASTER_INSTANCE_ID: "i-0master", names.OUT_BUCKET: "demo-keys"}),
            {"StackName": "demo"})
        ss3.add_client_error("get_object", "NoSuchKey", "The specified key does not exist.", 404,
                             expected_params={"Bucket": "demo-keys", "Key": names.MASTER_HOST_KEY})
        text = CONSOLE.format(key=HOST_KEY)
        if console == "fingerprints only":
            text = text[:text.index("-----BEGIN SSH HOST KEY KEYS")]
        if console == "unreadable":
            sec2.add_client_error("get_console_output", "UnauthorizedOperation", "not allowed",
                                  expected_params={"InstanceId": "i-0master"})
        else:
            # base64 on the wire, as EC2 sends it; botocore decodes it for the caller
            sec2.add_response("get_console_output", {"InstanceId": "i-0master",
                                                     "Output": base64.b64encode(text.encode()).decode()},
                              {"InstanceId": "i-0master"})
        sec2.add_response("describe_instances", {"Reservations": [{"Instances": [
            {"InstanceId": "i-0master", "SubnetId": "subnet-1", "InstanceType": "p3.2xlarge"}]}]}, None)
        sec2.add_response("describe_subnets", {"Subnets": [{"SubnetId": "subnet-1", "CidrBlock": "10.0.0.0/24"}]},
                          None)
        cl = clusters.aws_cluster("demo", clusters.AwsAccess(identity_file=str(key_file)),
                                  session=FakeSession({"cloudformation": cfn, "s3": s3, "ec2": ec2}))
        for stub in (scfn, ss3, sec2):
            stub.assert_no_pending_responses()
    fingerprints = ("SHA256:olduy0vN4CeSgRJb9ZT3uWMXwTPYr0ysdydBqbpd1dE",
                    "SHA256:h9GMl3vXKPqhR2mQvRfhM5Hgq3R9fNqXg2bJ6GkDzxk")
    expected = {"keys": (HOST_KEY, fingerprints), "fingerprints only": (None, fingerprints),
                "unreadable": (None, ())}[console]
    assert (cl.master_host_key, cl.host_fingerprints) == expected
    assert cl.host_key_source == ("" if console == "unreadable" else "the EC2 console output of i-0master")
    # With nothing to check against, the refusal says why (a missing permission, not a missing key).
    assert cl.host_key_hint == ("" if console != "unreadable" else f"s3://demo-keys/{names.MASTER_HOST_KEY} is "
                                "missing and the console output of i-0master could not be read "
                                "(UnauthorizedOperation: not allowed)")
    remote = cl.remote()
    assert (remote.host_key, remote.host_fingerprints) == expected  # what the connection checks


class NoAws:
    """A session whose every client call fails the test: usage errors come before any AWS call."""

    def client(self, service: str, endpoint_url: str | None = None, config: Any = None) -> Any:
        raise AssertionError(f"an AWS client ({service}) was made before the usage error")


def test_the_identity_file_is_checked_before_any_aws_call(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^--identity-file: .*\(or set CFN_CHAINERMN_IDENTITY_FILE, or "
                                          r"identity_file in the --config file\)$"):
        clusters.aws_cluster("demo", clusters.AwsAccess(), session=NoAws())
    with pytest.raises(ConfigError, match=rf"^--identity-file: {tmp_path}/nope\.pem does not exist; give the "
                                          "private key of the stack's EC2 key pair$"):
        clusters.aws_cluster("demo", clusters.AwsAccess(identity_file=str(tmp_path / "nope.pem")), session=NoAws())


def _no_login_cluster(master: dict[str, Any]) -> clusters.Cluster:
    """An AWS cluster resolved without logging in, its master as DescribeInstances gives it; every
    call pinned (no S3 stub: reading cluster-key/ would fail the test)."""
    cfn, ec2 = (boto3.client(s, region_name="us-east-1") for s in ("cloudformation", "ec2"))
    with Stubber(cfn) as scfn, Stubber(ec2) as sec2:
        scfn.add_response("describe_stacks", _stack({
            names.OUT_MASTER_PRIVATE_IP: "10.0.0.10", names.OUT_MASTER_INSTANCE_ID: "i-1", names.OUT_BUCKET: "b"}),
            {"StackName": "demo"})
        sec2.add_response("describe_instances", {"Reservations": [{"Instances": [
            {"InstanceId": "i-1", "SubnetId": "subnet-1", **master}]}]}, {"InstanceIds": ["i-1"]})
        sec2.add_response("describe_subnets", {"Subnets": [{"SubnetId": "subnet-1", "CidrBlock": "10.0.0.0/24"}]},
                          {"SubnetIds": ["subnet-1"]})
        cl = clusters.aws_cluster("demo", clusters.AwsAccess(), login=False,
                                  session=FakeSession({"cloudformation": cfn, "s3": None, "ec2": ec2}))
        scfn.assert_no_pending_responses()
        sec2.assert_no_pending_responses()
    return cl


def test_hostfile_needs_no_key_and_reads_no_host_key() -> None:
    """Also: a master without a public name (private subnet; moto never gives one) is its private IP."""
    cl = _no_login_cluster({"InstanceType": "p3.2xlarge"})
    assert cl.master_host_key is None and cl.network.cidr == "10.0.0.0/24" and cl.master_host == "10.0.0.10"


@pytest.mark.parametrize("interfaces", [[{"InterfaceType": "efa"}], [{"InterfaceType": "interface"}], []],
                         ids=["efa", "plain", "none"])
def test_jobs_use_efa_only_where_the_stack_attached_it(interfaces: list[dict[str, str]]) -> None:
    """A p4d stack made with Efa off has no EFA device: its jobs must not ask libfabric for one."""
    cl = _no_login_cluster({"InstanceType": "p4d.24xlarge", "NetworkInterfaces": interfaces})
    assert cl.network.efa_attached is (interfaces == [{"InterfaceType": "efa"}])


def test_local_name_without_a_cluster_says_how_to_start_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no local cluster in .*local up"):
        clusters.resolve("local", state_dir=str(tmp_path), access=clusters.AwsAccess())


def _local_files(tmp_path: Path) -> None:
    (tmp_path / "bucket" / "nodes" / "master").mkdir(parents=True)
    (tmp_path / "bucket" / "nodes" / "master" / "host_ed25519.pub").write_text(HOST_KEY + " master@local\n")
    (tmp_path / "inventory.json").write_text(json.dumps({"nodes": [
        {"instance_id": "master", "private_ip": "127.0.0.2", "role": "master", "instance_type": "local",
         "state": "running", "slots": 2, "ssh_port": 40000}]}))
    (tmp_path / "cluster.json").write_text(json.dumps({
        "name": "local", "user": "chainer", "home": "/h/chainer", "port": 40000, "python": "/v/bin/python",
        "shared": "/s", "master_id": "master", "master_ip": "127.0.0.2"}))


def test_local_cluster_handle_from_state(tmp_path: Path) -> None:
    _local_files(tmp_path)
    cl = clusters.resolve("local", state_dir=str(tmp_path), access=clusters.AwsAccess())
    assert (cl.kind, cl.master_host, cl.ssh_port, cl.user) == ("local", "127.0.0.2", 40000, "chainer")
    assert cl.master_host_key == HOST_KEY and cl.key_file == "/h/chainer/.ssh/id_ed25519"
    assert cl.network.cidr == "127.0.0.0/8" and cl.network.local
    nodes = cl.list_nodes()
    assert [(n.instance_id, n.slots, n.ready) for n in nodes] == [("master", 2, False)]


def test_without_state_dir_the_local_cluster_is_where_local_up_put_it(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """As root in a folder closed to other users (a clone under /root), `local up` keeps its state
    outside it; the job commands, run from the same folder, look there too."""
    from cfn_chainermn.local import places

    monkeypatch.setattr(places, "BASE", tmp_path / "base")
    monkeypatch.setattr(places, "moved", lambda folder: True)
    monkeypatch.delenv("CFN_CHAINERMN_STATE_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    folder = places.default_state_dir(create=True)
    assert folder == places.home_of(tmp_path) / "local-cluster"
    _local_files(folder)
    cl = clusters.resolve("local", state_dir=None, access=clusters.AwsAccess())
    assert (cl.kind, cl.state_dir, cl.master_host) == ("local", str(folder), "127.0.0.2")
