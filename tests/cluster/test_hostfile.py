"""Hostfile rendering: only running, ready nodes, slots = GPUs, master first."""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import given
from hypothesis import strategies as st

from cfn_chainermn.cluster.hostfile import Node, members, nodes_used, render


def nodes() -> list[Node]:
    return [
        Node("i-w2", "10.0.0.12", "worker", "p3.16xlarge"),
        Node("i-m", "10.0.0.20", "master", "p3.16xlarge"),
        Node("i-w1", "10.0.0.9", "worker", "p3.16xlarge"),
        Node("i-booting", "10.0.0.13", "worker", "p3.16xlarge", ready=False),
        Node("i-stopped", "10.0.0.14", "worker", "p3.16xlarge", state="stopped"),
        Node("i-pending", "10.0.0.15", "worker", "p3.16xlarge", state="pending"),
        Node("i-g5", "10.0.0.100", "worker", "g5.12xlarge"),
    ]


def test_render_golden(golden: Callable[[str, str], None]) -> None:
    text = render(nodes())
    golden("hostfile/four-nodes.txt", text)
    assert text.splitlines()[0] == "10.0.0.20 slots=8"  # master first
    assert "10.0.0.13" not in text and "10.0.0.14" not in text and "10.0.0.15" not in text
    assert "10.0.0.100 slots=4" in text
    assert sum(n.slots for n in members(nodes())) == 28


def test_numeric_address_order() -> None:
    assert [n.private_ip for n in members(nodes())] == ["10.0.0.20", "10.0.0.9", "10.0.0.12", "10.0.0.100"]


def test_local_slots_override_and_empty() -> None:
    assert render([Node("n1", "127.0.0.2", "master", "local", slots_override=2)]) == "127.0.0.2 slots=2\n"
    assert render([]) == ""


@given(st.lists(st.tuples(st.integers(1, 254), st.booleans(), st.sampled_from(["running", "stopped"]))))
def test_every_line_is_a_usable_node(rows: list[tuple[int, bool, str]]) -> None:
    ns = [Node(f"i-{i}", f"10.0.1.{octet}", "worker", "p3.8xlarge", state=s, ready=r)
          for i, (octet, r, s) in enumerate(rows)]
    lines = render(ns).splitlines()
    assert len(lines) == sum(1 for n in ns if n.ready and n.state == "running")
    assert all(line.endswith(" slots=4") for line in lines)


def test_nodes_used_follows_openmpi_fill_order() -> None:
    three = [Node(f"i-{i}", f"10.0.0.{i}", "master" if i == 1 else "worker", "p3.8xlarge") for i in (1, 2, 3)]
    assert nodes_used(three, 2, per_node=1) == 2  # -n 2 -N 1: two nodes, not all three
    assert nodes_used(three, 8, per_node=4) == 2
    assert nodes_used(three, 5) == 2  # 4 slots each: the second node takes rank 5
    assert nodes_used(three, 99) == 3  # oversubscribed: every node
    assert nodes_used(three, 32, per_node=8) == 3  # more asked than there are nodes


def test_placement_mirrors_openmpi_slot_rules() -> None:
    """mpiexec runs without --oversubscribe: one slot per rank (checked against a real mpiexec by hand)."""
    from cfn_chainermn.cluster.hostfile import Node, placement_problem

    def node(i: int, slots: int, ready: bool = True) -> Node:
        return Node(f"i-{i}", f"10.0.0.{i}", "master" if i == 1 else "worker", "p3.16xlarge", "running", ready,
                    slots_override=slots)

    nodes = [node(1, 8), node(2, 8), node(3, 4), node(4, 8, ready=False)]
    assert placement_problem(nodes, 20) is None and placement_problem(nodes, 16, 8) is None
    assert placement_problem(nodes, 21) == (
        "-n: 21 ranks, but the 3 ready nodes have 20 slots; wait for more nodes (`cfn-chainermn hostfile NAME "
        "--wait N`) or lower -n")
    assert placement_problem(nodes, 32, 8) == (
        "-n/-N: 32 ranks at 8 per node need 4 nodes, 3 are ready; wait for more nodes (`cfn-chainermn hostfile "
        "NAME --wait N`) or lower -n")
    assert placement_problem(nodes, 24, 8) == "-N: 8 ranks on 10.0.0.3, which has 4 slots (p3.16xlarge); lower -N"
    assert placement_problem(nodes, 3, 8) is None  # 3 ranks fit the first node's 8 slots
    assert placement_problem(nodes, 20, 8) is None  # 8 + 8 + 4: the last node takes only the rest
    assert placement_problem(nodes, 21, 8) == "-N: 5 ranks on 10.0.0.3, which has 4 slots (p3.16xlarge); lower -N"
