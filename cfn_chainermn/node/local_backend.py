"""Local back ends for `cfn-chainermn local`: a folder for the bucket, inventory.json for EC2.

DIR/bucket/ mirrors the S3 key layout; DIR/inventory.json is written by `local up`:
{"nodes": [{"instance_id", "private_ip", "role", "instance_type": "local", "state": "running",
"slots": N, "ssh_port": P}]}. Readiness, host keys and busy markers come from the bucket folder,
as on AWS.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cfn_chainermn.cluster.hostfile import Node
from cfn_chainermn.cluster.inventory import BUSY_NAME, HOST_KEY_NAME, MAX_NODE_OBJECT, READY_NAME
from cfn_chainermn.errors import AgentError
from cfn_chainermn.names import NODES_PREFIX
from cfn_chainermn.node.backends import Discovery


class DirBucket:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        if key.startswith("/") or ".." in key.split("/"):
            raise AgentError(f"bad bucket key {key!r}")
        return self.root / key

    def get(self, key: str) -> bytes | None:
        path = self._path(key)
        return path.read_bytes() if path.is_file() else None

    def put(self, key: str, data: bytes, *, secret: bool = False) -> None:
        from cfn_chainermn.node.system import write_atomic  # subprocess, tempfile: not for `job submit`

        write_atomic(self._path(key), data, 0o600 if secret else 0o644)

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)


def _entries(state_dir: Path) -> list[dict[str, Any]]:
    path = state_dir / "inventory.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return list(data["nodes"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise AgentError(f"cannot read local inventory {path}: {exc}") from exc


def list_nodes(state_dir: str | Path) -> list[Node]:
    """The local cluster's nodes; ready when DIR/bucket/nodes/<id>/ready exists."""
    state_dir = Path(state_dir)
    nodes_dir = state_dir / "bucket" / NODES_PREFIX
    return [Node(
        instance_id=str(e["instance_id"]),
        private_ip=str(e["private_ip"]),
        role=str(e.get("role", "worker")),
        instance_type=str(e.get("instance_type", "local")),
        state=str(e.get("state", "running")),
        ready=(nodes_dir / str(e["instance_id"]) / READY_NAME).is_file(),
        slots_override=int(e.get("slots", 1)),
    ) for e in _entries(state_dir)]


def host_keys(state_dir: str | Path) -> dict[str, str]:
    """instance id -> host key published under DIR/bucket/nodes/<id>/host_ed25519.pub."""
    out = {}
    for path in sorted((Path(state_dir) / "bucket" / NODES_PREFIX).glob(f"*/{HOST_KEY_NAME}")):
        line = path.read_text(encoding="utf-8").strip()
        if line:
            out[path.parent.name] = " ".join(line.split()[:2])
    return out


def busy_markers(state_dir: str | Path, live: list[Node]) -> dict[str, tuple[str, ...]]:
    """instance id -> what its busy marker DIR/bucket/nodes/<id>/busy says, for the nodes listed."""
    from cfn_chainermn.node.idle_marker import parse  # idle_probe's subprocess: not for `job submit`

    out = {}
    for node in live:
        path = Path(state_dir) / "bucket" / NODES_PREFIX / node.instance_id / BUSY_NAME
        if path.is_file():
            out[node.instance_id] = parse(path.read_bytes() if path.stat().st_size <= MAX_NODE_OBJECT else None)
    return out


class LocalInventory:
    def __init__(self, state_dir: str | Path) -> None:
        self.state_dir = Path(state_dir)

    def discover(self) -> Discovery:
        nodes = list_nodes(self.state_dir)
        return Discovery(nodes, host_keys(self.state_dir), busy=busy_markers(self.state_dir, nodes))

    def ssh_port(self, instance_id: str) -> int:
        for e in _entries(self.state_dir):
            if str(e["instance_id"]) == instance_id:
                return int(e.get("ssh_port", 22))
        return 22


class NoSignal:
    def signal(self, success: bool, unique_id: str = "") -> str:
        return "local cluster: nothing to signal"
