"""`cluster check`: can the master reach every node over SSH, and does each have its GPUs?

The probe runs ON the master, as the cluster user, with the cluster's own ssh config (so the
known_hosts the agent wrote is what gets verified), one background ssh per node at once and
a short ConnectTimeout: a dead node is named within seconds and 16 nodes take about as long
as 2.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass

from cfn_chainermn.catalog.instance_types import gpus_of
from cfn_chainermn.cluster.hostfile import Node
from cfn_chainermn.cluster.remote import Remote
from cfn_chainermn.jobs.mpi import LOCAL_INSTANCE_TYPE

CONNECT_TIMEOUT = 5
# GPUs = NVIDIA device nodes (/dev/nvidia0, 1, ...): shell builtins only, so 16 probes stay cheap.
PROBE = 'g=0; for f in /dev/nvidia[0-9]*; do [ -e "$f" ] && g=$((g+1)); done; echo gpus=$g; echo cpus=$(nproc)'



@dataclass(frozen=True)
class NodeResult:
    node: Node
    ok: bool
    gpus: int | None
    cpus: int | None
    expected_gpus: int | None  # None: any number will do (a local cluster's nodes share this machine's)
    detail: str

    @property
    def status(self) -> str:
        if not self.ok:
            return "UNREACHABLE"
        return "ok" if self.expected_gpus is None or self.gpus == self.expected_gpus else "GPU MISMATCH"


def expected_gpus(node: Node) -> int | None:
    """The GPUs the node's instance type has; None for a local node (it sees the host's, if any)."""
    if node.instance_type == LOCAL_INSTANCE_TYPE:
        return None
    return gpus_of(node.instance_type, default=0)


def probe_script(nodes: Sequence[Node], port: int, timeout: int = CONNECT_TIMEOUT,
                 ssh_config: str | None = None) -> str:
    """A shell script that sshes to every node in parallel and prints `== id` blocks."""
    lines = ['d=$(mktemp -d) || exit 1']
    for n in nodes:
        out = shlex.quote(n.instance_id)
        config = ["-F", ssh_config] if ssh_config else []
        ssh = shlex.join(["timeout", str(timeout * 3), "ssh", *config, "-o", "BatchMode=yes", "-o",
                          f"ConnectTimeout={timeout}", "-p", str(port), n.private_ip, PROBE])
        lines.append(f'( {ssh} 2>&1; echo "rc=$?" ) > "$d"/{out} 2>&1 < /dev/null &')
    lines += ["wait", 'for f in "$d"/*; do [ -f "$f" ] || continue; echo "== ${f##*/}"; cat "$f"; done',
              'rm -rf "$d"']
    return "\n".join(lines) + "\n"


def parse(output: str, nodes: Sequence[Node]) -> list[NodeResult]:
    """Results in node order; a node with no block at all counts as unreachable."""
    blocks: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in output.splitlines():
        if line.startswith("== "):
            current = blocks.setdefault(line[3:].strip(), [])
        elif current is not None:
            current.append(line)
    results = []
    for n in nodes:
        lines = blocks.get(n.instance_id, [])
        values = dict(line.split("=", 1) for line in lines if "=" in line and line.split("=", 1)[0] in
                      ("gpus", "cpus", "rc"))
        rc = values.get("rc", "")
        ok = rc == "0"
        other = [line for line in lines if line.split("=", 1)[0] not in ("gpus", "cpus", "rc") and line.strip()]
        if ok:
            detail = ""
        elif rc == "124":
            detail = f"no answer within {CONNECT_TIMEOUT * 3}s"
        else:
            detail = other[-1] if other else (f"ssh exited {rc}" if rc else "no result")
        results.append(NodeResult(
            node=n, ok=ok, gpus=_int(values.get("gpus")) if ok else None,
            cpus=_int(values.get("cpus")) if ok else None, expected_gpus=expected_gpus(n), detail=detail))
    return results


def check(master: Remote, nodes: Sequence[Node], port: int, timeout: int = CONNECT_TIMEOUT,
          ssh_config: str | None = None) -> list[NodeResult]:
    """Probe every node from the master; never raises for a bad node, only for the master itself."""
    _, out = master.capture(probe_script(nodes, port, timeout, ssh_config))
    return parse(out, nodes)


def table(results: Sequence[NodeResult]) -> str:
    rows = [("NODE", "ADDRESS", "ROLE", "SSH", "GPUS", "CPUS", "DETAIL")]
    for r in results:
        seen = "-" if r.gpus is None else str(r.gpus)
        gpus = seen if r.expected_gpus is None else f"{seen}/{r.expected_gpus}"
        rows.append((r.node.instance_id, r.node.private_ip, r.node.role, r.status, gpus,
                     str(r.cpus) if r.cpus is not None else "-", r.detail))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return "".join(("  ".join(c.ljust(w) for c, w in zip(row[:-1], widths, strict=False)) + "  " + row[-1])
                   .rstrip() + "\n" for row in rows)


def failures(results: Sequence[NodeResult]) -> list[NodeResult]:
    return [r for r in results if r.status != "ok"]


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None
