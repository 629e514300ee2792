"""Nodes to hostfile text: `ip slots=N`, one line per running, ready node.

Pure on purpose: the node agent, `cfn-chainermn hostfile` and the local cluster all render
through this one function, so the hostfile means the same thing everywhere.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from cfn_chainermn.catalog.instance_types import gpus_of


@dataclass(frozen=True)
class Node:
    """One cluster member as discovery sees it."""

    instance_id: str
    private_ip: str
    role: str  # "master" or "worker"
    instance_type: str
    state: str = "running"
    ready: bool = True
    slots_override: int | None = None  # local nodes: CPU slots instead of GPUs

    @property
    def slots(self) -> int:
        if self.slots_override is not None:
            return self.slots_override
        return gpus_of(self.instance_type)


def members(nodes: Iterable[Node]) -> list[Node]:
    """The nodes a job may use: running and ready, master first, then by address."""
    usable = [n for n in nodes if n.state == "running" and n.ready and n.private_ip]
    return sorted(
        usable,
        key=lambda n: (n.role != "master", ipaddress.ip_address(n.private_ip), n.instance_id),
    )


def render(nodes: Iterable[Node]) -> str:
    """Hostfile text for OpenMPI; empty string when no node is usable."""
    return "".join(f"{n.private_ip} slots={n.slots}\n" for n in members(nodes))


def nodes_used(nodes: Iterable[Node], np: int, per_node: int | None = None) -> int:
    """How many of the usable nodes a job of `np` ranks occupies (OpenMPI fills them in order)."""
    usable = members(nodes)
    if per_node:
        return min(len(usable), -(-np // per_node))
    filled = 0
    for count, node in enumerate(usable, 1):
        filled += node.slots
        if filled >= np:
            return count
    return len(usable)


def placement_problem(nodes: Iterable[Node], np: int, per_node: int | None = None) -> str | None:
    """Why OpenMPI would refuse to place `np` ranks (`per_node` each) on the ready nodes, or None.

    mpiexec runs without --oversubscribe, so it needs a slot per rank; saying so before the
    upload beats its multi-line "not enough slots" report.
    """
    usable = members(nodes)
    wait = "wait for more nodes (`cfn-chainermn hostfile NAME --wait N`) or lower -n"
    if per_node:
        needed = -(-np // per_node)
        if needed > len(usable):
            return f"-n/-N: {np} ranks at {per_node} per node need {needed} nodes, {len(usable)} are ready; {wait}"
        # OpenMPI fills the first nodes with per_node ranks each; the last one gets the rest
        wants = [per_node] * (needed - 1) + [np - per_node * (needed - 1)]
        small = [(n, k) for n, k in zip(usable, wants, strict=False) if n.slots < k]  # usable may be longer
        if small:
            node, k = small[0]
            return (f"-N: {k} ranks on {node.private_ip}, which has {node.slots} slots ({node.instance_type}); "
                    "lower -N")
        return None
    total = sum(n.slots for n in usable)
    if np > total:
        return f"-n: {np} ranks, but the {len(usable)} ready nodes have {total} slots; {wait}"
    return None
