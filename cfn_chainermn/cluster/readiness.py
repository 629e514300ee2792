"""Waiting for a cluster's nodes: the barrier `hostfile --wait N` puts before mpiexec.

Works on any node lister (a local cluster's state folder, an AWS stack's inventory), polls
every few seconds until N nodes are ready or the time is up, and says on timeout which nodes
are still booting and how many were never launched. The clock and the sleep are parameters so
tests run it in no time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from cfn_chainermn.cluster import hostfile as hf
from cfn_chainermn.cluster.hostfile import Node
from cfn_chainermn.errors import CfnChainermnError

POLL_SECONDS = 5.0
MIN_SLEEP = 0.2


def plural(count: int, noun: str) -> str:
    """`1 node`, `3 nodes`."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


@dataclass(frozen=True)
class Readiness:
    """One look at the cluster: every node, the ready ones (hostfile order), the ids of the rest."""

    nodes: list[Node]
    ready: list[Node]
    waiting: list[str]


def look(list_nodes: Callable[[], list[Node]]) -> Readiness:
    nodes = list_nodes()
    ready = hf.members(nodes)
    return Readiness(nodes, ready, [n.instance_id for n in nodes if n not in ready])


def wait_ready(list_nodes: Callable[[], list[Node]], want: int | None, timeout: float, *,
               clock: Callable[[], float] = time.monotonic,
               sleep: Callable[[float], None] = time.sleep) -> Readiness:
    """Look until `want` nodes are ready (None: look once); CfnChainermnError when `timeout` s pass first."""
    deadline = clock() + timeout
    while True:
        seen = look(list_nodes)
        if want is None or len(seen.ready) >= want:
            return seen
        if clock() >= deadline:
            why = [f"not ready: {', '.join(seen.waiting)}"] if seen.waiting else []
            if len(seen.nodes) < want:
                why.append(f"{plural(want - len(seen.nodes), 'node')} not launched yet")
            raise CfnChainermnError(f"only {len(seen.ready)} of {plural(want, 'node')} ready after {timeout:g}s "
                                    f"({'; '.join(why)})")
        sleep(min(POLL_SECONDS, max(MIN_SLEEP, deadline - clock())))
