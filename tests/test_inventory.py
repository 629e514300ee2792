"""inventory.list_nodes / host_keys, pinned call by call with botocore Stubber."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber

from cfn_chainermn import hostfile, inventory
from cfn_chainermn.errors import AwsError

FILTERS = [
    {"Name": "tag:cfn-chainermn:cluster", "Values": ["demo"]},
    {"Name": "instance-state-name", "Values": ["pending", "running"]},
]


def _inst(iid: str, ip: str, role: str, itype: str = "p3.8xlarge", state: str = "running") -> dict[str, Any]:
    return {
        "InstanceId": iid, "PrivateIpAddress": ip, "InstanceType": itype, "State": {"Name": state},
        "Tags": [{"Key": "cfn-chainermn:cluster", "Value": "demo"}, {"Key": "cfn-chainermn:role", "Value": role}],
    }


@pytest.fixture
def clients() -> Iterator[tuple[Any, Stubber, Any, Stubber]]:
    ec2 = boto3.client("ec2", region_name="us-east-1")
    s3 = boto3.client("s3", region_name="us-east-1")
    with Stubber(ec2) as es, Stubber(s3) as ss:
        yield ec2, es, s3, ss
        es.assert_no_pending_responses()
        ss.assert_no_pending_responses()


def test_list_nodes_paginates_and_reads_readiness(clients: tuple[Any, Stubber, Any, Stubber]) -> None:
    ec2, es, s3, ss = clients
    es.add_response("describe_instances", {
        "Reservations": [{"Instances": [_inst("i-w1", "10.0.0.12", "worker")]}], "NextToken": "t1",
    }, {"Filters": FILTERS})
    es.add_response("describe_instances", {
        "Reservations": [{"Instances": [_inst("i-m", "10.0.0.10", "master"),
                                        _inst("i-w2", "10.0.0.11", "worker", state="pending")]}],
    }, {"Filters": FILTERS, "NextToken": "t1"})
    ss.add_response("list_objects_v2", {
        "Contents": [{"Key": "nodes/i-m/ready"}, {"Key": "nodes/i-m/host_ed25519.pub"}],
        "IsTruncated": True, "NextContinuationToken": "c1",
    }, {"Bucket": "kb", "Prefix": "nodes/"})
    ss.add_response("list_objects_v2", {
        "Contents": [{"Key": "nodes/i-w1/ready"}, {"Key": "nodes/i-w2/host_ed25519.pub"},
                     {"Key": "nodes/stray"}], "IsTruncated": False,
    }, {"Bucket": "kb", "Prefix": "nodes/", "ContinuationToken": "c1"})

    nodes = inventory.list_nodes(ec2, s3, "demo", "kb")

    assert [(n.instance_id, n.role, n.state, n.ready) for n in nodes] == [
        ("i-m", "master", "running", True),
        ("i-w1", "worker", "running", True),
        ("i-w2", "worker", "pending", False),
    ]
    assert hostfile.render(nodes) == "10.0.0.10 slots=4\n10.0.0.12 slots=4\n"


def test_describe_failure_is_aws_error(clients: tuple[Any, Stubber, Any, Stubber]) -> None:
    ec2, es, s3, _ = clients
    es.add_client_error("describe_instances", "RequestLimitExceeded", "Request limit exceeded.",
                        expected_params={"Filters": FILTERS})
    with pytest.raises(AwsError) as info:
        inventory.list_nodes(ec2, s3, "demo", "kb")
    assert info.value.code == "RequestLimitExceeded"
    assert info.value.operation == "DescribeInstances"
    assert "Request limit exceeded" in str(info.value)


def test_bucket_failure_is_aws_error(clients: tuple[Any, Stubber, Any, Stubber]) -> None:
    ec2, es, s3, ss = clients
    es.add_response("describe_instances", {"Reservations": []}, {"Filters": FILTERS})
    ss.add_client_error("list_objects_v2", "NoSuchBucket", "The specified bucket does not exist",
                        http_status_code=404, expected_params={"Bucket": "kb", "Prefix": "nodes/"})
    with pytest.raises(AwsError, match="NoSuchBucket"):
        inventory.list_nodes(ec2, s3, "demo", "kb")


def _body(text: str) -> StreamingBody:
    raw = text.encode()
    return StreamingBody(io.BytesIO(raw), len(raw))


def test_host_keys_reads_each_published_key(clients: tuple[Any, Stubber, Any, Stubber]) -> None:
    _, _, s3, ss = clients
    ss.add_response("list_objects_v2", {
        "Contents": [{"Key": "nodes/i-m/host_ed25519.pub"}, {"Key": "nodes/i-m/ready"},
                     {"Key": "nodes/i-w1/host_ed25519.pub"}], "IsTruncated": False,
    }, {"Bucket": "kb", "Prefix": "nodes/"})
    ss.add_response("get_object", {"Body": _body("ssh-ed25519 AAAAm root@ip-10-0-0-10\n")},
                    {"Bucket": "kb", "Key": "nodes/i-m/host_ed25519.pub"})
    ss.add_response("get_object", {"Body": _body("ssh-ed25519 AAAAw1\n")},
                    {"Bucket": "kb", "Key": "nodes/i-w1/host_ed25519.pub"})
    assert inventory.host_keys(s3, "kb") == {"i-m": "ssh-ed25519 AAAAm", "i-w1": "ssh-ed25519 AAAAw1"}
