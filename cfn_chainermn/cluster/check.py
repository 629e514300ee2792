"""`cluster check`: can the master reach every node over SSH, does each have its GPUs, and does
each node of an EFA type see the EFA devices its type has (one per network card)?

The probe runs ON the master, as the cluster user, with the cluster's own ssh config (so the
known_hosts the agent wrote is what gets verified), one background ssh per node at once and
a short ConnectTimeout: a dead node is named within seconds and 16 nodes take about as long
as 2. EFA devices are counted from `fi_info -p efa`, as libfabric (and so NCCL) sees them, and
shown against the type's network cards. What the stack attached is the same on every node of a
type (all cards in an existing subnet, card 0 alone in a subnet of its own: template/efa.py),
so a node is short when it sees fewer than the other nodes of its type, or none while others
use EFA: NCCL cannot mix transports in a job. A whole cluster below its types' cards, or with
no EFA at all (`--efa off`), is consistent: a note says so, and the check passes.

The shell is in cluster/sh/: check.sh runs on the master, probe.sh on each node. Python only
hands them their arguments (quoted words after `set --`), so a node id or address is never shell.
"""

from __future__ import annotations

import functools
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, replace

from cfn_chainermn.catalog.instance_types import gpus_of
from cfn_chainermn.cluster.hostfile import Node
from cfn_chainermn.cluster.readiness import plural
from cfn_chainermn.cluster.remote import Remote
from cfn_chainermn.jobs import fabric
from cfn_chainermn.jobs.mpi import LOCAL_INSTANCE_TYPE

CONNECT_TIMEOUT = 5
KEYS = ("gpus", "cpus", "rc", "efa")
NODE_LINE = "| "  # check.sh's mark on each line a node printed
PLAIN_ID = re.compile(r"[A-Za-z0-9._-]+")  # the ids check.sh accepts (its case pattern)


@dataclass(frozen=True)
class NodeResult:
    node: Node
    ok: bool
    gpus: int | None
    cpus: int | None
    expected_gpus: int | None  # None: any number will do (a local cluster's nodes share this machine's)
    detail: str
    efa: int | None = None  # EFA devices fi_info lists; None: not asked (a type without EFA) or no answer
    expected_efa: int = 0  # the type's network cards; 0: TCP
    required_efa: int = 0  # what its peers show it should see: 0 where the cluster uses no EFA

    @property
    def status(self) -> str:
        if not self.ok:
            return "UNREACHABLE"
        if self.expected_gpus is not None and self.gpus != self.expected_gpus:
            return "GPU MISMATCH"
        return "EFA SHORT" if self.efa_short else "ok"

    @property
    def efa_short(self) -> bool:
        return self.ok and (self.efa or 0) < self.required_efa

    @property
    def fabric(self) -> str:
        """The EFA column: `tcp` for types without EFA, else devices seen of those expected."""
        if not self.expected_efa:
            return fabric.TCP
        return f"{'-' if self.efa is None else self.efa}/{self.expected_efa}"


def expected_gpus(node: Node) -> int | None:
    """The GPUs the node's instance type has; None for a local node (it sees the host's, if any)."""
    if node.instance_type == LOCAL_INSTANCE_TYPE:
        return None
    return gpus_of(node.instance_type, default=0)


@functools.cache
def script_text(name: str) -> str:
    """The text of cluster/sh/`name`; importlib.resources only here, so importing check costs nothing."""
    from importlib.resources import files

    return (files("cfn_chainermn.cluster") / "sh" / name).read_text(encoding="utf-8")


def probe_script(nodes: Sequence[Node], port: int, timeout: int = CONNECT_TIMEOUT,
                 ssh_config: str | None = None) -> str:
    """check.sh as one command for the master, its arguments set first: probe.sh's text, the
    timeout, port and ssh config, then each node's id, address and fabric (efa on EFA types only)."""
    args = [script_text("probe.sh"), str(timeout), str(port), ssh_config or ""]
    for n in nodes:
        args += [n.instance_id, n.private_ip, fabric.EFA if fabric.efa_devices(n.instance_type) else fabric.TCP]
    return f"set -- {shlex.join(args)}\n{script_text('check.sh')}"


