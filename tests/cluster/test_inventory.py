"""inventory.list_nodes / host_keys / master_host_key / node_objects / fetch_host_keys / get_changed,
pinned call by call with botocore Stubber;
and the CLI's pin of the master's host key against a forged nodes/ record, on a moto bucket."""

from __future__ import annotations

import datetime
import io
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber

from cfn_chainermn import names
from cfn_chainermn.cluster import handle as clusters
from cfn_chainermn.cluster import hostfile, inventory
from cfn_chainermn.errors import AwsError, RemoteError

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


def test_master_host_key_reads_only_the_cluster_key_prefix(clients: tuple[Any, Stubber, Any, Stubber]) -> None:
    _, _, s3, ss = clients
    ss.add_response("get_object", {"Body": _body("ssh-ed25519 AAAAm root@ip-10-0-0-10\n")},
                    {"Bucket": "kb", "Key": "cluster-key/master_host_ed25519.pub"})
    assert inventory.master_host_key(s3, "kb") == "ssh-ed25519 AAAAm"
    ss.add_client_error("get_object", "NoSuchKey", "The specified key does not exist.", http_status_code=404,
                        expected_params={"Bucket": "kb", "Key": "cluster-key/master_host_ed25519.pub"})
    assert inventory.master_host_key(s3, "kb") is None  # not published yet: the CLI refuses to pin nothing
    ss.add_client_error("get_object", "AccessDenied", "Access Denied", http_status_code=403,
                        expected_params={"Bucket": "kb", "Key": "cluster-key/master_host_ed25519.pub"})
    with pytest.raises(AwsError, match="AccessDenied"):
        inventory.master_host_key(s3, "kb")


MASTER_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ7w86mJ2pbTUtu3l2XyHZC4fDGD0E2ZqNYpVqlp2x0m"
FORGED_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIForgedByAWorkerForgedByAWorkerForgedByAW"


def _aws_cluster(moto_s3: Any, key_file: Path) -> clusters.Cluster:
    """clusters.aws_cluster over the moto bucket "demo-keys"; the stack and its master pinned by Stubber."""
    cfn = boto3.client("cloudformation", region_name="us-east-1")
    ec2 = boto3.client("ec2", region_name="us-east-1")
    outputs = {names.OUT_MASTER_DNS: "ec2-203-0-113-10.compute-1.amazonaws.com",
               names.OUT_MASTER_PRIVATE_IP: "10.0.0.10", names.OUT_MASTER_INSTANCE_ID: "i-0master",
               names.OUT_BUCKET: "demo-keys", names.OUT_MOUNT_POINT: "/efs"}
    with Stubber(cfn) as scfn, Stubber(ec2) as sec2:
        scfn.add_response("describe_stacks", {"Stacks": [{
            "StackName": "demo", "StackStatus": "CREATE_COMPLETE",
            "CreationTime": datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc),
            "Outputs": [{"OutputKey": k, "OutputValue": v} for k, v in outputs.items()]}]}, {"StackName": "demo"})
        sec2.add_response("describe_instances", {"Reservations": [{"Instances": [
            {"InstanceId": "i-0master", "SubnetId": "subnet-1", "InstanceType": "p3.16xlarge"}]}]},
            {"InstanceIds": ["i-0master"]})
        sec2.add_response("describe_subnets", {"Subnets": [{"SubnetId": "subnet-1", "CidrBlock": "10.0.0.0/24"}]},
                          {"SubnetIds": ["subnet-1"]})
        made = {"cloudformation": cfn, "s3": moto_s3, "ec2": ec2}
        session = SimpleNamespace(client=lambda service, **_: made[service])  # what aws.client() calls
        cl = clusters.aws_cluster("demo", clusters.AwsAccess(identity_file=str(key_file)), session=session)
        scfn.assert_no_pending_responses()
        sec2.assert_no_pending_responses()
    return cl


