"""A local cluster's record (cluster.json in its state folder): written by `local up`, read by
`local down`, the job commands' handle and the state folder's checks.

One typed object instead of a dict each reader indexes by hand; the file keeps its format, so
a cluster.json an earlier version wrote still loads (keys it may lack have their old defaults).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cfn_chainermn.errors import ConfigError

STATE_FILE = "cluster.json"


@dataclass(frozen=True)
class LocalNode:
    id: str
    ip: str
    slots: int


@dataclass(frozen=True)
class LocalState:
    name: str
    user: str  # who runs the jobs: a user `local up` made (as root), else the caller
    home: Path  # that user's home for the cluster (keys, hostfile), in the state folder
    port: int  # every node's sshd listens on it, each on its own 127.0.0.x
    python: str  # the interpreter jobs run
    shared: Path  # the cluster's "EFS"
    master_id: str
    master_ip: str
    as_root: bool = True
    created_user: bool = False  # `down` removes the user only when `up` made it
    created_run_sshd: bool = False  # likewise /run/sshd
    nodes: tuple[LocalNode, ...] = ()

    @property
    def key_file(self) -> Path:
        return self.home / ".ssh" / "id_ed25519"

    @classmethod
    def from_json(cls, data: Any) -> LocalState:
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        try:
            return cls(
                name=str(data["name"]), user=str(data["user"]), home=Path(data["home"]), port=int(data["port"]),
                python=str(data["python"]), shared=Path(data["shared"]), master_id=str(data["master_id"]),
                master_ip=str(data["master_ip"]), as_root=bool(data.get("as_root", True)),
                created_user=bool(data.get("created_user", False)),
                created_run_sshd=bool(data.get("created_run_sshd", False)),
                nodes=tuple(LocalNode(id=str(n["id"]), ip=str(n["ip"]), slots=int(n["slots"]))
                            for n in data.get("nodes", [])),
            )
        except KeyError as exc:
            raise ValueError(f"no {exc}") from exc
        except (TypeError, AttributeError) as exc:
            raise ValueError(str(exc)) from exc

    def to_json(self) -> dict[str, Any]:
        """The keys in the order every version wrote them."""
        return {
            "name": self.name, "user": self.user, "home": str(self.home), "port": self.port, "python": self.python,
            "as_root": self.as_root, "shared": str(self.shared), "master_id": self.master_id,
            "master_ip": self.master_ip, "created_user": self.created_user, "created_run_sshd": self.created_run_sshd,
            "nodes": [{"id": n.id, "ip": n.ip, "slots": n.slots} for n in self.nodes],
        }

    def save(self, root: Path) -> None:
        """Atomically: `down` after a crash must never find half a file."""
        path = root / STATE_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=2) + "\n", encoding="utf-8")
        tmp.replace(path)


def load(root: str | Path, *, name: str | None = None) -> LocalState | None:
    """The cluster recorded in `root`; None when there is none (or, given `name`, it is another)."""
    path = Path(root) / STATE_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"--state-dir: cannot read {path}: {exc}") from exc
    if name is not None and (not isinstance(data, dict) or data.get("name") != name):
        return None
    try:
        return LocalState.from_json(data)
    except ValueError as exc:
        raise ConfigError(f"--state-dir: cannot read {path}: {exc}") from exc
