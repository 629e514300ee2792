"""Discovery grows linearly (issue 13 item 1), as specifications: the exact API calls, by
operation, of one refresh interval of a booted cluster on moto; what each node's files say after
a node joins or leaves; and what a worker does with a view it cannot trust, a throttled GET, or
no view at all. Calls are counted with botocore's before-send event (fleet_sim.ApiCalls)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from fleet_sim import BUCKET, Fleet, fleet

from cfn_chainermn.cli import cli
from cfn_chainermn.cli.boundary import run_with_boundary
from cfn_chainermn.errors import AgentError
from cfn_chainermn.names import CLUSTER_VIEW
from cfn_chainermn.node import agent, aws_platform
from cfn_chainermn.node.agent import AwsClients
from cfn_chainermn.node.discovery import spread_delay
from cfn_chainermn.node.state import State

STEADY = {"DescribeInstances": 1, "ListObjectsV2": 1, "GetObject If-None-Match": 4}


@pytest.fixture
def four(moto: Any, tmp_path: Path) -> Fleet:
    """A master and three workers, every one refreshed once (the view published, caches warm)."""
    f = fleet(moto.url, tmp_path, 4)
    f.interval()
    return f


def _expected_hostfile(f: Fleet) -> str:
    master, *workers = f.nodes
    ordered = sorted(workers, key=lambda n: tuple(int(p) for p in n.private_ip.split(".")))
    return "".join(f"{n.private_ip} slots=8\n" for n in (master, *ordered))


def _state(node: Any) -> State:
    return State.load(node.root / "var/lib/cfn-chainermn/state.json")


def test_an_interval_costs_n_plus_2_calls_and_every_node_sees_the_cluster(moto: Any, tmp_path: Path) -> None:
    f = fleet(moto.url, tmp_path, 4)
    # the first interval reads every host key once and publishes the view; each worker reads it whole
    # and, knowing nothing of what it published before, makes sure it has no busy marker
    assert f.interval() == {"DescribeInstances": 1, "ListObjectsV2": 1, "GetObject": 4 + 3, "PutObject": 1,
                            "DeleteObject": 3}
    # from then on: the master's two discovery calls and one conditional GET per node, answered 304
    assert f.interval() == STEADY
    assert f.interval() == STEADY
    for node in f.nodes:
        assert node.hostfile() == _expected_hostfile(f)
        assert sorted(node.known_hosts().splitlines()) == sorted(f"{n.private_ip} {n.key}" for n in f.nodes)
    assert "(cluster view unchanged)" in _state(f.nodes[1]).steps["hostfile"]["detail"]
    assert "(cluster view unchanged)" in _state(f.nodes[0]).steps["hostfile"]["detail"]


def test_a_new_node_is_in_the_masters_hostfile_after_one_refresh_and_the_workers_after_one_more(
        four: Fleet) -> None:
    f = four
    master, worker = f.nodes[0], f.nodes[1]
    [new] = f.launch(1)
    f.calls.take()
    f.refresh(master)  # one interval of the master: only the new host key is read
    assert f.calls.take() == {"DescribeInstances": 1, "ListObjectsV2": 1, "GetObject": 1, "PutObject": 1}
    assert f"{new.private_ip} slots=8\n" in master.hostfile()
    assert f"{new.private_ip} {new.key}\n" in master.known_hosts()
    assert new.private_ip not in worker.hostfile()  # not until the worker's next refresh
    f.refresh(worker)
    assert f.calls.take() == {"GetObject If-None-Match": 1}  # the view changed: this one answers 200
    assert worker.hostfile() == master.hostfile() == _expected_hostfile(f)
    assert f"{new.private_ip} {new.key}\n" in worker.known_hosts()


def test_a_terminated_node_leaves_within_one_refresh_and_costs_no_read(four: Fleet) -> None:
    f = four
    master, worker, gone = f.nodes[0], f.nodes[1], f.nodes[3]
    f.ec2.terminate_instances(InstanceIds=[gone.instance_id])
    f.calls.take()
    f.refresh(master)
    assert f.calls.take() == {"DescribeInstances": 1, "ListObjectsV2": 1, "PutObject": 1}
    assert gone.private_ip not in master.hostfile() and gone.private_ip not in master.known_hosts()
    f.refresh(worker)
    assert gone.private_ip not in worker.hostfile() and gone.private_ip not in worker.known_hosts()
    assert worker.hostfile().count("slots=") == 3


def test_a_worker_that_becomes_busy_costs_one_write_and_one_read_and_then_nothing(four: Fleet) -> None:
    """Idle shutdown's busy markers (node/idle_marker.py) ride on the same listing: per interval
    they cost nothing while no worker's state changes."""
    f = four
    worker = f.nodes[1]
    (worker.root / "proc/77").mkdir()
    (worker.root / "proc/77/cmdline").write_bytes(b"/opt/amazon/openmpi/bin/orted\0")  # a rank's daemon
    assert f.interval() == {**STEADY, "PutObject": 1}  # the worker's write, after the master's look
    assert f.interval() == {**STEADY, "GetObject": 1}  # the master reads the new marker once
    assert f.interval() == STEADY
    cache = json.loads((f.nodes[0].root / "var/lib/cfn-chainermn/discovery.json").read_text())
    assert [words for _, words in cache["busy"].values()] == ["orted (pid 77)"]
    (worker.root / "proc/77/cmdline").unlink()
    (worker.root / "proc/77").rmdir()
    assert f.interval() == {**STEADY, "DeleteObject": 1}
    assert f.interval() == STEADY
    assert json.loads((f.nodes[0].root / "var/lib/cfn-chainermn/discovery.json").read_text())["busy"] == {}


