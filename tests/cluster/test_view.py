"""The cluster view: the master's render and the workers' parse agree, and a worker refuses any
view that is not exactly the expected shape, naming why (its files then stay as they were)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cfn_chainermn.cluster import view
from cfn_chainermn.cluster.hostfile import Node
from cfn_chainermn.errors import AgentError

KEY_M = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ7w86mJ2pbTUtu3l2XyHZC4fDGD0E2ZqNYpVqlp2x0m"
KEY_W = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIForgedByAWorkerForgedByAWorkerForgedByAW"
NODES = [
    Node("i-0aaaaaaaaaaaaaaa1", "10.0.0.10", "master", "p3.16xlarge"),
    Node("i-0aaaaaaaaaaaaaaa3", "10.0.0.12", "worker", "p3.16xlarge", state="pending", ready=False),
    Node("i-0aaaaaaaaaaaaaaa2", "10.0.0.11", "worker", "g4dn.xlarge"),
]
KEYS = {"i-0aaaaaaaaaaaaaaa1": KEY_M, "i-0aaaaaaaaaaaaaaa2": KEY_W}


def _doc(**over: Any) -> dict[str, Any]:
    return {**json.loads(view.render("demo", NODES, KEYS)), **over}


def _entry(**over: Any) -> dict[str, Any]:
    return {"instance_id": "i-0aaaaaaaaaaaaaaa1", "private_ip": "10.0.0.10", "role": "master",
            "instance_type": "p3.16xlarge", "state": "running", "ready": True, **over}


def test_render_then_parse_gives_the_same_nodes_and_keys() -> None:
    seen = view.parse(view.render("demo", NODES, KEYS), "demo")
    assert sorted(seen.nodes, key=lambda n: n.instance_id) == sorted(NODES, key=lambda n: n.instance_id)
    assert seen.host_keys == KEYS and seen.stack == "demo"


def test_render_is_deterministic_so_an_unchanged_cluster_keeps_its_etag() -> None:
    assert view.render("demo", NODES, KEYS) == view.render("demo", list(reversed(NODES)), dict(reversed(KEYS.items())))
    assert b"time" not in view.render("demo", NODES, KEYS)


def test_render_leaves_out_a_key_that_is_not_one_known_hosts_line() -> None:
    planted = {**KEYS, "i-0aaaaaaaaaaaaaaa2": "@cert-authority * ssh-ed25519 AAAA"}
    assert view.parse(view.render("demo", NODES, planted), "demo").host_keys == {"i-0aaaaaaaaaaaaaaa1": KEY_M}


@pytest.mark.parametrize(("data", "why"), [
    (b"{not json", "not JSON"),
    (json.dumps(_doc(version=2)).encode(), "not a version 1 view"),
    (json.dumps(["nodes"]).encode(), "not a version 1 view"),
    (json.dumps(_doc(stack="other")).encode(), "made for stack 'other', not 'demo'"),
    (json.dumps(_doc(nodes=[_entry(), _entry()])).encode(), "an instance listed twice"),
    (json.dumps(_doc(nodes=[_entry(), _entry(instance_id="i-0aaaaaaaaaaaaaaa2")])).encode(), "more than one master"),
    (json.dumps(_doc(nodes=[_entry(extra=1)])).encode(), "node 0: not an object with exactly"),
    (json.dumps(_doc(nodes=[{"instance_id": "i-0aaaaaaaaaaaaaaa1"}])).encode(), "node 0: not an object"),
    (json.dumps(_doc(nodes=[_entry(instance_id="../../x")])).encode(), "node 0: bad instance_id"),
    (json.dumps(_doc(nodes=[_entry(private_ip="10.0.0.10 slots=999")])).encode(), "node 0: bad private_ip"),
    (json.dumps(_doc(nodes=[_entry(role="root", state="stopped")])).encode(), "node 0: bad role, state"),
    (json.dumps(_doc(nodes=[_entry(instance_type="p3\n10.9.9.9")])).encode(), "node 0: bad instance_type"),
    (json.dumps(_doc(nodes=[_entry(ready="yes")])).encode(), "node 0: bad ready"),
    (json.dumps(_doc(nodes=[_entry(host_key=KEY_M + "\n10.6.6.6 ssh-ed25519 AAAAevil")])).encode(),
     "node 0: bad host_key"),
    (b" " * (view.MAX_BYTES + 1), f"larger than {view.MAX_BYTES} bytes"),
])
def test_a_view_not_of_the_expected_shape_is_refused_whole(data: bytes, why: str) -> None:
    with pytest.raises(AgentError) as info:
        view.parse(data, "demo")
    assert str(info.value).startswith("cluster view refused: ") and why in str(info.value)


def test_a_pending_node_without_an_address_yet_is_accepted() -> None:
    data = json.dumps(_doc(nodes=[_entry(private_ip="", state="pending", ready=False)])).encode()
    assert view.parse(data, "demo").nodes[0].private_ip == ""


@pytest.mark.parametrize(("line", "ok"), [
    (KEY_M, True),
    ("ecdsa-sha2-nistp256 AAAAE2VjZHNh", True),
    ("ssh-ed25519", False),
    ("ssh-ed25519 AAAA comment", False),
    ("ssh-dss AAAA", False),
    ("ssh-ed25519 AAAA\n", False),
])
def test_valid_host_key(line: str, ok: bool) -> None:
    assert view.valid_host_key(line) is ok