def parse(output: str, nodes: Sequence[Node]) -> list[NodeResult]:
    """Results in node order; a node with no block at all counts as unreachable. A node whose id
    check.sh refused has its block under `#N`, its position; a plain-word id (the ones check.sh
    accepts, none starting with `#`) only ever its own, so no `#N` stands in for a real id. Only
    check.sh's own lines start at the margin: a node's lines (marked `| `) give its gpus, cpus and
    efa, the margin its rc, so nothing a node printed can open a block or set an rc."""
    blocks: dict[str, list[tuple[bool, str]]] = {}
    current: list[tuple[bool, str]] | None = None
    # lines end at \n alone, as awk's in check.sh do: splitlines would let a node's \r or \x85 start one
    for line in (raw.removesuffix("\r") for raw in output.split("\n")):
        if line.startswith("== "):
            current = blocks.setdefault(line[3:].strip(), [])
        elif current is not None:
            current.append((line.startswith(NODE_LINE), line.removeprefix(NODE_LINE)))
    results = []
    for position, n in enumerate(nodes, 1):
        block = blocks.get(n.instance_id if PLAIN_ID.fullmatch(n.instance_id) else f"#{position}", [])
        lines = [text for _, text in block]
        values = _values(block)
        efa_lines = [line.removeprefix("efa ") for line in lines if line.startswith("efa domain:")]
        rc = values.get("rc", "")
        ok = rc == "0"
        other = [line for line in lines if line.split("=", 1)[0] not in KEYS and line.strip()
                 and not line.startswith("efa domain:")]
        # not ok: check.sh's own last word (a refusal, or the bound a silent node ran out of), or ssh's
        detail = "" if ok else other[-1] if other else (f"ssh exited {rc}" if rc else "no result")
        want = fabric.efa_devices(n.instance_type)
        seen = len(fabric.fi_info_devices("\n".join(efa_lines))) if ok and want else None
        if ok and want and values.get("efa") == "no-fi_info":
            detail = "no fi_info on PATH or in /opt/amazon/efa/bin: the EFA software is missing"
        results.append(NodeResult(
            node=n, ok=ok, gpus=_int(values.get("gpus")) if ok else None,
            cpus=_int(values.get("cpus")) if ok else None, expected_gpus=expected_gpus(n), detail=detail,
            efa=seen, expected_efa=want))
    return _against_peers(results)


def _against_peers(results: list[NodeResult]) -> list[NodeResult]:
    """Each EFA node's requirement: the most any node of its type sees, at least 1 once any node
    of the cluster uses EFA; a node below it is named with what it sees."""
    peak: dict[str, int] = {}
    for r in results:
        peak[r.node.instance_type] = max(peak.get(r.node.instance_type, 0), r.efa or 0)
    if not any(peak.values()):
        return results
    out = []
    for r in results:
        need = max(peak[r.node.instance_type], 1) if r.expected_efa else 0
        if r.ok and (r.efa or 0) < need and not r.detail:
            r = replace(r, detail=f"sees {plural(r.efa or 0, 'EFA device')} where the other {r.node.instance_type} "
                        f"nodes see {need}" if peak[r.node.instance_type] else
                        "sees no EFA device while the other nodes use EFA")
        out.append(replace(r, required_efa=need))
    return out


def check(master: Remote, nodes: Sequence[Node], port: int, timeout: int = CONNECT_TIMEOUT,
          ssh_config: str | None = None) -> list[NodeResult]:
    """Probe every node from the master; never raises for a bad node, only for the master itself."""
    _, out = master.capture(probe_script(nodes, port, timeout, ssh_config))
    return parse(out, nodes)


def table(results: Sequence[NodeResult]) -> str:
    rows = [("NODE", "ADDRESS", "ROLE", "SSH", "GPUS", "CPUS", "EFA", "DETAIL")]
    for r in results:
        seen = "-" if r.gpus is None else str(r.gpus)
        gpus = seen if r.expected_gpus is None else f"{seen}/{r.expected_gpus}"
        rows.append((r.node.instance_id, r.node.private_ip, r.node.role, r.status, gpus,
                     str(r.cpus) if r.cpus is not None else "-", r.fabric if r.ok else "-", r.detail))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return "".join(("  ".join(c.ljust(w) for c, w in zip(row[:-1], widths, strict=False)) + "  " + row[-1])
                   .rstrip() + "\n" for row in rows)


def failures(results: Sequence[NodeResult]) -> list[NodeResult]:
    return [r for r in results if r.status != "ok"]


def notes(results: Sequence[NodeResult]) -> list[str]:
    """What is true of the whole cluster rather than of one node: EFA types on TCP, or on fewer
    network cards than they have."""
    efa = [r for r in results if r.ok and r.expected_efa]
    if efa and not any(r.efa for r in efa):
        types = ", ".join(sorted({r.node.instance_type for r in efa}))
        return [f"no node sees an EFA device, so jobs use TCP sockets; {types} can have EFA "
                "(`--efa auto` attaches it; see docs/troubleshooting.md)"]
    lines = []
    for itype in sorted({r.node.instance_type for r in efa}):
        peak = max(r.efa or 0 for r in efa if r.node.instance_type == itype)
        cards = fabric.efa_devices(itype)
        if 0 < peak < cards:
            lines.append(f"the {itype} nodes see {peak} of their {cards} EFA devices: EFA on card 0 alone, as in "
                         "a subnet the stack made itself (`--subnet-id` with an existing subnet gets every card)")
    return lines


def _values(block: Sequence[tuple[bool, str]]) -> dict[str, str]:
    """rc from check.sh's own lines, the other keys from the node's (later lines win)."""
    values = {}
    for from_node, text in block:
        key, sep, value = text.partition("=")
        if sep and key in KEYS and from_node == (key != "rc"):
            values[key] = value
    return values


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None