def test_a_node_no_longer_ready_leaves_the_hostfile_but_keeps_its_host_key(four: Fleet) -> None:
    f = four
    master, worker, unready = f.nodes[0], f.nodes[1], f.nodes[2]
    f.s3.delete_object(Bucket=BUCKET, Key=f"nodes/{unready.instance_id}/ready")
    f.refresh(master)
    f.refresh(worker)
    for node in (master, worker):
        assert unready.private_ip not in node.hostfile()
        assert f"{unready.private_ip} {unready.key}\n" in node.known_hosts()


def test_a_worker_refuses_a_view_it_cannot_trust_and_keeps_its_files(four: Fleet) -> None:
    f = four
    master, worker = f.nodes[0], f.nodes[1]
    good = (worker.hostfile(), worker.known_hosts())
    doc = json.loads(f.s3.get_object(Bucket=BUCKET, Key=CLUSTER_VIEW)["Body"].read())
    doc["nodes"][0]["host_key"] += "\n@cert-authority * ssh-ed25519 AAAAplanted"
    f.s3.put_object(Bucket=BUCKET, Key=CLUSTER_VIEW, Body=json.dumps(doc).encode())
    with pytest.raises(AgentError, match="cluster view refused: node 0: bad host_key; kept the last good hostfile"):
        f.refresh(worker)
    assert (worker.hostfile(), worker.known_hosts()) == good
    assert _state(worker).steps["hostfile"]["status"] == "failed"
    # the master notices the object is no longer the one it wrote, and writes it again
    f.calls.take()
    f.refresh(master)
    assert f.calls.take() == {"DescribeInstances": 1, "ListObjectsV2": 1, "GetObject If-None-Match": 1,
                              "PutObject": 1}
    f.refresh(worker)
    assert (worker.hostfile(), worker.known_hosts()) == good


def test_a_deleted_view_is_published_again_by_the_masters_next_refresh(four: Fleet) -> None:
    f = four
    f.s3.delete_object(Bucket=BUCKET, Key=CLUSTER_VIEW)
    f.calls.take()
    f.refresh(f.nodes[0])
    assert f.calls.take() == {"DescribeInstances": 1, "ListObjectsV2": 1, "GetObject If-None-Match": 1,
                              "PutObject": 1}
    assert f.interval() == STEADY