def test_cli_pins_the_master_key_from_cluster_key_not_a_forged_node_record(moto: Any, tmp_path: Path) -> None:
    s3 = boto3.client("s3", region_name="us-east-1", endpoint_url=moto.url)
    s3.create_bucket(Bucket="demo-keys")
    key_file = tmp_path / "id"
    key_file.write_text("not used: nothing connects")
    # a worker overwrote the master's node record (its IAM allows nodes/*) ...
    s3.put_object(Bucket="demo-keys", Key="nodes/i-0master/host_ed25519.pub", Body=f"{FORGED_KEY} evil\n".encode())
    s3.put_object(Bucket="demo-keys", Key="nodes/i-0master/ready", Body=b"{}")
    assert inventory.host_keys(s3, "demo-keys") == {"i-0master": FORGED_KEY}  # the forgery is really there
    # ... and before the master published its key under cluster-key/, the CLI pins nothing
    cl = _aws_cluster(s3, key_file)
    assert cl.master_host_key is None
    with pytest.raises(RemoteError, match="no published host key for ec2-203-0-113-10"):
        cl.remote().connect()  # refuses before any network I/O unless --accept-new-host-key
    # once the master wrote cluster-key/master_host_ed25519.pub, that is the key pinned, forgery or not
    s3.put_object(Bucket="demo-keys", Key=names.MASTER_HOST_KEY, Body=f"{MASTER_KEY} root@ip-10-0-0-10\n".encode())
    cl = _aws_cluster(s3, key_file)
    assert cl.master_host_key == MASTER_KEY
    assert cl.master_host_key != inventory.host_keys(s3, "demo-keys")["i-0master"]


def test_node_objects_is_one_listing_of_readiness_and_key_etags(clients: tuple[Any, Stubber, Any, Stubber]) -> None:
    _, _, s3, ss = clients
    ss.add_response("list_objects_v2", {"Contents": [
        {"Key": "nodes/i-m/ready", "ETag": '"r"'}, {"Key": "nodes/i-m/host_ed25519.pub", "ETag": '"km"'},
        {"Key": "nodes/i-w1/host_ed25519.pub", "ETag": '"kw1"'}, {"Key": "nodes/stray", "ETag": '"s"'}],
        "IsTruncated": False}, {"Bucket": "kb", "Prefix": "nodes/"})
    found = inventory.node_objects(s3, "kb")
    assert found.ready == {"i-m"} and found.host_key_etags == {"i-m": '"km"', "i-w1": '"kw1"'}


def test_fetch_host_keys_reads_only_keys_whose_etag_is_new(clients: tuple[Any, Stubber, Any, Stubber]) -> None:
    _, _, s3, ss = clients
    known = {"i-m": ('"km"', "ssh-ed25519 AAAAm"), "i-w1": ('"old"', "ssh-ed25519 AAAAold"), "i-gone": ('"g"', "x y")}
    ss.add_response("get_object", {"Body": _body("ssh-ed25519 AAAAw1 root@w1\n")},
                    {"Bucket": "kb", "Key": "nodes/i-w1/host_ed25519.pub"})
    ss.add_client_error("get_object", "NoSuchKey", "The specified key does not exist.", http_status_code=404,
                        expected_params={"Bucket": "kb", "Key": "nodes/i-w2/host_ed25519.pub"})
    got = inventory.fetch_host_keys(s3, "kb", {"i-m": '"km"', "i-w1": '"kw1"', "i-w2": '"kw2"'}, known)
    # i-m unchanged: not read; i-w1 changed: read again; i-w2 left between listing and GET: skipped;
    # i-gone is no longer listed: dropped
    assert got == {"i-m": ('"km"', "ssh-ed25519 AAAAm"), "i-w1": ('"kw1"', "ssh-ed25519 AAAAw1")}


