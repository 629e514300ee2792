"""`hostfile --wait N`'s barrier: polls until N nodes are ready, or says which are missing and why."""

from __future__ import annotations

import pytest

from cfn_chainermn.cluster.hostfile import Node
from cfn_chainermn.cluster.readiness import wait_ready
from cfn_chainermn.errors import CfnChainermnError


def _node(iid: str, ip: str, ready: bool = True, state: str = "running") -> Node:
    return Node(instance_id=iid, private_ip=ip, role="master" if iid == "i-m" else "worker",
                instance_type="p3.2xlarge", state=state, ready=ready)


class Clock:
    """A clock that moves only when slept on."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_without_a_wait_it_looks_once_and_names_the_nodes_left_out() -> None:
    seen = wait_ready(lambda: [_node("i-m", "10.0.0.1"), _node("i-w", "10.0.0.2", ready=False)], None, 600)
    assert [n.instance_id for n in seen.ready] == ["i-m"]
    assert seen.waiting == ["i-w"]


def test_it_polls_until_enough_nodes_are_ready() -> None:
    looks = [[_node("i-m", "10.0.0.1")], [_node("i-m", "10.0.0.1"), _node("i-w", "10.0.0.2", ready=False)],
             [_node("i-m", "10.0.0.1"), _node("i-w", "10.0.0.2")]]
    clock = Clock()
    seen = wait_ready(lambda: looks.pop(0), 2, 600, clock=clock, sleep=clock.sleep)
    assert len(seen.ready) == 2 and seen.waiting == []
    assert clock.slept == [5.0, 5.0]


def test_a_timeout_names_the_nodes_not_ready_and_those_never_launched() -> None:
    clock = Clock()
    with pytest.raises(CfnChainermnError) as info:
        wait_ready(lambda: [_node("i-m", "10.0.0.1"), _node("i-w", "10.0.0.2", ready=False)], 4, 7,
                   clock=clock, sleep=clock.sleep)
    assert str(info.value) == "only 1 of 4 nodes ready after 7s (not ready: i-w; 2 nodes not launched yet)"
    assert clock.slept == [5.0, 2.0]


def test_one_missing_node_is_said_in_the_singular() -> None:
    clock = Clock()
    with pytest.raises(CfnChainermnError, match=r"^only 0 of 1 node ready after 0.5s \(1 node not launched yet\)$"):
        wait_ready(list, 1, 0.5, clock=clock, sleep=clock.sleep)
