"""node/idle_marker.py and the master's read of it, call by call (botocore Stubber: the real API
models check every parameter). A worker writes nodes/<id>/busy only when its state changes
(PutObject when it becomes busy or its reason changes, DeleteObject when idle, nothing while it
stays as it was); the master reads a live worker's marker only when its ETag changed, and never a
terminated node's."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.response import StreamingBody
from botocore.stub import ANY, Stubber
from fleet_sim import host_key

from cfn_chainermn.errors import AwsError
from cfn_chainermn.node import idle_marker
from cfn_chainermn.node.aws_backend import S3Bucket
from cfn_chainermn.node.discovery import AwsInventory
from cfn_chainermn.node.settings import Settings

BUCKET, STACK = "demo-keybucket-abc", "demo"
MASTER, WORKER, GONE = "i-0000000000000000a", "i-0000000000000000b", "i-0000000000000000c"


@pytest.fixture
def s3() -> Iterator[Stubber]:
    client = boto3.client("s3", region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing")
    with Stubber(client) as stub:
        yield stub
        stub.assert_no_pending_responses()


def _body(data: bytes) -> StreamingBody:
    return StreamingBody(io.BytesIO(data), len(data))


def test_a_worker_writes_its_marker_only_when_its_state_changes(s3: Stubber, tmp_path: Path) -> None:
    bucket, record = S3Bucket(s3.client, BUCKET), tmp_path / "busy-marker.json"  # type: ignore[attr-defined]
    key = {"Bucket": BUCKET, "Key": f"nodes/{WORKER}/busy"}
    job = ("orted (pid 7)", "chainer@notty")

    s3.add_response("delete_object", {}, key)  # nothing known of an earlier publish: make sure
    assert idle_marker.keep(bucket, WORKER, (), record, 100.0) == f"busy marker nodes/{WORKER}/busy removed: idle"
    assert idle_marker.keep(bucket, WORKER, (), record, 130.0) == ""  # idle, as published: no call

    body = {"node": WORKER, "busy": list(job), "since": 160.0}
    s3.add_response("put_object", {}, {**key, "Body": json.dumps(body, sort_keys=True).encode(),
                                       "ServerSideEncryption": "AES256"})
    assert idle_marker.keep(bucket, WORKER, job, record, 160.0).startswith("busy marker")
    assert idle_marker.keep(bucket, WORKER, job, record, 190.0) == ""  # busy for the same reason: no call

    gpu = ("GPU: python3 (pid 9)",)
    s3.add_client_error("put_object", "AccessDenied", "Access Denied", http_status_code=403)
    with pytest.raises(AwsError):
        idle_marker.keep(bucket, WORKER, gpu, record, 220.0)
    s3.add_response("put_object", {}, {**key, "Body": ANY, "ServerSideEncryption": "AES256"})
    idle_marker.keep(bucket, WORKER, gpu, record, 250.0)  # the failed write is tried again next time

    s3.add_response("delete_object", {}, key)
    idle_marker.keep(bucket, WORKER, (), record, 280.0)
    assert json.loads(record.read_text()) == {"busy": [], "since": 280.0}


def test_what_a_marker_says_is_cleaned_and_anything_unreadable_is_busy() -> None:
    words = ["\x1b]0;owned\x07GPU: x", "a" * 200, *(f"p{i}" for i in range(9))]
    said = idle_marker.parse(idle_marker.render(WORKER, tuple(words), 1.0))
    assert said[0] == "]0;ownedGPU: x" and said[1] == "a" * 80 and len(said) == 9 and said[-1] == "(+3 more)"
    assert idle_marker.parse(b"{not json") == ("busy marker unreadable",)
    assert idle_marker.parse(b'{"busy": []}') == ("busy marker unreadable",)  # a marker is never idle
    assert idle_marker.parse(None) == ("busy marker too large to read",)


def _instances() -> dict[str, Any]:
    def inst(iid: str, ip: str, role: str) -> dict[str, Any]:
        tags = [{"Key": "cfn-chainermn:cluster", "Value": STACK}, {"Key": "cfn-chainermn:role", "Value": role}]
        return {"InstanceId": iid, "PrivateIpAddress": ip, "InstanceType": "p3.16xlarge", "State": {"Name": "running"},
                "Tags": tags}

    return {"Reservations": [{"Instances": [inst(MASTER, "10.0.0.10", "master"), inst(WORKER, "10.0.0.11", "worker")]}]}


def _listing(markers: dict[str, str]) -> dict[str, Any]:
    objects = [{"Key": f"nodes/{i}/{name}", "ETag": f'"{name[0]}{i[-1]}"'}
               for i in (MASTER, WORKER) for name in ("ready", "host_ed25519.pub")]
    objects += [{"Key": f"nodes/{i}/busy", "ETag": etag} for i, etag in markers.items()]
    return {"Contents": objects, "IsTruncated": False}


def test_the_master_reads_live_markers_from_its_listing_each_once_per_change(s3: Stubber, tmp_path: Path) -> None:
    ec2 = boto3.client("ec2", region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing")
    settings = Settings(role="master", stack=STACK, bucket=BUCKET, root=str(tmp_path))
    found = AwsInventory(ec2, s3.client, settings)  # type: ignore[attr-defined]
    filters = {"Filters": [{"Name": "tag:cfn-chainermn:cluster", "Values": [STACK]},
                           {"Name": "instance-state-name", "Values": ["pending", "running"]}]}
    marker = idle_marker.render(WORKER, ("orted (pid 7)",), 5.0)
    with Stubber(ec2) as ec2s:
        def look(markers: dict[str, str], reads: list[tuple[str, bytes]], view_put: bool) -> dict[str, Any]:
            ec2s.add_response("describe_instances", _instances(), filters)
            s3.add_response("list_objects_v2", _listing(markers), {"Bucket": BUCKET, "Prefix": "nodes/"})
            for key, data in reads:
                s3.add_response("get_object", {"Body": _body(data), "ETag": '"x"', "ContentLength": len(data)},
                                {"Bucket": BUCKET, "Key": key})
            if view_put:
                s3.add_response("put_object", {"ETag": '"v1"'}, {
                    "Bucket": BUCKET, "Key": "cluster-key/cluster-view.json", "Body": ANY,
                    "ServerSideEncryption": "AES256", "ContentType": "application/json"})
            else:
                s3.add_client_error("get_object", "304", "Not Modified", http_status_code=304, expected_params={
                    "Bucket": BUCKET, "Key": "cluster-key/cluster-view.json", "IfNoneMatch": '"v1"'})
            return dict(found.discover().busy)

        keys = [(f"nodes/{i}/host_ed25519.pub", f"{host_key()}\n".encode()) for i in (MASTER, WORKER)]
        # the first look: each host key once, the live worker's marker once; the terminated
        # node's lingering marker is listed but neither read nor counted
        assert look({WORKER: '"b1"', GONE: '"c1"'}, [*keys, (f"nodes/{WORKER}/busy", marker)], view_put=True) == {
            WORKER: ("orted (pid 7)",)}
        assert look({WORKER: '"b1"', GONE: '"c1"'}, [], view_put=False) == {WORKER: ("orted (pid 7)",)}  # no read
        # the worker rewrote it (a new ETag): read again, and what cannot be read is busy
        assert look({WORKER: '"b2"'}, [(f"nodes/{WORKER}/busy", b"\0garbage")], view_put=False) == {
            WORKER: ("busy marker unreadable",)}
        assert look({}, [], view_put=False) == {}  # deleted: idle, with no call
        ec2s.assert_no_pending_responses()