def test_many_new_keys_are_read_several_at_a_time_with_the_same_result(moto: Any) -> None:
    """A master's first refresh of a large cluster: over PARALLEL_FROM keys to read go in parallel
    (real HTTP to moto), and the result is what reading them one by one gives."""
    s3 = boto3.client("s3", region_name="us-east-1", endpoint_url=moto.url)
    s3.create_bucket(Bucket="kb-many")
    ids = [f"i-{n:02d}" for n in range(3 * inventory.PARALLEL_FROM)]
    for iid in ids[:-1]:  # the last one left between the listing and the GET
        body = f"ssh-ed25519 AAAA{iid} root\n".encode()
        s3.put_object(Bucket="kb-many", Key=f"nodes/{iid}/host_ed25519.pub", Body=body)
    threads: set[int] = set()
    # the first two GETs meet at a barrier before either is sent: only reads in flight together
    # pass it (one by one, the first would wait alone and break it, failing the read and the
    # test); a scheduler that runs one thread long cannot make this pass or fail by chance
    meet, met = threading.Barrier(2, timeout=10), [0]
    lock = threading.Lock()

    def before_send(**_: object) -> None:
        threads.add(threading.get_ident())
        with lock:
            met[0] += 1
            first_two = met[0] <= 2
        if first_two:
            meet.wait()

    s3.meta.events.register("before-send", before_send)
    etags = {iid: f'"{iid}"' for iid in ids}
    known = {ids[0]: (etags[ids[0]], "ssh-ed25519 AAAAcached")}  # unchanged: not read again
    got = inventory.fetch_host_keys(s3, "kb-many", etags, known)
    s3.meta.events.unregister("before-send", before_send)
    assert got == {ids[0]: (etags[ids[0]], "ssh-ed25519 AAAAcached"),
                   **{iid: (etags[iid], f"ssh-ed25519 AAAA{iid}") for iid in ids[1:-1]}}
    assert list(got) == sorted(got) and len(threads) > 1 and not meet.broken
    threads.clear()
    s3.meta.events.register("before-send", lambda **_: threads.add(threading.get_ident()))
    few = {iid: etags[iid] for iid in ids[1:inventory.PARALLEL_FROM + 1]}
    assert inventory.fetch_host_keys(s3, "kb-many", few) == {iid: got[iid] for iid in few}
    assert threads == {threading.get_ident()}  # up to PARALLEL_FROM: one by one, in this thread


def test_get_changed_is_none_on_304_and_the_body_otherwise(clients: tuple[Any, Stubber, Any, Stubber]) -> None:
    _, _, s3, ss = clients
    key = names.CLUSTER_VIEW
    ss.add_client_error("get_object", "304", "Not Modified", http_status_code=304,
                        expected_params={"Bucket": "kb", "Key": key, "IfNoneMatch": '"e1"'})
    assert inventory.get_changed(s3, "kb", key, '"e1"', 100) is None
    ss.add_response("get_object", {"Body": _body("{}"), "ETag": '"e2"', "ContentLength": 2},
                    {"Bucket": "kb", "Key": key, "IfNoneMatch": '"e1"'})
    assert inventory.get_changed(s3, "kb", key, '"e1"', 100) == (b"{}", '"e2"')
    ss.add_response("get_object", {"Body": _body("{}"), "ETag": '"e2"', "ContentLength": 2},
                    {"Bucket": "kb", "Key": key})
    assert inventory.get_changed(s3, "kb", key, "", 100) == (b"{}", '"e2"')  # nothing cached: unconditional
    ss.add_response("get_object", {"Body": _body("x" * 101), "ETag": '"e3"', "ContentLength": 101},
                    {"Bucket": "kb", "Key": key})
    with pytest.raises(AwsError, match="larger than 100 bytes, not read") as info:
        inventory.get_changed(s3, "kb", key, "", 100)
    assert info.value.code == "TooLarge"
    ss.add_client_error("get_object", "304", "Not Modified", http_status_code=304,
                        expected_params={"Bucket": "kb", "Key": key})
    with pytest.raises(AwsError):  # a 304 to a GET that asked for no condition is an error, not "unchanged"
        inventory.get_changed(s3, "kb", key, "", 100)