def test_a_throttled_worker_keeps_its_last_good_files(four: Fleet) -> None:
    f = four
    worker = f.nodes[1]
    good = (worker.hostfile(), worker.known_hosts())
    etag = f.s3.head_object(Bucket=BUCKET, Key=CLUSTER_VIEW)["ETag"]
    s3 = boto3.client("s3", region_name="us-east-1")
    with Stubber(s3) as stub:
        stub.add_client_error("get_object", "SlowDown", "Please reduce your request rate.", http_status_code=503,
                              expected_params={"Bucket": BUCKET, "Key": CLUSTER_VIEW, "IfNoneMatch": etag})
        with pytest.raises(AgentError, match=r"GetObject failed: SlowDown.*kept the last good hostfile"):
            agent.refresh(f.settings(worker), AwsClients(f.ec2, s3, None), echo=io.StringIO())
    assert (worker.hostfile(), worker.known_hosts()) == good
    f.refresh(worker)  # the next interval reads the view again
    assert worker.hostfile() == good[0]


def test_before_the_master_publishes_a_worker_discovers_directly(moto: Any, tmp_path: Path) -> None:
    f = fleet(moto.url, tmp_path, 3)
    worker = f.nodes[1]
    f.calls.take()
    f.refresh(worker)
    # the view's GET (NoSuchKey), then the master's way: EC2, the listing, each host key once (and
    # the busy marker's first delete: this worker has not published before)
    assert f.calls.take() == {"GetObject": 1 + 3, "DescribeInstances": 1, "ListObjectsV2": 1, "DeleteObject": 1}
    assert worker.hostfile() == _expected_hostfile(f)
    assert "(no cluster view yet: discovered directly)" in _state(worker).steps["hostfile"]["detail"]
    f.refresh(f.nodes[0])
    f.calls.take()
    f.refresh(worker)
    assert f.calls.take() == {"GetObject": 1}  # the view, whole: nothing cached to compare with yet


def test_a_lost_cache_costs_one_full_read_never_a_wrong_file(four: Fleet) -> None:
    f = four
    master = f.nodes[0]
    master.root.joinpath("var/lib/cfn-chainermn/discovery.json").write_text("{not json")
    f.calls.take()
    f.refresh(master)
    assert f.calls.take() == {"DescribeInstances": 1, "ListObjectsV2": 1, "GetObject": 4, "PutObject": 1}
    assert master.hostfile() == _expected_hostfile(f)
    assert f.interval() == STEADY


def test_the_jitter_is_a_stable_share_per_node(four: Fleet) -> None:
    ids = [n.instance_id for n in four.nodes]
    delays = [spread_delay(i, 20) for i in ids]
    assert all(0 <= d < 20 for d in delays) and len(set(delays)) == len(ids)
    assert delays == [spread_delay(i, 20) for i in ids]  # the same every time: one refresh per interval
    slept: list[float] = []
    four.refresh(four.nodes[1], jitter=20, sleep=slept.append)
    four.refresh(four.nodes[1], sleep=slept.append)  # no jitter (boot, a hand-run refresh): no wait
    assert slept == [delays[1]]


def test_the_timer_runs_refresh_with_jitter(four: Fleet, monkeypatch: pytest.MonkeyPatch) -> None:
    worker = four.nodes[1]
    four.settings(worker).save()
    slept: list[float] = []
    monkeypatch.setattr("time.sleep", slept.append)
    assert run_with_boundary(cli, ["node", "refresh", "--root", str(worker.root), "--jitter", "20"]) == 0
    assert slept == [spread_delay(worker.instance_id, 20)]
    assert aws_platform.REFRESH_JITTER_S == 20
    assert run_with_boundary(cli, ["node", "refresh", "--root", str(worker.root), "--jitter", "-1"]) == 2
